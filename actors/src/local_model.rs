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

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
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

/// One request: its inputs and where their outputs go (opaque outside this module).
pub struct Job<M: BatchModel> {
    inputs: Vec<M::Input>,
    answer: oneshot::Sender<Result<Vec<M::Output>, PoolError>>,
}

/// A pool's queue, as its thread reads it.
pub type Jobs<M> = mpsc::Receiver<Job<M>>;

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
    /// Starts the pool of model `name`, its actor linked to `supervisor` when given. The
    /// model itself loads at the first request.
    pub async fn start<L: ModelLoader<Model = M>>(
        name: &str,
        loader: L,
        config: PoolConfig,
        supervisor: Option<ractor::ActorCell>,
    ) -> Result<(Self, ActorRef<LocalModelMsg<M>>), ractor::SpawnErr> {
        let model: Arc<str> = Arc::from(name);
        let (sender, jobs) = mpsc::channel(config.queue.max(1));
        let worker = Worker {
            model: Arc::clone(&model),
            loader: Arc::new(loader),
            max_batch: config.max_batch.max(1),
        };
        let arguments = (worker, jobs);
        let (actor, _) = match supervisor {
            Some(supervisor) => {
                Actor::spawn_linked(None, LocalModelActor::new(), arguments, supervisor).await?
            }
            None => Actor::spawn(None, LocalModelActor::new(), arguments).await?,
        };
        let pool = Self {
            model,
            jobs: sender,
            queue: config.queue.max(1),
        };
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

/// What runs on the model's thread: the loader and the batching loop (opaque outside this
/// module).
pub struct Worker<M: BatchModel> {
    model: Arc<str>,
    loader: Arc<dyn ModelLoader<Model = M>>,
    max_batch: usize,
}

impl<M: BatchModel> Clone for Worker<M> {
    fn clone(&self) -> Self {
        Self {
            model: Arc::clone(&self.model),
            loader: Arc::clone(&self.loader),
            max_batch: self.max_batch,
        }
    }
}

/// The loaded model, or why it could not be loaded and since when.
enum Loaded<M> {
    None,
    Ready(M),
    Refused(ModelFailure, Instant),
}

impl<M: BatchModel> Worker<M> {
    /// Serves jobs until every pool handle is gone.
    fn serve(&self, jobs: &mut Jobs<M>) {
        let mut loaded = Loaded::None;
        while let Some(first) = jobs.blocking_recv() {
            let batch = self.gather(first, jobs);
            metrics::gauge!(metric_names::LOCAL_MODEL_QUEUE_DEPTH, "model" => self.model.to_string())
                .set(jobs.len() as f64);
            let model = match self.ready(&mut loaded) {
                Ok(model) => model,
                Err(error) => {
                    answer_all(batch, &error);
                    continue;
                }
            };
            if let Some(broken) = self.run_batch(model, batch) {
                tracing::warn!(model = %self.model, error = %broken, "the local model failed; it is loaded again");
                metrics::counter!(metric_names::LOCAL_MODEL_RESTARTS, "model" => self.model.to_string())
                    .increment(1);
                loaded = Loaded::None;
            }
        }
    }

    /// `first` and the jobs waiting behind it, up to `max_batch` items.
    fn gather(&self, first: Job<M>, jobs: &mut Jobs<M>) -> Vec<Job<M>> {
        let mut items = first.inputs.len();
        let mut batch = vec![first];
        while items < self.max_batch {
            let Ok(next) = jobs.try_recv() else { break };
            items += next.inputs.len();
            batch.push(next);
            if items >= self.max_batch {
                break;
            }
        }
        batch
    }

    /// The loaded model, loading it when there is none (and the last refusal is old).
    fn ready<'a>(&self, loaded: &'a mut Loaded<M>) -> Result<&'a mut M, PoolError> {
        let retry = match loaded {
            Loaded::Refused(_, at) => at.elapsed() >= RELOAD_PAUSE,
            Loaded::None => true,
            Loaded::Ready(_) => false,
        };
        if retry {
            *loaded = match std::panic::catch_unwind(AssertUnwindSafe(|| self.loader.load())) {
                Ok(Ok(model)) => Loaded::Ready(model),
                Ok(Err(error)) => {
                    tracing::error!(model = %self.model, %error, "the local model could not be loaded");
                    Loaded::Refused(error, Instant::now())
                }
                Err(_) => Loaded::Refused(Arc::new(LoadPanicked), Instant::now()),
            };
        }
        match loaded {
            Loaded::Ready(model) => Ok(model),
            Loaded::Refused(error, _) => Err(PoolError::Unavailable {
                model: Arc::clone(&self.model),
                source: Arc::clone(error),
            }),
            Loaded::None => Err(PoolError::Stopped {
                model: Arc::clone(&self.model),
            }),
        }
    }

    /// Runs one batch and answers its jobs; the failure that broke the model, if one did.
    fn run_batch(&self, model: &mut M, batch: Vec<Job<M>>) -> Option<PoolError> {
        let started = Instant::now();
        let sizes: Vec<usize> = batch.iter().map(|job| job.inputs.len()).collect();
        let mut answers = Vec::with_capacity(batch.len());
        let mut inputs = Vec::with_capacity(sizes.iter().sum());
        for job in batch {
            inputs.extend(job.inputs);
            answers.push(job.answer);
        }
        let asked = inputs.len();
        let label = self.model.to_string();
        metrics::histogram!(metric_names::LOCAL_MODEL_BATCH_SIZE, "model" => label.clone())
            .record(asked as f64);
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| model.run(inputs)));
        metrics::histogram!(metric_names::LOCAL_MODEL_SECONDS, "model" => label.clone())
            .record(started.elapsed().as_secs_f64());
        let model_name = Arc::clone(&self.model);
        let failure = match ran {
            Ok(Ok(outputs)) if outputs.len() == asked => {
                metrics::counter!(metric_names::LOCAL_MODEL_ITEMS, "model" => label)
                    .increment(asked as u64);
                let mut outputs = outputs.into_iter();
                for (answer, size) in answers.into_iter().zip(sizes) {
                    let _ = answer.send(Ok(outputs.by_ref().take(size).collect()));
                }
                return None;
            }
            Ok(Ok(outputs)) => PoolError::WrongCount {
                model: model_name,
                asked,
                got: outputs.len(),
            },
            Ok(Err(source)) => PoolError::Failed {
                model: model_name,
                source,
            },
            Err(_) => PoolError::Crashed { model: model_name },
        };
        for answer in answers {
            let _ = answer.send(Err(failure.clone()));
        }
        Some(failure)
    }
}

fn answer_all<M: BatchModel>(batch: Vec<Job<M>>, error: &PoolError) {
    for job in batch {
        let _ = job.answer.send(Err(error.clone()));
    }
}

#[derive(Debug, thiserror::Error)]
#[error("loading the model panicked")]
struct LoadPanicked;

/// The actor that supervises one model's thread.
pub struct LocalModelActor<M: BatchModel> {
    _model: std::marker::PhantomData<fn() -> M>,
}

impl<M: BatchModel> LocalModelActor<M> {
    fn new() -> Self {
        Self {
            _model: std::marker::PhantomData,
        }
    }
}

/// What the model's thread tells its actor.
pub enum LocalModelMsg<M: BatchModel> {
    /// The thread ended: with the queue when it died, without when the pool is gone.
    ThreadEnded(Option<Jobs<M>>),
}

/// The actor's state: what a new thread needs.
pub struct LocalModelState<M: BatchModel> {
    worker: Worker<M>,
}

/// Gives the queue back to the actor when the thread ends, even by a panic (this runs
/// while it unwinds).
struct HandBack<M: BatchModel> {
    jobs: Option<Jobs<M>>,
    died: bool,
    actor: ActorRef<LocalModelMsg<M>>,
}

impl<M: BatchModel> Drop for HandBack<M> {
    fn drop(&mut self) {
        let jobs = self.jobs.take().filter(|_| self.died);
        let _ = self.actor.cast(LocalModelMsg::ThreadEnded(jobs));
    }
}

fn spawn_thread<M: BatchModel>(
    worker: Worker<M>,
    jobs: Jobs<M>,
    actor: ActorRef<LocalModelMsg<M>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("model-{}", worker.model))
        .spawn(move || {
            let mut hand_back = HandBack {
                jobs: Some(jobs),
                died: true,
                actor,
            };
            if let Some(jobs) = hand_back.jobs.as_mut() {
                worker.serve(jobs);
            }
            hand_back.died = false;
        })
        .map(drop)
}

impl<M: BatchModel> Actor for LocalModelActor<M> {
    type Msg = LocalModelMsg<M>;
    type State = LocalModelState<M>;
    type Arguments = (Worker<M>, Jobs<M>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (worker, jobs): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        spawn_thread(worker.clone(), jobs, myself)?;
        Ok(LocalModelState { worker })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            LocalModelMsg::ThreadEnded(Some(jobs)) => {
                tracing::error!(model = %state.worker.model, "the local model's thread died; starting another");
                metrics::counter!(metric_names::LOCAL_MODEL_RESTARTS, "model" => state.worker.model.to_string())
                    .increment(1);
                spawn_thread(state.worker.clone(), jobs, myself)?;
            }
            LocalModelMsg::ThreadEnded(None) => myself.stop(None),
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "local_model_tests.rs"]
mod tests;
