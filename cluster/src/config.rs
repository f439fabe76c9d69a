//! `[cluster]`: how a node joins a cluster. Typed, `deny_unknown_fields`, validated once by
//! [`ClusterConfig::validate`]; secrets come from environment variables or files named here,
//! never from the file itself.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

const fn default_lease_ms() -> u64 {
    1_500
}
const fn default_heartbeat_ms() -> u64 {
    250
}
const fn default_dedupe_window_secs() -> u64 {
    900
}
const fn default_ack_wait_ms() -> u64 {
    2_000
}
const fn default_max_deliver() -> i64 {
    20
}
const fn default_replicas() -> usize {
    1
}
const fn default_inbox_streams() -> u32 {
    8
}

const fn default_shards() -> u32 {
    64
}

/// Where JetStream keeps the inbox, leases and snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// On disk on the NATS server: survives its restart (the default).
    #[default]
    File,
    /// In the server's memory: faster, lost when it restarts.
    Memory,
}

/// `[cluster]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `nats://host:port` (several comma-separated); `TROUPE_NATS_URL` overrides it.
    pub nats_url: String,
    /// This node's id (`[A-Za-z0-9_-]`, ≤ 64); `TROUPE_NODE_ID` overrides it. Default: an id
    /// generated once and kept in the data dir, so a restarted node is the same member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The URL other people reach this node's HTTP server at (shown by `/api/v1/cluster`).
    /// Default: the bound listen address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_url: Option<String>,
    /// A node whose heartbeats stop is considered lost after this long, and its sessions move.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// How often a node renews its lease.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// How long a message id is remembered to drop a repeated message.
    #[serde(default = "default_dedupe_window_secs")]
    pub dedupe_window_secs: u64,
    /// Unacknowledged inbox messages are delivered again after this long (in-flight turns
    /// keep extending it), e.g. when their node died.
    #[serde(default = "default_ack_wait_ms")]
    pub ack_wait_ms: u64,
    /// Deliveries of a message whose turn keeps failing for a passing reason (session moved,
    /// storage unavailable) before it is answered with that error. JetStream itself never
    /// gives up on a message.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: i64,
    /// Number of session shards; the same on every node of a cluster.
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// Number of JetStream streams the inbox is spread over (each holds every
    /// `inbox_streams`-th shard); the same on every node of a cluster. Each stream has its
    /// own store goroutine and lock in the NATS server, and a server's work per
    /// acknowledged message grows with the consumers of its stream.
    #[serde(default = "default_inbox_streams")]
    pub inbox_streams: u32,
    #[serde(default)]
    pub storage: StorageKind,
    /// JetStream replicas of the inbox, leases and snapshots (3 on a 3-server NATS cluster).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    #[serde(default)]
    pub auth: NatsAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NatsTls>,
}

/// `[cluster.auth]`: at most one way of authenticating.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsAuth {
    /// User name for user/password auth; the password comes from `password_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Environment variable holding a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Environment variable holding an nkey seed (`SU…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey_seed_env: Option<String>,
    /// A `.creds` file (JWT + nkey seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<PathBuf>,
}

/// `[cluster.tls]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsTls {
    /// CA certificate(s) to trust for the server, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// A `[cluster]` key that cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("cluster.{key}: {reason}")]
pub struct InvalidClusterConfig {
    pub key: String,
    pub reason: String,
}

fn invalid(key: &str, reason: impl Into<String>) -> InvalidClusterConfig {
    InvalidClusterConfig {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Why a string cannot be a node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNodeId {
    #[error("must be 1 to 64 characters")]
    Length,
    #[error("may hold only letters, digits, `-` and `_`")]
    Characters,
}

/// Whether `id` can be a node id (it becomes part of NATS subjects and KV keys).
pub fn validate_node_id(id: &str) -> Result<(), InvalidNodeId> {
    if id.is_empty() || id.len() > 64 {
        return Err(InvalidNodeId::Length);
    }
    if !id
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    {
        return Err(InvalidNodeId::Characters);
    }
    Ok(())
}

impl ClusterConfig {
    /// A config with every default, for `url`.
    pub fn new(nats_url: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            node_id: None,
            advertise_url: None,
            lease_ms: default_lease_ms(),
            heartbeat_ms: default_heartbeat_ms(),
            dedupe_window_secs: default_dedupe_window_secs(),
            ack_wait_ms: default_ack_wait_ms(),
            max_deliver: default_max_deliver(),
            shards: default_shards(),
            inbox_streams: default_inbox_streams(),
            storage: StorageKind::File,
            replicas: default_replicas(),
            auth: NatsAuth::default(),
            tls: None,
        }
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn dedupe_window(&self) -> Duration {
        Duration::from_secs(self.dedupe_window_secs)
    }

    pub fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.ack_wait_ms)
    }

    /// Checks every key once, at start-up.
    pub fn validate(&self) -> Result<(), InvalidClusterConfig> {
        if !self
            .nats_url
            .split(',')
            .all(|url| url.trim().starts_with("nats://") || url.trim().starts_with("tls://"))
        {
            return Err(invalid(
                "nats_url",
                "must be nats://host:port or tls://host:port",
            ));
        }
        if let Some(id) = &self.node_id {
            validate_node_id(id).map_err(|reason| invalid("node_id", reason.to_string()))?;
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms * 3 > self.lease_ms {
            return Err(invalid(
                "heartbeat_ms",
                "must be above 0 and at most a third of lease_ms",
            ));
        }
        if self.lease_ms < 300 {
            return Err(invalid("lease_ms", "must be at least 300"));
        }
        if self.dedupe_window_secs < 1 {
            return Err(invalid("dedupe_window_secs", "must be at least 1"));
        }
        if self.ack_wait_ms < 300 {
            return Err(invalid("ack_wait_ms", "must be at least 300"));
        }
        if self.max_deliver < 2 {
            return Err(invalid("max_deliver", "must be at least 2"));
        }
        if !(1..=4096).contains(&self.shards) {
            return Err(invalid("shards", "must be between 1 and 4096"));
        }
        if !(1..=self.shards.min(256)).contains(&self.inbox_streams) {
            return Err(invalid(
                "inbox_streams",
                "must be between 1 and shards (at most 256)",
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(invalid("replicas", "must be between 1 and 5"));
        }
        self.auth.validate()?;
        if let Some(tls) = &self.tls
            && tls.cert_file.is_some() != tls.key_file.is_some()
        {
            return Err(invalid("tls", "cert_file and key_file go together"));
        }
        Ok(())
    }
}

impl NatsAuth {
    fn validate(&self) -> Result<(), InvalidClusterConfig> {
        let ways = [
            self.user.is_some(),
            self.token_env.is_some(),
            self.nkey_seed_env.is_some(),
            self.creds_file.is_some(),
        ];
        if ways.iter().filter(|way| **way).count() > 1 {
            return Err(invalid(
                "auth",
                "choose one of user/password_env, token_env, nkey_seed_env, creds_file",
            ));
        }
        if self.user.is_some() != self.password_env.is_some() {
            return Err(invalid("auth", "user and password_env go together"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let config = ClusterConfig::new("nats://127.0.0.1:4222");
        config.validate().unwrap();
        let text = toml::to_string(&config).unwrap();
        let again: ClusterConfig = toml::from_str(&text).unwrap();
        assert_eq!(again, config);
        assert!(
            config.lease() <= Duration::from_secs(3),
            "loss detected within 3 s"
        );
        assert!(config.dedupe_window() >= Duration::from_secs(600));
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut config = ClusterConfig::new("http://x");
        assert_eq!(config.validate().unwrap_err().key, "nats_url");
        config.nats_url = "nats://a:1,nats://b:2".into();
        config.node_id = Some("a b".into());
        assert_eq!(config.validate().unwrap_err().key, "node_id");
        config.node_id = Some("node-1".into());
        config.heartbeat_ms = 1_000;
        assert_eq!(config.validate().unwrap_err().key, "heartbeat_ms");
        config.heartbeat_ms = 250;
        config.auth.user = Some("troupe".into());
        assert_eq!(config.validate().unwrap_err().key, "auth");
        config.auth.password_env = Some("NATS_PASSWORD".into());
        config.validate().unwrap();
        config.auth.token_env = Some("NATS_TOKEN".into());
        assert_eq!(config.validate().unwrap_err().key, "auth");
        config.auth.token_env = None;
        config.shards = 4;
        assert_eq!(config.validate().unwrap_err().key, "inbox_streams");
        config.inbox_streams = 4;
        config.validate().unwrap();
        config.inbox_streams = 0;
        assert_eq!(config.validate().unwrap_err().key, "inbox_streams");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = toml::from_str::<ClusterConfig>("nats_url = \"nats://x:1\"\nnodes = 3\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `nodes`"), "{error}");
    }
}
