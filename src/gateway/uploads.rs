//! Pictures uploaded into a conversation, for vision models (see
//! `troupe_actors::uploads`):
//!
//! - `POST /api/v1/conversations/{conversation_id}/uploads?platform=`: the body is the
//!   picture (PNG, JPEG, GIF or WebP, read from its bytes), at most `uploads.max_image_bytes`;
//!   `201 {"upload_id", "media_type", "bytes"}`. A message then shows it with an attachment
//!   `{"content_type": "image", "upload_id"}`.
//! - `GET /api/v1/conversations/{conversation_id}/uploads/{upload_id}?platform=`: the
//!   picture, for the page that shows the conversation.
//!
//! Both under the conversations' rule of who may ([`OwnedConversation`]).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use troupe_actors::uploads::{UploadError, UploadId, UploadStore};

use super::AppState;
use super::body::read_body;
use super::conversations::OwnedConversation;
use super::error::{ApiCode, ApiError};

/// `POST …/uploads`.
pub(crate) async fn upload(
    State(state): State<AppState>,
    OwnedConversation(key): OwnedConversation,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let uploads = store(&state)?;
    let declared = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/octet-stream");
    if !declared.starts_with("image/") && !declared.starts_with("application/octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiCode::UnsupportedMediaType,
            format!("uploads are pictures (PNG, JPEG, GIF or WebP), not `{declared}`"),
        ));
    }
    let bytes = read_body(body, uploads.max_bytes()).await?;
    let stored = uploads
        .put(&key, bytes.clone())
        .await
        .map_err(ApiError::from)?;
    let answer = serde_json::json!({
        "upload_id": stored.upload,
        "media_type": stored.media_type,
        "bytes": bytes.len(),
    });
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET …/uploads/{upload_id}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    OwnedConversation(key): OwnedConversation,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let uploads = store(&state)?;
    let asked = params.get("upload_id").map_or("", String::as_str);
    let upload = UploadId::parse(asked).map_err(|error| {
        ApiError::new(StatusCode::NOT_FOUND, ApiCode::NotFound, error.to_string())
    })?;
    let (media_type, bytes) = uploads.get(&key, &upload).await.map_err(ApiError::from)?;
    let headers = [
        (CONTENT_TYPE, media_type.mime()),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // The id is the picture's hash: what it names never changes.
        (CACHE_CONTROL, "private, max-age=31536000, immutable"),
    ];
    Ok((headers, bytes).into_response())
}

fn store(state: &AppState) -> Result<Arc<dyn UploadStore>, ApiError> {
    state.node.uploads().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            ApiCode::UploadsUnavailable,
            "this node does not take uploads (a cluster does not keep pictures yet)",
        )
    })
}

impl From<UploadError> for ApiError {
    fn from(error: UploadError) -> Self {
        let (status, code) = match &error {
            UploadError::NotAnImage => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ApiCode::UnsupportedMediaType,
            ),
            UploadError::TooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, ApiCode::PayloadTooLarge)
            }
            UploadError::NotFound(_) => (StatusCode::NOT_FOUND, ApiCode::NotFound),
            UploadError::Io(_) | UploadError::Stopped(_) | UploadError::Remote(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, ApiCode::StorageError)
            }
            UploadError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, ApiCode::UploadsUnavailable)
            }
        };
        Self::new(status, code, error.to_string())
    }
}
