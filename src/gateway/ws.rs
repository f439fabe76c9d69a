//! `GET /ws`: the WebSocket access path. JSON text frames; see `docs/protocol.md`.
//!
//! Client → server: an optional first `hello` (`sender_id`, `token`), then `message`
//! frames. Server → client: `ack` once accepted, `delta` while streaming, then `reply` or
//! `error`. A bad frame gets an `error` frame and the connection stays open. Each
//! connection is one task; each in-flight turn forwards its events through a channel.
//! Voice (`voice_start`, binary audio frames, spoken replies) is in [`voice`] and
//! [`speaker`].

mod speaker;
mod voice;

use std::time::Instant;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::Instrument;
use troupe_actors::message::{DraftDefaults, InboundDraft, unix_now};
use troupe_actors::metrics as metric_names;
use troupe_actors::{Awaiting, ContentType, TurnError, TurnEvent, TurnEventReceiver};

use super::admission::ConnectionTicket;
use super::callers::{Caller, authenticate};
use super::error::{ApiCode, ApiError};
use super::frames::{self, ClientFrame, Parsed};
use super::linked;
use super::turns::{session_lost, turn_span};
use super::{AppState, record_gateway_latency};
use speaker::ReplyVoice;
use voice::{Said, VoiceLink};

/// Read buffer per connection: small, because 10,000 idle connections must stay cheap
/// (tokio-tungstenite's default is 128 KiB each). Larger frames still arrive, in pieces.
const READ_BUFFER_BYTES: usize = 1024;
/// Write buffer per connection before a flush.
const WRITE_BUFFER_BYTES: usize = 1024;
/// Messages one connection may have awaiting replies; more get `too_many_in_flight`, so a
/// client that sends without reading cannot make the node buffer without bound.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 256;
/// Close code for policy violations (bad token).
const POLICY_VIOLATION: u16 = close_code::POLICY;

/// The connection a WebSocket runs on: its slot in the gate, and the peer's address.
struct Peer {
    ticket: Option<Arc<ConnectionTicket>>,
    address: Option<IpAddr>,
}

pub(crate) async fn upgrade(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ticket: Option<Extension<Arc<ConnectionTicket>>>,
    address: Option<Extension<ConnectInfo<SocketAddr>>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The Origin was checked for every route by the guard, before this ran.
    if state.shutdown.is_cancelled() {
        return ApiError::shutting_down().into_response();
    }
    let caller = caller.map(|Extension(caller)| caller);
    let max_message = state.settings.limits.max_payload_bytes * 2 + 64 * 1024;
    let tracker = state.connections.clone();
    let peer = Peer {
        ticket: ticket.map(|Extension(ticket)| ticket),
        address: address.map(|Extension(ConnectInfo(address))| address.ip()),
    };
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| {
            tracker.track_future(Connection::new(state, caller, peer).run(socket))
        })
}

/// One connection's state.
struct Connection {
    state: AppState,
    /// Who the connection speaks for, once its token was checked (header or `hello`).
    caller: Option<Caller>,
    sender_id: String,
    /// Whether any frame was handled yet (`hello` must come first).
    started: bool,
    outgoing: mpsc::UnboundedSender<Message>,
    outgoing_queue: Option<mpsc::UnboundedReceiver<Message>>,
    /// Accepted messages being forwarded, polled by the connection itself: a turn wakes
    /// this task, not one of its own (no spawn, no scheduling per message).
    turns: FuturesUnordered<BoxFuture<'static, ()>>,
    /// This connection in the node's [`super::Clients`], once its sender is known.
    registered: Option<u64>,
    /// Holds the connection's slot for as long as the socket is open.
    peer: Peer,
    /// The page's microphone and the assistant's voice.
    voice: VoiceLink,
    said_queue: Option<mpsc::UnboundedReceiver<Said>>,
}

/// What to do after a frame.
enum Next {
    Continue,
    Close(u16, &'static str),
}

fn frame(value: &Value) -> Message {
    Message::Text(value.to_string().into())
}

/// The two frames every message gets, written straight from borrowed fields rather than
/// through a `json!` tree (one allocation instead of one per key and value).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum HotFrame<'a> {
    Ack {
        id: &'a str,
    },
    Reply {
        id: &'a str,
        in_reply_to: &'a str,
        conversation_id: &'a str,
        content_type: ContentType,
        payload: &'a str,
        timestamp: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        awaiting: Option<Awaiting>,
        /// Set when the person stopped the turn (`payload` is what was said by then).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        stopped: bool,
    },
}

fn hot_frame(frame: &HotFrame<'_>) -> Message {
    let text = serde_json::to_string(frame).expect("frames hold only json-encodable fields");
    Message::Text(text.into())
}

fn ack_frame(id: &str) -> Message {
    hot_frame(&HotFrame::Ack { id })
}

fn error_frame(in_reply_to: Option<&str>, code: ApiCode, message: &str) -> Message {
    frame(&json!({"type": "error", "in_reply_to": in_reply_to, "code": code, "message": message}))
}

fn event_frame(event: &TurnEvent) -> Message {
    match event {
        TurnEvent::Delta { in_reply_to, text } => {
            frame(&json!({"type": "delta", "in_reply_to": in_reply_to, "payload": text}))
        }
        TurnEvent::Reply { reply, .. } => hot_frame(&HotFrame::Reply {
            id: &reply.id,
            in_reply_to: &reply.in_reply_to,
            conversation_id: &reply.conversation_id,
            content_type: reply.content_type,
            payload: &reply.payload,
            timestamp: reply.timestamp,
            awaiting: reply.awaiting,
            stopped: reply.stopped,
        }),
        TurnEvent::Failed { in_reply_to, error } => {
            error_frame(Some(in_reply_to), error.code.into(), &error.message)
        }
        TurnEvent::ToolCall { .. } | TurnEvent::ToolResult { .. } => {
            let (_, value) = super::turns::tool_event_json(event).unwrap_or_default();
            frame(&value)
        }
    }
}

impl Connection {
    fn new(state: AppState, caller: Option<Caller>, peer: Peer) -> Self {
        let sender_id = match &caller {
            Some(Caller::Sender(sender)) => sender.to_string(),
            _ => format!("anon-{}", uuid::Uuid::new_v4().simple()),
        };
        let (outgoing, queue) = mpsc::unbounded_channel();
        let (said, said_queue) = mpsc::unbounded_channel();
        Self {
            voice: VoiceLink::new(said),
            said_queue: Some(said_queue),
            state,
            caller,
            sender_id,
            started: false,
            outgoing,
            outgoing_queue: Some(queue),
            registered: None,
            turns: FuturesUnordered::new(),
            peer,
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        metrics::gauge!(metric_names::WEBSOCKET_CONNECTIONS).increment(1.0);
        let (Some(mut queue), Some(mut said_queue)) =
            (self.outgoing_queue.take(), self.said_queue.take())
        else {
            return;
        };
        let shutdown = self.state.shutdown.clone();
        // A connection that has not authenticated gets as long as a request's headers.
        let hello_deadline = tokio::time::sleep(self.state.settings.timeouts.header);
        tokio::pin!(hello_deadline);
        let close = loop {
            tokio::select! {
                () = shutdown.cancelled() => break Some((close_code::AWAY, "server shutting down")),
                () = &mut hello_deadline, if self.caller.is_none() => {
                    break Some((POLICY_VIOLATION, "no hello with a valid token in time"));
                }
                Some(message) = queue.recv() => {
                    if send_batch(&mut socket, message, &mut queue).await.is_err() { break None; }
                }
                Some(()) = self.turns.next(), if !self.turns.is_empty() => {}
                Some(said) = said_queue.recv() => self.spoken(said),
                incoming = socket.recv() => match incoming {
                    Some(Ok(message)) => match self.handle(message) {
                        Next::Continue => {}
                        Next::Close(code, reason) => break Some((code, reason)),
                    },
                    Some(Err(error)) => break violation(error),
                    None => break None,
                },
            }
        };
        if let Some((code, reason)) = close {
            self.finish_in_flight(&mut socket, &mut queue).await;
            let close_frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = socket.send(Message::Close(Some(close_frame))).await;
        }
        self.voice.close();
        if let Some(id) = self.registered.take() {
            self.state.clients.unregister(&self.sender_id, id);
        }
        metrics::gauge!(metric_names::WEBSOCKET_CONNECTIONS).decrement(1.0);
    }

    /// Makes this connection reachable for messages nobody asked for (reminders), once its
    /// sender is settled (after `hello`, or at the first message).
    fn register(&mut self) {
        if self.registered.is_none() {
            let id = self
                .state
                .clients
                .register(&self.sender_id, self.outgoing.clone());
            self.registered = Some(id);
        }
    }

    /// Lets every accepted message get its reply before the connection closes.
    async fn finish_in_flight(
        &mut self,
        socket: &mut WebSocket,
        queue: &mut mpsc::UnboundedReceiver<Message>,
    ) {
        while !self.turns.is_empty() {
            tokio::select! {
                Some(message) = queue.recv() => {
                    if send_batch(socket, message, queue).await.is_err() { return; }
                }
                Some(()) = self.turns.next() => {}
            }
        }
        while let Ok(message) = queue.try_recv() {
            if socket.send(message).await.is_err() {
                return;
            }
        }
    }

    fn send(&self, message: Message) {
        let _ = self.outgoing.send(message);
    }

    fn handle(&mut self, message: Message) -> Next {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(audio) => {
                self.voice_audio(audio);
                return Next::Continue;
            }
            Message::Close(_) => return Next::Close(close_code::NORMAL, "bye"),
            Message::Ping(_) | Message::Pong(_) => return Next::Continue,
        };
        let (frame_id, frame) = match frames::parse(text.as_str()) {
            Parsed::NotJson(error) => {
                self.send(error_frame(
                    None,
                    ApiCode::InvalidFrame,
                    &format!("the frame is not JSON: {error}"),
                ));
                return Next::Continue;
            }
            Parsed::Json { id, frame } => (id, frame),
        };
        let first_frame = !self.started;
        self.started = true;
        match frame {
            Ok(ClientFrame::Hello { sender_id, token }) => {
                self.hello(first_frame, sender_id.as_deref(), token.as_deref())
            }
            Ok(ClientFrame::Message(frame)) => {
                let Some(caller) = &self.caller else {
                    self.send(error_frame(
                        frame_id.as_deref(),
                        ApiCode::Unauthorized,
                        "send a hello frame with a valid token first",
                    ));
                    return Next::Close(POLICY_VIOLATION, "unauthorized");
                };
                let senders = &self.state.settings.senders;
                if let Err(refusal) =
                    caller.sender_for(senders, None, frame.conversation_id.as_deref())
                {
                    self.send(error_frame(
                        frame_id.as_deref(),
                        refusal.code,
                        &refusal.message,
                    ));
                    return Next::Continue;
                }
                let span = turn_span("ws", frame.traceparent.as_deref());
                let draft = frame.into_draft(&self.sender_id);
                self.accept(draft, frame_id.as_deref(), span, None);
                Next::Continue
            }
            Ok(ClientFrame::Stop {
                in_reply_to,
                conversation_id,
            }) => self.stop(in_reply_to, conversation_id),
            Ok(ClientFrame::VoiceStart(start)) => self.voice_start(start),
            Ok(ClientFrame::VoiceEnd {}) => {
                self.voice.end();
                Next::Continue
            }
            Ok(ClientFrame::VoiceStop {}) => {
                self.voice.close();
                Next::Continue
            }
            Ok(ClientFrame::SpeechStop {}) => {
                self.voice.silence();
                Next::Continue
            }
            Err(error) => {
                self.send(error_frame(
                    frame_id.as_deref(),
                    ApiCode::InvalidFrame,
                    &error.to_string(),
                ));
                Next::Continue
            }
        }
    }

    /// A `stop` frame: the turn answering `in_reply_to` stops, if this connection's caller
    /// may speak in its conversation; a `stop_result` frame says whether one was running,
    /// and the turn's own final frame follows. A refused stop's error names no message:
    /// the turn it named goes on, and has not failed.
    fn stop(&mut self, in_reply_to: String, conversation_id: Option<String>) -> Next {
        if let Err(refused) = self.may_speak_in(conversation_id.as_deref()) {
            return refused;
        }
        let conversation = conversation_id.unwrap_or_else(|| self.sender_id.clone());
        let key = match linked::session_key(&self.state, "ws", &conversation) {
            Ok(key) => key,
            Err(error) => {
                let message = format!("field `conversation_id` is invalid: {error}");
                self.send(error_frame(None, ApiCode::InvalidFrame, &message));
                return Next::Continue;
            }
        };
        let ingress = Arc::clone(&self.state.ingress);
        let outgoing = self.outgoing.clone();
        self.turns.push(
            async move {
                let answer = match ingress.stop(key, in_reply_to.clone()).await {
                    Ok(outcome) => frame(&json!({
                        "type": "stop_result", "in_reply_to": in_reply_to, "outcome": outcome
                    })),
                    Err(error) => error_frame(None, error.code.into(), &error.message),
                };
                let _ = outgoing.send(answer);
            }
            .boxed(),
        );
        Next::Continue
    }

    /// Whether this connection's caller may speak in `conversation_id` (by default the
    /// sender's own); when not, the error went out (naming no message) and the answer is
    /// what to do next.
    fn may_speak_in(&mut self, conversation_id: Option<&str>) -> Result<(), Next> {
        let Some(caller) = &self.caller else {
            self.send(error_frame(
                None,
                ApiCode::Unauthorized,
                "send a hello frame with a valid token first",
            ));
            return Err(Next::Close(POLICY_VIOLATION, "unauthorized"));
        };
        let senders = &self.state.settings.senders;
        if let Err(refusal) = caller.sender_for(senders, None, conversation_id) {
            self.send(error_frame(None, refusal.code, &refusal.message));
            return Err(Next::Continue);
        }
        Ok(())
    }

    fn hello(&mut self, first_frame: bool, sender_id: Option<&str>, token: Option<&str>) -> Next {
        if !first_frame {
            self.send(error_frame(
                None,
                ApiCode::InvalidFrame,
                "hello must be the first frame of a connection",
            ));
            return Next::Continue;
        }
        let Some(caller) = self.hello_caller(token) else {
            return Next::Close(POLICY_VIOLATION, "unauthorized");
        };
        if let Some(sender_id) = sender_id
            && let Err(reason) = troupe_actors::ids::validate_id(sender_id)
        {
            self.send(error_frame(
                None,
                ApiCode::InvalidFrame,
                &format!("field `sender_id` is invalid: {reason}"),
            ));
            return Next::Continue;
        }
        match caller.sender_for(&self.state.settings.senders, sender_id, None) {
            Ok(Some(sender)) => self.sender_id = sender,
            Ok(None) => {}
            Err(refusal) => {
                self.send(error_frame(None, refusal.code, &refusal.message));
                return Next::Close(POLICY_VIOLATION, "sender not allowed");
            }
        }
        self.caller = Some(caller);
        if let Some(ticket) = &self.peer.ticket {
            ticket.authorize();
        }
        self.register();
        Next::Continue
    }

    /// Who a `hello` makes this connection: its token decides (a sender's token binds the
    /// connection to that sender, also on a node without an owner's token); without one,
    /// the header's caller stays. `None`, with the error sent, when it proves nothing.
    fn hello_caller(&mut self, token: Option<&str>) -> Option<Caller> {
        let failures = &self.state.auth_failures;
        let address = self.peer.address;
        if token.is_some() && address.is_some_and(|address| failures.locked_out(address).is_some())
        {
            self.send(error_frame(
                None,
                ApiCode::TooManyFailures,
                "too many failed authentications from this address; wait and try again",
            ));
            return None;
        }
        let settings = &self.state.settings;
        let by_hello = token.and_then(|token| {
            authenticate(settings.token.as_deref(), &settings.senders, Some(token))
        });
        if let Some(caller) = by_hello.or_else(|| self.caller.clone()) {
            return Some(caller);
        }
        if let Some(address) = address {
            failures.record(address, "/ws hello");
        }
        self.send(error_frame(
            None,
            ApiCode::Unauthorized,
            "the token is missing or wrong",
        ));
        None
    }

    /// Submits `draft`; its reply's events go back on this connection, and to `voice`
    /// when the reply is to be spoken.
    fn accept(
        &mut self,
        draft: InboundDraft,
        frame_id: Option<&str>,
        span: tracing::Span,
        voice: Option<ReplyVoice>,
    ) {
        let started = Instant::now();
        if self.turns.len() >= MAX_IN_FLIGHT_PER_CONNECTION {
            let message = format!(
                "at most {MAX_IN_FLIGHT_PER_CONNECTION} messages may await replies on one connection"
            );
            self.send(error_frame(frame_id, ApiCode::TooManyInFlight, &message));
            return;
        }
        let defaults = DraftDefaults {
            platform: "ws",
            sender_id: None,
            now_unix_secs: unix_now(),
        };
        let validated = draft
            .validate(&defaults, self.state.settings.limits)
            .and_then(|mut message| {
                linked::join_linked_person(&self.state, &mut message).map(|()| message)
            });
        let mut message = match validated {
            Ok(message) => message,
            Err(error) => {
                let error = ApiError::from(error);
                self.send(error_frame(frame_id, error.code, &error.message));
                return;
            }
        };
        self.register();
        // How to reach this person later: their web chats (reminders).
        message.set_reply_route(json!({"websocket": self.sender_id}));
        let id = message.id().to_owned();
        span.record("message_id", id.as_str());
        let submission = match span.in_scope(|| self.state.ingress.submit(message)) {
            Ok(submission) => submission,
            Err(error) => {
                self.send(error_frame(Some(&id), error.code.into(), &error.message));
                return;
            }
        };
        let outgoing = self.outgoing.clone();
        let mut accepted = submission.accepted;
        // `ack` only once the message is stored (in a cluster: in the JetStream inbox). On a
        // single node it is stored at once, and the ack goes out before any later frame.
        if let Some(stored) = (&mut accepted).now_or_never() {
            if let Err(error) = stored {
                self.send(error_frame(Some(&id), error.code.into(), &error.message));
                return;
            }
            self.send(ack_frame(&id));
            self.turns.push(
                forward_turn(submission.events, outgoing, id, started, voice)
                    .instrument(span)
                    .boxed(),
            );
            return;
        }
        self.turns.push(
            async move {
                if let Err(error) = accepted.await {
                    let _ =
                        outgoing.send(error_frame(Some(&id), error.code.into(), &error.message));
                    return;
                }
                let _ = outgoing.send(ack_frame(&id));
                forward_turn(submission.events, outgoing, id, started, voice).await;
            }
            .instrument(span)
            .boxed(),
        );
    }
}

/// The close code and reason for a frame the WebSocket layer refused, or `None` when the
/// connection itself is gone (nothing can be sent).
pub(crate) fn violation(error: axum::Error) -> Option<(u16, &'static str)> {
    let error = error.into_inner();
    let refused = match error.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Utf8(_)) => (close_code::INVALID, "invalid UTF-8 in a text frame"),
        Some(tungstenite::Error::Capacity(_)) => (close_code::SIZE, "the message is too large"),
        Some(tungstenite::Error::Protocol(_)) => {
            (close_code::PROTOCOL, "WebSocket protocol violation")
        }
        _ => return None,
    };
    tracing::debug!(%error, "closing a WebSocket that broke the protocol");
    Some(refused)
}

/// Most frames written before one flush.
const MAX_FRAMES_PER_FLUSH: usize = 64;

/// Writes `first` and whatever else is already queued, then flushes once: under load one
/// system call carries many frames (ack, deltas, replies of several turns).
async fn send_batch(
    socket: &mut WebSocket,
    first: Message,
    queue: &mut mpsc::UnboundedReceiver<Message>,
) -> Result<(), axum::Error> {
    socket.feed(first).await?;
    for _ in 1..MAX_FRAMES_PER_FLUSH {
        let Ok(next) = queue.try_recv() else { break };
        socket.feed(next).await?;
    }
    socket.flush().await
}

/// Forwards one turn's events to the connection until its final event, and its text to
/// `voice` when the reply is spoken.
async fn forward_turn(
    mut events: TurnEventReceiver,
    outgoing: mpsc::UnboundedSender<Message>,
    in_reply_to: String,
    started: Instant,
    mut voice: Option<ReplyVoice>,
) {
    while let Some(event) = events.recv().await {
        if let TurnEvent::Reply { model_latency, .. } = &event {
            record_gateway_latency(started, *model_latency);
        }
        let last = event.is_final();
        let _ = outgoing.send(event_frame(&event));
        match (&event, voice.take()) {
            (TurnEvent::Delta { text, .. }, Some(mut speaking)) => {
                speaking.delta(text);
                voice = Some(speaking);
            }
            (TurnEvent::Reply { reply, .. }, Some(speaking)) if !reply.stopped => {
                speaking.finish(&reply.payload);
            }
            (_, Some(speaking)) if last => speaking.cancel(),
            (_, speaking) => voice = speaking,
        }
        if last {
            return;
        }
    }
    if let Some(speaking) = voice {
        speaking.cancel();
    }
    let lost: TurnError = session_lost();
    let _ = outgoing.send(error_frame(
        Some(&in_reply_to),
        lost.code.into(),
        &lost.message,
    ));
}
