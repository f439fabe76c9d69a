//! Slack: the Events API over HTTP (every request's `X-Slack-Signature` checked, v0 HMAC
//! of `v0:{timestamp}:{body}` with the signing secret, timestamps older than five minutes
//! refused, `url_verification` answered, Slack's retries recognised) or Socket Mode; DMs
//! and mentions in channels; replies with `chat.postMessage` in `mrkdwn`, in the thread
//! of the question, honouring `429 Retry-After`.

pub mod config;
mod mapping;
mod socket;

use std::time::Duration;

use serde_json::{Value, json};
use troupe_actors::bridge::{
    Bridge, BridgeContext, BridgeError, BridgeErrorKind, Capabilities, Delivery, MarkdownDialect,
    WebhookRequest, WebhookResponse,
};
use troupe_actors::message::{Attachment, unix_now};
use troupe_actors::voice::VoiceNote;

use self::config::{SlackMode, SlackSettings};
use self::mapping::EventBody;
use crate::common::{SentPieces, http_client, receive_pushed, request_failed};
use crate::signing;
use crate::text::split_chars as split;

/// Slack shows messages up to 40,000 characters but recommends 4,000.
const MAX_MESSAGE_CHARS: usize = 4000;
/// Requests older (or newer) than this are refused: replays.
const MAX_SKEW_SECS: u64 = 300;

pub struct SlackBridge {
    settings: SlackSettings,
    http: reqwest::Client,
    /// Pieces of a long reply already sent, by reply id.
    sent_pieces: SentPieces,
}

impl SlackBridge {
    pub fn new(settings: SlackSettings) -> Self {
        Self {
            settings,
            http: http_client(),
            sent_pieces: SentPieces::default(),
        }
    }

    async fn call(&self, method: &str, token: &str, body: &Value) -> Result<Value, BridgeError> {
        let request = self
            .http
            .post(format!("{}/{method}", self.settings.api_base))
            .bearer_auth(token)
            .json(body);
        self.answer(method, request).await
    }

    /// A Web API method that takes its arguments form-encoded (the file uploads), with the
    /// bot token.
    async fn bot_form(&self, method: &str, form: &[(&str, &str)]) -> Result<Value, BridgeError> {
        let request = self
            .http
            .post(format!("{}/{method}", self.settings.api_base))
            .bearer_auth(self.settings.bot_token.expose())
            .form(form);
        self.answer(method, request).await
    }

    /// Sends `request` and reads Slack's answer: `{"ok": true, …}`, or its error by kind.
    async fn answer(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, BridgeError> {
        let response = request
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|error| request_failed(&format!("slack {method}"), &error))?;
        if response.status().as_u16() == 429 {
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(1);
            return Err(BridgeError::rate_limited(
                Duration::from_secs(wait),
                format!("slack {method}: rate limited"),
            ));
        }
        if response.status().is_server_error() {
            return Err(BridgeError::new(
                BridgeErrorKind::Transient,
                format!("slack {method}: {}", response.status()),
            ));
        }
        let answer: Value = response.json().await.map_err(|error| {
            BridgeError::new(
                BridgeErrorKind::Malformed,
                format!("slack {method}: {error}"),
            )
        })?;
        if answer["ok"] == true {
            return Ok(answer);
        }
        let error = answer["error"].as_str().unwrap_or("unknown_error");
        let message = format!("slack {method}: {error}");
        Err(match error {
            "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked"
            | "token_expired" | "missing_scope" => {
                BridgeError::new(BridgeErrorKind::Unauthorized, message)
            }
            "ratelimited" => BridgeError::rate_limited(Duration::from_secs(1), message),
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                BridgeError::new(BridgeErrorKind::Transient, message)
            }
            _ => BridgeError::new(BridgeErrorKind::Rejected, message),
        })
    }

    async fn app_call(&self, method: &str) -> Result<Value, BridgeError> {
        let token = self
            .settings
            .app_token
            .as_ref()
            .map(|token| token.expose().to_owned())
            .unwrap_or_default();
        self.call(method, &token, &json!({})).await
    }

    async fn bot_call(&self, method: &str, body: &Value) -> Result<Value, BridgeError> {
        self.call(method, self.settings.bot_token.expose(), body)
            .await
    }

    fn authentic(&self, request: &WebhookRequest) -> Result<(), WebhookResponse> {
        let refuse = |message: &str| WebhookResponse::error(401, "unauthorized", message);
        let Some(secret) = &self.settings.signing_secret else {
            return Err(WebhookResponse::error(
                404,
                "not_found",
                "this bridge uses Socket Mode",
            ));
        };
        let timestamp = request
            .header("x-slack-request-timestamp")
            .ok_or_else(|| refuse("X-Slack-Request-Timestamp is missing"))?;
        if !signing::fresh(timestamp, unix_now(), MAX_SKEW_SECS) {
            return Err(refuse(
                "X-Slack-Request-Timestamp is more than five minutes away",
            ));
        }
        let signature = request.header("x-slack-signature").unwrap_or_default();
        let base: [&[u8]; 4] = [b"v0:", timestamp.trim().as_bytes(), b":", &request.body];
        if signing::verify(secret.expose().as_bytes(), &base, "v0=", signature) {
            Ok(())
        } else {
            Err(refuse("X-Slack-Signature does not match"))
        }
    }
}

#[async_trait::async_trait]
impl Bridge for SlackBridge {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_chars: MAX_MESSAGE_CHARS,
            markdown: MarkdownDialect::SlackMrkdwn,
            threads: true,
            typing_indicator: false,
            edits_for_streaming: true,
            attachments: true,
        }
    }

    async fn run(&self, context: &BridgeContext) -> Result<(), BridgeError> {
        // Prove the bot token before saying "connected".
        self.bot_call("auth.test", &json!({})).await?;
        match self.settings.mode {
            SlackMode::Events => context.accept_pushes_until_shutdown().await,
            SlackMode::Socket => self.run_socket_mode(context).await,
        }
    }

    /// A file shared with the bot, from Slack's file host with the bot token (which needs
    /// the `files:read` scope); the token goes to no other host.
    async fn fetch_attachment(
        &self,
        attachment: &Attachment,
        max_bytes: u64,
    ) -> Result<Vec<u8>, BridgeError> {
        let url =
            crate::common::url_under(attachment, &self.settings.files_base, "Slack's file host")?;
        let request = self
            .http
            .get(url)
            .bearer_auth(self.settings.bot_token.expose());
        let response = request
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|error| request_failed("slack file", &error))?;
        // Without `files:read`, Slack answers a file's address with its sign-in page.
        let html = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/html"));
        if html {
            return Err(BridgeError::new(
                BridgeErrorKind::Rejected,
                "Slack answered with a web page instead of the file: give the app the files:read scope",
            ));
        }
        crate::common::read_limited(response, max_bytes, "slack file").await
    }

    /// The reply spoken, shared as an audio file in the conversation before its text
    /// (Slack's upload: `files.getUploadURLExternal`, the bytes to the address it gives,
    /// which must be on Slack's file host, then `files.completeUploadExternal`; the app
    /// needs `files:write`).
    async fn deliver_voice(
        &self,
        delivery: &Delivery,
        note: &VoiceNote,
    ) -> Result<(), BridgeError> {
        let send = async {
            let recording = note.recording();
            let length = recording.len().to_string();
            let upload = self
                .bot_form(
                    "files.getUploadURLExternal",
                    &[("filename", "voice-reply.ogg"), ("length", &length)],
                )
                .await?;
            let (Some(address), Some(file_id)) =
                (upload["upload_url"].as_str(), upload["file_id"].as_str())
            else {
                return Err(BridgeError::new(
                    BridgeErrorKind::Malformed,
                    "slack files.getUploadURLExternal: no upload_url or file_id",
                ));
            };
            if !address.starts_with(&self.settings.files_base) {
                return Err(BridgeError::new(
                    BridgeErrorKind::Rejected,
                    "slack gave an upload address off its file host",
                ));
            }
            let response = self
                .http
                .post(address)
                .header(reqwest::header::CONTENT_TYPE, "audio/ogg")
                .body(recording.to_vec())
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .map_err(|error| request_failed("slack file upload", &error))?;
            crate::common::read_limited(response, 64 * 1024, "slack file upload").await?;
            let files = json!([{"id": file_id, "title": "Voice reply"}]).to_string();
            let destination = &delivery.destination;
            let mut form = vec![
                ("files", files.as_str()),
                ("channel_id", destination.chat_id.as_str()),
            ];
            if let Some(thread) = &destination.thread_id {
                form.push(("thread_ts", thread.as_str()));
            }
            self.bot_form("files.completeUploadExternal", &form).await?;
            Ok(())
        };
        self.sent_pieces.voice_once(&delivery.reply_id, send).await
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<(), BridgeError> {
        let pieces = split(&mapping::to_mrkdwn(&delivery.text), MAX_MESSAGE_CHARS);
        let done = self.sent_pieces.already(&delivery.reply_id);
        for (index, piece) in pieces.iter().enumerate().skip(done) {
            let mut body =
                json!({"channel": delivery.destination.chat_id, "text": piece, "mrkdwn": true});
            if let Some(thread) = &delivery.destination.thread_id {
                body["thread_ts"] = json!(thread);
            }
            self.bot_call("chat.postMessage", &body).await?;
            self.sent_pieces.sent(&delivery.reply_id, index + 1);
        }
        self.sent_pieces.finished(&delivery.reply_id);
        Ok(())
    }

    /// Slack's Events API and interactivity payloads: message text is capped at 40,000
    /// characters and a view at 100 blocks, far under 1 MiB.
    fn webhook_body_limit(&self) -> Option<usize> {
        Some(1024 * 1024)
    }

    async fn webhook(&self, request: WebhookRequest, context: &BridgeContext) -> WebhookResponse {
        if request.method != "POST" || request.endpoint != "webhook" {
            return WebhookResponse::error(
                405,
                "method_not_allowed",
                "POST /bridges/{name}/webhook only",
            );
        }
        if let Err(refusal) = self.authentic(&request) {
            return refusal;
        }
        let body: EventBody = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(error) => return WebhookResponse::error(400, "invalid_event", &error.to_string()),
        };
        match body.kind.as_str() {
            "url_verification" => WebhookResponse::json(
                200,
                &json!({"challenge": body.challenge.unwrap_or_default()}),
            ),
            "event_callback" => {
                let Some(inbound) = body.event.as_ref().and_then(mapping::inbound) else {
                    return WebhookResponse::json(200, &json!({}));
                };
                // Not stored: Slack retries what was not answered 2xx.
                match receive_pushed(context, inbound).await {
                    Ok(()) => WebhookResponse::json(200, &json!({})),
                    Err(answer) => answer,
                }
            }
            _ => WebhookResponse::json(200, &json!({})),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;
    use troupe_actors::message::ContentType;

    #[tokio::test]
    async fn the_bot_token_goes_to_slacks_file_host_only() {
        let bridge = SlackBridge::new(SlackSettings {
            bot_token: Secret::new("xoxb-test"),
            mode: SlackMode::Events,
            signing_secret: Some(Secret::new("secret")),
            app_token: None,
            api_base: "http://127.0.0.1:9/api".into(),
            files_base: "https://files.slack.com/".into(),
        });
        for url in [
            "https://evil.example/files-pri/T1-F1/download/clip.webm",
            "https://files.slack.com.evil.example/clip.webm",
        ] {
            let attachment = Attachment {
                content_type: ContentType::Audio,
                url: Some(url.into()),
                name: None,
                mime_type: Some("audio/webm".into()),
                size_bytes: Some(10),
                upload_id: None,
            };
            let refused = bridge
                .fetch_attachment(&attachment, 1_000)
                .await
                .unwrap_err();
            assert_eq!(refused.kind, BridgeErrorKind::Rejected, "{url}");
        }
    }

    #[test]
    fn long_replies_split_within_slacks_limit() {
        let text = "word ".repeat(2000);
        let pieces = split(&text, MAX_MESSAGE_CHARS);
        assert_eq!(pieces.len(), 3);
        assert!(
            pieces
                .iter()
                .all(|piece| piece.chars().count() <= MAX_MESSAGE_CHARS)
        );
    }
}
