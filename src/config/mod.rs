//! `troupe.toml`: the typed configuration of a node, read once at start-up from the file
//! (`--config` or `TROUPE_CONFIG`), then `TROUPE_*` environment overrides, then validated.
//! Every error names the key it is about.

pub(crate) mod autodetect;
mod bridges;
mod skills;
mod telemetry;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe_actors::message::DEFAULT_MAX_PAYLOAD_BYTES;
use troupe_cluster::ClusterConfig;
use troupe_inference::ProviderConfig;

pub(crate) use autodetect::detect_provider;
pub(crate) use bridges::build_bridges;
pub(crate) use skills::{SkillConfig, ToolsConfig, build_skills, effective_skills};
pub(crate) use telemetry::TelemetryConfig;

const fn default_history_window() -> usize {
    40
}
const fn default_idle_passivate_secs() -> u64 {
    600
}
const fn default_turn_timeout_secs() -> u64 {
    300
}
const fn default_max_payload_bytes() -> usize {
    DEFAULT_MAX_PAYLOAD_BYTES
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(".troupe")
}
fn default_provider_name() -> String {
    "main".into()
}
fn default_system_prompt() -> String {
    "You are a helpful personal assistant.".into()
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TroupeConfig {
    #[serde(default)]
    pub(crate) server: ServerConfig,
    #[serde(default)]
    pub(crate) storage: StorageConfig,
    #[serde(default)]
    pub(crate) assistant: AssistantConfig,
    #[serde(default)]
    pub(crate) providers: Vec<ProviderConfig>,
    /// `[cluster]`: join a cluster over NATS. Absent: a single node with embedded storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cluster: Option<ClusterConfig>,
    /// `[telemetry]`: trace export over OTLP.
    #[serde(default)]
    pub(crate) telemetry: TelemetryConfig,
    /// `[[bridges]]`: messaging platforms; each entry's keys are checked by its kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) bridges: Vec<toml::Table>,
    /// `[tools]`: the tool loop's limits.
    #[serde(default)]
    pub(crate) tools: ToolsConfig,
    /// `[[skills]]`: what models may call. Absent: the built-ins that need no permission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) skills: Option<Vec<SkillConfig>>,
    /// `[[identities]]`: accounts on several platforms that are one person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) identities: Vec<IdentityConfig>,
}

/// One `[[identities]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentityConfig {
    /// The person's name: their merged conversation is `person:<name>`.
    pub(crate) person: String,
    /// `platform:sender_id` of each account, e.g. `telegram:123456789`.
    pub(crate) members: Vec<String>,
}

/// `[server]`: the access layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerConfig {
    #[serde(default = "default_listen")]
    pub(crate) listen: SocketAddr,
    /// Browser origins allowed to open the WebSocket besides the page's own (`*`: any).
    #[serde(default)]
    pub(crate) allowed_origins: Vec<String>,
    /// Bearer token for HTTP and WebSocket; `TROUPE_TOKEN` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    /// Largest inbound payload, in bytes.
    #[serde(default = "default_max_payload_bytes")]
    pub(crate) max_payload_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            allowed_origins: Vec::new(),
            token: None,
            max_payload_bytes: default_max_payload_bytes(),
        }
    }
}

/// `[storage]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StorageConfig {
    #[serde(default = "default_data_dir")]
    pub(crate) data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
        }
    }
}

/// `[assistant]`: how sessions behave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssistantConfig {
    /// The `[[providers]]` entry that answers.
    #[serde(default = "default_provider_name")]
    pub(crate) provider: String,
    #[serde(default = "default_system_prompt")]
    pub(crate) system_prompt: String,
    /// History entries kept per conversation and sent to the model.
    #[serde(default = "default_history_window")]
    pub(crate) history_window: usize,
    /// Seconds of silence after which a conversation leaves memory (it stays on disk).
    #[serde(default = "default_idle_passivate_secs")]
    pub(crate) idle_passivate_secs: u64,
    /// Upper bound on one turn, whatever the provider's retries.
    #[serde(default = "default_turn_timeout_secs")]
    pub(crate) turn_timeout_secs: u64,
}

impl Default for AssistantConfig {
    fn default() -> Self {
        Self {
            provider: default_provider_name(),
            system_prompt: default_system_prompt(),
            history_window: default_history_window(),
            idle_passivate_secs: default_idle_passivate_secs(),
            turn_timeout_secs: default_turn_timeout_secs(),
        }
    }
}

impl AssistantConfig {
    pub(crate) fn idle_passivate(&self) -> Duration {
        Duration::from_secs(self.idle_passivate_secs)
    }

    pub(crate) fn turn_timeout(&self) -> Duration {
        Duration::from_secs(self.turn_timeout_secs)
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// The environment a config is loaded in: passed explicitly so tests never mutate the
/// process environment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Environment {
    pub(crate) config: Option<PathBuf>,
    pub(crate) listen: Option<String>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) token: Option<String>,
    /// `TROUPE_NATS_URL`: joins a cluster (creates `[cluster]` with defaults if absent).
    pub(crate) nats_url: Option<String>,
    pub(crate) node_id: Option<String>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the standard OpenTelemetry variable.
    pub(crate) otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`: the standard OpenTelemetry variable.
    pub(crate) service_name: Option<String>,
}

impl Environment {
    pub(crate) fn from_process() -> Self {
        let read = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        Self {
            config: read("TROUPE_CONFIG").map(PathBuf::from),
            listen: read("TROUPE_LISTEN"),
            data_dir: read("TROUPE_DATA_DIR").map(PathBuf::from),
            token: read("TROUPE_TOKEN"),
            nats_url: read("TROUPE_NATS_URL"),
            node_id: read("TROUPE_NODE_ID"),
            otlp_endpoint: read("OTEL_EXPORTER_OTLP_ENDPOINT"),
            service_name: read("OTEL_SERVICE_NAME"),
        }
    }
}

/// Where the configuration came from, for the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConfigSource {
    File(PathBuf),
    Defaults,
}

impl TroupeConfig {
    /// Reads the file named by `--config`, else `TROUPE_CONFIG`, else `./troupe.toml` when it
    /// exists, else the defaults; applies the environment; validates.
    pub(crate) fn load(
        cli_path: Option<&Path>,
        environment: &Environment,
    ) -> Result<(Self, ConfigSource), ConfigError> {
        let path = cli_path
            .map(Path::to_path_buf)
            .or_else(|| environment.config.clone())
            .or_else(|| {
                let local = PathBuf::from("troupe.toml");
                local.exists().then_some(local)
            });
        let (mut config, source) = match path {
            Some(path) => (Self::read(&path)?, ConfigSource::File(path)),
            None => (Self::default(), ConfigSource::Defaults),
        };
        config.apply_environment(environment)?;
        config.validate()?;
        Ok((config, source))
    }

    pub(crate) fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|error| error.to_string())
    }

    fn apply_environment(&mut self, environment: &Environment) -> Result<(), ConfigError> {
        if let Some(listen) = &environment.listen {
            self.server.listen = listen.parse().map_err(|error| {
                invalid(
                    "TROUPE_LISTEN",
                    format!("`{listen}` is not an address: {error}"),
                )
            })?;
        }
        if let Some(data_dir) = &environment.data_dir {
            self.storage.data_dir.clone_from(data_dir);
        }
        if let Some(token) = &environment.token {
            self.server.token = Some(token.clone());
        }
        if let Some(url) = &environment.nats_url {
            match &mut self.cluster {
                Some(cluster) => cluster.nats_url.clone_from(url),
                None => self.cluster = Some(ClusterConfig::new(url.clone())),
            }
        }
        if let Some(node_id) = &environment.node_id {
            let Some(cluster) = &mut self.cluster else {
                return Err(invalid(
                    "TROUPE_NODE_ID",
                    "only means something in a cluster: set TROUPE_NATS_URL or [cluster] too",
                ));
            };
            cluster.node_id = Some(node_id.clone());
        }
        if let Some(endpoint) = &environment.otlp_endpoint {
            self.telemetry.otlp_endpoint = Some(endpoint.clone());
        }
        if let Some(name) = &environment.service_name {
            self.telemetry.service_name.clone_from(name);
        }
        Ok(())
    }

    /// Every check that needs no network.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let token_set = self
            .server
            .token
            .as_deref()
            .is_some_and(|token| !token.trim().is_empty());
        if self.server.token.is_some() && !token_set {
            return Err(invalid("server.token", "must not be empty"));
        }
        if !self.server.listen.ip().is_loopback() && !token_set {
            return Err(invalid(
                "server.listen",
                format!(
                    "{} is reachable from other machines, so a token is required: set server.token or TROUPE_TOKEN (or listen on 127.0.0.1)",
                    self.server.listen
                ),
            ));
        }
        if self.server.max_payload_bytes == 0 || self.server.max_payload_bytes > 16 * 1024 * 1024 {
            return Err(invalid(
                "server.max_payload_bytes",
                "must be between 1 and 16777216",
            ));
        }
        if self.assistant.history_window == 0 {
            return Err(invalid("assistant.history_window", "must be at least 1"));
        }
        if self.assistant.idle_passivate_secs == 0 {
            return Err(invalid(
                "assistant.idle_passivate_secs",
                "must be at least 1",
            ));
        }
        if self.assistant.turn_timeout_secs == 0 {
            return Err(invalid("assistant.turn_timeout_secs", "must be at least 1"));
        }
        if let Some(cluster) = &self.cluster {
            cluster
                .validate()
                .map_err(|error| invalid(&format!("cluster.{}", error.key), error.reason))?;
        }
        self.telemetry
            .validate()
            .map_err(|(key, reason)| invalid(&format!("telemetry.{key}"), reason))?;
        build_bridges(&self.bridges)?;
        if self.tools.max_parallel == 0 {
            return Err(invalid("tools.max_parallel", "must be at least 1"));
        }
        skills::validate_skills(self.skills.as_deref().unwrap_or_default())?;
        self.validate_identities()?;
        self.validate_providers()
    }

    fn validate_identities(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (index, identity) in self.identities.iter().enumerate() {
            troupe_actors::ids::validate_id(&identity.person)
                .map_err(|reason| invalid(&format!("identities[{index}].person"), reason))?;
            if identity.members.is_empty() {
                return Err(invalid(
                    &format!("identities[{index}].members"),
                    "must list at least one account",
                ));
            }
            for member in &identity.members {
                troupe_actors::bridge::identity::validate_member(member)
                    .map_err(|reason| invalid(&format!("identities[{index}].members"), reason))?;
                if !seen.insert(member.clone()) {
                    return Err(invalid(
                        &format!("identities[{index}].members"),
                        format!("`{member}` belongs to two people"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_providers(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for provider in &self.providers {
            provider
                .validate()
                .map_err(|error| invalid("providers", error.to_string()))?;
            if !names.insert(provider.name.as_str()) {
                return Err(invalid(
                    &format!("providers.{}", provider.name),
                    "the name is used twice",
                ));
            }
        }
        for provider in &self.providers {
            if let Some(missing) = provider
                .fallbacks
                .iter()
                .find(|name| !names.contains(name.as_str()))
            {
                return Err(invalid(
                    &format!("providers.{}.fallbacks", provider.name),
                    format!("no provider is named `{missing}`"),
                ));
            }
        }
        if !self.providers.is_empty() && !names.contains(self.assistant.provider.as_str()) {
            let known: Vec<&str> = names.into_iter().collect();
            return Err(invalid(
                "assistant.provider",
                format!(
                    "no provider is named `{}` (configured: {})",
                    self.assistant.provider,
                    known.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
