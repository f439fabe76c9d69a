//! Skills: the tools a model may call, and the plugin trait every kind of skill implements
//! (built-in, HTTP service, MCP server).
//!
//! A [`Skill`] publishes a [`SkillManifest`] (its tools, each with the JSON Schema of its
//! arguments, and the permissions it needs) and runs calls. It never touches ractor: a
//! [`SkillActor`] wraps each one, and the [`SkillDirectory`] is what sessions use to list
//! the tools a conversation may see, check a call (permissions, schema) and run it.

mod actor;
mod directory;
mod permissions;
#[cfg(test)]
mod start_tests;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use actor::{SkillActor, SkillActorArgs, SkillMsg};
pub use directory::{PreparedCall, SkillDirectory, ToolOutcome};
pub use permissions::{Confirm, Grant, SkillState, SkillStatus};

/// What a skill says about itself: `GET /manifest` of an HTTP skill, `tools/list` of an
/// MCP server, a constant for a built-in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkillManifest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub version: String,
    pub tools: Vec<SkillTool>,
    /// What the skill needs; the user's [`Grant`] must cover it or the skill stays disabled.
    #[serde(default)]
    pub permissions: Requirements,
}

/// One tool of a skill, named without the skill's prefix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkillTool {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
    /// Every call of this tool needs the user's confirmation first.
    #[serde(default)]
    pub confirm: bool,
}

impl SkillTool {
    /// A tool whose calls need no confirmation.
    pub fn new(name: &str, description: &str, parameters: Value) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters,
            confirm: false,
        }
    }
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// What a skill declares it needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    /// It reaches the network (beyond its own service).
    #[serde(default)]
    pub network: bool,
    /// It reads files in the directories it is given.
    #[serde(default)]
    pub files: bool,
}

/// Who a call is for: what a skill may know about the conversation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SkillSession {
    /// `platform:conversation_id`.
    pub key: String,
    pub platform: String,
    pub conversation_id: String,
    pub sender_id: String,
    /// The person: `person:<name>` for linked identities, else `platform:sender_id`.
    pub person: String,
    /// The inbound message that started the turn.
    pub message_id: String,
    /// Where a later message to this person goes (set by bridges; internal, never sent to
    /// third-party skills).
    #[serde(skip)]
    pub reply_route: Option<Value>,
}

/// One call of one tool.
#[derive(Clone, Debug, PartialEq)]
pub struct SkillCall {
    pub call_id: String,
    /// The tool's name within its skill (no prefix).
    pub action: String,
    pub arguments: Value,
    pub session: SkillSession,
}

/// Machine-readable reasons a call failed; the model sees them in the error result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkillErrorCode {
    /// The arguments are not what the tool's schema asks for.
    InvalidArguments,
    /// No such tool (or not for this conversation).
    UnknownTool,
    /// The grant does not allow it (user, platform, path, address).
    Forbidden,
    /// The user refused the call.
    Refused,
    /// It did not answer in time.
    Timeout,
    /// The skill cannot be reached now.
    Unavailable,
    /// What it asked or answered is too large.
    TooLarge,
    /// Nothing matched (a note, a file, a reminder).
    NotFound,
    /// The skill ran and failed.
    Failed,
}

impl SkillErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArguments => "invalid_arguments",
            Self::UnknownTool => "unknown_tool",
            Self::Forbidden => "forbidden",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::TooLarge => "too_large",
            Self::NotFound => "not_found",
            Self::Failed => "failed",
        }
    }

    /// Parses a code from a remote skill; unknown ones become `failed`.
    pub fn parse(code: &str) -> Self {
        serde_json::from_value(Value::String(code.to_owned())).unwrap_or(Self::Failed)
    }
}

/// A failed call, as the model and the user see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{} ({message})", code.as_str())]
pub struct SkillError {
    pub code: SkillErrorCode,
    pub message: String,
}

impl SkillError {
    pub fn new(code: SkillErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(SkillErrorCode::Failed, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(SkillErrorCode::InvalidArguments, message)
    }

    /// `{"error": {"code", "message"}}`, the shape every result error has.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}})
    }
}

/// A skill: the one trait built-ins, HTTP skills and MCP servers implement.
#[async_trait::async_trait]
pub trait Skill: Send + Sync + 'static {
    /// `builtin`, `http` or `mcp`.
    fn kind(&self) -> &'static str;

    /// Reads (or re-reads) the manifest. An error leaves the skill unavailable; it is
    /// asked again later.
    async fn manifest(&self) -> Result<SkillManifest, SkillError>;

    /// Runs one call whose arguments already passed the tool's schema.
    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError>;

    /// Called once when the node stops (end a child process, close a session).
    async fn close(&self) {}
}

/// A skill as configured: its name (the prefix of its tools), what the user grants it and
/// how long one call may take.
pub struct SkillSetup {
    pub name: String,
    pub skill: std::sync::Arc<dyn Skill>,
    pub grant: Grant,
    pub timeout: Duration,
}

/// How the tool loop runs: shared by every session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToolPolicy {
    /// Rounds of tool calls per inbound message before the model must answer.
    pub max_rounds: u32,
    /// Calls running at once in one round.
    pub max_parallel: usize,
}

impl Default for ToolPolicy {
    fn default() -> Self {
        Self {
            max_rounds: 8,
            max_parallel: 8,
        }
    }
}

/// The inbound metadata key where a bridge says how to reach the sender later (set by the
/// bridge dispatcher only; refused from clients).
pub const REPLY_ROUTE_METADATA: &str = "troupe.reply_route";

/// The separator between a skill's name and its tool's name (`notes__remember`).
pub const TOOL_NAME_SEPARATOR: &str = "__";

/// The name a model sees for `action` of skill `skill`.
pub fn exposed_tool_name(skill: &str, action: &str) -> String {
    format!("{skill}{TOOL_NAME_SEPARATOR}{action}")
}

/// Whether a model-facing tool name is acceptable to every provider (OpenAI's rule:
/// 1 to 64 of `a-zA-Z0-9_-`).
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
