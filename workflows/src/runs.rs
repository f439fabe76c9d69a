//! The runs of a node: the [`Runs`] actor starts each run's [`RunActor`] under itself,
//! routes pause, resume and cancel to it, and at start takes up every run its store holds
//! unfinished. [`Workflows`] is the handle the API, the CLI and the scheduler use.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use troupe_actors::supervisor::ChildSpec;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::effects::{Effects, StepError};
use crate::engine::{Control, RunLimits};
use crate::journal::{Cause, JournalError, Record, RunJournal, RunSummary, WorkflowStore};
use crate::metrics as names;
use crate::placement::{RunRouter, partition_of};
use crate::run::{RunActor, RunArgs, RunMessage};

/// Client-visible reasons a workflow request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The node that holds the run refused, for a reason this node has no kind for.
    #[error("{message}")]
    Remote {
        code: WorkflowErrorCode,
        message: String,
    },
}

impl WorkflowError {
    pub fn code(&self) -> WorkflowErrorCode {
        match self {
            Self::NoWorkflow(_) | Self::NoRun(_) => WorkflowErrorCode::NotFound,
            Self::Ended(_) => WorkflowErrorCode::Conflict,
            Self::NotRunning => WorkflowErrorCode::Unavailable,
            Self::Journal(_) | Self::Step(_) => WorkflowErrorCode::Storage,
            Self::Catalog(
                crate::catalog::CatalogError::Io(_) | crate::catalog::CatalogError::Shared(_),
            ) => WorkflowErrorCode::Storage,
            Self::Catalog(crate::catalog::CatalogError::InUse { .. }) => {
                WorkflowErrorCode::Conflict
            }
            Self::Catalog(_) => WorkflowErrorCode::Invalid,
            Self::Remote { code, .. } => *code,
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
    /// In a cluster, how runs held by other nodes are reached (`None`: this node holds
    /// every run; see [`crate::placement`]).
    pub router: Option<Arc<dyn RunRouter>>,
}

pub enum RunsMessage {
    Start {
        request: StartRun,
        reply: RpcReplyPort<Result<RunSummary, WorkflowError>>,
    },
    Control {
        run: String,
        control: Control,
        /// Whether a run held by another node is reached through the router (`false` for
        /// the requests the router itself brings).
        forward: bool,
        reply: RpcReplyPort<Result<RunSummary, WorkflowError>>,
    },
    /// Takes up the runs the store holds unfinished.
    ResumeUnfinished,
    /// Holds a partition from now on: takes up its unfinished runs.
    Hold {
        partition: u32,
        reply: RpcReplyPort<()>,
    },
    /// Lets a partition go: its runs stop where they are.
    Release { partition: u32 },
    /// The summaries of the runs going on here, newest first.
    Running {
        reply: RpcReplyPort<Vec<RunSummary>>,
    },
    /// A run of a partition held here was started (or ended un-journaled): take it up;
    /// answers whether it runs here.
    Wake {
        run: String,
        reply: Option<RpcReplyPort<Result<bool, WorkflowError>>>,
    },
}

/// What the `Runs` actor starts with: the engine, and the token of its incarnation, which
/// a restarted `Runs` cancels so that runs the failed one left behind stop before they are
/// taken up again (ractor does not stop a failed actor's children).
pub struct RunsArgs {
    parts: EngineParts,
    incarnation: Arc<Mutex<CancellationToken>>,
    /// The partitions this node holds (kept across a restart of `Runs`).
    held: Arc<Mutex<HashSet<u32>>>,
}

pub struct RunsState {
    parts: EngineParts,
    /// Cancelled when this incarnation is replaced: its runs stop where they are.
    incarnation: CancellationToken,
    held: Arc<Mutex<HashSet<u32>>>,
    /// One token per partition held, cancelled when the partition goes.
    partitions: HashMap<u32, CancellationToken>,
    active: HashMap<String, (ActorRef<RunMessage>, RunJournal)>,
}

/// Pause before a run that stopped un-journaled is taken up again.
const RETAKE_PAUSE: Duration = Duration::from_secs(1);

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
        let partitions = lock(&args.held)
            .iter()
            .map(|partition| (*partition, incarnation.child_token()))
            .collect();
        Ok(RunsState {
            parts: args.parts,
            incarnation,
            held: args.held,
            partitions,
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
                forward,
                reply,
            } => state.control(&myself, run, control, forward, reply).await,
            RunsMessage::ResumeUnfinished => state.resume_unfinished(&myself, None).await,
            RunsMessage::Hold { partition, reply } => {
                lock(&state.held).insert(partition);
                let token = state.incarnation.child_token();
                if let Some(previous) = state.partitions.insert(partition, token) {
                    previous.cancel();
                }
                state.resume_unfinished(&myself, Some(partition)).await;
                let _ = reply.send(());
            }
            RunsMessage::Release { partition } => {
                lock(&state.held).remove(&partition);
                if let Some(token) = state.partitions.remove(&partition) {
                    token.cancel();
                }
                for run in state.active.keys() {
                    if partition_of(run) == partition {
                        state.parts.store.let_go(run);
                    }
                }
                tracing::info!(partition, "let a workflow partition go");
            }
            RunsMessage::Running { reply } => {
                let mut running = Vec::with_capacity(state.active.len());
                for (_, journal) in state.active.values() {
                    running.push(journal.summary().await);
                }
                running.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(a.run.cmp(&b.run)));
                let _ = reply.send(running);
            }
            RunsMessage::Wake { run, reply } => {
                let outcome = state.wake(&myself, &run).await;
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ended = match &event {
            SupervisionEvent::ActorTerminated(cell, _, _)
            | SupervisionEvent::ActorFailed(cell, _) => Some(cell.get_id()),
            _ => None,
        };
        let Some(id) = ended else {
            return Ok(());
        };
        let Some(run) = state
            .active
            .iter()
            .find(|(_, (actor, _))| actor.get_id() == id)
            .map(|(run, _)| run.clone())
        else {
            return Ok(());
        };
        if let Some((_, journal)) = state.active.remove(&run)
            && !journal.summary().await.status.is_over()
            && state.holds(&run)
            && !state.incarnation.is_cancelled()
        {
            // It stopped before journaling its end (the store failed, or another node
            // wrote its journal meanwhile): it is read again and goes on from the journal.
            tracing::warn!(run = %run, "a run stopped un-journaled; it is taken up again");
            let myself = myself.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RETAKE_PAUSE).await;
                let _ = myself.cast(RunsMessage::Wake { run, reply: None });
            });
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RunsState {
    /// Whether this node runs `run` (its partition is held here, or there is no cluster).
    fn holds(&self, run: &str) -> bool {
        self.parts.router.is_none() || self.partitions.contains_key(&partition_of(run))
    }

    /// The token a run of `run`'s partition stops on.
    fn stop_token(&self, run: &str) -> CancellationToken {
        match self.partitions.get(&partition_of(run)) {
            Some(partition) => partition.child_token(),
            None => self.incarnation.child_token(),
        }
    }

    async fn control(
        &mut self,
        myself: &ActorRef<RunsMessage>,
        run: String,
        control: Control,
        forward: bool,
        reply: RpcReplyPort<Result<RunSummary, WorkflowError>>,
    ) {
        if !self.active.contains_key(&run)
            && self.holds(&run)
            && let Err(error) = self.wake(myself, &run).await
        {
            let _ = reply.send(Err(error));
            return;
        }
        let Some((actor, _)) = self.active.get(&run) else {
            if self.holds(&run) {
                let _ = reply.send(self.ended_or_missing(&run).await);
                return;
            }
            match (&self.parts.router, forward) {
                (Some(router), true) => {
                    let router = Arc::clone(router);
                    tokio::spawn(async move {
                        let _ = reply.send(router.control(&run, control).await);
                    });
                }
                // Asked by another node for a run this node no longer holds.
                _ => {
                    let _ = reply.send(Err(WorkflowError::NotRunning));
                }
            }
            return;
        };
        let outcome = actor
            .call(|reply| RunMessage::Control { control, reply }, None)
            .await
            .map_err(|_| WorkflowError::Ended(run.clone()))
            .and_then(|answer| {
                answer
                    .success_or(())
                    .map_err(|()| WorkflowError::Ended(run.clone()))
            })
            .and_then(|summary| summary.map_err(WorkflowError::from));
        let _ = reply.send(outcome);
    }

    /// Takes up `run` if its partition is held here and it is not running yet.
    async fn wake(
        &mut self,
        myself: &ActorRef<RunsMessage>,
        run: &str,
    ) -> Result<bool, WorkflowError> {
        if !self.holds(run) {
            return Ok(false);
        }
        if self.active.contains_key(run) {
            return Ok(true);
        }
        let records = self.parts.store.take_up(run).await?;
        let replayed = RunSummary::replayed(&records, run)
            .ok_or_else(|| WorkflowError::NoRun(run.to_owned()))?;
        if replayed.status.is_over() {
            self.parts.store.let_go(run);
            return Ok(true);
        }
        let journal = RunJournal::new(
            Arc::clone(&self.parts.store),
            replayed,
            self.parts.journal_limit,
        );
        tracing::info!(run = %run, records = records.len(), "taking up a workflow run");
        self.spawn(myself, run.to_owned(), journal, records).await?;
        Ok(true)
    }

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
        let existing = self.parts.store.take_up(&run).await?;
        if let Some(summary) = RunSummary::replayed(&existing, &run) {
            self.parts.store.let_go(&run);
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
        if let Err(error) = journal.append(&started).await {
            // Another node started the same run id (the same firing, the same delivery)
            // first: that start stands.
            let existing = self.parts.store.records(&run).await?;
            self.parts.store.let_go(&run);
            return RunSummary::replayed(&existing, &run).ok_or(WorkflowError::Step(error));
        }
        let cause = request.cause.label();
        metrics::counter!(names::RUNS_STARTED, "workflow" => request.workflow.clone(), "cause" => cause)
            .increment(1);
        tracing::info!(run = %run, workflow = %request.workflow, cause, "workflow run started");
        let summary = journal.summary().await;
        if self.holds(&run) {
            self.spawn(myself, run, journal, vec![started]).await?;
        } else {
            self.parts.store.let_go(&run);
            if let Some(router) = &self.parts.router {
                tokio::spawn(wake_holder(Arc::clone(router), run));
            }
        }
        Ok(summary)
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
            stop: self.stop_token(&run),
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

    /// Takes up the unfinished runs of `partition` (of every partition held, when `None`).
    async fn resume_unfinished(&mut self, myself: &ActorRef<RunsMessage>, partition: Option<u32>) {
        let summaries = match self.parts.store.summaries().await {
            Ok(summaries) => summaries,
            Err(error) => {
                tracing::error!(%error, "could not read the unfinished workflow runs; they wait for the next start");
                return;
            }
        };
        let mine: Vec<RunSummary> = summaries
            .into_iter()
            .filter(|summary| {
                !summary.status.is_over()
                    && self.holds(&summary.run)
                    && partition.is_none_or(|partition| partition_of(&summary.run) == partition)
            })
            .collect();
        for summary in mine {
            if self.active.contains_key(&summary.run) {
                continue;
            }
            let records = match self.parts.store.take_up(&summary.run).await {
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
                self.parts.store.let_go(&summary.run);
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

/// Wakes the holder of a run started here; if no holder answers for a while, the next to
/// hold the partition takes the run up when it reads the partition's unfinished runs.
async fn wake_holder(router: Arc<dyn RunRouter>, run: String) {
    let mut pause = Duration::from_millis(50);
    for _ in 0..10 {
        if let Ok(true) = router.wake(&run).await {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    tracing::warn!(run = %run, "no node took up a started run yet; its partition's next holder will");
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
    held: Arc<Mutex<HashSet<u32>>>,
}

impl Workflows {
    pub fn new(parts: EngineParts) -> Self {
        Self {
            parts,
            runs: Arc::default(),
            incarnation: Arc::default(),
            held: Arc::default(),
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
            held: Arc::clone(&self.held),
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
        self.ask(|reply| RunsMessage::Start { request, reply })
            .await?
    }

    /// Pauses, resumes or cancels a run, on whichever node runs it.
    pub async fn control(&self, run: &str, control: Control) -> Result<RunSummary, WorkflowError> {
        self.control_where(run, control, true).await
    }

    /// Pauses, resumes or cancels a run of a partition this node holds (what another node
    /// asks through the router).
    pub async fn control_here(
        &self,
        run: &str,
        control: Control,
    ) -> Result<RunSummary, WorkflowError> {
        self.control_where(run, control, false).await
    }

    async fn control_where(
        &self,
        run: &str,
        control: Control,
        forward: bool,
    ) -> Result<RunSummary, WorkflowError> {
        let run = run.to_owned();
        self.ask(|reply| RunsMessage::Control {
            run,
            control,
            forward,
            reply,
        })
        .await?
    }

    async fn ask<T: Send + 'static>(
        &self,
        message: impl FnOnce(RpcReplyPort<T>) -> RunsMessage,
    ) -> Result<T, WorkflowError> {
        self.actor()?
            .call(message, None)
            .await
            .map_err(|_| WorkflowError::NotRunning)?
            .success_or(())
            .map_err(|()| WorkflowError::NotRunning)
    }

    /// Holds `partition` from now on: its runs run here (see [`crate::placement`]).
    pub async fn hold(&self, partition: u32) -> Result<(), WorkflowError> {
        self.ask(|reply| RunsMessage::Hold { partition, reply })
            .await
    }

    /// Lets `partition` go: its runs stop where they are, for its next holder. Does not
    /// wait (it is called from a drop).
    pub fn release_now(&self, partition: u32) {
        if let Ok(runs) = self.actor() {
            let _ = runs.cast(RunsMessage::Release { partition });
        }
    }

    /// Takes up `run`, started on another node, if its partition is held here.
    pub async fn wake(&self, run: &str) -> Result<bool, WorkflowError> {
        let run = run.to_owned();
        self.ask(|reply| RunsMessage::Wake {
            run,
            reply: Some(reply),
        })
        .await?
    }

    /// Offers `message` to `run`'s node (in a cluster); answers whether a run there took
    /// it.
    pub async fn offer_to(
        &self,
        run: &str,
        message: crate::events::ArrivedMessage,
    ) -> Result<bool, WorkflowError> {
        match &self.parts.router {
            Some(router) => router.offer(run, message).await,
            None => Ok(self.parts.replies.offer(&message)),
        }
    }

    /// The runs going on on this node, newest first (from memory: no store is read).
    pub async fn running(&self) -> Result<Vec<RunSummary>, WorkflowError> {
        self.ask(|reply| RunsMessage::Running { reply }).await
    }

    /// The partitions held here, in order.
    pub fn held(&self) -> Vec<u32> {
        let mut held: Vec<u32> = lock(&self.held).iter().copied().collect();
        held.sort_unstable();
        held
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
