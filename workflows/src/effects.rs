//! What steps do to the world: model turns, tool calls and messages, through the
//! [`Effects`] the node gives the engine. Each request carries its [`IdempotencyKey`]
//! (run, step, attempt): an attempt replayed after a crash asks again with the same key,
//! so whatever honours it (the session's repeated message id, the bridges' outbox, an
//! HTTP skill's `Idempotency-Key` header) does the work once.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `<run>:<step path>:<attempt>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub(crate) fn new(run: &str, step: &str, attempt: u32) -> Self {
        Self(format!("{run}:{step}:{attempt}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a `send` step's message goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recipient {
    /// The person's open web chats (`web:<sender id>`).
    Web { sender: String },
    /// A chat on a messaging bridge (`<bridge>:<chat id>`).
    Bridge { bridge: String, chat: String },
}

impl Recipient {
    /// Reads `web:<sender>` or `<bridge>:<chat id>`.
    pub fn parse(text: &str) -> Option<Self> {
        let (head, rest) = text.split_once(':')?;
        if head.is_empty() || rest.is_empty() || text.chars().any(char::is_whitespace) {
            return None;
        }
        Some(if head == "web" {
            Self::Web {
                sender: rest.to_owned(),
            }
        } else {
            Self::Bridge {
                bridge: head.to_owned(),
                chat: rest.to_owned(),
            }
        })
    }
}

/// A model turn for a run.
#[derive(Clone, Debug)]
pub struct ModelRequest {
    pub key: IdempotencyKey,
    /// The workflow's owner: whose turn it is.
    pub owner: String,
    /// The run's own conversation.
    pub conversation: String,
    pub prompt: String,
}

/// A tool call for a run.
#[derive(Clone, Debug)]
pub struct ToolRequest {
    pub key: IdempotencyKey,
    pub owner: String,
    pub conversation: String,
    /// `skill.action`.
    pub tool: String,
    pub arguments: Value,
}

/// A message a run sends.
#[derive(Clone, Debug)]
pub struct OutgoingMessage {
    pub key: IdempotencyKey,
    pub owner: String,
    pub to: Recipient,
    pub text: String,
}

/// Why a step failed: client-visible codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepErrorCode {
    /// The effect ran and failed (tried again within the step's retries).
    Failed,
    /// An attempt ran past the step's timeout (tried again).
    Timeout,
    /// What the step was given cannot work (not tried again): a template naming a missing
    /// value, a recipient that does not parse, a tool that does not exist.
    Invalid,
    /// The whole run ran past its deadline.
    DeadlineExceeded,
    /// The run would execute more steps than the node allows.
    TooManySteps,
    /// The run's journal would grow past its size limit.
    JournalTooLarge,
    /// The run's journal could not be written.
    Storage,
}

/// A failed step or run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub code: StepErrorCode,
    pub message: String,
}

impl StepError {
    pub fn new(code: StepErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.code, StepErrorCode::Failed | StepErrorCode::Timeout)
    }
}

/// The node's side of the engine.
#[async_trait::async_trait]
pub trait Effects: Send + Sync + 'static {
    /// Runs a model turn; answers its text (as a JSON string).
    async fn model(&self, request: ModelRequest) -> Result<Value, StepError>;
    /// Calls a tool; answers its result.
    async fn tool(&self, request: ToolRequest) -> Result<Value, StepError>;
    /// Sends a message; returns once it is safely on its way (journaled for delivery).
    async fn send(&self, message: OutgoingMessage) -> Result<Value, StepError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_parse_web_and_bridge_chats() {
        assert_eq!(
            Recipient::parse("web:ada"),
            Some(Recipient::Web {
                sender: "ada".into()
            })
        );
        assert_eq!(
            Recipient::parse("telegram:-1001"),
            Some(Recipient::Bridge {
                bridge: "telegram".into(),
                chat: "-1001".into()
            })
        );
        for bad in ["ada", ":x", "web:", "tele gram:1"] {
            assert_eq!(Recipient::parse(bad), None, "{bad}");
        }
    }
}
