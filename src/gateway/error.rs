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

/// Every code a client can see in `{"error":{"code"}}` or an `error` frame: one enum,
/// serialised to the snake-case strings the protocol documents. The session's own codes
/// ([`ErrorCode`]) map into it one to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ApiCode {
    AudioTooFast,
    AudioTooLong,
    BadRequest,
    BudgetExceeded,
    Busy,
    CanvasUnavailable,
    ConversationNotAllowed,
    DocumentTooLarge,
    HostNotAllowed,
    IncompleteBody,
    Internal,
    InvalidFrame,
    InvalidIdentity,
    InvalidJson,
    InvalidMessage,
    InvalidPatch,
    InvalidQuery,
    InvalidRequest,
    InvalidRoom,
    InvalidRoomToken,
    InvalidSessionKey,
    InvalidTtl,
    InvalidWorkflow,
    ItemExists,
    MethodNotAllowed,
    ModelFailed,
    ModelUnavailable,
    NotFound,
    NotLinked,
    NotPaired,
    NotReady,
    OriginNotAllowed,
    OwnerOnly,
    PayloadTooLarge,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnauthorized,
    RequestTimeout,
    SenderNotAllowed,
    ServerBusy,
    SessionFailed,
    SetupNotOffered,
    SpeechFailed,
    ShuttingDown,
    StorageError,
    StorageFailing,
    RunEnded,
    Stopped,
    TooManyFailures,
    TooManyImages,
    TooManyInFlight,
    TooManyTokens,
    ToolRoundsExceeded,
    TurnTokenLimit,
    Unauthorized,
    UnknownCode,
    UnknownContentType,
    UnknownItem,
    UnknownRoom,
    UnknownRun,
    UnknownToken,
    UnknownWorkflow,
    UnsupportedContentType,
    UnsupportedMediaType,
    UpgradeRequired,
    UploadsUnavailable,
    VoiceUnavailable,
    WorkflowInUse,
    WorkflowsDisabled,
}

impl From<ErrorCode> for ApiCode {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::InvalidMessage => Self::InvalidMessage,
            ErrorCode::PayloadTooLarge => Self::PayloadTooLarge,
            ErrorCode::UnsupportedContentType => Self::UnsupportedContentType,
            ErrorCode::ProviderError => Self::ProviderError,
            ErrorCode::ProviderTimeout => Self::ProviderTimeout,
            ErrorCode::ProviderRateLimited => Self::ProviderRateLimited,
            ErrorCode::ProviderUnauthorized => Self::ProviderUnauthorized,
            ErrorCode::SessionFailed => Self::SessionFailed,
            ErrorCode::ShuttingDown => Self::ShuttingDown,
            ErrorCode::StorageError => Self::StorageError,
            ErrorCode::ToolRoundsExceeded => Self::ToolRoundsExceeded,
            ErrorCode::TurnTokenLimit => Self::TurnTokenLimit,
            ErrorCode::BudgetExceeded => Self::BudgetExceeded,
            ErrorCode::Busy => Self::Busy,
            ErrorCode::Stopped => Self::Stopped,
            ErrorCode::Internal => Self::Internal,
        }
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: ApiCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ApiCode, message: impl Into<String>) -> Self {
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
            ApiCode::ShuttingDown,
            "the node is shutting down",
        )
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ApiCode::Unauthorized,
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ApiCode::NotFound, message)
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
                (StatusCode::PAYLOAD_TOO_LARGE, ApiCode::PayloadTooLarge)
            }
            MessageError::TooManyImages { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, ApiCode::TooManyImages)
            }
            MessageError::UnknownContentType(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ApiCode::UnknownContentType,
            ),
            MessageError::UnsupportedContentType(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ApiCode::UnsupportedContentType,
            ),
            MessageError::EmptyPayload
            | MessageError::InvalidId { .. }
            | MessageError::MissingField(_)
            | MessageError::ReservedMetadata(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ApiCode::InvalidMessage)
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
            | ErrorCode::ToolRoundsExceeded
            | ErrorCode::TurnTokenLimit => StatusCode::BAD_GATEWAY,
            ErrorCode::ProviderTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Busy | ErrorCode::BudgetExceeded => StatusCode::TOO_MANY_REQUESTS,
            // The person's own stop: the request they made ended as they asked.
            ErrorCode::Stopped => StatusCode::CONFLICT,
            ErrorCode::ProviderRateLimited | ErrorCode::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::SessionFailed | ErrorCode::StorageError | ErrorCode::Internal => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self::new(status, error.code.into(), error.message)
    }
}

/// A JSON body that did not parse: syntax is 400, a well-formed body of the wrong shape 422.
pub(crate) fn json_error(error: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            StatusCode::BAD_REQUEST,
            ApiCode::InvalidJson,
            format!("the body is not valid JSON: {error}"),
        ),
        Category::Data => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ApiCode::InvalidMessage,
            format!("the body has the wrong shape: {error}"),
        ),
    }
}

/// The code of an error answer that came without one.
fn code_of(status: StatusCode) -> ApiCode {
    match status {
        StatusCode::NOT_FOUND => ApiCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiCode::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ApiCode::RequestTimeout,
        StatusCode::PAYLOAD_TOO_LARGE => ApiCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiCode::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ApiCode::InvalidRequest,
        StatusCode::UPGRADE_REQUIRED => ApiCode::UpgradeRequired,
        status if status.is_server_error() => ApiCode::Internal,
        _ => ApiCode::BadRequest,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_to_the_documented_snake_case_strings() {
        for (code, text) in [
            (ApiCode::TooManyInFlight, "too_many_in_flight"),
            (ApiCode::InvalidRoomToken, "invalid_room_token"),
            (ApiCode::ServerBusy, "server_busy"),
            (ApiCode::NotFound, "not_found"),
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), text);
        }
        let body = ApiError::new(StatusCode::NOT_FOUND, ApiCode::UnknownRoom, "gone").body();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "unknown_room", "message": "gone"}})
        );
    }

    #[test]
    fn every_turn_error_code_keeps_its_string_at_the_gateway() {
        for code in [
            ErrorCode::InvalidMessage,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedContentType,
            ErrorCode::ProviderError,
            ErrorCode::ProviderTimeout,
            ErrorCode::ProviderRateLimited,
            ErrorCode::ProviderUnauthorized,
            ErrorCode::SessionFailed,
            ErrorCode::ShuttingDown,
            ErrorCode::StorageError,
            ErrorCode::ToolRoundsExceeded,
            ErrorCode::TurnTokenLimit,
            ErrorCode::BudgetExceeded,
            ErrorCode::Busy,
            ErrorCode::Stopped,
            ErrorCode::Internal,
        ] {
            assert_eq!(
                serde_json::to_value(ApiCode::from(code)).unwrap(),
                code.as_str()
            );
        }
    }
}
