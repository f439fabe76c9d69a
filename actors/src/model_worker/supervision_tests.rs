//! A provider that panics: its call fails with `crashed`, and its worker is restarted by
//! the node's supervisor, counted against the restart budget, and answers again.

use std::sync::Arc;
use std::time::Duration;

use crate::model_worker::ProviderPolicy;
use crate::node::NodeHandle;
use crate::node_tests::{collect, node_with, session_config, text_message};
use crate::provider::ModelProvider;
use crate::snapshot::MemorySnapshotStore;
use crate::testing::{Scripted, ScriptedProvider};
use crate::turn::{ErrorCode, TurnEvent};

async fn node(providers: Vec<(Arc<ScriptedProvider>, Vec<String>)>) -> NodeHandle {
    let providers = providers
        .into_iter()
        .map(|(provider, fallbacks)| {
            let policy = ProviderPolicy {
                fallbacks,
                ..ProviderPolicy::default()
            };
            (provider as Arc<dyn ModelProvider>, policy)
        })
        .collect();
    let store = Arc::new(MemorySnapshotStore::new());
    node_with(providers, session_config(), store).await.handle
}

/// Waits (bounded) until the supervisor has restarted `child` `times` times.
async fn restarted(node: &NodeHandle, child: &str, times: u64) {
    for _ in 0..200 {
        if node.restart_counts().await.get(child) == Some(&times) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{child} was not restarted {times} time(s)");
}

#[tokio::test]
async fn a_panicking_provider_fails_the_call_and_its_worker_is_restarted_and_answers_again() {
    let provider = Arc::new(ScriptedProvider::new(
        "main",
        vec![
            Scripted::Panic("index out of bounds"),
            Scripted::Text(vec!["fine".into()]),
        ],
    ));
    let node = node(vec![(provider, Vec::new())]).await;
    let (_, failed) = collect(node.route(text_message("m1", "ada", "hi")).unwrap()).await;
    let TurnEvent::Failed { error, .. } = failed else {
        panic!("the call fails: {failed:?}");
    };
    assert_eq!(error.code, ErrorCode::ProviderError);
    assert!(error.message.contains("crashed"), "{}", error.message);
    assert!(
        error.message.contains("index out of bounds"),
        "{}",
        error.message
    );
    restarted(&node, "model:main", 1).await;
    let (_, answer) = collect(node.route(text_message("m2", "ada", "again")).unwrap()).await;
    let TurnEvent::Reply { reply, .. } = answer else {
        panic!("the restarted worker answers: {answer:?}");
    };
    assert_eq!(reply.payload, "fine");
}

#[tokio::test]
async fn a_fallback_answers_when_the_first_provider_panics() {
    let main = Arc::new(ScriptedProvider::new("main", vec![Scripted::Panic("boom")]));
    let spare = Arc::new(ScriptedProvider::new(
        "spare",
        vec![Scripted::Text(vec!["from the spare".into()])],
    ));
    let node = node(vec![(main, vec!["spare".into()]), (spare, Vec::new())]).await;
    let (_, answer) = collect(node.route(text_message("m1", "ada", "hi")).unwrap()).await;
    let TurnEvent::Reply { reply, .. } = answer else {
        panic!("the fallback answers: {answer:?}");
    };
    assert_eq!(reply.payload, "from the spare");
    restarted(&node, "model:main", 1).await;
}
