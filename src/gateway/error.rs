//! The one error shape every HTTP answer uses: a status and `{"error":{"code","message"}}`.
//! [`json_errors`] holds every route to it, including the plain-text rejections of the
//! framework's own extractors.

use axum::Json;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use troupe_actors::{ErrorCode, MessageError, TurnError};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// `503 shutting_down`: the node takes nothing new while it stops.
    pub(crate) fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the node is shutting down",
        )
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<MessageError> for ApiError {
    fn from(error: MessageError) -> Self {
        let (status, code) = match &error {
            MessageError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            MessageError::UnknownContentType(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unknown_content_type")
            }
            MessageError::UnsupportedContentType(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unsupported_content_type")
            }
            MessageError::EmptyPayload
            | MessageError::InvalidId { .. }
            | MessageError::MissingField(_)
            | MessageError::ReservedMetadata(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_message")
            }
        };
        Self::new(status, code, error.to_string())
    }
}

impl From<TurnError> for ApiError {
    fn from(error: TurnError) -> Self {
        let status = match error.code {
            ErrorCode::InvalidMessage => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedContentType => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ProviderError
            | ErrorCode::ProviderUnauthorized
            | ErrorCode::ToolRoundsExceeded => StatusCode::BAD_GATEWAY,
            ErrorCode::ProviderTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Busy => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ProviderRateLimited | ErrorCode::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::SessionFailed | ErrorCode::StorageError | ErrorCode::Internal => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self::new(status, error.code.as_str(), error.message)
    }
}

/// A JSON body that did not parse: syntax is 400, a well-formed body of the wrong shape 422.
pub(crate) fn json_error(error: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {error}"),
        ),
        Category::Data => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_message",
            format!("the body has the wrong shape: {error}"),
        ),
    }
}

/// The code of an error answer that came without one.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::UPGRADE_REQUIRED => "upgrade_required",
        status if status.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// Largest plain-text error body carried over as the message.
const MAX_PLAIN_ERROR_BYTES: usize = 4096;

/// Middleware: an error answer that is not JSON (axum's rejections write plain text: a bad
/// percent-escape in a path, a failed upgrade) is rewritten as the JSON error, its text
/// kept as the message.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let body = ApiError::new(status, code_of(status), message).body();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}
