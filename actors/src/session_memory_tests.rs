//! Long-term memory in a session's turns: what is recalled joins that turn's prompt (and
//! only that turn's) and shows as a `memory__recall` tool call; the exchange is kept after
//! the reply; a person's memory is theirs.

use std::sync::Arc;
use std::time::Duration;

use crate::memory::{LocalMemoryStore, Memories, MemoryConfig, MemoryKind};
use crate::message::{ContentType, InboundMessage, MessageParts};
use crate::model_worker::ProviderPolicy;
use crate::node::{NodeHandle, NodeSetup, ProviderSetup, start_node};
use crate::session::SessionConfig;
use crate::snapshot::MemorySnapshotStore;
use crate::testing::{Scripted, ScriptedProvider, WordsEmbedder};
use crate::turn::TurnEvent;

async fn node(provider: &Arc<ScriptedProvider>, memories: &Arc<Memories>) -> NodeHandle {
    let setup = NodeSetup {
        session: SessionConfig {
            system_prompt: "be kind".into(),
            history_window: 20,
            idle_passivate: Duration::from_secs(600),
            provider: "main".into(),
            turn_timeout: Duration::from_secs(30),
            tools: crate::skill::ToolPolicy::default(),
        },
        store: Arc::new(MemorySnapshotStore::new()),
        providers: vec![ProviderSetup {
            provider: Arc::clone(provider) as _,
            policy: ProviderPolicy {
                max_retries: 0,
                ..ProviderPolicy::default()
            },
        }],
        skills: Vec::new(),
        budget: crate::supervisor::RestartBudget::default(),
        backlog: crate::backlog::BacklogLimits::default(),
        turn_context: None,
        inbox: None,
        uploads: None,
        memories: Some(Arc::clone(memories)),
        usage: None,
    };
    start_node(setup, |_| Vec::new()).await.unwrap().0
}

fn message(id: &str, sender: &str, text: &str) -> InboundMessage {
    InboundMessage::new(MessageParts {
        id: id.into(),
        platform: "test".into(),
        sender_id: sender.into(),
        conversation_id: format!("{sender}/{id}"),
        content_type: ContentType::Text,
        payload: text.into(),
        timestamp: 1,
        reply_to: None,
        attachments: Vec::new(),
        metadata: Default::default(),
    })
    .expect("a valid message")
}

/// The turn's events up to its reply.
async fn turn(node: &NodeHandle, message: InboundMessage) -> Vec<TurnEvent> {
    let mut events = node.route(message).unwrap();
    let mut seen = Vec::new();
    while let Some(event) = events.recv().await {
        let last = matches!(event, TurnEvent::Reply { .. } | TurnEvent::Failed { .. });
        seen.push(event);
        if last {
            return seen;
        }
    }
    panic!("the turn ended without a reply: {seen:?}");
}

#[tokio::test]
async fn what_is_recalled_joins_the_prompt_of_its_turn_and_shows_as_a_tool_call() {
    let dir = tempfile::tempdir().unwrap();
    let memories = Arc::new(Memories::new(
        Arc::new(WordsEmbedder),
        Arc::new(LocalMemoryStore::new(dir.path())),
        MemoryConfig::default(),
    ));
    memories
        .remember("test:ada", "Her cat is called Mimi")
        .await
        .unwrap();
    memories
        .remember("test:bob", "His cat is called Felix")
        .await
        .unwrap();
    let provider = Arc::new(ScriptedProvider::new(
        "main",
        [
            Scripted::Text(vec!["Mimi".into()]),
            Scripted::Text(vec!["Sunny".into()]),
        ],
    ));
    let node = node(&provider, &memories).await;

    // A new conversation of Ada's: her memory, not Bob's, is recalled.
    let events = turn(&node, message("m1", "ada", "what is my cat called?")).await;
    let shown: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|event| match event {
            TurnEvent::ToolCall {
                name, arguments, ..
            } => Some((name.as_str(), arguments.as_str())),
            TurnEvent::ToolResult { name, content, .. } => Some((name.as_str(), content.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(shown.len(), 2, "{events:?}");
    assert_eq!(shown[0].0, "memory__recall");
    assert!(shown[0].1.contains("what is my cat called?"), "{shown:?}");
    assert!(shown[1].1.contains("Her cat is called Mimi"), "{shown:?}");
    assert!(!shown[1].1.contains("Felix"), "{shown:?}");
    let prompt = provider.requests()[0].system_prompt.clone().unwrap();
    assert!(
        prompt.starts_with("be kind\n\nWhat you remember"),
        "{prompt}"
    );
    assert!(prompt.contains("Her cat is called Mimi"), "{prompt}");

    // Nothing near: no recall, a plain prompt, and nothing of the last turn's recall.
    let events = turn(&node, message("m2", "ada", "weather tomorrow")).await;
    assert!(
        events
            .iter()
            .all(|event| !matches!(event, TurnEvent::ToolCall { .. })),
        "{events:?}"
    );
    assert_eq!(
        provider.requests()[1].system_prompt.as_deref(),
        Some("be kind")
    );

    // Both exchanges were kept, after their replies.
    memories.settled().await;
    let kept: Vec<String> = memories
        .list("test:ada")
        .await
        .unwrap()
        .iter()
        .filter(|memory| memory.kind == MemoryKind::Turn)
        .map(|memory| memory.text.clone())
        .collect();
    assert_eq!(
        kept,
        [
            "They said: what is my cat called?\nYou answered: Mimi",
            "They said: weather tomorrow\nYou answered: Sunny"
        ]
    );
}
