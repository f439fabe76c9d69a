//! Group commit: one writer thread per store takes every write that is queued and commits
//! them in a single durable (fsync'd) redb transaction. Many writers at once cost one fsync,
//! the async runtime never waits on the disk, and no thread pool grows with the writers (a
//! blocked thread per write would each get its own `malloc` arena).
//!
//! A write that may wait rides along: [`GroupCommit::ride_along`] adds it to the next batch
//! without starting one (a write nobody waits for, such as forgetting what is no longer
//! needed, costs no commit of its own).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use redb::{Durability, WriteTransaction};
use tokio::sync::oneshot;

use crate::storage::Storage;

/// One write, applied inside the batch's transaction.
pub trait Write: Send + 'static {
    type Output: Send + 'static;

    fn apply(&self, transaction: &WriteTransaction) -> Result<Self::Output, WriteError>;
}

/// A redb failure inside a write (boxed: redb's errors are large).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct WriteError(#[from] Box<redb::Error>);

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for WriteError {
            fn from(error: $error) -> Self {
                Self(Box::new(error.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Why a write was not committed. Every write of a failed batch gets the same failure.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CommitFailed {
    #[error("the store is closed")]
    Closed,
    #[error("the commit failed: {0}")]
    Failed(Arc<dyn std::error::Error + Send + Sync>),
}

struct Request<W: Write> {
    write: W,
    done: oneshot::Sender<Result<W::Output, CommitFailed>>,
}

/// The writer of one store. Dropping it commits what is queued and ends the thread.
pub struct GroupCommit<W: Write> {
    queue: Option<mpsc::Sender<Request<W>>>,
    /// Writes for the next batch that start none.
    riders: Riders<W>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Writes that wait for the next batch.
type Riders<W> = Arc<Mutex<Vec<W>>>;

fn take_riders<W>(riders: &Mutex<Vec<W>>) -> Vec<W> {
    std::mem::take(&mut *riders.lock().unwrap_or_else(PoisonError::into_inner))
}

impl<W: Write> std::fmt::Debug for GroupCommit<W> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GroupCommit")
            .finish_non_exhaustive()
    }
}

impl<W: Write> GroupCommit<W> {
    /// Starts the writer thread `troupe-<name>-writer` over `storage`, folding at most
    /// `max_batch` writes into one transaction.
    pub fn start(name: &str, storage: Storage, max_batch: usize) -> std::io::Result<Self> {
        let (queue, requests) = mpsc::channel();
        let riders = Riders::default();
        let writer_riders = Arc::clone(&riders);
        let thread = std::thread::Builder::new()
            .name(format!("troupe-{name}-writer"))
            .spawn(move || run(&storage, &requests, &writer_riders, max_batch.max(1)))?;
        Ok(Self {
            queue: Some(queue),
            riders,
            thread: Some(thread),
        })
    }

    /// Queues `write`; answers once its batch is durable.
    pub async fn submit(&self, write: W) -> Result<W::Output, CommitFailed> {
        self.enqueue(write).await
    }

    /// Queues `write` now and returns what answers once its batch is durable: writes
    /// enqueued one after another are committed in that order, whenever they are awaited.
    pub fn enqueue(
        &self,
        write: W,
    ) -> impl Future<Output = Result<W::Output, CommitFailed>> + Send + 'static {
        let (done, answer) = oneshot::channel();
        let queued = self
            .queue
            .as_ref()
            .ok_or(CommitFailed::Closed)
            .and_then(|queue| {
                queue
                    .send(Request { write, done })
                    .map_err(|_| CommitFailed::Closed)
            });
        async move {
            queued?;
            answer.await.map_err(|_| CommitFailed::Closed)?
        }
    }

    /// Adds `write` to the next batch without starting one, after that batch's own writes.
    /// Nobody learns its outcome, and a crash before the next commit loses it: for writes
    /// that may be lost, such as forgetting what is no longer needed.
    pub fn ride_along(&self, write: W) {
        self.riders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(write);
    }
}

impl<W: Write> Drop for GroupCommit<W> {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it committed what was queued.
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run<W: Write>(
    storage: &Storage,
    requests: &mpsc::Receiver<Request<W>>,
    riders: &Mutex<Vec<W>>,
    max_batch: usize,
) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit_batch(storage, &take_riders(riders), batch);
    }
    // Closed: what still rides along is committed before the writer ends.
    let last = take_riders(riders);
    if !last.is_empty() {
        commit_batch(storage, &last, Vec::new());
    }
}

/// Commits `riders` and `batch` in one transaction and tells each request how it went.
fn commit_batch<W: Write>(storage: &Storage, riders: &[W], batch: Vec<Request<W>>) {
    let committed = storage
        .run(|database| commit(database, riders, &batch))
        .map_err(|error| CommitFailed::Failed(Arc::new(error)))
        .and_then(|result| result.map_err(|error| CommitFailed::Failed(Arc::new(error))));
    match committed {
        Ok(outputs) => {
            for (request, output) in batch.into_iter().zip(outputs) {
                let _ = request.done.send(Ok(output));
            }
        }
        Err(failure) => {
            tracing::error!(store = storage.name(), error = %failure, writes = batch.len(), "a commit failed");
            for request in batch {
                let _ = request.done.send(Err(failure.clone()));
            }
        }
    }
}

/// Applies every write of `batch`, then `riders`, in one durable transaction.
fn commit<W: Write>(
    database: &redb::Database,
    riders: &[W],
    batch: &[Request<W>],
) -> Result<Vec<W::Output>, WriteError> {
    let mut transaction = database.begin_write()?;
    transaction.set_durability(Durability::Immediate);
    let outputs = batch
        .iter()
        .map(|request| request.write.apply(&transaction))
        .collect::<Result<Vec<_>, _>>()?;
    for rider in riders {
        rider.apply(&transaction)?;
    }
    transaction.commit()?;
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use redb::{ReadableTable, TableDefinition};

    use super::*;

    const ENTRIES: TableDefinition<'_, &str, u8> = TableDefinition::new("entries");

    /// Puts one key.
    struct Put(&'static str);

    impl Write for Put {
        type Output = ();

        fn apply(&self, transaction: &WriteTransaction) -> Result<(), WriteError> {
            transaction.open_table(ENTRIES)?.insert(self.0, 1)?;
            Ok(())
        }
    }

    fn prepare(transaction: &WriteTransaction) -> Result<(), redb::TableError> {
        transaction.open_table(ENTRIES).map(drop)
    }

    fn open(path: &std::path::Path) -> Storage {
        Storage::open("test", path, 1024 * 1024, prepare).unwrap()
    }

    fn stored(storage: &Storage) -> Vec<String> {
        storage
            .run(|database| {
                let transaction = database.begin_read().map_err(Box::new)?;
                let table = transaction.open_table(ENTRIES).map_err(Box::new)?;
                let keys = table
                    .iter()
                    .map_err(Box::new)?
                    .map(|entry| entry.map(|(key, _)| key.value().to_owned()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(Box::new)?;
                Ok::<_, Box<dyn std::error::Error>>(keys)
            })
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn a_write_that_rides_along_is_committed_with_the_next_batch_and_starts_none() {
        let directory = tempfile::tempdir().unwrap();
        let storage = open(&directory.path().join("test.redb"));
        let writer = GroupCommit::start("test", storage.clone(), 16).unwrap();
        writer.ride_along(Put("rider"));
        // The writer waits for a request: nothing can have been committed yet.
        assert!(stored(&storage).is_empty(), "a rider started a commit");
        writer.submit(Put("asked")).await.unwrap();
        assert_eq!(stored(&storage), ["asked", "rider"]);
    }

    #[tokio::test]
    async fn what_rides_along_is_committed_when_the_writer_closes() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("test.redb");
        let storage = open(&path);
        let writer = GroupCommit::start("test", storage.clone(), 16).unwrap();
        writer.ride_along(Put("last"));
        drop(writer);
        assert_eq!(stored(&storage), ["last"]);
    }

    #[tokio::test]
    async fn writes_enqueued_in_order_commit_in_order_whenever_they_are_awaited() {
        let directory = tempfile::tempdir().unwrap();
        let storage = open(&directory.path().join("test.redb"));
        let writer = GroupCommit::start("test", storage.clone(), 16).unwrap();
        let first = writer.enqueue(Put("first"));
        let second = writer.enqueue(Put("second"));
        second.await.unwrap();
        assert_eq!(stored(&storage), ["first", "second"], "the first is in too");
        first.await.unwrap();
    }
}
