//! The REST API: `POST /api/v1/messages` (JSON answer, or SSE with
//! `Accept: text/event-stream`) and the sessions API.

use std::convert::Infallible;
use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use troupe_actors::message::{DraftDefaults, InboundDraft, unix_now};
use troupe_actors::{SessionKey, TurnEvent, TurnEventReceiver};

use super::callers::{Caller, check_platform};
use super::error::{ApiCode, ApiError, json_error};
use super::turns::{final_reply, header_traceparent, session_lost, turn_span};
use super::{AppState, record_gateway_latency};

/// Largest page of `GET /api/v1/sessions`.
const MAX_SESSION_PAGE: usize = 1000;

/// Reads a JSON body within `limit` bytes, with our errors for every way it can be wrong.
pub(crate) async fn read_json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let is_json = content_type
        .split(';')
        .next()
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiCode::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    let bytes = super::body::read_body(body, limit).await?;
    serde_json::from_slice(&bytes).map_err(|error| json_error(&error))
}

/// Room for JSON escaping and the other fields around the largest payload.
pub(crate) fn body_limit(state: &AppState) -> usize {
    state.settings.limits.max_payload_bytes * 6 + 64 * 1024
}

pub(crate) fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"))
}

pub(crate) async fn post_message(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut draft: InboundDraft = match read_json_body(&headers, body, body_limit(&state)).await {
        Ok(draft) => draft,
        Err(error) => return error.into_response(),
    };
    let sender = check_platform(draft.platform.as_deref(), "api").and_then(|()| {
        caller.sender_for(
            &state.settings.senders,
            draft.sender_id.as_deref(),
            draft.conversation_id.as_deref(),
        )
    });
    match sender {
        Ok(sender) => draft.sender_id = sender,
        Err(refusal) => return refusal.into_response(),
    }
    let defaults = DraftDefaults {
        platform: "api",
        sender_id: None,
        now_unix_secs: unix_now(),
    };
    let validated = draft
        .validate(&defaults, state.settings.limits)
        .and_then(|mut message| {
            super::linked::join_linked_person(&state, &mut message).map(|()| message)
        });
    let message = match validated {
        Ok(message) => message,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let span = turn_span("api", header_traceparent(&headers));
    span.record("message_id", message.id());
    let submission = match span.in_scope(|| state.ingress.submit(message)) {
        Ok(submission) => submission,
        Err(error) => return ApiError::from(error).into_response(),
    };
    // Answered only once the message is stored (in a cluster: in the JetStream inbox).
    if let Err(error) = submission.accepted.await {
        return ApiError::from(error).into_response();
    }
    let events = submission.events;
    if wants_event_stream(&headers) {
        return Sse::new(event_stream(events, started, span))
            .keep_alive(KeepAlive::default())
            .into_response();
    }
    match final_reply(events).await {
        Ok(answered) => {
            record_gateway_latency(started, answered.model_latency);
            axum::Json(json!({"reply": answered.reply})).into_response()
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `delta` events, then one `reply` or `error` event.
/// The turn's span lasts as long as the stream.
fn event_stream(
    events: TurnEventReceiver,
    started: Instant,
    span: tracing::Span,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(Some(events), move |events| async move {
        let mut events = events?;
        let Some(event) = events.recv().await else {
            let lost = session_lost();
            let data = json!({"type": "error", "code": lost.code, "message": lost.message});
            return Some((
                Ok(Event::default().event("error").data(data.to_string())),
                None,
            ));
        };
        let (name, data) = match &event {
            TurnEvent::Delta { in_reply_to, text } => (
                "delta",
                json!({"type": "delta", "in_reply_to": in_reply_to, "payload": text}),
            ),
            TurnEvent::Reply {
                reply,
                model_latency,
                ..
            } => {
                record_gateway_latency(started, *model_latency);
                let mut data = serde_json::to_value(reply).unwrap_or_default();
                data["type"] = json!("reply");
                ("reply", data)
            }
            TurnEvent::Failed { in_reply_to, error } => (
                "error",
                json!({"type": "error", "in_reply_to": in_reply_to, "code": error.code, "message": error.message}),
            ),
            TurnEvent::ToolCall { .. } | TurnEvent::ToolResult { .. } => {
                super::turns::tool_event_json(&event).unwrap_or_default()
            }
        };
        let next = (!event.is_final()).then_some(events);
        Some((
            Ok(Event::default().event(name).data(data.to_string())),
            next,
        ))
    })
    // Holding the span here ends it when the stream does.
    .inspect(move |_| {
        let _ = &span;
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

fn parse_key(text: &str) -> Result<SessionKey, ApiError> {
    SessionKey::parse(text).map_err(|reason| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ApiCode::InvalidSessionKey,
            reason.to_string(),
        )
    })
}

pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            ApiCode::InvalidQuery,
            "use ?after=<platform:conversation>&limit=<n>",
        )
        .into_response();
    };
    let after = match query.after.as_deref().map(parse_key).transpose() {
        Ok(after) => after,
        Err(error) => return error.into_response(),
    };
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_SESSION_PAGE);
    let stored = match state.node.store().list(after.as_ref(), limit).await {
        Ok(keys) => keys,
        Err(error) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiCode::StorageError,
                error.to_string(),
            )
            .into_response();
        }
    };
    let active: std::collections::HashSet<SessionKey> = state
        .node
        .active_sessions()
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    let sessions: Vec<_> = stored
        .iter()
        .map(|key| {
            json!({"key": key.to_string(), "platform": key.platform(),
            "conversation_id": key.conversation_id(), "active": active.contains(key)})
        })
        .collect();
    let next_after = (stored.len() == limit)
        .then(|| stored.last().map(ToString::to_string))
        .flatten();
    axum::Json(json!({"sessions": sessions, "next_after": next_after, "total": state.node.store().count()}))
        .into_response()
}

/// A `{platform}:{conversation_id}` path segment, parsed, or a 400 `invalid_session_key`.
pub(crate) struct SessionKeyPath(SessionKey);

impl<S: Send + Sync> FromRequestParts<S> for SessionKeyPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ApiCode::InvalidSessionKey,
                    rejection.body_text(),
                )
            })?;
        parse_key(&text).map(Self)
    }
}

pub(crate) async fn get_session(
    State(state): State<AppState>,
    SessionKeyPath(key): SessionKeyPath,
) -> Response {
    match state.ingress.history(key.clone()).await {
        Ok(Some(view)) => axum::Json(view).into_response(),
        Ok(None) => ApiError::not_found(format!("no session {key}")).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

pub(crate) async fn delete_session(
    State(state): State<AppState>,
    SessionKeyPath(key): SessionKeyPath,
) -> Response {
    match state.ingress.reset(key.clone()).await {
        Ok(true) => axum::Json(json!({"key": key.to_string(), "reset": true})).into_response(),
        Ok(false) => ApiError::not_found(format!("no session {key}")).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}
