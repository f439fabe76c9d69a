//! The `ModelProvider` plugin trait and the chat types it speaks.
//!
//! A provider turns a [`ChatRequest`] (system prompt, history, tools) into a [`Completion`]
//! (text plus tool calls), pushing text into a [`DeltaSink`] as it streams. Providers know
//! nothing about actors: the [`crate::model_worker`] wraps them with timeouts, retries,
//! a concurrency limit and fallbacks.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Who said a message in a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

/// A tool the model asked to run. `arguments` is the JSON text exactly as the model wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool offered to the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the parameters.
    pub parameters: serde_json::Value,
}

/// The picture formats both OpenAI and Anthropic vision models read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ImageType {
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/gif")]
    Gif,
    #[serde(rename = "image/webp")]
    Webp,
}

impl ImageType {
    /// Its media type (`image/png`).
    pub const fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    /// The type the bytes are, read from their signature (what a file says it is counts
    /// for nothing).
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Self::Gif)
        } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else {
            None
        }
    }
}

/// A picture sent to the model with a message: its type and its bytes in base64, shared so
/// that every prompt of the window holding it copies nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePart {
    pub media_type: ImageType,
    pub base64: Arc<str>,
}

/// One message of a conversation as sent to a model. The text is shared (`Arc<str>`), so
/// building a prompt from a session's history copies no text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: Arc<str>,
    /// Pictures the person sent with a `user` message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImagePart>,
    /// Tool calls made by an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<Arc<str>>) -> Self {
        Self {
            role,
            content: content.into(),
            images: Vec::new(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// Everything a provider needs for one completion (serialisable: another node's model may
/// answer it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Shared: the configured prompt is one allocation for every call that sends it as is.
    pub system_prompt: Option<Arc<str>>,
    /// Oldest first; never holds `system` messages (those go in `system_prompt`).
    pub messages: Vec<ChatMessage>,
    /// Shared: every turn of every conversation offered the same tools shares one list.
    pub tools: Arc<[ToolSpec]>,
    /// Whether the caller wants text as it is produced.
    pub stream: bool,
}

/// Why the model stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Other,
}

/// Token counts, when the provider reports them.
///
/// `input_tokens` counts every token of the prompt, cached or not; `cache_read_tokens`
/// (read from the provider's prompt cache) and `cache_write_tokens` (written to it) are the
/// parts of it the provider priced differently. Providers that report cached tokens apart
/// from the input (Anthropic) are added up when parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Input and output.
    pub const fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Prompt tokens read or written by neither side of the cache.
    pub const fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cache_read_tokens)
            .saturating_sub(self.cache_write_tokens)
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(other.cache_read_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(other.cache_write_tokens);
    }
}

/// A finished answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub usage: Option<Usage>,
}

impl Completion {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: None,
        }
    }
}

/// What went wrong, as a small enum callers can match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderErrorKind {
    /// The request took longer than the provider's timeout.
    Timeout,
    /// 429: the provider asked us to slow down.
    RateLimited,
    /// 5xx or an overloaded answer.
    Server,
    /// 401/403: the key is missing or wrong.
    Unauthorized,
    /// 4xx other than the above: the request itself is wrong (model name, size…).
    BadRequest,
    /// The connection failed or broke.
    Network,
    /// The answer could not be understood.
    Protocol,
    /// The worker's concurrency limit or the node's shutdown refused the request.
    Unavailable,
    /// The provider's code panicked; its worker is restarted (within its budget).
    Crashed,
}

impl ProviderErrorKind {
    /// Whether a retry may succeed.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::RateLimited | Self::Server | Self::Network
        )
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::Server => "server_error",
            Self::Unauthorized => "unauthorized",
            Self::BadRequest => "bad_request",
            Self::Network => "network",
            Self::Protocol => "protocol",
            Self::Unavailable => "unavailable",
            Self::Crashed => "crashed",
        }
    }
}

/// An error from a model provider.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{} ({}): {message}", provider, kind.as_str())]
pub struct ProviderError {
    pub kind: ProviderErrorKind,
    /// The provider's configured name.
    pub provider: String,
    pub message: String,
    /// HTTP status, when there was one.
    pub status: Option<u16>,
    /// How long the provider asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn new(kind: ProviderErrorKind, provider: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            provider: provider.to_owned(),
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }
}

/// What a [`DeltaSink`] calls for each piece of text.
type DeltaForward = Arc<dyn Fn(&str) + Send + Sync>;

/// Where a provider pushes text while it streams. Cloning shares the sink.
#[derive(Clone, Default)]
pub struct DeltaSink {
    forward: Option<DeltaForward>,
    emitted: Arc<AtomicBool>,
    /// Cancelled when the person stops the turn: the call is dropped.
    stop: Option<CancellationToken>,
}

impl fmt::Debug for DeltaSink {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("DeltaSink")
            .field("forwarding", &self.forward.is_some())
            .field("emitted", &self.has_emitted())
            .field("stoppable", &self.stop.is_some())
            .finish()
    }
}

impl DeltaSink {
    /// A sink that calls `forward` for every non-empty piece of text.
    pub fn new(forward: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self {
            forward: Some(Arc::new(forward)),
            emitted: Arc::default(),
            stop: None,
        }
    }

    /// This sink, for a call that ends when `stop` is cancelled.
    #[must_use]
    pub fn stopped_by(mut self, stop: CancellationToken) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Resolves once the call's turn is stopped; never for a sink that cannot be stopped.
    /// The model worker drops the provider's call when it does, which closes its stream.
    pub async fn stopped(&self) {
        match &self.stop {
            Some(stop) => stop.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// A sink that drops everything (non-streaming callers).
    pub fn discard() -> Self {
        Self::default()
    }

    pub fn push(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.emitted.store(true, Ordering::Release);
        if let Some(forward) = &self.forward {
            forward(text);
        }
    }

    /// Whether any text went out: after that a retry would repeat text the user saw.
    pub fn has_emitted(&self) -> bool {
        self.emitted.load(Ordering::Acquire)
    }
}

/// Describes a configured provider (for logs, `/v1/models` and errors).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProviderInfo {
    /// The configured name (`main`).
    pub name: String,
    /// The kind (`openai`, `anthropic`, `echo`).
    pub kind: String,
    /// The model it asks for.
    pub model: String,
}

/// A model provider: the one trait every backend implements.
#[async_trait::async_trait]
pub trait ModelProvider: Send + Sync + 'static {
    fn info(&self) -> &ProviderInfo;

    /// Runs one completion, pushing text into `deltas` as it arrives when
    /// `request.stream` is set. Must not retry by itself: the model worker does.
    async fn complete(
        &self,
        request: &ChatRequest,
        deltas: &DeltaSink,
    ) -> Result<Completion, ProviderError>;
}
