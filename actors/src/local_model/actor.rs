//! The actor that supervises a model's thread, as a child of the node's supervisor.
//!
//! The queue lives in a slot the actor and the thread share: the thread holds it while it
//! runs and puts it back when it ends, even by a panic (its hand-back runs while it
//! unwinds), then tells whichever actor is current. So a dead thread is replaced on the
//! same queue, and a restarted actor (the supervisor's restart) picks up where the last
//! one was: it finds the queue in the slot when no thread runs, and leaves a running one be.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};

use super::worker::Worker;
use super::{BatchModel, Jobs};
use crate::metrics as metric_names;
use crate::supervisor::ChildSpec;

/// What the model's thread tells its actor.
#[derive(Debug)]
pub enum LocalModelMsg {
    /// The thread ended: `died` when by a panic (its queue is back in the slot), not when
    /// every pool handle is gone.
    ThreadEnded { died: bool },
}

/// What the thread and the actors of one pool share.
struct Slot<M: BatchModel> {
    /// The queue while no thread runs.
    jobs: Option<Jobs<M>>,
    /// The actor to tell when the thread ends.
    actor: Option<ActorRef<LocalModelMsg>>,
    /// Set once the pool's handles are all gone: nothing to restart.
    closed: bool,
}

pub(super) struct Shared<M: BatchModel> {
    worker: Worker<M>,
    slot: Mutex<Slot<M>>,
}

impl<M: BatchModel> Shared<M> {
    fn slot(&self) -> MutexGuard<'_, Slot<M>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a thread on the queue if it is in the slot (no thread runs).
    fn start_thread(self: &Arc<Self>) -> std::io::Result<()> {
        let Some(jobs) = self.slot().jobs.take() else {
            return Ok(());
        };
        let shared = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("model-{}", self.worker.model))
            .spawn(move || {
                let mut hand_back = HandBack {
                    shared,
                    jobs: Some(jobs),
                    died: true,
                };
                if let Some(jobs) = hand_back.jobs.as_mut() {
                    hand_back.shared.worker.serve(jobs);
                }
                hand_back.died = false;
            });
        spawned.map(drop)
    }
}

/// Puts the queue back and tells the current actor, when the thread ends.
struct HandBack<M: BatchModel> {
    shared: Arc<Shared<M>>,
    jobs: Option<Jobs<M>>,
    died: bool,
}

impl<M: BatchModel> Drop for HandBack<M> {
    fn drop(&mut self) {
        let mut slot = self.shared.slot();
        if self.died {
            slot.jobs = self.jobs.take();
        } else {
            slot.closed = true;
        }
        if let Some(actor) = &slot.actor {
            let _ = actor.cast(LocalModelMsg::ThreadEnded { died: self.died });
        }
    }
}

/// The pool's child: started once under a supervisor (or alone), restarted by it.
pub struct LocalModelChild<M: BatchModel> {
    shared: Arc<Shared<M>>,
}

impl<M: BatchModel> LocalModelChild<M> {
    pub(super) fn new(worker: Worker<M>, jobs: Jobs<M>) -> Self {
        let slot = Slot {
            jobs: Some(jobs),
            actor: None,
            closed: false,
        };
        Self {
            shared: Arc::new(Shared {
                worker,
                slot: Mutex::new(slot),
            }),
        }
    }

    /// The child the node's supervisor starts and restarts (`local-model:<name>`).
    pub fn spec(&self) -> ChildSpec {
        let shared = Arc::clone(&self.shared);
        ChildSpec {
            name: format!("local-model:{}", shared.worker.model),
            start: Arc::new(move |supervisor| {
                let shared = Arc::clone(&shared);
                Box::pin(async move {
                    let (actor, _) =
                        Actor::spawn_linked(None, LocalModelActor::new(), shared, supervisor)
                            .await?;
                    Ok(actor.get_cell())
                })
            }),
        }
    }

    /// Starts the actor on its own (linked to `supervisor` when given), for a pool that
    /// no node supervisor restarts (tests, tools).
    pub async fn start(
        &self,
        supervisor: Option<ActorCell>,
    ) -> Result<ActorRef<LocalModelMsg>, ractor::SpawnErr> {
        let shared = Arc::clone(&self.shared);
        let (actor, _) = match supervisor {
            Some(cell) => Actor::spawn_linked(None, LocalModelActor::new(), shared, cell).await?,
            None => Actor::spawn(None, LocalModelActor::new(), shared).await?,
        };
        Ok(actor)
    }
}

/// The actor that supervises one model's thread.
pub(super) struct LocalModelActor<M: BatchModel> {
    _model: std::marker::PhantomData<fn() -> M>,
}

impl<M: BatchModel> LocalModelActor<M> {
    const fn new() -> Self {
        Self {
            _model: std::marker::PhantomData,
        }
    }
}

impl<M: BatchModel> Actor for LocalModelActor<M> {
    type Msg = LocalModelMsg;
    type State = Arc<Shared<M>>;
    type Arguments = Arc<Shared<M>>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let closed = {
            let mut slot = shared.slot();
            slot.actor = Some(myself.clone());
            slot.closed
        };
        if closed {
            myself.stop(None);
        } else {
            shared.start_thread()?;
        }
        Ok(shared)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        shared: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            LocalModelMsg::ThreadEnded { died: true } => {
                let model = shared.worker.model.to_string();
                tracing::error!(%model, "the local model's thread died; starting another");
                metrics::counter!(metric_names::LOCAL_MODEL_RESTARTS, "model" => model)
                    .increment(1);
                shared.start_thread()?;
            }
            LocalModelMsg::ThreadEnded { died: false } => myself.stop(None),
        }
        Ok(())
    }
}
