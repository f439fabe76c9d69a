//! The real state of a bridge, as `GET /api/v1/bridges` and `/metrics` show it: set by the
//! bridge actor (starting, backing off, failed) and by the bridge itself (connected, a
//! message received), never guessed.

use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::message::unix_now;
use crate::metrics as metric_names;

/// Where a bridge stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BridgeState {
    /// Its receiving loop is starting (or restarting) and has not proven a connection yet.
    Starting,
    /// It receives: the platform answered its last request.
    Connected,
    /// Its last attempt failed; it waits before the next.
    BackingOff,
    /// It gave up for now: the credentials were refused. It still retries, slowly.
    Failed,
    /// Stopped with the node.
    Stopped,
    /// In a cluster: another node runs its receiving loop (this one still delivers
    /// replies and takes webhooks).
    Standby,
}

impl BridgeState {
    const fn as_gauge(self) -> f64 {
        match self {
            Self::Starting => 0.0,
            Self::Connected => 1.0,
            Self::BackingOff => 2.0,
            Self::Failed => 3.0,
            Self::Stopped => 4.0,
            Self::Standby => 5.0,
        }
    }
}

/// A bridge's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BridgeStatus {
    pub name: String,
    pub kind: String,
    pub state: BridgeState,
    /// The error that ended its last attempt, kept until it connects again.
    pub last_error: Option<String>,
    /// Unix seconds of the last message received.
    pub last_message_at: Option<u64>,
    /// Unix seconds since it has been connected.
    pub connected_since: Option<u64>,
    /// Times its receiving loop was restarted after a failure.
    pub restarts: u64,
    /// Unix seconds of the next attempt, while backing off.
    pub retry_at: Option<u64>,
    pub messages_received: u64,
    /// Messages the assistant answered (the reply ready to deliver, or its apology).
    pub replies_answered: u64,
    pub replies_delivered: u64,
    /// Replies whose delivery failed for good (refused by the platform).
    pub deliveries_failed: u64,
}

/// A shared, cheap handle on one bridge's status.
#[derive(Clone, Debug)]
pub struct StatusHandle {
    inner: Arc<Mutex<BridgeStatus>>,
}

impl StatusHandle {
    pub fn new(name: &str, kind: &str) -> Self {
        let status = BridgeStatus {
            name: name.to_owned(),
            kind: kind.to_owned(),
            state: BridgeState::Starting,
            last_error: None,
            last_message_at: None,
            connected_since: None,
            restarts: 0,
            retry_at: None,
            messages_received: 0,
            replies_answered: 0,
            replies_delivered: 0,
            deliveries_failed: 0,
        };
        let handle = Self {
            inner: Arc::new(Mutex::new(status)),
        };
        handle.publish(BridgeState::Starting);
        handle
    }

    pub fn snapshot(&self) -> BridgeStatus {
        self.lock().clone()
    }

    pub fn state(&self) -> BridgeState {
        self.lock().state
    }

    /// The platform answered: the bridge receives.
    pub fn connected(&self) {
        let mut status = self.lock();
        if status.state != BridgeState::Connected {
            status.connected_since = Some(unix_now());
        }
        status.state = BridgeState::Connected;
        status.last_error = None;
        status.retry_at = None;
        drop(status);
        self.publish(BridgeState::Connected);
    }

    pub fn starting(&self) {
        self.set_state(BridgeState::Starting);
    }

    /// The last attempt failed with `error`; the next one is in `wait_secs`.
    pub fn backing_off(&self, error: &str, wait_secs: u64, fatal: bool) {
        let state = if fatal {
            BridgeState::Failed
        } else {
            BridgeState::BackingOff
        };
        let mut status = self.lock();
        status.state = state;
        status.last_error = Some(error.to_owned());
        status.connected_since = None;
        status.restarts += 1;
        status.retry_at = Some(unix_now() + wait_secs);
        let (name, kind) = (status.name.clone(), status.kind.clone());
        drop(status);
        metrics::counter!(metric_names::BRIDGE_RESTARTS, "bridge" => name, "kind" => kind)
            .increment(1);
        self.publish(state);
    }

    pub fn stopped(&self) {
        self.set_state(BridgeState::Stopped);
    }

    /// Another node of the cluster receives for this bridge.
    pub fn standby(&self) {
        let mut status = self.lock();
        status.state = BridgeState::Standby;
        status.connected_since = None;
        status.retry_at = None;
        drop(status);
        self.publish(BridgeState::Standby);
    }

    pub fn message_received(&self) {
        let mut status = self.lock();
        status.last_message_at = Some(unix_now());
        status.messages_received += 1;
        let (name, kind) = (status.name.clone(), status.kind.clone());
        drop(status);
        metrics::counter!(metric_names::BRIDGE_MESSAGES_IN, "bridge" => name, "kind" => kind)
            .increment(1);
    }

    /// A message was answered: its reply goes to delivery.
    pub fn reply_answered(&self) {
        let mut status = self.lock();
        status.replies_answered += 1;
        let (name, kind) = (status.name.clone(), status.kind.clone());
        drop(status);
        metrics::counter!(metric_names::BRIDGE_REPLIES_ANSWERED, "bridge" => name, "kind" => kind)
            .increment(1);
    }

    pub fn reply_delivered(&self) {
        let mut status = self.lock();
        status.replies_delivered += 1;
        let (name, kind) = (status.name.clone(), status.kind.clone());
        drop(status);
        metrics::counter!(metric_names::BRIDGE_MESSAGES_OUT, "bridge" => name, "kind" => kind)
            .increment(1);
    }

    pub fn delivery_failed(&self, error: &str) {
        let mut status = self.lock();
        status.deliveries_failed += 1;
        status.last_error = Some(error.to_owned());
        let (name, kind) = (status.name.clone(), status.kind.clone());
        drop(status);
        metrics::counter!(metric_names::BRIDGE_DELIVERY_FAILURES, "bridge" => name, "kind" => kind)
            .increment(1);
    }

    fn set_state(&self, state: BridgeState) {
        self.lock().state = state;
        self.publish(state);
    }

    fn publish(&self, state: BridgeState) {
        let (name, kind) = {
            let status = self.lock();
            (status.name.clone(), status.kind.clone())
        };
        metrics::gauge!(metric_names::BRIDGE_STATE, "bridge" => name, "kind" => kind)
            .set(state.as_gauge());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BridgeStatus> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_follows_what_happened() {
        let status = StatusHandle::new("tg", "telegram");
        assert_eq!(status.state(), BridgeState::Starting);
        status.connected();
        let connected = status.snapshot();
        assert_eq!(connected.state, BridgeState::Connected);
        assert!(connected.connected_since.is_some());
        status.message_received();
        status.backing_off("network down", 2, false);
        let backing_off = status.snapshot();
        assert_eq!(backing_off.state, BridgeState::BackingOff);
        assert_eq!(backing_off.last_error.as_deref(), Some("network down"));
        assert_eq!(backing_off.connected_since, None);
        assert_eq!(backing_off.restarts, 1);
        assert_eq!(backing_off.messages_received, 1);
        assert!(backing_off.last_message_at.is_some());
        status.backing_off("unauthorized", 60, true);
        assert_eq!(status.state(), BridgeState::Failed);
        status.connected();
        assert_eq!(status.snapshot().last_error, None);
    }
}
