//! A workflow as its author writes it: the TOML file under `workflows/` in the data
//! directory, or the body of `POST /api/v1/workflows`. This is the one serialisable form;
//! [`crate::plan::Workflow::compile`] validates it (errors name the key) into the plan
//! the engine runs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One workflow definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinition {
    /// 1–64 characters of `a-z`, `0-9`, `-` and `_`; the file's name without `.toml`.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Whose runs these are (`person:ada`, `telegram:42`): model turns, skill grants and
    /// budgets apply to this person.
    pub owner: String,
    /// The longest a whole run may take (`"2h"`); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// What the run answers when it finishes (a template); the last step's output when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Inputs the run gets when nobody gives them.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub input: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerDefinition>,
    pub steps: Vec<StepDefinition>,
}

/// When a workflow starts by itself. Exactly one of `cron`, `every`, `at`, `webhook` and
/// `message`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerDefinition {
    /// A cron pattern: five fields (minute hour day month weekday), or six with seconds
    /// first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The IANA zone a cron pattern is read in (`Europe/Berlin`); UTC by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A fixed interval (`"15m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// One time (RFC 3339, `2026-12-24T18:00:00+01:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// A signed webhook: the environment variable that holds its secret. The workflow then
    /// starts on `POST /hooks/workflows/<name>` signed like the webhook bridge
    /// (`X-Troupe-Timestamp`, `X-Troupe-Signature: v1=<hex HMAC-SHA256>`); the JSON body is
    /// the run's `input.webhook`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_env: Option<String>,
    /// A message pattern (a regular expression, `(?i)` for any case) matched against every
    /// message on any channel; a match starts a run with `input.message` and the pattern's
    /// named groups in `input.captures`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Only messages from this platform (`telegram`, `ws`, …) match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// How late a missed firing may still run after downtime (`"1h"` by default); older
    /// ones are recorded as missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<String>,
    /// Inputs for the runs this trigger starts (over the workflow's own `input`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub input: Map<String, Value>,
}

/// One step. Its kind is the one kind key it has: `model`, `tool`, `send`, `wait`,
/// `until`, `wait_reply`, `if`, `branches` or `workflow`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDefinition {
    /// Unique in its workflow: 1–64 characters of `a-z`, `0-9`, `-` and `_`.
    pub id: String,

    /// A model turn: the prompt (a template), answered by the assistant in the run's own
    /// conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,

    /// A tool call: `skill.action` (`web_fetch.fetch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The tool's arguments; string values are templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,

    /// A message to send (a template), to `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Where a message goes: `web:<sender>` (the web chat) or `<bridge>:<chat id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,

    /// Wait this long (`"10m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
    /// Wait until this time (a template giving RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,

    /// Wait for a reply from this person (a template: `telegram:42`, `person:ada`), for
    /// at most `timeout` (`"24h"` by default). The output is
    /// `{"replied": true, "text", "platform", "sender_id", "at_ms"}`, or
    /// `{"replied": false, "text": ""}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_reply: Option<String>,

    /// A condition: the value (a template) tested by `equals`, `not_equals`, `contains`,
    /// `greater_than` or `less_than`, or for being truthy when none is given.
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greater_than: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub less_than: Option<f64>,
    /// The steps run when the condition holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<StepDefinition>,
    /// The steps run when it does not.
    #[serde(rename = "else", default, skip_serializing_if = "Vec::is_empty")]
    pub otherwise: Vec<StepDefinition>,

    /// Parallel branches; the step's output lists each branch's result in branch order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<BranchDefinition>,
    /// Join once this many branches finished (the others are cancelled); all by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<usize>,

    /// A sub-workflow by name, run inside this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The sub-workflow's inputs; string values are templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Map<String, Value>>,

    /// Attempts after the first when the step fails (default 2 for model and tool steps,
    /// 5 for `send`, none for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// The first wait before a retry (`"1s"` by default); it doubles each time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// The longest one attempt may take (`"2m"` by default; waits have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// One parallel branch: its steps, run in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchDefinition {
    pub steps: Vec<StepDefinition>,
}

/// Why a definition could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("the workflow is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("the workflow is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl WorkflowDefinition {
    /// Reads a TOML definition.
    pub fn from_toml(text: &str) -> Result<Self, DefinitionError> {
        Ok(toml::from_str(text)?)
    }

    /// Writes it as TOML (what the node keeps in its `workflows/` directory).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}
