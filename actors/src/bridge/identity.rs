//! One person, one memory: accounts on different platforms (`telegram:123`, `slack:U456`)
//! linked to one person share one conversation. A direct message from a linked account
//! goes to the session `person:<name>`; the reply still goes back on the platform the
//! message came from. Group conversations are never merged. Linking an account also
//! pairs it: the owner named it.

use std::sync::Arc;

use dashmap::DashMap;
use redb::{ReadableTable, TableDefinition};
use serde::Serialize;

use super::store::{BridgeStore, store_error};
use super::{BridgeError, BridgeErrorKind};
use crate::ids::{InvalidId, validate_id, validate_platform};

/// member (`platform:sender_id`) → person name.
pub(crate) const IDENTITIES: TableDefinition<'_, &str, &str> =
    TableDefinition::new("identities_v1");

/// The platform of merged conversations.
pub const PERSON_PLATFORM: &str = "person";

/// Who is linked to whom, in memory: a copy of the identities table, loaded when the
/// journal opens and changed after each committed link or unlink (only this process
/// writes the journal), so that finding a sender's person costs no read on every message.
#[derive(Clone, Debug, Default)]
pub(crate) struct LinkedPeople {
    people: Arc<DashMap<String, String>>,
}

impl LinkedPeople {
    pub(crate) fn load(database: &redb::Database) -> Result<Self, BridgeError> {
        let people = read_links(database)?.into_iter().collect();
        Ok(Self {
            people: Arc::new(people),
        })
    }

    fn person_of(&self, member: &str) -> Option<String> {
        self.people.get(member).map(|person| person.value().clone())
    }

    fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    fn members_of(&self, person: &str) -> Vec<String> {
        let mut members: Vec<String> = self
            .people
            .iter()
            .filter(|link| link.value() == person)
            .map(|link| link.key().clone())
            .collect();
        members.sort();
        members
    }

    fn set(&self, member: &str, person: &str) {
        self.people.insert(member.to_owned(), person.to_owned());
    }

    fn remove(&self, member: &str) {
        self.people.remove(member);
    }
}

/// One person and the accounts linked to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Person {
    pub person: String,
    pub members: Vec<String>,
}

/// Why a member name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMember {
    #[error("`{0}` must be written platform:sender_id (e.g. telegram:123)")]
    Form(String),
    #[error("`{member}`: the platform {reason}")]
    Platform {
        member: String,
        #[source]
        reason: InvalidId,
    },
    #[error("`{member}`: the sender id {reason}")]
    Sender {
        member: String,
        #[source]
        reason: InvalidId,
    },
}

/// Checks a member name: `platform:sender_id`.
pub fn validate_member(member: &str) -> Result<(), InvalidMember> {
    let (platform, sender) = member
        .split_once(':')
        .ok_or_else(|| InvalidMember::Form(member.to_owned()))?;
    validate_platform(platform).map_err(|reason| InvalidMember::Platform {
        member: member.to_owned(),
        reason,
    })?;
    validate_id(sender).map_err(|reason| InvalidMember::Sender {
        member: member.to_owned(),
        reason,
    })
}

fn invalid(reason: impl std::fmt::Display) -> BridgeError {
    BridgeError::new(BridgeErrorKind::Rejected, reason.to_string())
}

impl BridgeStore {
    /// Links `members` to one person: `person` if given, else the person one of them is
    /// linked to already, else a new name taken from the first member. Answers the person.
    pub async fn link(
        &self,
        person: Option<&str>,
        members: &[String],
    ) -> Result<Person, BridgeError> {
        if members.len() < 2 && person.is_none() {
            return Err(invalid("link at least two accounts, or name the person"));
        }
        for member in members {
            validate_member(member).map_err(invalid)?;
        }
        if let Some(person) = person {
            validate_id(person).map_err(|reason| invalid(format!("the person name {reason}")))?;
        }
        let linking = members.to_vec();
        let named = person.map(str::to_owned);
        let person = self
            .blocking(move |database| {
                let members = linking;
                let transaction = database.begin_write().map_err(store_error)?;
                let person = {
                    let mut table = transaction.open_table(IDENTITIES).map_err(store_error)?;
                    let existing = members.iter().find_map(|member| {
                        table
                            .get(member.as_str())
                            .ok()
                            .flatten()
                            .map(|value| value.value().to_owned())
                    });
                    let person = named
                        .or(existing)
                        .unwrap_or_else(|| members[0].replace(':', "-"));
                    for member in &members {
                        table
                            .insert(member.as_str(), person.as_str())
                            .map_err(store_error)?;
                    }
                    person
                };
                transaction.commit().map_err(store_error)?;
                Ok(person)
            })
            .await?;
        for member in members {
            self.linked().set(member, &person);
        }
        for member in &members_of(self, &person).await? {
            self.pair(member, "", "identity").await?;
        }
        Ok(Person {
            members: members_of(self, &person).await?,
            person,
        })
    }

    /// Unlinks one account; answers whether it was linked.
    pub async fn unlink(&self, member: &str) -> Result<bool, BridgeError> {
        let unlinking = member.to_owned();
        let existed = self
            .blocking(move |database| {
                let member = unlinking;
                let transaction = database.begin_write().map_err(store_error)?;
                let existed = {
                    let mut table = transaction.open_table(IDENTITIES).map_err(store_error)?;
                    table
                        .remove(member.as_str())
                        .map_err(store_error)?
                        .is_some()
                };
                transaction.commit().map_err(store_error)?;
                Ok(existed)
            })
            .await?;
        self.linked().remove(member);
        Ok(existed)
    }

    /// The accounts linked to `person`, sorted.
    pub fn linked_members(&self, person: &str) -> Vec<String> {
        self.linked().members_of(person)
    }

    /// The person `platform:sender_id` is linked to, if any; costs nothing while nobody is
    /// linked (the gateway asks on every message).
    pub fn person_of_sender(&self, platform: &str, sender_id: &str) -> Option<String> {
        if self.linked().is_empty() {
            return None;
        }
        self.person_of(&format!("{platform}:{sender_id}"))
    }

    /// The person `member` (`platform:sender_id`) is linked to, if any.
    pub fn person_of(&self, member: &str) -> Option<String> {
        self.linked().person_of(member)
    }

    /// Every person with their accounts.
    pub async fn people(&self) -> Result<Vec<Person>, BridgeError> {
        let links = self.blocking(read_links).await?;
        let mut people: Vec<Person> = Vec::new();
        for (member, person) in links {
            match people.iter_mut().find(|known| known.person == person) {
                Some(known) => known.members.push(member),
                None => people.push(Person {
                    person,
                    members: vec![member],
                }),
            }
        }
        people.sort_by(|a, b| a.person.cmp(&b.person));
        Ok(people)
    }
}

fn read_links(database: &redb::Database) -> Result<Vec<(String, String)>, BridgeError> {
    let transaction = database.begin_read().map_err(store_error)?;
    let table = transaction.open_table(IDENTITIES).map_err(store_error)?;
    let mut links = Vec::new();
    for entry in table.iter().map_err(store_error)? {
        let (member, person) = entry.map_err(store_error)?;
        links.push((member.value().to_owned(), person.value().to_owned()));
    }
    Ok(links)
}

async fn members_of(store: &BridgeStore, person: &str) -> Result<Vec<String>, BridgeError> {
    let person = person.to_owned();
    let links = store.blocking(read_links).await?;
    Ok(links
        .into_iter()
        .filter(|(_, linked)| *linked == person)
        .map(|(member, _)| member)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accounts_link_to_one_person_and_are_paired() {
        let dir = tempfile::tempdir().unwrap();
        let store = BridgeStore::open(dir.path()).unwrap();
        let linked = store
            .link(None, &["telegram:123".into(), "slack:U456".into()])
            .await
            .unwrap();
        assert_eq!(linked.person, "telegram-123");
        assert!(store.is_paired("slack:U456").await.unwrap());
        // A third account joins the person one of them already belongs to.
        let grown = store
            .link(None, &["slack:U456".into(), "whatsapp:4915".into()])
            .await
            .unwrap();
        assert_eq!(grown.person, "telegram-123");
        assert_eq!(grown.members.len(), 3);
        assert_eq!(
            store.person_of("whatsapp:4915").as_deref(),
            Some("telegram-123")
        );
        assert!(store.unlink("whatsapp:4915").await.unwrap());
        assert_eq!(store.person_of("whatsapp:4915"), None);
        assert_eq!(
            store.linked_members("telegram-123"),
            ["slack:U456", "telegram:123"]
        );
        // The links are read back when the journal opens again.
        drop(store);
        let store = BridgeStore::open(dir.path()).unwrap();
        assert_eq!(
            store.person_of("slack:U456").as_deref(),
            Some("telegram-123")
        );
        assert_eq!(store.person_of("whatsapp:4915"), None);
        let named = store
            .link(Some("ada"), &["webhook:ada".into()])
            .await
            .unwrap();
        assert_eq!(named.person, "ada");
        assert_eq!(store.people().await.unwrap().len(), 2);
        assert!(store.link(None, &["telegram:1".into()]).await.is_err());
        assert!(
            store
                .link(None, &["no-colon".into(), "slack:U1".into()])
                .await
                .is_err()
        );
    }
}
