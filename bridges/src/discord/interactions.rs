//! The interactions endpoint (`POST /bridges/{name}/interactions`): Discord signs every
//! request with the application's Ed25519 key over `timestamp + body`
//! (`X-Signature-Ed25519`, `X-Signature-Timestamp`) and sends bad signatures on purpose to
//! check that they are refused (401). `PING` is answered `PONG`; the `/ask` slash command
//! is stored, answered "thinking…" (a deferred response), and its reply later replaces
//! that message through the interaction's webhook.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Verifier};
use serde_json::{Value, json};
use troupe_actors::bridge::{
    BridgeContext, BridgeInbound, ChatKind, Destination, WebhookRequest, WebhookResponse,
};
use troupe_actors::message::{ContentType, MessageParts, unix_now};

use super::DiscordBridge;
use crate::common::receive_pushed;

/// Marks a destination that is answered through an interaction's webhook.
pub(crate) const INTERACTION_PREFIX: &str = "interaction:";

const PING: u64 = 1;
const APPLICATION_COMMAND: u64 = 2;
const PONG: u64 = 1;
const CHANNEL_MESSAGE: u64 = 4;
const DEFERRED_CHANNEL_MESSAGE: u64 = 5;
/// Only the asker sees the message.
const EPHEMERAL: u64 = 1 << 6;

impl DiscordBridge {
    pub(crate) async fn interaction(
        &self,
        request: WebhookRequest,
        context: &BridgeContext,
    ) -> WebhookResponse {
        let Some(key) = &self.settings.public_key else {
            return WebhookResponse::error(
                404,
                "not_found",
                "set public_key to serve interactions",
            );
        };
        if request.method != "POST" {
            return WebhookResponse::error(405, "method_not_allowed", "POST only");
        }
        let signature = request
            .header("x-signature-ed25519")
            .and_then(|hex_signature| hex::decode(hex_signature).ok())
            .and_then(|bytes| Signature::from_slice(&bytes).ok());
        let timestamp = request.header("x-signature-timestamp").unwrap_or_default();
        let signed = [timestamp.as_bytes(), &request.body].concat();
        if signature.is_none_or(|signature| key.verify(&signed, &signature).is_err()) {
            return WebhookResponse::text(401, "invalid request signature");
        }
        let interaction: Value = match serde_json::from_slice(&request.body) {
            Ok(interaction) => interaction,
            Err(error) => {
                return WebhookResponse::error(400, "invalid_interaction", &error.to_string());
            }
        };
        match interaction["type"].as_u64() {
            Some(PING) => WebhookResponse::json(200, &json!({"type": PONG})),
            Some(APPLICATION_COMMAND) if interaction["data"]["name"] == "ask" => {
                let Some(inbound) = ask(&interaction) else {
                    return WebhookResponse::error(
                        400,
                        "invalid_interaction",
                        "/ask needs a question",
                    );
                };
                match receive_pushed(context, inbound).await {
                    Ok(()) => {
                        WebhookResponse::json(200, &json!({"type": DEFERRED_CHANNEL_MESSAGE}))
                    }
                    Err(answer) => answer,
                }
            }
            Some(APPLICATION_COMMAND) => WebhookResponse::json(
                200,
                &json!({"type": CHANNEL_MESSAGE, "data": {"content": "I only know /ask.", "flags": EPHEMERAL}}),
            ),
            _ => WebhookResponse::error(400, "invalid_interaction", "unsupported interaction type"),
        }
    }
}

/// The message of an `/ask question:<text>` command.
fn ask(interaction: &Value) -> Option<BridgeInbound> {
    let question = interaction["data"]["options"]
        .as_array()?
        .iter()
        .find(|option| option["name"] == "question")?["value"]
        .as_str()?
        .trim()
        .to_owned();
    if question.is_empty() {
        return None;
    }
    let user = if interaction["member"]["user"].is_object() {
        &interaction["member"]["user"]
    } else {
        &interaction["user"]
    };
    let user_id = user["id"].as_str()?.to_owned();
    let channel = interaction["channel_id"].as_str()?.to_owned();
    let token = interaction["token"].as_str()?;
    let chat = if interaction["guild_id"].is_string() {
        ChatKind::Group
    } else {
        ChatKind::Direct
    };
    Some(BridgeInbound {
        message: crate::common::platform_message(MessageParts {
            id: format!("dci-{}", interaction["id"].as_str()?),
            platform: "discord".into(),
            sender_id: user_id.clone(),
            conversation_id: channel.clone(),
            content_type: ContentType::Text,
            payload: question,
            timestamp: unix_now(),
            reply_to: None,
            attachments: Vec::new(),
            metadata: BTreeMap::new(),
        })?,
        destination: Destination {
            chat_id: channel,
            thread_id: None,
            reply_to_message_id: Some(format!("{INTERACTION_PREFIX}{token}")),
            recipient_id: Some(user_id.clone()),
        },
        chat,
        // A slash command is addressed to the assistant by definition.
        addressed: true,
        sender_name: user["global_name"]
            .as_str()
            .or(user["username"].as_str())
            .unwrap_or(&user_id)
            .to_owned(),
    })
}
