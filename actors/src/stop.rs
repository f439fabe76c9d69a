//! Stopping a turn in progress ("stop generating").
//!
//! A session handles one message at a time, so a request to stop its turn cannot wait in
//! its mailbox: it would be read only once the turn had ended. Instead each session
//! registers the turn it runs here, by session key with the message's id, and whoever may
//! stop it (the gateway, after its own checks, or the cluster for a session another node
//! runs) cancels the turn's token from outside the actor.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
// Tokio's clock, so that a stop's life follows a test's paused time.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ids::SessionKey;

/// The turns running on this node, one at most per session.
/// How long a stop waits for a turn that has not begun.
pub const EARLY_STOP_LIFE: Duration = Duration::from_secs(60);
/// Most stops kept waiting for their turns, on one node.
pub const MAX_EARLY_STOPS: usize = 256;

#[derive(Debug, Default)]
pub struct RunningTurns {
    turns: DashMap<SessionKey, RunningTurn>,
    /// Numbers the registrations, so that a turn unregisters only itself.
    registered: AtomicU64,
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

#[derive(Debug)]
struct RunningTurn {
    message_id: Box<str>,
    number: u64,
    stop: CancellationToken,
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

impl RunningTurns {
    /// Registers the turn of `message_id` in `key`'s session; it stays registered until
    /// the returned guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>, key: &SessionKey, message_id: &str) -> TurnStop {
        let stop = CancellationToken::new();
        if self.take_early(key, message_id) {
            stop.cancel();
        }
        let number = self.registered.fetch_add(1, Ordering::Relaxed);
        let turn = RunningTurn {
            message_id: message_id.into(),
            number,
            stop: stop.clone(),
        };
        self.turns.insert(key.clone(), turn);
        TurnStop {
            turns: Arc::clone(self),
            key: key.clone(),
            number,
            stop,
        }
    }

    /// Stops the turn of `message_id` in `key`'s session: now if that is the turn it runs,
    /// or as it begins if it begins within [`EARLY_STOP_LIFE`].
    pub fn stop(&self, key: &SessionKey, message_id: &str) -> StopOutcome {
        if let Some(turn) = self.turns.get(key)
            && *turn.message_id == *message_id
        {
            turn.stop.cancel();
            return StopOutcome::Stopping;
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

    /// How many turns are registered (for tests: none is left behind).
    pub fn len(&self) -> usize {
        self.turns.len()
    }

    /// Whether no turn is registered.
    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }
}

/// One running turn's registration and its stop signal; dropping it unregisters the turn.
#[derive(Debug)]
pub(crate) struct TurnStop {
    turns: Arc<RunningTurns>,
    key: SessionKey,
    number: u64,
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
        // Only this turn's entry: a newer turn of the same key keeps its own.
        let number = self.number;
        self.turns
            .turns
            .remove_if(&self.key, |_, turn| turn.number == number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_turn_unregisters_only_itself() {
        let turns = Arc::new(RunningTurns::default());
        let key = SessionKey::new("ws", "ada").unwrap();
        let older = turns.begin(&key, "m1");
        // A newer turn of the same session registered before the older one's guard went.
        let newer = turns.begin(&key, "m1");
        drop(older);
        assert_eq!(turns.stop(&key, "m1"), StopOutcome::Stopping);
        assert!(newer.is_stopped());
        drop(newer);
        assert!(turns.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_before_its_turn_stops_it_as_it_begins_within_its_life() {
        let turns = Arc::new(RunningTurns::default());
        let key = SessionKey::new("ws", "ada").unwrap();
        assert_eq!(turns.stop(&key, "m1"), StopOutcome::NotRunning);
        assert_eq!(turns.stop(&key, "m2"), StopOutcome::NotRunning);
        assert!(
            !turns.begin(&key, "m0").is_stopped(),
            "another message runs"
        );
        assert!(turns.begin(&key, "m1").is_stopped());
        assert!(!turns.begin(&key, "m1").is_stopped(), "a stop is used once");
        tokio::time::advance(EARLY_STOP_LIFE).await;
        assert!(!turns.begin(&key, "m2").is_stopped(), "its life is over");
    }

    #[test]
    fn stops_that_no_turn_takes_are_bounded() {
        let turns = Arc::new(RunningTurns::default());
        let key = SessionKey::new("ws", "ada").unwrap();
        for index in 0..MAX_EARLY_STOPS * 3 {
            turns.stop(&key, &format!("m{index}"));
        }
        assert_eq!(turns.early().len(), MAX_EARLY_STOPS);
        assert!(
            !turns.begin(&key, "m0").is_stopped(),
            "the oldest left first"
        );
        let newest = format!("m{}", MAX_EARLY_STOPS * 3 - 1);
        assert!(turns.begin(&key, &newest).is_stopped());
    }
}
