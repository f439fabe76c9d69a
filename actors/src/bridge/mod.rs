//! The `Bridge` extension point: how a messaging platform (Telegram, Slack, WhatsApp,
//! Discord, a signed webhook…) joins the assistant.
//!
//! A bridge is a plain trait object: it receives platform events and hands them to
//! [`BridgeContext::receive`] as [`BridgeInbound`]s, and it delivers [`Delivery`]s (replies)
//! back to the platform. It never touches ractor: [`actor::BridgeActor`] wraps it, restarts
//! its receiving loop with backoff and jitter, and keeps its real [`status::BridgeStatus`].
//! [`dispatch::Dispatcher`] stands between a bridge and the sessions: it applies the access
//! policy (pairing, allowlist, rate limit), journals every message durably before the
//! platform is told "received", runs the turn, and delivers the reply until the platform
//! accepts it, never twice.

pub mod actor;
pub mod dispatch;
pub mod identity;
pub mod policy;
pub mod status;
pub mod store;
#[cfg(test)]
mod tests;
mod voice_notes;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::message::{Attachment, InboundMessage};
pub use status::{BridgeState, BridgeStatus, StatusHandle};

/// What a platform can do, so the layers above adapt without asking the bridge each time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Longest message the platform takes, in its own unit (Telegram: UTF-16 code units).
    pub max_message_chars: usize,
    pub markdown: MarkdownDialect,
    /// Replies can go into a thread or topic.
    pub threads: bool,
    /// The platform shows "typing…" on request.
    pub typing_indicator: bool,
    /// A sent message can be edited, so a reply could stream into it.
    pub edits_for_streaming: bool,
    /// Photos, voice notes or files arrive as attachments.
    pub attachments: bool,
}

/// The markup a platform renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkdownDialect {
    Plain,
    TelegramMarkdownV2,
    SlackMrkdwn,
    DiscordMarkdown,
    CommonMark,
}

/// Where a reply goes on the platform.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// The chat, channel or phone number.
    pub chat_id: String,
    /// The thread or topic inside it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The platform message the reply answers, if the platform links replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_message_id: Option<String>,
    /// The person answered, where the platform addresses people rather than chats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<String>,
}

/// Whether a message came from a one-to-one chat or from a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    Direct,
    Group,
}

/// One platform message, mapped to the standard model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BridgeInbound {
    /// `platform` is the bridge's kind; `id` must be stable for the platform event, so a
    /// platform's retry is recognised as the same message.
    pub message: InboundMessage,
    pub destination: Destination,
    pub chat: ChatKind,
    /// In a group: the assistant was mentioned or replied to.
    pub addressed: bool,
    /// A name to show the owner when pairing.
    #[serde(default)]
    pub sender_name: String,
}

/// One reply to deliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The reply's id: the idempotency key of its delivery.
    pub reply_id: String,
    pub destination: Destination,
    /// Markdown as the model wrote it; the bridge renders it for its platform.
    pub text: String,
    /// Also sent as a voice note (the bridge's `voice_replies` said so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spoken: bool,
}

/// When a bridge's replies are also voice notes (`[[bridges]] voice_replies`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoiceReplies {
    /// When the person spoke (sent a voice note).
    #[default]
    Auto,
    Always,
    Never,
}

/// What went wrong talking to a platform, in kinds callers can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BridgeErrorKind {
    /// The credentials were refused: retrying soon will not help.
    Unauthorized,
    /// The platform asked us to slow down.
    RateLimited,
    /// Network trouble or a server error: try again.
    Transient,
    /// The platform refused this request for good (bad chat, message too long…).
    Rejected,
    /// The platform sent something we cannot read.
    Malformed,
}

/// A platform error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct BridgeError {
    pub kind: BridgeErrorKind,
    pub message: String,
    /// How long the platform asked us to wait.
    pub retry_after: Option<Duration>,
}

impl BridgeError {
    pub fn new(kind: BridgeErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn rate_limited(retry_after: Duration, message: impl Into<String>) -> Self {
        Self {
            kind: BridgeErrorKind::RateLimited,
            message: message.into(),
            retry_after: Some(retry_after),
        }
    }

    /// A file of `bytes` refused for being over `max_bytes`.
    pub fn too_large(bytes: u64, max_bytes: u64) -> Self {
        Self::new(
            BridgeErrorKind::Rejected,
            format!("the file is {bytes} bytes, more than the {max_bytes} taken"),
        )
    }

    /// Another try may succeed.
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            BridgeErrorKind::RateLimited | BridgeErrorKind::Transient
        )
    }
}

/// An HTTP request addressed to a bridge (`/bridges/{name}/webhook` and friends).
#[derive(Clone, Debug)]
pub struct WebhookRequest {
    pub method: String,
    /// The last path segment: `webhook` or `interactions`.
    pub endpoint: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    /// The raw body: signatures are computed over these exact bytes.
    pub body: bytes::Bytes,
}

impl WebhookRequest {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The bridge's answer to a webhook request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl WebhookResponse {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.to_string(),
        }
    }

    /// The standard error body `{"error":{"code","message"}}`.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            &serde_json::json!({"error": {"code": code, "message": message}}),
        )
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// How a bridge hands a message over; answers once it is stored durably.
#[async_trait::async_trait]
pub trait InboundSink: Send + Sync + 'static {
    async fn receive(&self, bridge: &str, inbound: BridgeInbound) -> Result<(), BridgeError>;
}

/// Small durable key-value state a bridge keeps (a polling offset, a session id to resume).
#[async_trait::async_trait]
pub trait BridgeStateStore: Send + Sync + 'static {
    async fn get(&self, bridge: &str, key: &str) -> Result<Option<String>, BridgeError>;
    async fn put(&self, bridge: &str, key: &str, value: &str) -> Result<(), BridgeError>;
}

/// Everything a bridge gets from the node.
#[derive(Clone)]
pub struct BridgeContext {
    /// The configured name (`[[bridges]] name`), unique per node.
    pub name: String,
    pub sink: Arc<dyn InboundSink>,
    pub state: Arc<dyn BridgeStateStore>,
    pub status: StatusHandle,
    /// Fires when the node shuts down or the bridge is stopped.
    pub shutdown: CancellationToken,
}

impl BridgeContext {
    /// Hands one message to the assistant; `Ok` once it is stored (or recognised as a
    /// repeat, or refused by the access policy), so the platform may be told it was received.
    pub async fn receive(&self, inbound: BridgeInbound) -> Result<(), BridgeError> {
        self.sink.receive(&self.name, inbound).await
    }

    /// The receiving loop of a platform that pushes (webhooks): ready at once, until
    /// shutdown.
    pub async fn accept_pushes_until_shutdown(&self) -> Result<(), BridgeError> {
        self.status.connected();
        self.shutdown.cancelled().await;
        Ok(())
    }

    pub async fn load_state(&self, key: &str) -> Result<Option<String>, BridgeError> {
        self.state.get(&self.name, key).await
    }

    pub async fn save_state(&self, key: &str, value: &str) -> Result<(), BridgeError> {
        self.state.put(&self.name, key, value).await
    }
}

/// A messaging platform.
#[async_trait::async_trait]
pub trait Bridge: Send + Sync + 'static {
    /// The platform: `telegram`, `slack`, … (also the `platform` of its messages).
    fn kind(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// Receives until `context.shutdown` fires (then `Ok`). Calls
    /// `context.status.connected()` once it receives. An `Err` makes the bridge actor back
    /// off and call `run` again.
    async fn run(&self, context: &BridgeContext) -> Result<(), BridgeError>;

    /// Delivers one reply; `Ok` once the platform accepted all of it.
    async fn deliver(&self, delivery: &Delivery) -> Result<(), BridgeError>;

    /// The content of an attachment of a message this bridge received, at most
    /// `max_bytes` (a larger one is refused before it is read whole; the size the
    /// attachment states was checked by the caller). Platforms whose messages carry only a
    /// reference (Telegram's `file_id`) fetch it here.
    async fn fetch_attachment(
        &self,
        _attachment: &Attachment,
        _max_bytes: u64,
    ) -> Result<Vec<u8>, BridgeError> {
        Err(BridgeError::new(
            BridgeErrorKind::Rejected,
            format!("{} attachments cannot be fetched yet", self.kind()),
        ))
    }

    /// Sends `note` (the reply spoken) as a voice note before the reply's text; a retried
    /// delivery must not send it twice. Platforms without voice notes refuse, and the
    /// reply goes as text only.
    async fn deliver_voice(
        &self,
        _delivery: &Delivery,
        _note: &crate::voice::VoiceNote,
    ) -> Result<(), BridgeError> {
        Err(BridgeError::new(
            BridgeErrorKind::Rejected,
            format!("{} replies cannot be voice notes yet", self.kind()),
        ))
    }

    /// Shows "typing…" where the platform can.
    async fn typing(&self, _destination: &Destination) -> Result<(), BridgeError> {
        Ok(())
    }

    /// The largest webhook body this bridge's platform sends; `None` for a bridge that
    /// takes no webhooks. The node refuses a longer body before reading past this, and
    /// reads no body at all for a bridge without webhooks.
    fn webhook_body_limit(&self) -> Option<usize> {
        None
    }

    /// Handles an HTTP request for this bridge. Bridges without webhooks answer 404.
    async fn webhook(&self, _request: WebhookRequest, _context: &BridgeContext) -> WebhookResponse {
        WebhookResponse::error(404, "not_found", "this bridge takes no webhooks")
    }
}
