//! WhatsApp webhook notifications → standard inbound messages, and Markdown → WhatsApp's
//! own formatting.
//!
//! A notification (`object: whatsapp_business_account`) holds entries of changes; a
//! `messages` change holds `contacts` (the sender's profile name) and `messages` (text,
//! image, audio, video, document, sticker…). `statuses` (sent, delivered, read, failed)
//! and `errors` describe our own messages: they are logged and otherwise ignored. Ids are
//! WhatsApp's `wamid`, stable across Meta's redeliveries.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use troupe_actors::bridge::{BridgeInbound, ChatKind, Destination};
use troupe_actors::message::{Attachment, ContentType, MessageParts};

/// How an attachment's `url` names WhatsApp media: this, then its media id.
pub(crate) const MEDIA_SCHEME: &str = "whatsapp-media:";

#[derive(Debug, Deserialize)]
pub(crate) struct Notification {
    pub(crate) object: String,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
struct Change {
    field: String,
    value: Value,
}

#[derive(Debug, Deserialize)]
struct MessagesValue {
    metadata: Metadata,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    statuses: Vec<Value>,
    #[serde(default)]
    errors: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    phone_number_id: String,
}

#[derive(Debug, Deserialize)]
struct Contact {
    wa_id: String,
    #[serde(default)]
    profile: Option<Profile>,
}

#[derive(Debug, Deserialize)]
struct Profile {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct Message {
    from: String,
    id: String,
    timestamp: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<Text>,
    #[serde(default)]
    image: Option<Media>,
    #[serde(default)]
    audio: Option<Media>,
    #[serde(default)]
    video: Option<Media>,
    #[serde(default)]
    document: Option<Media>,
    #[serde(default)]
    sticker: Option<Media>,
}

#[derive(Debug, Deserialize)]
struct Text {
    body: String,
}

#[derive(Debug, Deserialize)]
struct Media {
    id: String,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    filename: Option<String>,
}

/// The messages of a notification addressed to `phone_number_id`.
pub(crate) fn inbound(notification: &Notification, phone_number_id: &str) -> Vec<BridgeInbound> {
    let mut found = Vec::new();
    for change in notification.entry.iter().flat_map(|entry| &entry.changes) {
        if change.field != "messages" {
            continue;
        }
        let Ok(value) = serde_json::from_value::<MessagesValue>(change.value.clone()) else {
            tracing::warn!("whatsapp: a messages change that cannot be read was skipped");
            continue;
        };
        if value.metadata.phone_number_id != phone_number_id {
            continue; // another number of the same business account
        }
        if !value.statuses.is_empty() || !value.errors.is_empty() {
            tracing::debug!(
                statuses = value.statuses.len(),
                errors = value.errors.len(),
                "whatsapp status notification ignored"
            );
        }
        for message in &value.messages {
            let name = value
                .contacts
                .iter()
                .find(|contact| contact.wa_id == message.from)
                .and_then(|contact| contact.profile.as_ref())
                .map(|profile| profile.name.clone())
                .unwrap_or_default();
            if let Some(inbound) = map_message(message, name) {
                found.push(inbound);
            }
        }
    }
    found
}

fn map_message(message: &Message, sender_name: String) -> Option<BridgeInbound> {
    let (media, content_type) = match message.kind.as_str() {
        "image" => (message.image.as_ref(), ContentType::Image),
        "sticker" => (message.sticker.as_ref(), ContentType::Image),
        "audio" => (message.audio.as_ref(), ContentType::Audio),
        "video" => (message.video.as_ref(), ContentType::File),
        "document" => (message.document.as_ref(), ContentType::File),
        _ => (None, ContentType::Text),
    };
    let attachments: Vec<Attachment> = media
        .map(|media| Attachment {
            content_type,
            url: Some(format!("{MEDIA_SCHEME}{}", media.id)),
            name: media.filename.clone(),
            mime_type: media.mime_type.clone(),
            size_bytes: None,
            upload_id: None,
        })
        .into_iter()
        .collect();
    let payload = match (&message.text, media) {
        (Some(text), _) => text.body.clone(),
        (None, Some(media)) => {
            media
                .caption
                .clone()
                .unwrap_or_else(|| match message.kind.as_str() {
                    "image" | "sticker" => "[a photo]".into(),
                    "audio" => "[a voice note]".into(),
                    "video" => "[a video]".into(),
                    _ => format!(
                        "[a file: {}]",
                        media.filename.as_deref().unwrap_or("unnamed")
                    ),
                })
        }
        (None, None) => return None, // reactions, locations, unsupported…: nothing to answer
    };
    if payload.trim().is_empty() {
        return None;
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("whatsapp_type".into(), Value::String(message.kind.clone()));
    Some(BridgeInbound {
        message: crate::common::platform_message(MessageParts {
            id: format!("wa-{}", message.id),
            platform: "whatsapp".into(),
            sender_id: message.from.clone(),
            conversation_id: message.from.clone(),
            content_type: ContentType::Text,
            payload,
            timestamp: message.timestamp.parse().unwrap_or_default(),
            reply_to: None,
            attachments,
            metadata,
        })?,
        destination: Destination {
            chat_id: message.from.clone(),
            thread_id: None,
            reply_to_message_id: Some(message.id.clone()),
            recipient_id: Some(message.from.clone()),
        },
        chat: ChatKind::Direct,
        addressed: true,
        sender_name,
    })
}

/// Markdown → WhatsApp: `**bold**` → `*bold*`, `~~strike~~` → `~strike~`, `# Title` →
/// `*Title*`; code spans and blocks stay as WhatsApp renders them.
pub(crate) fn to_whatsapp(markdown: &str) -> String {
    markdown
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let heading = trimmed.trim_start_matches('#');
            if trimmed.starts_with('#') && heading.starts_with(' ') {
                format!("*{}*", heading.trim().replace("**", ""))
            } else {
                line.replace("**", "*").replace("~~", "~")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[allow(clippy::needless_pass_by_value)] // reads best at the call sites
    fn notification(value: serde_json::Value) -> Notification {
        serde_json::from_value(json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]
        }))
        .unwrap()
    }

    #[test]
    fn the_documented_text_example_maps() {
        let notification = notification(json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
            "messages": [{"from": "16505551234", "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                          "timestamp": "1749416383", "type": "text", "text": {"body": "Does it come in another color?"}}]
        }));
        let found = inbound(&notification, "106540352242922");
        assert_eq!(found.len(), 1);
        let message = &found[0];
        assert_eq!(message.message.sender_id(), "16505551234");
        assert_eq!(message.message.payload(), "Does it come in another color?");
        assert_eq!(message.message.timestamp(), 1_749_416_383);
        assert_eq!(message.sender_name, "Sheena Nelson");
        assert!(message.message.id().starts_with("wa-wamid."));
        assert!(
            inbound(&notification, "999").is_empty(),
            "another number's message"
        );
    }

    #[test]
    fn media_becomes_attachments_and_statuses_are_ignored() {
        let notification = notification(json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1", "phone_number_id": "42"},
            "messages": [
                {"from": "1", "id": "wamid.a", "timestamp": "1", "type": "image",
                 "image": {"id": "m1", "mime_type": "image/jpeg", "sha256": "x", "caption": "my cat"}},
                {"from": "1", "id": "wamid.b", "timestamp": "1", "type": "audio",
                 "audio": {"id": "m2", "mime_type": "audio/ogg", "voice": true}},
                {"from": "1", "id": "wamid.c", "timestamp": "1", "type": "reaction",
                 "reaction": {"message_id": "wamid.a", "emoji": "👍"}}
            ],
            "statuses": [{"id": "wamid.out", "status": "delivered", "timestamp": "1", "recipient_id": "1"}]
        }));
        let found = inbound(&notification, "42");
        assert_eq!(found.len(), 2, "the reaction is not answered");
        assert_eq!(found[0].message.payload(), "my cat");
        assert_eq!(
            found[0].message.attachments()[0].url.as_deref(),
            Some("whatsapp-media:m1")
        );
        assert_eq!(found[1].message.payload(), "[a voice note]");
        let statuses_only = notification_of_statuses();
        assert!(inbound(&statuses_only, "42").is_empty());
    }

    fn notification_of_statuses() -> Notification {
        notification(json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1", "phone_number_id": "42"},
            "statuses": [{"id": "wamid.out", "status": "read", "timestamp": "1", "recipient_id": "1"}]
        }))
    }

    #[test]
    fn markdown_becomes_whatsapp_formatting() {
        assert_eq!(
            to_whatsapp("# Plan\n**now** and ~~never~~"),
            "*Plan*\n*now* and ~never~"
        );
    }
}
