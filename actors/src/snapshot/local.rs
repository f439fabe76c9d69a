//! The embedded default [`SnapshotStore`]: one redb database file under the data dir.
//!
//! Writes go to one writer thread that commits whatever is queued in a single durable
//! (fsync'd) transaction ([`GroupCommit`]), so many sessions saving at once cost one fsync,
//! and the async runtime never waits on the disk. Reads run on tokio's blocking pool.
//!
//! A failed commit (a full disk) leaves redb's handle unusable until it is reopened: the
//! [`Storage`] underneath reports itself failing and recovers by itself once writes can
//! succeed again (see [`crate::storage`]).

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::local_inbox::InboxState;
use super::{
    EncodedRecord, EncodedSnapshot, Journal, SessionSnapshot, SnapshotStore, StoreError,
    StoreHealth,
};
use crate::group_commit::{CommitFailed, GroupCommit, Write, WriteError};
use crate::ids::SessionKey;
use crate::storage::{Storage, StorageError};

const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions_v1");
/// The turn journal (see [`super::journal`]): `platform NUL conversation NUL seq` → record,
/// `seq` in 16 hex digits so that byte order is append order.
const JOURNAL: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("journal_v1");
/// The inbox (see [`crate::inbox`]): `platform NUL conversation NUL id` → order + message.
pub(super) const INBOX: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("inbox_v1");
/// Most writes folded into one transaction.
const MAX_WRITES_PER_COMMIT: usize = 1024;
/// redb's page cache. Small on purpose: active sessions live in actor memory, so the cache
/// only serves (re)activations, and passivated sessions must cost no RAM.
pub(crate) const DEFAULT_CACHE_BYTES: usize = 2 * 1024 * 1024;

/// One write of a snapshot or of the inbox; answers whether the key existed before.
pub(super) enum SnapshotWrite {
    /// Stores a session's snapshot and drops its journal records (the snapshot holds them).
    Put {
        key: String,
        bytes: Vec<u8>,
    },
    /// Appends a record to a session's journal.
    JournalAppend {
        key: String,
        bytes: Vec<u8>,
    },
    /// Deletes a session's snapshot, its journal and whatever its inbox still keeps.
    DeleteSession {
        key: String,
    },
    InboxPut {
        key: String,
        bytes: Vec<u8>,
    },
    InboxRemove {
        key: String,
    },
}

impl Write for SnapshotWrite {
    type Output = bool;

    fn apply(&self, transaction: &WriteTransaction) -> Result<bool, WriteError> {
        Ok(match self {
            Self::Put { key, bytes } => {
                let (first, after) = session_range(key);
                transaction
                    .open_table(JOURNAL)?
                    .retain_in::<&str, _>(first.as_str()..after.as_str(), |_, _| false)?;
                transaction
                    .open_table(SESSIONS)?
                    .insert(key.as_str(), bytes.as_slice())?
                    .is_some()
            }
            Self::JournalAppend { key, bytes } => {
                let (first, after) = session_range(key);
                let mut journal = transaction.open_table(JOURNAL)?;
                let next = match journal
                    .range::<&str>(first.as_str()..after.as_str())?
                    .next_back()
                {
                    Some(last) => record_seq(last?.0.value()) + 1,
                    None => 0,
                };
                let record_key = format!("{first}{next:016x}");
                journal
                    .insert(record_key.as_str(), bytes.as_slice())?
                    .is_some()
            }
            Self::DeleteSession { key } => {
                let (first, after) = session_range(key);
                for table in [INBOX, JOURNAL] {
                    transaction
                        .open_table(table)?
                        .retain_in::<&str, _>(first.as_str()..after.as_str(), |_, _| false)?;
                }
                transaction
                    .open_table(SESSIONS)?
                    .remove(key.as_str())?
                    .is_some()
            }
            Self::InboxPut { key, bytes } => transaction
                .open_table(INBOX)?
                .insert(key.as_str(), bytes.as_slice())?
                .is_some(),
            Self::InboxRemove { key } => transaction
                .open_table(INBOX)?
                .remove(key.as_str())?
                .is_some(),
        })
    }
}

/// Every inbox and journal key of the session stored as `key` lies in `key NUL` (included)
/// to `key 0x01` (excluded).
fn session_range(key: &str) -> (String, String) {
    (format!("{key}\0"), format!("{key}\u{1}"))
}

/// The sequence number at the end of a journal key; 0 for a key this build did not write.
fn record_seq(record_key: &str) -> u64 {
    record_key
        .rsplit_once('\0')
        .and_then(|(_, seq)| u64::from_str_radix(seq, 16).ok())
        .unwrap_or(0)
}

/// Creates the sessions, journal and inbox tables.
fn prepare(transaction: &WriteTransaction) -> Result<(), redb::TableError> {
    transaction.open_table(SESSIONS).map(drop)?;
    transaction.open_table(JOURNAL).map(drop)?;
    transaction.open_table(INBOX).map(drop)
}

/// Snapshots on local disk. Cheap to share behind an `Arc`.
pub struct LocalSnapshotStore {
    storage: Storage,
    /// The writer thread: dropped (and joined) with the store, so the database file is
    /// released when the store is gone.
    writer: GroupCommit<SnapshotWrite>,
    /// Number of stored snapshots.
    count: AtomicU64,
    /// The inbox's order counter, and what it held at open.
    pub(super) inbox: InboxState,
}

impl std::fmt::Debug for LocalSnapshotStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LocalSnapshotStore")
            .field("count", &self.count())
            .finish()
    }
}

pub(super) fn io_error(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Io(error.into())
}

pub(super) fn commit_error(failure: CommitFailed) -> StoreError {
    match failure {
        CommitFailed::Closed => StoreError::Closed,
        CommitFailed::Failed(error) => io_error(error),
    }
}

impl From<StorageError> for StoreError {
    fn from(error: StorageError) -> Self {
        io_error(error)
    }
}

/// `platform NUL conversation`: NUL sorts below every id character, so the byte order of
/// stored keys is the order of `SessionKey`.
pub(super) fn encode_key(key: &SessionKey) -> String {
    format!("{}\0{}", key.platform(), key.conversation_id())
}

fn decode_key(stored: &str) -> Option<SessionKey> {
    let (platform, conversation) = stored.split_once('\0')?;
    Some(SessionKey::new_unchecked(platform, conversation))
}

impl LocalSnapshotStore {
    /// Opens (or creates) `sessions.redb` in `data_dir` with the default cache size.
    /// Blocking: call before serving.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(data_dir, DEFAULT_CACHE_BYTES)
    }

    /// Like [`LocalSnapshotStore::open`], with redb's page cache limited to `cache_bytes`.
    pub fn open_with_cache(data_dir: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join("sessions.redb");
        let storage = Storage::open("sessions", &path, cache_bytes, prepare)?;
        let (stored, inbox) = storage.run(|database| {
            let transaction = database.begin_read().map_err(io_error)?;
            let table = transaction.open_table(SESSIONS).map_err(io_error)?;
            let inbox = transaction.open_table(INBOX).map_err(io_error)?;
            Ok::<_, StoreError>((table.len().map_err(io_error)?, InboxState::read(&inbox)?))
        })??;
        let writer = GroupCommit::start("snapshot", storage.clone(), MAX_WRITES_PER_COMMIT)
            .map_err(io_error)?;
        Ok(Self {
            storage,
            writer,
            count: AtomicU64::new(stored),
            inbox,
        })
    }

    async fn submit(&self, write: SnapshotWrite) -> Result<bool, StoreError> {
        self.writer.submit(write).await.map_err(commit_error)
    }

    /// The writer, for the inbox's writes.
    pub(super) const fn writer(&self) -> &GroupCommit<SnapshotWrite> {
        &self.writer
    }

    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || storage.run(read)?)
            .await
            .map_err(io_error)?
    }
}

#[async_trait::async_trait]
impl Journal for LocalSnapshotStore {
    async fn append(&self, record: EncodedRecord) -> Result<(), StoreError> {
        let write = SnapshotWrite::JournalAppend {
            key: encode_key(&record.key),
            bytes: record.bytes,
        };
        self.submit(write).await.map(drop)
    }
}

#[async_trait::async_trait]
impl SnapshotStore for LocalSnapshotStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<SessionSnapshot>, StoreError> {
        // Decoded where it is read, on the blocking pool: no copy of the stored bytes, and
        // no decoding on the async runtime.
        let (key, stored_key) = (key.clone(), encode_key(key));
        self.read(move |database| {
            let transaction = database.begin_read().map_err(io_error)?;
            let table = transaction.open_table(SESSIONS).map_err(io_error)?;
            let snapshot = table.get(stored_key.as_str()).map_err(io_error)?;
            let journal = transaction.open_table(JOURNAL).map_err(io_error)?;
            let (first, after) = session_range(&stored_key);
            let records = journal
                .range::<&str>(first.as_str()..after.as_str())
                .map_err(io_error)?
                .map(|record| record.map(|(_, value)| value))
                .collect::<Result<Vec<_>, _>>()
                .map_err(io_error)?;
            SessionSnapshot::recover(
                &key,
                snapshot.as_ref().map(|guard| guard.value()),
                records.iter().map(|guard| guard.value()),
            )
        })
        .await
    }

    async fn save(&self, snapshot: EncodedSnapshot) -> Result<(), StoreError> {
        let write = SnapshotWrite::Put {
            key: encode_key(&snapshot.key),
            bytes: snapshot.bytes,
        };
        if !self.submit(write).await? {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        // The session's kept messages go with it.
        self.inbox.changed();
        let existed = self
            .submit(SnapshotWrite::DeleteSession {
                key: encode_key(key),
            })
            .await?;
        if existed {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(existed)
    }

    async fn list(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionKey>, StoreError> {
        let after = after.map(encode_key);
        self.read(move |database| {
            let transaction = database.begin_read().map_err(io_error)?;
            let table = transaction.open_table(SESSIONS).map_err(io_error)?;
            let lower = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            let range = table
                .range::<&str>((lower, Bound::Unbounded))
                .map_err(io_error)?;
            let mut keys = Vec::with_capacity(limit.min(1024));
            for entry in range.take(limit) {
                let (stored_key, _) = entry.map_err(io_error)?;
                keys.extend(decode_key(stored_key.value()));
            }
            Ok(keys)
        })
        .await
    }

    fn journal(self: Arc<Self>) -> Option<Arc<dyn Journal>> {
        Some(self)
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn health(&self) -> StoreHealth {
        self.storage.health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let directory = tempfile::tempdir().unwrap();
        let store = LocalSnapshotStore::open(directory.path()).unwrap();
        super::super::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn passes_the_journal_conformance_suite() {
        let directory = tempfile::tempdir().unwrap();
        let store = LocalSnapshotStore::open(directory.path()).unwrap();
        super::super::conformance::run_journal(&store, &store).await;
    }

    #[tokio::test]
    async fn the_journal_survives_reopening() {
        let directory = tempfile::tempdir().unwrap();
        let key = SessionKey::new_unchecked("api", "journaled");
        let mut history = std::collections::VecDeque::new();
        {
            let store = LocalSnapshotStore::open(directory.path()).unwrap();
            store
                .save(SessionSnapshot::empty(key.clone()).encode())
                .await
                .unwrap();
            for index in 0..20 {
                history.push_back(super::super::HistoryEntry {
                    role: crate::provider::Role::User,
                    content: format!("m{index}").into(),
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                    message_id: Some(format!("m{index}")),
                    timestamp: index,
                    images: Vec::new(),
                });
                let record = super::super::RecordView::newest(&history, 1, index, None)
                    .unwrap()
                    .encode(&key);
                store.append(record).await.unwrap();
            }
        }
        let reopened = LocalSnapshotStore::open(directory.path()).unwrap();
        let loaded = reopened.load(&key).await.unwrap().unwrap();
        assert_eq!(loaded.history, Vec::from(history), "in append order");
        assert_eq!(loaded.updated_at, 19);
    }

    #[tokio::test]
    async fn survives_reopening_and_counts_what_is_on_disk() {
        let directory = tempfile::tempdir().unwrap();
        let key = SessionKey::new_unchecked("api", "bob");
        {
            let store = LocalSnapshotStore::open(directory.path()).unwrap();
            store
                .save(SessionSnapshot::empty(key.clone()).encode())
                .await
                .unwrap();
        }
        let reopened = LocalSnapshotStore::open(directory.path()).unwrap();
        assert_eq!(reopened.count(), 1);
        assert_eq!(
            reopened.load(&key).await.unwrap(),
            Some(SessionSnapshot::empty(key))
        );
    }

    #[tokio::test]
    async fn many_concurrent_saves_all_land() {
        let directory = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalSnapshotStore::open(directory.path()).unwrap());
        let saves = (0..200).map(|index| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let key = SessionKey::new_unchecked("api", &format!("user{index}"));
                store.save(SessionSnapshot::empty(key).encode()).await
            })
        });
        for save in saves.collect::<Vec<_>>() {
            save.await.unwrap().unwrap();
        }
        assert_eq!(store.count(), 200);
        assert_eq!(store.list(None, 1000).await.unwrap().len(), 200);
    }
}
