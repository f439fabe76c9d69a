//! `TROUPE_*` (and the standard `OTEL_*`) environment overrides, applied over the file
//! before it is validated: what a container sets from its orchestrator and its secrets.

use std::path::PathBuf;

use troupe_cluster::ClusterConfig;

use super::{ConfigError, TroupeConfig, invalid};

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
    /// `TROUPE_ADVERTISE_URL`: `[cluster] advertise_url` (a pod's own address).
    pub(crate) advertise_url: Option<String>,
    /// `TROUPE_OPS_TOKEN`: `server.ops_token` (from a secret, not the file).
    pub(crate) ops_token: Option<String>,
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
            advertise_url: read("TROUPE_ADVERTISE_URL"),
            ops_token: read("TROUPE_OPS_TOKEN"),
            otlp_endpoint: read("OTEL_EXPORTER_OTLP_ENDPOINT"),
            service_name: read("OTEL_SERVICE_NAME"),
        }
    }
}

impl TroupeConfig {
    pub(super) fn apply_environment(
        &mut self,
        environment: &Environment,
    ) -> Result<(), ConfigError> {
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
        if let Some(token) = &environment.ops_token {
            self.server.ops_token = Some(token.clone());
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
        if let Some(url) = &environment.advertise_url {
            let Some(cluster) = &mut self.cluster else {
                return Err(invalid(
                    "TROUPE_ADVERTISE_URL",
                    "only means something in a cluster: set TROUPE_NATS_URL or [cluster] too",
                ));
            };
            cluster.advertise_url = Some(url.clone());
        }
        if let Some(endpoint) = &environment.otlp_endpoint {
            self.telemetry.otlp_endpoint = Some(endpoint.clone());
        }
        if let Some(name) = &environment.service_name {
            self.telemetry.service_name.clone_from(name);
        }
        Ok(())
    }
}
