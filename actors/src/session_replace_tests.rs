//! A message that replaces the person's last one (edit and resend, regenerate): the
//! exchange it replaces leaves the history, the model sees the conversation without it,
//! and a failed turn puts it back.

use crate::message::{InboundDraft, InboundMessage, MessageLimits};
use crate::node_tests::{collect, key, scripted_node, text_message};
use crate::provider::{ProviderErrorKind, Role};
use crate::snapshot::SnapshotStore;
use crate::testing::Scripted;
use crate::turn::{ErrorCode, TurnEvent};

fn replacing(id: &str, replaced: &str, payload: &str) -> InboundMessage {
    let draft = InboundDraft {
        id: Some(id.into()),
        platform: Some("test".into()),
        sender_id: Some("ada".into()),
        payload: Some(payload.into()),
        replaces: Some(replaced.into()),
        ..InboundDraft::default()
    };
    let defaults = crate::message::DraftDefaults {
        platform: "test",
        sender_id: None,
        now_unix_secs: 1,
    };
    draft
        .validate(
            &defaults,
            MessageLimits {
                max_payload_bytes: 1024,
                ..MessageLimits::default()
            },
        )
        .expect("a valid message")
}

fn said(history: &[crate::session::HistoryView]) -> Vec<(Role, &str)> {
    history
        .iter()
        .map(|entry| (entry.role, entry.content.as_str()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_edited_last_message_replaces_its_exchange_and_a_failed_one_changes_nothing() {
    let (node, provider) = scripted_node(vec![
        Scripted::Text(vec!["Paris".into()]),
        Scripted::Text(vec!["Madrid".into()]),
        Scripted::Text(vec!["Lisbon".into()]),
        Scripted::Text(vec!["Lisboa".into()]),
        Scripted::Fail(ProviderErrorKind::Unauthorized, None),
    ])
    .await;
    for (id, text) in [("m1", "capital of France?"), ("m2", "capital of Spain?")] {
        collect(node.handle.route(text_message(id, "ada", text)).unwrap()).await;
    }
    // m2 is edited: its question and answer go, the new one is answered in their place.
    let (_, last) = collect(
        node.handle
            .route(replacing("m3", "m2", "capital of Portugal?"))
            .unwrap(),
    )
    .await;
    assert!(matches!(last, TurnEvent::Reply { .. }), "{last:?}");
    let sent = &provider.requests()[2].messages;
    assert_eq!(sent.len(), 3, "the model never sees the replaced exchange");
    assert_eq!(&*sent[2].content, "capital of Portugal?");
    let view = node.handle.history(key("ada")).await.unwrap().unwrap();
    assert_eq!(
        said(&view.history),
        [
            (Role::User, "capital of France?"),
            (Role::Assistant, "Paris"),
            (Role::User, "capital of Portugal?"),
            (Role::Assistant, "Lisbon"),
        ]
    );

    // Only the last message can be replaced.
    let (_, refused) = collect(node.handle.route(replacing("m4", "m1", "again")).unwrap()).await;
    let TurnEvent::Failed { error, .. } = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(error.code, ErrorCode::InvalidMessage);

    // Regenerate (the same text again) works; a regenerate that fails keeps the old answer.
    collect(
        node.handle
            .route(replacing("m5", "m3", "capital of Portugal?"))
            .unwrap(),
    )
    .await;
    let (_, failed) = collect(
        node.handle
            .route(replacing("m6", "m5", "capital of Portugal?"))
            .unwrap(),
    )
    .await;
    assert!(matches!(failed, TurnEvent::Failed { .. }), "{failed:?}");
    let view = node.handle.history(key("ada")).await.unwrap().unwrap();
    assert_eq!(
        said(&view.history)[2..],
        [
            (Role::User, "capital of Portugal?"),
            (Role::Assistant, "Lisboa")
        ]
    );
    assert_eq!(view.history[2].message_id.as_deref(), Some("m5"));

    // What is stored is what is shown: the store holds the same after a restart's load.
    let stored = node.store.load(&key("ada")).await.unwrap().unwrap();
    assert_eq!(stored.history.len(), 4);
    assert_eq!(&*stored.history[3].content, "Lisboa");
}
