//! What the operator's dashboard shows, in one serialisable snapshot: the node and its
//! cluster, traffic with per-stage latency and error rates, bridges with their real
//! delivery counts, skills, providers, canvas rooms, local models, the supervision tree,
//! the last failed turns, and token use and cost. Rates and percentiles are over the
//! window of readings the caller keeps ([`Window`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use troupe_actors::failures::FailedTurn;
use troupe_actors::metrics as metric_names;
use troupe_actors::skill::SkillStatus;
use troupe_actors::usage::{Grouping, UsageBook, UsageReport};
use troupe_cluster::ClusterOverview;

use super::prom::{Readings, quantile, rate};
use crate::gateway::AppState;

/// Readings kept for rates and percentiles: the last ten seconds, one a second.
const WINDOW: usize = 11;
const DAY: u64 = 86_400;

/// The readings of one viewer's stream, oldest first.
#[derive(Default)]
pub(super) struct Window {
    readings: VecDeque<Readings>,
}

impl Window {
    fn push(&mut self, readings: Readings) -> (&Readings, &Readings) {
        if self.readings.len() == WINDOW {
            self.readings.pop_front();
        }
        self.readings.push_back(readings);
        // Not empty: it holds the reading just pushed.
        let newest = self.readings.len() - 1;
        (&self.readings[newest], &self.readings[0])
    }
}

/// The 50th and 99th percentile of a stage over the window, in milliseconds (`None`:
/// nothing observed in it).
#[derive(Debug, Serialize)]
struct Latency {
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

fn latency(now: &Readings, then: &Readings, name: &str, filter: &[(&str, &str)]) -> Latency {
    let ms = |q| quantile(now, then, name, filter, q).map(|seconds| seconds * 1000.0);
    Latency {
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
    }
}

#[derive(Debug, Serialize)]
struct NodeView {
    version: &'static str,
    ready: bool,
    /// Why the node is not ready, when it is not.
    not_ready: Option<String>,
    stores: BTreeMap<&'static str, troupe_actors::storage::StoreHealth>,
    resident_bytes: f64,
    /// `telemetry.trace_url`: where a failed turn's trace is linked.
    trace_url: Option<String>,
}

#[derive(Debug, Serialize)]
struct Traffic {
    sessions_open: f64,
    sessions_passivated: f64,
    messages_in: f64,
    replies_out: f64,
    turns_per_sec: f64,
    errors_per_sec: f64,
    /// Failed turns by error code: since start, and per second over the window.
    errors: BTreeMap<String, ErrorCount>,
    /// `queue`, `model`, `tools`, `store`, and `added` (what Troupe adds to a turn).
    stages: BTreeMap<&'static str, Latency>,
}

#[derive(Debug, Serialize)]
struct ErrorCount {
    total: f64,
    per_sec: f64,
}

#[derive(Debug, Serialize)]
struct ProviderView {
    name: String,
    kind: String,
    model: String,
    calls_per_sec: f64,
    latency: Latency,
    /// Failed calls since start, by kind (`rate_limited`, `timeout`, `server`, …).
    errors: BTreeMap<String, f64>,
    fallbacks: f64,
    tokens_per_min: f64,
}

#[derive(Debug, Serialize)]
struct ChildView {
    name: String,
    restarts: u64,
}

#[derive(Debug, Serialize)]
struct CanvasView {
    rooms_open: f64,
    connections: f64,
}

/// Most runs going on listed on the dashboard.
const RUNS_LISTED: usize = 20;

/// The workflow engine, from its metrics and the runs going on here (no store is read):
/// `None` where workflows are off.
#[derive(Debug, Serialize)]
struct WorkflowsView {
    /// The newest runs going on on this node.
    running: Vec<troupe_workflows::RunSummary>,
    active: f64,
    started: f64,
    finished: f64,
    failed: f64,
    cancelled: f64,
    resumed: f64,
    retried: f64,
    missed: f64,
    /// Runs started per second, lately.
    started_per_sec: f64,
}

async fn workflows(state: &AppState, now: &Readings, then: &Readings) -> Option<WorkflowsView> {
    use troupe_workflows::metrics as names;
    let mut running = state
        .workflows
        .as_ref()?
        .running()
        .await
        .unwrap_or_default();
    running.truncate(RUNS_LISTED);
    let ended = |status: &str| now.total(names::RUNS_ENDED, &[("status", status)]);
    Some(WorkflowsView {
        running,
        active: now.total(names::RUNS_ACTIVE, &[]),
        started: now.total(names::RUNS_STARTED, &[]),
        finished: ended("finished"),
        failed: ended("failed"),
        cancelled: ended("cancelled"),
        resumed: now.total(names::RUNS_RESUMED, &[]),
        retried: now.total(names::STEP_RETRIES, &[]),
        missed: now.total(names::SCHEDULE_MISSED, &[]),
        started_per_sec: rate(now, then, names::RUNS_STARTED, &[]),
    })
}

/// Token use and cost: today (UTC) and the last seven days, by each grouping, and per day.
#[derive(Debug, Serialize)]
struct UsageView {
    today: BTreeMap<&'static str, UsageReport>,
    week: BTreeMap<&'static str, UsageReport>,
    days: UsageReport,
}

/// The whole dashboard.
#[derive(Debug, Serialize)]
pub(super) struct Overview {
    /// Unix milliseconds.
    at: u128,
    node: NodeView,
    cluster: Option<ClusterOverview>,
    traffic: Traffic,
    bridges: Vec<Value>,
    skills: Vec<SkillStatus>,
    providers: Vec<ProviderView>,
    canvas: CanvasView,
    workflows: Option<WorkflowsView>,
    models: Value,
    supervision: Vec<ChildView>,
    failed_turns: Vec<FailedTurn>,
    usage: UsageView,
}

const GROUPINGS: [(&str, Grouping); 4] = [
    ("person", Grouping::Person),
    ("channel", Grouping::Channel),
    ("provider", Grouping::Provider),
    ("model", Grouping::Model),
];

fn usage(book: &UsageBook, now: u64) -> UsageView {
    let report = |since| {
        GROUPINGS
            .iter()
            .map(|(name, by)| (*name, book.report(*by, since)))
            .collect()
    };
    let week = now.saturating_sub(6 * DAY) - now % DAY;
    UsageView {
        today: report(now - now % DAY),
        week: report(week),
        days: book.report(Grouping::Day, week),
    }
}

fn traffic(now: &Readings, then: &Readings) -> Traffic {
    let stages = [
        ("queue", metric_names::TURN_STAGE_SECONDS),
        ("model", metric_names::TURN_STAGE_SECONDS),
        ("tools", metric_names::TURN_STAGE_SECONDS),
        ("store", metric_names::TURN_STAGE_SECONDS),
    ]
    .into_iter()
    .map(|(stage, name)| (stage, latency(now, then, name, &[("stage", stage)])))
    .chain(std::iter::once((
        "added",
        latency(now, then, metric_names::GATEWAY_LATENCY_SECONDS, &[]),
    )))
    .collect();
    Traffic {
        sessions_open: now.total(metric_names::SESSIONS_ACTIVE, &[]),
        sessions_passivated: now.total(metric_names::SESSIONS_PASSIVATED, &[]),
        messages_in: now.total(metric_names::MESSAGES_IN, &[]),
        replies_out: now.total(metric_names::MESSAGES_OUT, &[]),
        turns_per_sec: rate(now, then, metric_names::MESSAGES_IN, &[]),
        errors_per_sec: rate(now, then, metric_names::MESSAGE_ERRORS, &[]),
        errors: now
            .by_label(metric_names::MESSAGE_ERRORS, "code")
            .into_iter()
            .map(|(code, total)| {
                let filter = [("code", code.as_str())];
                let per_sec = rate(now, then, metric_names::MESSAGE_ERRORS, &filter);
                (code, ErrorCount { total, per_sec })
            })
            .collect(),
        stages,
    }
}

/// The GenAI metrics' names as Prometheus writes them (dots become underscores).
fn prometheus_name(name: &str) -> String {
    name.replace('.', "_")
}

fn providers(state: &AppState, now: &Readings, then: &Readings) -> Vec<ProviderView> {
    let duration = prometheus_name(metric_names::GEN_AI_OPERATION_DURATION);
    let tokens = format!("{}_sum", prometheus_name(metric_names::GEN_AI_TOKEN_USAGE));
    let calls = format!("{duration}_count");
    state
        .node
        .providers()
        .iter()
        .map(|provider| {
            let genai = [
                ("gen_ai_provider_name", provider.kind.as_str()),
                ("gen_ai_request_model", provider.model.as_str()),
            ];
            let named = [("provider", provider.name.as_str())];
            let errors = now
                .by_label(metric_names::PROVIDER_ERRORS, "kind")
                .into_keys()
                .map(|kind| {
                    let filter = [
                        ("provider", provider.name.as_str()),
                        ("kind", kind.as_str()),
                    ];
                    let count = now.total(metric_names::PROVIDER_ERRORS, &filter);
                    (kind, count)
                })
                .filter(|(_, count)| *count > 0.0)
                .collect();
            ProviderView {
                name: provider.name.clone(),
                kind: provider.kind.clone(),
                model: provider.model.clone(),
                calls_per_sec: rate(now, then, &calls, &genai),
                latency: latency(now, then, &duration, &genai),
                errors,
                fallbacks: now.total(metric_names::PROVIDER_FALLBACKS, &named),
                tokens_per_min: rate(now, then, &tokens, &genai) * 60.0,
            }
        })
        .collect()
}

/// The dashboard now; `window` keeps this viewer's readings for rates. `None` when the
/// work on the blocking pool failed.
pub(super) async fn build(state: &AppState, window: &mut Window) -> Option<Overview> {
    let page = state.render_metrics().await;
    let read_at = Instant::now();
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Reading the page back and summing usage over the week take more than a moment of
    // CPU with many series or people: on the blocking pool.
    let book = Arc::clone(&state.usage);
    let crunched = tokio::task::spawn_blocking(move || {
        (
            Readings::parse(&page, read_at),
            usage(&book, clock.as_secs()),
        )
    })
    .await;
    let (readings, usage) = match crunched {
        Ok(crunched) => crunched,
        Err(error) => {
            tracing::error!(%error, "the dashboard's snapshot could not be built");
            return None;
        }
    };
    let readiness = state.readiness().await;
    let mut supervision: Vec<ChildView> = state
        .node
        .restart_counts()
        .await
        .into_iter()
        .map(|(name, restarts)| ChildView { name, restarts })
        .collect();
    supervision.sort_by(|a, b| a.name.cmp(&b.name));
    let (now, then) = window.push(readings);
    Some(Overview {
        at: clock.as_millis(),
        node: NodeView {
            version: env!("CARGO_PKG_VERSION"),
            ready: readiness.is_ok(),
            not_ready: readiness.err().map(|refusal| refusal.message),
            stores: state.store_health().into_iter().collect(),
            resident_bytes: now.total(metric_names::PROCESS_RESIDENT_BYTES, &[]),
            trace_url: state.settings.trace_url.clone(),
        },
        cluster: state
            .cluster
            .as_ref()
            .map(troupe_cluster::ClusterNode::overview),
        traffic: traffic(now, then),
        bridges: crate::gateway::bridges::statuses(state),
        skills: state.node.skills().statuses(),
        providers: providers(state, now, then),
        canvas: CanvasView {
            rooms_open: now.total(troupe_canvas::metrics::ROOMS_OPEN, &[]),
            connections: now.total(troupe_canvas::metrics::CONNECTIONS, &[]),
        },
        workflows: workflows(state, now, then).await,
        models: state.models.status(),
        supervision,
        failed_turns: state.node.failed_turns(),
        usage,
    })
}
