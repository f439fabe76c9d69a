//! The Discord Gateway: a WebSocket that sends `Hello` (op 10, the heartbeat interval),
//! takes `Identify` (op 2: token and intents) or `Resume` (op 6: session id and the last
//! sequence number), and then dispatches events (op 0: `READY`, `RESUMED`,
//! `MESSAGE_CREATE`, …). The client heartbeats (op 1) and expects an ACK (op 11) before the
//! next beat, or the connection is a zombie. `Reconnect` (op 7) and `Invalid Session`
//! (op 9) ask for a new connection; close codes 4004 and 4010–4014 are fatal.
//!
//! The sequence number advances only after an event was stored, so a resumed session
//! replays anything a failure interrupted.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use troupe_actors::bridge::{BridgeContext, BridgeError, BridgeErrorKind};

use super::DiscordBridge;
use super::mapping::{self, MessageCreate};

/// `GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT`.
pub(crate) const INTENTS: u64 = (1 << 9) | (1 << 12) | (1 << 15);

/// A session that can be resumed.
#[derive(Clone, Debug)]
pub(crate) struct GatewaySession {
    pub(crate) session_id: String,
    pub(crate) resume_url: String,
    pub(crate) sequence: Option<u64>,
}

/// How one connection ended.
enum Ending {
    Shutdown,
    /// Connect again; resume the session if `true`.
    Reconnect(bool),
}

fn transient(what: impl std::fmt::Display) -> BridgeError {
    BridgeError::new(
        BridgeErrorKind::Transient,
        format!("discord gateway: {what}"),
    )
}

impl DiscordBridge {
    pub(crate) async fn run_gateway(&self, context: &BridgeContext) -> Result<(), BridgeError> {
        let connector = crate::websocket::tls_connector()?;
        loop {
            let session = self.session();
            let base = match &session {
                Some(session) => session.resume_url.clone(),
                None => {
                    let gateway = self
                        .rest
                        .send(reqwest::Method::GET, "gateway/bot", None, true)
                        .await?;
                    gateway["url"]
                        .as_str()
                        .ok_or_else(|| transient("gateway/bot gave no url"))?
                        .to_owned()
                }
            };
            let url = format!("{}/?v=10&encoding=json", base.trim_end_matches('/'));
            let socket = crate::websocket::connect(&url, &connector)
                .await
                .map_err(transient)?;
            match self.serve_connection(context, socket, session).await? {
                Ending::Shutdown => return Ok(()),
                Ending::Reconnect(true) => {}
                Ending::Reconnect(false) => {
                    self.set_session(None);
                    // Discord asks for a pause of 1–5 s before identifying again.
                    tokio::time::sleep(Duration::from_millis(rand_between(1000, 5000))).await;
                }
            }
        }
    }

    async fn serve_connection<S>(
        &self,
        context: &BridgeContext,
        socket: tokio_tungstenite::WebSocketStream<S>,
        session: Option<GatewaySession>,
    ) -> Result<Ending, BridgeError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut sink, mut stream) = socket.split();
        let hello = next_payload(&mut stream).await?;
        if hello["op"] != 10 {
            return Err(transient("the first frame was not Hello"));
        }
        let interval =
            Duration::from_millis(hello["d"]["heartbeat_interval"].as_u64().unwrap_or(41_250));
        let opening = match &session {
            Some(session) => json!({"op": 6, "d": {"token": self.settings.bot_token.expose(),
                "session_id": session.session_id, "seq": session.sequence}}),
            None => {
                json!({"op": 2, "d": {"token": self.settings.bot_token.expose(), "intents": INTENTS,
                "properties": {"os": std::env::consts::OS, "browser": "troupe", "device": "troupe"}}})
            }
        };
        sink.send(Message::text(opening.to_string()))
            .await
            .map_err(transient)?;
        let first_beat =
            tokio::time::Instant::now() + interval.mul_f64(rand_between(0, 1000) as f64 / 1000.0);
        let mut beats = tokio::time::interval_at(first_beat, interval);
        let mut acknowledged = true;
        loop {
            let frame = tokio::select! {
                () = context.shutdown.cancelled() => {
                    let _ = sink.close().await;
                    return Ok(Ending::Shutdown);
                }
                _ = beats.tick() => {
                    if !acknowledged {
                        tracing::warn!(bridge = %context.name, "no heartbeat ACK: the connection is a zombie");
                        return Ok(Ending::Reconnect(true));
                    }
                    acknowledged = false;
                    let beat = json!({"op": 1, "d": self.session().and_then(|session| session.sequence)});
                    sink.send(Message::text(beat.to_string())).await.map_err(transient)?;
                    continue;
                }
                frame = stream.next() => frame,
            };
            let payload = match frame {
                None => return Ok(Ending::Reconnect(true)),
                Some(Err(error)) => {
                    tracing::warn!(bridge = %context.name, %error, "gateway connection failed");
                    return Ok(Ending::Reconnect(true));
                }
                Some(Ok(Message::Close(close))) => {
                    return close_ending(close.map(|frame| frame.code));
                }
                Some(Ok(Message::Text(text))) => {
                    serde_json::from_str::<Value>(text.as_str()).unwrap_or(Value::Null)
                }
                Some(Ok(_)) => continue,
            };
            match payload["op"].as_u64() {
                Some(0) => self.dispatch(context, &payload).await?,
                Some(1) => {
                    let beat =
                        json!({"op": 1, "d": self.session().and_then(|session| session.sequence)});
                    sink.send(Message::text(beat.to_string()))
                        .await
                        .map_err(transient)?;
                }
                Some(7) => return Ok(Ending::Reconnect(true)),
                Some(9) => return Ok(Ending::Reconnect(payload["d"] == true)),
                Some(11) => acknowledged = true,
                _ => {}
            }
        }
    }

    async fn dispatch(&self, context: &BridgeContext, payload: &Value) -> Result<(), BridgeError> {
        let data = &payload["d"];
        match payload["t"].as_str() {
            Some("READY") => {
                self.set_bot_id(data["user"]["id"].as_str().unwrap_or_default());
                self.set_session(Some(GatewaySession {
                    session_id: data["session_id"].as_str().unwrap_or_default().to_owned(),
                    resume_url: data["resume_gateway_url"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    sequence: None,
                }));
                context.status.connected();
            }
            Some("RESUMED") => context.status.connected(),
            Some("MESSAGE_CREATE") => {
                if let Ok(event) = serde_json::from_value::<MessageCreate>(data.clone())
                    && let Some(inbound) = mapping::inbound(&event, &self.bot_id())
                {
                    match context.receive(inbound).await {
                        Ok(()) => {}
                        Err(error) if !error.is_retryable() => {
                            tracing::warn!(bridge = %context.name, %error, "dropping a message the assistant cannot take");
                        }
                        // Not stored and the sequence not advanced: a resume replays it.
                        Err(error) => return Err(error),
                    }
                }
            }
            _ => {}
        }
        if let Some(sequence) = payload["s"].as_u64() {
            self.advance_sequence(sequence);
        }
        Ok(())
    }
}

async fn next_payload<S>(stream: &mut S) -> Result<Value, BridgeError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Err(_) => return Err(transient("no Hello within 30 s")),
            Ok(None) => return Err(transient("closed before Hello")),
            Ok(Some(Err(error))) => return Err(transient(error)),
            Ok(Some(Ok(Message::Text(text)))) => {
                return serde_json::from_str(text.as_str()).map_err(transient);
            }
            Ok(Some(Ok(Message::Close(close)))) => {
                return match close_ending(close.map(|frame| frame.code)) {
                    Err(error) => Err(error),
                    Ok(_) => Err(transient("closed before Hello")),
                };
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// What a close code means: fatal codes are errors, 4007/4009 need a new session.
fn close_ending(code: Option<CloseCode>) -> Result<Ending, BridgeError> {
    let code = code.map(u16::from).unwrap_or(1000);
    match code {
        4004 => Err(BridgeError::new(
            BridgeErrorKind::Unauthorized,
            "discord gateway: authentication failed (4004)",
        )),
        4010..=4014 => Err(BridgeError::new(
            BridgeErrorKind::Unauthorized,
            format!(
                "discord gateway: closed with {code} (sharding, API version or intents not allowed; enable the Message Content intent)"
            ),
        )),
        4007 | 4009 => Ok(Ending::Reconnect(false)),
        _ => Ok(Ending::Reconnect(true)),
    }
}

fn rand_between(low: u64, high: u64) -> u64 {
    rand::random_range(low..high.max(low + 1))
}
