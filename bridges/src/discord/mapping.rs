//! Discord events → standard inbound messages.
//!
//! `MESSAGE_CREATE` without `guild_id` is a direct message; in a server the assistant is
//! addressed by a mention of the bot or a reply to one of its messages. Each channel (and
//! thread, which Discord models as a channel) is its own conversation. Ids are
//! `dc-<message id>` (snowflakes are unique), so a replayed event is one message.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use troupe_actors::bridge::{BridgeInbound, ChatKind, Destination};
use troupe_actors::message::{Attachment, ContentType, MessageParts};

#[derive(Debug, Deserialize)]
pub(crate) struct MessageCreate {
    id: String,
    channel_id: String,
    #[serde(default)]
    guild_id: Option<String>,
    author: User,
    #[serde(default)]
    content: String,
    #[serde(default)]
    mentions: Vec<User>,
    #[serde(default)]
    referenced_message: Option<Box<Referenced>>,
    #[serde(default)]
    attachments: Vec<DiscordAttachment>,
}

#[derive(Debug, Deserialize)]
struct Referenced {
    author: User,
}

#[derive(Debug, Deserialize)]
pub(crate) struct User {
    pub(crate) id: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    global_name: Option<String>,
    #[serde(default)]
    bot: bool,
}

#[derive(Debug, Deserialize)]
struct DiscordAttachment {
    url: String,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// The message of a `MESSAGE_CREATE`, or `None` when it is not for the assistant.
pub(crate) fn inbound(event: &MessageCreate, bot_id: &str) -> Option<BridgeInbound> {
    if event.author.bot || event.author.id == bot_id {
        return None;
    }
    let chat = if event.guild_id.is_some() {
        ChatKind::Group
    } else {
        ChatKind::Direct
    };
    let addressed = chat == ChatKind::Direct
        || event.mentions.iter().any(|user| user.id == bot_id)
        || event
            .referenced_message
            .as_ref()
            .is_some_and(|referenced| referenced.author.id == bot_id);
    let text = strip_mention(&event.content, bot_id);
    let attachments: Vec<Attachment> = event
        .attachments
        .iter()
        .map(|attachment| Attachment {
            content_type: crate::common::content_type_of(attachment.content_type.as_deref()),
            url: Some(attachment.url.clone()),
            name: attachment.filename.clone(),
            mime_type: attachment.content_type.clone(),
            size_bytes: attachment.size,
            upload_id: None,
        })
        .collect();
    if text.is_empty() && attachments.is_empty() {
        return None;
    }
    let payload = if text.is_empty() {
        "[a file]".to_owned()
    } else {
        text
    };
    let mut metadata = BTreeMap::new();
    if let Some(guild) = &event.guild_id {
        metadata.insert("discord_guild_id".into(), Value::String(guild.clone()));
    }
    Some(BridgeInbound {
        message: crate::common::platform_message(MessageParts {
            id: format!("dc-{}", event.id),
            platform: "discord".into(),
            sender_id: event.author.id.clone(),
            conversation_id: event.channel_id.clone(),
            content_type: ContentType::Text,
            payload,
            timestamp: snowflake_seconds(&event.id),
            reply_to: None,
            attachments,
            metadata,
        })?,
        destination: Destination {
            chat_id: event.channel_id.clone(),
            thread_id: None,
            reply_to_message_id: (chat == ChatKind::Group).then(|| event.id.clone()),
            recipient_id: Some(event.author.id.clone()),
        },
        chat,
        addressed,
        sender_name: event
            .author
            .global_name
            .clone()
            .unwrap_or_else(|| event.author.username.clone()),
    })
}

/// `<@123> hi` or `<@!123> hi` → `hi` (the bot's own mention only).
fn strip_mention(content: &str, bot_id: &str) -> String {
    content
        .replace(&format!("<@{bot_id}>"), "")
        .replace(&format!("<@!{bot_id}>"), "")
        .trim()
        .to_owned()
}

/// Unix seconds from a snowflake (milliseconds since 2015-01-01 in the top 42 bits).
fn snowflake_seconds(id: &str) -> u64 {
    const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
    id.parse::<u64>()
        .map(|snowflake| ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(value: serde_json::Value) -> MessageCreate {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn direct_messages_mentions_and_replies() {
        let dm = event(
            json!({"id": "1219999999999999999", "channel_id": "55", "author": {"id": "7", "username": "ada"}, "content": "hi"}),
        );
        let dm = inbound(&dm, "999").unwrap();
        assert_eq!(dm.chat, ChatKind::Direct);
        assert!(dm.addressed);
        assert_eq!(dm.message.id(), "dc-1219999999999999999");
        assert!(dm.message.timestamp() > 1_700_000_000);
        let chatter = event(
            json!({"id": "2", "channel_id": "66", "guild_id": "1", "author": {"id": "7", "username": "ada"}, "content": "hello all"}),
        );
        assert!(!inbound(&chatter, "999").unwrap().addressed);
        let mention = event(
            json!({"id": "3", "channel_id": "66", "guild_id": "1", "author": {"id": "7", "username": "ada"},
            "content": "<@999> what time is it", "mentions": [{"id": "999", "username": "troupe", "bot": true}]}),
        );
        let mention = inbound(&mention, "999").unwrap();
        assert!(mention.addressed);
        assert_eq!(mention.message.payload(), "what time is it");
        assert_eq!(
            mention.destination.reply_to_message_id.as_deref(),
            Some("3")
        );
        let reply = event(
            json!({"id": "4", "channel_id": "66", "guild_id": "1", "author": {"id": "7", "username": "ada"},
            "content": "and tomorrow?", "referenced_message": {"author": {"id": "999", "username": "troupe", "bot": true}}}),
        );
        assert!(inbound(&reply, "999").unwrap().addressed);
        let from_bot = event(
            json!({"id": "5", "channel_id": "55", "author": {"id": "8", "username": "b", "bot": true}, "content": "x"}),
        );
        assert!(inbound(&from_bot, "999").is_none());
    }
}
