//! Long-term memory in a turn: what is recalled before it (shown to the client as a
//! `memory__recall` tool call and its result, and put in that turn's system prompt, never
//! in the history), and the finished exchange kept after it.

use serde_json::json;

use super::SessionState;
use crate::bridge::identity::PERSON_PLATFORM;
use crate::memory::{Recalled, prompt_of};
use crate::message::InboundMessage;
use crate::turn::{TurnEvent, TurnEvents};
use crate::turn_context::CONTEXT_LIMIT;

/// The tool name the recall shows as.
const RECALL_TOOL: &str = "memory__recall";

impl SessionState {
    /// Whose memory a message is: `person:<name>` in a linked person's conversation or
    /// from a linked sender (in any conversation of theirs), else `platform:sender_id`
    /// (what skills see as the person, too).
    pub(super) fn person_of(&self, message: &InboundMessage) -> String {
        if self.key.platform() == PERSON_PLATFORM {
            format!("{PERSON_PLATFORM}:{}", self.key.conversation_id())
        } else if let Some(person) = message.person() {
            format!("{PERSON_PLATFORM}:{person}")
        } else {
            format!("{}:{}", message.platform(), message.sender_id())
        }
    }

    /// What the person's memory holds that bears on `message`, for its turn's prompt; the
    /// recall is shown in `events`. A memory that fails or is slow costs the turn nothing
    /// but the memories.
    pub(super) async fn recall(
        &self,
        message: &InboundMessage,
        person: &str,
        events: &TurnEvents,
    ) -> Option<String> {
        let memories = self.context.memories.as_ref()?;
        let asked = message.payload().trim();
        if asked.is_empty() {
            return None;
        }
        let recalled = match tokio::time::timeout(CONTEXT_LIMIT, memories.recall(person, asked))
            .await
        {
            Ok(Ok(recalled)) => recalled,
            Ok(Err(error)) => {
                tracing::warn!(%error, "memories could not be recalled; the turn goes on without");
                return None;
            }
            Err(_) => {
                tracing::warn!("recalling memories took too long; the turn goes on without");
                return None;
            }
        };
        if recalled.is_empty() {
            return None;
        }
        show_recall(events, message.id(), asked, &recalled);
        prompt_of(&recalled)
    }

    /// Keeps the exchange in the person's memory, in the background.
    pub(super) fn keep_exchange(&self, person: &str, question: &str, answer: &str) {
        if let Some(memories) = &self.context.memories {
            memories.keep_turn(person, question, answer);
        }
    }
}

fn show_recall(events: &TurnEvents, in_reply_to: &str, asked: &str, recalled: &[Recalled]) {
    let call_id = format!("recall-{in_reply_to}");
    let _ = events.send(TurnEvent::ToolCall {
        in_reply_to: in_reply_to.to_owned(),
        call_id: call_id.clone(),
        name: RECALL_TOOL.to_owned(),
        arguments: json!({"query": asked}).to_string(),
    });
    let _ = events.send(TurnEvent::ToolResult {
        in_reply_to: in_reply_to.to_owned(),
        call_id,
        name: RECALL_TOOL.to_owned(),
        ok: true,
        content: json!({"memories": recalled}).to_string(),
    });
}
