//! The canvas's REST routes (owner only): the board as JSON, patches for automations that
//! do not speak Yjs, deleting a room, and minting and revoking room tokens.
//! - `GET /api/v1/canvas` → `{"rooms": [{"room", "clients", "bytes", "updated_at_ms"}]}`,
//!   every stored room and every room open here, by name;
//! - `GET /api/v1/canvas/{room}` → `{"room", "items": {id: {field: value}}}`;
//! - `PATCH /api/v1/canvas/{room}/items` `{"add", "update", "delete"}` → `{"added": [ids]}`,
//!   applied as one transaction that every connected client receives;
//! - `DELETE /api/v1/canvas/{room}` → 204, closing the room's connections; 404 when nothing
//!   was stored;
//! - `POST /api/v1/canvas/{room}/tokens` `{"access": "read"|"write", "ttl_secs"?}` → 201
//!   `{"id", "token", "room", "access", "expires_at"}`;
//! - `DELETE /api/v1/canvas/tokens/{id}` → 204, and the token's connections close; 404 when
//!   no live token has that id.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use troupe_canvas::items::{ItemError, ItemsPatch};
use troupe_canvas::room::PatchError;
use troupe_canvas::tokens::{Access, DEFAULT_TOKEN_TTL, MintError};
use troupe_canvas::{CanvasError, RoomName};

use super::AppState;
use super::body::{admin_json_body, read_body};
use super::error::{ApiCode, ApiError};

pub(crate) async fn list(State(state): State<AppState>) -> Response {
    match state.canvas.list().await {
        Ok(rooms) => axum::Json(json!({"rooms": rooms})).into_response(),
        Err(error) => canvas_error(&error).into_response(),
    }
}

pub(crate) async fn items(State(state): State<AppState>, RoomPath(room): RoomPath) -> Response {
    match state.canvas.items(&room).await {
        Ok(items) => axum::Json(json!({"room": room, "items": items})).into_response(),
        Err(error) => canvas_error(&error).into_response(),
    }
}

pub(crate) async fn patch_items(
    State(state): State<AppState>,
    RoomPath(room): RoomPath,
    body: Body,
) -> Response {
    let limit = state.canvas.settings().limits.max_update_bytes;
    let patch: ItemsPatch = match read_body(body, limit).await.and_then(|bytes| {
        serde_json::from_slice(&bytes).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ApiCode::InvalidJson,
                format!("the body is not a patch: {error}"),
            )
        })
    }) {
        Ok(patch) => patch,
        Err(refusal) => return refusal.into_response(),
    };
    match state.canvas.patch(&room, patch, state.canvas.api()).await {
        Ok(added) => axum::Json(json!({"added": added})).into_response(),
        Err(error) => canvas_error(&error).into_response(),
    }
}

pub(crate) async fn delete_room(
    State(state): State<AppState>,
    RoomPath(room): RoomPath,
) -> Response {
    match state.canvas.delete(&room).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => ApiError::new(
            StatusCode::NOT_FOUND,
            ApiCode::UnknownRoom,
            format!("nothing is stored for room `{room}`"),
        )
        .into_response(),
        Err(error) => canvas_error(&error).into_response(),
    }
}

/// The answer for a canvas failure.
fn canvas_error(error: &CanvasError) -> ApiError {
    let (status, code) = match error {
        CanvasError::Patch(PatchError::Item(ItemError::UnknownItem(_))) => {
            (StatusCode::NOT_FOUND, ApiCode::UnknownItem)
        }
        CanvasError::Patch(PatchError::Item(ItemError::Exists(_))) => {
            (StatusCode::CONFLICT, ApiCode::ItemExists)
        }
        CanvasError::Patch(PatchError::Item(_)) => (StatusCode::BAD_REQUEST, ApiCode::InvalidPatch),
        CanvasError::Patch(PatchError::Protocol(_)) => {
            (StatusCode::PAYLOAD_TOO_LARGE, ApiCode::DocumentTooLarge)
        }
        CanvasError::Patch(PatchError::Storage) | CanvasError::Store(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, ApiCode::StorageError)
        }
        CanvasError::NotRunning | CanvasError::Open(_) | CanvasError::RoomClosed => {
            (StatusCode::SERVICE_UNAVAILABLE, ApiCode::CanvasUnavailable)
        }
    };
    ApiError::new(status, code, error.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintBody {
    access: Access,
    ttl_secs: Option<u64>,
}

/// The `{room}` of a route's path, validated: 400 `invalid_room` otherwise.
pub(crate) struct RoomPath(RoomName);

impl<S: Send + Sync> FromRequestParts<S> for RoomPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(room) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ApiCode::InvalidRoom,
                    error.body_text(),
                )
            })?;
        RoomName::parse(&room).map(Self).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ApiCode::InvalidRoom,
                error.to_string(),
            )
        })
    }
}

pub(crate) async fn mint_token(
    State(state): State<AppState>,
    RoomPath(room): RoomPath,
    body: Body,
) -> Response {
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
        Err(error @ MintError::Ttl) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ApiCode::InvalidTtl,
            error.to_string(),
        )
        .into_response(),
        Err(error @ MintError::TooMany) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ApiCode::TooManyTokens,
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
            ApiCode::UnknownToken,
            "no live room token has this id",
        )
        .into_response()
    }
}
