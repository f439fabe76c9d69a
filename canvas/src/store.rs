//! Where rooms are kept: per room, a snapshot (the whole document as one update) and the
//! journal of updates after it, in order. Writes of every room go through one group-commit
//! writer thread: many rooms appending at once cost one fsync. A room appends each update before any client sees
//! it, and folds the journal into a new snapshot now and then ([`CanvasStore::compact`]).
//!
//! [`LocalCanvasStore`] keeps them in `canvas.redb` in the data dir (on the shared
//! [`Storage`], so a full disk is reported and recovered from like every other store).

use std::path::Path;
use std::sync::Arc;

use redb::{ReadableTable, TableDefinition};
use tokio::sync::mpsc;
use troupe_actors::group_commit::{CommitFailed, GroupCommit, Write, WriteError};
use troupe_actors::storage::{Storage, StorageError};

use crate::protocol::Frame;
use crate::room_name::RoomName;

/// `(room, sequence)` → a Yjs update (v1).
const JOURNAL: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("canvas_journal_v1");
/// room → (the sequence it covers, the whole document as one update).
const SNAPSHOTS: TableDefinition<'_, &str, (u64, &[u8])> =
    TableDefinition::new("canvas_snapshots_v1");
/// room → (stored bytes as the room counts them, last update in ms since the Unix epoch):
/// the room list.
const ROOMS: TableDefinition<'_, &str, (u64, u64)> = TableDefinition::new("rooms");
/// Most journal writes folded into one transaction.
const MAX_WRITES_PER_COMMIT: usize = 1024;
/// redb's page cache: rooms in use live in memory, so the cache only serves loading a
/// passivated room. It fills as the file grows and never empties, so it is what a node
/// that has seen many rooms keeps for them all: kept as small as the session store's.
const CACHE_BYTES: usize = 2 * 1024 * 1024;

/// Why the canvas store failed.
#[derive(Debug, thiserror::Error)]
pub enum CanvasStoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the canvas store failed: {0}")]
    Database(#[from] Box<redb::Error>),
    #[error("the canvas store's worker stopped: {0}")]
    Worker(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Commit(#[from] CommitFailed),
    /// The cluster (NATS JetStream) failed to do `what`.
    #[error("the cluster could not {what}: {source}")]
    Cluster {
        what: &'static str,
        #[source]
        source: async_nats::Error,
    },
    /// A message is larger than the cluster carries (NATS `max_payload`).
    #[error("{bytes} bytes is more than the cluster carries in one message ({limit})")]
    TooLarge { bytes: usize, limit: usize },
}

impl CanvasStoreError {
    /// A failure of the cluster to do `what`.
    pub(crate) fn cluster(what: &'static str, source: impl Into<async_nats::Error>) -> Self {
        Self::Cluster {
            what,
            source: source.into(),
        }
    }
}

/// redb's errors, boxed (they are large).
macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for CanvasStoreError {
            fn from(error: $error) -> Self {
                Self::Database(Box::new(error.into()))
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A room as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredRoom {
    /// The document as one update, covering the journal up to `snapshot_sequence`.
    pub snapshot: Option<Vec<u8>>,
    /// Updates after the snapshot, in order.
    pub journal: Vec<Vec<u8>>,
    /// The sequence of the last stored update (0 when none).
    pub last_sequence: u64,
}

/// One stored room, as the room list shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RoomRecord {
    pub room: RoomName,
    /// Bytes stored for the document (its snapshot and journal), as the room counts them
    /// against `canvas.max_document_bytes`.
    pub bytes: u64,
    /// When an update was last stored, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// What other nodes do in a room that is open on several nodes at once (in a cluster,
/// [`crate::jetstream::JetStreamCanvasStore`]), in the order the cluster stored it.
#[derive(Debug)]
pub enum Remote {
    /// An update another node stored at `sequence`; `whole` when it is a snapshot (the whole
    /// document as one update), of which only what the room lacks is news.
    Update {
        sequence: u64,
        update: Vec<u8>,
        whole: bool,
    },
    /// This node's own update or snapshot, stored at `sequence`, came back: everything stored
    /// up to it is in the room's document.
    Echo { sequence: u64 },
    /// Presence from another node's clients: a y-sync awareness frame.
    Presence { node: Arc<str>, frame: Vec<u8> },
    /// A replica opened on another node and asks for this node's clients' presence.
    PresenceWanted,
    /// Another node deleted the room.
    Deleted,
    /// The feed broke (the cluster cannot be reached): the room must close and load again.
    Lost,
}

/// A room as opened: what is stored, and, where other nodes may have it open too, the feed
/// of what they do from then on.
#[derive(Debug)]
pub struct OpenedRoom {
    pub stored: StoredRoom,
    pub feed: Option<mpsc::Receiver<Remote>>,
}

/// The rooms' durable storage.
#[async_trait::async_trait]
pub trait CanvasStore: Send + Sync + 'static {
    /// Everything stored for `room` (empty for a new room).
    async fn load(&self, room: &RoomName) -> Result<StoredRoom, CanvasStoreError>;

    /// Opens `room` for a room actor: what is stored, and the feed of other nodes' updates
    /// and presence after it where there can be any (none on one node).
    async fn open(&self, room: &RoomName) -> Result<OpenedRoom, CanvasStoreError> {
        Ok(OpenedRoom {
            stored: self.load(room).await?,
            feed: None,
        })
    }

    /// Tells the room's other nodes about presence (a y-sync awareness frame) of this node's
    /// clients. Best effort and never waits; nothing to do on one node.
    fn share_presence(&self, _room: &RoomName, _frame: &Frame) {}

    /// Appends `updates` after `after` (the last stored sequence), durably: it returns once
    /// they are on disk. `size` is the room's stored bytes with them (for the room list).
    /// Answers the new last sequence.
    async fn append(
        &self,
        room: &RoomName,
        after: u64,
        updates: Vec<Vec<u8>>,
        size: u64,
    ) -> Result<u64, CanvasStoreError>;

    /// Stores `snapshot` as the document up to `through`, and drops the journal up to it.
    async fn compact(
        &self,
        room: &RoomName,
        through: u64,
        snapshot: Vec<u8>,
    ) -> Result<(), CanvasStoreError>;

    /// Forgets the room; answers whether anything was stored.
    async fn delete(&self, room: &RoomName) -> Result<bool, CanvasStoreError>;

    /// Every stored room, by name.
    async fn rooms(&self) -> Result<Vec<RoomRecord>, CanvasStoreError>;
}

/// One journal write, applied in its batch's transaction.
enum CanvasWrite {
    Append {
        room: RoomName,
        after: u64,
        updates: Vec<Vec<u8>>,
        size: u64,
    },
    Compact {
        room: RoomName,
        through: u64,
        snapshot: Vec<u8>,
    },
    Delete {
        room: RoomName,
    },
}

impl Write for CanvasWrite {
    /// The last sequence after an append; whether anything was there for a delete.
    type Output = u64;

    fn apply(&self, transaction: &redb::WriteTransaction) -> Result<u64, WriteError> {
        match self {
            Self::Append {
                room,
                after,
                updates,
                size,
            } => {
                let mut journal = transaction.open_table(JOURNAL)?;
                let mut sequence = *after;
                for update in updates {
                    sequence += 1;
                    journal.insert((room.as_str(), sequence), update.as_slice())?;
                }
                transaction
                    .open_table(ROOMS)?
                    .insert(room.as_str(), (*size, now_ms()))?;
                Ok(sequence)
            }
            Self::Compact {
                room,
                through,
                snapshot,
            } => {
                let mut snapshots = transaction.open_table(SNAPSHOTS)?;
                snapshots.insert(room.as_str(), (*through, snapshot.as_slice()))?;
                let mut journal = transaction.open_table(JOURNAL)?;
                journal.retain_in((room.as_str(), 0)..=(room.as_str(), *through), |_, _| false)?;
                let mut rooms = transaction.open_table(ROOMS)?;
                let updated = rooms
                    .get(room.as_str())?
                    .map_or_else(now_ms, |entry| entry.value().1);
                rooms.insert(room.as_str(), (snapshot.len() as u64, updated))?;
                Ok(*through)
            }
            Self::Delete { room } => {
                let mut snapshots = transaction.open_table(SNAPSHOTS)?;
                let had_snapshot = snapshots.remove(room.as_str())?.is_some();
                let mut journal = transaction.open_table(JOURNAL)?;
                let journaled = journal.range(room_range(room.as_str()))?.next().is_some();
                journal.retain_in(room_range(room.as_str()), |_, _| false)?;
                transaction.open_table(ROOMS)?.remove(room.as_str())?;
                Ok(u64::from(had_snapshot || journaled))
            }
        }
    }
}

/// Rooms in `canvas.redb`, written by one group-commit writer thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LocalCanvasStore {
    storage: Storage,
    writer: Arc<GroupCommit<CanvasWrite>>,
}

fn prepare(transaction: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    transaction.open_table(JOURNAL)?;
    transaction.open_table(SNAPSHOTS)?;
    transaction.open_table(ROOMS)?;
    Ok(())
}

impl LocalCanvasStore {
    /// `canvas.redb` in `data_dir`, created on the first write.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let storage = Storage::lazy(
            "canvas",
            &data_dir.join("canvas.redb"),
            CACHE_BYTES,
            prepare,
        );
        let writer = GroupCommit::start("canvas", storage.clone(), MAX_WRITES_PER_COMMIT)?;
        Ok(Self {
            storage,
            writer: Arc::new(writer),
        })
    }

    /// The database, for health reports next to the other stores.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    async fn write(&self, write: CanvasWrite) -> Result<u64, CanvasStoreError> {
        Ok(self.writer.submit(write).await?)
    }

    async fn blocking_if_created<T: Send + 'static>(
        &self,
        absent: T,
        work: impl FnOnce(&redb::Database) -> Result<T, CanvasStoreError> + Send + 'static,
    ) -> Result<T, CanvasStoreError> {
        let storage = self.storage.clone();
        let done = tokio::task::spawn_blocking(move || storage.run_existing(work)).await??;
        Ok(done.transpose()?.unwrap_or(absent))
    }
}

fn room_range(room: &str) -> std::ops::RangeInclusive<(&str, u64)> {
    (room, 0)..=(room, u64::MAX)
}

#[async_trait::async_trait]
impl CanvasStore for LocalCanvasStore {
    async fn load(&self, room: &RoomName) -> Result<StoredRoom, CanvasStoreError> {
        let room = room.as_str().to_owned();
        self.blocking_if_created(StoredRoom::default(), move |database| {
            let transaction = database.begin_read()?;
            let snapshots = transaction.open_table(SNAPSHOTS)?;
            let mut stored = StoredRoom::default();
            if let Some(entry) = snapshots.get(room.as_str())? {
                let (through, bytes) = entry.value();
                stored.snapshot = Some(bytes.to_vec());
                stored.last_sequence = through;
            }
            let journal = transaction.open_table(JOURNAL)?;
            for entry in journal.range(room_range(&room))? {
                let (key, update) = entry?;
                stored.last_sequence = key.value().1;
                stored.journal.push(update.value().to_vec());
            }
            Ok(stored)
        })
        .await
    }

    async fn append(
        &self,
        room: &RoomName,
        after: u64,
        updates: Vec<Vec<u8>>,
        size: u64,
    ) -> Result<u64, CanvasStoreError> {
        self.write(CanvasWrite::Append {
            room: room.clone(),
            after,
            updates,
            size,
        })
        .await
    }

    async fn compact(
        &self,
        room: &RoomName,
        through: u64,
        snapshot: Vec<u8>,
    ) -> Result<(), CanvasStoreError> {
        self.write(CanvasWrite::Compact {
            room: room.clone(),
            through,
            snapshot,
        })
        .await
        .map(drop)
    }

    async fn delete(&self, room: &RoomName) -> Result<bool, CanvasStoreError> {
        self.write(CanvasWrite::Delete { room: room.clone() })
            .await
            .map(|deleted| deleted == 1)
    }

    async fn rooms(&self) -> Result<Vec<RoomRecord>, CanvasStoreError> {
        self.blocking_if_created(Vec::new(), |database| {
            let transaction = database.begin_read()?;
            let rooms = transaction.open_table(ROOMS)?;
            let mut records = Vec::new();
            for entry in rooms.iter()? {
                let (name, value) = entry?;
                // Names were validated before they were stored.
                let Ok(room) = RoomName::parse(name.value()) else {
                    continue;
                };
                let (bytes, updated_at_ms) = value.value();
                records.push(RoomRecord {
                    room,
                    bytes,
                    updated_at_ms,
                });
            }
            Ok(records)
        })
        .await
    }
}

/// A shared store.
pub type SharedCanvasStore = Arc<dyn CanvasStore>;

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[tokio::test]
    async fn a_new_room_is_empty_and_creates_no_file() {
        let directory = tempfile::tempdir().unwrap();
        let store = LocalCanvasStore::open(directory.path()).unwrap();
        assert_eq!(store.load(&room("a")).await.unwrap(), StoredRoom::default());
        assert!(!directory.path().join("canvas.redb").exists());
    }

    #[tokio::test]
    async fn appended_updates_load_in_order_and_compaction_replaces_them() {
        let directory = tempfile::tempdir().unwrap();
        let store = LocalCanvasStore::open(directory.path()).unwrap();
        let (a, b) = (room("a"), room("b"));
        let last = store
            .append(&a, 0, vec![vec![1], vec![2]], 2)
            .await
            .unwrap();
        assert_eq!(last, 2);
        store.append(&b, 0, vec![vec![9]], 1).await.unwrap();
        let last = store.append(&a, last, vec![vec![3]], 3).await.unwrap();
        let loaded = store.load(&a).await.unwrap();
        assert_eq!(loaded.journal, [vec![1], vec![2], vec![3]]);
        assert_eq!((loaded.snapshot, loaded.last_sequence), (None, 3));

        let sizes = |records: Vec<RoomRecord>| -> Vec<(String, u64)> {
            records
                .into_iter()
                .map(|record| (record.room.as_str().to_owned(), record.bytes))
                .collect()
        };
        assert_eq!(
            sizes(store.rooms().await.unwrap()),
            [("a".to_owned(), 3), ("b".to_owned(), 1)]
        );
        store.compact(&a, 2, vec![12]).await.unwrap();
        let compacted = store.load(&a).await.unwrap();
        assert_eq!(compacted.snapshot, Some(vec![12]));
        assert_eq!(compacted.journal, [vec![3]]);
        assert_eq!(compacted.last_sequence, last);
        assert_eq!(store.load(&b).await.unwrap().journal, [vec![9]]);

        assert_eq!(
            sizes(store.rooms().await.unwrap()),
            [("a".to_owned(), 1), ("b".to_owned(), 1)],
            "the snapshot's size"
        );
        assert!(store.delete(&a).await.unwrap());
        assert!(!store.delete(&a).await.unwrap());
        assert_eq!(sizes(store.rooms().await.unwrap()), [("b".to_owned(), 1)]);
        assert_eq!(store.load(&a).await.unwrap(), StoredRoom::default());
        assert_eq!(store.load(&b).await.unwrap().journal, [vec![9]]);
    }

    #[tokio::test]
    async fn rooms_survive_reopening() {
        let directory = tempfile::tempdir().unwrap();
        let name = room("kept");
        {
            let store = LocalCanvasStore::open(directory.path()).unwrap();
            store.append(&name, 0, vec![vec![7]], 1).await.unwrap();
        }
        let store = LocalCanvasStore::open(directory.path()).unwrap();
        assert_eq!(store.load(&name).await.unwrap().journal, [vec![7]]);
        let listed = store.rooms().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].updated_at_ms > 0);
    }
}
