//! What the user grants a skill ([`Grant`]: network, files, who may use it, which calls need
//! confirmation) and where a skill stands ([`SkillStatus`], shown by `GET /api/v1/skills`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Requirements, SkillSession};

/// Which calls need the user's confirmation: all (`true`), none (`false`) or the listed tools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Confirm {
    All(bool),
    Tools(Vec<String>),
}

impl Default for Confirm {
    fn default() -> Self {
        Self::All(false)
    }
}

/// The permissions the user gives one skill (`[skills.permissions]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// May reach the network (web fetch; an MCP server's own network access).
    #[serde(default)]
    pub network: bool,
    /// Directories it may read; nothing outside them.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Platforms whose conversations may use it (`telegram`, `ws`, `person`…); empty: all.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// People who may use it (`person:ada`, `telegram:42`); empty: everyone.
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub confirm: Confirm,
}

impl Grant {
    /// Whether this conversation may see and call the skill's tools.
    pub fn allows(&self, session: &SkillSession) -> bool {
        let platform_ok = self.platforms.is_empty() || self.platforms.contains(&session.platform);
        let sender = format!("{}:{}", session.platform, session.sender_id);
        let user_ok = self.users.is_empty()
            || self
                .users
                .iter()
                .any(|user| *user == session.person || *user == sender);
        platform_ok && user_ok
    }

    /// Whether the grant covers what the skill says it needs; what it lacks when not.
    pub fn covers(&self, needs: &Requirements) -> Result<(), NotGranted> {
        if needs.network && !self.network {
            return Err(NotGranted::Network);
        }
        if needs.files && self.files.is_empty() {
            return Err(NotGranted::Files);
        }
        Ok(())
    }

    /// Whether a call of `action` waits for the user's yes.
    pub fn needs_confirmation(&self, action: &str, declared: bool) -> bool {
        declared
            || match &self.confirm {
                Confirm::All(all) => *all,
                Confirm::Tools(tools) => tools.iter().any(|tool| tool == action),
            }
    }
}

/// What a skill needs and its grant does not give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotGranted {
    #[error("it needs network access; grant it with `permissions.network = true`")]
    Network,
    #[error("it reads files; name the directories it may read in `permissions.files`")]
    Files,
}

/// Where a skill stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkillState {
    /// Its manifest has not been read yet.
    Starting,
    /// Its tools are offered.
    Available,
    /// It could not be reached; retried with backoff, its tools are not offered meanwhile.
    Unavailable,
    /// It needs more than it was granted (or its manifest is unusable): never offered.
    Disabled,
}

/// A skill's status.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SkillStatus {
    pub name: String,
    pub kind: String,
    pub state: SkillState,
    pub description: String,
    pub version: String,
    /// Model-facing tool names.
    pub tools: Vec<String>,
    pub last_error: Option<String>,
    pub calls: u64,
    pub failures: u64,
    pub permissions: Grant,
    pub timeout_secs: f64,
}
