//! `GET /yjs/{room}`: the canvas rooms over WebSocket, in the binary y-sync frames the npm
//! `y-websocket` provider sends (`new WebsocketProvider("ws://HOST:PORT/yjs", room, doc)`).
//! The route sits behind the same Host, Origin, auth and connection layers as every other.
//! A bad room name, a refused frame or a room that cannot be opened closes the connection
//! with a code and a reason.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use troupe_canvas::{CloseReason, Joined, Outgoing, RoomName};

use super::AppState;
use super::error::ApiError;

/// Room for one ordinary frame; larger ones grow the buffer while they are read.
const READ_BUFFER_BYTES: usize = 4 * 1024;
const WRITE_BUFFER_BYTES: usize = 4 * 1024;
/// Room beyond the largest update for the message's own framing.
const FRAMING_BYTES: usize = 64 * 1024;

pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Path(room): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if state.shutdown.is_cancelled() {
        return ApiError::shutting_down().into_response();
    }
    let max_message = state.canvas.settings().limits.max_update_bytes + FRAMING_BYTES;
    let tracker = state.connections.clone();
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| tracker.track_future(serve(state, room, socket)))
}

async fn serve(state: AppState, room: String, mut socket: WebSocket) {
    let close = match RoomName::parse(&room) {
        Ok(name) => match state.canvas.join(name, true).await {
            Ok((joined, frames)) => relay(&state, &joined, frames, &mut socket).await,
            Err(error) => {
                tracing::warn!(%room, %error, "a canvas room could not be joined");
                Some(reason(close_code::ERROR, &error.to_string()))
            }
        },
        Err(error) => Some(reason(close_code::POLICY, &error.to_string())),
    };
    if let Some(close) = close {
        let frame = CloseFrame {
            code: close.code,
            reason: fitted(close.reason).into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
    }
}

/// Moves frames between the socket and the room until either side closes; answers the
/// close to send, if the socket can still take one.
async fn relay(
    state: &AppState,
    joined: &Joined,
    mut frames: tokio::sync::mpsc::Receiver<Outgoing>,
    socket: &mut WebSocket,
) -> Option<CloseReason> {
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => {
                return Some(reason(close_code::AWAY, "the node is shutting down"));
            }
            outgoing = frames.recv() => match outgoing {
                Some(Outgoing::Frame(frame)) => {
                    if socket.send(Message::Binary(Bytes::from_owner(frame))).await.is_err() {
                        return None;
                    }
                }
                Some(Outgoing::Close(close)) => return Some(close),
                None => return Some(reason(close_code::ERROR, "the room closed")),
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Binary(data))) => {
                    if joined.send(data.to_vec()).await.is_err() {
                        return Some(reason(close_code::ERROR, "the room closed; reconnect"));
                    }
                }
                Some(Ok(Message::Text(_))) => {
                    return Some(reason(close_code::UNSUPPORTED, "the canvas speaks binary y-sync frames"));
                }
                Some(Ok(Message::Close(_))) | None => return None,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(error)) => {
                    return super::ws::violation(error)
                        .map(|(code, text)| reason(code, text));
                }
            },
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
