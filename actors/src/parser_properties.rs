//! Property tests of the parsers that take outside input: inbound drafts, session keys, and
//! what a store hands back (snapshots and journal records).
//! Whatever arrives, validation answers a message or a typed error, never a panic; and what
//! passes validation holds the invariants the rest of the system relies on.

use proptest::prelude::*;

use crate::ids::{SessionKey, validate_id, validate_platform};
use crate::message::{DraftDefaults, InboundDraft, MessageLimits};

fn defaults() -> DraftDefaults<'static> {
    DraftDefaults {
        platform: "api",
        sender_id: None,
        now_unix_secs: 1,
    }
}

proptest! {
    #[test]
    fn any_json_body_is_a_message_or_a_typed_error(body in ".{0,300}") {
        if let Ok(draft) = serde_json::from_str::<InboundDraft>(&body) {
            let _ = draft.validate(&defaults(), MessageLimits::default());
        }
    }

    #[test]
    fn validated_messages_keep_their_invariants(
        sender in "\\PC{0,20}",
        conversation in proptest::option::of("\\PC{0,20}"),
        payload in "\\PC{0,40}",
        limit in 1usize..64,
    ) {
        let draft = InboundDraft {
            sender_id: Some(sender),
            conversation_id: conversation,
            payload: Some(payload),
            ..InboundDraft::default()
        };
        if let Ok(message) = draft.validate(&defaults(), MessageLimits { max_payload_bytes: limit, ..MessageLimits::default() }) {
            prop_assert!(message.payload().len() <= limit);
            prop_assert!(!message.payload().trim().is_empty());
            prop_assert!(validate_id(message.sender_id()).is_ok());
            prop_assert!(validate_id(message.conversation_id()).is_ok());
            let key = message.session_key();
            prop_assert_eq!(SessionKey::parse(&key.to_string()), Ok(key));
        }
    }

    #[test]
    fn session_keys_round_trip_through_their_text(
        platform in "[a-z0-9_-]{1,32}",
        conversation in "[^\\s\\p{Cc}]{1,40}",
    ) {
        prop_assume!(validate_platform(&platform).is_ok() && validate_id(&conversation).is_ok());
        let key = SessionKey::new(&platform, &conversation).unwrap();
        prop_assert_eq!(SessionKey::parse(&key.to_string()), Ok(key));
    }

    #[test]
    fn stored_bytes_recover_as_a_session_or_a_typed_error(
        snapshot in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4),
    ) {
        let key = SessionKey::new_unchecked("api", "fuzzed");
        let records = records.iter().map(Vec::as_slice);
        let _ = crate::snapshot::SessionSnapshot::recover(&key, snapshot.as_deref(), records);
    }

    #[test]
    fn session_key_parsing_never_panics(text in "\\PC{0,80}") {
        let _ = SessionKey::parse(&text);
    }
}
