//! The standard message model: what every access path and bridge turns its input into
//! (`InboundMessage`), and what a session answers with (`OutboundReply`).
//!
//! Wire payloads arrive as an [`InboundDraft`], where the server may fill in what the client
//! left out (`id`, `timestamp`, `platform`, `conversation_id`). Bridges fill in every field
//! of a [`MessageParts`]. Either way the message is built by [`InboundMessage::new`], so a
//! message inside the system has always passed the same checks, whichever door it came in
//! through.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bridge::identity::PERSON_PLATFORM;
use crate::ids::{InvalidId, RESERVED_PLATFORMS, SessionKey, validate_id, validate_platform};
use crate::skill::REPLY_ROUTE_METADATA;

/// Default largest accepted payload: 64 KiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Default most uploaded pictures in one message.
pub const DEFAULT_MAX_IMAGES: usize = 4;

/// The kind of content a message carries. Only `text` is handled end to end today;
/// the other kinds are reserved so that bridges can already name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    Text,
    Image,
    Audio,
    File,
}

impl ContentType {
    pub const ALL: [ContentType; 4] = [Self::Text, Self::Image, Self::Audio, Self::File];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Audio => "audio",
            Self::File => "file",
        }
    }

    /// Parses the wire name; `None` for a name that is not a content type at all.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A file, picture or voice note that came with a message (carried, not yet interpreted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub content_type: ContentType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// A picture uploaded into the conversation (`content_type` `image`), which the model
    /// sees with the message (see [`crate::uploads`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<crate::uploads::UploadId>,
}

/// A validated inbound message: the one shape every access path produces.
///
/// Its fields are private. It is built only by [`InboundMessage::new`] (what the bridges
/// call), by [`InboundDraft::validate`] (the web doors, which fill in defaults first), or
/// when read back from storage, which goes through the same checks. So a message inside
/// the system always has valid ids, a valid platform, and a non-empty text payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "MessageParts")]
pub struct InboundMessage {
    id: String,
    platform: String,
    sender_id: String,
    conversation_id: String,
    content_type: ContentType,
    payload: String,
    timestamp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, serde_json::Value>,
}

/// The fields of an inbound message before they are checked: what a bridge fills in from
/// its platform's event, and what storage holds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct MessageParts {
    /// Unique per sender; the dedupe key (a repeated id gets the first reply again).
    pub id: String,
    /// Which door it came through: `ws`, `api`, `openai`, `telegram`, …
    pub platform: String,
    pub sender_id: String,
    /// The conversation on that platform (the sender, for a direct chat).
    pub conversation_id: String,
    pub content_type: ContentType,
    pub payload: String,
    /// Unix seconds.
    pub timestamp: u64,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

impl TryFrom<MessageParts> for InboundMessage {
    type Error = MessageError;

    fn try_from(parts: MessageParts) -> Result<Self, MessageError> {
        Self::new(parts)
    }
}

impl InboundMessage {
    /// Checks `parts` and builds the message: every id and the platform name are valid,
    /// the content is text, and the payload is not blank. Size limits are the door's
    /// policy ([`MessageLimits::admit`]), since a stored message must load whatever the
    /// limit is today.
    pub fn new(parts: MessageParts) -> Result<Self, MessageError> {
        validate_platform(&parts.platform).map_err(|reason| MessageError::InvalidId {
            field: "platform",
            reason,
        })?;
        check_id("id", &parts.id)?;
        check_id("sender_id", &parts.sender_id)?;
        check_id("conversation_id", &parts.conversation_id)?;
        if let Some(reply_to) = &parts.reply_to {
            check_id("reply_to", reply_to)?;
        }
        let shows_pictures = parts
            .attachments
            .iter()
            .any(|attachment| attachment.upload_id.is_some());
        check_content(parts.content_type, &parts.payload, shows_pictures)?;
        Ok(Self {
            id: parts.id,
            platform: parts.platform,
            sender_id: parts.sender_id,
            conversation_id: parts.conversation_id,
            content_type: parts.content_type,
            payload: parts.payload,
            timestamp: parts.timestamp,
            reply_to: parts.reply_to,
            attachments: parts.attachments,
            metadata: parts.metadata,
        })
    }

    /// The session this message belongs to.
    pub fn session_key(&self) -> SessionKey {
        SessionKey::new_unchecked(&self.platform, &self.conversation_id)
    }

    /// Unique per sender; the dedupe key (a repeated id gets the first reply again).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Which door it came through: `ws`, `api`, `openai`, `telegram`, `person`, …
    pub fn platform(&self) -> &str {
        &self.platform
    }

    pub fn sender_id(&self) -> &str {
        &self.sender_id
    }

    pub fn conversation_id(&self) -> &str {
        &self.conversation_id
    }

    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// The text the sender wrote; never blank.
    pub fn payload(&self) -> &str {
        &self.payload
    }

    /// Unix seconds.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    pub fn reply_to(&self) -> Option<&str> {
        self.reply_to.as_deref()
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    pub fn metadata(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.metadata
    }

    /// The id of the earlier message this one replaces, if it replaces one.
    pub fn replaces(&self) -> Option<&str> {
        self.metadata
            .get(REPLACES_METADATA)
            .and_then(serde_json::Value::as_str)
    }

    /// How to reach the sender later (`troupe.reply_route`), if the door noted it.
    pub fn reply_route(&self) -> Option<&serde_json::Value> {
        self.metadata.get(REPLY_ROUTE_METADATA)
    }

    /// Notes how to reach the sender later, for skills that message people back (a
    /// reminder). Only the server sets this key: clients are refused `troupe.*` keys.
    pub fn set_reply_route(&mut self, route: serde_json::Value) {
        self.metadata.insert(REPLY_ROUTE_METADATA.to_owned(), route);
    }

    /// Whether a workflow run sent it (its own model turn).
    pub fn is_from_workflow(&self) -> bool {
        self.metadata.contains_key(WORKFLOW_RUN_METADATA)
    }

    /// The person the sender is linked to (`troupe.person`), if the door noted one.
    pub fn person(&self) -> Option<&str> {
        self.metadata
            .get(PERSON_METADATA)
            .and_then(serde_json::Value::as_str)
    }

    /// Notes the person the sender is linked to, whose memory the message's turns use,
    /// whatever conversation it is in. Only the server sets this key.
    pub fn set_person(&mut self, person: &str) -> Result<(), MessageError> {
        check_id("person", person)?;
        self.metadata.insert(
            PERSON_METADATA.to_owned(),
            serde_json::Value::String(person.to_owned()),
        );
        Ok(())
    }

    /// The text heard in the message's voice note becomes its text (the recording stays
    /// an attachment), marked `troupe.voice_note`. A blank transcript is refused.
    pub fn heard(&mut self, transcript: &str) -> Result<(), MessageError> {
        check_content(self.content_type, transcript, false)?;
        transcript.trim().clone_into(&mut self.payload);
        self.metadata.insert(
            VOICE_NOTE_METADATA.to_owned(),
            serde_json::Value::Bool(true),
        );
        Ok(())
    }

    /// Moves the message into the conversation of the person its sender is linked to
    /// (`person:<name>`), noting the platform it came from under `via`.
    pub fn join_person(&mut self, person: String) -> Result<(), MessageError> {
        self.set_person(&person)?;
        let via = std::mem::replace(&mut self.platform, PERSON_PLATFORM.to_owned());
        self.metadata
            .insert("via".to_owned(), serde_json::Value::String(via));
        self.conversation_id = person;
        Ok(())
    }
}

/// The reply a session sends back for one inbound message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundReply {
    pub id: String,
    pub in_reply_to: String,
    pub platform: String,
    pub recipient_id: String,
    pub conversation_id: String,
    pub content_type: ContentType,
    pub payload: String,
    /// Unix seconds.
    pub timestamp: u64,
    /// What the reply waits for from the person, when it asks them something the node
    /// understands (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<Awaiting>,
    /// Set when the person stopped the turn: `payload` is what the model had said by then
    /// (absent otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

/// What a reply waits for from the person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Awaiting {
    /// A yes or no to the tool calls the reply lists (see `session::tools`).
    Confirmation,
}

/// An inbound message as a client sends it: everything the server can fill in is optional.
/// `content_type` stays a string here so that an unknown kind gets our own error, not serde's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundDraft {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub sender_id: Option<String>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub timestamp: Option<u64>,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// The id of the person's last message in the conversation, which this one replaces
    /// (edit and resend, regenerate): that message and what followed it are dropped from
    /// the history before this one is answered.
    #[serde(default)]
    pub replaces: Option<String>,
}

/// Where a message that replaces an earlier one keeps that one's id (the server's key).
pub const REPLACES_METADATA: &str = "troupe.replaces";
/// Metadata key: the person the sender is linked to (set by the server only).
pub const PERSON_METADATA: &str = "troupe.person";
/// Metadata key: the message is a workflow run's own model turn, the run's id (set by the
/// server only): it never starts or answers workflows itself.
pub const WORKFLOW_RUN_METADATA: &str = "troupe.workflow_run";
/// Metadata key: the text is what was heard in the message's voice note (set by the
/// server only).
pub const VOICE_NOTE_METADATA: &str = "troupe.voice_note";

/// What the server fills in when the client did not say.
#[derive(Clone, Debug)]
pub struct DraftDefaults<'a> {
    pub platform: &'a str,
    /// Used when the draft names no sender (e.g. the WebSocket's `hello` identity).
    pub sender_id: Option<&'a str>,
    pub now_unix_secs: u64,
}

/// Limits every inbound message is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    pub max_payload_bytes: usize,
    /// Most uploaded pictures one message may show.
    pub max_images: usize,
}

impl MessageLimits {
    /// Whether a door with these limits takes `message`.
    pub fn admit(self, message: &InboundMessage) -> Result<(), MessageError> {
        if message.payload.len() > self.max_payload_bytes {
            return Err(MessageError::PayloadTooLarge {
                actual: message.payload.len(),
                limit: self.max_payload_bytes,
            });
        }
        let images = message
            .attachments
            .iter()
            .filter(|attachment| attachment.upload_id.is_some())
            .count();
        if images > self.max_images {
            return Err(MessageError::TooManyImages {
                actual: images,
                limit: self.max_images,
            });
        }
        Ok(())
    }
}

impl Default for MessageLimits {
    fn default() -> Self {
        Self {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_images: DEFAULT_MAX_IMAGES,
        }
    }
}

/// Why an inbound message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("payload is empty")]
    EmptyPayload,
    #[error("payload is {actual} bytes, larger than the limit of {limit} bytes")]
    PayloadTooLarge { actual: usize, limit: usize },
    #[error("the message shows {actual} pictures, more than the limit of {limit}")]
    TooManyImages { actual: usize, limit: usize },
    #[error("unknown content type `{0}` (expected one of: text, image, audio, file)")]
    UnknownContentType(String),
    #[error("content type `{0}` is reserved and not supported yet; send `text`")]
    UnsupportedContentType(ContentType),
    #[error("field `{field}` is invalid: {reason}")]
    InvalidId {
        field: &'static str,
        #[source]
        reason: InvalidId,
    },
    #[error("field `{0}` is required")]
    MissingField(&'static str),
    #[error("metadata key `{0}` is reserved for the server")]
    ReservedMetadata(String),
}

impl InboundDraft {
    /// Fills in server defaults and checks everything; the only way to get an
    /// [`InboundMessage`] from outside input.
    pub fn validate(
        self,
        defaults: &DraftDefaults<'_>,
        limits: MessageLimits,
    ) -> Result<InboundMessage, MessageError> {
        let platform = self
            .platform
            .unwrap_or_else(|| defaults.platform.to_owned());
        if RESERVED_PLATFORMS.contains(&platform.as_str()) {
            return Err(MessageError::InvalidId {
                field: "platform",
                reason: InvalidId::ReservedPlatform(platform),
            });
        }
        let sender_id = match (self.sender_id, defaults.sender_id) {
            (Some(sender), _) => sender,
            (None, Some(default_sender)) => default_sender.to_owned(),
            (None, None) => return Err(MessageError::MissingField("sender_id")),
        };
        check_reserved_metadata(&self.metadata)?;
        let mut metadata = self.metadata;
        if let Some(replaced) = self.replaces {
            check_id("replaces", &replaced)?;
            metadata.insert(REPLACES_METADATA.to_owned(), replaced.into());
        }
        let content_type = parse_content_type(self.content_type.as_deref())?;
        let message = InboundMessage::new(MessageParts {
            id: self.id.unwrap_or_else(new_message_id),
            platform,
            conversation_id: self.conversation_id.unwrap_or_else(|| sender_id.clone()),
            sender_id,
            content_type,
            payload: self.payload.unwrap_or_default(),
            timestamp: self.timestamp.unwrap_or(defaults.now_unix_secs),
            reply_to: self.reply_to,
            attachments: self.attachments,
            metadata,
        })?;
        limits.admit(&message)?;
        Ok(message)
    }
}

/// Refuses metadata keys a client may not set: `troupe.*` is the server's own (where
/// replies go, for one). Every path that takes metadata from outside calls this.
pub fn check_reserved_metadata(
    metadata: &BTreeMap<String, serde_json::Value>,
) -> Result<(), MessageError> {
    match metadata.keys().find(|key| key.starts_with("troupe.")) {
        Some(reserved) => Err(MessageError::ReservedMetadata(reserved.clone())),
        None => Ok(()),
    }
}

fn check_id(field: &'static str, value: &str) -> Result<(), MessageError> {
    validate_id(value).map_err(|reason| MessageError::InvalidId { field, reason })
}

fn parse_content_type(name: Option<&str>) -> Result<ContentType, MessageError> {
    let Some(name) = name else {
        return Ok(ContentType::Text);
    };
    ContentType::parse(name).ok_or_else(|| MessageError::UnknownContentType(name.to_owned()))
}

/// Only text is handled end to end, and a text message says something.
/// A message is text, and says something: in words, or with the pictures it shows.
fn check_content(
    content_type: ContentType,
    payload: &str,
    shows_pictures: bool,
) -> Result<(), MessageError> {
    if content_type != ContentType::Text {
        return Err(MessageError::UnsupportedContentType(content_type));
    }
    if payload.trim().is_empty() && !shows_pictures {
        return Err(MessageError::EmptyPayload);
    }
    Ok(())
}

/// A fresh, unique message id (`m-` + a UUIDv4 in simple form).
pub fn new_message_id() -> String {
    format!("m-{}", uuid::Uuid::new_v4().simple())
}

/// The current time in unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> DraftDefaults<'static> {
        DraftDefaults {
            platform: "api",
            sender_id: None,
            now_unix_secs: 1_700_000_000,
        }
    }

    fn draft(json: serde_json::Value) -> InboundDraft {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn fills_in_server_defaults() {
        let message = draft(serde_json::json!({"sender_id": "alice", "payload": "hi"}))
            .validate(&defaults(), MessageLimits::default())
            .unwrap();
        assert_eq!(message.platform, "api");
        assert_eq!(message.conversation_id, "alice");
        assert_eq!(message.content_type, ContentType::Text);
        assert_eq!(message.timestamp, 1_700_000_000);
        assert!(message.id.starts_with("m-"));
    }

    #[test]
    fn keeps_what_the_client_set() {
        let message = draft(serde_json::json!({
            "id": "c1", "platform": "telegram", "sender_id": "42", "conversation_id": "-100",
            "content_type": "text", "payload": "hello", "timestamp": 5, "reply_to": "c0",
            "metadata": {"lang": "en"}
        }))
        .validate(&defaults(), MessageLimits::default())
        .unwrap();
        assert_eq!(message.id, "c1");
        assert_eq!(message.session_key().to_string(), "telegram:-100");
        assert_eq!(message.timestamp, 5);
        assert_eq!(message.reply_to.as_deref(), Some("c0"));
        assert_eq!(message.metadata["lang"], "en");
    }

    #[test]
    fn a_message_of_pictures_alone_needs_no_words() {
        let picture = serde_json::json!({"content_type": "image", "upload_id": "up-0123456789abcdef0123456789abcdef"});
        let shown =
            draft(serde_json::json!({"sender_id": "a", "payload": "", "attachments": [picture]}));
        assert!(
            shown
                .validate(&defaults(), MessageLimits::default())
                .is_ok()
        );
        let linked =
            serde_json::json!({"content_type": "image", "url": "https://example.com/a.png"});
        let unread =
            draft(serde_json::json!({"sender_id": "a", "payload": "", "attachments": [linked]}));
        assert_eq!(
            unread.validate(&defaults(), MessageLimits::default()),
            Err(MessageError::EmptyPayload)
        );
    }

    #[test]
    fn refuses_empty_and_oversized_payloads() {
        let empty = draft(serde_json::json!({"sender_id": "a", "payload": "  "}));
        assert_eq!(
            empty.validate(&defaults(), MessageLimits::default()),
            Err(MessageError::EmptyPayload)
        );
        let big = draft(serde_json::json!({"sender_id": "a", "payload": "x".repeat(11)}));
        let error = big.validate(
            &defaults(),
            MessageLimits {
                max_payload_bytes: 10,
                ..MessageLimits::default()
            },
        );
        assert_eq!(
            error,
            Err(MessageError::PayloadTooLarge {
                actual: 11,
                limit: 10
            })
        );
    }

    #[test]
    fn refuses_unknown_and_reserved_content_types() {
        let unknown = draft(serde_json::json!({"sender_id": "a", "payload": "x",
            "content_type": "video"}));
        assert_eq!(
            unknown.validate(&defaults(), MessageLimits::default()),
            Err(MessageError::UnknownContentType("video".into()))
        );
        let reserved = draft(serde_json::json!({"sender_id": "a", "payload": "x",
            "content_type": "image"}));
        assert_eq!(
            reserved.validate(&defaults(), MessageLimits::default()),
            Err(MessageError::UnsupportedContentType(ContentType::Image))
        );
    }

    #[test]
    fn refuses_bad_ids() {
        for bad in [
            serde_json::json!({"sender_id": "", "payload": "x"}),
            serde_json::json!({"sender_id": "a b", "payload": "x"}),
            serde_json::json!({"sender_id": "a", "id": "x".repeat(300), "payload": "x"}),
            serde_json::json!({"sender_id": "a", "platform": "Not:Ok", "payload": "x"}),
            serde_json::json!({"sender_id": "a\u{0}", "payload": "x"}),
            serde_json::json!({"sender_id": "a", "platform": "notes", "payload": "x"}),
        ] {
            let error = draft(bad.clone()).validate(&defaults(), MessageLimits::default());
            assert!(
                matches!(error, Err(MessageError::InvalidId { .. })),
                "{bad}: {error:?}"
            );
        }
        let missing = draft(serde_json::json!({"payload": "x"}));
        assert_eq!(
            missing.validate(&defaults(), MessageLimits::default()),
            Err(MessageError::MissingField("sender_id"))
        );
    }

    #[test]
    fn refuses_metadata_reserved_for_the_server() {
        let forged = draft(serde_json::json!({"sender_id": "a", "payload": "x",
            "metadata": {"troupe.reply_route": {"bridge": "tg"}}}));
        assert_eq!(
            forged.validate(&defaults(), MessageLimits::default()),
            Err(MessageError::ReservedMetadata("troupe.reply_route".into()))
        );
    }

    fn parts(sender: &str, payload: &str) -> MessageParts {
        MessageParts {
            id: "t1".into(),
            platform: "telegram".into(),
            sender_id: sender.into(),
            conversation_id: "42".into(),
            content_type: ContentType::Text,
            payload: payload.into(),
            timestamp: 9,
            reply_to: None,
            attachments: Vec::new(),
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn a_message_is_built_only_from_parts_that_keep_its_rules() {
        assert!(InboundMessage::new(parts("42", "hello")).is_ok());
        assert!(matches!(
            InboundMessage::new(parts("has space", "hello")),
            Err(MessageError::InvalidId {
                field: "sender_id",
                ..
            })
        ));
        assert_eq!(
            InboundMessage::new(parts("42", " \n ")),
            Err(MessageError::EmptyPayload)
        );
        let picture = MessageParts {
            content_type: ContentType::Image,
            ..parts("42", "a cat")
        };
        assert_eq!(
            InboundMessage::new(picture),
            Err(MessageError::UnsupportedContentType(ContentType::Image))
        );
    }

    #[test]
    fn a_stored_message_goes_through_the_same_checks_when_read_back() {
        let mut message = InboundMessage::new(parts("42", "hello")).unwrap();
        message.set_reply_route(serde_json::json!({"bridge": "tg"}));
        let stored = serde_json::to_value(&message).unwrap();
        let read: InboundMessage = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(read, message);
        assert_eq!(
            read.reply_route(),
            Some(&serde_json::json!({"bridge": "tg"}))
        );
        let mut forged = stored;
        forged["conversation_id"] = "a\u{0}b".into();
        let error = serde_json::from_value::<InboundMessage>(forged).unwrap_err();
        assert!(error.to_string().contains("conversation_id"), "{error}");
    }

    #[test]
    fn joining_a_person_moves_the_conversation_and_remembers_the_platform() {
        let mut message = InboundMessage::new(parts("42", "hello")).unwrap();
        message.join_person("ada".into()).unwrap();
        assert_eq!(message.session_key().to_string(), "person:ada");
        assert_eq!(message.metadata()["via"], "telegram");
        assert_eq!(message.sender_id(), "42");
        assert!(matches!(
            message.join_person("not ok".into()),
            Err(MessageError::InvalidId {
                field: "person",
                ..
            })
        ));
        assert_eq!(message.conversation_id(), "ada");
    }

    #[test]
    fn rejects_unknown_fields() {
        let parsed: Result<InboundDraft, _> =
            serde_json::from_value(serde_json::json!({"sender_id": "a", "bogus": 1}));
        assert!(parsed.is_err());
    }

    #[test]
    fn reply_round_trips_with_exact_field_names() {
        let reply = OutboundReply {
            id: "r1".into(),
            in_reply_to: "c1".into(),
            platform: "ws".into(),
            recipient_id: "alice".into(),
            conversation_id: "alice".into(),
            content_type: ContentType::Text,
            payload: "hi".into(),
            timestamp: 7,
            awaiting: None,
            stopped: false,
        };
        let json = serde_json::to_value(&reply).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "r1", "in_reply_to": "c1", "platform": "ws",
                "recipient_id": "alice", "conversation_id": "alice", "content_type": "text",
                "payload": "hi", "timestamp": 7})
        );
        assert_eq!(
            serde_json::from_value::<OutboundReply>(json).unwrap(),
            reply
        );
    }
}
