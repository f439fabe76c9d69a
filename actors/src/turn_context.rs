//! Context a turn gets besides its history: what the person is looking at while they
//! write (the canvas page's board, say). A plugin supplies it through [`TurnContext`]; the
//! text joins the system prompt of that one turn and is never stored in the history, so a
//! long conversation does not carry old copies of it.

use std::time::Duration;

use crate::message::InboundMessage;

/// The longest a turn waits for its context; without it the turn goes on.
pub const CONTEXT_LIMIT: Duration = Duration::from_secs(2);

/// Supplies context for turns, from what their messages say (their metadata).
#[async_trait::async_trait]
pub trait TurnContext: Send + Sync + 'static {
    /// Text for the system prompt of the turn answering `message`, if it asks for any.
    async fn context_for(&self, message: &InboundMessage) -> Option<String>;
}

/// `source`'s context for `message`, within [`CONTEXT_LIMIT`].
pub(crate) async fn gather(
    source: Option<&dyn TurnContext>,
    message: &InboundMessage,
) -> Option<String> {
    let source = source?;
    match tokio::time::timeout(CONTEXT_LIMIT, source.context_for(message)).await {
        Ok(context) => context,
        Err(_) => {
            tracing::warn!(message_id = %message.id(), "the turn's context took too long; it goes on without");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;
    use crate::message::{ContentType, MessageParts};
    use crate::model_worker::ProviderPolicy;
    use crate::node::{NodeHandle, NodeSetup, ProviderSetup, start_node};
    use crate::session::SessionConfig;
    use crate::snapshot::MemorySnapshotStore;
    use crate::testing::{Scripted, ScriptedProvider};
    use crate::turn::TurnEvent;

    /// The board a message names in its `board` metadata; a message naming `stuck` never
    /// gets an answer.
    struct Boards;

    #[async_trait::async_trait]
    impl TurnContext for Boards {
        async fn context_for(&self, message: &InboundMessage) -> Option<String> {
            let board = message.metadata().get("board").and_then(Value::as_str)?;
            if board == "stuck" {
                std::future::pending::<()>().await;
            }
            Some(format!("Board: {board}"))
        }
    }

    async fn node(provider: &Arc<ScriptedProvider>) -> NodeHandle {
        let setup = NodeSetup {
            session: SessionConfig {
                system_prompt: "be kind".into(),
                history_window: 6,
                idle_passivate: Duration::from_secs(600),
                provider: "main".into(),
                turn_timeout: Duration::from_secs(30),
                tools: crate::skill::ToolPolicy::default(),
            },
            store: Arc::new(MemorySnapshotStore::new()),
            providers: vec![ProviderSetup {
                provider: Arc::clone(provider) as _,
                policy: ProviderPolicy {
                    timeout: Duration::from_secs(10),
                    max_retries: 0,
                    base_backoff: Duration::from_millis(5),
                    max_backoff: Duration::from_millis(20),
                    max_concurrency: 8,
                    fallbacks: Vec::new(),
                },
            }],
            skills: Vec::new(),
            budget: crate::supervisor::RestartBudget::default(),
            backlog: crate::backlog::BacklogLimits::default(),
            turn_context: Some(Arc::new(Boards)),
            inbox: None,
            uploads: None,
            memories: None,
            usage: None,
        };
        start_node(setup, |_| Vec::new()).await.unwrap().0
    }

    fn message(id: &str, board: Option<&str>) -> InboundMessage {
        InboundMessage::new(MessageParts {
            id: id.into(),
            platform: "test".into(),
            sender_id: "ada".into(),
            conversation_id: "ada".into(),
            content_type: ContentType::Text,
            payload: "tidy it up".into(),
            timestamp: 1,
            reply_to: None,
            attachments: Vec::new(),
            metadata: board
                .map(|board| [("board".to_owned(), Value::from(board))].into())
                .unwrap_or_default(),
        })
        .expect("a valid message")
    }

    async fn answered(node: &NodeHandle, message: InboundMessage) {
        let mut events = node.route(message).unwrap();
        while let Some(event) = events.recv().await {
            match event {
                TurnEvent::Reply { .. } => return,
                failed @ TurnEvent::Failed { .. } => panic!("{failed:?}"),
                _ => {}
            }
        }
        panic!("the turn ended without a reply");
    }

    #[tokio::test]
    async fn a_turns_context_joins_its_system_prompt_and_only_its_own() {
        let provider = Arc::new(ScriptedProvider::new(
            "main",
            [
                Scripted::Text(vec!["done".into()]),
                Scripted::Text(vec!["ok".into()]),
            ],
        ));
        let node = node(&provider).await;
        answered(&node, message("m1", Some("n1 note \"ship it\""))).await;
        answered(&node, message("m2", None)).await;
        let prompts: Vec<Option<String>> = provider
            .requests()
            .into_iter()
            .map(|request| request.system_prompt.as_deref().map(str::to_owned))
            .collect();
        assert_eq!(
            prompts,
            [
                Some("be kind\n\nBoard: n1 note \"ship it\"".to_owned()),
                Some("be kind".to_owned())
            ]
        );
        let second = &provider.requests()[1];
        assert!(
            second
                .messages
                .iter()
                .all(|message| !message.content.contains("Board:")),
            "the context is not kept in the history"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_context_that_takes_too_long_is_left_out_and_the_turn_goes_on() {
        let provider = Arc::new(ScriptedProvider::new(
            "main",
            [Scripted::Text(vec!["anyway".into()])],
        ));
        let node = node(&provider).await;
        answered(&node, message("m1", Some("stuck"))).await;
        assert_eq!(
            provider.requests()[0].system_prompt.as_deref(),
            Some("be kind")
        );
    }
}
