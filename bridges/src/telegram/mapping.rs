//! Telegram updates → standard inbound messages.
//!
//! Ids are stable per platform message (`tg-<chat>-<message>`), so the same update arriving
//! twice (a webhook retry, a replay after a crash) is one message. A private chat is a
//! direct conversation; in a group the assistant is addressed by an `@username` mention, a
//! `text_mention` of the bot, or a reply to one of its messages. Forum topics are their own
//! conversations (`<chat>:<topic>`), and replies go back into the topic.

use std::collections::BTreeMap;

use serde::Deserialize;
use troupe_actors::bridge::{BridgeInbound, ChatKind, Destination};
use troupe_actors::message::{Attachment, ContentType, MessageParts};

use super::client::BotUser;

/// The parts of an `Update` Troupe reads.
#[derive(Debug, Deserialize)]
pub(crate) struct Update {
    pub(crate) update_id: i64,
    #[serde(default)]
    pub(crate) message: Option<Message>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    message_id: i64,
    #[serde(default)]
    message_thread_id: Option<i64>,
    #[serde(default)]
    is_topic_message: bool,
    #[serde(default)]
    from: Option<User>,
    chat: Chat,
    date: u64,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    entities: Vec<Entity>,
    #[serde(default)]
    caption_entities: Vec<Entity>,
    #[serde(default)]
    reply_to_message: Option<Box<Message>>,
    #[serde(default)]
    photo: Vec<PhotoSize>,
    #[serde(default)]
    voice: Option<File>,
    #[serde(default)]
    audio: Option<File>,
    #[serde(default)]
    document: Option<File>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: i64,
    #[serde(default)]
    is_bot: bool,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Chat {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct Entity {
    #[serde(rename = "type")]
    kind: String,
    offset: usize,
    length: usize,
    #[serde(default)]
    user: Option<User>,
}

#[derive(Debug, Deserialize)]
struct PhotoSize {
    file_id: String,
    #[serde(default)]
    width: u32,
    #[serde(default)]
    file_size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct File {
    file_id: String,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    file_size: Option<u64>,
}

/// The standard message for `update`, or `None` when it is nothing to answer (an edit, a
/// channel post, a bot, a service message).
pub(crate) fn inbound(update: &Update, bot: &BotUser) -> Option<BridgeInbound> {
    let message = update.message.as_ref()?;
    let from = message.from.as_ref().filter(|user| !user.is_bot)?;
    let chat = match message.chat.kind.as_str() {
        "private" => ChatKind::Direct,
        "group" | "supergroup" => ChatKind::Group,
        _ => return None,
    };
    let attachments = attachments(message);
    let (text, entities) = match (&message.text, &message.caption) {
        (Some(text), _) => (text.clone(), &message.entities),
        (None, Some(caption)) => (caption.clone(), &message.caption_entities),
        (None, None) => (String::new(), &message.entities),
    };
    if text.trim().is_empty() && attachments.is_empty() {
        return None;
    }
    let payload = if text.trim().is_empty() {
        describe(&attachments)
    } else {
        text.clone()
    };
    let topic = message
        .message_thread_id
        .filter(|_| message.is_topic_message);
    let conversation_id = match (chat, topic) {
        (ChatKind::Group, Some(topic)) => format!("{}:{topic}", message.chat.id),
        _ => message.chat.id.to_string(),
    };
    let addressed = chat == ChatKind::Direct
        || mentions_bot(&text, entities, bot)
        || replies_to_bot(message, bot);
    let mut metadata = BTreeMap::new();
    metadata.insert("telegram_update_id".into(), update.update_id.into());
    Some(BridgeInbound {
        message: crate::common::platform_message(MessageParts {
            id: format!("tg-{}-{}", message.chat.id, message.message_id),
            platform: "telegram".into(),
            sender_id: from.id.to_string(),
            conversation_id,
            content_type: ContentType::Text,
            payload,
            timestamp: message.date,
            reply_to: None,
            attachments,
            metadata,
        })?,
        destination: Destination {
            chat_id: message.chat.id.to_string(),
            thread_id: topic.map(|topic| topic.to_string()),
            // In a group, quote the question so the answer is clearly its own.
            reply_to_message_id: (chat == ChatKind::Group).then(|| message.message_id.to_string()),
            recipient_id: Some(from.id.to_string()),
        },
        chat,
        addressed,
        sender_name: display_name(from),
    })
}

fn display_name(user: &User) -> String {
    let mut name = user.first_name.clone();
    if let Some(last) = &user.last_name {
        name.push(' ');
        name.push_str(last);
    }
    if let Some(username) = &user.username {
        name.push_str(&format!(" (@{username})"));
    }
    name
}

/// Entity offsets and lengths count UTF-16 code units.
fn entity_text(text: &str, entity: &Entity) -> String {
    let units: Vec<u16> = text.encode_utf16().collect();
    let end = (entity.offset + entity.length).min(units.len());
    String::from_utf16_lossy(&units[entity.offset.min(end)..end])
}

fn mentions_bot(text: &str, entities: &[Entity], bot: &BotUser) -> bool {
    entities.iter().any(|entity| match entity.kind.as_str() {
        "mention" => bot.username.as_deref().is_some_and(|username| {
            entity_text(text, entity).eq_ignore_ascii_case(&format!("@{username}"))
        }),
        "text_mention" => entity.user.as_ref().is_some_and(|user| user.id == bot.id),
        "bot_command" => bot.username.as_deref().is_some_and(|username| {
            entity_text(text, entity)
                .to_ascii_lowercase()
                .ends_with(&format!("@{}", username.to_ascii_lowercase()))
        }),
        _ => false,
    })
}

fn replies_to_bot(message: &Message, bot: &BotUser) -> bool {
    message
        .reply_to_message
        .as_ref()
        .and_then(|replied| replied.from.as_ref())
        .is_some_and(|author| author.id == bot.id)
}

/// How an attachment's `url` names a Telegram file: this, then its `file_id`.
pub(crate) const FILE_SCHEME: &str = "telegram-file:";

fn attachments(message: &Message) -> Vec<Attachment> {
    let mut attachments = Vec::new();
    // Telegram sends each photo in several sizes: keep the largest.
    if let Some(photo) = message.photo.iter().max_by_key(|size| size.width) {
        attachments.push(Attachment {
            content_type: ContentType::Image,
            url: Some(format!("{FILE_SCHEME}{}", photo.file_id)),
            name: None,
            mime_type: Some("image/jpeg".into()),
            size_bytes: photo.file_size,
            upload_id: None,
        });
    }
    for (file, content_type) in [
        (&message.voice, ContentType::Audio),
        (&message.audio, ContentType::Audio),
        (&message.document, ContentType::File),
    ] {
        if let Some(file) = file {
            attachments.push(Attachment {
                content_type,
                url: Some(format!("{FILE_SCHEME}{}", file.file_id)),
                name: file.file_name.clone(),
                mime_type: file.mime_type.clone(),
                size_bytes: file.file_size,
                upload_id: None,
            });
        }
    }
    attachments
}

/// What the model reads when a message is only an attachment.
fn describe(attachments: &[Attachment]) -> String {
    let parts: Vec<String> = attachments
        .iter()
        .map(|attachment| match attachment.content_type {
            ContentType::Image => "[a photo]".to_owned(),
            ContentType::Audio => "[a voice note]".to_owned(),
            _ => format!(
                "[a file: {}]",
                attachment.name.as_deref().unwrap_or("unnamed")
            ),
        })
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bot() -> BotUser {
        BotUser {
            id: 999,
            username: Some("troupe_bot".into()),
        }
    }

    #[allow(clippy::needless_pass_by_value)] // reads best at the call sites
    fn update(message: serde_json::Value) -> Update {
        serde_json::from_value(json!({"update_id": 7, "message": message})).unwrap()
    }

    #[test]
    fn a_private_message_is_a_direct_conversation() {
        let update = update(json!({
            "message_id": 5, "date": 1700000000,
            "from": {"id": 42, "is_bot": false, "first_name": "Ada", "username": "ada"},
            "chat": {"id": 42, "type": "private"}, "text": "hello"
        }));
        let inbound = inbound(&update, &bot()).unwrap();
        assert_eq!(inbound.message.id(), "tg-42-5");
        assert_eq!(inbound.message.sender_id(), "42");
        assert_eq!(inbound.message.conversation_id(), "42");
        assert_eq!(inbound.chat, ChatKind::Direct);
        assert!(inbound.addressed);
        assert_eq!(inbound.destination.chat_id, "42");
        assert_eq!(inbound.destination.reply_to_message_id, None);
        assert_eq!(inbound.sender_name, "Ada (@ada)");
    }

    #[test]
    fn in_groups_mentions_and_replies_address_the_bot() {
        let plain = update(json!({
            "message_id": 6, "date": 1, "from": {"id": 42, "first_name": "Ada"},
            "chat": {"id": -100, "type": "supergroup"}, "text": "hi all"
        }));
        let plain = inbound(&plain, &bot()).unwrap();
        assert_eq!(plain.chat, ChatKind::Group);
        assert!(!plain.addressed);
        assert_eq!(plain.destination.reply_to_message_id.as_deref(), Some("6"));
        // "👋 @troupe_bot": the emoji is two UTF-16 units, so the mention starts at 3.
        let mention = update(json!({
            "message_id": 7, "date": 1, "from": {"id": 42, "first_name": "Ada"},
            "chat": {"id": -100, "type": "group"}, "text": "👋 @troupe_bot what time is it",
            "entities": [{"type": "mention", "offset": 3, "length": 11}]
        }));
        assert!(inbound(&mention, &bot()).unwrap().addressed);
        let other = update(json!({
            "message_id": 8, "date": 1, "from": {"id": 42, "first_name": "Ada"},
            "chat": {"id": -100, "type": "group"}, "text": "@someone_else hi",
            "entities": [{"type": "mention", "offset": 0, "length": 13}]
        }));
        assert!(!inbound(&other, &bot()).unwrap().addressed);
        let reply = update(json!({
            "message_id": 9, "date": 1, "from": {"id": 42, "first_name": "Ada"},
            "chat": {"id": -100, "type": "group"}, "text": "and tomorrow?",
            "reply_to_message": {"message_id": 3, "date": 1, "from": {"id": 999, "is_bot": true, "first_name": "Troupe"},
                                 "chat": {"id": -100, "type": "group"}, "text": "sunny"}
        }));
        assert!(inbound(&reply, &bot()).unwrap().addressed);
    }

    #[test]
    fn forum_topics_are_their_own_conversations() {
        let update = update(json!({
            "message_id": 10, "message_thread_id": 77, "is_topic_message": true, "date": 1,
            "from": {"id": 42, "first_name": "Ada"}, "chat": {"id": -100, "type": "supergroup"},
            "text": "@troupe_bot hi", "entities": [{"type": "mention", "offset": 0, "length": 11}]
        }));
        let inbound = inbound(&update, &bot()).unwrap();
        assert_eq!(inbound.message.conversation_id(), "-100:77");
        assert_eq!(inbound.destination.thread_id.as_deref(), Some("77"));
    }

    #[test]
    fn photos_voice_notes_and_documents_become_attachments() {
        let photo = update(json!({
            "message_id": 11, "date": 1, "from": {"id": 42, "first_name": "Ada"},
            "chat": {"id": 42, "type": "private"}, "caption": "my cat",
            "photo": [{"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90},
                      {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 1280, "file_size": 1000}]
        }));
        let photo = inbound(&photo, &bot()).unwrap();
        assert_eq!(photo.message.payload(), "my cat");
        assert_eq!(photo.message.attachments().len(), 1);
        assert_eq!(
            photo.message.attachments()[0].url.as_deref(),
            Some("telegram-file:large")
        );
        let voice = update(json!({
            "message_id": 12, "date": 1, "from": {"id": 42, "first_name": "Ada"},
            "chat": {"id": 42, "type": "private"},
            "voice": {"file_id": "v1", "file_unique_id": "v", "duration": 3, "mime_type": "audio/ogg"}
        }));
        let voice = inbound(&voice, &bot()).unwrap();
        assert_eq!(voice.message.payload(), "[a voice note]");
        assert_eq!(
            voice.message.attachments()[0].content_type,
            ContentType::Audio
        );
        let document = update(json!({
            "message_id": 13, "date": 1, "from": {"id": 42, "first_name": "Ada"},
            "chat": {"id": 42, "type": "private"},
            "document": {"file_id": "d1", "file_unique_id": "d", "file_name": "notes.pdf", "mime_type": "application/pdf"}
        }));
        let document = inbound(&document, &bot()).unwrap();
        assert_eq!(document.message.payload(), "[a file: notes.pdf]");
    }

    #[test]
    fn bots_channels_and_empty_messages_are_not_answered() {
        let from_bot = update(json!({
            "message_id": 1, "date": 1, "from": {"id": 5, "is_bot": true, "first_name": "B"},
            "chat": {"id": 5, "type": "private"}, "text": "hi"
        }));
        assert!(inbound(&from_bot, &bot()).is_none());
        let channel = update(json!({
            "message_id": 1, "date": 1, "from": {"id": 5, "first_name": "B"},
            "chat": {"id": -5, "type": "channel"}, "text": "hi"
        }));
        assert!(inbound(&channel, &bot()).is_none());
        let service = update(json!({
            "message_id": 1, "date": 1, "from": {"id": 5, "first_name": "B"},
            "chat": {"id": 5, "type": "private"}
        }));
        assert!(inbound(&service, &bot()).is_none());
        let edited: Update =
            serde_json::from_value(json!({"update_id": 1, "edited_message": {}})).unwrap();
        assert!(inbound(&edited, &bot()).is_none());
    }
}
