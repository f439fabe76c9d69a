//! The OpenAI-compatible facade: `POST /v1/chat/completions` (streaming and not) and
//! `GET /v1/models`, so any OpenAI SDK can talk to the assistant.
//!
//! With `user` set, the conversation is the session `openai:<user>`, which keeps its
//! memory, and the last user message is the input. Without it the request is stateless:
//! its messages are the whole history.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;
use troupe_actors::message::{DraftDefaults, InboundDraft, new_message_id, unix_now};
use troupe_actors::turn::delta_sink;
use troupe_actors::{
    ChatMessage, ChatRequest, ContentType, OutboundReply, Role, TurnEvent, TurnEventReceiver,
    Usage, turn_channel,
};

use super::callers::Caller;
use super::error::{ApiCode, ApiError};
use super::rest::{body_limit, read_json_body};
use super::turns::{final_reply, header_traceparent, session_lost, turn_span};
use super::{AppState, record_gateway_latency};

/// The model id the facade presents.
const ASSISTANT_MODEL: &str = "troupe";

/// The part of a Chat Completions request we use; other parameters are accepted and
/// ignored, as SDKs send many.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<FacadeMessage>,
    #[serde(default)]
    stream: bool,
    /// `stream_options.include_usage`: a last chunk carries the request's usage.
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct FacadeMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

impl FacadeMessage {
    /// Text of a string content or of the `text` parts of an array content.
    fn text(&self) -> String {
        match &self.content {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter(|part| part["type"] == "text")
                .filter_map(|part| part["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ApiCode::InvalidRequest,
        message,
    )
}

pub(crate) async fn list_models(State(state): State<AppState>) -> Response {
    let owner = state
        .node
        .default_provider()
        .map_or_else(|| "troupe".to_owned(), |info| info.kind.clone());
    axum::Json(json!({"object": "list", "data": [
        {"id": ASSISTANT_MODEL, "object": "model", "created": 0, "owned_by": owner}
    ]}))
    .into_response()
}

pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let request: CompletionRequest = match read_json_body(&headers, body, body_limit(&state)).await
    {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    if request.messages.is_empty() {
        return invalid("`messages` must not be empty").into_response();
    }
    let model = request
        .model
        .clone()
        .unwrap_or_else(|| ASSISTANT_MODEL.into());
    let span = turn_span("openai", header_traceparent(&headers));
    let user = match &request.user {
        Some(user) => caller.sender_for(&state.settings.senders, Some(user), Some(user)),
        None => Ok(None),
    };
    let user = match user {
        Ok(user) => user,
        Err(refusal) => return refusal.into_response(),
    };
    let events = match &user {
        Some(user) => {
            session_turn(&state, user, &request)
                .instrument(span.clone())
                .await
        }
        None => span.in_scope(|| stateless_turn(&state, &caller, &request)),
    };
    let events = match events {
        Ok(events) => events,
        Err(error) => return error.into_response(),
    };
    if request.stream {
        // Holding the span in the stream ends it when the stream does.
        let include_usage = request
            .stream_options
            .as_ref()
            .is_some_and(|options| options.include_usage);
        let stream = chunk_stream(events, model, started, include_usage).inspect(move |_| {
            let _ = &span;
        });
        return Sse::new(stream).into_response();
    }
    match final_reply(events).await {
        Ok(answered) => {
            record_gateway_latency(started, answered.model_latency);
            axum::Json(completion_body(&answered.reply, &model, answered.usage)).into_response()
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// With `user`: the last user message goes to the session `openai:<user>`.
async fn session_turn(
    state: &AppState,
    user: &str,
    request: &CompletionRequest,
) -> Result<TurnEventReceiver, ApiError> {
    let draft = session_draft(user, request)?;
    let defaults = DraftDefaults {
        platform: "openai",
        sender_id: None,
        now_unix_secs: unix_now(),
    };
    let message = draft
        .validate(&defaults, state.settings.limits)
        .map_err(ApiError::from)?;
    tracing::Span::current().record("message_id", message.id());
    let submission = state.ingress.submit(message).map_err(ApiError::from)?;
    submission.accepted.await.map_err(ApiError::from)?;
    Ok(submission.events)
}

/// Without `user`: the request's messages are the history; no session remembers it.
fn stateless_turn(
    state: &AppState,
    caller: &Caller,
    request: &CompletionRequest,
) -> Result<TurnEventReceiver, ApiError> {
    let request = chat_request(request, state.settings.limits.max_payload_bytes)?;
    // Slots are shared between requesters: a sender's own token is that sender, and
    // every other stateless caller shares one turn.
    let requester: Arc<str> = match caller {
        Caller::Sender(sender) => format!("openai:{sender}").into(),
        Caller::Owner => "openai:stateless".into(),
    };
    let (events, receiver) = turn_channel();
    let node = state.node.clone();
    let id = new_message_id();
    tokio::spawn(async move {
        let deltas = delta_sink(&events, &id);
        let started = Instant::now();
        let event = match node.complete(request, deltas, requester).await {
            Ok(completion) => TurnEvent::Reply {
                usage: completion.usage,
                reply: Box::new(OutboundReply {
                    id: format!("r-{}", uuid::Uuid::new_v4().simple()),
                    in_reply_to: id,
                    platform: "openai".into(),
                    recipient_id: "anonymous".into(),
                    conversation_id: "stateless".into(),
                    content_type: ContentType::Text,
                    payload: completion.text,
                    timestamp: unix_now(),
                    awaiting: None,
                    stopped: false,
                }),
                model_latency: started.elapsed(),
            },
            Err(error) => TurnEvent::Failed {
                in_reply_to: id,
                error,
            },
        };
        let _ = events.send(event);
    });
    Ok(receiver)
}

/// The draft of a turn in the session `openai:<user>`: the last user message.
pub(crate) fn session_draft(
    user: &str,
    request: &CompletionRequest,
) -> Result<InboundDraft, ApiError> {
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|message| message.role == "user")
        .ok_or_else(|| invalid("with `user` set, `messages` must hold a user message"))?;
    Ok(InboundDraft {
        platform: Some("openai".into()),
        sender_id: Some(user.to_owned()),
        payload: Some(last_user.text()),
        ..InboundDraft::default()
    })
}

/// The model request of a stateless turn: the request's messages are the history, and at
/// most four payloads' worth of text (`limit` is the payload limit).
pub(crate) fn chat_request(
    request: &CompletionRequest,
    limit: usize,
) -> Result<ChatRequest, ApiError> {
    let mut system_parts = Vec::new();
    let mut messages = Vec::new();
    let mut size = 0;
    for message in &request.messages {
        let text = message.text();
        size += text.len();
        let role = match message.role.as_str() {
            "system" | "developer" => {
                system_parts.push(text);
                continue;
            }
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => return Err(invalid(format!("unknown role `{other}`"))),
        };
        let mut chat_message = ChatMessage::new(role, text);
        chat_message.tool_call_id.clone_from(&message.tool_call_id);
        messages.push(chat_message);
    }
    if size > limit * 4 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ApiCode::PayloadTooLarge,
            format!(
                "the messages hold {size} bytes of text, more than {}",
                limit * 4
            ),
        ));
    }
    Ok(ChatRequest {
        system_prompt: (!system_parts.is_empty()).then(|| system_parts.join("\n\n").into()),
        messages,
        tools: Default::default(),
        stream: true,
    })
}

fn completion_id(reply: &OutboundReply) -> String {
    format!("chatcmpl-{}", reply.id.trim_start_matches("r-"))
}

/// `usage` as OpenAI writes it (zeros when the model reported none).
fn usage_json(usage: Option<Usage>) -> Value {
    let usage = usage.unwrap_or_default();
    json!({"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens(),
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens}})
}

fn completion_body(reply: &OutboundReply, model: &str, usage: Option<Usage>) -> Value {
    json!({
        "id": completion_id(reply),
        "object": "chat.completion",
        "created": reply.timestamp,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.payload},
            "finish_reason": "stop", "logprobs": null}],
        "usage": usage_json(usage),
    })
}

fn chunk(id: &str, model: &str, delta: &Value, finish_reason: Option<&str>) -> Event {
    let body = json!({"id": id, "object": "chat.completion.chunk", "created": unix_now(), "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null}]});
    Event::default().data(body.to_string())
}

/// The chunk `stream_options.include_usage` asks for: no choices, the request's usage.
fn usage_chunk(id: &str, model: &str, usage: Option<Usage>) -> Event {
    let body = json!({"id": id, "object": "chat.completion.chunk", "created": unix_now(),
        "model": model, "choices": [], "usage": usage_json(usage)});
    Event::default().data(body.to_string())
}

/// The stream the OpenAI SDKs expect: a role chunk, content chunks, a chunk with
/// `finish_reason`, then `data: [DONE]`. A failure becomes a chunk holding `error`.
fn chunk_stream(
    events: TurnEventReceiver,
    model: String,
    started: Instant,
    include_usage: bool,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let opening = chunk(
        &id,
        &model,
        &json!({"role": "assistant", "content": ""}),
        None,
    );
    let body = futures_util::stream::unfold(Some(events), move |events| {
        let (id, model) = (id.clone(), model.clone());
        async move {
            let mut events = events?;
            let Some(event) = events.recv().await else {
                let lost = session_lost();
                let error = json!({"error": {"code": lost.code, "message": lost.message}});
                return Some((vec![Event::default().data(error.to_string())], None));
            };
            let out = match &event {
                TurnEvent::Delta { text, .. } => {
                    vec![chunk(&id, &model, &json!({"content": text}), None)]
                }
                TurnEvent::Reply {
                    model_latency,
                    usage,
                    ..
                } => {
                    record_gateway_latency(started, *model_latency);
                    let mut last = vec![chunk(&id, &model, &json!({}), Some("stop"))];
                    if include_usage {
                        last.push(usage_chunk(&id, &model, *usage));
                    }
                    last.push(Event::default().data("[DONE]"));
                    last
                }
                TurnEvent::Failed { error, .. } => {
                    let error = json!({"error": {"code": error.code, "message": error.message}});
                    vec![Event::default().data(error.to_string())]
                }
                // Troupe runs the tools itself; an OpenAI client sees only the answer.
                TurnEvent::ToolCall { .. } | TurnEvent::ToolResult { .. } => Vec::new(),
            };
            let next = (!event.is_final()).then_some(events);
            Some((out, next))
        }
    });
    futures_util::stream::iter([opening])
        .chain(body.flat_map(futures_util::stream::iter))
        .map(Ok)
}
