//! Telegram (Bot API): long polling with the offset kept durably, or a webhook checked
//! against its secret token; replies split at 4096 characters, rendered as `MarkdownV2`
//! (plain text when Telegram refuses the markup), flood waits (429 `retry_after`) honoured.

mod client;
pub mod config;
mod mapping;
mod markdown;

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use troupe_actors::bridge::{
    Bridge, BridgeContext, BridgeError, BridgeErrorKind, Capabilities, Delivery, Destination,
    MarkdownDialect, WebhookRequest, WebhookResponse,
};
use troupe_actors::message::Attachment;
use troupe_actors::voice::VoiceNote;

use self::client::{BotUser, TelegramClient, is_markup_error};
use self::config::{TelegramMode, TelegramSettings};
use self::mapping::Update;
use crate::common::{SentPieces, receive_pushed, referenced};
use crate::secrets::constant_time_eq;

/// Telegram's limit for one message, in UTF-16 code units.
const MAX_MESSAGE_UNITS: usize = 4096;
/// The state key of the polling offset.
const OFFSET_KEY: &str = "offset";
/// Longest flood wait sat out inside one delivery before handing it back to the
/// dispatcher's retry loop.
const MAX_INLINE_FLOOD_WAIT: Duration = Duration::from_secs(30);

/// One bot.
pub struct TelegramBridge {
    settings: TelegramSettings,
    client: TelegramClient,
    bot: OnceLock<BotUser>,
    /// Pieces of a long reply already sent, by reply id: a retried delivery skips them.
    sent_pieces: SentPieces,
}

impl TelegramBridge {
    pub fn new(settings: TelegramSettings) -> Self {
        let client = TelegramClient::new(&settings.api_base, &settings.token);
        Self {
            settings,
            client,
            bot: OnceLock::new(),
            sent_pieces: SentPieces::default(),
        }
    }

    const fn request_timeout() -> Duration {
        Duration::from_secs(30)
    }

    async fn me(&self) -> Result<BotUser, BridgeError> {
        if let Some(bot) = self.bot.get() {
            return Ok(bot.clone());
        }
        let bot: BotUser = self
            .client
            .call("getMe", &json!({}), Self::request_timeout())
            .await?;
        Ok(self.bot.get_or_init(|| bot).clone())
    }

    async fn poll(&self, context: &BridgeContext) -> Result<(), BridgeError> {
        let bot = self.me().await?;
        // getUpdates answers 409 while a webhook is set.
        let _: bool = self
            .client
            .call("deleteWebhook", &json!({}), Self::request_timeout())
            .await?;
        context.status.connected();
        let mut offset: i64 = context
            .load_state(OFFSET_KEY)
            .await?
            .and_then(|text| text.parse().ok())
            .unwrap_or(0);
        let wait = self.settings.poll_timeout_secs;
        loop {
            let request =
                json!({"offset": offset, "timeout": wait, "allowed_updates": ["message"]});
            let updates: Vec<Value> = tokio::select! {
                () = context.shutdown.cancelled() => return Ok(()),
                updates = self.client.call("getUpdates", &request, Duration::from_secs(wait + 15)) => updates?,
            };
            context.status.connected();
            let Some(last) = updates
                .last()
                .and_then(|update| update["update_id"].as_i64())
            else {
                continue;
            };
            for raw in updates {
                self.receive(context, &bot, raw).await?;
            }
            // Every update up to `last` is journaled: confirm them (the next getUpdates
            // with this offset tells Telegram) and remember the offset across restarts.
            offset = last + 1;
            context.save_state(OFFSET_KEY, &offset.to_string()).await?;
        }
    }

    /// Hands one update over; unreadable ones are skipped (logged), never retried forever.
    async fn receive(
        &self,
        context: &BridgeContext,
        bot: &BotUser,
        raw: Value,
    ) -> Result<(), BridgeError> {
        let update: Update = match serde_json::from_value(raw) {
            Ok(update) => update,
            Err(error) => {
                tracing::warn!(bridge = %context.name, %error, "skipping an update that cannot be read");
                return Ok(());
            }
        };
        let Some(inbound) = mapping::inbound(&update, bot) else {
            return Ok(());
        };
        match context.receive(inbound).await {
            Err(error)
                if error.kind == BridgeErrorKind::Malformed
                    || error.kind == BridgeErrorKind::Rejected =>
            {
                tracing::warn!(bridge = %context.name, %error, update = update.update_id, "skipping an update the assistant cannot take");
                Ok(())
            }
            other => other,
        }
    }

    async fn serve_webhook(&self, context: &BridgeContext) -> Result<(), BridgeError> {
        self.me().await?;
        let url = self.settings.webhook_url.as_deref().unwrap_or_default();
        let secret = self
            .settings
            .webhook_secret
            .as_ref()
            .map(|secret| secret.expose().to_owned())
            .unwrap_or_default();
        let request = json!({"url": url, "secret_token": secret, "allowed_updates": ["message"]});
        let _: bool = self
            .client
            .call("setWebhook", &request, Self::request_timeout())
            .await?;
        context.status.connected();
        context.shutdown.cancelled().await;
        Ok(())
    }

    async fn send_piece(
        &self,
        destination: &Destination,
        piece: &str,
        first: bool,
    ) -> Result<(), BridgeError> {
        let mut body = json!({
            "chat_id": destination.chat_id,
            "text": markdown::to_markdown_v2(piece),
            "parse_mode": "MarkdownV2",
        });
        if let Some(thread) = &destination.thread_id {
            body["message_thread_id"] = json!(thread.parse::<i64>().unwrap_or_default());
        }
        if first && let Some(message) = &destination.reply_to_message_id {
            body["reply_parameters"] = json!({
                "message_id": message.parse::<i64>().unwrap_or_default(),
                "allow_sending_without_reply": true,
            });
        }
        match self.send_with_flood_waits(&body).await {
            Err(error) if is_markup_error(&error) => {
                tracing::warn!(%error, "telegram refused the markup; sending plain text");
                body["text"] = json!(piece);
                body.as_object_mut()
                    .map(|object| object.remove("parse_mode"));
                self.send_with_flood_waits(&body).await
            }
            other => other,
        }
    }

    /// `sendMessage`, sitting out short flood waits.
    async fn send_with_flood_waits(&self, body: &Value) -> Result<(), BridgeError> {
        loop {
            match self
                .client
                .call::<Value>("sendMessage", body, Self::request_timeout())
                .await
            {
                Ok(_) => return Ok(()),
                Err(error)
                    if error.kind == BridgeErrorKind::RateLimited
                        && error
                            .retry_after
                            .is_some_and(|wait| wait <= MAX_INLINE_FLOOD_WAIT) =>
                {
                    let wait = error.retry_after.unwrap_or_default();
                    tracing::info!(
                        ?wait,
                        "telegram flood wait; the reply waits and is then sent"
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

#[async_trait::async_trait]
impl Bridge for TelegramBridge {
    fn kind(&self) -> &'static str {
        "telegram"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_chars: MAX_MESSAGE_UNITS,
            markdown: MarkdownDialect::TelegramMarkdownV2,
            threads: true,
            typing_indicator: true,
            edits_for_streaming: true,
            attachments: true,
        }
    }

    async fn run(&self, context: &BridgeContext) -> Result<(), BridgeError> {
        match self.settings.mode {
            TelegramMode::Polling => self.poll(context).await,
            TelegramMode::Webhook => self.serve_webhook(context).await,
        }
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<(), BridgeError> {
        let pieces = markdown::split(&delivery.text, MAX_MESSAGE_UNITS);
        let done = self.sent_pieces.already(&delivery.reply_id);
        for (index, piece) in pieces.iter().enumerate().skip(done) {
            self.send_piece(&delivery.destination, piece, index == 0)
                .await?;
            self.sent_pieces.sent(&delivery.reply_id, index + 1);
        }
        self.sent_pieces.finished(&delivery.reply_id);
        Ok(())
    }

    async fn fetch_attachment(
        &self,
        attachment: &Attachment,
        max_bytes: u64,
    ) -> Result<Vec<u8>, BridgeError> {
        let file_id = referenced(attachment, mapping::FILE_SCHEME, "a Telegram file")?;
        self.client.download(file_id, max_bytes).await
    }

    async fn deliver_voice(
        &self,
        delivery: &Delivery,
        note: &VoiceNote,
    ) -> Result<(), BridgeError> {
        let send = async {
            let destination = &delivery.destination;
            let voice = crate::common::ogg_part(note.recording(), "reply.ogg")?;
            let mut form = reqwest::multipart::Form::new()
                .text("chat_id", destination.chat_id.clone())
                .text("duration", (note.seconds().ceil() as u64).to_string())
                .part("voice", voice);
            if let Some(thread) = &destination.thread_id {
                form = form.text("message_thread_id", thread.clone());
            }
            let _: Value = self
                .client
                .call_with_file("sendVoice", form, Duration::from_secs(60))
                .await?;
            Ok(())
        };
        self.sent_pieces.voice_once(&delivery.reply_id, send).await
    }

    async fn typing(&self, destination: &Destination) -> Result<(), BridgeError> {
        let mut body = json!({"chat_id": destination.chat_id, "action": "typing"});
        if let Some(thread) = &destination.thread_id {
            body["message_thread_id"] = json!(thread.parse::<i64>().unwrap_or_default());
        }
        let _: bool = self
            .client
            .call("sendChatAction", &body, Duration::from_secs(10))
            .await?;
        Ok(())
    }

    /// Telegram publishes no cap on an update; one carries at most 4,096 characters of text
    /// (1,024 of caption) with their entities, far under 1 MiB.
    fn webhook_body_limit(&self) -> Option<usize> {
        Some(1024 * 1024)
    }

    async fn webhook(&self, request: WebhookRequest, context: &BridgeContext) -> WebhookResponse {
        let Some(expected) = &self.settings.webhook_secret else {
            return WebhookResponse::error(
                404,
                "not_found",
                "this bridge polls; it takes no webhooks",
            );
        };
        if request.method != "POST" || request.endpoint != "webhook" {
            return WebhookResponse::error(
                405,
                "method_not_allowed",
                "POST /bridges/{name}/webhook only",
            );
        }
        let given = request
            .header("x-telegram-bot-api-secret-token")
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) {
            return WebhookResponse::error(
                401,
                "unauthorized",
                "wrong or missing X-Telegram-Bot-Api-Secret-Token",
            );
        }
        let update: Update = match serde_json::from_slice(&request.body) {
            Ok(update) => update,
            Err(error) => {
                return WebhookResponse::error(
                    400,
                    "invalid_update",
                    &format!("not a Telegram update: {error}"),
                );
            }
        };
        let bot = match self.me().await {
            Ok(bot) => bot,
            Err(error) => return WebhookResponse::error(503, "unavailable", &error.message),
        };
        let Some(inbound) = mapping::inbound(&update, &bot) else {
            return WebhookResponse::json(200, &json!({}));
        };
        // Not stored: a non-2xx makes Telegram deliver it again later.
        match receive_pushed(context, inbound).await {
            Ok(()) => WebhookResponse::json(200, &json!({})),
            Err(answer) => answer,
        }
    }
}
