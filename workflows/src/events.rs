//! Runs started by events: a message on any channel that matches a workflow's pattern.
//! Only the workflow's owner's messages match (`person:ada` matches whatever Ada sends on
//! any linked account; `telegram:42` matches that account). The message is still answered
//! as usual; the run starts beside it, once per message id.

use serde_json::{Map, Value, json};

use crate::journal::{Cause, event_run_id};
use crate::plan::When;
use crate::runs::{StartRun, Workflows};

/// A message as the trigger sees it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ArrivedMessage {
    pub id: String,
    pub platform: String,
    pub sender_id: String,
    pub conversation_id: String,
    /// The linked person, if any (`ada`).
    pub person: Option<String>,
    pub text: String,
    /// When it arrived (unix ms).
    pub at_ms: i64,
}

/// The run's `input.message` and `input.captures` for a match.
fn message_input(
    message: &ArrivedMessage,
    captures: &regex::Captures<'_>,
    pattern: &regex::Regex,
) -> Map<String, Value> {
    let named: Map<String, Value> = pattern
        .capture_names()
        .flatten()
        .filter_map(|name| {
            captures
                .name(name)
                .map(|found| (name.to_owned(), Value::String(found.as_str().to_owned())))
        })
        .collect();
    Map::from_iter([
        (
            "message".to_owned(),
            json!({"id": message.id, "platform": message.platform, "sender_id": message.sender_id,
                "conversation_id": message.conversation_id, "text": message.text}),
        ),
        ("captures".to_owned(), Value::Object(named)),
    ])
}

impl Workflows {
    /// Starts a run of each workflow whose message trigger matches; answers their ids.
    pub async fn message_arrived(&self, message: &ArrivedMessage) -> Vec<String> {
        let mut started = Vec::new();
        for workflow in self.catalog().list() {
            if !crate::replies::is_from(message, workflow.owner()) {
                continue;
            }
            for (index, trigger) in workflow.triggers().iter().enumerate() {
                let When::Message { pattern, platform } = &trigger.when else {
                    continue;
                };
                if platform
                    .as_ref()
                    .is_some_and(|only| *only != message.platform)
                {
                    continue;
                }
                let Some(captures) = pattern.captures(&message.text) else {
                    continue;
                };
                let mut input = trigger.input.clone();
                input.extend(message_input(message, &captures, pattern));
                let event = format!(
                    "{index}/{}/{}/{}",
                    message.platform, message.sender_id, message.id
                );
                let request = StartRun {
                    workflow: workflow.name().to_owned(),
                    input,
                    cause: Cause::Message {
                        trigger: index,
                        platform: message.platform.clone(),
                        sender: message.sender_id.clone(),
                    },
                    run: Some(event_run_id(workflow.name(), "m", &event)),
                };
                match self.start(request).await {
                    Ok(summary) => started.push(summary.run),
                    Err(error) => {
                        tracing::error!(workflow = workflow.name(), %error, "a matching message could not start its workflow");
                    }
                }
            }
        }
        started
    }
}
