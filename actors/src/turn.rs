//! What a session sends back while it handles one inbound message: text deltas, then
//! exactly one final event, a reply or an error. Access paths turn these into WebSocket
//! frames, SSE events or HTTP answers.

use std::time::Duration;

use futures_channel::mpsc;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::message::OutboundReply;
use crate::provider::{DeltaSink, ProviderError, ProviderErrorKind};

/// Machine-readable error codes shown to clients (`{"code": …}`). One small enum, one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidMessage,
    PayloadTooLarge,
    UnsupportedContentType,
    ProviderError,
    ProviderTimeout,
    ProviderRateLimited,
    ProviderUnauthorized,
    SessionFailed,
    ShuttingDown,
    StorageError,
    ToolRoundsExceeded,
    /// The turn used more tokens than `max_tokens_per_turn` allows.
    TurnTokenLimit,
    /// A daily budget (the person's or everyone's) is spent.
    BudgetExceeded,
    /// The session (or the node) holds as many waiting messages as it may.
    Busy,
    /// The person stopped the turn before the assistant said anything: the conversation
    /// is as it was before the message.
    Stopped,
    Internal,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidMessage => "invalid_message",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedContentType => "unsupported_content_type",
            Self::ProviderError => "provider_error",
            Self::ProviderTimeout => "provider_timeout",
            Self::ProviderRateLimited => "provider_rate_limited",
            Self::ProviderUnauthorized => "provider_unauthorized",
            Self::SessionFailed => "session_failed",
            Self::ShuttingDown => "shutting_down",
            Self::StorageError => "storage_error",
            Self::ToolRoundsExceeded => "tool_rounds_exceeded",
            Self::TurnTokenLimit => "turn_token_limit",
            Self::BudgetExceeded => "budget_exceeded",
            Self::Busy => "busy",
            Self::Stopped => "stopped",
            Self::Internal => "internal",
        }
    }
}

/// A failed turn, as the user sees it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct TurnError {
    pub code: ErrorCode,
    pub message: String,
}

impl TurnError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<&ProviderError> for TurnError {
    fn from(error: &ProviderError) -> Self {
        let code = match error.kind {
            ProviderErrorKind::Timeout => ErrorCode::ProviderTimeout,
            ProviderErrorKind::RateLimited => ErrorCode::ProviderRateLimited,
            ProviderErrorKind::Unauthorized => ErrorCode::ProviderUnauthorized,
            _ => ErrorCode::ProviderError,
        };
        Self::new(code, format!("the model provider failed: {error}"))
    }
}

/// One event of a turn; the one form it has, in memory and between nodes (JSON tagged by
/// `type`: `delta`, `tool_call`, `tool_result`, `reply`, `failed`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnEvent {
    /// A piece of the reply as the model produces it.
    Delta { in_reply_to: String, text: String },
    /// The model asked to run a tool (`arguments`: its JSON text as the model wrote it).
    ToolCall {
        in_reply_to: String,
        call_id: String,
        name: String,
        arguments: String,
    },
    /// A tool call ended; `content` is what the model reads (`{"error": …}` when `!ok`).
    ToolResult {
        in_reply_to: String,
        call_id: String,
        name: String,
        ok: bool,
        content: String,
    },
    /// The whole reply; the last event of a successful turn. Boxed, so that the enum (and
    /// every turn channel's preallocated block of slots) stays small.
    Reply {
        reply: Box<OutboundReply>,
        #[serde(rename = "model_latency_us", with = "micros")]
        model_latency: Duration,
        /// The tokens the turn used, summed over its model calls, when the provider
        /// reported them (`None`: not reported, or the reply was a repeat).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<crate::provider::Usage>,
    },
    /// The last event of a failed turn (`code` and `message` beside `in_reply_to`).
    Failed {
        in_reply_to: String,
        #[serde(flatten)]
        error: TurnError,
    },
}

/// A duration as whole microseconds (`model_latency_us`).
mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_micros)
    }
}

impl TurnEvent {
    /// Whether this event ends the turn.
    pub const fn is_final(&self) -> bool {
        !matches!(
            self,
            Self::Delta { .. } | Self::ToolCall { .. } | Self::ToolResult { .. }
        )
    }
}

/// Where a session sends a turn's events. Unbounded: a turn's deltas are bounded by the
/// model's output, and the session must never wait on a slow client.
///
/// A channel per turn, and most turns carry one event (the reply) or a few: the channel
/// allocates per event rather than a block of slots up front (tokio's mpsc allocates 32
/// slots when created, which made creating channels a tenth of a cluster node's work under
/// load, with one or two alive for every message waiting for its reply).
#[derive(Clone, Debug)]
pub struct TurnEvents(mpsc::UnboundedSender<TurnEvent>);

/// The receiving end of a [`TurnEvents`] channel.
#[derive(Debug)]
pub struct TurnEventReceiver(mpsc::UnboundedReceiver<TurnEvent>);

/// A new channel for one turn's events.
pub fn turn_channel() -> (TurnEvents, TurnEventReceiver) {
    let (sender, receiver) = mpsc::unbounded();
    (TurnEvents(sender), TurnEventReceiver(receiver))
}

impl TurnEvents {
    /// Sends an event; gives it back when the receiver is gone.
    pub fn send(&self, event: TurnEvent) -> Result<(), TurnEvent> {
        self.0
            .unbounded_send(event)
            .map_err(mpsc::TrySendError::into_inner)
    }

    /// Whether the receiver is gone (the client stopped waiting).
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

impl TurnEventReceiver {
    /// The next event; `None` once every sender is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<TurnEvent> {
        self.0.next().await
    }

    /// The next event if one is waiting now.
    pub fn try_recv(&mut self) -> Option<TurnEvent> {
        self.0.try_recv().ok()
    }
}

/// A sink that turns each piece of streamed text into a [`TurnEvent::Delta`] for `in_reply_to`.
pub fn delta_sink(events: &TurnEvents, in_reply_to: &str) -> DeltaSink {
    let events = events.clone();
    let in_reply_to = in_reply_to.to_owned();
    DeltaSink::new(move |text| {
        let delta = TurnEvent::Delta {
            in_reply_to: in_reply_to.clone(),
            text: text.to_owned(),
        };
        let _ = events.send(delta);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event queued in a turn channel or waiting in a session's commit queue is one
    /// allocation of this size, and a burst keeps tens of thousands of them alive: a large
    /// variant (the whole reply inline) would make every one of them large.
    #[test]
    fn a_turn_event_stays_small() {
        let size = std::mem::size_of::<TurnEvent>();
        assert!(size <= 104, "TurnEvent is {size} bytes");
        assert!(size < std::mem::size_of::<OutboundReply>(), "{size}");
    }
}
