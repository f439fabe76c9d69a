//! The model's thread: it loads the model when it is first needed and runs what waits
//! as one batch, answering each request its own outputs.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use super::{BatchModel, Job, Jobs, ModelFailure, ModelLoader, PoolError, RELOAD_PAUSE};
use crate::metrics as metric_names;

/// What runs on the model's thread: the loader and the batching loop (opaque outside this
/// module).
pub(super) struct Worker<M: BatchModel> {
    pub(super) model: Arc<str>,
    pub(super) loader: Arc<dyn ModelLoader<Model = M>>,
    pub(super) max_batch: usize,
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
    pub(super) fn serve(&self, jobs: &mut Jobs<M>) {
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
