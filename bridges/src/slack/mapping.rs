//! Slack events → standard inbound messages, and Markdown → Slack `mrkdwn`.
//!
//! A direct message is a `message` event with `channel_type: "im"`; in channels the app
//! gets `app_mention`. Messages from bots, and subtypes (edits, joins, deletions), are not
//! answered. Ids are `sl-<channel>-<ts>`: the same message seen as `message` and as
//! `app_mention`, or redelivered by Slack, is one message. In channels every thread is its
//! own conversation, and the reply goes into the thread (`thread_ts`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use troupe_actors::bridge::{BridgeInbound, ChatKind, Destination};
use troupe_actors::message::{Attachment, ContentType, MessageParts};

/// An Events API body (also the `payload` of a Socket Mode `events_api` envelope).
#[derive(Debug, Deserialize)]
pub(crate) struct EventBody {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) challenge: Option<String>,
    #[serde(default)]
    pub(crate) event: Option<Event>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    bot_id: Option<String>,
    #[serde(default)]
    text: String,
    ts: String,
    #[serde(default)]
    thread_ts: Option<String>,
    channel: String,
    #[serde(default)]
    channel_type: Option<String>,
    #[serde(default)]
    files: Vec<File>,
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    mimetype: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    url_private: Option<String>,
    #[serde(default)]
    url_private_download: Option<String>,
    /// `slack_audio` for an audio clip recorded in Slack (whatever its MIME type says).
    #[serde(default)]
    subtype: Option<String>,
}

impl File {
    /// What the file is: an audio clip recorded in Slack is audio even when its MIME type
    /// says video (clips are WebM or MP4).
    fn content_type(&self) -> ContentType {
        if self.subtype.as_deref() == Some("slack_audio") {
            ContentType::Audio
        } else {
            crate::common::content_type_of(self.mimetype.as_deref())
        }
    }
}

/// The message of an event, or `None` when there is nothing to answer.
pub(crate) fn inbound(event: &Event) -> Option<BridgeInbound> {
    let direct = event.kind == "message" && event.channel_type.as_deref() == Some("im");
    let mention = event.kind == "app_mention";
    if !(direct || mention) || event.bot_id.is_some() {
        return None;
    }
    if event
        .subtype
        .as_deref()
        .is_some_and(|subtype| subtype != "file_share")
    {
        return None;
    }
    let user = event.user.clone()?;
    let attachments: Vec<Attachment> = event
        .files
        .iter()
        .map(|file| Attachment {
            content_type: file.content_type(),
            url: file
                .url_private_download
                .clone()
                .or_else(|| file.url_private.clone())
                .or_else(|| Some(format!("slack-file:{}", file.id))),
            name: file.name.clone(),
            mime_type: file.mimetype.clone(),
            size_bytes: file.size,
            upload_id: None,
        })
        .collect();
    let text = strip_leading_mention(&event.text);
    if text.is_empty() && attachments.is_empty() {
        return None;
    }
    let payload = if text.is_empty() {
        "[a file]".to_owned()
    } else {
        text
    };
    let (chat, conversation_id, thread) = if direct {
        (
            ChatKind::Direct,
            event.channel.clone(),
            event.thread_ts.clone(),
        )
    } else {
        let thread = event.thread_ts.clone().unwrap_or_else(|| event.ts.clone());
        (
            ChatKind::Group,
            format!("{}:{thread}", event.channel),
            Some(thread),
        )
    };
    let mut metadata = BTreeMap::new();
    metadata.insert("slack_ts".into(), Value::String(event.ts.clone()));
    Some(BridgeInbound {
        message: crate::common::platform_message(MessageParts {
            id: format!("sl-{}-{}", event.channel, event.ts),
            platform: "slack".into(),
            sender_id: user.clone(),
            conversation_id,
            content_type: ContentType::Text,
            payload,
            timestamp: event
                .ts
                .split('.')
                .next()
                .and_then(|secs| secs.parse().ok())
                .unwrap_or_default(),
            reply_to: None,
            attachments,
            metadata,
        })?,
        destination: Destination {
            chat_id: event.channel.clone(),
            thread_id: thread,
            reply_to_message_id: Some(event.ts.clone()),
            recipient_id: Some(user.clone()),
        },
        chat,
        addressed: true,
        sender_name: user,
    })
}

/// `<@U0LAN0Z89> what time is it` → `what time is it`.
fn strip_leading_mention(text: &str) -> String {
    let trimmed = text.trim();
    match trimmed
        .strip_prefix("<@")
        .and_then(|rest| rest.split_once('>'))
    {
        Some((_, rest)) => rest.trim().to_owned(),
        None => trimmed.to_owned(),
    }
}

/// Markdown → Slack `mrkdwn`: `&`, `<`, `>` escaped; `**bold**` → `*bold*`; `*it*` →
/// `_it_`; `~~s~~` → `~s~`; `[text](url)` → `<url|text>`; code spans and blocks kept.
pub(crate) fn to_mrkdwn(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut in_block = false;
    for (index, line) in markdown.split('\n').enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let escaped = line
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            out.push_str(&escaped);
            continue;
        }
        if in_block {
            out.push_str(&escaped);
            continue;
        }
        out.push_str(&inline_mrkdwn(&escaped));
    }
    out
}

fn inline_mrkdwn(line: &str) -> String {
    // Code spans stay as they are; everything between them is converted.
    line.split('`')
        .enumerate()
        .map(|(index, part)| {
            if index % 2 == 1 {
                return format!("`{part}`");
            }
            let links = convert_links(part);
            let bold_marker = "\u{0}";
            links
                .replace("**", bold_marker)
                .replace("~~", "~")
                .split('*')
                .collect::<Vec<_>>()
                .join("_")
                .replace(bold_marker, "*")
        })
        .collect()
}

fn convert_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some((label, after)) = rest[open + 1..].split_once("](") else {
            break;
        };
        let Some((url, tail)) = after.split_once(')') else {
            break;
        };
        if label.contains('[') || !(url.starts_with("http://") || url.starts_with("https://")) {
            out.push_str(&rest[..=open]);
            rest = &rest[open + 1..];
            continue;
        }
        out.push_str(&rest[..open]);
        out.push_str(&format!("<{url}|{label}>"));
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(value: serde_json::Value) -> Event {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn an_audio_clip_is_audio_to_download_whatever_its_mime_type() {
        let clip = event(
            json!({"type": "message", "subtype": "file_share", "channel": "D1",
            "channel_type": "im", "user": "U1", "text": "", "ts": "1.000001",
            "files": [{"id": "F1", "name": "audio_message.mp4", "mimetype": "video/mp4",
                "subtype": "slack_audio", "size": 9,
                "url_private": "https://files.slack.com/files-pri/T1-F1/audio_message.mp4",
                "url_private_download": "https://files.slack.com/files-pri/T1-F1/download/audio_message.mp4"}]}),
        );
        let inbound = inbound(&clip).expect("a clip is a message");
        let attachment = &inbound.message.attachments()[0];
        assert_eq!(attachment.content_type, ContentType::Audio);
        assert_eq!(
            attachment.url.as_deref(),
            Some("https://files.slack.com/files-pri/T1-F1/download/audio_message.mp4")
        );
        assert_eq!(attachment.size_bytes, Some(9));
    }

    #[test]
    fn direct_messages_and_mentions_are_answered() {
        let dm = event(
            json!({"type": "message", "channel": "D024BE91L", "channel_type": "im",
            "user": "U2147483697", "text": "Hello hello can you hear me?", "ts": "1355517523.000005"}),
        );
        let dm = inbound(&dm).unwrap();
        assert_eq!(dm.chat, ChatKind::Direct);
        assert_eq!(dm.message.id(), "sl-D024BE91L-1355517523.000005");
        assert_eq!(dm.message.conversation_id(), "D024BE91L");
        assert_eq!(dm.destination.thread_id, None);
        assert_eq!(dm.message.timestamp(), 1_355_517_523);

        let mention = event(json!({"type": "app_mention", "user": "U061F7AUR",
            "text": "<@U0LAN0Z89> is it everything a river should be?", "ts": "1515449522.000016",
            "channel": "C123ABC456", "event_ts": "1515449522000016"}));
        let mention = inbound(&mention).unwrap();
        assert_eq!(mention.chat, ChatKind::Group);
        assert_eq!(
            mention.message.payload(),
            "is it everything a river should be?"
        );
        assert_eq!(
            mention.message.conversation_id(),
            "C123ABC456:1515449522.000016"
        );
        assert_eq!(
            mention.destination.thread_id.as_deref(),
            Some("1515449522.000016")
        );
    }

    #[test]
    fn bots_edits_and_channel_chatter_are_not_answered() {
        for value in [
            json!({"type": "message", "channel": "D1", "channel_type": "im", "bot_id": "B1", "text": "hi", "ts": "1.1"}),
            json!({"type": "message", "subtype": "message_changed", "channel": "D1", "channel_type": "im", "ts": "1.2"}),
            json!({"type": "message", "channel": "C1", "channel_type": "channel", "user": "U1", "text": "hi", "ts": "1.3"}),
            json!({"type": "message", "channel": "D1", "channel_type": "im", "user": "U1", "text": "  ", "ts": "1.4"}),
        ] {
            assert!(inbound(&event(value.clone())).is_none(), "{value}");
        }
    }

    #[test]
    fn markdown_becomes_mrkdwn() {
        assert_eq!(to_mrkdwn("**bold** and *it* ~~s~~"), "*bold* and _it_ ~s~");
        assert_eq!(
            to_mrkdwn("see [docs](https://x.io/a)"),
            "see <https://x.io/a|docs>"
        );
        assert_eq!(to_mrkdwn("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(to_mrkdwn("run `a*b*c`"), "run `a*b*c`");
        assert_eq!(to_mrkdwn("```\nlet *p = 1;\n```"), "```\nlet *p = 1;\n```");
    }
}
