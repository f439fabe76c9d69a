//! Socket Mode: `apps.connections.open` (with the app-level token) gives a WebSocket URL;
//! Slack sends `hello`, then envelopes (`events_api`, `slash_commands`, `interactive`)
//! that must be acknowledged with `{"envelope_id"}`, and `disconnect` when it wants us to
//! reconnect (a new URL each time). An event is acknowledged only once it is stored:
//! Slack redelivers what was not acknowledged.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use troupe_actors::bridge::{BridgeContext, BridgeError, BridgeErrorKind};

use super::SlackBridge;
use super::mapping::{self, EventBody};

/// How long a connection may stay silent before it is considered dead (Slack pings).
const SILENCE_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    envelope_id: Option<String>,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    reason: Option<String>,
}

fn transient(what: impl std::fmt::Display) -> BridgeError {
    BridgeError::new(
        BridgeErrorKind::Transient,
        format!("slack socket mode: {what}"),
    )
}

impl SlackBridge {
    /// Connects, serves one connection until Slack asks to reconnect, and repeats.
    pub(crate) async fn run_socket_mode(&self, context: &BridgeContext) -> Result<(), BridgeError> {
        let connector = crate::websocket::tls_connector()?;
        loop {
            let opened: Value = self.app_call("apps.connections.open").await?;
            let url = opened["url"]
                .as_str()
                .ok_or_else(|| transient("apps.connections.open gave no url"))?
                .to_owned();
            let socket = crate::websocket::connect(&url, &connector)
                .await
                .map_err(transient)?;
            let (mut sink, mut stream) = socket.split();
            loop {
                let next = tokio::select! {
                    () = context.shutdown.cancelled() => {
                        let _ = sink.close().await;
                        return Ok(());
                    }
                    next = tokio::time::timeout(SILENCE_LIMIT, stream.next()) => next,
                };
                let message = match next {
                    Err(_) => return Err(transient("no traffic for two minutes")),
                    Ok(None) => return Err(transient("the connection closed")),
                    Ok(Some(Err(error))) => return Err(transient(error)),
                    Ok(Some(Ok(message))) => message,
                };
                let text = match message {
                    Message::Text(text) => text,
                    Message::Ping(data) => {
                        sink.send(Message::Pong(data)).await.map_err(transient)?;
                        continue;
                    }
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) else {
                    tracing::warn!(bridge = %context.name, "slack sent a frame that cannot be read");
                    continue;
                };
                match frame.kind.as_str() {
                    "hello" => context.status.connected(),
                    "disconnect" => {
                        tracing::info!(bridge = %context.name, reason = ?frame.reason, "slack asked to reconnect");
                        break;
                    }
                    _ => {
                        let Some(envelope_id) = frame.envelope_id else {
                            continue;
                        };
                        if self
                            .handle_envelope(context, &frame.kind, frame.payload)
                            .await?
                        {
                            let ack = json!({"envelope_id": envelope_id}).to_string();
                            sink.send(Message::text(ack)).await.map_err(transient)?;
                        }
                    }
                }
            }
        }
    }

    /// Stores the envelope's message, if any; answers whether to acknowledge it.
    async fn handle_envelope(
        &self,
        context: &BridgeContext,
        kind: &str,
        payload: Option<Value>,
    ) -> Result<bool, BridgeError> {
        if kind != "events_api" {
            return Ok(true); // slash commands and interactivity are not used: acknowledge
        }
        let Some(body) =
            payload.and_then(|payload| serde_json::from_value::<EventBody>(payload).ok())
        else {
            return Ok(true);
        };
        let Some(inbound) = body.event.as_ref().and_then(mapping::inbound) else {
            return Ok(true);
        };
        match context.receive(inbound).await {
            Ok(()) => Ok(true),
            Err(error) if !error.is_retryable() => {
                tracing::warn!(bridge = %context.name, %error, "dropping an event the assistant cannot take");
                Ok(true)
            }
            // Not stored: leave it unacknowledged so Slack sends it again; reconnect.
            Err(error) => Err(error),
        }
    }
}
