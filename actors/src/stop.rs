//! Stopping a turn in progress ("stop generating").
//!
//! A session handles one message at a time, so a request to stop its turn cannot wait in
//! its mailbox: it would be read only once the turn had ended. Instead each session takes
//! a slot here (by session key) and marks in it the message whose turn runs, and whoever
//! may stop it (the gateway, after its own checks, or the cluster for a session another
//! node runs) cancels the turn's token from outside the actor.
//!
//! A stop can come before its turn: the message may still wait behind an earlier one of
//! its session (or in a cluster's inbox). Such a stop is kept for [`EARLY_STOP_LIFE`],
//! and the turn is stopped as it begins; at most [`MAX_EARLY_STOPS`] are kept, the
//! oldest leaving first, so stops of messages that never come cost nothing lasting.
//!
//! What a stopped turn does is the session's business ([`crate::session`]): the model call
//! in flight is dropped (its worker stops the provider's stream, see
//! [`crate::provider::DeltaSink::stopped`]), no further tool round starts, and the turn
//! ends with what the person has already seen.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
// Tokio's clock, so that a stop's life follows a test's paused time.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ids::SessionKey;

/// How long a stop waits for a turn that has not begun.
pub const EARLY_STOP_LIFE: Duration = Duration::from_secs(60);
/// Most stops kept waiting for their turns, on one node.
pub const MAX_EARLY_STOPS: usize = 256;

/// The sessions of this node and the turn each runs (one at most).
///
/// A session takes its slot once, when it starts ([`RunningTurns::enter`]), and each turn
/// only marks the slot: no map entry, key copy or token is made per message, since every
/// message pays for what a turn does here.
#[derive(Debug, Default)]
pub struct RunningTurns {
    sessions: DashMap<SessionKey, Arc<TurnSlot>>,
    /// Stops of turns that had not begun, oldest first.
    early: Mutex<VecDeque<EarlyStop>>,
    /// Whether `early` may hold anything: a turn looks there only then.
    any_early: AtomicBool,
}

#[derive(Debug)]
struct EarlyStop {
    key: SessionKey,
    message_id: Box<str>,
    until: Instant,
}

/// Whether a request to stop found the turn it named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOutcome {
    /// The turn was running and is stopping now (or had been asked already).
    Stopping,
    /// No turn of that message is running in that session: it ended, or it has not begun
    /// (then it stops as it begins, within [`EARLY_STOP_LIFE`]).
    NotRunning,
}

/// One session's turn, as a stop sees it.
#[derive(Debug, Default)]
struct TurnSlot {
    turn: Mutex<SlotTurn>,
}

#[derive(Debug, Default)]
struct SlotTurn {
    /// The message whose turn runs (empty: none runs).
    message_id: String,
    /// Cancelled by a stop; kept from turn to turn until one is stopped.
    stop: CancellationToken,
}

impl TurnSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotTurn> {
        self.turn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RunningTurns {
    /// The slot of `key`'s session, for as long as the returned guard lives.
    pub(crate) fn enter(self: &Arc<Self>, key: &SessionKey) -> SessionTurns {
        let slot = Arc::new(TurnSlot::default());
        self.sessions.insert(key.clone(), Arc::clone(&slot));
        SessionTurns {
            turns: Arc::clone(self),
            key: key.clone(),
            slot,
        }
    }

    /// Stops the turn of `message_id` in `key`'s session: now if that is the turn it runs,
    /// or as it begins if it begins within [`EARLY_STOP_LIFE`].
    pub fn stop(&self, key: &SessionKey, message_id: &str) -> StopOutcome {
        if let Some(slot) = self.sessions.get(key) {
            let turn = slot.lock();
            if !turn.message_id.is_empty() && turn.message_id == message_id {
                turn.stop.cancel();
                return StopOutcome::Stopping;
            }
        }
        let mut early = self.early();
        let now = Instant::now();
        while early
            .front()
            .is_some_and(|oldest| oldest.until <= now || early.len() >= MAX_EARLY_STOPS)
        {
            early.pop_front();
        }
        early.push_back(EarlyStop {
            key: key.clone(),
            message_id: message_id.into(),
            until: now + EARLY_STOP_LIFE,
        });
        self.any_early.store(true, Ordering::Release);
        StopOutcome::NotRunning
    }

    /// How many turns run now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.sessions
            .iter()
            .filter(|slot| !slot.lock().message_id.is_empty())
            .count()
    }

    /// Whether no turn runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a stop came for this turn before it began (it is used up).
    fn take_early(&self, key: &SessionKey, message_id: &str) -> bool {
        if !self.any_early.load(Ordering::Acquire) {
            return false;
        }
        let mut early = self.early();
        let now = Instant::now();
        let found = early.iter().position(|stop| {
            stop.until > now && stop.key == *key && *stop.message_id == *message_id
        });
        if let Some(index) = found {
            early.remove(index);
        }
        if early.is_empty() {
            self.any_early.store(false, Ordering::Release);
        }
        found.is_some()
    }

    fn early(&self) -> std::sync::MutexGuard<'_, VecDeque<EarlyStop>> {
        self.early
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A session's place in [`RunningTurns`]; dropping it (the session stops) gives it up.
#[derive(Debug)]
pub(crate) struct SessionTurns {
    turns: Arc<RunningTurns>,
    key: SessionKey,
    slot: Arc<TurnSlot>,
}

impl SessionTurns {
    /// Marks the turn of `message_id` as running until the returned guard is dropped.
    pub(crate) fn begin(&self, message_id: &str) -> TurnStop {
        let stopped_early = self.turns.take_early(&self.key, message_id);
        let mut turn = self.slot.lock();
        if turn.stop.is_cancelled() {
            turn.stop = CancellationToken::new();
        }
        if stopped_early {
            turn.stop.cancel();
        }
        turn.message_id.clear();
        turn.message_id.push_str(message_id);
        TurnStop {
            slot: Arc::clone(&self.slot),
            stop: turn.stop.clone(),
        }
    }
}

impl Drop for SessionTurns {
    fn drop(&mut self) {
        // Only this session's slot: a newer session of the same key keeps its own.
        let slot = &self.slot;
        self.turns
            .sessions
            .remove_if(&self.key, |_, registered| Arc::ptr_eq(registered, slot));
    }
}

/// One running turn's stop signal; dropping it marks the session as running none.
#[derive(Debug)]
pub(crate) struct TurnStop {
    slot: Arc<TurnSlot>,
    stop: CancellationToken,
}

impl TurnStop {
    /// The token a stop request cancels.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.stop
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }
}

impl Drop for TurnStop {
    fn drop(&mut self) {
        self.slot.lock().message_id.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> SessionKey {
        SessionKey::new("ws", "ada").unwrap()
    }

    #[test]
    fn a_stop_reaches_the_running_turn_and_the_next_turn_starts_unstopped() {
        let turns = Arc::new(RunningTurns::default());
        let session = turns.enter(&ada());
        let first = session.begin("m1");
        assert_eq!(turns.len(), 1);
        assert_eq!(turns.stop(&ada(), "m1"), StopOutcome::Stopping);
        assert!(first.is_stopped());
        drop(first);
        assert!(turns.is_empty());
        let second = session.begin("m2");
        assert!(!second.is_stopped(), "a stopped token is not reused");
        drop(second);
        assert_eq!(turns.stop(&ada(), "m2"), StopOutcome::NotRunning);
    }

    #[test]
    fn a_session_that_stops_gives_up_only_its_own_slot() {
        let turns = Arc::new(RunningTurns::default());
        let older = turns.enter(&ada());
        // A newer session of the same key took its place before the older one's guard went.
        let newer = turns.enter(&ada());
        drop(older);
        let running = newer.begin("m1");
        assert_eq!(turns.stop(&ada(), "m1"), StopOutcome::Stopping);
        assert!(running.is_stopped());
        drop(running);
        drop(newer);
        assert!(turns.sessions.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_before_its_turn_stops_it_as_it_begins_within_its_life() {
        let turns = Arc::new(RunningTurns::default());
        let session = turns.enter(&ada());
        assert_eq!(turns.stop(&ada(), "m1"), StopOutcome::NotRunning);
        assert_eq!(turns.stop(&ada(), "m2"), StopOutcome::NotRunning);
        assert!(!session.begin("m0").is_stopped(), "another message runs");
        assert!(session.begin("m1").is_stopped());
        assert!(!session.begin("m1").is_stopped(), "a stop is used once");
        tokio::time::advance(EARLY_STOP_LIFE).await;
        assert!(!session.begin("m2").is_stopped(), "its life is over");
    }

    #[test]
    fn stops_that_no_turn_takes_are_bounded() {
        let turns = Arc::new(RunningTurns::default());
        let session = turns.enter(&ada());
        for index in 0..MAX_EARLY_STOPS * 3 {
            turns.stop(&ada(), &format!("m{index}"));
        }
        assert_eq!(turns.early().len(), MAX_EARLY_STOPS);
        assert!(!session.begin("m0").is_stopped(), "the oldest left first");
        let newest = format!("m{}", MAX_EARLY_STOPS * 3 - 1);
        assert!(session.begin(&newest).is_stopped());
    }
}
