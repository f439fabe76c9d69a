//! `/api/v1/ops/…`: the operator's controls, for the owner's token only. So far the log's
//! level: `GET /api/v1/ops/log-level` says what the log's filter is, and
//! `PUT /api/v1/ops/log-level` with `{"level": "debug"}` (or filter directives such as
//! `info,troupe_actors=debug`) changes it at once, without a restart.

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
