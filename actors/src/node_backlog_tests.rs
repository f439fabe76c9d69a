//! The node's backlog: a conversation past its limit is refused as busy, and a flooder
//! with many conversations slows only itself.

use std::sync::Arc;
use std::time::Duration;

use crate::model_worker::ProviderPolicy;
use crate::node::{NodeHandle, NodeSetup, ProviderSetup, start_node};
use crate::node_tests::{collect, message_from, quick_policy, session_config, text_message};
use crate::snapshot::MemorySnapshotStore;
use crate::supervisor::RestartBudget;
use crate::testing::{Scripted, ScriptedProvider};
use crate::turn::{ErrorCode, TurnEvent};

async fn node_with_backlog(
    script: Vec<Scripted>,
    max_concurrency: usize,
    backlog: crate::backlog::BacklogLimits,
) -> NodeHandle {
    let setup = NodeSetup {
        session: session_config(),
        store: Arc::new(MemorySnapshotStore::new()),
        providers: vec![ProviderSetup {
            provider: Arc::new(ScriptedProvider::new("main", script)),
            policy: ProviderPolicy {
                timeout: Duration::from_secs(10),
                max_concurrency,
                ..quick_policy()
            },
        }],
        skills: Vec::new(),
        budget: RestartBudget::default(),
        backlog,
        turn_context: None,
        inbox: None,
        uploads: None,
        memories: None,
        usage: None,
    };
    start_node(setup, |_| Vec::new()).await.unwrap().0
}

#[tokio::test(start_paused = true)]
async fn a_conversation_past_its_backlog_is_busy_while_others_are_answered() {
    let slow = (0..3)
        .map(|_| Scripted::Delayed(Duration::from_millis(300), "slow".into()))
        .collect();
    let limits = crate::backlog::BacklogLimits {
        per_session: 2,
        per_node: 100,
    };
    let handle = node_with_backlog(slow, 8, limits).await;
    let first = handle.route(text_message("b0", "flood", "one")).unwrap();
    let second = handle.route(text_message("b1", "flood", "two")).unwrap();
    let refused = handle
        .route(text_message("b2", "flood", "three"))
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Busy);
    assert!(refused.message.contains("waiting"), "{}", refused.message);
    let other = handle.route(text_message("o0", "quiet", "hi")).unwrap();
    for events in [first, second, other] {
        assert!(matches!(collect(events).await.1, TurnEvent::Reply { .. }));
    }
    assert_eq!(handle.backlog(), 0, "every place came back");
    assert!(handle.route(text_message("b3", "flood", "again")).is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_flooder_with_many_conversations_waits_its_turn_and_slows_only_itself() {
    let script = (0..8)
        .map(|_| Scripted::Delayed(Duration::from_millis(100), "answer".into()))
        .collect();
    let handle = node_with_backlog(script, 1, crate::backlog::BacklogLimits::default()).await;
    let (finished, mut order) = tokio::sync::mpsc::unbounded_channel();
    let mut flood = Vec::new();
    for index in 0..6 {
        let message = message_from(
            "flooder",
            &format!("f{index}"),
            &format!("room{index}"),
            "x",
        );
        flood.push(handle.route(message).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let ada = handle.route(text_message("ada", "ada", "hello")).unwrap();
    for (name, events) in flood
        .into_iter()
        .enumerate()
        .map(|(index, events)| (format!("f{index}"), events))
        .chain(std::iter::once(("ada".to_owned(), ada)))
    {
        let finished = finished.clone();
        tokio::spawn(async move {
            let (_, last) = collect(events).await;
            assert!(matches!(last, TurnEvent::Reply { .. }), "{last:?}");
            finished.send(name).unwrap();
        });
    }
    drop(finished);
    let mut served = Vec::new();
    while let Some(name) = order.recv().await {
        served.push(name);
    }
    let ada_place = served.iter().position(|name| name == "ada").unwrap();
    // In turn: the flooder's call in flight, then one more of the flooder's (its turn
    // came before Ada asked), then Ada; in arrival order she would be last.
    assert!(
        ada_place <= 2,
        "Ada waits for at most two of the flooder's six calls: {served:?}"
    );
}
