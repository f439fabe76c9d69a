//! A faithful test double of the Telegram Bot API (<https://core.telegram.org/bots/api>):
//! `POST /bot<token>/<method>` with JSON bodies, answered `{"ok":true,"result":…}` or
//! `{"ok":false,"error_code","description"[,"parameters":{"retry_after"}]}`.
//!
//! Methods: `getMe`, `getUpdates` (long polling; an `offset` confirms every update below
//! it; 409 while a webhook is set), `setWebhook` / `deleteWebhook` (updates are then POSTed
//! to the webhook with `X-Telegram-Bot-Api-Secret-Token`, and retried while it does not
//! answer 2xx), `sendMessage` (`MarkdownV2` parsed as Telegram does, 4096-character limit,
//! threads, reply parameters), `sendChatAction`, `getFile` (with the download at
//! `GET /file/bot<token>/<file_path>`; files over 20 MB are "too big", as Telegram says),
//! `sendVoice` (`multipart/form-data`; the voice must be Ogg, MP3 or M4A). A
//! wrong token gets 401 `Unauthorized`; tests can script 429 flood waits and 5xx answers.

pub mod markdown_v2;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The bot's own identity (`getMe`).
pub const BOT_ID: i64 = 999_000;
pub const BOT_USERNAME: &str = "troupe_test_bot";

/// A scripted failure of the next `sendMessage`.
#[derive(Clone, Copy, Debug)]
pub enum SendFailure {
    /// 429 with `retry_after` seconds.
    FloodWait(u64),
    /// 500 Internal Server Error.
    ServerError,
}

#[derive(Default)]
struct Shared {
    token: String,
    state: Mutex<BotState>,
    news: Notify,
}

#[derive(Default)]
struct BotState {
    /// Updates not yet confirmed by an offset.
    pending: VecDeque<Value>,
    next_update_id: i64,
    next_message_id: i64,
    webhook: Option<(String, String)>,
    sent: Vec<Value>,
    chat_actions: Vec<Value>,
    send_failures: VecDeque<SendFailure>,
    /// Every method called, in order.
    calls: Vec<String>,
    /// The last message a user sent, for redelivery.
    last_message: Option<Value>,
    /// Files users sent, by `file_id`.
    files: std::collections::HashMap<String, Vec<u8>>,
    /// Voice notes the bot sent: the chat and the recording.
    voices: Vec<(i64, Vec<u8>)>,
}

/// The largest file bots may download.
const DOWNLOAD_LIMIT: usize = 20 * 1024 * 1024;

/// The running double.
pub struct FakeTelegram {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    pusher: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.server.abort();
        self.pusher.abort();
    }
}

impl FakeTelegram {
    /// Starts on a free loopback port, accepting `token`.
    pub async fn start(token: &str) -> Self {
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            ..Shared::default()
        });
        shared.state.lock().expect("state").next_update_id = 1000;
        let (listener, address) = crate::loopback_listener().await;
        let router = Router::new()
            .route("/{bot}/{method}", post(call))
            .route("/{bot}/sendVoice", post(send_voice))
            .route("/file/{bot}/{*path}", axum::routing::get(download))
            .with_state(Arc::clone(&shared));
        let server = crate::serve(listener, router);
        let pusher = tokio::spawn(push_to_webhook(Arc::clone(&shared)));
        Self {
            address,
            shared,
            server,
            pusher,
        }
    }

    /// The `api_base` a bridge is configured with.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A user sends a text message in a private chat; answers the update.
    pub fn user_says(&self, user_id: i64, text: &str) -> Value {
        self.push_message(json!({
            "from": {"id": user_id, "is_bot": false, "first_name": format!("User{user_id}")},
            "chat": {"id": user_id, "type": "private", "first_name": format!("User{user_id}")},
            "text": text,
        }))
    }

    /// A user sends a voice note (`recording`: Ogg Opus) in a private chat; answers the
    /// update.
    pub fn user_sends_voice(&self, user_id: i64, recording: Vec<u8>) -> Value {
        let size = recording.len();
        let file_id = {
            let mut state = self.shared.state.lock().expect("state");
            let file_id = format!("voice-{}", state.files.len() + 1);
            state.files.insert(file_id.clone(), recording);
            file_id
        };
        self.push_message(json!({
            "from": {"id": user_id, "is_bot": false, "first_name": format!("User{user_id}")},
            "chat": {"id": user_id, "type": "private", "first_name": format!("User{user_id}")},
            "voice": {
                "file_id": file_id, "file_unique_id": format!("u{file_id}"),
                "duration": 2, "mime_type": "audio/ogg", "file_size": size,
            },
        }))
    }

    /// The voice notes the bot sent to `chat_id`, oldest first.
    pub fn voices_to(&self, chat_id: i64) -> Vec<Vec<u8>> {
        let state = self.shared.state.lock().expect("state");
        state
            .voices
            .iter()
            .filter(|(chat, _)| *chat == chat_id)
            .map(|(_, voice)| voice.clone())
            .collect()
    }

    /// Queues an update carrying `message` (`message_id` and `date` are filled in).
    pub fn push_message(&self, mut message: Value) -> Value {
        let mut state = self.shared.state.lock().expect("state");
        state.next_message_id += 1;
        message["message_id"] = json!(state.next_message_id);
        message["date"] = json!(1_795_000_000);
        state.last_message = Some(message.clone());
        let update = json!({"update_id": state.next_update_id, "message": message});
        state.next_update_id += 1;
        state.pending.push_back(update.clone());
        drop(state);
        self.shared.news.notify_waiters();
        update
    }

    /// Delivers the last message again under a new update id (as after Telegram lost our
    /// confirmation).
    pub fn redeliver_last(&self) {
        let mut state = self.shared.state.lock().expect("state");
        let Some(message) = state.last_message.clone() else {
            return;
        };
        let update = json!({"update_id": state.next_update_id, "message": message});
        state.next_update_id += 1;
        state.pending.push_back(update);
        drop(state);
        self.shared.news.notify_waiters();
    }

    /// Queues a raw update (for malformed input).
    pub fn push_raw_update(&self, update: Value) {
        self.shared
            .state
            .lock()
            .expect("state")
            .pending
            .push_back(update);
        self.shared.news.notify_waiters();
    }

    /// Makes the next `sendMessage` calls fail, in order.
    pub fn fail_next_sends(&self, failures: impl IntoIterator<Item = SendFailure>) {
        self.shared
            .state
            .lock()
            .expect("state")
            .send_failures
            .extend(failures);
    }

    /// Every accepted `sendMessage` body.
    pub fn sent(&self) -> Vec<Value> {
        self.shared.state.lock().expect("state").sent.clone()
    }

    /// The texts of accepted messages to `chat_id`.
    pub fn texts_to(&self, chat_id: i64) -> Vec<String> {
        self.sent()
            .iter()
            .filter(|body| body["chat_id"].to_string().trim_matches('"') == chat_id.to_string())
            .map(|body| body["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub fn chat_actions(&self) -> Vec<Value> {
        self.shared
            .state
            .lock()
            .expect("state")
            .chat_actions
            .clone()
    }

    pub fn calls(&self) -> Vec<String> {
        self.shared.state.lock().expect("state").calls.clone()
    }

    /// Updates not confirmed yet.
    pub fn pending_updates(&self) -> usize {
        self.shared.state.lock().expect("state").pending.len()
    }

    /// The webhook URL set, if any.
    pub fn webhook(&self) -> Option<String> {
        self.shared
            .state
            .lock()
            .expect("state")
            .webhook
            .as_ref()
            .map(|(url, _)| url.clone())
    }

    /// Waits until `done` holds for the accepted messages, up to `limit`.
    pub async fn wait_for_sent(
        &self,
        limit: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        crate::poll_until(limit, || self.sent(), |sent| done(sent)).await
    }
}

fn ok(result: &Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

fn fail(status: StatusCode, description: &str) -> Response {
    let body = json!({"ok": false, "error_code": status.as_u16(), "description": description});
    (status, axum::Json(body)).into_response()
}

async fn call(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if bot.strip_prefix("bot") != Some(shared.token.as_str()) {
        return fail(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(_) => return fail(StatusCode::BAD_REQUEST, "Bad Request: invalid JSON"),
        }
    };
    shared
        .state
        .lock()
        .expect("state")
        .calls
        .push(method.clone());
    match method.as_str() {
        "getMe" => ok(&json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Troupe", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false
        })),
        "getUpdates" => get_updates(&shared, &body).await,
        "setWebhook" => set_webhook(&shared, &body),
        "deleteWebhook" => {
            shared.state.lock().expect("state").webhook = None;
            ok(&json!(true))
        }
        "sendMessage" => send_message(&shared, &body),
        "getFile" => get_file(&shared, &body),
        "sendChatAction" => {
            if body["chat_id"].is_null() || body["action"].is_null() {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: chat_id and action are required",
                );
            }
            shared.state.lock().expect("state").chat_actions.push(body);
            ok(&json!(true))
        }
        _ => fail(StatusCode::NOT_FOUND, "Not Found: method not found"),
    }
}

/// `sendVoice`: a voice note uploaded as `multipart/form-data`.
async fn send_voice(
    State(shared): State<Arc<Shared>>,
    Path(bot): Path<String>,
    mut form: axum::extract::Multipart,
) -> Response {
    if bot.strip_prefix("bot") != Some(shared.token.as_str()) {
        return fail(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let (mut chat_id, mut voice) = (None, None);
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("chat_id") => chat_id = field.text().await.ok(),
            Some("voice") => voice = field.bytes().await.ok(),
            _ => {}
        }
    }
    let (Some(chat_id), Some(voice)) = (chat_id.and_then(|id| id.parse::<i64>().ok()), voice)
    else {
        return fail(
            StatusCode::BAD_REQUEST,
            "Bad Request: chat_id and voice are required",
        );
    };
    let known =
        voice.starts_with(b"OggS") || voice.starts_with(b"ID3") || voice.get(4..8) == Some(b"ftyp");
    if !known {
        return fail(
            StatusCode::BAD_REQUEST,
            "Bad Request: wrong file type of the voice",
        );
    }
    let mut state = shared.state.lock().expect("state");
    state.calls.push("sendVoice".into());
    state.next_message_id += 1;
    let message = json!({"message_id": state.next_message_id, "date": 1_795_000_000,
        "chat": {"id": chat_id, "type": "private"},
        "voice": {"file_id": format!("sent-voice-{}", state.voices.len() + 1), "duration": 2,
                  "mime_type": "audio/ogg", "file_size": voice.len()}});
    state.voices.push((chat_id, voice.to_vec()));
    ok(&message)
}

fn get_file(shared: &Shared, body: &Value) -> Response {
    let Some(file_id) = body["file_id"].as_str() else {
        return fail(StatusCode::BAD_REQUEST, "Bad Request: file_id is required");
    };
    let state = shared.state.lock().expect("state");
    let Some(file) = state.files.get(file_id) else {
        return fail(StatusCode::BAD_REQUEST, "Bad Request: invalid file_id");
    };
    if file.len() > DOWNLOAD_LIMIT {
        return fail(StatusCode::BAD_REQUEST, "Bad Request: file is too big");
    }
    ok(&json!({
        "file_id": file_id, "file_unique_id": format!("u{file_id}"),
        "file_size": file.len(), "file_path": format!("voice/{file_id}.oga"),
    }))
}

/// `GET /file/bot<token>/<file_path>`: the file's bytes.
async fn download(
    State(shared): State<Arc<Shared>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    if bot.strip_prefix("bot") != Some(shared.token.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let file_id = path
        .strip_prefix("voice/")
        .and_then(|name| name.strip_suffix(".oga"));
    let state = shared.state.lock().expect("state");
    match file_id.and_then(|file_id| state.files.get(file_id)) {
        Some(file) => file.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn get_updates(shared: &Shared, body: &Value) -> Response {
    let offset = body["offset"].as_i64().unwrap_or(0);
    let timeout = body["timeout"].as_u64().unwrap_or(0).min(50);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let news = shared.news.notified();
        {
            let mut state = shared.state.lock().expect("state");
            if state.webhook.is_some() {
                return fail(
                    StatusCode::CONFLICT,
                    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                );
            }
            // An offset confirms every update below it: they are gone for good.
            state
                .pending
                .retain(|update| update["update_id"].as_i64().unwrap_or(0) >= offset);
            if !state.pending.is_empty() {
                return ok(&Value::Array(
                    state.pending.iter().take(100).cloned().collect(),
                ));
            }
        }
        if tokio::time::timeout_at(deadline, news).await.is_err() {
            return ok(&json!([]));
        }
    }
}

fn set_webhook(shared: &Shared, body: &Value) -> Response {
    let Some(url) = body["url"].as_str() else {
        return fail(StatusCode::BAD_REQUEST, "Bad Request: url is required");
    };
    if url.is_empty() {
        shared.state.lock().expect("state").webhook = None;
        return ok(&json!(true));
    }
    let secret = body["secret_token"].as_str().unwrap_or_default().to_owned();
    let valid_secret = secret.len() <= 256
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_secret {
        return fail(
            StatusCode::BAD_REQUEST,
            "Bad Request: secret token contains unallowed characters",
        );
    }
    shared.state.lock().expect("state").webhook = Some((url.to_owned(), secret));
    shared.news.notify_waiters();
    ok(&json!(true))
}

fn send_message(shared: &Shared, body: &Value) -> Response {
    let mut state = shared.state.lock().expect("state");
    match state.send_failures.pop_front() {
        Some(SendFailure::FloodWait(seconds)) => {
            let body = json!({
                "ok": false, "error_code": 429,
                "description": format!("Too Many Requests: retry after {seconds}"),
                "parameters": {"retry_after": seconds}
            });
            return (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        }
        Some(SendFailure::ServerError) => {
            return fail(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
        None => {}
    }
    if body["chat_id"].is_null() {
        return fail(StatusCode::BAD_REQUEST, "Bad Request: chat_id is empty");
    }
    let Some(text) = body["text"].as_str() else {
        return fail(
            StatusCode::BAD_REQUEST,
            "Bad Request: message text is empty",
        );
    };
    let visible = match body["parse_mode"].as_str() {
        None => text.to_owned(),
        Some("MarkdownV2") => match markdown_v2::parse(text) {
            Ok(visible) => visible,
            Err(description) => return fail(StatusCode::BAD_REQUEST, &description),
        },
        Some(other) => {
            return fail(
                StatusCode::BAD_REQUEST,
                &format!("Bad Request: unsupported parse_mode {other}"),
            );
        }
    };
    if visible.trim().is_empty() {
        return fail(
            StatusCode::BAD_REQUEST,
            "Bad Request: message text is empty",
        );
    }
    if visible.encode_utf16().count() > 4096 {
        return fail(StatusCode::BAD_REQUEST, "Bad Request: message is too long");
    }
    state.next_message_id += 1;
    let message_id = state.next_message_id;
    state.sent.push(body.clone());
    ok(&json!({
        "message_id": message_id, "date": 1_795_000_000,
        "chat": {"id": body["chat_id"], "type": "private"},
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "Troupe", "username": BOT_USERNAME},
        "text": visible,
    }))
}

/// With a webhook set, POSTs pending updates to it one by one, as Telegram does, retrying
/// an update until the webhook answers 2xx.
async fn push_to_webhook(shared: Arc<Shared>) {
    let http = reqwest::Client::new();
    loop {
        let next = {
            let state = shared.state.lock().expect("state");
            state.webhook.clone().and_then(|webhook| {
                state
                    .pending
                    .front()
                    .cloned()
                    .map(|update| (webhook, update))
            })
        };
        let Some(((url, secret), update)) = next else {
            tokio::select! {
                () = shared.news.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        };
        let answered = http
            .post(&url)
            .header("X-Telegram-Bot-Api-Secret-Token", &secret)
            .json(&update)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        if answered {
            let mut state = shared.state.lock().expect("state");
            if state.pending.front() == Some(&update) {
                state.pending.pop_front();
            }
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
