//! The access layer: one axum router serving health, metrics, the WebSocket, the REST API,
//! the OpenAI-compatible facade and the web chat page, run by the supervised
//! [`access::AccessLayer`] actor.

pub(crate) mod access;
pub(crate) mod admission;
mod auth;
pub(crate) mod body;
mod bridges;
pub(crate) mod callers;
pub(crate) mod canvas;
mod canvas_api;
pub(crate) mod clients;
mod conversations;
mod embeddings;
mod error;
pub(crate) mod frames;
mod guard;
mod linked;
mod memory;
pub(crate) mod openai;
mod ops;
mod rest;
pub(crate) mod server;
pub(crate) mod setup;
mod titles;
mod turns;
mod uploads;
mod usage;
mod web;
mod workflow_hooks;
mod workflows;
mod ws;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use troupe_actors::bridge::dispatch::Dispatcher;
use troupe_actors::metrics as metric_names;
use troupe_actors::node::NodeHandle;
use troupe_actors::storage::{Storage, StoreHealth};
use troupe_actors::{Ingress, MessageLimits};
use troupe_cluster::ClusterNode;

pub(crate) use clients::Clients;
use error::{ApiCode, ApiError};
pub(crate) use guard::HostPattern;
use guard::RequestGuard;

/// What the access layer is configured with.
#[derive(Clone, Debug)]
pub(crate) struct GatewaySettings {
    /// Required bearer token, if any.
    pub(crate) token: Option<String>,
    /// Senders with a token of their own.
    pub(crate) senders: callers::SenderTokens,
    /// The token that reads the operator's views only (`server.ops_token`).
    pub(crate) ops_token: Option<String>,
    /// Where the dashboard links a trace id (`telemetry.trace_url`).
    pub(crate) trace_url: Option<String>,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) allowed_hosts: Vec<HostPattern>,
    pub(crate) limits: MessageLimits,
    pub(crate) connections: admission::ConnectionLimits,
    pub(crate) timeouts: server::ServerTimeouts,
    /// Shown by the web page and `troupe chat` (e.g. "no model configured").
    pub(crate) notice: Option<String>,
    /// Where the first-run set-up writes, when it is offered (no model, no cluster).
    pub(crate) setup: Option<Arc<setup::SetupTarget>>,
}

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) node: NodeHandle,
    /// Where messages go: the local node, or the cluster's durable inbox.
    pub(crate) ingress: Arc<dyn Ingress>,
    /// Set when this node is a member of a cluster.
    pub(crate) cluster: Option<ClusterNode>,
    pub(crate) settings: Arc<GatewaySettings>,
    pub(crate) metrics: PrometheusHandle,
    /// Cancelled when the node starts shutting down: connections stop taking messages.
    pub(crate) shutdown: CancellationToken,
    /// Tracks WebSocket connections, so shutdown can wait for their in-flight replies.
    pub(crate) connections: TaskTracker,
    /// The messaging bridges, their journal and pairing.
    pub(crate) bridges: Dispatcher,
    /// Open WebSocket connections by sender, for messages nobody asked for (reminders).
    pub(crate) clients: Clients,
    /// Failed token attempts per address.
    pub(crate) auth_failures: Arc<auth::AuthFailures>,
    /// Room for webhook bodies being read before their signature is checked.
    pub(crate) webhook_bodies: Arc<body::BodyBudget>,
    /// The node's own databases besides the session store (the bridges' journal, the
    /// reminders), whose health readiness and `/api/v1/info` report.
    pub(crate) stores: Arc<[Storage]>,
    /// The collaborative rooms served at `/yjs/{room}`.
    pub(crate) canvas: troupe_canvas::Canvas,
    /// Room-scoped client tokens for the canvas.
    pub(crate) room_tokens: troupe_canvas::RoomTokens,
    /// The local models (`/v1/embeddings`, `GET /api/v1/models`).
    pub(crate) models: Arc<crate::local_models::LocalModels>,
    /// Long-term memory (`/api/v1/memory`), where the node keeps it.
    pub(crate) memories: Option<Arc<troupe_actors::memory::Memories>>,
    /// The speech engines (`GET /api/v1/voice`).
    pub(crate) voice: Arc<crate::voice::VoiceSummary>,
    /// What the web page's microphone and speaker run on (`/ws`), with `stt` configured.
    pub(crate) web_voice: Option<Arc<crate::voice::WebVoice>>,
    /// The log's level, which `/api/v1/ops/log-level` changes.
    pub(crate) log_level: crate::log_level::LogLevel,
    /// Token use and cost (`GET /api/v1/usage`).
    pub(crate) usage: Arc<troupe_actors::usage::UsageBook>,
    /// The workflow engine (`/api/v1/workflows`); `None` with `[workflows] enabled = false`.
    pub(crate) workflows: Option<troupe_workflows::Workflows>,
}

impl AppState {
    /// Each store's health by name: the session store first.
    fn store_health(&self) -> Vec<(&'static str, StoreHealth)> {
        std::iter::once(("sessions", self.node.store().health()))
            .chain(
                self.stores
                    .iter()
                    .map(|storage| (storage.name(), storage.health())),
            )
            .collect()
    }
}

/// `GET /api/v1/skills`: every configured skill, its state, tools and permissions.
async fn list_skills(State(state): State<AppState>) -> Response {
    let skills = state.node.skills().statuses();
    axum::Json(serde_json::json!({"skills": skills})).into_response()
}

/// Builds the router for a node bound to `bound`. Every request, whatever its route, first
/// passes the Host and Origin guard, then the connection admission.
pub(crate) fn router(state: AppState, bound: std::net::SocketAddr) -> Router {
    let guard = Arc::new(RequestGuard::new(
        bound,
        state.settings.allowed_hosts.clone(),
        state.settings.allowed_origins.clone(),
    ));
    // Routes that send messages: the owner's token or a sender's own.
    let messaging = Router::new()
        .route("/api/v1/info", get(info))
        .route("/api/v1/messages", post(rest::post_message))
        .route("/api/v1/conversations", get(conversations::list))
        .route(
            "/api/v1/conversations/{conversation_id}",
            get(conversations::show)
                .delete(conversations::delete)
                .patch(conversations::rename),
        )
        .route(
            "/api/v1/conversations/{conversation_id}/title",
            post(conversations::generate_title),
        )
        .route(
            "/api/v1/conversations/{conversation_id}/stop",
            post(conversations::stop),
        )
        .route(
            "/api/v1/conversations/{conversation_id}/uploads",
            post(uploads::upload),
        )
        .route(
            "/api/v1/conversations/{conversation_id}/uploads/{upload_id}",
            get(uploads::show),
        )
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(embeddings::create))
        .route("/v1/models", get(openai::list_models));
    // Routes that manage the node: the owner's token only.
    let managing = Router::new()
        .route("/api/v1/cluster", get(cluster_members))
        .route("/api/v1/sessions", get(rest::list_sessions))
        .route(
            "/api/v1/sessions/{key}",
            get(rest::get_session).delete(rest::delete_session),
        )
        .route("/api/v1/bridges", get(bridges::list))
        .route("/api/v1/skills", get(list_skills))
        .route("/api/v1/models", get(embeddings::models))
        .route("/api/v1/voice", get(crate::voice::status))
        .route(
            "/api/v1/ops/log-level",
            get(ops::log_level).put(ops::set_log_level),
        )
        .route(
            "/api/v1/memory/{person}",
            get(memory::list).delete(memory::forget_about),
        )
        .route("/api/v1/memory/{person}/{id}", delete(memory::forget))
        .route("/api/v1/setup", get(setup::status).post(setup::apply))
        .route("/api/v1/canvas", get(canvas_api::list))
        .route(
            "/api/v1/canvas/{room}",
            get(canvas_api::items).delete(canvas_api::delete_room),
        )
        .route(
            "/api/v1/canvas/{room}/items",
            axum::routing::patch(canvas_api::patch_items),
        )
        .route("/api/v1/canvas/{room}/tokens", post(canvas_api::mint_token))
        .route(
            "/api/v1/canvas/tokens/{id}",
            axum::routing::delete(canvas_api::revoke_token),
        )
        .route("/api/v1/pairing", get(bridges::pairing))
        .route("/api/v1/pairing/approve", post(bridges::approve))
        .route(
            "/api/v1/pairing/{sender}",
            axum::routing::delete(bridges::revoke),
        )
        .route("/api/v1/identities", get(bridges::identities))
        .route("/api/v1/identities/link", post(bridges::link))
        .route(
            "/api/v1/identities/{member}",
            axum::routing::delete(bridges::unlink),
        )
        .route(
            "/api/v1/workflows",
            get(workflows::list).post(workflows::put),
        )
        .route(
            "/api/v1/workflows/{id}",
            get(workflows::show).delete(workflows::remove),
        )
        .route(
            "/api/v1/workflows/{id}/runs",
            get(workflows::runs).post(workflows::start),
        )
        .route("/api/v1/workflows/{id}/runs/{run}", get(workflows::run))
        .route(
            "/api/v1/workflows/{id}/runs/{run}/{action}",
            post(workflows::control),
        )
        .route_layer(axum::middleware::from_fn(auth::owner_only));
    let protected = messaging
        .merge(managing)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    // What an operator reads: the owner's token, or `server.ops_token`.
    let operating = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/api/v1/usage", get(usage::report))
        .route("/api/v1/ops/stream", get(ops::stream))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::owner_or_operator,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/ws", get(ws::upgrade))
        // The owner's header or a room token (`?token=`); checked by the route itself.
        .route("/yjs/{room}", get(canvas::upgrade))
        .route("/", get(web::index))
        .route("/rooms", get(web::index))
        .route("/app/app.js", get(web::app_script))
        .route("/app/app.css", get(web::app_styles))
        .route("/app/microphone-worklet.js", get(web::microphone_worklet))
        .route("/app/LICENSES.txt", get(web::app_licenses))
        .route("/ops", get(ops::page))
        .route("/ops/assets/ops.js", get(ops::script))
        .route("/ops/assets/ops.css", get(ops::styles))
        .route("/canvas/{room}", get(web::canvas_page))
        .route("/canvas/assets/board.js", get(web::canvas_script))
        .route("/canvas/assets/LICENSES.txt", get(web::canvas_licenses))
        // A workflow's webhook trigger: its signature is its authentication.
        .route("/hooks/workflows/{name}", post(workflow_hooks::call))
        // Platform callbacks: each bridge checks its platform's signature itself.
        .route(
            "/bridges/{name}/{endpoint}",
            get(bridges::webhook).post(bridges::webhook),
        )
        .merge(protected)
        .merge(operating)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::admit_connection,
        ))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            guard,
            guard::check_request,
        ))
        .with_state(state)
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness().await {
        Ok(()) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

impl AppState {
    /// Whether the node takes traffic: not shutting down, in its cluster, its skills
    /// started, every store writable, its sessions answering; else why not.
    pub(crate) async fn readiness(&self) -> Result<(), ApiError> {
        if self.shutdown.is_cancelled() || self.node.is_shutting_down() {
            return Err(ApiError::shutting_down());
        }
        if let Some(cluster) = &self.cluster
            && !cluster.is_ready()
        {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ApiCode::NotReady,
                "the node has not joined the cluster yet",
            ));
        }
        let starting = self.node.skills().starting();
        if !starting.is_empty() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ApiCode::NotReady,
                format!("skills still starting: {}", starting.join(", ")),
            ));
        }
        for (store, health) in self.store_health() {
            if let StoreHealth::Failing { reason, .. } = health {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ApiCode::StorageFailing,
                    format!("the {store} store cannot write ({reason}); it retries by itself"),
                ));
            }
        }
        self.node.stats().await.map(drop).map_err(|error| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ApiCode::NotReady,
                error.message,
            )
        })
    }
}

async fn metrics_page(State(state): State<AppState>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.render_metrics().await,
    )
        .into_response()
}

impl AppState {
    /// The Prometheus page, with the gauges that are sampled when asked brought up to date
    /// first (sessions, memory). Rendering runs on the blocking pool.
    pub(crate) async fn render_metrics(&self) -> String {
        if let Ok(stats) = self.node.stats().await {
            metrics::gauge!(metric_names::SESSIONS_ACTIVE).set(stats.active_sessions as f64);
            let stored = self.node.store().count() as f64;
            metrics::gauge!(metric_names::SESSIONS_PASSIVATED)
                .set((stored - stats.active_sessions as f64).max(0.0));
        }
        let handle = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            crate::memory::MemorySample::take().publish();
            handle.render()
        })
        .await
        .unwrap_or_default()
    }
}

/// `GET /api/v1/info`. `storage` is the first failing store (else writable), with the
/// store named; `stores` has each one.
async fn info(
    State(state): State<AppState>,
    caller: Option<axum::Extension<callers::Caller>>,
) -> Response {
    // Who the request speaks as: a sender's own token binds it to that sender (the web
    // app then chats as that sender); the owner's token may speak as anyone.
    let you = match caller.as_deref() {
        Some(callers::Caller::Sender(sender)) => json!({"sender_id": &**sender}),
        _ => json!({"owner": true}),
    };
    let provider = state.node.default_provider();
    let stores = state.store_health();
    let storage = stores
        .iter()
        .find_map(|(store, health)| match health {
            StoreHealth::Failing { reason, since } => Some(StoreHealth::Failing {
                reason: format!("{store}: {reason}"),
                since: *since,
            }),
            StoreHealth::Writable => None,
        })
        .unwrap_or(StoreHealth::Writable);
    let stores: serde_json::Map<String, serde_json::Value> = stores
        .into_iter()
        .map(|(store, health)| (store.to_owned(), json!(health)))
        .collect();
    axum::Json(json!({
        "name": "troupe",
        "version": env!("CARGO_PKG_VERSION"),
        "provider": provider,
        "notice": state.settings.notice,
        "you": you,
        "max_payload_bytes": state.settings.limits.max_payload_bytes,
        "max_images_per_message": state.settings.limits.max_images,
        "storage": storage,
        "stores": stores,
    }))
    .into_response()
}

/// `GET /api/v1/cluster`: the members this node sees (itself included).
async fn cluster_members(State(state): State<AppState>) -> Response {
    let Some(cluster) = &state.cluster else {
        return axum::Json(json!({"clustered": false, "node_id": null, "nodes": []}))
            .into_response();
    };
    axum::Json(json!({
        "clustered": true,
        "node_id": cluster.node_id(),
        "nodes": cluster.members(),
    }))
    .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ApiCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// Records what the gateway added to a turn: total time minus the model's time.
pub(crate) fn record_gateway_latency(started: Instant, model_latency: Duration) {
    let added = started.elapsed().saturating_sub(model_latency);
    metrics::histogram!(metric_names::GATEWAY_LATENCY_SECONDS).record(added.as_secs_f64());
    metrics::counter!(metric_names::MESSAGES_OUT).increment(1);
}

/// Headers from `(name, value)` pairs, for tests.
#[cfg(test)]
pub(crate) fn header_map(pairs: &[(&'static str, &str)]) -> axum::http::HeaderMap {
    let mut map = axum::http::HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, value.parse().expect("a valid header value"));
    }
    map
}
