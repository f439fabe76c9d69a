//! The built-in skills: `time`, `calculator`, `notes`, `memory`, `reminders`, `files`,
//! `web_fetch`, and `canvas` and `workflows` (which the canvas and workflows crates build and
//! hand in). They run inside the node (they are ours, reviewed with it) but still go
//! through the same manifest, schema checks and grants as third-party skills.

mod calculator;
mod files;
mod memory;
mod notes;
pub mod reminders;
mod time;
mod web_fetch;

use crate::setup::SkillSetupError;
use std::sync::Arc;

use serde_json::Value;
use troupe_actors::skill::{Skill, SkillError, SkillTool};
use troupe_actors::snapshot::SnapshotStore;

pub use files::{FileSearch, SearchHit};
pub use reminders::{NotDelivered, Reminder, ReminderSink, Reminders};
pub use web_fetch::WebFetch;

/// Every built-in, by the name `[[skills]] name` selects it with.
pub const BUILTIN_NAMES: [&str; 9] = [
    "time",
    "calculator",
    "notes",
    "memory",
    "reminders",
    "files",
    "web_fetch",
    "canvas",
    "workflows",
];

/// What built-ins may need from the node.
#[derive(Clone)]
pub struct BuiltinContext {
    /// Where notes are kept: the node's session store (JetStream KV in a cluster).
    pub store: Arc<dyn SnapshotStore>,
    /// The reminders schedule (one per node).
    pub reminders: Arc<Reminders>,
    /// `canvas`: the assistant's tools on the node's canvas rooms (built by the canvas crate,
    /// which this crate does not depend on); `None` where the node runs no canvas.
    pub canvas: Option<Arc<dyn Skill>>,
    /// `memory`: long-term memory by meaning; `None` where the node keeps none.
    pub memories: Option<Arc<troupe_actors::memory::Memories>>,
    /// `workflows`: a person's workflows (built by the workflows crate, which this crate
    /// does not depend on); `None` where the node runs none.
    pub workflows: Option<Arc<dyn Skill>>,
}

/// Options of a built-in from its `[[skills]]` entry.
#[derive(Clone, Debug, Default)]
pub struct BuiltinOptions {
    /// Directories `files` may read.
    pub roots: Vec<std::path::PathBuf>,
    /// `web_fetch` may reach private, loopback and link-local addresses.
    pub allow_private_networks: bool,
}

/// Builds the built-in named `name`.
pub fn build_builtin(
    name: &str,
    options: &BuiltinOptions,
    context: &BuiltinContext,
) -> Result<Arc<dyn Skill>, SkillSetupError> {
    Ok(match name {
        "time" => Arc::new(time::TimeSkill),
        "calculator" => Arc::new(calculator::Calculator),
        "notes" => Arc::new(notes::Notes::new(Arc::clone(&context.store))),
        "reminders" => Arc::new(reminders::RemindersSkill::new(Arc::clone(
            &context.reminders,
        ))),
        "files" => Arc::new(FileSearch::new(&options.roots)?),
        "web_fetch" => Arc::new(WebFetch::new(options.allow_private_networks)?),
        "canvas" => context.canvas.clone().ok_or(SkillSetupError::NoCanvas)?,
        "workflows" => context
            .workflows
            .clone()
            .ok_or(SkillSetupError::NoWorkflows)?,
        "memory" => Arc::new(memory::MemorySkill::new(
            context.memories.clone().ok_or(SkillSetupError::NoMemory)?,
        )),
        other => {
            return Err(SkillSetupError::UnknownBuiltin {
                name: other.to_owned(),
                expected: BUILTIN_NAMES.join(", "),
            });
        }
    })
}

/// A tool description in a manifest.
fn tool(name: &str, description: &str, parameters: Value) -> SkillTool {
    SkillTool::new(name, description, parameters)
}

/// A string argument the schema already made sure of.
fn text_argument<'a>(arguments: &'a Value, name: &str) -> Result<&'a str, SkillError> {
    arguments[name]
        .as_str()
        .ok_or_else(|| SkillError::invalid(format!("`{name}` must be a string")))
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::Value;
    use troupe_actors::skill::{SkillCall, SkillSession};

    /// A call of `action` for `person`, as a session makes it.
    pub(crate) fn call(person: &str, action: &str, arguments: Value) -> SkillCall {
        SkillCall {
            call_id: "c".into(),
            action: action.into(),
            arguments,
            session: SkillSession {
                person: person.into(),
                ..SkillSession::default()
            },
        }
    }
}
