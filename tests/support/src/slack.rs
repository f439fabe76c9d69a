//! A faithful test double of Slack's side of a Slack app:
//! - the Web API (`POST /api/{method}`, bearer tokens, answers `{"ok": true, …}` or
//!   `{"ok": false, "error"}` with HTTP 200, `429` with `Retry-After`): `auth.test`,
//!   `chat.postMessage`, `apps.connections.open`, and the file upload (form-encoded
//!   `files.getUploadURLExternal` with `filename` and `length`, the bytes POSTed to the
//!   `upload_url` it answers, which must be that long, then `files.completeUploadExternal`
//!   with `files` (JSON), `channel_id` and `thread_ts`);
//! - Socket Mode: the WebSocket `apps.connections.open` points at sends `hello`, then
//!   `events_api` envelopes, expects `{"envelope_id"}` acknowledgements (unacknowledged
//!   envelopes are sent again on the next connection), and can send `disconnect`;
//! - the Events API sender: `event_callback` and `url_verification` requests signed with
//!   `X-Slack-Signature: v0=HMAC-SHA256(signing secret, "v0:{timestamp}:{body}")`;
//! - the file host: a shared file's `url_private_download`
//!   (`/files-pri/{team}-{file}/download/{name}`) answers its bytes to the bot token, and
//!   Slack's sign-in page (HTML, status 200) to a request without it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;

pub const BOT_USER_ID: &str = "U0BOT";

/// A scripted answer to the next `chat.postMessage`.
#[derive(Clone, Copy, Debug)]
pub enum PostFailure {
    /// HTTP 429 with `Retry-After: seconds`.
    RateLimited(u64),
    /// `{"ok": false, "error": "internal_error"}`.
    InternalError,
}

/// An upload asked for: the length promised, and the bytes once sent.
type Upload = (usize, Option<Vec<u8>>);

#[derive(Default)]
struct Shared {
    bot_token: String,
    app_token: String,
    posted: Mutex<Vec<Value>>,
    failures: Mutex<VecDeque<PostFailure>>,
    /// Socket Mode envelopes not acknowledged yet, in order.
    envelopes: Mutex<VecDeque<Value>>,
    acks: Mutex<Vec<String>>,
    connections: Mutex<u32>,
    /// Shared files by id: their bytes and MIME type.
    files: Mutex<HashMap<String, (Vec<u8>, String)>>,
    /// Uploads asked for, by file id: the length promised, and the bytes once sent.
    uploads: Mutex<HashMap<String, Upload>>,
    /// Uploads completed into a conversation: their `files.completeUploadExternal` form
    /// and bytes.
    shared: Mutex<Vec<(Value, Vec<u8>)>>,
    /// File downloads asked for, with or without the bot token.
    downloads: Mutex<Vec<bool>>,
    news: Notify,
    disconnect: Notify,
}

pub struct FakeSlack {
    address: SocketAddr,
    shared: Arc<Shared>,
    signing_secret: String,
    server: tokio::task::JoinHandle<()>,
    next_event: Mutex<u64>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeSlack {
    pub async fn start(bot_token: &str, app_token: &str, signing_secret: &str) -> Self {
        let shared = Arc::new(Shared {
            bot_token: bot_token.to_owned(),
            app_token: app_token.to_owned(),
            ..Shared::default()
        });
        let (listener, address) = crate::loopback_listener().await;
        let router = Router::new()
            .route("/api/{method}", post(web_api))
            .route("/link/", get(socket))
            .route("/files-pri/{file}/download/{name}", get(file_download))
            .route("/upload/v1/{file}", post(upload))
            .with_state((Arc::clone(&shared), address));
        let server = crate::serve(listener, router);
        Self {
            address,
            shared,
            signing_secret: signing_secret.to_owned(),
            server,
            next_event: Mutex::new(0),
        }
    }

    /// The `api_base` a bridge is configured with.
    pub fn api_base(&self) -> String {
        format!("http://{}/api", self.address)
    }

    /// The `files_base` a bridge is configured with (Slack's file host).
    pub fn files_base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Files the bot shared in conversations: the `files.completeUploadExternal` form
    /// (`channel_id`, `thread_ts`, `files`) and the bytes uploaded.
    pub fn shared_files(&self) -> Vec<(Value, Vec<u8>)> {
        self.shared.shared.lock().expect("shared").clone()
    }

    /// Whether each file download so far carried the bot token.
    pub fn downloads(&self) -> Vec<bool> {
        self.shared.downloads.lock().expect("downloads").clone()
    }

    /// A direct message from `user` in `channel` sharing an audio clip recorded in Slack
    /// (`subtype: "slack_audio"`, as the apps record them), its bytes kept on the file host.
    pub fn audio_clip_event(&self, channel: &str, user: &str, clip: Vec<u8>, mime: &str) -> Value {
        let ts = self.next_ts();
        let id = format!("F{}", ts.replace('.', ""));
        let name = if mime.contains("mp4") {
            "audio_message.m4a"
        } else {
            "audio_message.webm"
        };
        let size = clip.len();
        let download = format!("http://{}/files-pri/T1-{id}/download/{name}", self.address);
        self.shared
            .files
            .lock()
            .expect("files")
            .insert(format!("T1-{id}"), (clip, mime.to_owned()));
        json!({"type": "message", "subtype": "file_share", "channel": channel, "channel_type": "im",
               "user": user, "text": "", "ts": ts, "event_ts": ts, "upload": false,
               "files": [{"id": id, "created": 1_795_000_000, "name": name, "title": "Audio clip",
                          "mimetype": mime, "filetype": if mime.contains("mp4") { "m4a" } else { "webm" },
                          "subtype": "slack_audio", "size": size, "mode": "hosted", "is_external": false,
                          "url_private": format!("http://{}/files-pri/T1-{id}/{name}", self.address),
                          "url_private_download": download}]})
    }

    pub fn fail_next_posts(&self, failures: impl IntoIterator<Item = PostFailure>) {
        self.shared
            .failures
            .lock()
            .expect("failures")
            .extend(failures);
    }

    /// Every accepted `chat.postMessage` body.
    pub fn posted(&self) -> Vec<Value> {
        self.shared.posted.lock().expect("posted").clone()
    }

    pub fn acks(&self) -> Vec<String> {
        self.shared.acks.lock().expect("acks").clone()
    }

    pub fn connections(&self) -> u32 {
        *self.shared.connections.lock().expect("connections")
    }

    /// A direct-message event from `user` in DM channel `channel`.
    pub fn dm_event(&self, channel: &str, user: &str, text: &str) -> Value {
        let ts = self.next_ts();
        json!({"type": "message", "channel": channel, "channel_type": "im", "user": user,
               "text": text, "ts": ts, "event_ts": ts, "client_msg_id": format!("c-{ts}")})
    }

    /// An `app_mention` of the bot by `user` in `channel`.
    pub fn mention_event(&self, channel: &str, user: &str, text: &str) -> Value {
        let ts = self.next_ts();
        json!({"type": "app_mention", "channel": channel, "user": user,
               "text": format!("<@{BOT_USER_ID}> {text}"), "ts": ts, "event_ts": ts})
    }

    fn next_ts(&self) -> String {
        let mut next = self.next_event.lock().expect("counter");
        *next += 1;
        format!("1795000000.{:06}", *next)
    }

    /// The `event_callback` body Slack wraps an event in.
    pub fn callback(&self, event: &Value) -> Value {
        json!({"token": "verification-token-unused", "team_id": "T1", "api_app_id": "A1",
               "event": event, "type": "event_callback",
               "event_id": format!("Ev{}", event["ts"].as_str().unwrap_or_default().replace('.', "")),
               "event_time": 1_795_000_000, "authorizations": [{"team_id": "T1", "user_id": BOT_USER_ID, "is_bot": true}]})
    }

    /// The signature headers Slack sends for `body` at `timestamp`.
    pub fn signature(&self, timestamp: u64, body: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.signing_secret.as_bytes()).expect("any key");
        mac.update(format!("v0:{timestamp}:{body}").as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("v0={hex}")
    }

    /// POSTs `body` to the Events API URL as Slack does; answers (status, body).
    pub async fn post_event(&self, url: &str, body: &Value, retry: Option<u32>) -> (u16, String) {
        let text = body.to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("X-Slack-Request-Timestamp", now.to_string())
            .header("X-Slack-Signature", self.signature(now, &text));
        if let Some(retry) = retry {
            request = request
                .header("X-Slack-Retry-Num", retry.to_string())
                .header("X-Slack-Retry-Reason", "http_timeout");
        }
        let response = request.body(text).send().await.expect("the bridge answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Queues an `events_api` envelope for Socket Mode; answers its envelope id.
    pub fn push_envelope(&self, event: &Value) -> String {
        let envelope_id = format!("env-{}", event["ts"].as_str().unwrap_or_default());
        let envelope = json!({"envelope_id": envelope_id, "type": "events_api",
            "accepts_response_payload": false, "retry_attempt": 0, "retry_reason": "",
            "payload": self.callback(event)});
        self.shared
            .envelopes
            .lock()
            .expect("envelopes")
            .push_back(envelope);
        self.shared.news.notify_waiters();
        envelope_id
    }

    /// Sends `disconnect` (reason `refresh_requested`) on the open connection.
    pub fn request_reconnect(&self) {
        self.shared.disconnect.notify_waiters();
    }

    /// Waits until `done` holds for the posted messages, up to `limit`.
    pub async fn wait_for_posts(
        &self,
        limit: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        crate::poll_until(limit, || self.posted(), |posted| done(posted)).await
    }
}

fn answer(body: &Value) -> Response {
    axum::Json(body.clone()).into_response()
}

async fn web_api(
    State((shared, address)): State<(Arc<Shared>, SocketAddr)>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    let form = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let body: Value = if form {
        url::form_urlencoded::parse(&body)
            .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    match method.as_str() {
        "files.getUploadURLExternal" if token == shared.bot_token => {
            upload_url(&shared, address, &body)
        }
        "files.completeUploadExternal" if token == shared.bot_token => {
            complete_upload(&shared, &body)
        }
        "auth.test" if token == shared.bot_token => answer(&json!({
            "ok": true, "url": "https://troupe-test.slack.com/", "team": "Troupe Test", "user": "troupe",
            "team_id": "T1", "user_id": BOT_USER_ID, "bot_id": "B1", "is_enterprise_install": false
        })),
        "apps.connections.open" if token == shared.app_token => {
            let ticket = uuid_like();
            answer(
                &json!({"ok": true, "url": format!("ws://{address}/link/?ticket={ticket}&app_id=A1")}),
            )
        }
        "chat.postMessage" if token == shared.bot_token => post_message(&shared, &body),
        "auth.test" | "apps.connections.open" | "chat.postMessage" => {
            answer(&json!({"ok": false, "error": "invalid_auth"}))
        }
        _ => answer(&json!({"ok": false, "error": "unknown_method"})),
    }
}

/// `files.getUploadURLExternal`: an address to send `length` bytes to, and the file's id.
fn upload_url(shared: &Shared, address: SocketAddr, body: &Value) -> Response {
    let length = body["length"]
        .as_str()
        .and_then(|length| length.parse::<usize>().ok());
    let (Some(length), Some(_)) = (length, body["filename"].as_str()) else {
        return answer(&json!({"ok": false, "error": "invalid_arguments"}));
    };
    let mut uploads = shared.uploads.lock().expect("uploads");
    let file_id = format!("FUP{}", uploads.len() + 1);
    uploads.insert(file_id.clone(), (length, None));
    answer(&json!({"ok": true, "file_id": file_id,
        "upload_url": format!("http://{address}/upload/v1/{file_id}")}))
}

/// The bytes of an upload, which must be as long as promised.
async fn upload(
    State((shared, _)): State<(Arc<Shared>, SocketAddr)>,
    Path(file): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let mut uploads = shared.uploads.lock().expect("uploads");
    match uploads.get_mut(&file) {
        Some((length, sent)) if *length == body.len() => {
            *sent = Some(body.to_vec());
            (StatusCode::OK, "OK - 200").into_response()
        }
        Some(_) => (
            StatusCode::BAD_REQUEST,
            "the length differs from the one given",
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `files.completeUploadExternal`: uploaded files shared into `channel_id`.
fn complete_upload(shared: &Shared, body: &Value) -> Response {
    let files: Value = body["files"]
        .as_str()
        .and_then(|files| serde_json::from_str(files).ok())
        .unwrap_or(Value::Null);
    let Some(ids) = files.as_array().filter(|files| !files.is_empty()) else {
        return answer(&json!({"ok": false, "error": "invalid_arguments"}));
    };
    let uploads = shared.uploads.lock().expect("uploads");
    let mut completed = Vec::new();
    for file in ids {
        let Some((_, Some(bytes))) = file["id"].as_str().and_then(|id| uploads.get(id)) else {
            return answer(&json!({"ok": false, "error": "file_not_found"}));
        };
        completed.push((body.clone(), bytes.clone()));
    }
    shared.shared.lock().expect("shared").extend(completed);
    shared.news.notify_waiters();
    answer(&json!({"ok": true, "files": ids}))
}

/// A file's download: its bytes to the bot token; without it, Slack's sign-in page.
async fn file_download(
    State((shared, _)): State<(Arc<Shared>, SocketAddr)>,
    Path((file, _name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        == Some(shared.bot_token.as_str());
    shared.downloads.lock().expect("downloads").push(authorized);
    if !authorized {
        return (
            [("content-type", "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><body>Sign in to Slack</body></html>",
        )
            .into_response();
    }
    match shared.files.lock().expect("files").get(&file) {
        Some((bytes, mime)) => ([("content-type", mime.clone())], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}

fn post_message(shared: &Shared, body: &Value) -> Response {
    match shared.failures.lock().expect("failures").pop_front() {
        Some(PostFailure::RateLimited(seconds)) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", seconds.to_string())],
                axum::Json(json!({"ok": false, "error": "ratelimited"})),
            )
                .into_response();
        }
        Some(PostFailure::InternalError) => {
            return answer(&json!({"ok": false, "error": "internal_error"}));
        }
        None => {}
    }
    let Some(channel) = body["channel"]
        .as_str()
        .filter(|channel| !channel.is_empty())
    else {
        return answer(&json!({"ok": false, "error": "channel_not_found"}));
    };
    let text = body["text"].as_str().unwrap_or_default();
    if text.trim().is_empty() {
        return answer(&json!({"ok": false, "error": "no_text"}));
    }
    if text.chars().count() > 40_000 {
        return answer(&json!({"ok": false, "error": "msg_too_long"}));
    }
    let mut posted = shared.posted.lock().expect("posted");
    posted.push(body.clone());
    let ts = format!("1795100000.{:06}", posted.len());
    answer(&json!({"ok": true, "channel": channel, "ts": ts,
                   "message": {"type": "message", "user": BOT_USER_ID, "text": text, "ts": ts}}))
}

async fn socket(
    State((shared, _)): State<(Arc<Shared>, SocketAddr)>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| serve_socket(shared, socket))
}

async fn serve_socket(shared: Arc<Shared>, mut socket: WebSocket) {
    *shared.connections.lock().expect("connections") += 1;
    let hello = json!({"type": "hello", "num_connections": 1,
        "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
        "connection_info": {"app_id": "A1"}});
    if socket.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    let mut sent_ids: Vec<String> = Vec::new();
    loop {
        // Send what is pending and not yet sent on this connection.
        let pending: Vec<Value> = shared
            .envelopes
            .lock()
            .expect("envelopes")
            .iter()
            .cloned()
            .collect();
        for envelope in pending {
            let id = envelope["envelope_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if sent_ids.contains(&id) {
                continue;
            }
            if socket
                .send(Message::text(envelope.to_string()))
                .await
                .is_err()
            {
                return;
            }
            sent_ids.push(id);
        }
        tokio::select! {
            () = shared.news.notified() => {}
            () = shared.disconnect.notified() => {
                let frame = json!({"type": "disconnect", "reason": "refresh_requested",
                                   "debug_info": {"host": "applink-fake"}});
                let _ = socket.send(Message::text(frame.to_string())).await;
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { return };
                if let Message::Text(text) = message
                    && let Ok(ack) = serde_json::from_str::<Value>(text.as_str())
                    && let Some(id) = ack["envelope_id"].as_str()
                {
                    shared.acks.lock().expect("acks").push(id.to_owned());
                    shared.envelopes.lock().expect("envelopes").retain(|envelope| envelope["envelope_id"] != id);
                }
            }
        }
    }
}
