//! One redb database file that recovers from a failed write by itself.
//!
//! redb refuses every later read and write on a handle that saw an I/O error (a full disk):
//! "previous I/O error… re-open the database". A [`Storage`] notices that after a failed
//! piece of work, reports itself [`StoreHealth::Failing`] (the node is then not ready, and
//! `troupe_storage_writable{store}` is 0), and a recovery thread reopens the file and proves
//! a write with a probe larger than a page, with a backoff, until one succeeds: space coming
//! back is enough, no restart needed. The session store, the bridges' journal and the
//! reminders each keep one.
//!
//! Work runs on the caller's thread and blocks on the disk: call it from a blocking thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use redb::{Database, Durability, TableDefinition, WriteTransaction};
use serde::Serialize;

use crate::message::unix_now;
use crate::metrics as metric_names;

/// Where recovery proves that a write succeeds again.
const PROBE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("write_probe");
/// The probe's size: larger than a page, so it needs free space to commit.
const PROBE_BYTES: usize = 64 * 1024;
/// Waits between attempts to recover a failing store.
const RECOVERY_BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(5));
/// Longest wait for work in flight to let go of the database before it is reopened.
const REOPEN_WAIT: Duration = Duration::from_secs(2);

/// Whether a store can take writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StoreHealth {
    Writable,
    /// The last write failed; the store retries by itself and is writable again once a
    /// write succeeds.
    Failing {
        reason: String,
        /// Unix seconds of the first failure.
        since: u64,
    },
}

/// Why a [`Storage`] could not give out its database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open {location}: {source}")]
    Open {
        location: String,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("the {store} store is being reopened after a failed write")]
    Reopening { store: &'static str },
    #[error("work in flight still holds the {store} store")]
    Busy { store: &'static str },
}

/// Opens the tables a store needs, creating them; runs after every (re)open, in a write
/// transaction that needs no fsync of its own (the store's first durable write carries it).
pub type Prepare = fn(&WriteTransaction) -> Result<(), redb::TableError>;

/// How to open the database again.
enum Opener {
    File {
        path: PathBuf,
        cache_bytes: usize,
    },
    /// Any redb backend: tests inject I/O errors with one.
    Backend(Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>),
}

impl Opener {
    fn location(&self) -> String {
        match self {
            Self::File { path, .. } => path.display().to_string(),
            Self::Backend(_) => "a custom backend".into(),
        }
    }

    fn exists(&self) -> bool {
        match self {
            Self::File { path, .. } => path.exists(),
            Self::Backend(_) => true,
        }
    }

    fn open(&self) -> Result<Database, redb::DatabaseError> {
        match self {
            Self::File { path, cache_bytes } => redb::Builder::new()
                .set_cache_size(*cache_bytes)
                .create(path),
            Self::Backend(open) => open(),
        }
    }
}

/// The failure and when it began, while writes fail.
struct Failure {
    reason: String,
    since: u64,
}

struct Inner {
    /// The `store` label: `sessions`, `bridges`, `reminders`.
    name: &'static str,
    opener: Opener,
    prepare: Prepare,
    /// `None` before a lazily opened store's first use, and while it is reopened.
    database: RwLock<Option<Arc<Database>>>,
    failure: Mutex<Option<Failure>>,
}

/// A redb database that recovers after a failed write. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Storage")
            .field("name", &self.inner.name)
            .field("location", &self.inner.opener.location())
            .field("health", &self.health())
            .finish()
    }
}

impl Storage {
    /// Opens (or creates) the file `path` now. Blocking: call before serving.
    pub fn open(
        name: &'static str,
        path: &Path,
        cache_bytes: usize,
        prepare: Prepare,
    ) -> Result<Self, StorageError> {
        let storage = Self::lazy(name, path, cache_bytes, prepare);
        storage.database(true)?;
        Ok(storage)
    }

    /// The file `path`, opened (and created) on first use: a node that never needs it
    /// neither creates nor opens it.
    pub fn lazy(name: &'static str, path: &Path, cache_bytes: usize, prepare: Prepare) -> Self {
        let opener = Opener::File {
            path: path.to_owned(),
            cache_bytes,
        };
        metrics::gauge!(metric_names::STORE_CACHE_BYTES, "store" => name).set(cache_bytes as f64);
        Self::with_opener(name, opener, prepare)
    }

    /// A store on any redb backend, opened now; `open` is called again to reopen it.
    pub fn with_backend(
        name: &'static str,
        open: impl Fn() -> Result<Database, redb::DatabaseError> + Send + Sync + 'static,
        prepare: Prepare,
    ) -> Result<Self, StorageError> {
        let storage = Self::with_opener(name, Opener::Backend(Box::new(open)), prepare);
        storage.database(true)?;
        Ok(storage)
    }

    fn with_opener(name: &'static str, opener: Opener, prepare: Prepare) -> Self {
        metrics::gauge!(metric_names::STORAGE_WRITABLE, "store" => name).set(1.0);
        Self {
            inner: Arc::new(Inner {
                name,
                opener,
                prepare,
                database: RwLock::new(None),
                failure: Mutex::new(None),
            }),
        }
    }

    /// The `store` label.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// Runs `work` on the database (opening it first if need be). When the work fails and
    /// the database refuses writes afterwards, the store is failing until it recovers.
    /// Blocking.
    pub fn run<T, E: std::fmt::Display>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, E>,
    ) -> Result<Result<T, E>, StorageError> {
        let Some(database) = self.database(true)? else {
            return Err(StorageError::Reopening {
                store: self.inner.name,
            });
        };
        Ok(self.watch(&database, work(&database)))
    }

    /// Like [`Storage::run`], but `None` without running `work` when the file was never
    /// created (nothing is stored yet).
    pub fn run_existing<T, E: std::fmt::Display>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, E>,
    ) -> Result<Option<Result<T, E>>, StorageError> {
        let Some(database) = self.database(false)? else {
            return Ok(None);
        };
        Ok(Some(self.watch(&database, work(&database))))
    }

    /// Whether writes succeed now.
    pub fn health(&self) -> StoreHealth {
        match &*lock(&self.inner.failure) {
            None => StoreHealth::Writable,
            Some(failure) => StoreHealth::Failing {
                reason: failure.reason.clone(),
                since: failure.since,
            },
        }
    }

    /// The open database; opens it when `create` or when the file exists.
    fn database(&self, create: bool) -> Result<Option<Arc<Database>>, StorageError> {
        if let Some(database) = read(&self.inner.database).clone() {
            return Ok(Some(database));
        }
        if self.is_failing() {
            // Recovery reopens it; until then there is nothing to work on.
            return Err(StorageError::Reopening {
                store: self.inner.name,
            });
        }
        let mut slot = write(&self.inner.database);
        if let Some(database) = slot.clone() {
            return Ok(Some(database));
        }
        if !create && !self.inner.opener.exists() {
            return Ok(None);
        }
        let database = Arc::new(self.inner.open().inspect_err(|error| {
            self.fail(&error.to_string());
        })?);
        *slot = Some(Arc::clone(&database));
        Ok(Some(database))
    }

    /// Passes `result` through; when it is an error and the database now refuses writes (it
    /// saw an I/O error), marks the store failing.
    fn watch<T, E: std::fmt::Display>(
        &self,
        database: &Database,
        result: Result<T, E>,
    ) -> Result<T, E> {
        if let Err(error) = &result
            && let Err(redb::TransactionError::Storage(_)) = database.begin_write()
        {
            tracing::error!(store = self.inner.name, %error, "a write failed; the store recovers by itself");
            self.fail(&error.to_string());
        }
        result
    }

    fn is_failing(&self) -> bool {
        lock(&self.inner.failure).is_some()
    }

    /// Records the failure and, if none runs yet, starts the recovery thread.
    fn fail(&self, reason: &str) {
        let mut failure = lock(&self.inner.failure);
        let started = failure.is_none();
        let since = failure
            .as_ref()
            .map_or_else(unix_now, |failure| failure.since);
        *failure = Some(Failure {
            reason: reason.to_owned(),
            since,
        });
        drop(failure);
        metrics::gauge!(metric_names::STORAGE_WRITABLE, "store" => self.inner.name).set(0.0);
        if started {
            let inner = Arc::downgrade(&self.inner);
            let spawned = std::thread::Builder::new()
                .name(format!("troupe-{}-recovery", self.inner.name))
                .spawn(move || recover_until_writable(&inner));
            if let Err(error) = spawned {
                tracing::error!(store = self.inner.name, %error, "cannot start the recovery thread");
            }
        }
    }
}

impl Inner {
    /// Opens the database and creates its tables.
    fn open(&self) -> Result<Database, StorageError> {
        let database = self.opener.open().map_err(|error| self.open_error(error))?;
        let mut transaction = database
            .begin_write()
            .map_err(|error| self.open_error(error))?;
        transaction.set_durability(Durability::None);
        (self.prepare)(&transaction).map_err(|error| self.open_error(error))?;
        transaction
            .commit()
            .map_err(|error| self.open_error(error))?;
        Ok(database)
    }

    fn open_error(&self, error: impl Into<redb::Error>) -> StorageError {
        StorageError::Open {
            location: self.opener.location(),
            source: Box::new(error.into()),
        }
    }

    /// Closes the unusable handle (once work in flight lets go of it), opens the file again
    /// (redb repairs it if a failed commit left it so), and proves a write.
    #[expect(
        clippy::disallowed_methods,
        reason = "runs on the store's own recovery thread, never on the async runtime"
    )]
    fn recover(&self) -> Result<(), StorageError> {
        let mut slot = write(&self.database);
        if let Some(old) = slot.take() {
            let started = Instant::now();
            while Arc::strong_count(&old) > 1 && started.elapsed() < REOPEN_WAIT {
                std::thread::sleep(Duration::from_millis(1));
            }
            if Arc::strong_count(&old) > 1 {
                *slot = Some(old);
                return Err(StorageError::Busy { store: self.name });
            }
        }
        let database = self.open()?;
        probe(&database).map_err(|error| self.open_error(*error))?;
        *slot = Some(Arc::new(database));
        *lock(&self.failure) = None;
        metrics::gauge!(metric_names::STORAGE_WRITABLE, "store" => self.name).set(1.0);
        tracing::info!(store = self.name, "the store is writable again");
        Ok(())
    }
}

/// The recovery thread: tries to recover with a growing wait until it succeeds or the
/// store is dropped.
#[expect(
    clippy::disallowed_methods,
    reason = "the store's own recovery thread, never the async runtime"
)]
fn recover_until_writable(inner: &Weak<Inner>) {
    let mut backoff = RECOVERY_BACKOFF.0;
    loop {
        std::thread::sleep(backoff);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match inner.recover() {
            Ok(()) => return,
            Err(error) => {
                tracing::debug!(store = inner.name, %error, retry_in = ?backoff, "the store is still failing");
                backoff = (backoff * 2).min(RECOVERY_BACKOFF.1);
            }
        }
    }
}

/// Writes and removes a value larger than a page, durably: it fails while the disk is full.
fn probe(database: &Database) -> Result<(), Box<redb::Error>> {
    for put in [true, false] {
        probe_step(database, put).map_err(Box::new)?;
    }
    Ok(())
}

#[expect(
    clippy::result_large_err,
    reason = "redb's error, boxed by the one caller"
)]
fn probe_step(database: &Database, put: bool) -> Result<(), redb::Error> {
    let mut transaction = database.begin_write()?;
    transaction.set_durability(Durability::Immediate);
    {
        let mut table = transaction.open_table(PROBE)?;
        if put {
            table.insert("probe", [0u8; PROBE_BYTES].as_slice())?;
        } else {
            table.remove("probe")?;
        }
    }
    transaction.commit()?;
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
