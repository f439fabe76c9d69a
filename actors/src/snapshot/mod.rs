//! Session snapshots: what a session writes so that it survives passivation, restarts and
//! `kill -9`, and the `SnapshotStore` plugin trait that keeps them.
//!
//! A snapshot is encoded as a 2-byte little-endian format version followed by bincode, so an
//! upgraded node can still read what an older one wrote ([`SessionSnapshot::decode`] knows
//! every version it ever wrote).

pub mod conformance;
mod journal;
mod local;
mod local_inbox;
mod memory;
mod pictures;

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::storage::StoreHealth;
pub use journal::{
    EncodedRecord, JOURNAL_FORMAT_VERSION, JOURNAL_WITH_PICTURES_VERSION, Journal, JournalRecord,
    RECORDS_PER_SNAPSHOT, RecordView, journal_of,
};
pub use local::LocalSnapshotStore;
pub use memory::MemorySnapshotStore;

use crate::ids::SessionKey;
use crate::provider::{ChatMessage, Role, ToolCall};
use crate::uploads::ImageRef;

/// The format version this build writes.
/// Version 1: key, history, updated_at. Version 2 adds the tool calls waiting for the user's
/// confirmation.
pub const SNAPSHOT_FORMAT_VERSION: u16 = 2;
/// Version 2 followed by the pictures of the history's entries: written only when there are
/// any ([`pictures`]).
pub const SNAPSHOT_WITH_PICTURES_VERSION: u16 = 3;

/// One entry of a session's history, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub role: Role,
    /// Shared with the prompts built from it.
    pub content: Arc<str>,
    pub tool_calls: Vec<ToolCall>,
    pub tool_call_id: Option<String>,
    /// The inbound message id (user turns) or reply id (assistant turns).
    pub message_id: Option<String>,
    /// Unix seconds.
    pub timestamp: u64,
    /// Pictures the person's message showed. Not part of the entry's own encoding: they
    /// follow a snapshot's or record's body ([`pictures`]).
    #[serde(skip)]
    pub images: Vec<ImageRef>,
}

impl HistoryEntry {
    pub fn to_chat_message(&self) -> ChatMessage {
        ChatMessage {
            role: self.role,
            content: self.content.clone(),
            images: Vec::new(),
            tool_calls: self.tool_calls.clone(),
            tool_call_id: self.tool_call_id.clone(),
        }
    }
}

/// Everything a session needs to come back exactly as it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    pub key: SessionKey,
    /// The bounded history window, oldest first. A repeated inbound id is answered from it
    /// (its user entry and the reply after it), so no separate dedupe list is kept.
    pub history: Vec<HistoryEntry>,
    /// Unix seconds of the last change.
    pub updated_at: u64,
    /// Tool calls waiting for the user's yes or no.
    pub pending: Option<PendingTools>,
}

/// Tool calls the model asked for that wait for the user's confirmation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTools {
    /// The text the model wrote with the calls.
    pub text: String,
    pub calls: Vec<ToolCall>,
    /// The tool round they belong to.
    pub round: u32,
    /// Who asked: only their yes or no decides (others in a group cannot).
    pub requested_by: String,
    /// Unix seconds when the user was asked.
    pub asked_at: u64,
}

/// The layout of format version 1, read when an older node wrote the snapshot.
#[derive(Deserialize)]
struct SnapshotV1 {
    key: SessionKey,
    history: Vec<HistoryEntry>,
    updated_at: u64,
}

/// Why a snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("snapshot store i/o failed: {0}")]
    Io(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot create the data dir {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The task that wrote a snapshot panicked or was cancelled.
    #[error("the snapshot write stopped: {0}")]
    WriteStopped(#[source] tokio::task::JoinError),
    #[error("snapshot of {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("snapshot format version {0} is newer than this build understands")]
    UnknownVersion(u16),
    #[error("snapshot store is closed")]
    Closed,
    /// Someone else wrote the snapshot since this node read it (another node took the
    /// session over): this node's copy is stale and must not be written.
    #[error("snapshot of {key} was changed by another writer")]
    Conflict { key: String },
}

/// A session's state borrowed for encoding: serializes exactly as [`SessionSnapshot`] (same
/// fields in the same order; a `VecDeque` encodes like a `Vec`), without copying the history.
#[derive(Debug, Serialize)]
pub struct SnapshotView<'a> {
    pub key: &'a SessionKey,
    pub history: &'a VecDeque<HistoryEntry>,
    pub updated_at: u64,
    pub pending: Option<&'a PendingTools>,
}

impl SnapshotView<'_> {
    /// Version prefix + bincode (and the pictures, when the history has any).
    pub fn encode(&self) -> EncodedSnapshot {
        let mut bytes = SNAPSHOT_FORMAT_VERSION.to_le_bytes().to_vec();
        bincode::serde::encode_into_std_write(self, &mut bytes, bincode::config::standard())
            .expect("a session snapshot holds only bincode-encodable types");
        if pictures::append(self.history.iter(), &mut bytes) {
            bytes[..2].copy_from_slice(&SNAPSHOT_WITH_PICTURES_VERSION.to_le_bytes());
        }
        EncodedSnapshot {
            key: self.key.clone(),
            bytes,
        }
    }
}

/// A snapshot ready to store: its key and its versioned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedSnapshot {
    pub key: SessionKey,
    pub bytes: Vec<u8>,
}

impl SessionSnapshot {
    pub fn empty(key: SessionKey) -> Self {
        Self {
            key,
            history: Vec::new(),
            updated_at: 0,
            pending: None,
        }
    }

    /// Version prefix + bincode.
    pub fn encode(&self) -> EncodedSnapshot {
        let history: VecDeque<HistoryEntry> = self.history.iter().cloned().collect();
        SnapshotView {
            key: &self.key,
            history: &history,
            updated_at: self.updated_at,
            pending: self.pending.as_ref(),
        }
        .encode()
    }

    /// Reads any version this build knows.
    pub fn decode(key: &SessionKey, bytes: &[u8]) -> Result<Self, StoreError> {
        let (version, body) = split_version(key, bytes)?;
        let config = bincode::config::standard();
        match version {
            1 => {
                let (old, _): (SnapshotV1, _) = bincode::serde::decode_from_slice(body, config)
                    .map_err(|error| corrupt(key, error.to_string()))?;
                Ok(Self {
                    key: old.key,
                    history: old.history,
                    updated_at: old.updated_at,
                    pending: None,
                })
            }
            SNAPSHOT_FORMAT_VERSION | SNAPSHOT_WITH_PICTURES_VERSION => {
                let (mut snapshot, read): (Self, _) =
                    bincode::serde::decode_from_slice(body, config)
                        .map_err(|error| corrupt(key, error.to_string()))?;
                if version == SNAPSHOT_WITH_PICTURES_VERSION {
                    pictures::attach(&mut snapshot.history, &body[read..])
                        .map_err(|reason| corrupt(key, reason))?;
                }
                Ok(snapshot)
            }
            other => Err(StoreError::UnknownVersion(other)),
        }
    }
}

fn corrupt(key: &SessionKey, reason: String) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        reason,
    }
}

/// Stored bytes of `key` split into their 2-byte little-endian format version and body.
fn split_version<'b>(key: &SessionKey, bytes: &'b [u8]) -> Result<(u16, &'b [u8]), StoreError> {
    let (version, body) = bytes
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupt(key, "shorter than its version header".into()))?;
    Ok((u16::from_le_bytes(*version), body))
}

/// Keeps session snapshots. Implementations: [`LocalSnapshotStore`] (the embedded default,
/// on disk), [`MemorySnapshotStore`] (tests), and JetStream KV in the cluster crate.
/// Every implementation must pass [`conformance::run_all`].
#[async_trait::async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// The snapshot with the session's journal records replayed onto it.
    async fn load(&self, key: &SessionKey) -> Result<Option<SessionSnapshot>, StoreError>;

    /// Returns once the snapshot is durable. It replaces the session's journal records,
    /// if the store keeps a journal.
    async fn save(&self, snapshot: EncodedSnapshot) -> Result<(), StoreError>;

    /// Deletes the snapshot and the session's journal records. Returns whether there was a
    /// snapshot to delete.
    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError>;

    /// Keys in order, strictly after `after`, at most `limit` of them.
    async fn list(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionKey>, StoreError>;

    /// The store's turn journal, if it keeps one: a session then appends its new entries
    /// after a turn instead of rewriting its snapshot (see [`journal`]). A store without one
    /// gets whole snapshots only.
    fn journal(self: Arc<Self>) -> Option<Arc<dyn Journal>> {
        None
    }

    /// How many snapshots are stored (cheap: used by `/metrics`).
    fn count(&self) -> u64;

    /// The session left this node's memory: drop whatever the store keeps about it in RAM
    /// (the cluster store's last-seen revision). Its next `load` starts afresh.
    fn forget(&self, _key: &SessionKey) {}

    /// Whether writes succeed now: a node whose store is failing (a full disk) is not
    /// ready, and says why.
    fn health(&self) -> StoreHealth {
        StoreHealth::Writable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SessionSnapshot {
        SessionSnapshot {
            key: SessionKey::new_unchecked("ws", "alice"),
            history: vec![HistoryEntry {
                role: Role::User,
                content: "hi".into(),
                tool_calls: vec![ToolCall {
                    id: "t".into(),
                    name: "n".into(),
                    arguments: "{}".into(),
                }],
                tool_call_id: None,
                message_id: Some("c1".into()),
                timestamp: 3,
                images: Vec::new(),
            }],
            updated_at: 4,
            pending: Some(PendingTools {
                text: "let me check".into(),
                calls: vec![ToolCall {
                    id: "t2".into(),
                    name: "notes__forget".into(),
                    arguments: "{}".into(),
                }],
                round: 1,
                requested_by: "alice".into(),
                asked_at: 5,
            }),
        }
    }

    #[test]
    fn reads_snapshots_of_format_version_1() {
        #[derive(Serialize)]
        struct V1<'a> {
            key: &'a SessionKey,
            history: &'a [HistoryEntry],
            updated_at: u64,
        }
        let snapshot = sample();
        let mut bytes = 1u16.to_le_bytes().to_vec();
        let old = V1 {
            key: &snapshot.key,
            history: &snapshot.history,
            updated_at: snapshot.updated_at,
        };
        bytes.extend(bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap());
        let read = SessionSnapshot::decode(&snapshot.key, &bytes).unwrap();
        assert_eq!(read.history, snapshot.history);
        assert_eq!(read.updated_at, 4);
        assert_eq!(read.pending, None);
    }

    #[test]
    fn pictures_are_stored_after_the_body_in_the_newer_format_only_when_there_are_any() {
        let mut snapshot = sample();
        let upload =
            crate::uploads::UploadId::parse("up-0123456789abcdef0123456789abcdef").unwrap();
        snapshot.history[0].images.push(ImageRef {
            upload,
            media_type: crate::provider::ImageType::Webp,
        });
        let bytes = snapshot.encode().bytes;
        assert_eq!(&bytes[..2], &SNAPSHOT_WITH_PICTURES_VERSION.to_le_bytes());
        assert_eq!(
            SessionSnapshot::decode(&snapshot.key, &bytes).unwrap(),
            snapshot
        );
        // The body is the older format's: an older build's reader gets every entry.
        let (older, _): (SessionSnapshot, _) =
            bincode::serde::decode_from_slice(&bytes[2..], bincode::config::standard()).unwrap();
        assert_eq!(older.history[0].content, snapshot.history[0].content);
        // A cut-off list of pictures is corrupt, not silently dropped.
        let cut = &bytes[..bytes.len() - 3];
        assert!(matches!(
            SessionSnapshot::decode(&snapshot.key, cut),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn round_trips_through_the_versioned_encoding() {
        let snapshot = sample();
        let encoded = snapshot.encode();
        let bytes = encoded.bytes;
        assert_eq!(&bytes[..2], &SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        let plain = bincode::serde::encode_to_vec(&snapshot, bincode::config::standard()).unwrap();
        assert_eq!(
            &bytes[2..],
            plain.as_slice(),
            "the view encodes like the owned form"
        );
        assert_eq!(
            SessionSnapshot::decode(&snapshot.key, &bytes).unwrap(),
            snapshot
        );
    }

    #[test]
    fn refuses_unknown_versions_and_garbage() {
        let key = SessionKey::new_unchecked("ws", "a");
        assert!(matches!(
            SessionSnapshot::decode(&key, &[9, 9, 1, 2]),
            Err(StoreError::UnknownVersion(0x0909))
        ));
        assert!(matches!(
            SessionSnapshot::decode(&key, &[1]),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            SessionSnapshot::decode(&key, &[1, 0, 0xff, 0xff, 0xff]),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
