//! What travels over NATS between nodes, versioned: an inbound message on its way to the
//! session's owner ([`InboxEnvelope`]), a turn's events on their way back to the node that
//! holds the client ([`ReplyEnvelope`]), and node-to-node requests ([`RpcRequest`]).
//!
//! Envelopes are JSON (`InboundMessage` carries free-form JSON metadata, which bincode
//! cannot encode) with a `v` field: a node refuses a version newer than it knows, by name.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use troupe_actors::session::SessionView;
use troupe_actors::stop::StopOutcome;
use troupe_actors::{ErrorCode, InboundMessage, SessionKey, TurnEvent};

/// The envelope version this build writes (and the newest it reads).
pub const ENVELOPE_VERSION: u16 = 1;

/// Why an envelope could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope is not valid json: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("envelope version {0} is newer than this build understands")]
    TooNew(u16),
}

/// Where a turn's events go: a node and the waiter on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRoute {
    pub node: String,
    pub waiter: u64,
}

/// An inbound message in the durable inbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxEnvelope {
    pub message: InboundMessage,
    /// `None`: nobody waits (e.g. a bridge that delivers replies itself).
    pub reply_to: Option<ReplyRoute>,
    /// The node the message entered at.
    pub origin: String,
}

/// A turn's event on its way to the waiting node: borrowed when sent, owned when read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyEnvelope<'a> {
    pub waiter: u64,
    pub event: Cow<'a, TurnEvent>,
}

/// A request to the node that owns a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RpcRequest {
    History {
        key: SessionKey,
    },
    Reset {
        key: SessionKey,
    },
    /// Stop the turn of `message_id` (an older node answers that it cannot read this).
    Stop {
        key: SessionKey,
        message_id: String,
    },
}

/// Its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RpcResponse {
    History { view: Option<SessionView> },
    Reset { existed: bool },
    Stop { stop: StopOutcome },
    Failed { code: ErrorCode, message: String },
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    v: u16,
    #[serde(flatten)]
    body: T,
}

/// JSON with the current version.
pub fn encode<T: Serialize>(body: &T) -> bytes::Bytes {
    let versioned = Versioned {
        v: ENVELOPE_VERSION,
        body,
    };
    serde_json::to_vec(&versioned)
        .expect("envelopes hold only json-encodable types")
        .into()
}

/// Reads JSON written by [`encode`], refusing newer versions.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, EnvelopeError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: u16,
    }
    let version: VersionOnly = serde_json::from_slice(bytes)?;
    if version.v > ENVELOPE_VERSION {
        return Err(EnvelopeError::TooNew(version.v));
    }
    // The body's fields sit next to `v`, which the body types ignore (none of them denies
    // unknown fields): read them directly. `#[serde(flatten)]` would first copy every
    // field into an intermediate tree, which cost a node ~3 % of its time under load.
    Ok(serde_json::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_actors::TurnError;
    use troupe_actors::message::MessageParts;

    #[test]
    fn events_survive_the_wire() {
        let events = [
            TurnEvent::Failed {
                in_reply_to: "m1".into(),
                error: TurnError::new(ErrorCode::ProviderTimeout, "slow"),
            },
            TurnEvent::ToolCall {
                in_reply_to: "m1".into(),
                call_id: "c1".into(),
                name: "notes__recall".into(),
                arguments: "{}".into(),
            },
            TurnEvent::ToolResult {
                in_reply_to: "m1".into(),
                call_id: "c1".into(),
                name: "notes__recall".into(),
                ok: false,
                content: r#"{"error":{"code":"timeout","message":"slow"}}"#.into(),
            },
        ];
        for event in events {
            let envelope = ReplyEnvelope {
                waiter: 7,
                event: Cow::Borrowed(&event),
            };
            let back: ReplyEnvelope<'_> = decode(&encode(&envelope)).unwrap();
            assert_eq!(back.event.into_owned(), event);
        }
    }

    #[test]
    fn events_keep_the_wire_shape_nodes_of_earlier_builds_read() {
        let failed = TurnEvent::Failed {
            in_reply_to: "m1".into(),
            error: TurnError::new(ErrorCode::ProviderTimeout, "slow"),
        };
        let sent = encode(&ReplyEnvelope {
            waiter: 7,
            event: Cow::Borrowed(&failed),
        });
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&sent).unwrap(),
            serde_json::json!({"v": 1, "waiter": 7, "event": {"type": "failed",
                "in_reply_to": "m1", "code": "provider_timeout", "message": "slow"}})
        );
        let reply = br#"{"v":1,"waiter":3,"event":{"type":"reply","model_latency_us":1500,
            "reply":{"id":"r1","in_reply_to":"m1","platform":"ws","recipient_id":"a",
            "conversation_id":"a","content_type":"text","payload":"hi","timestamp":9}}}"#;
        let read: ReplyEnvelope<'_> = decode(reply).unwrap();
        let TurnEvent::Reply {
            reply,
            model_latency,
            ..
        } = read.event.into_owned()
        else {
            panic!("a reply event");
        };
        assert_eq!(model_latency, std::time::Duration::from_micros(1500));
        assert_eq!(reply.payload, "hi");
    }

    #[test]
    fn inbox_envelopes_and_answers_survive_the_wire() {
        let message = InboundMessage::new(MessageParts {
            id: "m1".into(),
            platform: "ws".into(),
            sender_id: "alice".into(),
            conversation_id: "alice".into(),
            content_type: troupe_actors::ContentType::Text,
            payload: "hello \"there\"".into(),
            timestamp: 1_700_000_000,
            reply_to: Some("m0".into()),
            attachments: Vec::new(),
            metadata: [(
                "reply_route".to_owned(),
                serde_json::json!({"websocket": 3}),
            )]
            .into(),
        })
        .expect("a valid message");
        let envelope = InboxEnvelope {
            message,
            reply_to: Some(ReplyRoute {
                node: "node-1".into(),
                waiter: 9,
            }),
            origin: "node-2".into(),
        };
        assert_eq!(
            decode::<InboxEnvelope>(&encode(&envelope)).unwrap(),
            envelope
        );
        for answer in [
            RpcResponse::History { view: None },
            RpcResponse::Reset { existed: true },
            RpcResponse::Stop {
                stop: StopOutcome::Stopping,
            },
            RpcResponse::Failed {
                code: ErrorCode::SessionFailed,
                message: "moving".into(),
            },
        ] {
            assert_eq!(decode::<RpcResponse>(&encode(&answer)).unwrap(), answer);
        }
    }

    #[test]
    fn versions_are_checked() {
        let request = RpcRequest::History {
            key: SessionKey::new_unchecked("ws", "alice"),
        };
        let bytes = encode(&request);
        assert_eq!(decode::<RpcRequest>(&bytes).unwrap(), request);
        let newer = String::from_utf8(bytes.to_vec())
            .unwrap()
            .replace("\"v\":1", "\"v\":9");
        assert!(matches!(
            decode::<RpcRequest>(newer.as_bytes()),
            Err(EnvelopeError::TooNew(9))
        ));
        assert!(matches!(
            decode::<RpcRequest>(b"{"),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
