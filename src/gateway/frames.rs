//! The frames a WebSocket client sends, parsed once from the text into one typed enum.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use troupe_actors::message::{Attachment, InboundDraft};

/// Frames a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum ClientFrame {
    Hello {
        #[serde(default)]
        sender_id: Option<String>,
        #[serde(default)]
        token: Option<String>,
    },
    Message(MessageFrame),
    /// Stop generating the answer to the message `in_reply_to` of `conversation_id` (by
    /// default the sender's own conversation).
    Stop {
        in_reply_to: String,
        #[serde(default)]
        conversation_id: Option<String>,
    },
    /// The microphone opens: binary frames of 16 kHz mono PCM16 follow, and what is said
    /// becomes a message of `conversation_id` (by default the sender's own conversation).
    #[serde(rename = "voice_start")]
    VoiceStart(VoiceStartFrame),
    /// The person is done speaking (push-to-talk released): what was said is heard now.
    #[serde(rename = "voice_end")]
    VoiceEnd {},
    /// The microphone closes; speech not yet heard is dropped.
    #[serde(rename = "voice_stop")]
    VoiceStop {},
    /// The assistant stops speaking (its reply's text goes on).
    #[serde(rename = "speech_stop")]
    SpeechStop {},
}

/// How the microphone is listened to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum VoiceMode {
    /// Everything between `voice_start` and `voice_end` is one utterance.
    #[default]
    PushToTalk,
    /// Voice activity cuts utterances (after the wake word, when asked for), until
    /// `voice_stop`.
    HandsFree,
}

/// A `voice_start` frame.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VoiceStartFrame {
    #[serde(default)]
    pub(crate) mode: VoiceMode,
    #[serde(default)]
    pub(crate) conversation_id: Option<String>,
    /// Hands-free: each utterance needs the node's wake word first.
    #[serde(default)]
    pub(crate) wake_word: bool,
    /// Replies to what is said are spoken back (when the node has a voice).
    #[serde(default = "speaks_by_default")]
    pub(crate) speak: bool,
}

const fn speaks_by_default() -> bool {
    true
}

/// A `message` frame: what a client says, before validation makes it a message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageFrame {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    pub(crate) conversation_id: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    reply_to: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, Value>,
    /// Pictures uploaded into the conversation that the message shows.
    #[serde(default)]
    attachments: Vec<Attachment>,
    /// The id of the person's last message, which this one replaces.
    #[serde(default)]
    replaces: Option<String>,
    /// W3C trace context: the turn continues the client's trace.
    #[serde(default)]
    pub(crate) traceparent: Option<String>,
}

impl MessageFrame {
    /// The draft this frame asks for, written as `sender_id` on the `ws` platform.
    pub(crate) fn into_draft(self, sender_id: &str) -> InboundDraft {
        InboundDraft {
            id: self.id,
            platform: Some("ws".into()),
            sender_id: Some(sender_id.to_owned()),
            conversation_id: self.conversation_id,
            content_type: self.content_type,
            payload: self.payload,
            timestamp: None,
            reply_to: self.reply_to,
            attachments: self.attachments,
            metadata: self.metadata,
            replaces: self.replaces,
        }
    }
}

/// A text frame, read once.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a value that lives for one frame on the stack; boxing the message would cost an allocation for every message"
)]
pub(crate) enum Parsed {
    /// Not JSON at all: no `id` can be echoed.
    NotJson(serde_json::Error),
    /// JSON: its `id` (echoed in an error frame) and the frame, or why it is not one.
    Json {
        id: Option<String>,
        frame: Result<ClientFrame, serde_json::Error>,
    },
}

impl ClientFrame {
    /// The id a client gave the frame, echoed in the error frames about it.
    fn id(&self) -> Option<&str> {
        match self {
            // A stop's errors name no message: the turn it named has not failed.
            Self::Hello { .. }
            | Self::Stop { .. }
            | Self::VoiceStart(_)
            | Self::VoiceEnd {}
            | Self::VoiceStop {}
            | Self::SpeechStop {} => None,
            Self::Message(message) => message.id.as_deref(),
        }
    }
}

/// Only a frame's `id`, read from a frame that is JSON but not a valid frame.
#[derive(Deserialize)]
struct EchoedId {
    #[serde(default)]
    id: Option<String>,
}

/// Reads a client's text frame: straight into its type; the text is read a second time
/// only for a frame that is refused, to find the `id` to echo.
pub(crate) fn parse(text: &str) -> Parsed {
    match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => Parsed::Json {
            id: frame.id().map(str::to_owned),
            frame: Ok(frame),
        },
        Err(error) if error.is_syntax() || error.is_eof() => Parsed::NotJson(error),
        Err(error) => Parsed::Json {
            id: serde_json::from_str::<EchoedId>(text)
                .ok()
                .and_then(|echoed| echoed.id),
            frame: Err(error),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_frame_keeps_its_id_and_becomes_a_ws_draft() {
        let Parsed::Json { id, frame } =
            parse(r#"{"type":"message","id":"m-1","payload":"hi","conversation_id":"c"}"#)
        else {
            panic!("a JSON frame");
        };
        assert_eq!(id.as_deref(), Some("m-1"));
        let Ok(ClientFrame::Message(message)) = frame else {
            panic!("a message frame");
        };
        let draft = message.into_draft("alice");
        assert_eq!(draft.platform.as_deref(), Some("ws"));
        assert_eq!(draft.sender_id.as_deref(), Some("alice"));
        assert_eq!(draft.payload.as_deref(), Some("hi"));
    }

    #[test]
    fn a_stop_frame_names_the_message_whose_answer_it_stops() {
        let Parsed::Json { id, frame } =
            parse(r#"{"type":"stop","in_reply_to":"m-9","conversation_id":"ada/2"}"#)
        else {
            panic!("a JSON frame");
        };
        assert_eq!(id, None, "errors about a stop name no message");
        let Ok(ClientFrame::Stop {
            in_reply_to,
            conversation_id,
        }) = frame
        else {
            panic!("a stop frame");
        };
        assert_eq!(
            (in_reply_to.as_str(), conversation_id.as_deref()),
            ("m-9", Some("ada/2"))
        );
        let Parsed::Json { frame, .. } = parse(r#"{"type":"stop"}"#) else {
            panic!("a JSON frame");
        };
        assert!(frame.is_err(), "a stop frame names its message");
    }

    #[test]
    fn voice_frames_parse_with_their_defaults_and_refuse_unknown_modes() {
        let Parsed::Json {
            frame: Ok(ClientFrame::VoiceStart(start)),
            ..
        } = parse(r#"{"type":"voice_start"}"#)
        else {
            panic!("a voice_start frame");
        };
        assert_eq!(start.mode, VoiceMode::PushToTalk);
        assert!(start.speak && !start.wake_word && start.conversation_id.is_none());
        let Parsed::Json {
            frame: Ok(ClientFrame::VoiceStart(start)),
            ..
        } = parse(r#"{"type":"voice_start","mode":"hands_free","wake_word":true,"speak":false}"#)
        else {
            panic!("a voice_start frame");
        };
        assert_eq!(start.mode, VoiceMode::HandsFree);
        assert!(!start.speak && start.wake_word);
        for text in [
            r#"{"type":"voice_end"}"#,
            r#"{"type":"voice_stop"}"#,
            r#"{"type":"speech_stop"}"#,
        ] {
            assert!(
                matches!(parse(text), Parsed::Json { frame: Ok(_), .. }),
                "{text}"
            );
        }
        for text in [
            r#"{"type":"voice_start","mode":"always"}"#,
            r#"{"type":"voice_end","id":"x"}"#,
        ] {
            assert!(
                matches!(parse(text), Parsed::Json { frame: Err(_), .. }),
                "{text}"
            );
        }
    }

    #[test]
    fn an_unknown_field_is_refused_but_the_id_still_comes_back() {
        let Parsed::Json { id, frame } = parse(r#"{"type":"message","id":"m-2","extra":1}"#) else {
            panic!("a JSON frame");
        };
        assert_eq!(id.as_deref(), Some("m-2"));
        assert!(frame.is_err());
        assert!(matches!(parse("{nope"), Parsed::NotJson(_)));
        assert!(matches!(parse(r#"{"type":"message""#), Parsed::NotJson(_)));
    }

    #[test]
    fn a_refused_frame_echoes_only_a_string_id() {
        for (text, echoed) in [
            (r#"{"type":"shout","id":"m-3"}"#, Some("m-3")),
            (r#"{"type":"message","id":7}"#, None),
            (r#"{"type":"message","payload":3,"id":"m-4"}"#, Some("m-4")),
            (r#"[1,2]"#, None),
        ] {
            let Parsed::Json { id, frame } = parse(text) else {
                panic!("{text} is JSON");
            };
            assert!(frame.is_err(), "{text}");
            assert_eq!(id.as_deref(), echoed, "{text}");
        }
    }
}
