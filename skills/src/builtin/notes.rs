//! `notes`: remember, recall and forget things, per person. Notes are kept in the node's
//! session store under the key `notes:<person>` (on disk for a single node, JetStream KV in
//! a cluster), so they survive restarts and follow the person across nodes and platforms.

use std::sync::Arc;

use dashmap::DashMap;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use troupe_actors::SessionKey;
use troupe_actors::message::unix_now;
use troupe_actors::provider::Role;
use troupe_actors::skill::{Skill, SkillCall, SkillError, SkillErrorCode, SkillManifest};
use troupe_actors::snapshot::{HistoryEntry, SessionSnapshot, SnapshotStore, StoreError};

use super::{text_argument, tool};

/// The platform part of a notes key (reserved: no message can claim it).
pub(super) const NOTES_PLATFORM: &str = troupe_actors::ids::RESERVED_PLATFORMS[0];
/// Most notes kept per person; the oldest go first.
const MAX_NOTES: usize = 500;
/// Longest note.
const MAX_NOTE_BYTES: usize = 4_000;
/// Attempts when another node changed the same notes at the same time.
const WRITE_ATTEMPTS: usize = 4;

pub(super) struct Notes {
    store: Arc<dyn SnapshotStore>,
    /// One writer per person on this node.
    locks: DashMap<String, Arc<Mutex<()>>>,
}

impl Notes {
    pub(super) fn new(store: Arc<dyn SnapshotStore>) -> Self {
        Self {
            store,
            locks: DashMap::new(),
        }
    }

    fn key(person: &str) -> Result<SessionKey, SkillError> {
        SessionKey::new(NOTES_PLATFORM, person)
            .map_err(|error| SkillError::failed(format!("no notes for this person: {error}")))
    }

    async fn load(&self, key: &SessionKey) -> Result<SessionSnapshot, SkillError> {
        match self.store.load(key).await {
            Ok(Some(snapshot)) => Ok(snapshot),
            Ok(None) => Ok(SessionSnapshot::empty(key.clone())),
            Err(error) => Err(SkillError::failed(format!(
                "the notes could not be read: {error}"
            ))),
        }
    }

    /// Reads, changes and writes a person's notes; again when another node wrote them
    /// meanwhile. Returns what `change` returned.
    async fn update<T>(
        &self,
        person: &str,
        mut change: impl FnMut(&mut Vec<HistoryEntry>) -> Result<T, SkillError>,
    ) -> Result<T, SkillError> {
        let key = Self::key(person)?;
        let lock = Arc::clone(&self.locks.entry(person.to_owned()).or_default());
        let _writer = lock.lock().await;
        for _ in 0..WRITE_ATTEMPTS {
            let mut snapshot = self.load(&key).await?;
            let outcome = change(&mut snapshot.history)?;
            snapshot.updated_at = unix_now();
            let saved = if snapshot.history.is_empty() {
                self.store.delete(&key).await.map(|_| ())
            } else {
                self.store.save(snapshot.encode()).await
            };
            match saved {
                Ok(()) => {
                    self.store.forget(&key);
                    return Ok(outcome);
                }
                Err(StoreError::Conflict { .. }) => self.store.forget(&key),
                Err(error) => {
                    self.store.forget(&key);
                    return Err(SkillError::failed(format!(
                        "the notes could not be stored: {error}"
                    )));
                }
            }
        }
        Err(SkillError::failed(
            "the notes kept changing elsewhere; try again",
        ))
    }

    async fn remember(&self, person: &str, text: &str) -> Result<Value, SkillError> {
        let text = text.trim();
        if text.is_empty() || text.len() > MAX_NOTE_BYTES {
            return Err(SkillError::invalid(format!(
                "a note holds 1 to {MAX_NOTE_BYTES} bytes"
            )));
        }
        let id = format!("n-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let note = HistoryEntry {
            role: Role::System,
            content: text.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            message_id: Some(id.clone()),
            timestamp: unix_now(),
            images: Vec::new(),
        };
        self.update(person, |notes| {
            notes.push(note.clone());
            let excess = notes.len().saturating_sub(MAX_NOTES);
            notes.drain(..excess);
            Ok(())
        })
        .await?;
        Ok(json!({"remembered": text, "id": id}))
    }

    async fn recall(&self, person: &str, query: Option<&str>) -> Result<Value, SkillError> {
        let snapshot = self.load(&Self::key(person)?).await?;
        self.store.forget(&snapshot.key);
        let notes: Vec<Value> = snapshot
            .history
            .iter()
            .filter(|note| query.is_none_or(|query| matches(&note.content, query)))
            .map(note_json)
            .collect();
        Ok(json!({"count": notes.len(), "notes": notes}))
    }

    async fn forget(&self, person: &str, arguments: &Value) -> Result<Value, SkillError> {
        let id = arguments["id"].as_str();
        let query = arguments["query"].as_str();
        if id.is_none() && query.is_none() {
            return Err(SkillError::invalid(
                "give the note's `id` or a `query` it matches",
            ));
        }
        let forgotten = self
            .update(person, |notes| {
                let (gone, kept): (Vec<HistoryEntry>, Vec<HistoryEntry>) =
                    notes.drain(..).partition(|note| {
                        id.is_some_and(|id| note.message_id.as_deref() == Some(id))
                            || query.is_some_and(|query| matches(&note.content, query))
                    });
                *notes = kept;
                Ok(gone)
            })
            .await?;
        if forgotten.is_empty() {
            return Err(SkillError::new(SkillErrorCode::NotFound, "no note matched"));
        }
        Ok(json!({"forgotten": forgotten.iter().map(note_json).collect::<Vec<_>>()}))
    }
}

/// Every word of the query appears in the note (case-insensitive).
fn matches(note: &str, query: &str) -> bool {
    let note = note.to_lowercase();
    query
        .to_lowercase()
        .split_whitespace()
        .all(|word| note.contains(word))
}

fn note_json(note: &HistoryEntry) -> Value {
    json!({"id": note.message_id, "text": note.content.as_ref(), "saved_at": note.timestamp})
}

#[async_trait::async_trait]
impl Skill for Notes {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        Ok(SkillManifest {
            name: "notes".into(),
            description:
                "Long-term memory: notes about the person, kept across conversations and platforms."
                    .into(),
            version: env!("CARGO_PKG_VERSION").into(),
            tools: vec![
                tool(
                    "remember",
                    "Saves a note for later (a fact, a preference, something to keep).",
                    json!({"type": "object", "properties": {"text": {"type": "string", "minLength": 1}},
                        "required": ["text"], "additionalProperties": false}),
                ),
                tool(
                    "recall",
                    "Lists saved notes; with a query, only those containing all its words.",
                    json!({"type": "object", "properties": {"query": {"type": "string"}},
                        "additionalProperties": false}),
                ),
                tool(
                    "forget",
                    "Deletes notes: the one with this id, or every note matching the query.",
                    json!({"type": "object", "properties": {"id": {"type": "string"}, "query": {"type": "string"}},
                        "additionalProperties": false}),
                ),
            ],
            permissions: Default::default(),
        })
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        let person = call.session.person.as_str();
        match call.action.as_str() {
            "remember" => {
                self.remember(person, text_argument(&call.arguments, "text")?)
                    .await
            }
            "recall" => self.recall(person, call.arguments["query"].as_str()).await,
            "forget" => self.forget(person, &call.arguments).await,
            other => Err(SkillError::invalid(format!("no tool `{other}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use troupe_actors::snapshot::MemorySnapshotStore;

    use super::super::tests::call;
    use super::*;

    #[tokio::test]
    async fn remembers_recalls_and_forgets_per_person() {
        let store = Arc::new(MemorySnapshotStore::new());
        let notes = Notes::new(store.clone());
        let ada = "telegram:1";
        notes
            .execute(call(ada, "remember", json!({"text": "Likes green tea"})))
            .await
            .unwrap();
        notes
            .execute(call(
                ada,
                "remember",
                json!({"text": "Cat is called Turing"}),
            ))
            .await
            .unwrap();
        notes
            .execute(call(
                "slack:U2",
                "remember",
                json!({"text": "Someone else"}),
            ))
            .await
            .unwrap();

        let all = notes.execute(call(ada, "recall", json!({}))).await.unwrap();
        assert_eq!(all["count"], 2);
        let tea = notes
            .execute(call(ada, "recall", json!({"query": "GREEN tea"})))
            .await
            .unwrap();
        assert_eq!(tea["notes"][0]["text"], "Likes green tea");

        // A new Notes over the same store (a restart) still knows them.
        let restarted = Notes::new(store.clone());
        let forgotten = restarted
            .execute(call(ada, "forget", json!({"query": "cat"})))
            .await
            .unwrap();
        assert_eq!(forgotten["forgotten"][0]["text"], "Cat is called Turing");
        let left = restarted
            .execute(call(ada, "recall", json!({})))
            .await
            .unwrap();
        assert_eq!(left["count"], 1);
        let missing = restarted
            .execute(call(ada, "forget", json!({"id": "n-nope"})))
            .await
            .unwrap_err();
        assert_eq!(missing.code, SkillErrorCode::NotFound);
        let other = restarted
            .execute(call("slack:U2", "recall", json!({})))
            .await
            .unwrap();
        assert_eq!(other["notes"][0]["text"], "Someone else");
    }
}
