//! Signed webhooks: the generic bridge for anything that can send and receive HTTP (home
//! automation, scripts, another chat system's outgoing hooks).
//!
//! In: `POST /bridges/{name}/webhook` with a JSON message
//! `{"id", "sender_id", "conversation_id"?, "payload", "metadata"?}` and the headers
//! `X-Troupe-Timestamp: <unix seconds>` and
//! `X-Troupe-Signature: v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`. A stale
//! timestamp (more than `max_skew_secs` away) or a wrong signature is refused with 401, a
//! malformed body with 400; `202 {"accepted": true, "id"}` comes once the message is stored.
//!
//! Out: each reply is POSTed to `deliver_url` as `{"reply_id", "in_reply_to",
//! "conversation_id", "recipient_id", "text"}`, signed the same way, with
//! `Idempotency-Key: <reply_id>`; 2xx is success, 429/5xx (and network errors) are retried
//! (honouring `Retry-After`), other 4xx drop the reply.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config_error::{BridgeConfigError, rule};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use troupe_actors::bridge::{
    Bridge, BridgeContext, BridgeError, BridgeErrorKind, BridgeInbound, Capabilities, ChatKind,
    Delivery, Destination, MarkdownDialect, WebhookRequest, WebhookResponse,
};
use troupe_actors::message::{
    ContentType, InboundMessage, MessageError, MessageParts, check_reserved_metadata, unix_now,
};

use crate::common::http_client;
use crate::secrets::{Secret, SecretSource};
use crate::signing;

const TIMESTAMP_HEADER: &str = "x-troupe-timestamp";
const SIGNATURE_HEADER: &str = "x-troupe-signature";
const SIGNATURE_PREFIX: &str = "v1=";

const fn default_max_skew_secs() -> u64 {
    300
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The shared signing secret, from this environment variable…
    #[serde(default)]
    pub secret_env: Option<String>,
    /// …or this file.
    #[serde(default)]
    pub secret_file: Option<std::path::PathBuf>,
    /// Where replies are POSTed; absent: replies are not sent anywhere (fire-and-forget
    /// input, the answer is read from the sessions API).
    #[serde(default)]
    pub deliver_url: Option<String>,
    /// Largest accepted clock difference of a signed request.
    #[serde(default = "default_max_skew_secs")]
    pub max_skew_secs: u64,
}

/// The message a caller sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedMessage {
    id: String,
    sender_id: String,
    #[serde(default)]
    conversation_id: Option<String>,
    payload: String,
    #[serde(default)]
    metadata: BTreeMap<String, Value>,
}

/// The bridge.
pub struct WebhookBridge {
    secret: Secret,
    deliver_url: Option<String>,
    max_skew_secs: u64,
    http: reqwest::Client,
}

impl WebhookConfig {
    /// Checks the keys and reads the secret; an error names the key at fault.
    pub fn build(&self) -> Result<WebhookBridge, BridgeConfigError> {
        let secret = SecretSource::new(self.secret_env.as_deref(), self.secret_file.as_deref())
            .read()
            .map_err(|reason| BridgeConfigError::new("secret_env", reason))?;
        if secret.expose().len() < 16 {
            return Err(rule("secret_env", "must be at least 16 characters long"));
        }
        if let Some(url) = &self.deliver_url {
            crate::common::check_http_url(url)
                .map_err(|reason| BridgeConfigError::new("deliver_url", reason))?;
        }
        if !(1..=3600).contains(&self.max_skew_secs) {
            return Err(rule("max_skew_secs", "must be between 1 and 3600"));
        }
        Ok(WebhookBridge {
            secret,
            deliver_url: self.deliver_url.clone(),
            max_skew_secs: self.max_skew_secs,
            http: http_client(),
        })
    }
}

/// The signature headers for `body` at `timestamp`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    format!(
        "{SIGNATURE_PREFIX}{}",
        signing::hmac_sha256_hex(secret, &[timestamp.as_bytes(), b".", body])
    )
}

impl WebhookBridge {
    fn authentic(&self, request: &WebhookRequest) -> Result<(), WebhookResponse> {
        let refuse = |message: &str| WebhookResponse::error(401, "unauthorized", message);
        let timestamp = request
            .header(TIMESTAMP_HEADER)
            .ok_or_else(|| refuse("X-Troupe-Timestamp is missing"))?;
        if !signing::fresh(timestamp, unix_now(), self.max_skew_secs) {
            return Err(refuse(
                "X-Troupe-Timestamp is too old, too new or not a number",
            ));
        }
        let signature = request
            .header(SIGNATURE_HEADER)
            .ok_or_else(|| refuse("X-Troupe-Signature is missing"))?;
        let parts: [&[u8]; 3] = [timestamp.trim().as_bytes(), b".", &request.body];
        if !signing::verify(
            self.secret.expose().as_bytes(),
            &parts,
            SIGNATURE_PREFIX,
            signature,
        ) {
            return Err(refuse("X-Troupe-Signature does not match the body"));
        }
        Ok(())
    }
}

/// The message a signed request carries, checked as `POST /api/v1/messages` checks one
/// (valid ids, a payload that says something, no `troupe.*` metadata).
fn inbound(message: SignedMessage) -> Result<BridgeInbound, MessageError> {
    check_reserved_metadata(&message.metadata)?;
    let conversation_id = message
        .conversation_id
        .clone()
        .unwrap_or_else(|| message.sender_id.clone());
    Ok(BridgeInbound {
        destination: Destination {
            chat_id: conversation_id.clone(),
            thread_id: None,
            reply_to_message_id: Some(message.id.clone()),
            recipient_id: Some(message.sender_id.clone()),
        },
        message: InboundMessage::new(MessageParts {
            id: message.id,
            platform: "webhook".into(),
            sender_id: message.sender_id,
            conversation_id,
            content_type: ContentType::Text,
            payload: message.payload,
            timestamp: unix_now(),
            reply_to: None,
            attachments: Vec::new(),
            metadata: message.metadata,
        })?,
        chat: ChatKind::Direct,
        addressed: true,
        sender_name: String::new(),
    })
}

fn delivery_error(status: reqwest::StatusCode, retry_after: Option<Duration>) -> BridgeError {
    let message = format!("webhook delivery answered {status}");
    match status.as_u16() {
        429 => BridgeError::rate_limited(retry_after.unwrap_or(Duration::from_secs(1)), message),
        401 | 403 => BridgeError::new(BridgeErrorKind::Unauthorized, message),
        500.. => BridgeError {
            retry_after,
            ..BridgeError::new(BridgeErrorKind::Transient, message)
        },
        _ => BridgeError::new(BridgeErrorKind::Rejected, message),
    }
}

#[async_trait::async_trait]
impl Bridge for WebhookBridge {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_chars: usize::MAX,
            markdown: MarkdownDialect::CommonMark,
            threads: false,
            typing_indicator: false,
            edits_for_streaming: false,
            attachments: false,
        }
    }

    async fn run(&self, context: &BridgeContext) -> Result<(), BridgeError> {
        // Requests come in over HTTP: nothing to connect to.
        context.accept_pushes_until_shutdown().await
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<(), BridgeError> {
        let Some(url) = &self.deliver_url else {
            return Ok(());
        };
        let body = json!({
            "reply_id": delivery.reply_id,
            "in_reply_to": delivery.destination.reply_to_message_id,
            "conversation_id": delivery.destination.chat_id,
            "recipient_id": delivery.destination.recipient_id,
            "text": delivery.text,
        })
        .to_string();
        let timestamp = unix_now();
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("X-Troupe-Timestamp", timestamp.to_string())
            .header(
                "X-Troupe-Signature",
                sign(self.secret.expose().as_bytes(), timestamp, body.as_bytes()),
            )
            .header("Idempotency-Key", &delivery.reply_id)
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|error| {
                BridgeError::new(
                    BridgeErrorKind::Transient,
                    format!("webhook delivery: {error}"),
                )
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(delivery_error(status, retry_after))
    }

    /// The signed webhook's own format: one message whose payload is at most
    /// `server.max_payload_bytes` (1 MiB by default), room for JSON escaping (up to six
    /// bytes a character) and the other fields, as `POST /api/v1/messages` allows. A larger
    /// payload is refused by the node's message limits after this.
    fn webhook_body_limit(&self) -> Option<usize> {
        Some(6 * 1024 * 1024 + 64 * 1024)
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
        let message: SignedMessage = match serde_json::from_slice(&request.body) {
            Ok(message) => message,
            Err(error) => {
                return WebhookResponse::error(400, "invalid_message", &error.to_string());
            }
        };
        let id = message.id.clone();
        let inbound = match inbound(message) {
            Ok(inbound) => inbound,
            Err(refusal) => {
                return WebhookResponse::error(400, "invalid_message", &refusal.to_string());
            }
        };
        match context.receive(inbound).await {
            Ok(()) => WebhookResponse::json(202, &json!({"accepted": true, "id": id})),
            Err(error) if error.kind == BridgeErrorKind::Malformed => {
                WebhookResponse::error(400, "invalid_message", &error.message)
            }
            Err(error) if error.kind == BridgeErrorKind::Rejected => {
                WebhookResponse::error(413, "payload_too_large", &error.message)
            }
            Err(error) => WebhookResponse::error(503, "unavailable", &error.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let signature = sign(b"0123456789abcdef", 1_700_000_000, b"{}");
        assert!(signature.starts_with("v1="));
        assert_eq!(signature.len(), 3 + 64);
        assert_ne!(signature, sign(b"0123456789abcdef", 1_700_000_001, b"{}"));
        assert_ne!(signature, sign(b"0123456789abcdef", 1_700_000_000, b"{ }"));
    }

    #[test]
    fn delivery_errors_map_to_kinds() {
        use reqwest::StatusCode;
        let limited = delivery_error(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(3)));
        assert_eq!(limited.kind, BridgeErrorKind::RateLimited);
        assert_eq!(limited.retry_after, Some(Duration::from_secs(3)));
        assert!(delivery_error(StatusCode::BAD_GATEWAY, None).is_retryable());
        assert_eq!(
            delivery_error(StatusCode::BAD_REQUEST, None).kind,
            BridgeErrorKind::Rejected
        );
    }
}
