//! The operator's side of a node:
//! - `GET /ops`: the dashboard, compiled into the binary (its script and styles at
//!   `/ops/assets/…`, plain files, no build step, no CDN), live from
//! - `GET /api/v1/ops/stream`: Server-Sent Events, one [`overview::Overview`] a second
//!   (rates and percentiles over the last ten seconds), for the owner's token;
//! - `GET /api/v1/ops/log-level` says what the log's filter is, and
//!   `PUT /api/v1/ops/log-level` with `{"level": "debug"}` (or filter directives such as
//!   `info,troupe_actors=debug`) changes it at once, without a restart.

mod overview;
mod prom;

use std::convert::Infallible;
use std::time::Duration;

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::sse::{Event, KeepAlive, Sse};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::body::admin_json_body;
use super::error::{ApiCode, ApiError};
use crate::log_level::LogLevelError;

/// A `PUT /api/v1/ops/log-level` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelBody {
    level: String,
}

pub(crate) async fn log_level(State(state): State<AppState>) -> Response {
    axum::Json(json!({"level": state.log_level.current()})).into_response()
}

pub(crate) async fn set_log_level(State(state): State<AppState>, body: Body) -> Response {
    let body: LevelBody = match admin_json_body(body).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    match state.log_level.set(&body.level) {
        Ok(()) => {
            let level = state.log_level.current();
            tracing::warn!(%level, "the log's level was changed");
            axum::Json(json!({"level": level})).into_response()
        }
        Err(error @ LogLevelError::Unavailable(_)) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiCode::Internal,
            error.to_string(),
        )
        .into_response(),
        Err(error) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ApiCode::InvalidRequest,
            error.to_string(),
        )
        .into_response(),
    }
}

/// How often the stream sends a snapshot.
const EVERY: Duration = Duration::from_secs(1);

/// `GET /api/v1/ops/stream`: a snapshot now, then one a second, for as long as the
/// viewer stays.
pub(crate) async fn stream(State(state): State<AppState>) -> Response {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let snapshots = futures_util::stream::unfold(
        (state, overview::Window::default(), ticks),
        |(state, mut window, mut ticks)| async move {
            ticks.tick().await;
            let event = match overview::build(&state, &mut window).await {
                Some(snapshot) => Event::default()
                    .event("overview")
                    .json_data(&snapshot)
                    .unwrap_or_else(|error| {
                        Event::default().event("error").data(error.to_string())
                    }),
                None => Event::default()
                    .event("error")
                    .data("the snapshot could not be built; the next one follows"),
            };
            Some((Ok::<_, Infallible>(event), (state, window, ticks)))
        },
    );
    Sse::new(snapshots)
        .keep_alive(KeepAlive::default())
        .into_response()
}

const PAGE_HTML: &str = include_str!("page/index.html");
const PAGE_SCRIPT: &str = include_str!("page/ops.js");
const PAGE_STYLES: &str = include_str!("page/ops.css");
/// Only the page's own script, styles and connections.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CONTENT_SECURITY_POLICY, CSP),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /ops`: the page (its data needs the token; the page asks for it).
pub(crate) async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE_HTML)
}

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", PAGE_SCRIPT)
}

pub(crate) async fn styles() -> Response {
    asset("text/css; charset=utf-8", PAGE_STYLES)
}
