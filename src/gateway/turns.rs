//! Helpers for a turn at the gateway: its span (continuing the client's trace) and the
//! consumption of its events (deltas, then one final event).

use std::time::Duration;

use axum::http::HeaderMap;
use troupe_actors::trace::TRACEPARENT_HEADER;
use troupe_actors::{
    ErrorCode, OutboundReply, TraceParent, TurnError, TurnEvent, TurnEventReceiver, Usage,
};

/// The span of one turn at the gateway. A valid client `traceparent` makes it part of the
/// client's trace; an invalid one is ignored and the turn starts a trace of its own.
pub(crate) fn turn_span(access: &'static str, traceparent: Option<&str>) -> tracing::Span {
    let span = tracing::debug_span!(
        "gateway_turn",
        otel.kind = "server",
        access,
        message_id = tracing::field::Empty,
    );
    if let Some(parent) = traceparent.and_then(TraceParent::parse) {
        parent.adopt(&span);
    }
    span
}

/// The `traceparent` header of a request, if any.
pub(crate) fn header_traceparent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(TRACEPARENT_HEADER)
        .and_then(|value| value.to_str().ok())
}

/// The error when a turn's channel closes without a final event (its session died).
pub(crate) fn session_lost() -> TurnError {
    TurnError::new(
        ErrorCode::SessionFailed,
        "the session stopped before replying; send the message again",
    )
}

/// A turn's reply, with the model's time and the tokens it used.
pub(crate) struct FinalReply {
    pub(crate) reply: OutboundReply,
    pub(crate) model_latency: Duration,
    pub(crate) usage: Option<Usage>,
}

/// Waits for the final event, ignoring deltas.
pub(crate) async fn final_reply(mut events: TurnEventReceiver) -> Result<FinalReply, TurnError> {
    while let Some(event) = events.recv().await {
        match event {
            TurnEvent::Delta { .. } | TurnEvent::ToolCall { .. } | TurnEvent::ToolResult { .. } => {
            }
            TurnEvent::Reply {
                reply,
                model_latency,
                usage,
            } => {
                return Ok(FinalReply {
                    reply: *reply,
                    model_latency,
                    usage,
                });
            }
            TurnEvent::Failed { error, .. } => return Err(error),
        }
    }
    Err(session_lost())
}

/// A tool event as the WebSocket and SSE streams show it: `tool_call` (name and arguments)
/// or `tool_result` (`ok` and the result, or the error); `None` for other events.
pub(crate) fn tool_event_json(event: &TurnEvent) -> Option<(&'static str, serde_json::Value)> {
    // What the model wrote, as JSON when it is JSON, else as text.
    let json_or_text = |text: &str| {
        serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
    };
    match event {
        TurnEvent::ToolCall {
            in_reply_to,
            call_id,
            name,
            arguments,
        } => Some((
            "tool_call",
            serde_json::json!({"type": "tool_call", "in_reply_to": in_reply_to,
                "call_id": call_id, "name": name, "arguments": json_or_text(arguments)}),
        )),
        TurnEvent::ToolResult {
            in_reply_to,
            call_id,
            name,
            ok,
            content,
        } => Some((
            "tool_result",
            serde_json::json!({"type": "tool_result", "in_reply_to": in_reply_to,
                "call_id": call_id, "name": name, "ok": ok, "result": json_or_text(content)}),
        )),
        _ => None,
    }
}
