//! Group commit: one writer thread per store takes every write that is queued and commits
//! them in a single durable (fsync'd) redb transaction. Many writers at once cost one fsync,
//! the async runtime never waits on the disk, and no thread pool grows with the writers (a
//! blocked thread per write would each get its own `malloc` arena).

use std::sync::{Arc, mpsc};

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
    thread: Option<std::thread::JoinHandle<()>>,
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
        let thread = std::thread::Builder::new()
            .name(format!("troupe-{name}-writer"))
            .spawn(move || run(&storage, &requests, max_batch.max(1)))?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues `write`; answers once its batch is durable.
    pub async fn submit(&self, write: W) -> Result<W::Output, CommitFailed> {
        let (done, answer) = oneshot::channel();
        self.queue
            .as_ref()
            .ok_or(CommitFailed::Closed)?
            .send(Request { write, done })
            .map_err(|_| CommitFailed::Closed)?;
        answer.await.map_err(|_| CommitFailed::Closed)?
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

fn run<W: Write>(storage: &Storage, requests: &mpsc::Receiver<Request<W>>, max_batch: usize) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let committed = storage
            .run(|database| commit(database, &batch))
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
}

/// Applies every write of `batch` in one durable transaction.
fn commit<W: Write>(
    database: &redb::Database,
    batch: &[Request<W>],
) -> Result<Vec<W::Output>, WriteError> {
    let mut transaction = database.begin_write()?;
    transaction.set_durability(Durability::Immediate);
    let outputs = batch
        .iter()
        .map(|request| request.write.apply(&transaction))
        .collect::<Result<Vec<_>, _>>()?;
    transaction.commit()?;
    Ok(outputs)
}
