//! A faithful test double of Discord's side of a bot:
//! - REST (`/api/v10`): `GET gateway/bot`, `POST channels/{id}/messages` (2000-character
//!   limit, `nonce` + `enforce_nonce` deduplication, rate-limit headers per route, scripted
//!   429 with `retry_after`; voice messages as `multipart/form-data`: `payload_json` with
//!   the `IS_VOICE_MESSAGE` flag and one `.ogg` attachment with `duration_secs` and a
//!   base64 `waveform` of at most 256 points, no content, and `files[0]`),
//!   `POST channels/{id}/typing`, and the interaction webhooks
//!   (`PATCH webhooks/{app}/{token}/messages/@original`, `POST webhooks/{app}/{token}`);
//! - the Gateway WebSocket: `Hello`, `Identify` → `READY` (or close 4004 for a bad token),
//!   heartbeats ACKed, `MESSAGE_CREATE` dispatches with sequence numbers, `Reconnect`
//!   (op 7) on demand, and `Resume` replaying what came after the client's sequence;
//! - the interactions sender, signing with an Ed25519 key as Discord does (and sending bad
//!   signatures on purpose).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const BOT_ID: &str = "999000000000000001";
pub const APPLICATION_ID: &str = "999000000000000002";

#[derive(Default)]
struct Shared {
    token: String,
    /// Every dispatched event with its sequence number, for resumes.
    events: Mutex<Vec<(u64, Value)>>,
    posted: Mutex<Vec<Value>>,
    /// Voice messages' recordings, by the index of their message in `posted`.
    voices: Mutex<Vec<(usize, Vec<u8>)>>,
    interaction_replies: Mutex<Vec<(String, Value)>>,
    typing: Mutex<u32>,
    rate_limits: Mutex<u32>,
    identifies: Mutex<u32>,
    resumes: Mutex<u32>,
    news: Notify,
    reconnect: Notify,
    address: Mutex<Option<SocketAddr>>,
    /// Attachments users sent, by their CDN path.
    attachments: Mutex<std::collections::HashMap<String, Vec<u8>>>,
}

pub struct FakeDiscord {
    address: SocketAddr,
    shared: Arc<Shared>,
    key: SigningKey,
    server: tokio::task::JoinHandle<()>,
    next_id: Mutex<u64>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeDiscord {
    pub async fn start(token: &str) -> Self {
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            ..Shared::default()
        });
        let (listener, address) = crate::loopback_listener().await;
        *shared.address.lock().expect("address") = Some(address);
        let router = Router::new()
            .route("/api/v10/gateway/bot", get(gateway_bot))
            .route("/api/v10/channels/{channel}/messages", post(create_message))
            .route("/api/v10/channels/{channel}/typing", post(typing))
            .route(
                "/api/v10/webhooks/{app}/{token}/messages/@original",
                patch(interaction_reply),
            )
            .route("/api/v10/webhooks/{app}/{token}", post(interaction_reply))
            .route("/gateway/", get(gateway))
            .route("/attachments/{channel}/{id}/{name}", get(attachment))
            .with_state(Arc::clone(&shared));
        let server = crate::serve(listener, router);
        Self {
            address,
            shared,
            key: SigningKey::from_bytes(&[7; 32]),
            server,
            next_id: Mutex::new(1_219_999_999_999_999_000),
        }
    }

    /// The `api_base` a bridge is configured with.
    pub fn api_base(&self) -> String {
        format!("http://{}/api/v10", self.address)
    }

    /// The `cdn_base` a bridge is configured with: where attachments are served.
    pub fn cdn_base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A user sends a voice message (`recording`: Ogg Opus) in a DM channel, as Discord's
    /// apps do: an attachment `voice-message.ogg` of type `audio/ogg` on the CDN.
    pub fn user_sends_voice(&self, channel: &str, user: &str, recording: Vec<u8>) -> Value {
        let id = self.next_id();
        let path = format!("/attachments/{channel}/{id}/voice-message.ogg");
        let attachment = json!({"id": id, "filename": "voice-message.ogg", "content_type": "audio/ogg",
            "size": recording.len(), "url": format!("{}{path}", self.cdn_base()), "duration_secs": 2.0});
        self.shared
            .attachments
            .lock()
            .expect("attachments")
            .insert(path, recording);
        let event = json!({"id": id, "channel_id": channel, "author": {"id": user, "username": format!("user{user}")},
            "content": "", "mentions": [], "timestamp": "2026-11-27T12:00:00.000000+00:00",
            "attachments": [attachment], "flags": 8192});
        self.dispatch_message(event)
    }

    /// The application's public key, hex (for `public_key`).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    fn next_id(&self) -> String {
        let mut next = self.next_id.lock().expect("ids");
        *next += 1;
        next.to_string()
    }

    /// A user writes in a DM channel (`guild` absent) or a server channel.
    pub fn user_writes(
        &self,
        channel: &str,
        guild: Option<&str>,
        user: &str,
        content: &str,
        mention_bot: bool,
    ) -> Value {
        let mentions = if mention_bot {
            json!([{"id": BOT_ID, "username": "troupe", "bot": true}])
        } else {
            json!([])
        };
        let mut event = json!({"id": self.next_id(), "channel_id": channel, "author": {"id": user, "username": format!("user{user}")},
            "content": content, "mentions": mentions, "timestamp": "2026-11-27T12:00:00.000000+00:00", "attachments": []});
        if let Some(guild) = guild {
            event["guild_id"] = json!(guild);
        }
        self.dispatch_message(event)
    }

    /// Dispatches `event` as a `MESSAGE_CREATE`; answers it.
    fn dispatch_message(&self, event: Value) -> Value {
        let mut events = self.shared.events.lock().expect("events");
        let sequence = events.last().map_or(2, |(sequence, _)| sequence + 1);
        events.push((
            sequence,
            json!({"op": 0, "s": sequence, "t": "MESSAGE_CREATE", "d": event}),
        ));
        drop(events);
        self.shared.news.notify_one();
        event
    }

    /// Dispatches the last `MESSAGE_CREATE` again under a new sequence number (as after a
    /// session that could not be resumed).
    pub fn redeliver_last(&self) {
        let mut events = self.shared.events.lock().expect("events");
        let Some((sequence, event)) = events.last().cloned() else {
            return;
        };
        let mut again = event;
        again["s"] = json!(sequence + 1);
        events.push((sequence + 1, again));
        drop(events);
        self.shared.news.notify_one();
    }

    /// Sends op 7 Reconnect on the open connection (then closes it).
    pub fn ask_to_reconnect(&self) {
        self.shared.reconnect.notify_one();
    }

    /// The recordings of the voice messages posted, with their messages.
    pub fn voice_messages(&self) -> Vec<(Value, Vec<u8>)> {
        let posted = self.posted();
        self.shared
            .voices
            .lock()
            .expect("voices")
            .iter()
            .map(|(index, recording)| (posted[*index].clone(), recording.clone()))
            .collect()
    }

    pub fn posted(&self) -> Vec<Value> {
        self.shared.posted.lock().expect("posted").clone()
    }

    pub fn interaction_replies(&self) -> Vec<(String, Value)> {
        self.shared
            .interaction_replies
            .lock()
            .expect("replies")
            .clone()
    }

    /// (identifies, resumes) seen on the gateway.
    pub fn sessions(&self) -> (u32, u32) {
        (
            *self.shared.identifies.lock().expect("count"),
            *self.shared.resumes.lock().expect("count"),
        )
    }

    pub fn typing_calls(&self) -> u32 {
        *self.shared.typing.lock().expect("typing")
    }

    /// Makes the next `count` message creations answer 429.
    pub fn rate_limit_next(&self, count: u32) {
        *self.shared.rate_limits.lock().expect("limits") = count;
    }

    /// POSTs an interaction as Discord does; `valid` false sends a bad signature.
    pub async fn send_interaction(
        &self,
        url: &str,
        interaction: &Value,
        valid: bool,
    ) -> (u16, String) {
        let body = interaction.to_string();
        let timestamp = "1795000000";
        let mut signature = self
            .key
            .sign([timestamp.as_bytes(), body.as_bytes()].concat().as_slice())
            .to_bytes();
        if !valid {
            signature[0] ^= 0xff;
        }
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("X-Signature-Ed25519", hex::encode(signature))
            .header("X-Signature-Timestamp", timestamp)
            .body(body)
            .send()
            .await
            .expect("the bridge answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// An `/ask question:<text>` command from `user` in `channel` of `guild`.
    pub fn ask_interaction(&self, channel: &str, guild: &str, user: &str, question: &str) -> Value {
        json!({"id": self.next_id(), "application_id": APPLICATION_ID, "type": 2, "token": format!("itoken-{}", self.next_id()),
               "version": 1, "channel_id": channel, "guild_id": guild,
               "member": {"user": {"id": user, "username": format!("user{user}")}, "roles": []},
               "data": {"id": "cmd1", "name": "ask", "type": 1, "options": [{"name": "question", "type": 3, "value": question}]}})
    }

    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&Self) -> bool) {
        crate::poll_until(limit, || (), |()| done(self)).await;
    }
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(format!("Bot {}", shared.token).as_str())
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"message": "401: Unauthorized", "code": 0})),
    )
        .into_response()
}

async fn gateway_bot(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let address = shared.address.lock().expect("address").expect("bound");
    axum::Json(json!({"url": format!("ws://{address}/gateway"), "shards": 1,
        "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}}))
    .into_response()
}

fn invalid_form(field: &str, message: &str) -> Response {
    let error = json!({"message": "Invalid Form Body", "code": 50035,
        "errors": {field: {"_errors": [{"code": "INVALID", "message": message}]}}});
    (StatusCode::BAD_REQUEST, axum::Json(error)).into_response()
}

/// A voice message's `payload_json` and `files[0]`, checked as Discord checks them.
async fn voice_message(request: axum::extract::Request) -> Result<(Value, Vec<u8>), Response> {
    use axum::extract::FromRequest;
    use base64::Engine as _;
    let mut form = axum::extract::Multipart::from_request(request, &())
        .await
        .map_err(|_| invalid_form("payload_json", "not multipart"))?;
    let (mut payload, mut file) = (None, None);
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("payload_json") => payload = field.text().await.ok(),
            Some("files[0]") => file = field.bytes().await.ok(),
            _ => {}
        }
    }
    let payload: Value = payload
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or_else(|| invalid_form("payload_json", "payload_json is required"))?;
    let file = file.ok_or_else(|| invalid_form("files[0]", "a voice message needs its file"))?;
    let flags = payload["flags"].as_u64().unwrap_or(0);
    let attachments = payload["attachments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let [attachment] = attachments.as_slice() else {
        return Err(invalid_form(
            "attachments",
            "a voice message has exactly one attachment",
        ));
    };
    let waveform = attachment["waveform"]
        .as_str()
        .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok());
    let valid = flags & (1 << 13) != 0
        && payload["content"].as_str().unwrap_or_default().is_empty()
        && attachment["id"] == "0"
        && attachment["filename"]
            .as_str()
            .is_some_and(|name| name.ends_with(".ogg"))
        && attachment["duration_secs"]
            .as_f64()
            .is_some_and(|seconds| seconds > 0.0)
        && waveform.is_some_and(|points| !points.is_empty() && points.len() <= 256)
        && file.starts_with(b"OggS");
    if !valid {
        return Err(invalid_form("attachments", "not a valid voice message"));
    }
    Ok((payload, file.to_vec()))
}

async fn create_message(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let headers = request.headers().clone();
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let multipart = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("multipart/form-data"));
    let (voice, body) = if multipart {
        match voice_message(request).await {
            Ok((payload, recording)) => (Some(recording), payload),
            Err(refused) => return refused,
        }
    } else {
        let Ok(bytes) = axum::body::to_bytes(request.into_body(), 1 << 20).await else {
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        };
        let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"message": "400: Bad Request", "code": 0})),
            )
                .into_response();
        };
        (None, body)
    };
    let bucket_headers = |remaining: u32| {
        [
            ("x-ratelimit-limit", "5".to_owned()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset-after", "0.200".to_owned()),
            ("x-ratelimit-bucket", format!("bucket-{channel}")),
        ]
    };
    {
        let mut limits = shared.rate_limits.lock().expect("limits");
        if *limits > 0 {
            *limits -= 1;
            let body = json!({"message": "You are being rate limited.", "retry_after": 0.3, "global": false});
            return (
                StatusCode::TOO_MANY_REQUESTS,
                bucket_headers(0),
                axum::Json(body),
            )
                .into_response();
        }
    }
    let content = body["content"].as_str().unwrap_or_default();
    if voice.is_none() && (content.is_empty() || content.chars().count() > 2000) {
        let error = json!({"message": "Invalid Form Body", "code": 50035,
            "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}}});
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    let mut posted = shared.posted.lock().expect("posted");
    if body["enforce_nonce"] == true
        && let Some(existing) = posted
            .iter()
            .find(|earlier| earlier["nonce"] == body["nonce"] && earlier["channel_id"] == channel)
    {
        // Discord answers the message created with this nonce instead of a new one.
        return (
            StatusCode::OK,
            bucket_headers(4),
            axum::Json(existing.clone()),
        )
            .into_response();
    }
    let mut message = body.clone();
    message["id"] = json!(format!("80{:016}", posted.len()));
    message["channel_id"] = json!(channel);
    message["author"] = json!({"id": BOT_ID, "username": "troupe", "bot": true});
    if let Some(recording) = voice {
        shared
            .voices
            .lock()
            .expect("voices")
            .push((posted.len(), recording));
    }
    posted.push(message.clone());
    (StatusCode::OK, bucket_headers(4), axum::Json(message)).into_response()
}

async fn typing(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    *shared.typing.lock().expect("typing") += 1;
    StatusCode::NO_CONTENT.into_response()
}

async fn interaction_reply(
    State(shared): State<Arc<Shared>>,
    Path(params): Path<Vec<(String, String)>>,
    body: axum::body::Bytes,
) -> Response {
    let token = params
        .iter()
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared
        .interaction_replies
        .lock()
        .expect("replies")
        .push((token, body.clone()));
    axum::Json(json!({"id": "81", "content": body["content"]})).into_response()
}

/// The events dispatched after sequence number `delivered`.
fn events_after(shared: &Shared, delivered: u64) -> Vec<(u64, Value)> {
    shared
        .events
        .lock()
        .expect("events")
        .iter()
        .filter(|(sequence, _)| *sequence > delivered)
        .cloned()
        .collect()
}

async fn gateway(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| serve_gateway(shared, socket))
}

async fn send(socket: &mut WebSocket, payload: &Value) -> bool {
    socket
        .send(Message::text(payload.to_string()))
        .await
        .is_ok()
}

async fn serve_gateway(shared: Arc<Shared>, mut socket: WebSocket) {
    if !send(
        &mut socket,
        &json!({"op": 10, "d": {"heartbeat_interval": 1000}, "s": null, "t": null}),
    )
    .await
    {
        return;
    }
    let Some(Ok(Message::Text(opening))) = socket.recv().await else {
        return;
    };
    let opening: Value = serde_json::from_str(opening.as_str()).unwrap_or(Value::Null);
    if opening["d"]["token"] != shared.token.as_str() {
        let close = CloseFrame {
            code: 4004,
            reason: "Authentication failed.".into(),
        };
        let _ = socket.send(Message::Close(Some(close))).await;
        return;
    }
    let mut delivered = match opening["op"].as_u64() {
        Some(2) => {
            *shared.identifies.lock().expect("count") += 1;
            let address = shared.address.lock().expect("address").expect("bound");
            let ready = json!({"op": 0, "s": 1, "t": "READY", "d": {"v": 10, "session_id": "session-1",
                "resume_gateway_url": format!("ws://{address}/gateway"),
                "user": {"id": BOT_ID, "username": "troupe", "bot": true}, "guilds": [], "application": {"id": APPLICATION_ID}}});
            if !send(&mut socket, &ready).await {
                return;
            }
            // A fresh session gets only what happens from now on.
            shared
                .events
                .lock()
                .expect("events")
                .last()
                .map_or(1, |(sequence, _)| *sequence)
        }
        Some(6) if opening["d"]["session_id"] == "session-1" => {
            *shared.resumes.lock().expect("count") += 1;
            opening["d"]["seq"].as_u64().unwrap_or(1)
        }
        _ => {
            let _ = send(&mut socket, &json!({"op": 9, "d": false})).await;
            return;
        }
    };
    if opening["op"] == 6 {
        // Replay what the client missed, then say RESUMED.
        let missed = events_after(&shared, delivered);
        for (sequence, event) in missed {
            if !send(&mut socket, &event).await {
                return;
            }
            delivered = sequence;
        }
        if !send(
            &mut socket,
            &json!({"op": 0, "s": delivered, "t": "RESUMED", "d": {}}),
        )
        .await
        {
            return;
        }
    }
    loop {
        let pending = events_after(&shared, delivered);
        for (sequence, event) in pending {
            if !send(&mut socket, &event).await {
                return;
            }
            delivered = sequence;
        }
        tokio::select! {
            () = shared.news.notified() => {}
            () = shared.reconnect.notified() => {
                let _ = send(&mut socket, &json!({"op": 7, "d": null})).await;
                let close = CloseFrame { code: 4000, reason: "reconnect".into() };
                let _ = socket.send(Message::Close(Some(close))).await;
                return;
            }
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { return };
                if let Message::Text(text) = message
                    && serde_json::from_str::<Value>(text.as_str()).is_ok_and(|payload| payload["op"] == 1)
                    && !send(&mut socket, &json!({"op": 11})).await
                {
                    return;
                }
            }
        }
    }
}

/// `GET /attachments/…`: a file users sent, as Discord's CDN serves it.
async fn attachment(
    State(shared): State<Arc<Shared>>,
    Path((channel, id, name)): Path<(String, String, String)>,
) -> Response {
    let path = format!("/attachments/{channel}/{id}/{name}");
    match shared.attachments.lock().expect("attachments").get(&path) {
        Some(file) => file.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
