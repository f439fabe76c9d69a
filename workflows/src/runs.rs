//! The runs of a node: the [`Runs`] actor starts each run's [`RunActor`] under itself,
//! routes pause, resume and cancel to it, and at start takes up every run its store holds
//! unfinished. [`Workflows`] is the handle the API, the CLI and the scheduler use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use troupe_actors::supervisor::ChildSpec;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::effects::{Effects, StepError};
use crate::engine::{Control, RunLimits};
use crate::journal::{Cause, JournalError, Record, RunJournal, RunSummary, WorkflowStore};
use crate::metrics as names;
use crate::run::{RunActor, RunArgs, RunMessage};

/// Client-visible reasons a workflow request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowErrorCode {
    NotFound,
    Invalid,
    Conflict,
    Unavailable,
    Storage,
}

/// Why a workflow request failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("there is no workflow `{0}`")]
    NoWorkflow(String),
    #[error("there is no run `{0}`")]
    NoRun(String),
    #[error("the run `{0}` has ended")]
    Ended(String),
    #[error("the workflow engine is not running")]
    NotRunning,
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

impl WorkflowError {
    pub fn code(&self) -> WorkflowErrorCode {
        match self {
            Self::NoWorkflow(_) | Self::NoRun(_) => WorkflowErrorCode::NotFound,
            Self::Ended(_) => WorkflowErrorCode::Conflict,
            Self::NotRunning => WorkflowErrorCode::Unavailable,
            Self::Journal(_) | Self::Step(_) => WorkflowErrorCode::Storage,
            Self::Catalog(crate::catalog::CatalogError::Io(_)) => WorkflowErrorCode::Storage,
            Self::Catalog(crate::catalog::CatalogError::InUse { .. }) => {
                WorkflowErrorCode::Conflict
            }
            Self::Catalog(_) => WorkflowErrorCode::Invalid,
        }
    }
}

/// A request to start a run.
#[derive(Clone, Debug)]
pub struct StartRun {
    pub workflow: String,
    pub input: Map<String, Value>,
    pub cause: Cause,
    /// The run's id; a new one when `None`. Starting an id that exists starts nothing.
    pub run: Option<String>,
}

/// What the engine is built from.
#[derive(Clone)]
pub struct EngineParts {
    pub catalog: Arc<Catalog>,
    pub store: Arc<dyn WorkflowStore>,
    pub effects: Arc<dyn Effects>,
    /// The runs waiting for replies (shared with the door that sees messages).
    pub replies: Arc<crate::replies::ReplyWaiters>,
    pub clock: Clock,
    pub limits: RunLimits,
    pub journal_limit: usize,
}

pub enum RunsMessage {
    Start {
        request: StartRun,
        reply: RpcReplyPort<Result<RunSummary, WorkflowError>>,
    },
    Control {
        run: String,
        control: Control,
        reply: RpcReplyPort<Result<RunSummary, WorkflowError>>,
    },
    /// Takes up the runs the store holds unfinished.
    ResumeUnfinished,
}

/// What the `Runs` actor starts with: the engine, and the token of its incarnation, which
/// a restarted `Runs` cancels so that runs the failed one left behind stop before they are
/// taken up again (ractor does not stop a failed actor's children).
pub struct RunsArgs {
    parts: EngineParts,
    incarnation: Arc<Mutex<CancellationToken>>,
}

pub struct RunsState {
    parts: EngineParts,
    /// Cancelled when this incarnation is replaced: its runs stop where they are.
    incarnation: CancellationToken,
    active: HashMap<String, (ActorRef<RunMessage>, RunJournal)>,
}

pub struct Runs;

impl Actor for Runs {
    type Msg = RunsMessage;
    type State = RunsState;
    type Arguments = RunsArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RunsArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let incarnation = CancellationToken::new();
        let previous = std::mem::replace(
            &mut *args
                .incarnation
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            incarnation.clone(),
        );
        previous.cancel();
        myself.cast(RunsMessage::ResumeUnfinished)?;
        Ok(RunsState {
            parts: args.parts,
            incarnation,
            active: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: RunsMessage,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RunsMessage::Start { request, reply } => {
                let _ = reply.send(state.start(&myself, request).await);
            }
            RunsMessage::Control {
                run,
                control,
                reply,
            } => {
                let outcome = match state.active.get(&run) {
                    Some((actor, _)) => actor
                        .call(|reply| RunMessage::Control { control, reply }, None)
                        .await
                        .map_err(|_| WorkflowError::Ended(run.clone()))
                        .and_then(|answer| {
                            answer
                                .success_or(())
                                .map_err(|()| WorkflowError::Ended(run.clone()))
                        })
                        .and_then(|summary| summary.map_err(WorkflowError::from)),
                    None => state.ended_or_missing(&run).await,
                };
                let _ = reply.send(outcome);
            }
            RunsMessage::ResumeUnfinished => state.resume_unfinished(&myself).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ended = match &event {
            SupervisionEvent::ActorTerminated(cell, _, _)
            | SupervisionEvent::ActorFailed(cell, _) => Some(cell.get_id()),
            _ => None,
        };
        if let Some(id) = ended {
            state.active.retain(|_, (actor, _)| actor.get_id() != id);
        }
        Ok(())
    }
}

impl RunsState {
    async fn ended_or_missing(&self, run: &str) -> Result<RunSummary, WorkflowError> {
        let records = self.parts.store.records(run).await?;
        match RunSummary::replayed(&records, run) {
            Some(_) => Err(WorkflowError::Ended(run.to_owned())),
            None => Err(WorkflowError::NoRun(run.to_owned())),
        }
    }

    async fn start(
        &mut self,
        myself: &ActorRef<RunsMessage>,
        request: StartRun,
    ) -> Result<RunSummary, WorkflowError> {
        let run = request
            .run
            .clone()
            .unwrap_or_else(|| format!("{}.{}", request.workflow, short_id()));
        if let Some((_, journal)) = self.active.get(&run) {
            return Ok(journal.summary().await);
        }
        let existing = self.parts.store.records(&run).await?;
        if let Some(summary) = RunSummary::replayed(&existing, &run) {
            return Ok(summary);
        }
        let definitions = self
            .parts
            .catalog
            .closure(&request.workflow)
            .ok_or_else(|| WorkflowError::NoWorkflow(request.workflow.clone()))?;
        let mut input = definitions
            .first()
            .map(|definition| definition.input.clone())
            .unwrap_or_default();
        input.extend(request.input);
        let at = self.parts.clock.now_ms();
        let started = Record::Started {
            workflow: request.workflow.clone(),
            input,
            cause: request.cause.clone(),
            definitions,
            at,
        };
        let summary = RunSummary::starting(&run, &request.workflow, request.cause.clone(), at);
        let journal = RunJournal::new(
            Arc::clone(&self.parts.store),
            RunSummary {
                records: 0,
                bytes: 0,
                ..summary
            },
            self.parts.journal_limit,
        );
        journal.append(&started).await?;
        let cause = request.cause.label();
        metrics::counter!(names::RUNS_STARTED, "workflow" => request.workflow.clone(), "cause" => cause)
            .increment(1);
        tracing::info!(run = %run, workflow = %request.workflow, cause, "workflow run started");
        self.spawn(myself, run, journal.clone(), vec![started])
            .await?;
        Ok(journal.summary().await)
    }

    async fn spawn(
        &mut self,
        myself: &ActorRef<RunsMessage>,
        run: String,
        journal: RunJournal,
        records: Vec<Record>,
    ) -> Result<(), WorkflowError> {
        let args = RunArgs {
            run: run.clone(),
            journal: journal.clone(),
            records,
            effects: Arc::clone(&self.parts.effects),
            replies: Arc::clone(&self.parts.replies),
            stop: self.incarnation.child_token(),
            clock: self.parts.clock,
            limits: self.parts.limits.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, RunActor, args, myself.get_cell())
            .await
            .map_err(|error| {
                tracing::error!(%error, "could not start a run actor");
                WorkflowError::NotRunning
            })?;
        self.active.insert(run, (actor, journal));
        Ok(())
    }

    async fn resume_unfinished(&mut self, myself: &ActorRef<RunsMessage>) {
        let summaries = match self.parts.store.summaries().await {
            Ok(summaries) => summaries,
            Err(error) => {
                tracing::error!(%error, "could not read the unfinished workflow runs; they wait for the next start");
                return;
            }
        };
        for summary in summaries
            .into_iter()
            .filter(|summary| !summary.status.is_over())
        {
            if self.active.contains_key(&summary.run) {
                continue;
            }
            let records = match self.parts.store.records(&summary.run).await {
                Ok(records) => records,
                Err(error) => {
                    tracing::error!(run = %summary.run, %error, "could not read a run's journal");
                    continue;
                }
            };
            // A summary written behind its journal: the journal says how the run stands.
            let Some(replayed) = RunSummary::replayed(&records, &summary.run)
                .filter(|replayed| !replayed.status.is_over())
            else {
                continue;
            };
            let journal = RunJournal::new(
                Arc::clone(&self.parts.store),
                replayed,
                self.parts.journal_limit,
            );
            tracing::info!(run = %summary.run, records = records.len(), "taking up an unfinished workflow run");
            metrics::counter!(names::RUNS_RESUMED).increment(1);
            if let Err(error) = self
                .spawn(myself, summary.run.clone(), journal, records)
                .await
            {
                tracing::error!(run = %summary.run, %error, "could not take up a run");
            }
        }
    }
}

fn short_id() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(12);
    id
}

/// The workflow engine of a node. Cheap to clone.
#[derive(Clone)]
pub struct Workflows {
    parts: EngineParts,
    runs: Arc<RwLock<Option<ActorRef<RunsMessage>>>>,
    incarnation: Arc<Mutex<CancellationToken>>,
}

impl Workflows {
    pub fn new(parts: EngineParts) -> Self {
        Self {
            parts,
            runs: Arc::default(),
            incarnation: Arc::default(),
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.parts.catalog
    }

    pub fn store(&self) -> &Arc<dyn WorkflowStore> {
        &self.parts.store
    }

    /// The runs waiting for replies.
    pub fn replies(&self) -> &Arc<crate::replies::ReplyWaiters> {
        &self.parts.replies
    }

    pub fn clock(&self) -> Clock {
        self.parts.clock
    }

    /// The node supervisor's child that runs the runs.
    pub fn child_spec(&self) -> ChildSpec {
        let workflows = self.clone();
        ChildSpec {
            name: "workflows".into(),
            start: Arc::new(move |supervisor| {
                let workflows = workflows.clone();
                Box::pin(async move {
                    let (runs, _) =
                        Actor::spawn_linked(None, Runs, workflows.args(), supervisor).await?;
                    *workflows
                        .runs
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(runs.clone());
                    Ok(runs.get_cell())
                })
            }),
        }
    }

    /// Starts the `Runs` actor on its own (tests, and nodes without a supervisor).
    pub async fn spawn(&self) -> Result<ActorRef<RunsMessage>, ActorProcessingErr> {
        let (runs, _) = Actor::spawn(None, Runs, self.args()).await?;
        *self
            .runs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(runs.clone());
        Ok(runs)
    }

    fn args(&self) -> RunsArgs {
        RunsArgs {
            parts: self.parts.clone(),
            incarnation: Arc::clone(&self.incarnation),
        }
    }

    fn actor(&self) -> Result<ActorRef<RunsMessage>, WorkflowError> {
        self.runs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(WorkflowError::NotRunning)
    }

    /// Starts a run; answers once its start is journaled.
    pub async fn start(&self, request: StartRun) -> Result<RunSummary, WorkflowError> {
        self.actor()?
            .call(|reply| RunsMessage::Start { request, reply }, None)
            .await
            .map_err(|_| WorkflowError::NotRunning)?
            .success_or(())
            .map_err(|()| WorkflowError::NotRunning)?
    }

    /// Pauses, resumes or cancels a run.
    pub async fn control(&self, run: &str, control: Control) -> Result<RunSummary, WorkflowError> {
        let run = run.to_owned();
        self.actor()?
            .call(
                |reply| RunsMessage::Control {
                    run,
                    control,
                    reply,
                },
                None,
            )
            .await
            .map_err(|_| WorkflowError::NotRunning)?
            .success_or(())
            .map_err(|()| WorkflowError::NotRunning)?
    }

    /// Every run's summary, newest first (of `workflow` only, when given).
    pub async fn runs(&self, workflow: Option<&str>) -> Result<Vec<RunSummary>, WorkflowError> {
        let mut summaries = self.parts.store.summaries().await?;
        summaries.retain(|summary| workflow.is_none_or(|name| summary.workflow == name));
        summaries.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(a.run.cmp(&b.run)));
        Ok(summaries)
    }

    /// Deletes, every hour until `stop`, the runs that ended more than `keep` ago.
    pub async fn prune_ended(&self, keep: std::time::Duration, stop: CancellationToken) {
        let keep_ms = crate::clock::millis(keep);
        loop {
            let before = self.parts.clock.now_ms() - keep_ms;
            match self.parts.store.prune(before).await {
                Ok(0) => {}
                Ok(pruned) => {
                    tracing::info!(pruned, "deleted the journals of runs that ended long ago")
                }
                Err(error) => {
                    tracing::warn!(%error, "could not delete old workflow runs; tried again in an hour")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            }
        }
    }

    /// A run's summary and its journal.
    pub async fn run(&self, run: &str) -> Result<(RunSummary, Vec<Record>), WorkflowError> {
        let records = self.parts.store.records(run).await?;
        let summary = RunSummary::replayed(&records, run)
            .ok_or_else(|| WorkflowError::NoRun(run.to_owned()))?;
        Ok((summary, records))
    }
}
