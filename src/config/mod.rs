//! `troupe.toml`: the typed configuration of a node, read once at start-up from the file
//! (`--config` or `TROUPE_CONFIG`), then `TROUPE_*` environment overrides, then validated.
//! Every error names the key it is about.

pub(crate) mod autodetect;
mod bridges;
mod canvas;
mod environment;
mod memory;
mod models;
mod offline;
mod ops;
mod skills;
mod telemetry;
mod uploads;
mod usage;
mod voice;
mod workflows;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe_actors::backlog::BacklogLimits;
use troupe_actors::message::DEFAULT_MAX_PAYLOAD_BYTES;
use troupe_cluster::ClusterConfig;
use troupe_inference::{ProviderConfig, ProviderKind};

use troupe_bridges::secrets::{Secret, SecretSource};

use crate::gateway::HostPattern;
use crate::gateway::admission::ConnectionLimits;
use crate::gateway::body::BodyPace;
use crate::gateway::callers::SenderTokens;
use crate::gateway::server::ServerTimeouts;

pub(crate) use autodetect::detect_provider;
pub(crate) use bridges::{BridgeEntry, build_bridges};
pub(crate) use canvas::CanvasConfig;
pub(crate) use environment::Environment;
pub(crate) use memory::MemorySettings;
pub(crate) use models::ModelsConfig;
pub(crate) use offline::{OFFLINE_PROVIDER, with_offline_fallback};
pub(crate) use skills::{SkillConfig, ToolsConfig, build_skills, effective_skills};
pub(crate) use telemetry::{LogFormat, TelemetryConfig};
pub(crate) use uploads::UploadsConfig;
pub(crate) use usage::price_table;
pub(crate) use voice::{PiperSettings, SttService, TtsEngine, TtsService, VoiceConfig};
pub(crate) use workflows::WorkflowsConfig;

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
const fn default_backlog_per_conversation() -> usize {
    64
}
const fn default_backlog_per_node() -> usize {
    20_000
}
const fn default_max_connections_per_address() -> usize {
    64
}
const fn default_header_timeout_secs() -> u64 {
    20
}
const fn default_min_body_bytes_per_sec() -> u64 {
    4096
}
const fn default_max_webhook_bytes_in_flight() -> usize {
    64 * 1024 * 1024
}
/// The shortest token a node reachable from other machines accepts.
const MIN_REMOTE_TOKEN_BYTES: usize = 16;

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
    /// `[canvas]`: the collaborative rooms.
    #[serde(default)]
    pub(crate) canvas: CanvasConfig,
    /// `[workflows]`: durable workflows and schedules.
    #[serde(default)]
    pub(crate) workflows: WorkflowsConfig,
    /// `[uploads]`: pictures for vision models.
    #[serde(default)]
    pub(crate) uploads: UploadsConfig,
    /// `[models]`: local models (ONNX Runtime).
    #[serde(default)]
    pub(crate) models: ModelsConfig,
    /// `[memory]`: long-term memory by meaning.
    #[serde(default)]
    pub(crate) memory: MemorySettings,
    /// `[voice]`: speech services and voice satellites.
    #[serde(default)]
    pub(crate) voice: VoiceConfig,
    /// `[[prices]]`: what each model costs per million tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) prices: Vec<troupe_actors::usage::Price>,
    /// `[budgets]`: daily budgets and the runaway guard of one turn.
    #[serde(default)]
    pub(crate) budgets: usage::BudgetsConfig,
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
    /// Browser origins allowed to call the node besides the page's own (`*`: any).
    #[serde(default)]
    pub(crate) allowed_origins: Vec<String>,
    /// Names clients reach the node by besides loopback and the listen address (a reverse
    /// proxy's public name, a webhook's host): `name`, `name:port`, `*.domain`.
    #[serde(default)]
    pub(crate) allowed_hosts: Vec<HostPattern>,
    /// Open connections at most; absent: three quarters of the open-file limit, at most
    /// 65,536. A quarter is kept for connections that proved a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_connections: Option<usize>,
    /// Connections one address may hold before any request on them proved a token
    /// (loopback is exempt: every local client shares it).
    #[serde(default = "default_max_connections_per_address")]
    pub(crate) max_connections_per_address: usize,
    /// Seconds a request's headers (and a WebSocket's `hello`) may take; also how long an
    /// idle keep-alive connection stays open.
    #[serde(default = "default_header_timeout_secs")]
    pub(crate) header_timeout_secs: u64,
    /// After `header_timeout_secs` of grace, the slowest a request body may arrive.
    #[serde(default = "default_min_body_bytes_per_sec")]
    pub(crate) min_body_bytes_per_sec: u64,
    /// Bytes of webhook bodies the node reads at once before their signatures are checked.
    #[serde(default = "default_max_webhook_bytes_in_flight")]
    pub(crate) max_webhook_bytes_in_flight: usize,
    /// Bearer token for HTTP and WebSocket; `TROUPE_TOKEN` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    /// `[[server.tokens]]`: senders with a token of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) tokens: Vec<SenderTokenConfig>,
    /// A token that reads the operator's views only (`/ops`, usage, `/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ops_token: Option<String>,
    /// Largest inbound payload, in bytes.
    #[serde(default = "default_max_payload_bytes")]
    pub(crate) max_payload_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_connections: None,
            max_connections_per_address: default_max_connections_per_address(),
            header_timeout_secs: default_header_timeout_secs(),
            min_body_bytes_per_sec: default_min_body_bytes_per_sec(),
            max_webhook_bytes_in_flight: default_max_webhook_bytes_in_flight(),
            token: None,
            tokens: Vec::new(),
            ops_token: None,
            max_payload_bytes: default_max_payload_bytes(),
        }
    }
}

/// One `[[server.tokens]]` entry: the token (from a variable or a file) that speaks as
/// `sender_id` on the API, the WebSocket and the OpenAI facade, and the only one that may.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SenderTokenConfig {
    pub(crate) sender_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token_file: Option<PathBuf>,
}

impl ServerConfig {
    /// Reads and checks every `[[server.tokens]]` entry.
    pub(crate) fn sender_tokens(&self) -> Result<SenderTokens, ConfigError> {
        let mut tokens: Vec<(String, Secret)> = Vec::with_capacity(self.tokens.len());
        for (index, entry) in self.tokens.iter().enumerate() {
            let key = |name: &str| format!("server.tokens[{index}].{name}");
            troupe_actors::ids::validate_id(&entry.sender_id)
                .map_err(|reason| refused(&key("sender_id"), reason))?;
            if entry.sender_id.contains('/') {
                return Err(invalid(
                    &key("sender_id"),
                    "may not hold `/` (it separates a sender's conversations)",
                ));
            }
            let token = SecretSource::new(entry.token_env.as_deref(), entry.token_file.as_deref())
                .read()
                .map_err(|reason| refused(&key("token_env"), reason))?;
            if !self.listen.ip().is_loopback() && token.expose().len() < MIN_REMOTE_TOKEN_BYTES {
                return Err(invalid(
                    &key("token_env"),
                    format!(
                        "a node reachable from other machines needs tokens of at least {MIN_REMOTE_TOKEN_BYTES} bytes"
                    ),
                ));
            }
            if tokens.iter().any(|(sender, _)| *sender == entry.sender_id) {
                return Err(invalid(&key("sender_id"), "has two tokens"));
            }
            let shared = self.token.as_deref() == Some(token.expose());
            if shared || tokens.iter().any(|(_, other)| other == &token) {
                return Err(invalid(
                    &key("token_env"),
                    "the token is used by another entry or as server.token",
                ));
            }
            tokens.push((entry.sender_id.clone(), token));
        }
        Ok(SenderTokens::new(tokens))
    }

    /// The connection caps; without `max_connections`, three quarters of `open_files` (the
    /// rest is for the stores, NATS, skills and logs), at most 65,536.
    pub(crate) fn connection_limits(&self, open_files: u64) -> ConnectionLimits {
        let from_files = usize::try_from(open_files / 4 * 3).unwrap_or(usize::MAX);
        ConnectionLimits {
            max: self
                .max_connections
                .unwrap_or_else(|| from_files.clamp(8, 65_536)),
            per_address: self.max_connections_per_address,
        }
    }

    pub(crate) fn timeouts(&self) -> ServerTimeouts {
        let header = Duration::from_secs(self.header_timeout_secs);
        ServerTimeouts {
            header,
            body: BodyPace {
                grace: header,
                bytes_per_sec: self.min_body_bytes_per_sec,
            },
        }
    }
}

/// `[storage]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StorageConfig {
    #[serde(default = "default_data_dir")]
    pub(crate) data_dir: PathBuf,
    /// MiB of page cache the session store may fill. Active sessions live in actor memory,
    /// so the cache only serves sessions coming back; passivated ones cost nothing.
    #[serde(default = "default_session_cache_mib")]
    pub(crate) session_cache_mib: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            session_cache_mib: default_session_cache_mib(),
        }
    }
}

const fn default_session_cache_mib() -> usize {
    2
}

/// The largest session cache accepted, in MiB.
const MAX_SESSION_CACHE_MIB: usize = 4096;

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
    /// Messages one conversation may have waiting (the one being answered included);
    /// more get `busy`.
    #[serde(default = "default_backlog_per_conversation")]
    pub(crate) backlog_per_conversation: usize,
    /// Messages the whole node may have waiting; more get `busy`.
    #[serde(default = "default_backlog_per_node")]
    pub(crate) backlog_per_node: usize,
    /// The local chat model answers when every other provider fails (the first
    /// `kind = "local"` provider, else `smollm2-135m-instruct` from the models dir), and in
    /// place of `echo` when no provider is configured or found.
    #[serde(default)]
    pub(crate) offline_fallback: bool,
}

impl Default for AssistantConfig {
    fn default() -> Self {
        Self {
            provider: default_provider_name(),
            system_prompt: default_system_prompt(),
            history_window: default_history_window(),
            idle_passivate_secs: default_idle_passivate_secs(),
            turn_timeout_secs: default_turn_timeout_secs(),
            backlog_per_conversation: default_backlog_per_conversation(),
            backlog_per_node: default_backlog_per_node(),
            offline_fallback: false,
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

    pub(crate) fn backlog(&self) -> BacklogLimits {
        BacklogLimits {
            per_session: self.backlog_per_conversation,
            per_node: self.backlog_per_node,
        }
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
    #[error("config file {path} is invalid: {source}")]
    Parse { path: PathBuf, source: ParseError },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    /// A value that breaks a rule the core defines (an id, a member name).
    #[error("{key}: {reason}")]
    Refused {
        key: String,
        #[source]
        reason: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why a config file does not parse: where (line and key) and what, never the line's text,
/// which may hold a secret.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub(crate) struct ParseError {
    location: String,
    message: String,
}

impl ParseError {
    fn of(text: &str, error: &toml::de::Error) -> Self {
        let message = error.message().trim().to_owned();
        let Some(span) = error.span() else {
            return Self {
                location: "the file".into(),
                message,
            };
        };
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let key = text
            .lines()
            .nth(line - 1)
            .and_then(|line| line.split_once('='))
            .map(|(key, _)| key.trim())
            .filter(|key| !key.is_empty() && !key.starts_with('['));
        let table = before.lines().rev().find_map(|line| {
            let line = line.trim();
            line.starts_with('[')
                .then(|| line.trim_matches(['[', ']']).trim().to_owned())
        });
        let location = match (table, key) {
            (Some(table), Some(key)) => format!("line {line}, key `{table}.{key}`"),
            (None, Some(key)) => format!("line {line}, key `{key}`"),
            (_, None) => format!("line {line}"),
        };
        Self { location, message }
    }
}

/// The value at `key` breaks a rule the core checks (an id, a member name).
fn refused(key: &str, reason: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ConfigError {
    ConfigError::Refused {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
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
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    pub(crate) fn parse(text: &str) -> Result<Self, ParseError> {
        toml::from_str(text).map_err(|error| ParseError::of(text, &error))
    }

    /// Every check that needs no network.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_server()?;
        if !(1..=MAX_SESSION_CACHE_MIB).contains(&self.storage.session_cache_mib) {
            return Err(invalid(
                "storage.session_cache_mib",
                format!("must be from 1 to {MAX_SESSION_CACHE_MIB}"),
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
        if self.assistant.backlog_per_conversation == 0 {
            return Err(invalid(
                "assistant.backlog_per_conversation",
                "must be at least 1",
            ));
        }
        if self.assistant.backlog_per_node < self.assistant.backlog_per_conversation {
            return Err(invalid(
                "assistant.backlog_per_node",
                "must be at least assistant.backlog_per_conversation",
            ));
        }
        if let Some(cluster) = &self.cluster {
            cluster
                .validate()
                .map_err(|error| invalid(&format!("cluster.{}", error.key), error.reason))?;
        }
        self.telemetry.validate()?;
        self.canvas.validate()?;
        self.workflows.validate()?;
        self.uploads.validate()?;
        self.models.validate()?;
        self.memory.validate()?;
        usage::price_table(&self.prices)?;
        self.budgets.budgets()?;
        let bridges = build_bridges(&self.bridges)?;
        let bridge_names: Vec<&str> = bridges.iter().map(|entry| entry.name.as_str()).collect();
        self.voice.validate(&bridge_names)?;
        if self.tools.max_parallel == 0 {
            return Err(invalid("tools.max_parallel", "must be at least 1"));
        }
        skills::validate_skills(self.skills.as_deref().unwrap_or_default())?;
        self.validate_identities()?;
        self.validate_providers()
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        if let Some(token) = &server.token {
            ops::check_bearer("server.token", token)?;
        }
        ops::validate_ops_token(server)?;
        let token_len = server.token.as_ref().map_or(0, String::len);
        if !server.listen.ip().is_loopback() {
            if token_len == 0 {
                return Err(invalid(
                    "server.listen",
                    format!(
                        "{} is reachable from other machines, so a token is required: set server.token or TROUPE_TOKEN (or listen on 127.0.0.1)",
                        server.listen
                    ),
                ));
            }
            if token_len < MIN_REMOTE_TOKEN_BYTES {
                return Err(invalid(
                    "server.token",
                    format!(
                        "is {token_len} bytes; a node reachable from other machines needs at least {MIN_REMOTE_TOKEN_BYTES} (try `openssl rand -hex 32`)"
                    ),
                ));
            }
        }
        if server.max_payload_bytes == 0 || server.max_payload_bytes > 16 * 1024 * 1024 {
            return Err(invalid(
                "server.max_payload_bytes",
                "must be between 1 and 16777216",
            ));
        }
        if server.max_connections.is_some_and(|max| max < 8) {
            return Err(invalid("server.max_connections", "must be at least 8"));
        }
        if server.max_connections_per_address == 0 {
            return Err(invalid(
                "server.max_connections_per_address",
                "must be at least 1",
            ));
        }
        if !(1..=600).contains(&server.header_timeout_secs) {
            return Err(invalid(
                "server.header_timeout_secs",
                "must be between 1 and 600",
            ));
        }
        if server.min_body_bytes_per_sec == 0 {
            return Err(invalid(
                "server.min_body_bytes_per_sec",
                "must be at least 1",
            ));
        }
        if server.max_webhook_bytes_in_flight < 8 * 1024 * 1024 {
            return Err(invalid(
                "server.max_webhook_bytes_in_flight",
                "must be at least 8388608 (8 MiB: room for the largest webhook a platform sends)",
            ));
        }
        server.sender_tokens().map(drop)
    }

    fn validate_identities(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (index, identity) in self.identities.iter().enumerate() {
            troupe_actors::ids::validate_id(&identity.person)
                .map_err(|reason| refused(&format!("identities[{index}].person"), reason))?;
            if identity.members.is_empty() {
                return Err(invalid(
                    &format!("identities[{index}].members"),
                    "must list at least one account",
                ));
            }
            for member in &identity.members {
                troupe_actors::bridge::identity::validate_member(member)
                    .map_err(|reason| refused(&format!("identities[{index}].members"), reason))?;
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
        let local = self
            .providers
            .iter()
            .any(|provider| provider.kind == ProviderKind::Local);
        if self.assistant.offline_fallback && !local && names.contains(OFFLINE_PROVIDER) {
            return Err(invalid(
                "assistant.offline_fallback",
                format!(
                    "the offline provider would be named `{OFFLINE_PROVIDER}`, which a provider of another kind is: add a `kind = \"local\"` provider"
                ),
            ));
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
