//! WhatsApp Business Cloud API: Meta calls `GET /bridges/{name}/webhook` once to verify it
//! (`hub.mode=subscribe`, `hub.verify_token`, answered with `hub.challenge`), then POSTs
//! notifications signed with the app secret (`X-Hub-Signature-256: sha256=<hex HMAC of
//! the raw body>`). Replies go out as `POST {graph}/{phone-number-id}/messages` with a
//! bearer token, split at 4096 characters; "typing…" is WhatsApp's typing indicator on
//! the message being answered.

pub mod config;
mod mapping;
mod media;

use std::time::Duration;

use serde_json::{Value, json};
use troupe_actors::bridge::{
    Bridge, BridgeContext, BridgeError, BridgeErrorKind, Capabilities, Delivery, Destination,
    MarkdownDialect, WebhookRequest, WebhookResponse,
};
use troupe_actors::message::Attachment;
use troupe_actors::voice::VoiceNote;

use self::config::WhatsAppSettings;
use self::mapping::Notification;
use crate::common::{SentPieces, http_client, receive_pushed, referenced, request_failed};
use crate::secrets::constant_time_eq;
use crate::signing;
use crate::text::split_chars as split;

/// WhatsApp's limit for one text message.
const MAX_MESSAGE_CHARS: usize = 4096;

pub struct WhatsAppBridge {
    settings: WhatsAppSettings,
    http: reqwest::Client,
    /// Pieces of a long reply already sent, by reply id.
    sent_pieces: SentPieces,
}

impl WhatsAppBridge {
    pub fn new(settings: WhatsAppSettings) -> Self {
        Self {
            settings,
            http: http_client(),
            sent_pieces: SentPieces::default(),
        }
    }

    async fn post_message(&self, body: &Value) -> Result<(), BridgeError> {
        let url = format!(
            "{}/{}/messages",
            self.settings.graph_base, self.settings.phone_number_id
        );
        let response = self
            .http
            .post(url)
            .bearer_auth(self.settings.access_token.expose())
            .json(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|error| request_failed("whatsapp", &error))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(());
        }
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        Err(graph_error(status, &answer["error"]))
    }

    fn verify_subscription(&self, request: &WebhookRequest) -> WebhookResponse {
        let mode = request.query_param("hub.mode").unwrap_or_default();
        let token = request.query_param("hub.verify_token").unwrap_or_default();
        let challenge = request.query_param("hub.challenge").unwrap_or_default();
        let token_ok = constant_time_eq(
            token.as_bytes(),
            self.settings.verify_token.expose().as_bytes(),
        );
        if mode == "subscribe" && token_ok && !challenge.is_empty() {
            WebhookResponse::text(200, challenge)
        } else {
            WebhookResponse::error(403, "forbidden", "hub.mode or hub.verify_token is wrong")
        }
    }
}

/// Maps a Graph API error (`{"message","type","code","error_subcode","fbtrace_id"}`).
fn graph_error(status: u16, error: &Value) -> BridgeError {
    let code = error["code"].as_i64().unwrap_or_default();
    let message = format!(
        "whatsapp {status} (code {code}): {}",
        error["message"].as_str().unwrap_or("no details")
    );
    match (status, code) {
        // Throughput, pair rate and spam limits: wait and try again.
        (429, _) | (_, 4 | 80007 | 130_429 | 131_056) => BridgeError::rate_limited(
            Duration::from_secs(if code == 131_056 { 6 } else { 2 }),
            message,
        ),
        (401, _) | (_, 190) => BridgeError::new(BridgeErrorKind::Unauthorized, message),
        // Service trouble (1, 2, 131000 "something went wrong") and server errors.
        (500.., _) | (_, 1 | 2 | 131_000) => BridgeError::new(BridgeErrorKind::Transient, message),
        // 131047: more than 24 h since the person wrote; 131026: undeliverable; …
        _ => BridgeError::new(BridgeErrorKind::Rejected, message),
    }
}

#[async_trait::async_trait]
impl Bridge for WhatsAppBridge {
    fn kind(&self) -> &'static str {
        "whatsapp"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_chars: MAX_MESSAGE_CHARS,
            markdown: MarkdownDialect::Plain,
            threads: false,
            typing_indicator: true,
            edits_for_streaming: false,
            attachments: true,
        }
    }

    async fn run(&self, context: &BridgeContext) -> Result<(), BridgeError> {
        // Requests come in over HTTP: nothing to connect to.
        context.accept_pushes_until_shutdown().await
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<(), BridgeError> {
        let to = delivery
            .destination
            .recipient_id
            .as_deref()
            .unwrap_or(&delivery.destination.chat_id);
        let text = mapping::to_whatsapp(&delivery.text);
        let pieces = split(&text, MAX_MESSAGE_CHARS);
        let done = self.sent_pieces.already(&delivery.reply_id);
        for (index, piece) in pieces.iter().enumerate().skip(done) {
            let mut body = json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": "text",
                "text": {"preview_url": false, "body": piece},
            });
            if index == 0
                && let Some(message) = &delivery.destination.reply_to_message_id
            {
                body["context"] = json!({"message_id": message});
            }
            self.post_message(&body).await?;
            self.sent_pieces.sent(&delivery.reply_id, index + 1);
        }
        self.sent_pieces.finished(&delivery.reply_id);
        Ok(())
    }

    async fn deliver_voice(
        &self,
        delivery: &Delivery,
        note: &VoiceNote,
    ) -> Result<(), BridgeError> {
        let send = async {
            let media = media::upload(&self.http, &self.settings, note.recording()).await?;
            let to = delivery
                .destination
                .recipient_id
                .as_deref()
                .unwrap_or(&delivery.destination.chat_id);
            let body = json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": "audio",
                "audio": {"id": media},
            });
            self.post_message(&body).await?;
            Ok(())
        };
        self.sent_pieces.voice_once(&delivery.reply_id, send).await
    }

    async fn fetch_attachment(
        &self,
        attachment: &Attachment,
        max_bytes: u64,
    ) -> Result<Vec<u8>, BridgeError> {
        let media_id = referenced(attachment, mapping::MEDIA_SCHEME, "WhatsApp media")?;
        media::download(&self.http, &self.settings, media_id, max_bytes).await
    }

    async fn typing(&self, destination: &Destination) -> Result<(), BridgeError> {
        let Some(message) = &destination.reply_to_message_id else {
            return Ok(());
        };
        let body = json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message,
            "typing_indicator": {"type": "text"},
        });
        self.post_message(&body).await
    }

    /// Meta caps a webhook notification payload at 3 MB.
    fn webhook_body_limit(&self) -> Option<usize> {
        Some(3 * 1024 * 1024)
    }

    async fn webhook(&self, request: WebhookRequest, context: &BridgeContext) -> WebhookResponse {
        if request.endpoint != "webhook" {
            return WebhookResponse::error(404, "not_found", "use /bridges/{name}/webhook");
        }
        if request.method == "GET" {
            return self.verify_subscription(&request);
        }
        if request.method != "POST" {
            return WebhookResponse::error(405, "method_not_allowed", "GET or POST only");
        }
        let signature = request.header("x-hub-signature-256").unwrap_or_default();
        let secret = self.settings.app_secret.expose().as_bytes();
        if !signing::verify(secret, &[&request.body], "sha256=", signature) {
            return WebhookResponse::error(
                401,
                "unauthorized",
                "X-Hub-Signature-256 does not match the body",
            );
        }
        let notification: Notification = match serde_json::from_slice(&request.body) {
            Ok(notification) => notification,
            Err(error) => {
                return WebhookResponse::error(400, "invalid_notification", &error.to_string());
            }
        };
        if notification.object != "whatsapp_business_account" {
            return WebhookResponse::json(200, &json!({}));
        }
        for inbound in mapping::inbound(&notification, &self.settings.phone_number_id) {
            // Not stored: a non-2xx makes Meta deliver the notification again.
            if let Err(answer) = receive_pushed(context, inbound).await {
                return answer;
            }
        }
        WebhookResponse::json(200, &json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_errors_map_to_kinds() {
        let limit = graph_error(400, &json!({"code": 130_429, "message": "Rate limit hit"}));
        assert_eq!(limit.kind, BridgeErrorKind::RateLimited);
        let expired = graph_error(
            401,
            &json!({"code": 190, "message": "Error validating access token"}),
        );
        assert_eq!(expired.kind, BridgeErrorKind::Unauthorized);
        let window = graph_error(
            400,
            &json!({"code": 131_047, "message": "Re-engagement message"}),
        );
        assert_eq!(window.kind, BridgeErrorKind::Rejected);
        assert!(graph_error(500, &json!({"code": 2})).is_retryable());
    }

    #[test]
    fn long_text_splits_within_the_limit() {
        let text = "word ".repeat(2000);
        let pieces = split(&text, 4096);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|piece| piece.chars().count() <= 4096));
        assert_eq!(
            pieces
                .iter()
                .map(|piece| piece.split_whitespace().count())
                .sum::<usize>(),
            2000
        );
    }
}
