//! `Session`: the actor that holds one conversation (one platform, one conversation id).
//!
//! It keeps a bounded history window in memory, builds the prompt (system prompt + window),
//! asks the model worker, streams deltas back, appends the reply and saves a snapshot
//! before the final reply goes out, so what a user has seen survives a `kill -9`
//! (snapshots are group-committed: see [`commit`]).
//! Messages of one session are handled one at a time, in order; sessions never wait on
//! each other. An idle session asks the registry to passivate it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
// Tokio's clock, so that idleness follows a test's paused time.
use tokio::time::Instant;
use tracing::Instrument;

use crate::backlog::BacklogTicket;
use crate::ids::SessionKey;
use crate::message::{Awaiting, ContentType, InboundMessage, OutboundReply, unix_now};
use crate::metrics as metric_names;
use crate::model_worker::ModelDirectory;
use crate::provider::{Role, Usage};
use crate::registry::RegistryMsg;
use crate::skill::{SkillDirectory, ToolPolicy};
use crate::snapshot::{
    EncodedSnapshot, HistoryEntry, PendingTools, SessionSnapshot, SnapshotStore, SnapshotView,
    StoreError,
};
use crate::stop::RunningTurns;
use crate::turn::{ErrorCode, TurnError, TurnEvent, TurnEvents};

mod commit;
mod journal;
mod memory;
mod pictures;
mod spend;
mod tools;

/// How every session behaves; shared by all of them.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub system_prompt: Arc<str>,
    /// Largest number of history entries kept (and sent to the model).
    pub history_window: usize,
    /// Idle time after which a session passivates.
    pub idle_passivate: Duration,
    /// The provider asked for replies.
    pub provider: String,
    /// Upper bound for one model call, whatever the provider policy says.
    pub turn_timeout: Duration,
    /// Rounds and parallelism of tool calls.
    pub tools: ToolPolicy,
}

impl SessionConfig {
    /// How often a session checks whether it has been idle long enough.
    fn idle_check_period(&self) -> Duration {
        (self.idle_passivate / 4).clamp(Duration::from_millis(5), Duration::from_secs(30))
    }
}

/// Everything a session needs from its surroundings.
#[derive(Clone)]
pub struct SessionContext {
    pub config: Arc<SessionConfig>,
    pub store: Arc<dyn SnapshotStore>,
    pub models: Arc<ModelDirectory>,
    pub skills: Arc<SkillDirectory>,
    pub turn_context: Option<Arc<dyn crate::turn_context::TurnContext>>,
    /// The node's inbox (a single node): told when a message is answered.
    pub inbox: Option<Arc<dyn crate::inbox::Inbox>>,
    /// Where each session registers the turn it runs, so that the person can stop it.
    pub running: Arc<RunningTurns>,
    /// Where pictures uploaded into conversations are kept (`None`: not taken here).
    pub uploads: Option<Arc<dyn crate::uploads::UploadStore>>,
    /// Long-term memory (`None`: the node keeps none).
    pub memories: Option<Arc<crate::memory::Memories>>,
    /// Token accounting and budgets (`None`: nothing is counted or limited).
    pub usage: Option<Arc<crate::usage::UsageBook>>,
    /// Where failed turns are kept for the operator.
    pub failures: Arc<crate::failures::FailedTurns>,
    /// How long each stage of a turn took.
    pub stages: Arc<TurnStages>,
}

/// `troupe_turn_stage_seconds{stage}`, one histogram per stage, registered once (a turn
/// records into them without building labels).
pub struct TurnStages {
    queue: metrics::Histogram,
    model: metrics::Histogram,
    tools: metrics::Histogram,
    store: metrics::Histogram,
}

impl TurnStages {
    /// The histograms of the metrics recorder installed now.
    pub fn registered() -> Self {
        let stage = |stage: &'static str| metrics::histogram!(metric_names::TURN_STAGE_SECONDS, "stage" => stage);
        Self {
            queue: stage("queue"),
            model: stage("model"),
            tools: stage("tools"),
            store: stage("store"),
        }
    }
}

fn took(histogram: &metrics::Histogram, took: Duration) {
    histogram.record(took.as_secs_f64());
}

/// A session's history as the sessions API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub key: String,
    pub platform: String,
    pub conversation_id: String,
    pub history: Vec<HistoryView>,
    pub updated_at: u64,
    /// Set while tool calls wait for the person's yes or no (the newest reply asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<Awaiting>,
}

/// One history entry as the sessions API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryView {
    pub role: Role,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Tools the assistant called in this entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<crate::provider::ToolCall>,
    /// For a `tool` entry: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    pub timestamp: u64,
    /// Pictures the person's message showed (`GET …/uploads/{upload}` gives each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<crate::uploads::ImageRef>,
}

impl SessionView {
    /// The view of a stored snapshot (what a node that does not run the session shows).
    pub fn from_snapshot(snapshot: &SessionSnapshot) -> Self {
        Self::build(
            &snapshot.key,
            snapshot.history.iter(),
            snapshot.updated_at,
            snapshot.pending.is_some(),
        )
    }

    fn build<'a>(
        key: &SessionKey,
        history: impl Iterator<Item = &'a HistoryEntry>,
        updated_at: u64,
        pending: bool,
    ) -> Self {
        Self {
            key: key.to_string(),
            platform: key.platform().to_owned(),
            conversation_id: key.conversation_id().to_owned(),
            history: history
                .map(|entry| HistoryView {
                    role: entry.role,
                    content: entry.content.to_string(),
                    message_id: entry.message_id.clone(),
                    tool_calls: entry.tool_calls.clone(),
                    tool_call_id: entry.tool_call_id.clone(),
                    timestamp: entry.timestamp,
                    images: entry.images.clone(),
                })
                .collect(),
            updated_at,
            awaiting: pending.then_some(Awaiting::Confirmation),
        }
    }
}

/// Messages of a [`Session`].
pub enum SessionMsg {
    /// Handle one inbound message; events go to `events`.
    HandleInbound {
        message: Box<InboundMessage>,
        events: TurnEvents,
        /// The span the message arrived under: the turn's span is its child.
        span: tracing::Span,
        /// The message's place in the backlog: freed once it is handled.
        ticket: BacklogTicket,
    },
    /// The history, or `None` when the session has never held anything.
    GetHistory {
        reply: RpcReplyPort<Option<SessionView>>,
    },
    /// Forget everything; answers whether there was anything to forget.
    Reset {
        reply: RpcReplyPort<Result<bool, TurnError>>,
    },
    /// Timer tick: passivate if idle long enough.
    CheckIdle,
    /// The snapshot write `attempt` ended (sent by the write itself).
    Saved { attempt: u64 },
}

/// Start-up arguments of a [`Session`].
pub struct SessionArgs {
    pub key: SessionKey,
    pub context: SessionContext,
    pub registry: ActorRef<RegistryMsg>,
}

/// State of a [`Session`].
pub struct SessionState {
    key: SessionKey,
    context: SessionContext,
    registry: ActorRef<RegistryMsg>,
    history: VecDeque<HistoryEntry>,
    /// Unix seconds of the last change.
    updated_at: u64,
    /// Inbound messages handled; the registry compares it with what it routed before
    /// passivating us, so no routed message is ever dropped.
    handled: u64,
    last_activity: Instant,
    /// Whether a snapshot exists or the session holds anything: decides 404 vs. history.
    exists: bool,
    idle_timer: Option<JoinHandle<()>>,
    /// Tool calls waiting for the user's yes or no (kept in the snapshot).
    pending: Option<PendingTools>,
    /// History entries added by the turn in progress (removed again if it fails).
    turn_entries: usize,
    /// The snapshot write in flight and the events that wait for it.
    commit: commit::Commit,
    /// The pictures of the window, read for the model.
    pictures: pictures::Pictures,
    /// This session's place among the node's running turns (taken at its first turn).
    turns: Option<crate::stop::SessionTurns>,
}

/// The actor.
#[derive(Debug, Default)]
pub struct Session;

impl Actor for Session {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SessionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let pictures = pictures::Pictures::new(args.context.uploads.clone());
        Ok(SessionState {
            key: args.key,
            context: args.context,
            registry: args.registry,
            history: VecDeque::new(),
            updated_at: 0,
            handled: 0,
            last_activity: Instant::now(),
            exists: false,
            idle_timer: None,
            pending: None,
            turn_entries: 0,
            commit: commit::Commit::default(),
            pictures,
            turns: None,
        })
    }

    /// Loads the snapshot here rather than in `pre_start`, so the registry never waits on
    /// the disk: messages queue in the mailbox until the history is back.
    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match state.context.store.load(&state.key).await {
            Ok(Some(snapshot)) => state.restore(snapshot),
            Ok(None) => {}
            Err(StoreError::Corrupt { key, reason }) => {
                metrics::counter!(metric_names::SNAPSHOT_ERRORS).increment(1);
                tracing::error!(%key, %reason, "snapshot unreadable; the session starts empty");
            }
            Err(error) => return Err(Box::new(error)),
        }
        let period = state.context.config.idle_check_period();
        state.idle_timer = Some(myself.send_interval(period, || SessionMsg::CheckIdle));
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.idle_timer.take() {
            timer.abort();
        }
        state.flush().await;
        if !state.commit.is_unsaved() {
            state.context.store.forget(&state.key);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: SessionMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SessionMsg::HandleInbound {
                message,
                events,
                span,
                ticket,
            } => {
                state.handled += 1;
                took(&state.context.stages.queue, ticket.waited());
                let turn_span = tracing::debug_span!(
                    parent: &span,
                    "session_turn",
                    session = %state.key,
                    message_id = %message.id(),
                );
                state
                    .handle_inbound(*message, &events, &myself)
                    .instrument(turn_span)
                    .await;
                drop(ticket);
                state.last_activity = Instant::now();
                if state.commit.is_stale() {
                    // Queued messages are dropped with us; their senders see the channel
                    // close and deliver them again to the reloaded session.
                    myself.stop(Some("snapshot changed by another writer".into()));
                }
            }
            SessionMsg::GetHistory { reply } => {
                let _ = reply.send(state.exists.then(|| state.view()));
            }
            SessionMsg::Reset { reply } => {
                state.flush().await;
                let _ = reply.send(state.reset().await);
                state.last_activity = Instant::now();
            }
            SessionMsg::Saved { attempt } => {
                state.saved(attempt, &myself).await;
                if state.commit.is_stale() {
                    myself.stop(Some("snapshot changed by another writer".into()));
                }
            }
            SessionMsg::CheckIdle => {
                if state.commit.is_saving() {
                    return Ok(()); // Not idle: a write is in flight.
                }
                // A session whose last snapshot failed must not leave memory before it is saved.
                if state.commit.is_unsaved() && !state.save(false).await {
                    if state.commit.is_stale() {
                        myself.stop(Some("snapshot changed by another writer".into()));
                    }
                    return Ok(());
                }
                if state.last_activity.elapsed() >= state.context.config.idle_passivate {
                    // It leaves memory with its journal folded into one snapshot, so that
                    // its next start reads one value.
                    if state.commit.has_records() && !state.save(true).await {
                        return Ok(());
                    }
                    let idle = RegistryMsg::SessionIdle {
                        key: state.key.clone(),
                        handled: state.handled,
                    };
                    let _ = state.registry.cast(idle);
                }
            }
        }
        Ok(())
    }
}

impl SessionState {
    fn restore(&mut self, snapshot: SessionSnapshot) {
        let mut history = VecDeque::from(snapshot.history);
        // Journal records replay beyond the window; the window is the session's own.
        let beyond_window = history
            .len()
            .saturating_sub(self.context.config.history_window.max(1));
        history.drain(..beyond_window);
        self.history = history;
        self.updated_at = snapshot.updated_at;
        self.pending = snapshot.pending;
        self.exists = true;
    }

    fn snapshot(&self) -> EncodedSnapshot {
        SnapshotView {
            key: &self.key,
            history: &self.history,
            updated_at: self.updated_at,
            pending: self.pending.as_ref(),
        }
        .encode()
    }

    fn view(&self) -> SessionView {
        SessionView::build(
            &self.key,
            self.history.iter(),
            self.updated_at,
            self.pending.is_some(),
        )
    }

    /// Stores the current state now (the session waits): retries after a failed write,
    /// and folds the journal into a snapshot when `compact`.
    async fn save(&mut self, compact: bool) -> bool {
        let (write, mark) = self.planned_write(compact);
        let saved = write
            .run(&*self.context.store)
            .instrument(tracing::debug_span!("snapshot_save"))
            .await;
        match saved {
            Ok(()) => {
                self.commit.written(mark);
                true
            }
            Err(error) => {
                self.record_failed_save(&error);
                false
            }
        }
    }

    async fn reset(&mut self) -> Result<bool, TurnError> {
        let existed = self.exists;
        self.history.clear();
        self.pending = None;
        self.exists = false;
        self.commit.emptied();
        self.context
            .store
            .delete(&self.key)
            .await
            .map_err(|error| {
                TurnError::new(
                    ErrorCode::StorageError,
                    format!("could not delete the session: {error}"),
                )
            })?;
        // Its pictures go with it.
        self.pictures = pictures::Pictures::new(self.context.uploads.clone());
        if let Some(uploads) = &self.context.uploads {
            uploads.forget(&self.key).await.map_err(|error| {
                TurnError::new(
                    ErrorCode::StorageError,
                    format!("could not delete the conversation's pictures: {error}"),
                )
            })?;
        }
        Ok(existed)
    }

    fn push_history(&mut self, entry: HistoryEntry) {
        self.turn_entries += 1;
        self.commit.appended();
        self.history.push_back(entry);
        while self.history.len() > self.context.config.history_window.max(1) {
            self.history.pop_front();
        }
    }

    /// Takes the exchange a message replaces out of the history (the person's last message
    /// and everything after it), with any tool calls it left waiting; only the last message
    /// of the conversation can be replaced.
    fn take_replaced(&mut self, message: &InboundMessage) -> Result<Vec<HistoryEntry>, TurnError> {
        let Some(replaced) = message.replaces() else {
            return Ok(Vec::new());
        };
        let last_asked = self
            .history
            .iter()
            .rposition(|entry| entry.role == Role::User);
        match last_asked {
            Some(index) if self.history[index].message_id.as_deref() == Some(replaced) => {
                self.pending = None;
                self.commit.rewritten();
                Ok(self.history.drain(index..).collect())
            }
            _ => Err(TurnError::new(
                ErrorCode::InvalidMessage,
                format!(
                    "`replaces` names `{replaced}`, which is not the last message of this conversation"
                ),
            )),
        }
    }

    /// The reply already given to inbound message `id`, rebuilt from the history window:
    /// the first final assistant entry after the user entry with that id.
    fn earlier_reply(&self, message: &InboundMessage) -> Option<OutboundReply> {
        let asked = self.history.iter().position(|entry| {
            entry.role == Role::User && entry.message_id.as_deref() == Some(message.id())
        })?;
        let answer = self
            .history
            .iter()
            .skip(asked + 1)
            .find(|entry| entry.role == Role::Assistant && entry.tool_calls.is_empty())?;
        Some(OutboundReply {
            id: answer.message_id.clone().unwrap_or_default(),
            in_reply_to: message.id().to_owned(),
            platform: self.key.platform().to_owned(),
            recipient_id: message.sender_id().to_owned(),
            conversation_id: self.key.conversation_id().to_owned(),
            content_type: ContentType::Text,
            payload: answer.content.to_string(),
            timestamp: answer.timestamp,
            awaiting: self.awaiting_after(answer),
            stopped: false,
        })
    }

    /// A confirmation waits on `answer` when it is the newest entry and calls are pending.
    fn awaiting_after(&self, answer: &HistoryEntry) -> Option<Awaiting> {
        let newest = self
            .history
            .back()
            .is_some_and(|last| std::ptr::eq(last, answer));
        (newest && self.pending.is_some()).then_some(Awaiting::Confirmation)
    }

    async fn handle_inbound(
        &mut self,
        message: InboundMessage,
        events: &TurnEvents,
        myself: &ActorRef<SessionMsg>,
    ) {
        let mut output = self.turn_output(events);
        // A write that failed is retried before anything else happens.
        if self.commit.is_unsaved() && !self.commit.is_saving() && !self.save(false).await {
            let error = self.commit.unsaved_error();
            let failed = TurnEvent::Failed {
                in_reply_to: message.id().to_owned(),
                error,
            };
            self.answer(output, failed);
            return;
        }
        if let Some(first_reply) = self.earlier_reply(&message) {
            metrics::counter!(metric_names::DUPLICATE_MESSAGES).increment(1);
            let event = TurnEvent::Reply {
                reply: Box::new(first_reply),
                model_latency: Duration::ZERO,
                usage: None,
            };
            self.answer(output, event);
            self.save_or_release(myself);
            return;
        }
        let in_reply_to = message.id().to_owned();
        match self.turn_beside_write(message, &mut output).await {
            Ok((reply, model_latency, usage)) => {
                let event = TurnEvent::Reply {
                    reply: Box::new(reply),
                    model_latency,
                    usage,
                };
                self.commit_turn(output, event, myself);
            }
            Err(error) => {
                metrics::counter!(metric_names::MESSAGE_ERRORS, "code" => error.code.as_str())
                    .increment(1);
                self.context
                    .failures
                    .keep(self.key.to_string(), in_reply_to.clone(), &error);
                self.answer(output, TurnEvent::Failed { in_reply_to, error });
                // Turns that waited behind the finished write still need theirs.
                self.save_or_release(myself);
            }
        }
    }

    /// Whether a turn's answer stays in the conversation: a turn stopped before the
    /// assistant said or did anything is undone, as if the message had not been sent;
    /// one stopped later keeps what the person saw.
    fn kept(&self, answer: tools::Answer) -> Result<tools::Answer, TurnError> {
        let only_the_question = self.turn_entries <= 1;
        if answer.stopped && answer.text.is_empty() && only_the_question {
            return Err(TurnError::new(
                ErrorCode::Stopped,
                "stopped before the assistant said anything",
            ));
        }
        Ok(answer)
    }

    /// Runs a turn; a write in flight finishes beside it ([`commit::WriteBeside`]).
    async fn turn_beside_write(
        &mut self,
        message: InboundMessage,
        output: &mut commit::TurnOutput,
    ) -> Result<(OutboundReply, Duration, Option<Usage>), TurnError> {
        let Some(mut write) = self.write_beside() else {
            return self.run_turn(message, &output.events).await;
        };
        let events = output.events.clone();
        let result = write.drive(self.run_turn(message, &events), output).await;
        self.write_finished_beside(write);
        result
    }

    async fn run_turn(
        &mut self,
        message: InboundMessage,
        events: &TurnEvents,
    ) -> Result<(OutboundReply, Duration, Option<Usage>), TurnError> {
        // The pictures it shows are checked before anything changes.
        let images = self.pictures.shown_by(&self.key, &message).await?;
        let pending_before = self.pending.clone();
        let replaced = self.take_replaced(&message)?;
        let turns = self
            .turns
            .get_or_insert_with(|| self.context.running.enter(&self.key));
        let stop = turns.begin(message.id());
        self.turn_entries = 0;
        self.push_history(HistoryEntry {
            role: Role::User,
            content: message.payload().into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            message_id: Some(message.id().to_owned()),
            timestamp: message.timestamp(),
            images,
        });
        let started = Instant::now();
        let mut spend = spend::TurnSpend::default();
        let answered = self.converse(&message, events, &stop, &mut spend).await;
        // Spent, however the turn ended.
        let usage = spend.total();
        self.keep_spend(spend, &message);
        let answered = answered.and_then(|answer| self.kept(answer));
        drop(stop);
        let answer = match answered {
            Ok(answer) => answer,
            Err(error) => {
                // The turn did not happen: forget it so a retry does not repeat it.
                for _ in 0..self.turn_entries.min(self.history.len()) {
                    self.history.pop_back();
                }
                // What an edit replaced comes back: the conversation is as it was.
                self.history.extend(replaced);
                self.commit.rewritten();
                self.pending = pending_before;
                return Err(error);
            }
        };
        let model_latency = started.elapsed();
        metrics::histogram!(metric_names::MODEL_LATENCY_SECONDS)
            .record(model_latency.as_secs_f64());
        let now = unix_now();
        let reply = OutboundReply {
            id: format!("r-{}", uuid::Uuid::new_v4().simple()),
            in_reply_to: message.id().to_owned(),
            platform: message.platform().to_owned(),
            recipient_id: message.sender_id().to_owned(),
            conversation_id: message.conversation_id().to_owned(),
            content_type: ContentType::Text,
            payload: answer.text,
            timestamp: now,
            awaiting: self.pending.is_some().then_some(Awaiting::Confirmation),
            stopped: answer.stopped,
        };
        self.push_history(HistoryEntry {
            role: Role::Assistant,
            content: reply.payload.as_str().into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            message_id: Some(reply.id.clone()),
            timestamp: now,
            images: Vec::new(),
        });
        if !reply.stopped && reply.awaiting.is_none() {
            let person = self.person_of(&message);
            self.keep_exchange(&person, message.payload(), &reply.payload);
        }
        self.updated_at = now;
        self.exists = true;
        // Nothing is answered that is not stored: the caller sends the reply once a write
        // contains it. If that write fails the turn stays in memory, and a resend of the
        // same id gets this reply once a save succeeds, without asking the model again.
        Ok((reply, model_latency, usage))
    }
}
