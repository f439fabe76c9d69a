//! A session's turn journal seen from outside: turns append records instead of rewriting
//! the snapshot, the snapshot folds them in now and then, and a session loaded from both is
//! the one that wrote them.

use std::sync::Arc;
use std::time::Duration;

use crate::node_tests::{TestNode, key, node_with, quick_policy, reply_text, session_config};
use crate::provider::Role;
use crate::session::SessionConfig;
use crate::snapshot::{MemorySnapshotStore, SnapshotStore};
use crate::testing::ScriptedProvider;

async fn echo_node(config: SessionConfig, store: Arc<MemorySnapshotStore>) -> TestNode {
    let provider = Arc::new(ScriptedProvider::new("main", Vec::new()));
    node_with(vec![(provider, quick_policy())], config, store).await
}

/// Sends `turns` messages one at a time, ids `{prefix}0`, `{prefix}1`…
async fn talk(node: &TestNode, conversation: &str, prefix: &str, turns: usize) {
    for turn in 0..turns {
        let id = format!("{prefix}{turn}");
        reply_text(&node.handle, &id, conversation, &format!("q-{id}")).await;
    }
}

#[tokio::test(start_paused = true)]
async fn turns_after_the_first_append_records_and_a_load_replays_them() {
    let store = Arc::new(MemorySnapshotStore::new());
    let node = echo_node(session_config(), Arc::clone(&store)).await;
    talk(&node, "ann", "a", 1).await;
    assert_eq!(
        store.journal_len(&key("ann")),
        0,
        "the first write is a snapshot"
    );
    talk(&node, "ann", "b", 2).await;
    assert_eq!(store.journal_len(&key("ann")), 2, "one record per turn");

    let stored = store.load(&key("ann")).await.unwrap().unwrap();
    let live = node.handle.history(key("ann")).await.unwrap().unwrap();
    let stored_texts: Vec<&str> = stored.history.iter().map(|e| &*e.content).collect();
    let live_texts: Vec<&str> = live.history.iter().map(|e| e.content.as_str()).collect();
    assert_eq!(stored_texts, live_texts);
    assert_eq!(stored_texts.len(), 6);
    assert_eq!(stored.updated_at, live.updated_at);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_node_continues_from_snapshot_and_journal_within_its_window() {
    let store = Arc::new(MemorySnapshotStore::new());
    let first = echo_node(session_config(), Arc::clone(&store)).await;
    // Window 6: five turns write ten entries, six of them in the window.
    talk(&first, "ben", "m", 5).await;
    assert!(store.journal_len(&key("ben")) > 0);
    let before = first.handle.history(key("ben")).await.unwrap().unwrap();
    first.handle.shutdown().await;

    let second = echo_node(session_config(), Arc::clone(&store)).await;
    let after = second.handle.history(key("ben")).await.unwrap().unwrap();
    assert_eq!(
        after.history, before.history,
        "the same window, trimmed on load"
    );
    reply_text(&second.handle, "m2", "ben", "a repeat").await;
    let again = second.handle.history(key("ben")).await.unwrap().unwrap();
    assert_eq!(
        again.history, before.history,
        "a repeated id changes nothing"
    );
    talk(&second, "ben", "n", 1).await;
    assert_eq!(
        store.journal_len(&key("ben")),
        0,
        "the first write after a load folds the journal into a snapshot"
    );
    let stored = store.load(&key("ben")).await.unwrap().unwrap();
    assert_eq!(stored.history.len(), 6);
    assert_eq!(stored.history.last().map(|e| e.role), Some(Role::Assistant));
}

#[tokio::test(start_paused = true)]
async fn the_journal_is_folded_into_a_snapshot_every_so_many_records() {
    let store = Arc::new(MemorySnapshotStore::new());
    let node = echo_node(session_config(), Arc::clone(&store)).await;
    let mut longest = 0;
    for turn in 0..40 {
        talk(&node, "cy", &format!("t{turn}-"), 1).await;
        longest = longest.max(store.journal_len(&key("cy")));
    }
    assert_eq!(longest, 32, "never more records than the bound");
    assert!(store.journal_len(&key("cy")) < 32, "folded at the bound");
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_folds_its_journal_into_a_snapshot_before_it_passivates() {
    let store = Arc::new(MemorySnapshotStore::new());
    let config = SessionConfig {
        idle_passivate: Duration::from_millis(40),
        ..session_config()
    };
    let node = echo_node(config, Arc::clone(&store)).await;
    talk(&node, "dee", "m", 3).await;
    assert_eq!(store.journal_len(&key("dee")), 2);
    let before = node.handle.history(key("dee")).await.unwrap().unwrap();
    let mut waited = Duration::ZERO;
    while !node.handle.active_sessions().await.unwrap().is_empty() {
        assert!(waited < Duration::from_secs(5), "session never passivated");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    assert_eq!(store.journal_len(&key("dee")), 0);
    let stored = store.load(&key("dee")).await.unwrap().unwrap();
    assert_eq!(stored.history.len(), before.history.len());
}

#[tokio::test(start_paused = true)]
async fn a_failed_turn_taken_back_makes_the_next_write_a_snapshot() {
    let store = Arc::new(MemorySnapshotStore::new());
    let provider = Arc::new(ScriptedProvider::new(
        "main",
        vec![
            crate::testing::Scripted::Text(vec!["one".into()]),
            crate::testing::Scripted::Text(vec!["two".into()]),
            crate::testing::Scripted::Fail(crate::provider::ProviderErrorKind::Unauthorized, None),
        ],
    ));
    let node = node_with(
        vec![(provider, quick_policy())],
        session_config(),
        Arc::clone(&store),
    )
    .await;
    talk(&node, "eve", "m", 2).await;
    assert_eq!(store.journal_len(&key("eve")), 1);
    let (_, failed) = crate::node_tests::collect(
        node.handle
            .route(crate::node_tests::text_message("bad", "eve", "fails"))
            .unwrap(),
    )
    .await;
    assert!(matches!(failed, crate::turn::TurnEvent::Failed { .. }));
    talk(&node, "eve", "after", 1).await;
    assert_eq!(store.journal_len(&key("eve")), 0);
    let stored = store.load(&key("eve")).await.unwrap().unwrap();
    let live = node.handle.history(key("eve")).await.unwrap().unwrap();
    assert_eq!(stored.history.len(), live.history.len());
    assert!(stored.history.iter().all(|e| &*e.content != "fails"));
}
