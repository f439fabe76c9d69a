//! `SkillDirectory`: the live skills and their tools, shared by every session. It decides
//! which tools a conversation is offered, checks each call the model makes (known tool,
//! permission, JSON Schema) and runs it through the skill's actor within its time limit.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use ractor::ActorRef;
use ractor::rpc::CallResult;
use serde_json::Value;

use super::actor::SkillMsg;
use super::permissions::{Grant, NotGranted, SkillState, SkillStatus};
use super::{
    SkillCall, SkillError, SkillErrorCode, SkillManifest, SkillSession, exposed_tool_name,
    is_valid_tool_name,
};
use crate::provider::{ToolCall, ToolSpec};

/// Largest tool result handed back to the model, in bytes; longer ones are cut.
pub(super) const MAX_RESULT_BYTES: usize = 64 * 1024;

struct Registered {
    actor: Option<ActorRef<SkillMsg>>,
    status: SkillStatus,
    grant: Arc<Grant>,
    timeout: Duration,
}

struct ToolEntry {
    skill: String,
    action: String,
    spec: ToolSpec,
    validator: Arc<jsonschema::Validator>,
    declared_confirm: bool,
}

/// A call that passed every check and may run (after confirmation, when it needs one).
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedCall {
    pub call_id: String,
    /// Model-facing name.
    pub tool: String,
    pub skill: String,
    pub action: String,
    pub arguments: Value,
    pub needs_confirmation: bool,
}

/// What one call gave.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolOutcome {
    pub call_id: String,
    pub tool: String,
    pub result: Result<Value, SkillError>,
}

impl ToolOutcome {
    /// The text the model reads: the result itself (a string as is, anything else as
    /// JSON), or `{"error": {"code", "message"}}`; cut at [`MAX_RESULT_BYTES`].
    pub fn content(&self) -> String {
        let text = match &self.result {
            Ok(Value::String(text)) => text.clone(),
            Ok(value) => value.to_string(),
            Err(error) => error.to_json().to_string(),
        };
        cut(text, MAX_RESULT_BYTES)
    }
}

fn cut(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str("\n[cut: the result was longer than 64 KiB]");
    text
}

/// The tools on offer, rebuilt whenever a skill's tools or state change, so a turn gets
/// its list without walking the skills or copying a schema.
#[derive(Default)]
struct Catalog {
    /// Each available skill's grant and tools.
    by_skill: Vec<(Arc<Grant>, Vec<ToolSpec>)>,
    /// Every available tool, by name.
    all: Arc<[ToolSpec]>,
    /// Whether some grant limits who sees its skill (else `all` is everyone's list).
    restricted: bool,
}

/// The skills of a node.
#[derive(Default)]
pub struct SkillDirectory {
    skills: DashMap<String, Registered>,
    tools: DashMap<String, ToolEntry>,
    catalog: std::sync::RwLock<Arc<Catalog>>,
    /// How many skills are still `starting`, kept with the catalog.
    starting: tokio::sync::watch::Sender<usize>,
}

impl std::fmt::Debug for SkillDirectory {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SkillDirectory")
            .field("skills", &self.skills.len())
            .field("tools", &self.tools.len())
            .finish()
    }
}

impl SkillDirectory {
    /// Declares a configured skill (state `starting`).
    pub fn declare(&self, name: &str, kind: &str, grant: Grant, timeout: Duration) {
        let status = SkillStatus {
            name: name.to_owned(),
            kind: kind.to_owned(),
            state: SkillState::Starting,
            description: String::new(),
            version: String::new(),
            tools: Vec::new(),
            last_error: None,
            calls: 0,
            failures: 0,
            permissions: grant.clone(),
            timeout_secs: timeout.as_secs_f64(),
        };
        let registered = Registered {
            actor: None,
            status,
            grant: Arc::new(grant),
            timeout,
        };
        self.change(|| {
            self.skills.insert(name.to_owned(), registered);
        });
    }

    /// The skills still `starting` (their manifest not read yet), by name.
    pub fn starting(&self) -> Vec<String> {
        if *self.starting.borrow() == 0 {
            return Vec::new();
        }
        let mut names: Vec<String> = self
            .skills
            .iter()
            .filter(|entry| entry.status.state == SkillState::Starting)
            .map(|entry| entry.key().clone())
            .collect();
        names.sort();
        names
    }

    /// Waits until no skill is `starting` any more. Each skill's first manifest read is
    /// bounded by its time limit, so this ends within the longest of them; the same bound
    /// is kept here in case a skill never reports.
    pub async fn until_started(&self) {
        if *self.starting.borrow() == 0 {
            return;
        }
        let bound = self
            .skills
            .iter()
            .filter(|entry| entry.status.state == SkillState::Starting)
            .map(|entry| entry.timeout)
            .max()
            .unwrap_or_default();
        let mut starting = self.starting.subscribe();
        let _ = tokio::time::timeout(bound, starting.wait_for(|count| *count == 0)).await;
    }

    /// The actor now running `name` (set again after a restart).
    pub fn attach(&self, name: &str, actor: ActorRef<SkillMsg>) {
        if let Some(mut registered) = self.skills.get_mut(name) {
            registered.actor = Some(actor);
        }
    }

    /// Takes a freshly read manifest: its tools are offered from now on, unless the grant
    /// does not cover what it needs or a tool is unusable (then the skill is disabled).
    pub fn publish(&self, name: &str, manifest: &SkillManifest) {
        let Some(grant) = self.skills.get(name).map(|entry| Arc::clone(&entry.grant)) else {
            return;
        };
        let built = grant
            .covers(&manifest.permissions)
            .map_err(SkillRefused::from)
            .and_then(|()| build_tools(name, manifest));
        self.change(|| {
            self.tools.retain(|_, tool| tool.skill != name);
            let Some(mut registered) = self.skills.get_mut(name) else {
                return;
            };
            let status = &mut registered.status;
            status.description.clone_from(&manifest.description);
            status.version.clone_from(&manifest.version);
            match built {
                Ok(tools) => {
                    status.tools = tools.iter().map(|tool| tool.spec.name.clone()).collect();
                    status.state = SkillState::Available;
                    status.last_error = None;
                    drop(registered);
                    for tool in tools {
                        self.tools.insert(tool.spec.name.clone(), tool);
                    }
                }
                Err(reason) => {
                    tracing::error!(skill = name, %reason, "skill disabled");
                    status.tools.clear();
                    status.state = SkillState::Disabled;
                    status.last_error = Some(reason.to_string());
                }
            }
        });
    }

    /// The skill could not be reached: its tools are not offered until it answers again.
    pub fn mark_unavailable(&self, name: &str, error: &str) {
        self.change(|| {
            if let Some(mut registered) = self.skills.get_mut(name) {
                if registered.status.state != SkillState::Disabled {
                    registered.status.state = SkillState::Unavailable;
                }
                registered.status.last_error = Some(error.to_owned());
            }
        });
    }

    /// The skill cannot run at all (bad configuration): never offered.
    pub fn disable(&self, name: &str, reason: &str) {
        self.change(|| {
            self.tools.retain(|_, tool| tool.skill != name);
            if let Some(mut registered) = self.skills.get_mut(name) {
                registered.status.state = SkillState::Disabled;
                registered.status.tools.clear();
                registered.status.last_error = Some(reason.to_owned());
            }
        });
    }

    /// The longest one call of `name` may take, which also bounds each manifest read.
    pub(super) fn time_limit(&self, name: &str) -> Option<Duration> {
        self.skills.get(name).map(|entry| entry.timeout)
    }

    pub fn state(&self, name: &str) -> Option<SkillState> {
        self.skills.get(name).map(|entry| entry.status.state)
    }

    /// Every skill's status, by name.
    pub fn statuses(&self) -> Vec<SkillStatus> {
        let mut statuses: Vec<SkillStatus> = self
            .skills
            .iter()
            .map(|entry| entry.status.clone())
            .collect();
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        statuses
    }

    /// The tools this conversation is offered, by name.
    pub fn tools_for(&self, session: &SkillSession) -> Arc<[ToolSpec]> {
        let catalog = Arc::clone(
            &self
                .catalog
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !catalog.restricted {
            return Arc::clone(&catalog.all);
        }
        let mut specs: Vec<ToolSpec> = catalog
            .by_skill
            .iter()
            .filter(|(grant, _)| grant.allows(session))
            .flat_map(|(_, tools)| tools.iter().cloned())
            .collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs.into()
    }

    /// Applies a change to the skills or their tools and rebuilds the catalog, all under
    /// the catalog's write lock. Changes are thereby serialized: two skills published at once
    /// cannot store a catalog built from a view older than the other's change, and a turn
    /// that asks for its tools after a change (say, once the skill shows `available`) waits
    /// for the catalog that includes it.
    fn change(&self, apply: impl FnOnce()) {
        let mut catalog = self
            .catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        apply();
        *catalog = Arc::new(self.build_catalog());
        let starting = self
            .skills
            .iter()
            .filter(|entry| entry.status.state == SkillState::Starting)
            .count();
        self.starting.send_if_modified(|count| {
            let changed = *count != starting;
            *count = starting;
            changed
        });
    }

    /// The catalog of the skills and tools as they are now.
    fn build_catalog(&self) -> Catalog {
        let mut by_skill = Vec::new();
        for skill in &self.skills {
            if skill.status.state != SkillState::Available {
                continue;
            }
            let mut tools: Vec<ToolSpec> = self
                .tools
                .iter()
                .filter(|tool| tool.skill == *skill.key())
                .map(|tool| tool.spec.clone())
                .collect();
            tools.sort_by(|a, b| a.name.cmp(&b.name));
            by_skill.push((Arc::clone(&skill.grant), tools));
        }
        let mut all: Vec<ToolSpec> = by_skill
            .iter()
            .flat_map(|(_, tools)| tools.iter().cloned())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let restricted = by_skill
            .iter()
            .any(|(grant, _)| !grant.platforms.is_empty() || !grant.users.is_empty());
        Catalog {
            by_skill,
            all: all.into(),
            restricted,
        }
    }

    /// Checks a call the model made: a tool this conversation may use, arguments that are
    /// JSON and match its schema.
    pub fn prepare(
        &self,
        call: &ToolCall,
        session: &SkillSession,
    ) -> Result<PreparedCall, SkillError> {
        let unknown = || {
            SkillError::new(
                SkillErrorCode::UnknownTool,
                format!("there is no tool `{}` available here", call.name),
            )
        };
        let tool = self.tools.get(&call.name).ok_or_else(unknown)?;
        let grant = self
            .skills
            .get(&tool.skill)
            .map(|entry| Arc::clone(&entry.grant))
            .ok_or_else(unknown)?;
        if !grant.allows(session) {
            return Err(SkillError::new(
                SkillErrorCode::Forbidden,
                format!("`{}` may not be used in this conversation", call.name),
            ));
        }
        let text = if call.arguments.trim().is_empty() {
            "{}"
        } else {
            call.arguments.as_str()
        };
        let arguments: Value = serde_json::from_str(text)
            .map_err(|error| SkillError::invalid(format!("the arguments are not JSON: {error}")))?;
        let problems: Vec<String> = tool
            .validator
            .iter_errors(&arguments)
            .take(5)
            .map(|error| {
                let path = error.instance_path().to_string();
                if path.is_empty() {
                    error.to_string()
                } else {
                    format!("{path}: {error}")
                }
            })
            .collect();
        if !problems.is_empty() {
            return Err(SkillError::invalid(format!(
                "the arguments do not match the tool's schema: {}",
                problems.join("; ")
            )));
        }
        Ok(PreparedCall {
            call_id: call.id.clone(),
            tool: call.name.clone(),
            skill: tool.skill.clone(),
            action: tool.action.clone(),
            arguments,
            needs_confirmation: grant.needs_confirmation(&tool.action, tool.declared_confirm),
        })
    }

    /// Runs a prepared call through its skill's actor, within the skill's time limit.
    pub async fn run(&self, prepared: PreparedCall, session: SkillSession) -> ToolOutcome {
        let (call_id, tool) = (prepared.call_id.clone(), prepared.tool.clone());
        let skill = prepared.skill.clone();
        let result = self.execute(prepared, session).await;
        if let Some(mut registered) = self.skills.get_mut(&skill) {
            registered.status.calls += 1;
            if result.is_err() {
                registered.status.failures += 1;
            }
        }
        ToolOutcome {
            call_id,
            tool,
            result,
        }
    }

    async fn execute(
        &self,
        prepared: PreparedCall,
        session: SkillSession,
    ) -> Result<Value, SkillError> {
        let (actor, timeout) = self
            .skills
            .get(&prepared.skill)
            .and_then(|entry| entry.actor.clone().map(|actor| (actor, entry.timeout)))
            .ok_or_else(|| {
                SkillError::new(
                    SkillErrorCode::Unavailable,
                    format!("skill `{}` is not running", prepared.skill),
                )
            })?;
        let call = SkillCall {
            call_id: prepared.call_id,
            action: prepared.action,
            arguments: prepared.arguments,
            session,
        };
        // The actor enforces the limit on the call itself; this one is a backstop.
        let backstop = timeout + Duration::from_secs(1);
        match actor
            .call(
                |reply| SkillMsg::Execute {
                    call: Box::new(call),
                    timeout,
                    reply,
                },
                Some(backstop),
            )
            .await
        {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(timed_out(timeout)),
            Ok(CallResult::SenderError) | Err(_) => Err(SkillError::new(
                SkillErrorCode::Unavailable,
                format!("skill `{}` stopped before answering", prepared.skill),
            )),
        }
    }
}

/// The error of a call that ran past its limit.
pub(super) fn timed_out(timeout: Duration) -> SkillError {
    SkillError::new(
        SkillErrorCode::Timeout,
        format!("the tool gave no answer within {timeout:?}"),
    )
}

/// Why a skill whose manifest was read is not offered (it is disabled).
#[derive(Debug, thiserror::Error)]
enum SkillRefused {
    #[error(transparent)]
    NotGranted(#[from] NotGranted),
    #[error("tool name `{0}` must be 1 to 64 characters of a-z, A-Z, 0-9, '_' and '-'")]
    ToolName(String),
    #[error("tool `{tool}` has an invalid schema: {source}")]
    Schema {
        tool: String,
        source: Box<jsonschema::ValidationError<'static>>,
    },
}

fn build_tools(skill: &str, manifest: &SkillManifest) -> Result<Vec<ToolEntry>, SkillRefused> {
    manifest
        .tools
        .iter()
        .map(|tool| {
            let name = exposed_tool_name(skill, &tool.name);
            if !is_valid_tool_name(&name) {
                return Err(SkillRefused::ToolName(name));
            }
            let validator = jsonschema::validator_for(&tool.parameters).map_err(|error| {
                SkillRefused::Schema {
                    tool: tool.name.clone(),
                    source: Box::new(error),
                }
            })?;
            Ok(ToolEntry {
                skill: skill.to_owned(),
                action: tool.name.clone(),
                spec: ToolSpec {
                    name,
                    description: tool.description.clone(),
                    parameters: tool.parameters.clone(),
                },
                validator: Arc::new(validator),
                declared_confirm: tool.confirm,
            })
        })
        .collect()
}
