//! The bridges' durable journal, one redb file (`bridges.redb`) in the data dir:
//! - messages received and not yet answered (the inbox), so a restart answers them;
//! - replies not yet accepted by their platform (the outbox), so a restart delivers them;
//! - ids already received, so a platform's retry is not answered twice;
//! - each bridge's own state (a polling offset);
//! - pairing: codes waiting for the owner's approval, and the senders approved;
//! - linked identities (see [`super::identity`]).
//!
//! Every write is one durable (fsync'd) transaction, run on tokio's blocking pool. After a
//! failed write (a full disk) the journal reports itself failing and recovers by itself
//! (see [`crate::storage`]).

use std::path::Path;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{BridgeError, BridgeErrorKind, BridgeInbound, BridgeStateStore, Delivery};
use crate::message::unix_now;
use crate::storage::Storage;

/// redb's page cache for the journal: it holds little that is read twice.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

const STATE: TableDefinition<'_, &str, &str> = TableDefinition::new("bridge_state_v1");
const INBOX: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("bridge_inbox_v1");
const OUTBOX: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("bridge_outbox_v1");
const SEEN: TableDefinition<'_, &str, u64> = TableDefinition::new("bridge_seen_v1");
/// Reply ids put in the outbox by [`BridgeStore::enqueue_once`], with when (unix seconds).
const SENT_ONCE: TableDefinition<'_, &str, u64> = TableDefinition::new("bridge_sent_once_v1");
/// How long a reply id sent once is remembered: longer than any run waits to be taken up.
const SENT_ONCE_RETENTION_SECS: u64 = 30 * 86_400;
const PAIRING_CODES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("pairing_codes_v1");
const PAIRED: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("paired_senders_v1");

/// A received message waiting for its reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    pub bridge: String,
    pub inbound: BridgeInbound,
    pub received_at: u64,
}

/// A reply waiting for its platform to accept it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub bridge: String,
    pub delivery: Delivery,
}

/// A sender who asked to talk to the assistant and waits for the owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingRequest {
    pub code: String,
    pub bridge: String,
    /// `platform:sender_id`, e.g. `telegram:123`.
    pub sender: String,
    pub sender_name: String,
    pub requested_at: u64,
}

/// A sender the owner approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedSender {
    pub sender: String,
    pub sender_name: String,
    pub bridge: String,
    pub approved_at: u64,
}

pub(crate) fn store_error(error: impl std::fmt::Display) -> BridgeError {
    BridgeError::new(
        BridgeErrorKind::Transient,
        format!("bridge journal: {error}"),
    )
}

fn entry_key(bridge: &str, id: &str) -> String {
    format!("{bridge}\0{id}")
}

/// The journal. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BridgeStore {
    storage: Storage,
    people: super::identity::LinkedPeople,
}

/// Creates the journal's tables.
fn prepare(transaction: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    for table in [INBOX, OUTBOX, PAIRING_CODES, PAIRED] {
        transaction.open_table(table)?;
    }
    transaction.open_table(STATE)?;
    transaction.open_table(SEEN)?;
    transaction.open_table(SENT_ONCE)?;
    transaction.open_table(super::identity::IDENTITIES)?;
    Ok(())
}

impl BridgeStore {
    /// Opens (or creates) `bridges.redb` in `data_dir`. Blocking: call before serving.
    pub fn open(data_dir: &Path) -> Result<Self, BridgeError> {
        std::fs::create_dir_all(data_dir).map_err(store_error)?;
        let storage = Storage::open(
            "bridges",
            &data_dir.join("bridges.redb"),
            CACHE_BYTES,
            prepare,
        )
        .map_err(store_error)?;
        let people = storage
            .run(super::identity::LinkedPeople::load)
            .map_err(store_error)??;
        Ok(Self { storage, people })
    }

    pub(crate) fn linked(&self) -> &super::identity::LinkedPeople {
        &self.people
    }

    /// The journal's database, for health reports next to the other stores.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, BridgeError> + Send + 'static,
    ) -> Result<T, BridgeError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || storage.run(work).map_err(store_error)?)
            .await
            .map_err(store_error)?
    }

    /// Journals a received message; `false` when its id was received before (a platform's
    /// retry), in which case nothing is stored.
    pub async fn admit(&self, bridge: &str, inbound: &BridgeInbound) -> Result<bool, BridgeError> {
        let key = entry_key(bridge, inbound.message.id());
        let entry = InboxEntry {
            bridge: bridge.to_owned(),
            inbound: inbound.clone(),
            received_at: unix_now(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(store_error)?;
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(store_error)?;
            {
                let mut seen = transaction.open_table(SEEN).map_err(store_error)?;
                if seen.get(key.as_str()).map_err(store_error)?.is_some() {
                    return Ok(false);
                }
                seen.insert(key.as_str(), unix_now()).map_err(store_error)?;
                let mut inbox = transaction.open_table(INBOX).map_err(store_error)?;
                inbox
                    .insert(key.as_str(), bytes.as_slice())
                    .map_err(store_error)?;
            }
            transaction.commit().map_err(store_error)?;
            Ok(true)
        })
        .await
    }

    /// Marks a message answered: it leaves the inbox and its reply (if any) enters the
    /// outbox, in one transaction, so a crash leaves exactly one of the two.
    pub async fn answered(
        &self,
        bridge: &str,
        message_id: &str,
        delivery: Option<Delivery>,
    ) -> Result<(), BridgeError> {
        let inbox_key = entry_key(bridge, message_id);
        let outbox = delivery
            .map(|delivery| {
                let key = entry_key(bridge, &delivery.reply_id);
                let entry = OutboxEntry {
                    bridge: bridge.to_owned(),
                    delivery,
                };
                serde_json::to_vec(&entry).map(|bytes| (key, bytes))
            })
            .transpose()
            .map_err(store_error)?;
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(store_error)?;
            {
                let mut inbox = transaction.open_table(INBOX).map_err(store_error)?;
                inbox.remove(inbox_key.as_str()).map_err(store_error)?;
                if let Some((key, bytes)) = &outbox {
                    let mut table = transaction.open_table(OUTBOX).map_err(store_error)?;
                    table
                        .insert(key.as_str(), bytes.as_slice())
                        .map_err(store_error)?;
                }
            }
            transaction.commit().map_err(store_error)
        })
        .await
    }

    /// Puts a reply in the outbox (one that answers no journaled message: a pairing code).
    pub async fn enqueue(&self, bridge: &str, delivery: Delivery) -> Result<(), BridgeError> {
        let key = entry_key(bridge, &delivery.reply_id);
        let entry = OutboxEntry {
            bridge: bridge.to_owned(),
            delivery,
        };
        let bytes = serde_json::to_vec(&entry).map_err(store_error)?;
        self.blocking(move |database| write_one(database, OUTBOX, &key, Some(bytes.as_slice())))
            .await
    }

    /// Puts a reply in the outbox unless its id was put there before by this method (an
    /// idempotency key asked again after a crash); answers whether it is new. Ids are
    /// remembered for 30 days.
    pub async fn enqueue_once(
        &self,
        bridge: &str,
        delivery: Delivery,
    ) -> Result<bool, BridgeError> {
        let key = entry_key(bridge, &delivery.reply_id);
        let entry = OutboxEntry {
            bridge: bridge.to_owned(),
            delivery,
        };
        let bytes = serde_json::to_vec(&entry).map_err(store_error)?;
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(store_error)?;
            {
                let mut sent = transaction.open_table(SENT_ONCE).map_err(store_error)?;
                if sent.get(key.as_str()).map_err(store_error)?.is_some() {
                    return Ok(false);
                }
                sent.insert(key.as_str(), unix_now()).map_err(store_error)?;
                let mut outbox = transaction.open_table(OUTBOX).map_err(store_error)?;
                outbox
                    .insert(key.as_str(), bytes.as_slice())
                    .map_err(store_error)?;
            }
            transaction.commit().map_err(store_error)?;
            Ok(true)
        })
        .await
    }

    /// The platform accepted the reply: it leaves the outbox.
    pub async fn delivered(&self, bridge: &str, reply_id: &str) -> Result<(), BridgeError> {
        let key = entry_key(bridge, reply_id);
        self.blocking(move |database| write_one(database, OUTBOX, &key, None))
            .await
    }

    /// Messages received and not answered yet.
    pub async fn pending_inbox(&self) -> Result<Vec<InboxEntry>, BridgeError> {
        self.blocking(|database| read_all(database, INBOX)).await
    }

    /// Replies not delivered yet.
    pub async fn pending_outbox(&self) -> Result<Vec<OutboxEntry>, BridgeError> {
        self.blocking(|database| read_all(database, OUTBOX)).await
    }

    /// Forgets received ids older than `max_age_secs`; answers how many.
    pub async fn prune_seen(&self, max_age_secs: u64) -> Result<usize, BridgeError> {
        let cutoff = unix_now().saturating_sub(max_age_secs);
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(store_error)?;
            let removed = {
                let mut seen = transaction.open_table(SEEN).map_err(store_error)?;
                let before = seen.len().map_err(store_error)?;
                seen.retain(|_, received| received >= cutoff)
                    .map_err(store_error)?;
                let mut sent = transaction.open_table(SENT_ONCE).map_err(store_error)?;
                let sent_cutoff = unix_now().saturating_sub(SENT_ONCE_RETENTION_SECS);
                sent.retain(|_, queued| queued >= sent_cutoff)
                    .map_err(store_error)?;
                before - seen.len().map_err(store_error)?
            };
            transaction.commit().map_err(store_error)?;
            Ok(usize::try_from(removed).unwrap_or(usize::MAX))
        })
        .await
    }

    /// The pending code of `sender`, or a new one.
    pub async fn pairing_code(
        &self,
        bridge: &str,
        sender: &str,
        sender_name: &str,
    ) -> Result<PairingRequest, BridgeError> {
        let (bridge, sender, sender_name) =
            (bridge.to_owned(), sender.to_owned(), sender_name.to_owned());
        self.blocking(move |database| {
            let existing: Vec<PairingRequest> = read_all(database, PAIRING_CODES)?;
            if let Some(request) = existing
                .into_iter()
                .find(|request| request.sender == sender)
            {
                return Ok(request);
            }
            let request = PairingRequest {
                code: new_pairing_code(),
                bridge,
                sender,
                sender_name,
                requested_at: unix_now(),
            };
            let bytes = serde_json::to_vec(&request).map_err(store_error)?;
            let transaction = database.begin_write().map_err(store_error)?;
            {
                let mut codes = transaction.open_table(PAIRING_CODES).map_err(store_error)?;
                codes
                    .insert(request.code.as_str(), bytes.as_slice())
                    .map_err(store_error)?;
            }
            transaction.commit().map_err(store_error)?;
            Ok(request)
        })
        .await
    }

    /// Approves a pairing code; `None` when no such code is pending.
    pub async fn approve(&self, code: &str) -> Result<Option<PairedSender>, BridgeError> {
        let code = code.trim().to_ascii_uppercase();
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(store_error)?;
            let paired = {
                let mut codes = transaction.open_table(PAIRING_CODES).map_err(store_error)?;
                let Some(bytes) = codes.remove(code.as_str()).map_err(store_error)? else {
                    return Ok(None);
                };
                let request: PairingRequest =
                    serde_json::from_slice(bytes.value()).map_err(store_error)?;
                let paired = PairedSender {
                    sender: request.sender,
                    sender_name: request.sender_name,
                    bridge: request.bridge,
                    approved_at: unix_now(),
                };
                let bytes = serde_json::to_vec(&paired).map_err(store_error)?;
                let mut table = transaction.open_table(PAIRED).map_err(store_error)?;
                table
                    .insert(paired.sender.as_str(), bytes.as_slice())
                    .map_err(store_error)?;
                paired
            };
            transaction.commit().map_err(store_error)?;
            Ok(Some(paired))
        })
        .await
    }

    /// Pairs `sender` directly (the owner named it); keeps an existing pairing as it is.
    pub async fn pair(
        &self,
        sender: &str,
        sender_name: &str,
        bridge: &str,
    ) -> Result<(), BridgeError> {
        if self.is_paired(sender).await? {
            return Ok(());
        }
        let paired = PairedSender {
            sender: sender.to_owned(),
            sender_name: sender_name.to_owned(),
            bridge: bridge.to_owned(),
            approved_at: unix_now(),
        };
        let bytes = serde_json::to_vec(&paired).map_err(store_error)?;
        self.blocking(move |database| {
            write_one(database, PAIRED, &paired.sender, Some(bytes.as_slice()))
        })
        .await
    }

    /// Whether `sender` (`platform:sender_id`) was approved.
    pub async fn is_paired(&self, sender: &str) -> Result<bool, BridgeError> {
        let sender = sender.to_owned();
        self.blocking(move |database| {
            let transaction = database.begin_read().map_err(store_error)?;
            let table = transaction.open_table(PAIRED).map_err(store_error)?;
            Ok(table.get(sender.as_str()).map_err(store_error)?.is_some())
        })
        .await
    }

    /// Withdraws an approval; answers whether there was one.
    pub async fn revoke(&self, sender: &str) -> Result<bool, BridgeError> {
        let sender = sender.to_owned();
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(store_error)?;
            let existed = {
                let mut table = transaction.open_table(PAIRED).map_err(store_error)?;
                table
                    .remove(sender.as_str())
                    .map_err(store_error)?
                    .is_some()
            };
            transaction.commit().map_err(store_error)?;
            Ok(existed)
        })
        .await
    }

    pub async fn pairing_requests(&self) -> Result<Vec<PairingRequest>, BridgeError> {
        self.blocking(|database| read_all(database, PAIRING_CODES))
            .await
    }

    pub async fn paired_senders(&self) -> Result<Vec<PairedSender>, BridgeError> {
        self.blocking(|database| read_all(database, PAIRED)).await
    }
}

/// Inserts (`Some`) or removes (`None`) one key in its own durable transaction.
fn write_one<V: redb::Value + 'static>(
    database: &Database,
    table: TableDefinition<'_, &str, V>,
    key: &str,
    value: Option<V::SelfType<'_>>,
) -> Result<(), BridgeError>
where
    for<'a> V::SelfType<'a>: std::borrow::Borrow<V::SelfType<'a>>,
{
    let transaction = database.begin_write().map_err(store_error)?;
    {
        let mut table = transaction.open_table(table).map_err(store_error)?;
        match value {
            Some(value) => {
                table.insert(key, value).map_err(store_error)?;
            }
            None => {
                table.remove(key).map_err(store_error)?;
            }
        }
    }
    transaction.commit().map_err(store_error)
}

fn read_all<T: serde::de::DeserializeOwned>(
    database: &Database,
    table: TableDefinition<'_, &str, &[u8]>,
) -> Result<Vec<T>, BridgeError> {
    let transaction = database.begin_read().map_err(store_error)?;
    let table = transaction.open_table(table).map_err(store_error)?;
    let mut entries = Vec::new();
    for entry in table.iter().map_err(store_error)? {
        let (_, value) = entry.map_err(store_error)?;
        entries.push(serde_json::from_slice(value.value()).map_err(store_error)?);
    }
    Ok(entries)
}

/// Eight characters from an alphabet without look-alikes (no 0/O, 1/I/L).
fn new_pairing_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    (0..8)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}

#[async_trait::async_trait]
impl BridgeStateStore for BridgeStore {
    async fn get(&self, bridge: &str, key: &str) -> Result<Option<String>, BridgeError> {
        let key = entry_key(bridge, key);
        self.blocking(move |database| {
            let transaction = database.begin_read().map_err(store_error)?;
            let table = transaction.open_table(STATE).map_err(store_error)?;
            Ok(table
                .get(key.as_str())
                .map_err(store_error)?
                .map(|value| value.value().to_owned()))
        })
        .await
    }

    async fn put(&self, bridge: &str, key: &str, value: &str) -> Result<(), BridgeError> {
        let (key, value) = (entry_key(bridge, key), value.to_owned());
        self.blocking(move |database| write_one(database, STATE, &key, Some(value.as_str())))
            .await
    }
}
