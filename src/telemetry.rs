//! Process-wide telemetry set-up, done once by the binary: `tracing` to stderr (filtered by
//! `RUST_LOG`, default `info`) and the Prometheus recorder behind `/metrics`.

use std::io::IsTerminal;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use troupe_actors::metrics as metric_names;

/// Latency buckets in seconds: fine below a millisecond (gateway), wide above (models).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
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
    // Present from the start, so dashboards and alerts see zeros rather than nothing.
    metrics::counter!(metric_names::MESSAGES_IN).absolute(0);
    metrics::counter!(metric_names::MESSAGES_OUT).absolute(0);
}
