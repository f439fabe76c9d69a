//! The owner's view of long-term memory, per person (`person:<name>` for linked accounts,
//! else `platform:sender_id`):
//!
//! - `GET /api/v1/memory/{person}`: every memory, oldest first;
//! - `DELETE /api/v1/memory/{person}/{id}`: forgets one;
//! - `DELETE /api/v1/memory/{person}?about=<text>`: forgets every memory that says it (any
//!   case) or means it closely. Forgotten memories are deleted from the store for good.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use troupe_actors::bridge::identity::validate_member;
use troupe_actors::memory::{Memories, MemoryError, MemoryId, MemoryView};

use super::AppState;
use super::error::{ApiCode, ApiError};

fn memories(state: &AppState) -> Result<&Memories, ApiError> {
    state.memories.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiCode::ModelUnavailable,
            "this node keeps no long-term memory: it needs the local embedding model (see GET /api/v1/models)",
        )
    })
}

fn person_of(path: &str) -> Result<String, ApiError> {
    validate_member(path)
        .map(|()| path.to_owned())
        .map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ApiCode::InvalidRequest,
                error.to_string(),
            )
        })
}

impl From<MemoryError> for ApiError {
    fn from(error: MemoryError) -> Self {
        match error {
            MemoryError::Invalid(reason) => {
                Self::new(StatusCode::BAD_REQUEST, ApiCode::InvalidRequest, reason)
            }
            MemoryError::Embedding(error) => error.into(),
            MemoryError::Store(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiCode::StorageError,
                error.to_string(),
            ),
        }
    }
}

/// `GET /api/v1/memory/{person}`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Path(person): Path<String>,
) -> Result<Response, ApiError> {
    let person = person_of(&person)?;
    let all = memories(&state)?.list(&person).await?;
    let listed: Vec<MemoryView<'_>> = all.iter().map(|memory| memory.view()).collect();
    Ok(
        axum::Json(json!({"person": person, "count": listed.len(), "memories": listed}))
            .into_response(),
    )
}

/// `DELETE /api/v1/memory/{person}?about=…`.
pub(crate) async fn forget_about(
    State(state): State<AppState>,
    Path(person): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let person = person_of(&person)?;
    let about = query.get("about").ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ApiCode::InvalidQuery,
            "say what to forget: ?about=<text>",
        )
    })?;
    let forgotten = memories(&state)?.forget_about(&person, about).await?;
    let listed: Vec<MemoryView<'_>> = forgotten.iter().map(|memory| memory.view()).collect();
    Ok(axum::Json(json!({"person": person, "forgotten": listed})).into_response())
}

/// `DELETE /api/v1/memory/{person}/{id}`.
pub(crate) async fn forget(
    State(state): State<AppState>,
    Path((person, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let person = person_of(&person)?;
    let parsed = MemoryId::parse(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ApiCode::InvalidRequest,
            "a memory id is m- and 16 hex digits",
        )
    })?;
    if memories(&state)?.forget(&person, &[parsed]).await? == 0 {
        return Err(ApiError::not_found(format!("{person} has no memory {id}")));
    }
    Ok(axum::Json(json!({"person": person, "forgotten": [id]})).into_response())
}
