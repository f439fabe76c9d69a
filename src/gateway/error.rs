//! The one error shape every HTTP answer uses: a status and `{"error":{"code","message"}}`.

use axum::Json;
use axum::http::StatusCode;
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
