//! The embedded default [`SnapshotStore`]: one redb database file under the data dir.
//!
//! Writes go to one dedicated writer thread that commits whatever is queued in a single
//! durable (fsync'd) transaction, so many sessions saving at once cost one fsync, and the
//! async runtime never waits on the disk. Reads run on tokio's blocking pool.
//!
//! A failed commit (a full disk) leaves redb's handle unusable until it is reopened. The
//! store then reports itself [`StoreHealth::Failing`], and the writer reopens the database
//! and proves a write with a probe, at once for the next write and then with a backoff,
//! until one succeeds: space coming back is enough, no restart needed.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use super::{EncodedSnapshot, SessionSnapshot, SnapshotStore, StoreError, StoreHealth};
use crate::ids::SessionKey;
use crate::message::unix_now;
use crate::metrics as metric_names;

const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions_v1");
/// Where the writer proves that a write succeeds again.
const PROBE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("write_probe");
/// The probe's size: larger than a page, so it needs free space to commit.
const PROBE_BYTES: usize = 64 * 1024;
/// Waits between attempts to recover a failing store.
const RECOVERY_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(250), Duration::from_secs(10));
/// Longest wait for reads in flight to let go of the database before it is reopened.
const REOPEN_WAIT: Duration = Duration::from_secs(2);
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

/// The database and whether it is failing. The writer thread replaces the database when a
/// failed write left it unusable; readers take a clone of the current one.
struct Handle {
    path: PathBuf,
    cache_bytes: usize,
    /// `None` only while the writer reopens it.
    database: RwLock<Option<Arc<Database>>>,
    /// The failure and when it began, while writes fail.
    failure: Mutex<Option<(String, u64)>>,
}

impl Handle {
    fn create(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
        redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|error| StoreError::Io(format!("cannot open {}: {error}", path.display())))
    }

    fn database(&self) -> Result<Arc<Database>, StoreError> {
        self.database
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                StoreError::Io("the store is being reopened after a failed write".into())
            })
    }

    fn health(&self) -> StoreHealth {
        match &*self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            None => StoreHealth::Writable,
            Some((reason, since)) => StoreHealth::Failing {
                reason: reason.clone(),
                since: *since,
            },
        }
    }

    fn is_failing(&self) -> bool {
        self.health() != StoreHealth::Writable
    }

    fn fail(&self, error: &StoreError) {
        let mut failure = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = failure.as_ref().map_or_else(unix_now, |(_, since)| *since);
        *failure = Some((error.to_string(), since));
        metrics::gauge!(metric_names::STORAGE_WRITABLE).set(0.0);
    }

    /// Reopens the database and proves that a write succeeds; clears the failure if so.
    fn recover(&self) -> Result<(), StoreError> {
        self.reopen()?;
        probe(&*self.database()?)?;
        *self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        metrics::gauge!(metric_names::STORAGE_WRITABLE).set(1.0);
        tracing::info!(path = %self.path.display(), "the snapshot store is writable again");
        Ok(())
    }

    /// Closes the unusable handle (once reads in flight let go of it) and opens the file
    /// again; redb repairs it if the failed commit left it so.
    #[expect(
        clippy::disallowed_methods,
        reason = "runs on the store's own writer thread, never on the async runtime"
    )]
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self
            .database
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = slot.take() {
            let started = Instant::now();
            while Arc::strong_count(&old) > 1 && started.elapsed() < REOPEN_WAIT {
                std::thread::sleep(Duration::from_millis(1));
            }
            if Arc::strong_count(&old) > 1 {
                *slot = Some(old);
                return Err(StoreError::Io(
                    "reads still hold the store; retrying".into(),
                ));
            }
        }
        *slot = Some(Arc::new(Self::create(&self.path, self.cache_bytes)?));
        Ok(())
    }
}

/// Writes and removes a value larger than a page, durably: it fails while the disk is full.
fn probe(database: &Database) -> Result<(), StoreError> {
    for put in [true, false] {
        let mut transaction = database.begin_write().map_err(io_error)?;
        transaction.set_durability(Durability::Immediate);
        {
            let mut table = transaction.open_table(PROBE).map_err(io_error)?;
            if put {
                table
                    .insert("probe", [0u8; PROBE_BYTES].as_slice())
                    .map_err(io_error)?;
            } else {
                table.remove("probe").map_err(io_error)?;
            }
        }
        transaction.commit().map_err(io_error)?;
    }
    Ok(())
}

/// Snapshots on local disk. Cheap to share behind an `Arc`.
pub struct LocalSnapshotStore {
    handle: Arc<Handle>,
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
        let database = Handle::create(&path, cache_bytes)?;
        let mut transaction = database.begin_write().map_err(io_error)?;
        // Creating the table needs no fsync of its own (it keeps start-up fast): the first
        // snapshot's commit is durable and carries it.
        transaction.set_durability(redb::Durability::None);
        let stored = {
            let table = transaction.open_table(SESSIONS).map_err(io_error)?;
            table.len().map_err(io_error)?
        };
        transaction.commit().map_err(io_error)?;
        let handle = Arc::new(Handle {
            path,
            cache_bytes,
            database: RwLock::new(Some(Arc::new(database))),
            failure: Mutex::new(None),
        });
        metrics::gauge!(metric_names::STORAGE_WRITABLE).set(1.0);
        let count = Arc::new(AtomicU64::new(stored));
        let (writes, queue) = mpsc::channel();
        let writer_handle = Arc::clone(&handle);
        let writer_count = Arc::clone(&count);
        let writer_thread = std::thread::Builder::new()
            .name("troupe-snapshot-writer".into())
            .spawn(move || run_writer(&writer_handle, &queue, &writer_count))
            .map_err(io_error)?;
        Ok(Self {
            handle,
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
        let database = self.handle.database()?;
        tokio::task::spawn_blocking(move || read(&database))
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

fn run_writer(handle: &Handle, queue: &mpsc::Receiver<WriteRequest>, count: &AtomicU64) {
    let mut backoff = RECOVERY_BACKOFF.0;
    let mut next_recovery = Instant::now();
    loop {
        // While failing, wake up to retry even when no write comes.
        let first = if handle.is_failing() {
            match queue.recv_timeout(next_recovery.saturating_duration_since(Instant::now())) {
                Ok(request) => Some(request),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match queue.recv() {
                Ok(request) => Some(request),
                Err(_) => return,
            }
        };
        let mut batch: Vec<WriteRequest> = first.into_iter().collect();
        while !batch.is_empty() && batch.len() < MAX_WRITES_PER_COMMIT {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if handle.is_failing() {
            let recovered = if Instant::now() >= next_recovery {
                handle.recover()
            } else {
                Err(StoreError::Io(handle_failure(handle)))
            };
            if let Err(error) = recovered {
                if Instant::now() >= next_recovery {
                    backoff = (backoff * 2).min(RECOVERY_BACKOFF.1);
                    next_recovery = Instant::now() + backoff;
                    tracing::debug!(%error, retry_in = ?backoff, "the snapshot store is still failing");
                }
                for request in batch {
                    let _ = request.done.send(Err(StoreError::Io(error.to_string())));
                }
                continue;
            }
            backoff = RECOVERY_BACKOFF.0;
        }
        if batch.is_empty() {
            continue;
        }
        match handle
            .database()
            .and_then(|database| commit_batch(&database, &batch))
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
                handle.fail(&error);
                next_recovery = Instant::now();
                for request in batch {
                    let _ = request.done.send(Err(StoreError::Io(error.to_string())));
                }
            }
        }
    }
}

/// Why the store is failing, for a write refused before the next attempt to recover.
fn handle_failure(handle: &Handle) -> String {
    match handle.health() {
        StoreHealth::Failing { reason, .. } => reason,
        StoreHealth::Writable => "the store is recovering".into(),
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
        self.handle.health()
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
