//! Local models (an ONNX Runtime embedder, a candle chat model): one pool per loaded model,
//! whose inference runs on a thread of its own, never on the async runtime.
//!
//! - **Plugins** implement [`ModelLoader`] and [`BatchModel`] (plain traits; they never see
//!   ractor). The model is loaded on its thread at the first request, not at start-up, so
//!   a node with models configured and unused costs no memory for them.
//! - **Back-pressure.** The queue is bounded ([`PoolConfig::queue`] requests): a request
//!   that finds it full gets [`PoolError::Busy`] at once, never an unbounded wait.
//! - **Batching.** Requests waiting together run as one batch, up to
//!   [`PoolConfig::max_batch`] items (one request may bring several, as an embeddings call
//!   does).
//! - **Failures.** A model that panics or fails a batch fails that batch's callers
//!   ([`PoolError::Crashed`], [`PoolError::Failed`]) and is dropped; the next batch loads
//!   it again. A model that cannot load fails its callers with [`PoolError::Unavailable`]
//!   and is tried again after [`RELOAD_PAUSE`].
//! - **Supervision.** The thread is the child of a [`LocalModelActor`] under the node's
//!   supervisor. Should the thread itself die (a panic outside the model), the actor starts
//!   a new one on the same queue, so queued callers are still answered.
//! - **Metrics** per model: queue depth, batch size, latency, items and restarts.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::{mpsc, oneshot};

use crate::metrics as metric_names;

/// How long a model that failed to load is not tried again: callers meanwhile get the
/// load's error at once.
pub const RELOAD_PAUSE: Duration = Duration::from_secs(5);

/// Any error a model or its runtime reports, kept with its source.
pub type ModelFailure = Arc<dyn std::error::Error + Send + Sync>;

/// A loaded model, run on its pool's thread.
pub trait BatchModel: Send + 'static {
    type Input: Send + 'static;
    type Output: Send + 'static;

    /// Runs one batch; answers one output per input, in order.
    fn run(&mut self, batch: Vec<Self::Input>) -> Result<Vec<Self::Output>, ModelFailure>;
}

/// Loads a model (again, after a failure) on its pool's thread.
pub trait ModelLoader: Send + Sync + 'static {
    type Model: BatchModel;

    fn load(&self) -> Result<Self::Model, ModelFailure>;
}

/// Why a request to a local model got no answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the local model `{model}` has {queued} requests waiting; try again shortly")]
    Busy { model: Arc<str>, queued: usize },
    #[error("the local model `{model}` could not be loaded: {source}")]
    Unavailable {
        model: Arc<str>,
        #[source]
        source: ModelFailure,
    },
    #[error("the local model `{model}` failed: {source}")]
    Failed {
        model: Arc<str>,
        #[source]
        source: ModelFailure,
    },
    #[error("the local model `{model}` crashed on this request; it is loaded again")]
    Crashed { model: Arc<str> },
    #[error("the local model `{model}` answered {got} results for {asked} inputs")]
    WrongCount {
        model: Arc<str>,
        asked: usize,
        got: usize,
    },
    #[error("the local model `{model}` has stopped")]
    Stopped { model: Arc<str> },
}

/// A pool's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Requests that may wait; more get [`PoolError::Busy`].
    pub queue: usize,
    /// Most items run in one batch (a request larger than this runs alone).
    pub max_batch: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            queue: 256,
            max_batch: 32,
        }
    }
}

/// One request: its inputs and where their outputs go.
struct Job<M: BatchModel> {
    inputs: Vec<M::Input>,
    answer: oneshot::Sender<Result<Vec<M::Output>, PoolError>>,
}

/// A pool's queue, as its thread reads it.
type Jobs<M> = mpsc::Receiver<Job<M>>;

/// A handle on one local model's pool. Cheap to clone.
pub struct LocalModelPool<M: BatchModel> {
    model: Arc<str>,
    jobs: mpsc::Sender<Job<M>>,
    queue: usize,
}

impl<M: BatchModel> Clone for LocalModelPool<M> {
    fn clone(&self) -> Self {
        Self {
            model: Arc::clone(&self.model),
            jobs: self.jobs.clone(),
            queue: self.queue,
        }
    }
}

impl<M: BatchModel> LocalModelPool<M> {
    /// The pool of model `name`, and the child that runs it: give `child.spec()` to the
    /// node's supervisor. The model itself loads at the first request.
    pub fn new<L: ModelLoader<Model = M>>(
        name: &str,
        loader: L,
        config: PoolConfig,
    ) -> (Self, LocalModelChild<M>) {
        let model: Arc<str> = Arc::from(name);
        let (sender, jobs) = mpsc::channel(config.queue.max(1));
        let worker = Worker {
            model: Arc::clone(&model),
            loader: Arc::new(loader),
            max_batch: config.max_batch.max(1),
        };
        let pool = Self {
            model,
            jobs: sender,
            queue: config.queue.max(1),
        };
        (pool, LocalModelChild::new(worker, jobs))
    }

    /// A pool whose actor runs on its own (linked to `supervisor` when given), for tools
    /// and tests.
    pub async fn start<L: ModelLoader<Model = M>>(
        name: &str,
        loader: L,
        config: PoolConfig,
        supervisor: Option<ractor::ActorCell>,
    ) -> Result<(Self, ActorRef<LocalModelMsg>), ractor::SpawnErr> {
        let (pool, child) = Self::new(name, loader, config);
        let actor = child.start(supervisor).await?;
        Ok((pool, actor))
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Runs `inputs` (batched with whatever else waits) and answers their outputs in order.
    pub async fn run(&self, inputs: Vec<M::Input>) -> Result<Vec<M::Output>, PoolError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let (answer, answered) = oneshot::channel();
        let job = Job { inputs, answer };
        self.jobs.try_send(job).map_err(|refused| match refused {
            mpsc::error::TrySendError::Full(_) => PoolError::Busy {
                model: Arc::clone(&self.model),
                queued: self.queue,
            },
            mpsc::error::TrySendError::Closed(_) => self.stopped(),
        })?;
        metrics::gauge!(metric_names::LOCAL_MODEL_QUEUE_DEPTH, "model" => self.model.to_string())
            .set((self.queue - self.jobs.capacity()) as f64);
        answered.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> PoolError {
        PoolError::Stopped {
            model: Arc::clone(&self.model),
        }
    }
}

mod actor;
mod worker;

pub use actor::{LocalModelChild, LocalModelMsg};
use worker::Worker;

#[cfg(test)]
mod tests;
