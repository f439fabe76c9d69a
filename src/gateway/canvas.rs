//! `GET /yjs/{room}`: the canvas rooms over WebSocket, in the binary y-sync frames the npm
//! `y-websocket` provider sends (`new WebsocketProvider("ws://HOST:PORT/yjs", room, doc)`).
//! The route sits behind the same Host, Origin and connection layers as every other; it
//! takes the owner's `Authorization` header or a room token (`?token=`, see
//! [`troupe_canvas::tokens`]), never the node's own token in the URL. A read token's
//! connection may sync but not edit, and it closes when the token expires or is revoked.
//! A bad room name, a refused frame or a room that cannot be opened closes the connection
//! with a code and a reason.

use std::net::{IpAddr, SocketAddr};

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use troupe_actors::rate::TokenBucket;
use troupe_canvas::{Access, CloseReason, Joined, Outgoing, RoomGrant, RoomName};

use super::AppState;
use super::auth::locked_out_answer;
use super::callers::Caller;
use super::error::{ApiCode, ApiError};

/// Room for one ordinary frame (an edit or a cursor move is tens of bytes); larger ones
/// grow the buffer while they are read. Every open connection holds this much, and all of
/// it is touched by each read, so it is kept as small as `/ws`'s.
const READ_BUFFER_BYTES: usize = 1024;
const WRITE_BUFFER_BYTES: usize = 4 * 1024;
/// Room beyond the largest update for the message's own framing.
const FRAMING_BYTES: usize = 64 * 1024;

/// The grant of the room token in `/yjs/{room}?token=…`, if the request carries a valid one
/// for that room. The connection layer asks, so that such a request counts as authorized.
pub(crate) fn room_token_grant(state: &AppState, uri: &Uri) -> Option<RoomGrant> {
    let room = RoomName::parse(uri.path().strip_prefix("/yjs/")?).ok()?;
    state.room_tokens.check(query_token(uri)?, &room)
}

/// The `token` query parameter.
fn query_token(uri: &Uri) -> Option<&str> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// What the connection may do in the room, and until when; or the refusal.
struct Admission {
    writable: bool,
    grant: Option<RoomGrant>,
}

fn admit(
    state: &AppState,
    uri: &Uri,
    caller: Option<&Caller>,
    grant: Option<RoomGrant>,
    address: Option<IpAddr>,
) -> Result<Admission, ApiError> {
    if let Some(grant) = grant {
        return Ok(Admission {
            writable: grant.access == Access::Write,
            grant: Some(grant),
        });
    }
    if query_token(uri).is_some() {
        if let Some(address) = address {
            state.auth_failures.record(address, uri.path());
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ApiCode::InvalidRoomToken,
            "the room token is unknown, expired, revoked or for another room",
        ));
    }
    match caller {
        Some(Caller::Owner) => Ok(Admission {
            writable: true,
            grant: None,
        }),
        Some(Caller::Sender(_)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ApiCode::OwnerOnly,
            "the canvas needs the owner's token or a room token, not a sender's",
        )),
        None => {
            if let Some(address) = address {
                state.auth_failures.record(address, uri.path());
            }
            Err(ApiError::unauthorized())
        }
    }
}

pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Path(room): Path<String>,
    caller: Option<Extension<Caller>>,
    grant: Option<Extension<RoomGrant>>,
    address: Option<Extension<ConnectInfo<SocketAddr>>>,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    if state.shutdown.is_cancelled() {
        return ApiError::shutting_down().into_response();
    }
    let address = address.map(|Extension(ConnectInfo(address))| address.ip());
    if let Some(wait) = address.and_then(|address| state.auth_failures.locked_out(address)) {
        return locked_out_answer(wait);
    }
    let caller = caller.map(|Extension(caller)| caller);
    let grant = grant.map(|Extension(grant)| grant);
    let admission = match admit(&state, &uri, caller.as_ref(), grant, address) {
        Ok(admission) => admission,
        Err(refusal) => return refusal.into_response(),
    };
    let max_message = state.canvas.settings().limits.max_update_bytes + FRAMING_BYTES;
    let tracker = state.connections.clone();
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| tracker.track_future(serve(state, room, admission, socket)))
}

async fn serve(state: AppState, room: String, admission: Admission, mut socket: WebSocket) {
    let refusal = match RoomName::parse(&room) {
        Ok(name) => match state.canvas.join(name, admission.writable).await {
            Ok((joined, frames)) => {
                return relay(&state, &joined, admission.grant, frames, socket).await;
            }
            Err(error) => {
                tracing::warn!(%room, %error, "a canvas room could not be joined");
                reason(close_code::ERROR, &error.to_string())
            }
        },
        Err(error) => reason(close_code::POLICY, &error.to_string()),
    };
    let _ = socket.send(close_message(refusal)).await;
}

fn close_message(close: CloseReason) -> Message {
    Message::Close(Some(CloseFrame {
        code: close.code,
        reason: fitted(close.reason).into(),
    }))
}

/// Moves frames between the socket and the room until either side closes, then sends the
/// close if the socket can still take one. Reading and writing run at once: a connection
/// waiting for the room to store its own update still drains what the others sent.
async fn relay(
    state: &AppState,
    joined: &Joined,
    grant: Option<RoomGrant>,
    mut frames: mpsc::Receiver<Outgoing>,
    socket: WebSocket,
) {
    // A connection on a room token ends when the token expires or is revoked.
    let (expiry, revoked) = match grant {
        Some(grant) => (Some(grant.expires_at), grant.revoked),
        None => (None, tokio_util::sync::CancellationToken::new()),
    };
    let (mut sink, mut stream) = socket.split();
    let close = {
        let expired = async {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let per_second = f64::from(state.canvas.settings().max_updates_per_second);
        let rate = TokenBucket::full(per_second, per_second, std::time::Instant::now());
        let reader = read_frames(&mut stream, joined, rate);
        tokio::pin!(reader);
        tokio::select! {
            () = state.shutdown.cancelled() => Some(reason(close_code::AWAY, "the node is shutting down")),
            () = expired => Some(reason(close_code::POLICY, "the room token expired")),
            () = revoked.cancelled() => Some(reason(close_code::POLICY, "the room token was revoked")),
            close = write_frames(&mut sink, &mut frames) => match close {
                Some(close) => Some(close),
                // The client is gone for writing: still apply what it sent before it left.
                None => reader.await.and(None),
            },
            close = &mut reader => close,
        }
    };
    if let Some(close) = close {
        let _ = sink.send(close_message(close)).await;
    }
}

/// Most frames written before one flush.
const MAX_FRAMES_PER_FLUSH: usize = 64;

/// Writes what the room sends, flushing once per batch; answers the room's close, or `None`
/// when the socket is gone.
async fn write_frames(
    sink: &mut SplitSink<WebSocket, Message>,
    frames: &mut mpsc::Receiver<Outgoing>,
) -> Option<CloseReason> {
    while let Some(first) = frames.recv().await {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(outgoing) = next.take() {
            match outgoing {
                Outgoing::Frame(frame) => {
                    if sink
                        .feed(Message::Binary(Bytes::from_owner(frame)))
                        .await
                        .is_err()
                    {
                        return None;
                    }
                }
                Outgoing::Close(close) => return Some(close),
            }
            written += 1;
            if written < MAX_FRAMES_PER_FLUSH {
                next = frames.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return None;
        }
    }
    Some(reason(close_code::ERROR, "the room closed"))
}

/// Hands the client's frames to the room, one at a time, within the connection's `rate`;
/// answers why to close, or `None` when the client left.
async fn read_frames(
    stream: &mut SplitStream<WebSocket>,
    joined: &Joined,
    mut rate: TokenBucket,
) -> Option<CloseReason> {
    loop {
        match stream.next().await {
            Some(Ok(Message::Binary(data))) => {
                if !rate.take(std::time::Instant::now()) {
                    return Some(reason(
                        close_code::POLICY,
                        "the connection sent more frames a second than canvas.max_updates_per_second",
                    ));
                }
                if joined.send(data.to_vec()).await.is_err() {
                    return Some(reason(close_code::ERROR, "the room closed; reconnect"));
                }
            }
            Some(Ok(Message::Text(_))) => {
                return Some(reason(
                    close_code::UNSUPPORTED,
                    "the canvas speaks binary y-sync frames",
                ));
            }
            Some(Ok(Message::Close(_))) | None => return None,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Err(error)) => {
                return super::ws::violation(error).map(|(code, text)| reason(code, text));
            }
        }
    }
}

/// Longest close reason a WebSocket close frame carries (RFC 6455 §5.5: 125 bytes of
/// payload, two of them the code).
const MAX_REASON_BYTES: usize = 123;

fn reason(code: u16, text: &str) -> CloseReason {
    CloseReason {
        code,
        reason: text.to_owned(),
    }
}

/// `text` cut to fit a close frame, at a character boundary.
fn fitted(mut text: String) -> String {
    if text.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
