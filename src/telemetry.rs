//! Process-wide telemetry set-up, done once by the binary: `tracing` to stderr, as text or
//! JSON lines (`[telemetry] log_format`), filtered by `RUST_LOG` (default `info`) until the
//! [`LogLevel`] changes it, spans exported over OTLP when `[telemetry] otlp_endpoint` is
//! set, and the Prometheus recorder behind `/metrics`.

use std::io::IsTerminal;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Level;
use tracing::subscriber::Interest;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{DynFilterFn, FilterExt, LevelFilter, filter_fn};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use troupe_actors::metrics as metric_names;

use crate::config::{LogFormat, TelemetryConfig};
use crate::log_level::LogLevel;

/// Latency buckets in seconds: fine below a millisecond (gateway), wide above (models).
/// OpenTelemetry's advised buckets for `gen_ai.client.token.usage` (tokens).
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// OpenTelemetry's advised buckets for `gen_ai.client.operation.duration` (seconds).
const OPERATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// What goes to the trace export, whatever `RUST_LOG` says (the log and the export are
/// separate decisions): the turn spans of these crates (and the voice pipeline's, in
/// `troupe_inference`), which are `debug` so that a node without export never pays for
/// them, and their `info` and louder events.
const EXPORTED_TARGETS: &[&str] = &[
    "troupe",
    "troupe_actors",
    "troupe_cluster",
    "troupe_inference",
];

fn exported(metadata: &tracing::Metadata<'_>) -> bool {
    let ours = EXPORTED_TARGETS.iter().any(|target| {
        metadata.target() == *target
            || metadata
                .target()
                .strip_prefix(target)
                .is_some_and(|rest| rest.starts_with("::"))
    });
    let loud_enough = if metadata.is_span() {
        *metadata.level() <= Level::DEBUG
    } else {
        *metadata.level() <= Level::INFO
    };
    ours && loud_enough
}

/// The installed trace export, flushed by [`Telemetry::shutdown`] before the process exits.
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
    log_level: LogLevel,
}

impl Telemetry {
    /// The log's level, which the ops API changes.
    pub(crate) fn log_level(&self) -> LogLevel {
        self.log_level.clone()
    }

    /// Exports what is still buffered; spans of the last turns are not lost on exit.
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "trace export did not flush before exit");
        }
    }
}

/// Libraries that log whole messages at `trace` (a WebSocket `hello` frame carries the
/// token, an HTTP request its `Authorization` header): their `trace` events are never
/// logged, whatever `RUST_LOG` asks.
const SECRET_BEARING_TARGETS: [&str; 6] = [
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "reqwest",
    "h2",
];

/// The filter of [`free_of_secrets`], decided once per callsite (it reads only the
/// metadata) and with a level hint that leaves the `RUST_LOG` filter's in force: without
/// them the combined filter had no hint, `log`'s max level rose to TRACE, and every
/// WebSocket frame was formatted into a log record only to be dropped.
fn secret_free_filter<S>() -> impl Filter<S>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    DynFilterFn::new(|metadata, _| free_of_secrets(metadata))
        .with_callsite_filter(|metadata| {
            if free_of_secrets(metadata) {
                Interest::always()
            } else {
                Interest::never()
            }
        })
        .with_max_level_hint(LevelFilter::TRACE)
}

fn free_of_secrets(metadata: &tracing::Metadata<'_>) -> bool {
    *metadata.level() != tracing::Level::TRACE
        || !SECRET_BEARING_TARGETS.iter().any(|target| {
            metadata
                .target()
                .strip_prefix(target)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// Installs the log output and, when configured, the OTLP trace export. `instance` is the
/// node id in a cluster (`service.instance.id`), so a trace shows which node did what.
pub(crate) fn init_tracing(
    config: &TelemetryConfig,
    instance: Option<&str>,
) -> anyhow::Result<Telemetry> {
    let (log_level, filter) = LogLevel::from_env();
    let filter = filter.and(secret_free_filter());
    let log = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let provider = config
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| trace_provider(config, endpoint, instance))
        .transpose()?;
    let export = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("troupe"))
            .with_filter(filter_fn(exported))
    });
    let _ = tracing_subscriber::registry()
        .with(log)
        .with(export)
        .try_init();
    if let Some(endpoint) = &config.otlp_endpoint {
        tracing::info!(%endpoint, ratio = config.sample_ratio, "exporting traces over OTLP");
    }
    Ok(Telemetry {
        provider,
        log_level,
    })
}

fn trace_provider(
    config: &TelemetryConfig,
    endpoint: &str,
    instance: Option<&str>,
) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(config.export_timeout_secs))
        .build()
        .map_err(|error| anyhow::anyhow!("telemetry.otlp_endpoint: {error}"))?;
    let mut resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if let Some(instance) = instance {
        resource =
            resource.with_attribute(KeyValue::new("service.instance.id", instance.to_owned()));
    }
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource.build())
        .build())
}

/// Installs the global metrics recorder and keeps its histograms trimmed.
pub(crate) fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(metric_names::GATEWAY_LATENCY_SECONDS.into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(metric_names::MODEL_LATENCY_SECONDS.into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(metric_names::TURN_STAGE_SECONDS.into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(metric_names::GEN_AI_TOKEN_USAGE.into()),
            TOKEN_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(metric_names::GEN_AI_OPERATION_DURATION.into()),
            OPERATION_BUCKETS,
        )?
        .install_recorder()?;
    describe_metrics();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(5));
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        metric_names::TURN_STAGE_SECONDS,
        metrics::Unit::Seconds,
        "time a stage of a turn took, by stage: queue, model, tools, store"
    );
    describe_counter!(
        metric_names::TURNS_GUARDED,
        "turns stopped by a guard, by guard: turn_tokens, tool_rounds, budget"
    );
    describe_counter!(
        metric_names::USAGE_NOT_KEPT,
        "turns whose usage was counted but not written to the usage ledger"
    );
    describe_counter!(
        metric_names::MESSAGES_IN,
        "inbound messages routed to sessions"
    );
    describe_counter!(metric_names::MESSAGES_OUT, "replies delivered");
    describe_counter!(
        metric_names::MESSAGE_ERRORS,
        "turns that ended in an error, by code"
    );
    describe_counter!(
        metric_names::DUPLICATE_MESSAGES,
        "repeated message ids answered with the first reply"
    );
    describe_gauge!(metric_names::SESSIONS_ACTIVE, "sessions in memory");
    describe_gauge!(
        metric_names::SESSIONS_PASSIVATED,
        "sessions kept only in the snapshot store"
    );
    describe_counter!(
        metric_names::SESSION_PASSIVATIONS,
        "idle sessions passivated"
    );
    describe_counter!(
        metric_names::SESSION_ACTIVATIONS,
        "sessions started (new or from a snapshot)"
    );
    describe_histogram!(
        metric_names::GATEWAY_LATENCY_SECONDS,
        "time Troupe adds to a turn, model time excluded"
    );
    describe_histogram!(
        metric_names::MODEL_LATENCY_SECONDS,
        "time the model provider took for a turn"
    );
    describe_counter!(
        metric_names::PROVIDER_ERRORS,
        "provider call failures, by provider and kind"
    );
    describe_counter!(metric_names::PROVIDER_RETRIES, "provider calls retried");
    describe_histogram!(
        metric_names::GEN_AI_TOKEN_USAGE,
        metrics::Unit::Count,
        "tokens per model call, as the provider reported them (OpenTelemetry GenAI)"
    );
    describe_histogram!(
        metric_names::GEN_AI_OPERATION_DURATION,
        metrics::Unit::Seconds,
        "duration of model calls (OpenTelemetry GenAI)"
    );
    describe_counter!(
        metric_names::PROVIDER_FALLBACKS,
        "turns handed to a fallback provider"
    );
    describe_counter!(
        metric_names::ACTOR_RESTARTS,
        "actors restarted by their supervisor"
    );
    describe_counter!(
        metric_names::ACTOR_FAILURES,
        "actors that failed (panic or error)"
    );
    describe_counter!(
        metric_names::SNAPSHOT_ERRORS,
        "snapshot reads or writes that failed"
    );
    describe_gauge!(
        metric_names::WEBSOCKET_CONNECTIONS,
        "open WebSocket connections"
    );
    describe_gauge!(
        metric_names::PROCESS_RESIDENT_BYTES,
        "resident memory of the process (VmRSS)"
    );
    describe_gauge!(
        metric_names::HEAP_ALLOCATED_BYTES,
        "heap bytes allocated and not freed"
    );
    describe_gauge!(
        metric_names::HEAP_RETAINED_BYTES,
        "resident bytes the allocator holds beyond what is allocated"
    );
    describe_gauge!(
        metric_names::HEAP_RETAINED_HIGH,
        "1 while retained memory has stayed above both 64 MiB and the heap in use for 5 minutes"
    );
    describe_gauge!(
        metric_names::STORE_CACHE_BYTES,
        "the page cache each store may fill"
    );
    // Present from the start, so dashboards and alerts see zeros rather than nothing.
    metrics::counter!(metric_names::MESSAGES_IN).absolute(0);
    metrics::counter!(metric_names::MESSAGES_OUT).absolute(0);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The names the node exports that the alert rules and the Grafana board read, as
    /// Prometheus shows them (the exporter turns `.` into `_`).
    fn exported() -> BTreeSet<String> {
        [
            metric_names::MESSAGES_IN,
            metric_names::MESSAGES_OUT,
            metric_names::MESSAGE_ERRORS,
            metric_names::SESSIONS_ACTIVE,
            metric_names::SESSIONS_PASSIVATED,
            metric_names::GATEWAY_LATENCY_SECONDS,
            metric_names::MODEL_LATENCY_SECONDS,
            metric_names::PROVIDER_ERRORS,
            metric_names::PROVIDER_RETRIES,
            metric_names::PROVIDER_FALLBACKS,
            metric_names::BRIDGE_STATE,
            metric_names::BRIDGE_MESSAGES_IN,
            metric_names::BRIDGE_MESSAGES_OUT,
            metric_names::BRIDGE_REPLIES_ANSWERED,
            metric_names::BRIDGE_DELIVERY_FAILURES,
            metric_names::TURN_STAGE_SECONDS,
            metric_names::TURNS_GUARDED,
            metric_names::LOCAL_MODEL_QUEUE_DEPTH,
            metric_names::ACTOR_RESTARTS,
            metric_names::PROCESS_RESIDENT_BYTES,
            metric_names::HEAP_ALLOCATED_BYTES,
            metric_names::GEN_AI_TOKEN_USAGE,
            metric_names::GEN_AI_OPERATION_DURATION,
            troupe_cluster::metrics::MEMBERS,
            troupe_cluster::metrics::SHARDS_OWNED,
            troupe_canvas::metrics::ROOMS_OPEN,
            troupe_canvas::metrics::CONNECTIONS,
        ]
        .iter()
        .map(|name| name.replace('.', "_"))
        .collect()
    }

    /// The metric names `queries` read (a histogram's `_bucket`, `_sum` and `_count` as
    /// its own name).
    fn read_by(queries: &str) -> BTreeSet<String> {
        queries
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("troupe_") || word.starts_with("gen_ai_client_"))
            .map(|word| {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix))
                    .unwrap_or(word)
                    .to_owned()
            })
            .collect()
    }

    fn assert_all_exported(what: &str, read: &BTreeSet<String>) {
        assert!(read.len() >= 10, "{what} reads {read:?}");
        let exported = exported();
        let unknown: Vec<_> = read.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{what} reads metrics nothing exports: {unknown:?}"
        );
    }

    #[test]
    fn every_metric_the_alert_rules_read_is_one_the_node_exports() {
        let rules = include_str!("../deploy/prometheus/alerts.yml");
        assert_all_exported("alerts.yml", &read_by(rules));
    }

    #[test]
    fn every_query_of_the_grafana_board_reads_metrics_the_node_exports() {
        let board: serde_json::Value =
            serde_json::from_str(include_str!("../deploy/grafana/troupe.json"))
                .expect("the board is JSON");
        let panels = board["panels"].as_array().expect("panels");
        let mut queries = String::new();
        for panel in panels {
            let targets = panel["targets"].as_array().expect("each panel has queries");
            assert!(!targets.is_empty(), "{}", panel["title"]);
            for target in targets {
                queries.push_str(target["expr"].as_str().expect("a PromQL expression"));
                queries.push('\n');
            }
        }
        assert_all_exported("troupe.json", &read_by(&queries));
    }
}
