//! Stopping a turn ("stop generating"): the model call is dropped, the person keeps what
//! they were shown, and a turn stopped before its first word leaves the conversation as it
//! was. Stops go round the session's mailbox ([`crate::stop`]).

use std::sync::Arc;
use std::time::Duration;

use crate::model_worker::ProviderPolicy;
use crate::node_tests::{TestNode, collect, key, node_with, session_config, text_message};
use crate::provider::{ModelProvider, Role};
use crate::snapshot::MemorySnapshotStore;
use crate::stop::StopOutcome;
use crate::testing::{Scripted, ScriptedProvider};
use crate::turn::{ErrorCode, TurnEvent, TurnEventReceiver};

/// A node whose provider calls may run for an hour: only a stop ends them.
async fn patient_node(script: Vec<Scripted>) -> (TestNode, Arc<ScriptedProvider>) {
    let provider = Arc::new(ScriptedProvider::new("main", script));
    let policy = ProviderPolicy {
        timeout: Duration::from_secs(3600),
        max_retries: 0,
        ..ProviderPolicy::default()
    };
    let mut config = session_config();
    config.turn_timeout = Duration::from_secs(3600);
    let node = node_with(
        vec![(Arc::clone(&provider) as Arc<dyn ModelProvider>, policy)],
        config,
        Arc::new(MemorySnapshotStore::new()),
    )
    .await;
    (node, provider)
}

/// The next `count` deltas' text.
async fn deltas(events: &mut TurnEventReceiver, count: usize) -> Vec<String> {
    let mut texts = Vec::new();
    while texts.len() < count {
        match events.recv().await {
            Some(TurnEvent::Delta { text, .. }) => texts.push(text),
            other => panic!("expected a delta, got {other:?}"),
        }
    }
    texts
}

/// Waits, on the paused clock, until the provider has been asked `count` times.
async fn asked(provider: &ScriptedProvider, count: usize) {
    for _ in 0..1000 {
        if provider.requests().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the provider was asked {} times", provider.requests().len());
}

/// Waits until no provider call is left running.
async fn calls_dropped(provider: &ScriptedProvider) {
    for _ in 0..1000 {
        if provider.calls_in_progress() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{} calls still run", provider.calls_in_progress());
}

#[tokio::test(start_paused = true)]
async fn a_stopped_answer_keeps_what_the_person_saw_and_drops_the_model_call() {
    let (node, provider) = patient_node(vec![Scripted::StreamThenHang(vec![
        "Once upon".into(),
        " a time".into(),
    ])])
    .await;
    let mut events = node
        .handle
        .route(text_message("m1", "ada", "tell me a story"))
        .unwrap();
    assert_eq!(deltas(&mut events, 2).await, ["Once upon", " a time"]);
    assert_eq!(node.handle.stop(&key("ada"), "m1"), StopOutcome::Stopping);
    let (more, last) = collect(events).await;
    assert!(more.is_empty(), "nothing streams after the stop: {more:?}");
    let TurnEvent::Reply { reply, .. } = last else {
        panic!("a stopped turn still answers: {last:?}");
    };
    assert!(reply.stopped);
    assert_eq!(reply.payload, "Once upon a time");
    calls_dropped(&provider).await;
    assert_eq!(
        node.handle.running_turns(),
        0,
        "the turn unregistered itself"
    );

    // The conversation keeps the partial answer, and goes on from it.
    let view = node.handle.history(key("ada")).await.unwrap().unwrap();
    let said: Vec<(Role, &str)> = view
        .history
        .iter()
        .map(|entry| (entry.role, entry.content.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            (Role::User, "tell me a story"),
            (Role::Assistant, "Once upon a time"),
        ]
    );
    let (_, next) = collect(
        node.handle
            .route(text_message("m2", "ada", "go on"))
            .unwrap(),
    )
    .await;
    assert!(
        matches!(next, TurnEvent::Reply { ref reply, .. } if !reply.stopped),
        "{next:?}"
    );
    assert_eq!(provider.requests()[1].messages.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_turn_stopped_before_its_first_word_leaves_the_conversation_as_it_was() {
    let (node, provider) =
        patient_node(vec![Scripted::Text(vec!["Paris".into()]), Scripted::Hang]).await;
    collect(
        node.handle
            .route(text_message("m1", "ada", "capital of France?"))
            .unwrap(),
    )
    .await;
    let events = node
        .handle
        .route(text_message("m2", "ada", "and of Spain?"))
        .unwrap();
    asked(&provider, 2).await;
    assert_eq!(node.handle.stop(&key("ada"), "m2"), StopOutcome::Stopping);
    let (_, last) = collect(events).await;
    let TurnEvent::Failed { error, in_reply_to } = last else {
        panic!("nothing was said, so nothing is kept: {last:?}");
    };
    assert_eq!(
        (error.code, in_reply_to.as_str()),
        (ErrorCode::Stopped, "m2")
    );
    calls_dropped(&provider).await;
    let view = node.handle.history(key("ada")).await.unwrap().unwrap();
    assert_eq!(view.history.len(), 2, "only the first exchange stays");
    assert_eq!(view.history[1].content, "Paris");
}

#[tokio::test(start_paused = true)]
async fn a_stop_reaches_only_the_turn_it_names_and_one_still_queued_stops_as_it_begins() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let (node, provider) =
        patient_node(vec![Scripted::Gated(Arc::clone(&gate), "first".into())]).await;
    let first = node.handle.route(text_message("m1", "ada", "one")).unwrap();
    let second = node.handle.route(text_message("m2", "ada", "two")).unwrap();
    asked(&provider, 1).await;
    // Stops of other messages, or of this id in another conversation, leave m1 running.
    assert_eq!(node.handle.stop(&key("ada"), "m0"), StopOutcome::NotRunning);
    assert_eq!(node.handle.stop(&key("bob"), "m1"), StopOutcome::NotRunning);
    // m2 waits behind m1: its stop waits for it.
    assert_eq!(node.handle.stop(&key("ada"), "m2"), StopOutcome::NotRunning);
    assert_eq!(node.handle.running_turns(), 1);
    gate.notify_one();
    let (_, answered) = collect(first).await;
    assert!(
        matches!(answered, TurnEvent::Reply { ref reply, .. } if !reply.stopped && reply.payload == "first"),
        "{answered:?}"
    );
    let (_, stopped) = collect(second).await;
    assert!(
        matches!(stopped, TurnEvent::Failed { ref error, .. } if error.code == ErrorCode::Stopped),
        "{stopped:?}"
    );
    assert_eq!(
        provider.requests().len(),
        1,
        "the stopped turn never asked the model"
    );
    assert_eq!(
        node.handle
            .history(key("ada"))
            .await
            .unwrap()
            .unwrap()
            .history
            .len(),
        2
    );
}
