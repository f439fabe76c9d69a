//! Group commit of a session's snapshots.
//!
//! A turn's final event goes out only once a snapshot that contains the turn is stored.
//! The write runs next to the session rather than inside it: while it is in flight the
//! session goes on with its next message, and every turn finished meanwhile is covered by
//! the next write, one for all of them. A user who sends one message at a time sees no
//! difference (the reply waits for its own write, as before); a session with messages
//! queued (a busy group, a burst from a bridge, a client with several in flight) stores
//! them with one write instead of one each.
//!
//! Order is kept: while earlier events wait for a write, a later turn's events (its deltas
//! and tool lines included) wait behind them and go out in order.
//!
//! The session runs its turns; this module only holds their events back until a write
//! contains them ([`WriteBeside`] finishes a write while the next turn runs).
//!
//! A final event that goes out ([`release`]) tells the node's inbox, if it has one, that its
//! message is answered; one that fails for want of storage does not, so the message is
//! answered again after a restart.

use std::collections::VecDeque;
use std::sync::Arc;

use ractor::ActorRef;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::journal::{JournalCursor, JournalMark};
use super::{SessionMsg, SessionState};
use crate::ids::SessionKey;
use crate::inbox::Inbox;
use crate::metrics as metric_names;
use crate::snapshot::StoreError;
use crate::turn::{ErrorCode, TurnError, TurnEvent, TurnEventReceiver, TurnEvents, turn_channel};

/// The write in flight.
struct SaveInFlight {
    /// Which write this is (the session's wake-up names it).
    attempt: u64,
    task: JoinHandle<Result<(), StoreError>>,
    /// Waiting events (from the front) whose turns this write contains.
    covers: usize,
    mark: WriteMark,
}

/// What a write contains: the session's change count and journal place when it was taken.
#[derive(Clone, Copy, Debug)]
pub(super) struct WriteMark {
    changes: u64,
    journal: JournalMark,
}

/// What a session keeps for group commit: the one owner of whether memory holds changes
/// the store lacks, and of whether this copy of the session is stale.
#[derive(Default)]
pub(super) struct Commit {
    saving: Option<SaveInFlight>,
    /// Events that wait for a write, with where each goes, in order.
    unsent: VecDeque<(TurnEvent, TurnEvents)>,
    /// Changes to the session so far: tells whether a stored snapshot is the latest.
    changes: u64,
    attempts: u64,
    /// Memory holds changes not yet stored: a write is in flight, or one failed (then it
    /// is retried before the next turn and on stop).
    unsaved: bool,
    /// The store reported that another writer changed our snapshot (another node took the
    /// session over): this copy is stale, so the session stops and is reloaded.
    stale: bool,
    /// Whether the next write is a journal record or a snapshot.
    journal: JournalCursor,
}

impl Commit {
    /// Whether a write is in flight.
    pub(super) const fn is_saving(&self) -> bool {
        self.saving.is_some()
    }

    /// Whether events wait for a write: a turn started now must queue its events too.
    pub(super) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Whether memory holds changes the store lacks.
    pub(super) const fn is_unsaved(&self) -> bool {
        self.unsaved
    }

    /// Whether another writer took the session over: this copy may not be stored.
    pub(super) const fn is_stale(&self) -> bool {
        self.stale
    }

    /// The session changed (a turn, a pending answer): a write must contain it.
    fn changed(&mut self) {
        self.changes += 1;
        self.unsaved = true;
    }

    /// An entry was appended to the history.
    pub(super) const fn appended(&mut self) {
        self.journal.appended();
    }

    /// The history changed in a way a journal record cannot say (a failed turn taken back).
    pub(super) const fn rewritten(&mut self) {
        self.journal.rewritten();
    }

    /// Whether journal records follow the stored snapshot.
    pub(super) const fn has_records(&self) -> bool {
        self.journal.has_records()
    }

    /// How many of the newest entries the next write appends as a journal record, or
    /// `None` when it must be the whole snapshot.
    pub(super) fn record_size(&self, history_len: usize) -> Option<usize> {
        self.journal.record_size(history_len)
    }

    /// Marks a write taken now (a snapshot, or a record).
    pub(super) const fn mark(&self, snapshot: bool) -> WriteMark {
        WriteMark {
            changes: self.changes,
            journal: self.journal.mark(snapshot),
        }
    }

    /// The write `mark` succeeded: the store holds what memory holds unless something
    /// changed since it was taken.
    pub(super) fn written(&mut self, mark: WriteMark) {
        self.journal.written(mark.journal);
        if self.changes == mark.changes {
            self.unsaved = false;
        }
    }

    /// The session was emptied and its snapshot deleted: nothing is unsaved, and its next
    /// write is a snapshot.
    pub(super) const fn emptied(&mut self) {
        self.unsaved = false;
        self.journal.rewritten();
    }

    /// A write failed: memory stays unsaved, and a conflict makes this copy stale.
    fn write_failed(&mut self, error: &StoreError) {
        self.unsaved = true;
        self.journal.write_failed();
        if matches!(error, StoreError::Conflict { .. }) {
            self.stale = true;
        }
    }

    /// The error of a turn that is not stored.
    pub(super) fn unsaved_error(&self) -> TurnError {
        unsaved_error_of(self.stale)
    }
}

/// Where a turn sends its events: straight to the client, or (while earlier events wait
/// for a write) into a buffer that joins the queue when the turn ends.
pub(super) struct TurnOutput {
    pub(super) events: TurnEvents,
    buffer: Option<TurnEventReceiver>,
    client: TurnEvents,
}

/// A write that was in flight when a turn started, finishing beside it. The events it
/// covers go out as soon as it is stored, not after the turn: a slow model call must not
/// hold back the reply before it. Once they are out, and if nothing else waits, the turn's
/// events stream live again.
pub(super) struct WriteBeside {
    attempt: u64,
    /// `None` once it finished.
    task: Option<JoinHandle<Result<(), StoreError>>>,
    covers: usize,
    mark: WriteMark,
    /// The events it covers, until they go out.
    covered: Vec<(TurnEvent, TurnEvents)>,
    nothing_else_waits: bool,
    /// How it ended, once it did.
    written: Option<Result<(), StoreError>>,
    inbox: Option<Arc<dyn Inbox>>,
    key: Option<SessionKey>,
}

impl WriteBeside {
    /// Drives `turn` to its end, finishing the write meanwhile and, once its events are
    /// out, passing `output`'s buffered events on live.
    pub(super) async fn drive<T>(
        &mut self,
        turn: impl Future<Output = T>,
        output: &mut TurnOutput,
    ) -> T {
        tokio::pin!(turn);
        let mut live = false;
        loop {
            tokio::select! {
                result = &mut turn => return result,
                saved = async { self.task.as_mut().expect("polled while in flight").await },
                    if self.task.is_some() =>
                {
                    self.task = None;
                    let saved = joined(saved);
                    let answered = self.inbox.as_deref().zip(self.key.as_ref());
                    send_covered(self.covered.drain(..), &saved, answered);
                    live = saved.is_ok() && self.nothing_else_waits;
                    self.written = Some(saved);
                }
                Some(event) = async { output.buffer.as_mut()?.recv().await }, if live => {
                    let _ = output.client.send(event);
                }
            }
        }
    }
}

impl SessionState {
    /// Where the next turn's events go.
    pub(super) fn turn_output(&self, client: &TurnEvents) -> TurnOutput {
        let (events, buffer) = if self.commit.has_unsent() {
            let (events, buffer) = turn_channel();
            (events, Some(buffer))
        } else {
            (client.clone(), None)
        };
        TurnOutput {
            events,
            buffer,
            client: client.clone(),
        }
    }

    /// Ends a turn that changed nothing (a repeat answered from the history, a failure):
    /// its events go out now, or behind those that wait.
    pub(super) fn answer(&mut self, mut output: TurnOutput, last: TurnEvent) {
        self.queue_buffered(&mut output);
        if self.commit.has_unsent() {
            self.commit.unsent.push_back((last, output.client));
        } else {
            self.release(last, &output.client);
        }
    }

    /// Sends `event` to its client (see [`release`]).
    fn release(&self, event: TurnEvent, client: &TurnEvents) {
        let answered = self
            .context
            .inbox
            .as_deref()
            .map(|inbox| (inbox, &self.key));
        release(answered, event, client);
    }

    /// Ends a turn that changed the session: its last event waits for a write that
    /// contains it, which starts now unless one is in flight (then the next one covers it).
    pub(super) fn commit_turn(
        &mut self,
        mut output: TurnOutput,
        last: TurnEvent,
        myself: &ActorRef<SessionMsg>,
    ) {
        self.queue_buffered(&mut output);
        self.commit.unsent.push_back((last, output.client));
        self.commit.changed();
        self.start_save(myself);
    }

    fn queue_buffered(&mut self, output: &mut TurnOutput) {
        let Some(buffer) = output.buffer.as_mut() else {
            return;
        };
        // The turn is over: every event it sent is in the buffer.
        while let Some(event) = buffer.try_recv() {
            if self.commit.has_unsent() {
                self.commit.unsent.push_back((event, output.client.clone()));
            } else {
                self.release(event, &output.client);
            }
        }
    }

    /// Takes the write in flight, if any, to finish beside the next turn
    /// ([`WriteBeside::drive`]); [`Self::write_finished_beside`] takes it back after.
    pub(super) fn write_beside(&mut self) -> Option<WriteBeside> {
        let saving = self.commit.saving.take()?;
        let covered = self.commit.unsent.drain(..saving.covers).collect();
        let inbox = self.context.inbox.clone();
        Some(WriteBeside {
            nothing_else_waits: self.commit.unsent.is_empty(),
            key: inbox.is_some().then(|| self.key.clone()),
            inbox,
            covered,
            task: Some(saving.task),
            written: None,
            attempt: saving.attempt,
            covers: saving.covers,
            mark: saving.mark,
        })
    }

    /// After the turn: a write still in flight keeps its events, ahead of everything else;
    /// a finished one is settled.
    pub(super) fn write_finished_beside(&mut self, write: WriteBeside) {
        match (write.task, write.written) {
            (Some(task), _) => {
                for waiting in write.covered.into_iter().rev() {
                    self.commit.unsent.push_front(waiting);
                }
                self.commit.saving = Some(SaveInFlight {
                    attempt: write.attempt,
                    task,
                    covers: write.covers,
                    mark: write.mark,
                });
            }
            (None, Some(saved)) => {
                self.after_write(saved, write.mark);
            }
            (None, None) => {}
        }
    }

    /// Starts writing the current state unless a write is in flight or nothing changed.
    pub(super) fn start_save(&mut self, myself: &ActorRef<SessionMsg>) {
        if self.commit.saving.is_some() || !self.commit.unsaved {
            return;
        }
        self.commit.attempts += 1;
        let attempt = self.commit.attempts;
        let (write, mark) = self.planned_write(false);
        let store = self.context.store.clone();
        let wake = myself.clone();
        let stored = self.context.stages.store.clone();
        let task = tokio::spawn(
            async move {
                let started = std::time::Instant::now();
                let saved = write.run(&*store).await;
                super::took(&stored, started.elapsed());
                let _ = wake.cast(SessionMsg::Saved { attempt });
                saved
            }
            .instrument(tracing::debug_span!("snapshot_save")),
        );
        self.commit.saving = Some(SaveInFlight {
            attempt,
            task,
            covers: self.commit.unsent.len(),
            mark,
        });
    }

    /// The write `attempt` ended: its events go out (or fail), and a write of whatever
    /// changed meanwhile starts.
    pub(super) async fn saved(&mut self, attempt: u64, myself: &ActorRef<SessionMsg>) {
        if self
            .commit
            .saving
            .as_ref()
            .is_none_or(|saving| saving.attempt != attempt)
        {
            return; // Already settled by `flush`.
        }
        if self.settle().await {
            self.save_or_release(myself);
        }
    }

    /// After a turn or a write: starts the write that what changed needs, or, when the
    /// session is stored as it is, sends every event still waiting. Those belong to turns
    /// that changed nothing (a repeat of an id answered from the history, a failure) and
    /// queued behind a write that did not cover them; no write is coming for them.
    pub(super) fn save_or_release(&mut self, myself: &ActorRef<SessionMsg>) {
        if self.commit.unsaved || self.commit.saving.is_some() {
            self.start_save(myself);
            return;
        }
        self.release_unsent();
    }

    /// Sends every waiting event: the session is stored as it is.
    fn release_unsent(&mut self) {
        let answered = self
            .context
            .inbox
            .as_deref()
            .map(|inbox| (inbox, &self.key));
        for (event, client) in self.commit.unsent.drain(..) {
            release(answered, event, &client);
        }
    }

    /// Waits for the write in flight, if any, and sends or fails what it covered.
    /// Returns whether it succeeded (true when there was none).
    async fn settle(&mut self) -> bool {
        let Some(saving) = self.commit.saving.take() else {
            return true;
        };
        let saved = joined(saving.task.await);
        let answered = self
            .context
            .inbox
            .as_deref()
            .map(|inbox| (inbox, &self.key));
        send_covered(self.commit.unsent.drain(..saving.covers), &saved, answered);
        self.after_write(saved, saving.mark)
    }

    /// Bookkeeping once a write ended and the events it covered went out: the session is
    /// stored if nothing changed since the write was taken; after a failure every other
    /// waiting event fails too. Returns whether the write succeeded.
    fn after_write(&mut self, saved: Result<(), StoreError>, mark: WriteMark) -> bool {
        match saved {
            Ok(()) => {
                self.commit.written(mark);
                true
            }
            Err(error) => {
                self.record_failed_save(&error);
                self.fail_unsent();
                false
            }
        }
    }

    /// Stores everything now and sends or fails every waiting event: before a reset,
    /// and when the session stops.
    pub(super) async fn flush(&mut self) {
        if !self.settle().await {
            return;
        }
        // A stale copy may not be stored.
        if self.commit.unsaved && (self.commit.stale || !self.save(false).await) {
            self.fail_unsent();
            return;
        }
        self.release_unsent();
    }

    pub(super) fn record_failed_save(&mut self, error: &StoreError) {
        self.commit.write_failed(error);
        if self.commit.stale {
            tracing::warn!(key = %self.key, "snapshot changed elsewhere; this copy is stale");
        } else {
            metrics::counter!(metric_names::SNAPSHOT_ERRORS).increment(1);
            tracing::error!(key = %self.key, %error, "snapshot save failed; will retry");
        }
    }

    /// Every waiting turn failed to be stored: its client gets the error instead of the
    /// reply (the turn stays in memory, so a resend gets the reply once a write succeeds).
    fn fail_unsent(&mut self) {
        let error = self.commit.unsaved_error();
        for (event, client) in self.commit.unsent.drain(..) {
            let _ = client.send(failed(event, &error));
        }
    }
}

/// A write task's outcome; a task that panicked or was cancelled is a failed write.
fn joined(
    outcome: Result<Result<(), StoreError>, tokio::task::JoinError>,
) -> Result<(), StoreError> {
    outcome.unwrap_or_else(|error| Err(StoreError::WriteStopped(error)))
}

/// Sends the events a write covered: as they are once it is stored (telling `inbox`),
/// with the error in place of each reply when it failed.
fn send_covered(
    covered: impl Iterator<Item = (TurnEvent, TurnEvents)>,
    saved: &Result<(), StoreError>,
    inbox: Option<(&dyn Inbox, &SessionKey)>,
) {
    let failure = saved
        .as_ref()
        .err()
        .map(|error| unsaved_error_of(matches!(error, StoreError::Conflict { .. })));
    for (event, client) in covered {
        match &failure {
            Some(error) => {
                let _ = client.send(failed(event, error));
            }
            None => release(inbox, event, &client),
        }
    }
}

/// Sends `event` to its client. A final event that settles its message (see
/// [`settled_message`]) tells the inbox that the message needs keeping no more.
fn release(inbox: Option<(&dyn Inbox, &SessionKey)>, event: TurnEvent, client: &TurnEvents) {
    if let Some((inbox, key)) = inbox
        && let Some(id) = settled_message(&event)
    {
        inbox.answered(key, id);
    }
    let _ = client.send(event);
}

/// The message a final event settles: a reply, or an error, except one that says the turn
/// could not be stored or the node is stopping (that message is answered after a restart).
fn settled_message(event: &TurnEvent) -> Option<&str> {
    match event {
        TurnEvent::Reply { reply, .. } => Some(&reply.in_reply_to),
        TurnEvent::Failed { in_reply_to, error } => (!matches!(
            error.code,
            ErrorCode::StorageError | ErrorCode::SessionFailed | ErrorCode::ShuttingDown
        ))
        .then_some(in_reply_to.as_str()),
        TurnEvent::Delta { .. } | TurnEvent::ToolCall { .. } | TurnEvent::ToolResult { .. } => None,
    }
}

/// What a client gets instead of a reply that could not be stored.
fn failed(event: TurnEvent, error: &TurnError) -> TurnEvent {
    match event {
        TurnEvent::Reply { reply, .. } => TurnEvent::Failed {
            in_reply_to: reply.in_reply_to,
            error: error.clone(),
        },
        other => other,
    }
}

/// The error of a turn that is not stored: `stale` when another node took the session.
fn unsaved_error_of(stale: bool) -> TurnError {
    if stale {
        TurnError::new(
            ErrorCode::SessionFailed,
            "the session moved to another node; send the message again",
        )
    } else {
        TurnError::new(
            ErrorCode::StorageError,
            "the conversation could not be stored; send the message again",
        )
    }
}
