//! The canvas's REST routes (owner only): minting and revoking room tokens.
//! - `POST /api/v1/canvas/{room}/tokens` `{"access": "read"|"write", "ttl_secs"?}` → 201
//!   `{"id", "token", "room", "access", "expires_at"}`;
//! - `DELETE /api/v1/canvas/tokens/{id}` → 204, and the token's connections close; 404 when
//!   no live token has that id.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use troupe_canvas::RoomName;
use troupe_canvas::tokens::{Access, DEFAULT_TOKEN_TTL, MintError};

use super::AppState;
use super::body::admin_json_body;
use super::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintBody {
    access: Access,
    ttl_secs: Option<u64>,
}

/// The room named in a path, or 400 `invalid_room`.
pub(crate) fn room_name(room: &str) -> Result<RoomName, ApiError> {
    RoomName::parse(room)
        .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "invalid_room", error.to_string()))
}

pub(crate) async fn mint_token(
    State(state): State<AppState>,
    Path(room): Path<String>,
    body: Body,
) -> Response {
    let room = match room_name(&room) {
        Ok(room) => room,
        Err(refusal) => return refusal.into_response(),
    };
    let body: MintBody = match admin_json_body(body).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    let ttl = body.ttl_secs.map_or(DEFAULT_TOKEN_TTL, Duration::from_secs);
    match state.room_tokens.mint(room, body.access, ttl) {
        Ok(minted) => {
            tracing::info!(room = %minted.room, id = %minted.id, access = ?minted.access, "room token minted");
            (StatusCode::CREATED, axum::Json(minted)).into_response()
        }
        Err(error @ MintError::Ttl) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_ttl", error.to_string()).into_response()
        }
        Err(error @ MintError::TooMany) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_tokens",
            error.to_string(),
        )
        .into_response(),
    }
}

pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    if state.room_tokens.revoke(&id) {
        tracing::info!(%id, "room token revoked");
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_token",
            "no live room token has this id",
        )
        .into_response()
    }
}
