//! A single node's inbox, end to end through a node: an accepted message is stored before
//! it is acknowledged and kept until its answer is, and a node answers what its inbox kept
//! from before a restart (see [`crate::inbox`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::SessionKey;
use crate::inbox::Inbox;
use crate::message::InboundMessage;
use crate::model_worker::ProviderPolicy;
use crate::node::{NodeHandle, NodeSetup, ProviderSetup, start_node};
use crate::node_tests::{collect, text_message};
use crate::session::{SessionConfig, SessionView};
use crate::snapshot::{LocalSnapshotStore, SnapshotStore};
use crate::supervisor::RestartBudget;
use crate::testing::{Scripted, ScriptedProvider};
use crate::turn::{TurnEvent, TurnEventReceiver};

/// Longest wait for something a test expects to happen.
const BOUND: Duration = Duration::from_secs(10);

struct InboxNode {
    handle: NodeHandle,
    store: Arc<LocalSnapshotStore>,
    provider: Arc<ScriptedProvider>,
}

async fn node(store: Arc<LocalSnapshotStore>, script: Vec<Scripted>) -> InboxNode {
    let provider = Arc::new(ScriptedProvider::new("main", script));
    let setup = NodeSetup {
        session: SessionConfig {
            system_prompt: "be kind".into(),
            history_window: 20,
            idle_passivate: Duration::from_secs(600),
            provider: "main".into(),
            turn_timeout: BOUND,
            tools: crate::skill::ToolPolicy::default(),
        },
        store: Arc::clone(&store) as Arc<dyn SnapshotStore>,
        providers: vec![ProviderSetup {
            provider: Arc::clone(&provider) as _,
            policy: ProviderPolicy {
                timeout: BOUND,
                max_retries: 0,
                ..ProviderPolicy::default()
            },
        }],
        skills: Vec::new(),
        budget: RestartBudget::default(),
        backlog: crate::backlog::BacklogLimits::default(),
        turn_context: None,
        inbox: Some(Arc::clone(&store) as Arc<dyn Inbox>),
        uploads: None,
        memories: None,
        usage: None,
    };
    let (handle, _) = start_node(setup, |_| Vec::new()).await.unwrap();
    InboxNode {
        handle,
        store,
        provider,
    }
}

fn message(id: &str, conversation: &str) -> InboundMessage {
    text_message(id, conversation, &format!("text of {id}"))
}

async fn waiting_ids(store: &LocalSnapshotStore) -> Vec<String> {
    let waiting = store.waiting().await.unwrap();
    waiting
        .into_iter()
        .map(|message| message.id().to_owned())
        .collect()
}

/// A turn's final event.
async fn final_event(events: TurnEventReceiver) -> TurnEvent {
    collect(events).await.1
}

fn reply_of(event: TurnEvent) -> crate::message::OutboundReply {
    match event {
        TurnEvent::Reply { reply, .. } => *reply,
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// The contents of `conversation`'s history once it holds `entries` entries.
async fn history_with(node: &NodeHandle, conversation: &str, entries: usize) -> Vec<String> {
    let view = view_with(node, conversation, entries).await;
    view.history
        .into_iter()
        .map(|entry| entry.content)
        .collect()
}

/// The history of `conversation` once it holds `entries` entries.
async fn view_with(node: &NodeHandle, conversation: &str, entries: usize) -> SessionView {
    let key = SessionKey::new_unchecked("test", conversation);
    tokio::time::timeout(BOUND, async {
        loop {
            if let Some(view) = node.history(key.clone()).await.unwrap()
                && view.history.len() >= entries
            {
                return view;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the history filled in time")
}

#[tokio::test]
async fn an_accepted_message_is_kept_until_its_answer_is_stored() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalSnapshotStore::open(directory.path()).unwrap());
    let gate = Arc::new(Notify::new());
    let node = node(
        store,
        vec![Scripted::Gated(Arc::clone(&gate), "done".into())],
    )
    .await;

    let submission = node.handle.submit(message("m1", "ann")).unwrap();
    submission.accepted.await.unwrap();
    assert_eq!(
        waiting_ids(&node.store).await,
        ["m1"],
        "stored once accepted, while the turn still runs"
    );
    gate.notify_one();
    assert_eq!(
        reply_of(final_event(submission.events).await).payload,
        "done"
    );

    // The removal rides along with the next commit.
    let next = node.handle.submit(message("m2", "bob")).unwrap();
    next.accepted.await.unwrap();
    assert_eq!(waiting_ids(&node.store).await, ["m2"]);
    final_event(next.events).await;
}

#[tokio::test]
async fn a_node_answers_what_its_inbox_kept_and_a_retry_gets_that_answer() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalSnapshotStore::open(directory.path()).unwrap());
    // Accepted by a node that died before answering.
    for id in ["k1", "k2"] {
        store.put(&message(id, "kim")).await.unwrap();
    }
    let node = node(store, Vec::new()).await;

    assert_eq!(node.handle.answer_waiting().await.unwrap(), 2);
    let view = view_with(&node.handle, "kim", 4).await;
    assert_eq!(
        history_with(&node.handle, "kim", 4).await,
        [
            "text of k1",
            "echo: text of k1",
            "text of k2",
            "echo: text of k2"
        ],
        "answered in the order they were accepted"
    );

    let retry = node.handle.submit(message("k2", "kim")).unwrap();
    retry.accepted.await.unwrap();
    let reply = reply_of(final_event(retry.events).await);
    assert_eq!(
        Some(reply.id),
        view.history[3].message_id,
        "the same answer"
    );
    assert_eq!(
        node.provider.requests().len(),
        2,
        "no new turn for the retry"
    );
    node.handle
        .submit(message("x1", "other"))
        .unwrap()
        .accepted
        .await
        .unwrap();
    assert_eq!(waiting_ids(&node.store).await, ["x1"]);
}

#[tokio::test]
async fn a_message_answered_before_the_crash_is_answered_again_only_from_the_history() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalSnapshotStore::open(directory.path()).unwrap());
    {
        let first = node(Arc::clone(&store), Vec::new()).await;
        let submission = first.handle.submit(message("a1", "amy")).unwrap();
        final_event(submission.events).await;
        first.handle.shutdown().await;
    }
    // As if the removal had been lost in a crash.
    store.put(&message("a1", "amy")).await.unwrap();
    let node = node(store, Vec::new()).await;

    node.handle.answer_waiting().await.unwrap();
    // Behind the repeat in amy's session: once this is answered, so was the repeat.
    let next = node.handle.submit(message("a2", "amy")).unwrap();
    final_event(next.events).await;
    // Their removals ride along with the next commit.
    let other = node.handle.submit(message("x1", "other")).unwrap();
    other.accepted.await.unwrap();
    assert_eq!(waiting_ids(&node.store).await, ["x1"]);
    let asked_again = node.provider.requests().iter().any(|request| {
        request
            .messages
            .last()
            .is_some_and(|last| &*last.content == "text of a1")
    });
    assert!(!asked_again, "a1 went to the model again");
    assert_eq!(
        history_with(&node.handle, "amy", 4).await,
        [
            "text of a1",
            "echo: text of a1",
            "text of a2",
            "echo: text of a2"
        ],
        "a1 was not answered twice"
    );
    final_event(other.events).await;
}
