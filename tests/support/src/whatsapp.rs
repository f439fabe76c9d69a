//! A faithful test double of Meta's side of the WhatsApp Business Cloud API:
//! - the Graph API's `POST /{version}/{phone-number-id}/messages` (bearer token; text
//!   messages up to 4096 characters; `status: read` with a typing indicator), answering
//!   `{"messaging_product":"whatsapp","contacts":[{"input","wa_id"}],"messages":[{"id"}]}`
//!   or Graph errors `{"error":{"message","type","code","error_subcode","fbtrace_id"}}`
//!   (190 bad token, 130429 rate limit, 131047 outside the 24-hour window), scriptable;
//! - media: `GET /{version}/{media-id}` (bearer token) answering the file's `url`,
//!   `mime_type`, `sha256`, `file_size` (a string, as Meta sends it) and `id`, and the
//!   download at that `url` (bearer token); uploads, `POST /{version}/{phone-number-id}/media`
//!   (`multipart/form-data`: `messaging_product`, `type`, `file`), answering its `id`, which
//!   an `audio` message then sends;
//! - the webhook sender: the verification `GET` (`hub.mode`, `hub.verify_token`,
//!   `hub.challenge`) and notifications POSTed with `X-Hub-Signature-256`, as Meta sends.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub const PHONE_NUMBER_ID: &str = "106540352242922";
pub const API_VERSION: &str = "v21.0";

/// A scripted answer to the next `messages` call.
#[derive(Clone, Copy, Debug)]
pub enum GraphFailure {
    /// 429, code 130429 "Rate limit hit".
    RateLimit,
    /// 500, code 2 "Service temporarily unavailable".
    Unavailable,
    /// 400, code 131047: more than 24 hours since the customer wrote.
    ReEngagement,
}

#[derive(Default)]
struct Shared {
    access_token: String,
    sent: Mutex<Vec<Value>>,
    read_receipts: Mutex<Vec<Value>>,
    failures: Mutex<VecDeque<GraphFailure>>,
    /// Media users sent, by id.
    media: Mutex<std::collections::HashMap<String, Vec<u8>>>,
    /// Media the business uploaded, by id.
    uploads: Mutex<std::collections::HashMap<String, Vec<u8>>>,
    /// Downloads serve other bytes than the `sha256` said (a damaged transfer).
    damage_downloads: std::sync::atomic::AtomicBool,
    /// Where this double listens, for the media `url`s it answers.
    address: std::sync::OnceLock<std::net::SocketAddr>,
}

pub struct FakeWhatsApp {
    address: std::net::SocketAddr,
    shared: Arc<Shared>,
    app_secret: String,
    server: tokio::task::JoinHandle<()>,
    next_message: Mutex<u64>,
}

impl Drop for FakeWhatsApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeWhatsApp {
    pub async fn start(access_token: &str, app_secret: &str) -> Self {
        let shared = Arc::new(Shared {
            access_token: access_token.to_owned(),
            ..Shared::default()
        });
        let (listener, address) = crate::loopback_listener().await;
        let _ = shared.address.set(address);
        let router = Router::new()
            .route("/{version}/{phone}/messages", post(messages))
            .route("/{version}/{phone}/media", post(upload))
            .route("/{version}/{media}", axum::routing::get(media_url))
            .route(
                "/media/{media}/download",
                axum::routing::get(media_download),
            )
            .with_state(Arc::clone(&shared));
        let server = crate::serve(listener, router);
        Self {
            address,
            shared,
            app_secret: app_secret.to_owned(),
            server,
            next_message: Mutex::new(0),
        }
    }

    /// The `api_base` a bridge is configured with.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn fail_next(&self, failures: impl IntoIterator<Item = GraphFailure>) {
        self.shared
            .failures
            .lock()
            .expect("failures")
            .extend(failures);
    }

    /// Text messages accepted, in order.
    pub fn sent(&self) -> Vec<Value> {
        self.shared.sent.lock().expect("sent").clone()
    }

    pub fn texts_to(&self, wa_id: &str) -> Vec<String> {
        self.sent()
            .iter()
            .filter(|body| body["to"] == wa_id && body["type"] == "text")
            .map(|body| body["text"]["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The recordings of the `audio` messages sent to `wa_id`, oldest first.
    pub fn audio_to(&self, wa_id: &str) -> Vec<Vec<u8>> {
        let uploads = self.shared.uploads.lock().expect("uploads");
        self.sent()
            .iter()
            .filter(|body| body["to"] == wa_id && body["type"] == "audio")
            .filter_map(|body| uploads.get(body["audio"]["id"].as_str()?).cloned())
            .collect()
    }

    /// `status: read` calls (with their typing indicators).
    pub fn read_receipts(&self) -> Vec<Value> {
        self.shared.read_receipts.lock().expect("reads").clone()
    }

    /// A notification of one text message from `wa_id`, as Meta sends it.
    pub fn text_notification(&self, wa_id: &str, name: &str, text: &str) -> Value {
        self.notification(wa_id, name, json!({"type": "text", "text": {"body": text}}))
    }

    /// A notification of one voice note (`recording`: Ogg Opus) from `wa_id`, as Meta sends
    /// it; the recording is then downloadable as its media.
    pub fn voice_notification(&self, wa_id: &str, name: &str, recording: Vec<u8>) -> Value {
        let mut media = self.shared.media.lock().expect("media");
        let media_id = format!("{}", 9_000_000 + media.len());
        media.insert(media_id.clone(), recording);
        drop(media);
        let audio = json!({"mime_type": "audio/ogg; codecs=opus", "id": media_id, "voice": true});
        self.notification(wa_id, name, json!({"type": "audio", "audio": audio}))
    }

    /// A notification of one message from `wa_id` whose type and content are `content`.
    fn notification(&self, wa_id: &str, name: &str, content: Value) -> Value {
        let mut next = self.next_message.lock().expect("counter");
        *next += 1;
        let mut message =
            json!({"from": wa_id, "id": format!("wamid.TEST{next:08}"), "timestamp": "1795000000"});
        if let (Some(message), Value::Object(content)) = (message.as_object_mut(), content) {
            message.extend(content);
        }
        json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                "messages": [message]
            }}]}]
        })
    }

    /// From now on, media downloads are damaged: their bytes no longer match their hash.
    pub fn damage_downloads(&self) {
        self.shared
            .damage_downloads
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// A status notification about one of the business's own messages.
    pub fn status_notification(&self, wa_id: &str) -> Value {
        json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                "statuses": [{"id": "wamid.OUT", "status": "delivered", "timestamp": "1795000001",
                              "recipient_id": wa_id, "conversation": {"id": "c1", "origin": {"type": "service"}},
                              "pricing": {"billable": true, "pricing_model": "PMP", "category": "service"}}]
            }}]}]
        })
    }

    /// The `X-Hub-Signature-256` Meta computes for `body`.
    pub fn signature(&self, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.app_secret.as_bytes()).expect("any key");
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("sha256={hex}")
    }

    /// POSTs `notification` to `url` signed as Meta does; answers the status code.
    pub async fn notify(&self, url: &str, notification: &Value) -> u16 {
        let body = notification.to_string();
        reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", self.signature(body.as_bytes()))
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_or(0, |response| response.status().as_u16())
    }
}

/// `POST /{version}/{phone-number-id}/media`: an upload, answered with its id.
async fn upload(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    mut form: axum::extract::Multipart,
) -> Response {
    if !bearer_is(&shared, &headers) {
        return bad_token();
    }
    let (mut product, mut file) = (None, None);
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("messaging_product") => product = field.text().await.ok(),
            Some("file") => {
                let audio = field
                    .content_type()
                    .is_some_and(|kind| kind.starts_with("audio/"));
                file = field.bytes().await.ok().filter(|_| audio);
            }
            _ => {}
        }
    }
    let (Some("whatsapp"), Some(file)) = (product.as_deref(), file) else {
        return bad_parameter("(#100) Invalid parameter");
    };
    let mut uploads = shared.uploads.lock().expect("uploads");
    let id = format!("{}", 7_000_000 + uploads.len());
    uploads.insert(id.clone(), file.to_vec());
    axum::Json(json!({"id": id})).into_response()
}

fn bearer_is(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        == Some(shared.access_token.as_str())
}

/// `GET /{version}/{media-id}`: where to download the media, and what it is.
async fn media_url(
    State(shared): State<Arc<Shared>>,
    Path((_version, media_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !bearer_is(&shared, &headers) {
        return bad_token();
    }
    let media = shared.media.lock().expect("media");
    let Some(file) = media.get(&media_id) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            "GraphMethodException",
            "Unsupported get request",
        );
    };
    let digest: String = sha2::Digest::finalize(<Sha256 as sha2::Digest>::new_with_prefix(file))
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let address = shared.address.get().expect("listening");
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "url": format!("http://{address}/media/{media_id}/download"),
        "mime_type": "audio/ogg", "sha256": digest,
        "file_size": file.len().to_string(), "id": media_id,
    }))
    .into_response()
}

/// The media's bytes, for the bearer of the token.
async fn media_download(
    State(shared): State<Arc<Shared>>,
    Path(media_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !bearer_is(&shared, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let damaged = shared
        .damage_downloads
        .load(std::sync::atomic::Ordering::SeqCst);
    match shared.media.lock().expect("media").get(&media_id) {
        Some(file) if damaged => file
            .iter()
            .map(|byte| byte ^ 1)
            .collect::<Vec<u8>>()
            .into_response(),
        Some(file) => file.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Graph's 401 for a token it does not know.
fn bad_token() -> Response {
    graph_error(
        StatusCode::UNAUTHORIZED,
        190,
        "OAuthException",
        "Invalid OAuth access token",
    )
}

/// Graph's 400 for a missing or malformed parameter.
fn bad_parameter(message: &str) -> Response {
    graph_error(StatusCode::BAD_REQUEST, 100, "OAuthException", message)
}

fn graph_error(status: StatusCode, code: i64, kind: &str, message: &str) -> Response {
    let body = json!({"error": {
        "message": message, "type": kind, "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": message},
        "fbtrace_id": "AbCdEfGhIjK"
    }});
    (status, axum::Json(body)).into_response()
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    Path((version, phone)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if bearer != Some(shared.access_token.as_str()) {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            190,
            "OAuthException",
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    if version != API_VERSION || phone != PHONE_NUMBER_ID {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            "OAuthException",
            "Unsupported post request. Object does not exist",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            "OAuthException",
            "Invalid parameter",
        );
    };
    if body["messaging_product"] != "whatsapp" {
        return bad_parameter("(#100) The parameter messaging_product is required.");
    }
    if body["status"] == "read" {
        shared.read_receipts.lock().expect("reads").push(body);
        return axum::Json(json!({"success": true})).into_response();
    }
    match shared.failures.lock().expect("failures").pop_front() {
        Some(GraphFailure::RateLimit) => {
            return graph_error(
                StatusCode::TOO_MANY_REQUESTS,
                130_429,
                "OAuthException",
                "Rate limit hit",
            );
        }
        Some(GraphFailure::Unavailable) => {
            return graph_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                2,
                "OAuthException",
                "Service temporarily unavailable",
            );
        }
        Some(GraphFailure::ReEngagement) => {
            return graph_error(
                StatusCode::BAD_REQUEST,
                131_047,
                "OAuthException",
                "Re-engagement message",
            );
        }
        None => {}
    }
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    let text = body["text"]["body"].as_str().unwrap_or_default();
    let audio_uploaded = body["audio"]["id"]
        .as_str()
        .is_some_and(|id| shared.uploads.lock().expect("uploads").contains_key(id));
    let well_formed = match body["type"].as_str() {
        Some("text") => !text.is_empty(),
        Some("audio") => audio_uploaded,
        _ => false,
    };
    if to.is_empty() || !well_formed {
        return bad_parameter("(#100) Invalid parameter");
    }
    if text.chars().count() > 4096 {
        return bad_parameter("(#100) Param text['body'] must be at most 4096 characters long.");
    }
    let mut sent = shared.sent.lock().expect("sent");
    sent.push(body.clone());
    let id = format!("wamid.OUT{:08}", sent.len());
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": id}]
    }))
    .into_response()
}
