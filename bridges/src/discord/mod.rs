//! Discord: the Gateway WebSocket for messages (DMs and mentions), REST to reply (split at
//! 2000 characters, per-route rate-limit buckets, a nonce so a retried message is not
//! posted twice), and the interactions endpoint for the `/ask` slash command.

pub mod config;
mod gateway;
mod interactions;
mod mapping;
mod rest;

use std::sync::Mutex;

use serde_json::json;
use sha2::{Digest, Sha256};
use troupe_actors::bridge::{
    Bridge, BridgeContext, BridgeError, BridgeErrorKind, Capabilities, Delivery, Destination,
    MarkdownDialect, WebhookRequest, WebhookResponse,
};
use troupe_actors::message::Attachment;
use troupe_actors::voice::VoiceNote;

use self::config::DiscordSettings;
use self::gateway::GatewaySession;
use self::interactions::INTERACTION_PREFIX;
use self::rest::DiscordRest;
use crate::common::SentPieces;
use crate::text::split_chars;

/// Discord's limit for one message.
const MAX_MESSAGE_CHARS: usize = 2000;
/// The message flag that makes an audio attachment a voice message (`1 << 13`).
const IS_VOICE_MESSAGE: u64 = 1 << 13;
/// The nonce index of a reply's voice message (its text pieces count from 0).
const VOICE_NONCE: usize = usize::MAX;

pub struct DiscordBridge {
    settings: DiscordSettings,
    rest: DiscordRest,
    /// The session to resume after a dropped connection.
    session: Mutex<Option<GatewaySession>>,
    /// The bot's own user id, from `READY`.
    bot_id: Mutex<String>,
    sent_pieces: SentPieces,
}

impl DiscordBridge {
    pub fn new(settings: DiscordSettings) -> Self {
        let rest = DiscordRest::new(&settings.api_base, &settings.bot_token);
        Self {
            settings,
            rest,
            session: Mutex::new(None),
            bot_id: Mutex::new(String::new()),
            sent_pieces: SentPieces::default(),
        }
    }

    fn session(&self) -> Option<GatewaySession> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_session(&self, session: Option<GatewaySession>) {
        *self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = session;
    }

    fn advance_sequence(&self, sequence: u64) {
        if let Some(session) = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            session.sequence = Some(sequence);
        }
    }

    fn bot_id(&self) -> String {
        self.bot_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_bot_id(&self, id: &str) {
        *self
            .bot_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = id.to_owned();
    }

    async fn send_piece(
        &self,
        delivery: &Delivery,
        index: usize,
        piece: &str,
    ) -> Result<(), BridgeError> {
        let destination = &delivery.destination;
        if let Some(token) = destination
            .reply_to_message_id
            .as_deref()
            .and_then(|reference| reference.strip_prefix(INTERACTION_PREFIX))
        {
            let application = self.settings.application_id.as_deref().unwrap_or_default();
            let body = json!({"content": piece, "allowed_mentions": {"parse": []}});
            let (method, path) = if index == 0 {
                (
                    reqwest::Method::PATCH,
                    format!("webhooks/{application}/{token}/messages/@original"),
                )
            } else {
                (
                    reqwest::Method::POST,
                    format!("webhooks/{application}/{token}"),
                )
            };
            return self
                .rest
                .send(method, &path, Some(&body), false)
                .await
                .map(|_| ());
        }
        let mut body = json!({
            "content": piece,
            "allowed_mentions": {"parse": []},
            // Discord refuses a second message with the same nonce: a retried delivery
            // cannot post twice.
            "nonce": nonce(&delivery.reply_id, index),
            "enforce_nonce": true,
        });
        if index == 0
            && let Some(message) = &destination.reply_to_message_id
        {
            body["message_reference"] = json!({"message_id": message, "fail_if_not_exists": false});
        }
        let path = format!("channels/{}/messages", destination.chat_id);
        self.rest
            .send(reqwest::Method::POST, &path, Some(&body), true)
            .await
            .map(|_| ())
    }
}

impl DiscordBridge {
    /// The body of a voice message: the flag, and the one attachment with its length and
    /// waveform (Discord draws it); no content is allowed with them.
    fn voice_payload(delivery: &Delivery, note: &VoiceNote) -> serde_json::Value {
        use base64::Engine as _;
        let mut payload = json!({
            "flags": IS_VOICE_MESSAGE,
            "attachments": [{
                "id": "0",
                "filename": "voice-message.ogg",
                "duration_secs": note.seconds(),
                "waveform": base64::engine::general_purpose::STANDARD.encode(note.waveform()),
            }],
            "nonce": nonce(&delivery.reply_id, VOICE_NONCE),
            "enforce_nonce": true,
        });
        if let Some(message) = &delivery.destination.reply_to_message_id {
            payload["message_reference"] =
                json!({"message_id": message, "fail_if_not_exists": false});
        }
        payload
    }
}

/// At most 25 characters, stable for one piece of one reply.
fn nonce(reply_id: &str, index: usize) -> String {
    let digest = Sha256::digest(format!("{reply_id}/{index}").as_bytes());
    hex::encode(digest)[..25].to_owned()
}

#[async_trait::async_trait]
impl Bridge for DiscordBridge {
    fn kind(&self) -> &'static str {
        "discord"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_chars: MAX_MESSAGE_CHARS,
            markdown: MarkdownDialect::DiscordMarkdown,
            threads: true,
            typing_indicator: true,
            edits_for_streaming: true,
            attachments: true,
        }
    }

    async fn run(&self, context: &BridgeContext) -> Result<(), BridgeError> {
        self.run_gateway(context).await
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<(), BridgeError> {
        // Discord renders the Markdown models write: no conversion needed.
        let pieces = split_chars(&delivery.text, MAX_MESSAGE_CHARS);
        let done = self.sent_pieces.already(&delivery.reply_id);
        for (index, piece) in pieces.iter().enumerate().skip(done) {
            self.send_piece(delivery, index, piece).await?;
            self.sent_pieces.sent(&delivery.reply_id, index + 1);
        }
        self.sent_pieces.finished(&delivery.reply_id);
        Ok(())
    }

    /// A voice message (`multipart/form-data`: `payload_json`, `files[0]`), before the
    /// text. A slash command's answer is the deferred response's text, so it stays text.
    async fn deliver_voice(
        &self,
        delivery: &Delivery,
        note: &VoiceNote,
    ) -> Result<(), BridgeError> {
        let send = async {
            let destination = &delivery.destination;
            let interaction = destination
                .reply_to_message_id
                .as_deref()
                .is_some_and(|reference| reference.starts_with(INTERACTION_PREFIX));
            if interaction {
                return Err(BridgeError::new(
                    BridgeErrorKind::Rejected,
                    "a slash command is answered in text",
                ));
            }
            let file = crate::common::ogg_part(note.recording(), "voice-message.ogg")?;
            let form = reqwest::multipart::Form::new()
                .text(
                    "payload_json",
                    Self::voice_payload(delivery, note).to_string(),
                )
                .part("files[0]", file);
            let path = format!("channels/{}/messages", destination.chat_id);
            self.rest.send_form(&path, form).await?;
            Ok(())
        };
        self.sent_pieces.voice_once(&delivery.reply_id, send).await
    }

    /// Only files on Discord's CDN are fetched: an attachment's address comes from the
    /// gateway, and the node must not be made to fetch anything else.
    async fn fetch_attachment(
        &self,
        attachment: &Attachment,
        max_bytes: u64,
    ) -> Result<Vec<u8>, BridgeError> {
        let url = crate::common::url_under(attachment, &self.settings.cdn_base, "Discord's CDN")?;
        self.rest.download(url, max_bytes).await
    }

    async fn typing(&self, destination: &Destination) -> Result<(), BridgeError> {
        let interaction = destination
            .reply_to_message_id
            .as_deref()
            .is_some_and(|reference| reference.starts_with(INTERACTION_PREFIX));
        if interaction {
            return Ok(()); // the deferred response already shows "thinking…"
        }
        let path = format!("channels/{}/typing", destination.chat_id);
        self.rest
            .send(reqwest::Method::POST, &path, None, true)
            .await
            .map(|_| ())
    }

    /// A Discord interaction: message content is capped at 2,000 characters (4,000 with
    /// Nitro), embeds at 6,000, with the resolved users and channels far under 1 MiB.
    fn webhook_body_limit(&self) -> Option<usize> {
        Some(1024 * 1024)
    }

    async fn webhook(&self, request: WebhookRequest, context: &BridgeContext) -> WebhookResponse {
        if request.endpoint == "interactions" {
            return self.interaction(request, context).await;
        }
        WebhookResponse::error(
            404,
            "not_found",
            "Discord uses /bridges/{name}/interactions",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_attachments_on_discords_cdn_are_fetched() {
        let bridge = DiscordBridge::new(DiscordSettings {
            bot_token: crate::secrets::Secret::new("t"),
            public_key: None,
            application_id: None,
            api_base: "http://127.0.0.1:9/api/v10".into(),
            cdn_base: "https://cdn.discordapp.com/".into(),
        });
        for url in [
            "http://169.254.169.254/latest/meta-data",
            "https://cdn.discordapp.com.evil.example/a.ogg",
        ] {
            let attachment = Attachment {
                content_type: troupe_actors::message::ContentType::Audio,
                url: Some(url.into()),
                name: None,
                mime_type: None,
                size_bytes: None,
                upload_id: None,
            };
            let refused = bridge
                .fetch_attachment(&attachment, 1000)
                .await
                .unwrap_err();
            assert_eq!(
                refused.kind,
                troupe_actors::bridge::BridgeErrorKind::Rejected,
                "{url}"
            );
            assert!(refused.message.contains("not on Discord's CDN"), "{url}");
        }
    }

    #[test]
    fn nonces_fit_discords_limit_and_differ_per_piece() {
        assert_eq!(nonce("r-1", 0).len(), 25);
        assert_eq!(nonce("r-1", 0), nonce("r-1", 0));
        assert_ne!(nonce("r-1", 0), nonce("r-1", 1));
    }
}
