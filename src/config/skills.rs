//! `[tools]` and `[[skills]]`: how many tool rounds a message may take, and the skills
//! whose tools models may call, each with the permissions the user grants it. Without any
//! `[[skills]]` entry the built-ins that need no permission are on: `time`, `calculator`,
//! `notes` and `reminders`. `skills = []` turns every skill off.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe_actors::skill::{Grant, SkillSetup, ToolPolicy};
use troupe_bridges::secrets::SecretSource;
use troupe_skills::builtin::{BuiltinContext, BuiltinOptions};
use troupe_skills::http::HttpSkill;
use troupe_skills::mcp::{McpSkill, McpTransport, ProcessLimits};

use super::{ConfigError, invalid, refused};

/// Built-ins that are on when no `[[skills]]` entry is given (and `memory`, where the node
/// keeps long-term memory).
const DEFAULT_BUILTINS: [&str; 5] = ["time", "calculator", "notes", "reminders", "canvas"];

const fn default_max_rounds() -> u32 {
    8
}
const fn default_max_parallel() -> usize {
    8
}
const fn default_timeout_secs() -> f64 {
    30.0
}

/// `[tools]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToolsConfig {
    /// Rounds of tool calls per message before the model must answer.
    /// (`max_tool_rounds` is the same key: the runaway guard's name for it.)
    #[serde(default = "default_max_rounds", alias = "max_tool_rounds")]
    pub(crate) max_rounds: u32,
    /// Calls of one round that run at the same time.
    #[serde(default = "default_max_parallel")]
    pub(crate) max_parallel: usize,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            max_rounds: default_max_rounds(),
            max_parallel: default_max_parallel(),
        }
    }
}

impl ToolsConfig {
    pub(crate) fn policy(self) -> ToolPolicy {
        ToolPolicy {
            max_rounds: self.max_rounds,
            max_parallel: self.max_parallel,
        }
    }
}

/// What runs the skill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SkillKind {
    Builtin,
    Http,
    Mcp,
}

/// Limits of an MCP server's process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsConfig {
    #[serde(default)]
    pub(crate) max_memory_mb: Option<u64>,
    #[serde(default)]
    pub(crate) max_cpu_secs: Option<u64>,
    #[serde(default)]
    pub(crate) max_open_files: Option<u64>,
}

/// One `[[skills]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SkillConfig {
    pub(crate) kind: SkillKind,
    /// Unique; the prefix of its tools (`notes__remember`). For a built-in, which one.
    pub(crate) name: String,
    /// For a built-in named differently from the built-in it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) builtin: Option<String>,
    /// `http`: the service's base URL; `mcp`: a Streamable HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    /// `http`: the environment variable or file holding the shared HMAC secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secret_file: Option<PathBuf>,
    /// `mcp` over stdio: program and arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) command: Vec<String>,
    /// `mcp` over stdio: the only environment it gets besides PATH, HOME, LANG and TZ.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) env: BTreeMap<String, String>,
    /// `mcp` over stdio: its working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cwd: Option<PathBuf>,
    /// `mcp` over HTTP: headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) limits: LimitsConfig,
    #[serde(default)]
    pub(crate) permissions: Grant,
    /// Longest one call may take.
    #[serde(default = "default_timeout_secs")]
    pub(crate) timeout_secs: f64,
    /// `web_fetch`: may reach private, loopback and link-local addresses.
    #[serde(default)]
    pub(crate) allow_private_networks: bool,
}

/// The entries in force: the configured ones, or the default built-ins (with `memory`
/// where the node keeps memories, `workflows` where it runs workflows).
pub(crate) fn effective_skills(
    configured: Option<&[SkillConfig]>,
    with_memory: bool,
    with_workflows: bool,
) -> Vec<SkillConfig> {
    let memory = with_memory
        .then_some("memory")
        .into_iter()
        .chain(with_workflows.then_some("workflows"));
    match configured {
        Some(entries) => entries.to_vec(),
        None => DEFAULT_BUILTINS
            .iter()
            .copied()
            .chain(memory)
            .map(|name| SkillConfig {
                kind: SkillKind::Builtin,
                name: name.to_owned(),
                builtin: None,
                url: None,
                secret_env: None,
                secret_file: None,
                command: Vec::new(),
                env: BTreeMap::new(),
                cwd: None,
                headers: BTreeMap::new(),
                limits: LimitsConfig::default(),
                permissions: Grant::default(),
                timeout_secs: default_timeout_secs(),
                allow_private_networks: false,
            })
            .collect(),
    }
}

/// Checks every entry's shape (start-up; building reads secrets and checks directories).
pub(crate) fn validate_skills(entries: &[SkillConfig]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let key = |field: &str| format!("skills[{index}].{field}");
        let name_ok = !entry.name.is_empty()
            && entry.name.len() <= 32
            && entry
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && !entry.name.contains("__");
        if !name_ok {
            return Err(invalid(
                &key("name"),
                "must be 1 to 32 of a-z, A-Z, 0-9, '_', '-' (no `__`)",
            ));
        }
        if !seen.insert(entry.name.clone()) {
            return Err(invalid(
                &key("name"),
                format!("`{}` is used twice", entry.name),
            ));
        }
        if !(entry.timeout_secs > 0.0 && entry.timeout_secs <= 3600.0) {
            return Err(invalid(
                &key("timeout_secs"),
                "must be more than 0 and at most 3600",
            ));
        }
        let needs = |field: &str, present: bool| {
            if present {
                Ok(())
            } else {
                Err(invalid(&key(field), "is required for this kind"))
            }
        };
        match entry.kind {
            SkillKind::Builtin => {
                let builtin = entry.builtin.as_deref().unwrap_or(&entry.name);
                if !troupe_skills::BUILTIN_NAMES.contains(&builtin) {
                    return Err(invalid(
                        &key("name"),
                        format!(
                            "there is no built-in `{builtin}` (expected one of: {})",
                            troupe_skills::BUILTIN_NAMES.join(", ")
                        ),
                    ));
                }
            }
            SkillKind::Http => {
                needs("url", entry.url.is_some())?;
                needs(
                    "secret_env",
                    entry.secret_env.is_some() || entry.secret_file.is_some(),
                )?;
            }
            SkillKind::Mcp => {
                if entry.url.is_some() != entry.command.is_empty() {
                    return Err(invalid(
                        &key("command"),
                        "give either `command` (stdio) or `url` (HTTP)",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Builds every skill: secrets read, directories checked, processes not started yet
/// (each skill's actor connects when it starts).
pub(crate) fn build_skills(
    entries: &[SkillConfig],
    context: &BuiltinContext,
) -> Result<Vec<SkillSetup>, ConfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let skill = build_one(entry, context)
                .map_err(|(field, reason)| refused(&format!("skills[{index}].{field}"), reason))?;
            Ok(SkillSetup {
                name: entry.name.clone(),
                skill,
                grant: entry.permissions.clone(),
                timeout: Duration::from_secs_f64(entry.timeout_secs),
            })
        })
        .collect()
}

/// A skill, or the key to blame and why not.
type Built = Result<Arc<dyn troupe_actors::skill::Skill>, (&'static str, BuildError)>;

type BuildError = Box<dyn std::error::Error + Send + Sync>;

fn build_one(entry: &SkillConfig, context: &BuiltinContext) -> Built {
    match entry.kind {
        SkillKind::Builtin => {
            let options = BuiltinOptions {
                roots: entry.permissions.files.clone(),
                allow_private_networks: entry.allow_private_networks,
            };
            let builtin = entry.builtin.as_deref().unwrap_or(&entry.name);
            // Only `files` reads what the entry names (its directories); others have no inputs.
            let field = if builtin == "files" {
                "permissions.files"
            } else {
                "name"
            };
            troupe_skills::build_builtin(builtin, &options, context)
                .map_err(|reason| (field, reason.into()))
        }
        SkillKind::Http => {
            let secret =
                SecretSource::new(entry.secret_env.as_deref(), entry.secret_file.as_deref())
                    .read()
                    .map_err(|reason| ("secret_env", reason.into()))?;
            let url = entry.url.as_deref().unwrap_or_default();
            let skill =
                HttpSkill::new(url, secret.expose()).map_err(|reason| ("url", reason.into()))?;
            Ok(Arc::new(skill))
        }
        SkillKind::Mcp => {
            let transport = match &entry.url {
                Some(url) => McpTransport::Http {
                    url: url.clone(),
                    headers: entry.headers.clone(),
                },
                None => McpTransport::Stdio {
                    command: entry.command.clone(),
                    env: entry.env.clone(),
                    cwd: entry.cwd.clone(),
                    limits: ProcessLimits {
                        max_memory_mb: entry.limits.max_memory_mb,
                        max_cpu_secs: entry.limits.max_cpu_secs,
                        max_open_files: entry.limits.max_open_files,
                    },
                    isolate_network: !entry.permissions.network,
                },
            };
            let skill = McpSkill::new(&entry.name, transport)
                .map_err(|reason| ("command", reason.into()))?;
            Ok(Arc::new(skill))
        }
    }
}
