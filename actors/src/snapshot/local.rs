//! The embedded default [`SnapshotStore`]: one redb database file under the data dir.
//!
//! Writes go to one dedicated writer thread that commits whatever is queued in a single
//! durable (fsync'd) transaction, so many sessions saving at once cost one fsync, and the
//! async runtime never waits on the disk. Reads run on tokio's blocking pool.
//!
//! A failed commit (a full disk) leaves redb's handle unusable until it is reopened: the
//! [`Storage`] underneath reports itself failing and recovers by itself once writes can
//! succeed again (see [`crate::storage`]).

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use redb::{Database, Durability, ReadableTableMetadata, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::{EncodedSnapshot, SessionSnapshot, SnapshotStore, StoreError, StoreHealth};
use crate::ids::SessionKey;
use crate::storage::{Storage, StorageError};

const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions_v1");
/// Most writes folded into one transaction.
const MAX_WRITES_PER_COMMIT: usize = 1024;
/// redb's page cache. Small on purpose: active sessions live in actor memory, so the cache
/// only serves (re)activations, and passivated sessions must cost no RAM.
pub(crate) const DEFAULT_CACHE_BYTES: usize = 16 * 1024 * 1024;

enum WriteOp {
    Put { key: String, bytes: Vec<u8> },
    Delete { key: String },
}

struct WriteRequest {
    op: WriteOp,
    /// Answers whether the key existed before, once the commit is durable.
    done: oneshot::Sender<Result<bool, StoreError>>,
}

/// Creates the sessions table.
fn prepare(transaction: &WriteTransaction) -> Result<(), redb::TableError> {
    transaction.open_table(SESSIONS).map(drop)
}

/// Snapshots on local disk. Cheap to share behind an `Arc`.
pub struct LocalSnapshotStore {
    storage: Storage,
    /// Feeds the writer thread; `None` only while dropping.
    writes: Option<mpsc::Sender<WriteRequest>>,
    /// Joined on drop, so the database file is released when the store is gone.
    writer_thread: Option<std::thread::JoinHandle<()>>,
    /// Number of stored snapshots, kept by the writer thread.
    count: Arc<AtomicU64>,
}

impl std::fmt::Debug for LocalSnapshotStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LocalSnapshotStore")
            .field("count", &self.count())
            .finish()
    }
}

fn io_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Io(error.to_string())
}

impl From<StorageError> for StoreError {
    fn from(error: StorageError) -> Self {
        io_error(error)
    }
}

/// `platform NUL conversation`: NUL sorts below every id character, so the byte order of
/// stored keys is the order of `SessionKey`.
fn encode_key(key: &SessionKey) -> String {
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
        std::fs::create_dir_all(data_dir).map_err(|error| {
            StoreError::Io(format!(
                "cannot create data dir {}: {error}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join("sessions.redb");
        let storage = Storage::open("sessions", &path, cache_bytes, prepare)?;
        let stored = storage.run(|database| {
            let transaction = database.begin_read().map_err(io_error)?;
            let table = transaction.open_table(SESSIONS).map_err(io_error)?;
            table.len().map_err(io_error)
        })??;
        let count = Arc::new(AtomicU64::new(stored));
        let (writes, queue) = mpsc::channel();
        let writer_storage = storage.clone();
        let writer_count = Arc::clone(&count);
        let writer_thread = std::thread::Builder::new()
            .name("troupe-snapshot-writer".into())
            .spawn(move || run_writer(&writer_storage, &queue, &writer_count))
            .map_err(io_error)?;
        Ok(Self {
            storage,
            writes: Some(writes),
            writer_thread: Some(writer_thread),
            count,
        })
    }

    async fn submit(&self, op: WriteOp) -> Result<bool, StoreError> {
        let (done, answer) = oneshot::channel();
        let writes = self.writes.as_ref().ok_or(StoreError::Closed)?;
        writes
            .send(WriteRequest { op, done })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || storage.run(read)?)
            .await
            .map_err(io_error)?
    }
}

impl Drop for LocalSnapshotStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it committed what was queued.
        self.writes = None;
        if let Some(writer_thread) = self.writer_thread.take() {
            let _ = writer_thread.join();
        }
    }
}

fn run_writer(storage: &Storage, queue: &mpsc::Receiver<WriteRequest>, count: &AtomicU64) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_WRITES_PER_COMMIT {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        match storage
            .run(|database| commit_batch(database, &batch))
            .map_err(StoreError::from)
            .and_then(|committed| committed)
        {
            Ok(existed) => {
                for (request, existed_before) in batch.into_iter().zip(existed) {
                    match (&request.op, existed_before) {
                        (WriteOp::Put { .. }, false) => count.fetch_add(1, Ordering::Relaxed),
                        (WriteOp::Delete { .. }, true) => count.fetch_sub(1, Ordering::Relaxed),
                        _ => 0,
                    };
                    let _ = request.done.send(Ok(existed_before));
                }
            }
            Err(error) => {
                tracing::error!(%error, writes = batch.len(), "snapshot commit failed");
                let reason = match error {
                    StoreError::Io(reason) => reason,
                    other => other.to_string(),
                };
                for request in batch {
                    let _ = request.done.send(Err(StoreError::Io(reason.clone())));
                }
            }
        }
    }
}

/// Applies every write in one durable transaction; answers, per write, whether the key existed.
fn commit_batch(database: &Database, batch: &[WriteRequest]) -> Result<Vec<bool>, StoreError> {
    let mut transaction = database.begin_write().map_err(io_error)?;
    transaction.set_durability(Durability::Immediate);
    let mut existed = Vec::with_capacity(batch.len());
    {
        let mut table = transaction.open_table(SESSIONS).map_err(io_error)?;
        for request in batch {
            let was_there = match &request.op {
                WriteOp::Put { key, bytes } => table
                    .insert(key.as_str(), bytes.as_slice())
                    .map_err(io_error)?
                    .is_some(),
                WriteOp::Delete { key } => table.remove(key.as_str()).map_err(io_error)?.is_some(),
            };
            existed.push(was_there);
        }
    }
    transaction.commit().map_err(io_error)?;
    Ok(existed)
}

#[async_trait::async_trait]
impl SnapshotStore for LocalSnapshotStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<SessionSnapshot>, StoreError> {
        let stored_key = encode_key(key);
        let bytes = self
            .read(move |database| {
                let transaction = database.begin_read().map_err(io_error)?;
                let table = transaction.open_table(SESSIONS).map_err(io_error)?;
                let value = table.get(stored_key.as_str()).map_err(io_error)?;
                Ok(value.map(|guard| guard.value().to_vec()))
            })
            .await?;
        bytes
            .map(|bytes| SessionSnapshot::decode(key, &bytes))
            .transpose()
    }

    async fn save(&self, snapshot: EncodedSnapshot) -> Result<(), StoreError> {
        let op = WriteOp::Put {
            key: encode_key(&snapshot.key),
            bytes: snapshot.bytes,
        };
        self.submit(op).await.map(|_| ())
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        self.submit(WriteOp::Delete {
            key: encode_key(key),
        })
        .await
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
