//! Admission control for turns: how many messages one session may have waiting, and how
//! many the whole node may. Past either, a message is refused at once with `busy` instead
//! of queueing behind hours of backlog: a flooder fills its own session's queue, not the
//! node's memory, and the real user of another session is never behind it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::ids::SessionKey;
use crate::turn::{ErrorCode, TurnError};

/// The limits (validated by the caller: both at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BacklogLimits {
    /// Messages one session may hold: the one it handles and those waiting behind it.
    pub per_session: usize,
    /// Messages the whole node may hold.
    pub per_node: usize,
}

impl Default for BacklogLimits {
    fn default() -> Self {
        Self {
            per_session: 64,
            per_node: 20_000,
        }
    }
}

/// Messages admitted and not yet handled, per session and in all.
#[derive(Debug)]
pub struct Backlog {
    limits: BacklogLimits,
    node: AtomicUsize,
    sessions: DashMap<SessionKey, usize>,
}

/// One admitted message; dropping it (once its session handled it, or with it when it
/// could not be delivered) frees its place.
#[derive(Debug)]
pub struct BacklogTicket {
    backlog: Arc<Backlog>,
    key: SessionKey,
    /// When the message was admitted.
    admitted: std::time::Instant,
}

impl BacklogTicket {
    /// How long the message has waited since it was admitted.
    pub fn waited(&self) -> std::time::Duration {
        self.admitted.elapsed()
    }
}

impl Backlog {
    pub fn new(limits: BacklogLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            node: AtomicUsize::new(0),
            sessions: DashMap::new(),
        })
    }

    /// A place for one more message to `key`, or `busy`.
    pub fn admit(self: &Arc<Self>, key: &SessionKey) -> Result<BacklogTicket, TurnError> {
        if self.node.fetch_add(1, Ordering::AcqRel) >= self.limits.per_node {
            self.node.fetch_sub(1, Ordering::AcqRel);
            return Err(TurnError::new(
                ErrorCode::Busy,
                format!(
                    "the node holds {} messages waiting for replies; try again shortly",
                    self.limits.per_node
                ),
            ));
        }
        let mut waiting = self.sessions.entry(key.clone()).or_default();
        if *waiting >= self.limits.per_session {
            drop(waiting);
            self.node.fetch_sub(1, Ordering::AcqRel);
            return Err(TurnError::new(
                ErrorCode::Busy,
                format!(
                    "this conversation already has {} messages waiting; wait for their replies",
                    self.limits.per_session
                ),
            ));
        }
        *waiting += 1;
        drop(waiting);
        Ok(BacklogTicket {
            backlog: Arc::clone(self),
            key: key.clone(),
            admitted: std::time::Instant::now(),
        })
    }

    /// A place for a message that was accepted before (by a node that stopped since),
    /// whatever the limits: refusing it now would lose it.
    pub fn admit_accepted(self: &Arc<Self>, key: &SessionKey) -> BacklogTicket {
        self.node.fetch_add(1, Ordering::AcqRel);
        *self.sessions.entry(key.clone()).or_default() += 1;
        BacklogTicket {
            backlog: Arc::clone(self),
            key: key.clone(),
            admitted: std::time::Instant::now(),
        }
    }

    /// Messages held by the node now.
    pub fn len(&self) -> usize {
        self.node.load(Ordering::Acquire)
    }

    /// Whether the node holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for BacklogTicket {
    fn drop(&mut self) {
        self.backlog
            .sessions
            .remove_if_mut(&self.key, |_, waiting| {
                *waiting -= 1;
                *waiting == 0
            });
        self.backlog.node.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(conversation: &str) -> SessionKey {
        SessionKey::new_unchecked("test", conversation)
    }

    #[test]
    fn a_session_past_its_backlog_is_busy_and_others_are_not() {
        let backlog = Backlog::new(BacklogLimits {
            per_session: 2,
            per_node: 100,
        });
        let held: Vec<_> = (0..2)
            .map(|_| backlog.admit(&key("flood")).unwrap())
            .collect();
        let refused = backlog.admit(&key("flood")).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Busy);
        assert!(
            backlog.admit(&key("quiet")).is_ok(),
            "another session is unaffected"
        );
        drop(held);
        assert!(backlog.admit(&key("flood")).is_ok(), "places come back");
        assert!(backlog.is_empty());
        assert!(backlog.sessions.is_empty(), "no entry is left behind");
    }

    #[test]
    fn the_node_wide_cap_holds_across_sessions() {
        let backlog = Backlog::new(BacklogLimits {
            per_session: 10,
            per_node: 3,
        });
        let held: Vec<_> = (0..3)
            .map(|index| backlog.admit(&key(&format!("s{index}"))).unwrap())
            .collect();
        assert_eq!(backlog.admit(&key("s9")).unwrap_err().code, ErrorCode::Busy);
        assert_eq!(backlog.len(), 3);
        drop(held);
        assert_eq!(backlog.len(), 0);
    }
}
