//! `[telemetry]`: where traces go. Absent or without `otlp_endpoint`, spans only reach the
//! log (as today); with it, every turn's spans are exported over OTLP/gRPC to a collector
//! (OpenTelemetry Collector, Jaeger, Tempo, rotel…), so one trace covers a message from
//! the client through the ingress node to the session's owner and the model call.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid, refused};

const fn default_sample_ratio() -> f64 {
    1.0
}
const fn default_export_timeout_secs() -> u64 {
    10
}
fn default_service_name() -> String {
    "troupe".into()
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// For people: one readable line per event.
    #[default]
    Text,
    /// For log collectors (Loki, Elasticsearch, CloudWatch…): one JSON object per line,
    /// with `timestamp`, `level`, `target`, `fields` and the current `span`.
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TelemetryConfig {
    /// OTLP/gRPC endpoint of a collector, e.g. `http://127.0.0.1:4317`;
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` overrides it. Absent: nothing is exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans; `OTEL_SERVICE_NAME` overrides it.
    #[serde(default = "default_service_name")]
    pub(crate) service_name: String,
    /// Share of new traces recorded, 0.0 to 1.0. A trace that arrives with a sampled
    /// `traceparent` is always recorded (parent-based sampling).
    #[serde(default = "default_sample_ratio")]
    pub(crate) sample_ratio: f64,
    /// Longest wait for the collector on one export batch.
    #[serde(default = "default_export_timeout_secs")]
    pub(crate) export_timeout_secs: u64,
    /// `text` (the default) or `json` lines on stderr.
    #[serde(default)]
    pub(crate) log_format: LogFormat,
    /// Where a trace is seen, with `{trace_id}` in it (`http://jaeger:16686/trace/{trace_id}`):
    /// the dashboard links each failed turn there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) trace_url: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
            export_timeout_secs: default_export_timeout_secs(),
            log_format: LogFormat::default(),
            trace_url: None,
        }
    }
}

impl TelemetryConfig {
    /// Checks every field; the error names the first key at fault.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otlp_endpoint {
            check_endpoint(endpoint)
                .map_err(|reason| refused("telemetry.otlp_endpoint", reason))?;
        }
        if self.service_name.trim().is_empty() {
            return Err(invalid("telemetry.service_name", "must not be empty"));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid(
                "telemetry.sample_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        if let Some(template) = &self.trace_url {
            let link = template.replace("{trace_id}", "0af7651916cd43dd8448eb211c80319c");
            if !template.contains("{trace_id}") || check_endpoint(&link).is_err() {
                return Err(invalid(
                    "telemetry.trace_url",
                    "must be an http:// or https:// URL with {trace_id} in it",
                ));
            }
        }
        if self.export_timeout_secs == 0 {
            return Err(invalid(
                "telemetry.export_timeout_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Why `otlp_endpoint` cannot name a collector.
#[derive(Debug, thiserror::Error)]
enum EndpointError {
    #[error("`{endpoint}` is not a URL: {source}")]
    Unparsable {
        endpoint: String,
        #[source]
        source: url::ParseError,
    },
    #[error("`{endpoint}` must be an http:// or https:// address of a collector")]
    NotHttp { endpoint: String },
}

fn check_endpoint(endpoint: &str) -> Result<(), EndpointError> {
    let url = url::Url::parse(endpoint).map_err(|source| EndpointError::Unparsable {
        endpoint: endpoint.to_owned(),
        source,
    })?;
    if matches!(url.scheme(), "http" | "https") && url.host().is_some() {
        Ok(())
    } else {
        Err(EndpointError::NotHttp {
            endpoint: endpoint.to_owned(),
        })
    }
}
