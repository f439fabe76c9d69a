//! What a workflow's steps do on this node ([`Effects`]), each honouring the step's
//! idempotency key:
//!
//! - a **model turn** is a message from the workflow's owner in the run's own conversation
//!   (conversation `<run>`), whose id is the key: the session answers a repeated id from its
//!   history without a second model call;
//! - a **tool call** runs through the skill directory with the key as its call id, which an
//!   HTTP skill also receives as its `Idempotency-Key` header;
//! - a **message** to a bridge chat goes into the bridges' outbox under the key as its
//!   reply id (the outbox sends one reply id once); to the web chat it is pushed to the
//!   person's open pages, on any node, waiting for one to open if none is.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use troupe_actors::bridge::dispatch::Dispatcher;
use troupe_actors::bridge::{Delivery, Destination};
use troupe_actors::ingress::Ingress;
use troupe_actors::message::{
    ContentType, InboundMessage, MessageParts, WORKFLOW_RUN_METADATA, unix_now,
};
use troupe_actors::provider::ToolCall;
use troupe_actors::skill::{
    SkillDirectory, SkillErrorCode, SkillSession, SkillState, TOOL_NAME_SEPARATOR,
    exposed_tool_name,
};
use troupe_actors::turn::{ErrorCode, TurnError, TurnEvent};
use troupe_workflows::effects::{
    ModelRequest, OutgoingMessage, Recipient, StepError, StepErrorCode, ToolRequest,
};
use troupe_workflows::jetstream::SendClaims;
use troupe_workflows::{Effects, StepErrorCode as Code};

use crate::gateway::Clients;

/// The platform of a run's own conversation (reserved: no client may claim it).
const WORKFLOW_PLATFORM: &str = troupe_actors::ids::RESERVED_PLATFORMS[2];

/// How often a message to a web chat with no page open looks again on every node (a page
/// opening on this node is noticed at once).
const LOOK_FOR_PAGES_AGAIN: Duration = Duration::from_secs(5);

/// What effects go through, known once the node has started its access paths.
pub(crate) struct EffectParts {
    pub(crate) ingress: Arc<dyn Ingress>,
    pub(crate) skills: Arc<SkillDirectory>,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) clients: Clients,
}

/// The node's effects. Built before the node starts (the engine and its skill need it);
/// [`NodeEffects::attach`] gives it the node's parts before the first run starts.
pub(crate) struct NodeEffects {
    parts: OnceLock<EffectParts>,
    turn_timeout: Duration,
    /// In a cluster: where send steps claim their keys, and this node's id.
    claims: OnceLock<(SendClaims, String)>,
}

impl NodeEffects {
    pub(crate) fn new(turn_timeout: Duration) -> Self {
        Self {
            parts: OnceLock::new(),
            turn_timeout,
            claims: OnceLock::new(),
        }
    }

    /// In a cluster, send steps claim their keys in `claims` first, so that a step replayed
    /// on another node sends nothing twice.
    pub(crate) fn claim_sends(&self, claims: SendClaims, node: &str) {
        let _ = self.claims.set((claims, node.to_owned()));
    }

    /// Whether this send is the first with its key in the cluster (always, on one node:
    /// the outbox itself sends a key once).
    async fn first_send(&self, key: &str) -> Result<bool, StepError> {
        let Some((claims, node)) = self.claims.get() else {
            return Ok(true);
        };
        claims
            .claim(key, node)
            .await
            .map_err(|error| StepError::new(Code::Failed, error.to_string()))
    }

    /// Gives it the node's parts (once; later calls change nothing).
    pub(crate) fn attach(&self, parts: EffectParts) {
        let _ = self.parts.set(parts);
    }

    fn parts(&self) -> Result<&EffectParts, StepError> {
        self.parts
            .get()
            .ok_or_else(|| StepError::new(Code::Failed, "the node is still starting"))
    }
}

fn invalid(message: impl Into<String>) -> StepError {
    StepError::new(StepErrorCode::Invalid, message)
}

fn turn_failed(error: &TurnError) -> StepError {
    let code = match error.code {
        ErrorCode::InvalidMessage
        | ErrorCode::PayloadTooLarge
        | ErrorCode::UnsupportedContentType
        | ErrorCode::ProviderUnauthorized
        | ErrorCode::ToolRoundsExceeded
        | ErrorCode::TurnTokenLimit
        | ErrorCode::BudgetExceeded
        | ErrorCode::Stopped => Code::Invalid,
        ErrorCode::ProviderTimeout => Code::Timeout,
        _ => Code::Failed,
    };
    StepError::new(code, format!("{}: {}", error.code.as_str(), error.message))
}

/// The owner as a message's sender, in the run's own conversation: `person:ada` is sender
/// `ada` on the `workflow` platform, linked to person `ada`; `telegram:42` is sender `42`
/// on `telegram`. Either way the turn is the owner's (their budget, tools and memory), and
/// the message is marked as the run's, so it never reaches workflows itself.
fn owner_message(request: &ModelRequest) -> Result<InboundMessage, StepError> {
    let person = request.owner.strip_prefix("person:");
    let (platform, sender) = match (person, request.owner.split_once(':')) {
        (Some(person), _) => (WORKFLOW_PLATFORM, person),
        (None, Some((platform, sender))) => (platform, sender),
        (None, None) => (WORKFLOW_PLATFORM, request.owner.as_str()),
    };
    let metadata = std::collections::BTreeMap::from([(
        WORKFLOW_RUN_METADATA.to_owned(),
        Value::String(request.conversation.clone()),
    )]);
    let mut message = InboundMessage::new(MessageParts {
        id: request.key.as_str().to_owned(),
        platform: platform.to_owned(),
        sender_id: sender.to_owned(),
        conversation_id: request.conversation.clone(),
        content_type: ContentType::Text,
        payload: request.prompt.clone(),
        timestamp: unix_now(),
        reply_to: None,
        attachments: Vec::new(),
        metadata,
    })
    .map_err(|error| invalid(format!("the prompt cannot be sent: {error}")))?;
    if let Some(person) = person {
        message
            .set_person(person)
            .map_err(|error| invalid(format!("the owner is not a person: {error}")))?;
    }
    Ok(message)
}

/// Whether `skill` can take calls now. A run taken up at start waits for the node's skills
/// to read their manifests; a skill that cannot be reached now fails the attempt in a way
/// that is tried again, one that does not exist or is disabled fails the step.
async fn ready(skills: &SkillDirectory, skill: &str) -> Result<(), StepError> {
    skills.until_started().await;
    match skills.state(skill) {
        Some(SkillState::Available) => Ok(()),
        Some(SkillState::Starting | SkillState::Unavailable) => Err(StepError::new(
            Code::Failed,
            format!("the skill `{skill}` cannot be reached now"),
        )),
        Some(SkillState::Disabled) => Err(invalid(format!("the skill `{skill}` is disabled"))),
        None => Err(invalid(format!("there is no skill `{skill}`"))),
    }
}

#[async_trait::async_trait]
impl Effects for NodeEffects {
    async fn model(&self, request: ModelRequest) -> Result<Value, StepError> {
        let message = owner_message(&request)?;
        let mut submission = self
            .parts()?
            .ingress
            .submit(message)
            .map_err(|error| turn_failed(&error))?;
        submission
            .accepted
            .await
            .map_err(|error| turn_failed(&error))?;
        let answer = tokio::time::timeout(self.turn_timeout, async {
            while let Some(event) = submission.events.recv().await {
                match event {
                    TurnEvent::Reply { reply, .. } => return Ok(reply.payload),
                    TurnEvent::Failed { error, .. } => return Err(turn_failed(&error)),
                    _ => {}
                }
            }
            Err(StepError::new(
                Code::Failed,
                "the turn ended without an answer",
            ))
        })
        .await
        .map_err(|_| StepError::new(Code::Timeout, "the model turn took too long"))??;
        Ok(Value::String(answer))
    }

    async fn tool(&self, request: ToolRequest) -> Result<Value, StepError> {
        let Some((skill, action)) = request.tool.split_once('.') else {
            return Err(invalid(format!("`{}` is not `skill.action`", request.tool)));
        };
        let call = ToolCall {
            id: request.key.as_str().to_owned(),
            name: exposed_tool_name(skill, action),
            arguments: request.arguments.to_string(),
        };
        let (platform, sender) = match request.owner.split_once(':') {
            Some(("person", _)) | None => (WORKFLOW_PLATFORM, request.owner.as_str()),
            Some((platform, sender)) => (platform, sender),
        };
        let session = SkillSession {
            key: format!("{WORKFLOW_PLATFORM}:{}", request.conversation),
            platform: platform.to_owned(),
            conversation_id: request.conversation.clone(),
            sender_id: sender.to_owned(),
            person: request.owner.clone(),
            message_id: request.key.as_str().to_owned(),
            reply_route: None,
        };
        let skills = &self.parts()?.skills;
        ready(skills, skill).await?;
        let prepared = skills.prepare(&call, &session).map_err(|error| {
            invalid(format!(
                "{} ({}): {}",
                request.tool.replace(TOOL_NAME_SEPARATOR, "."),
                error.code.as_str(),
                error.message
            ))
        })?;
        // The owner wrote the step into the workflow: that is the confirmation a tool that
        // asks for one would get in a chat.
        let outcome = skills.run(prepared, session).await;
        outcome.result.map_err(|error| {
            let code = match error.code {
                SkillErrorCode::Timeout => Code::Timeout,
                SkillErrorCode::Unavailable | SkillErrorCode::Failed => Code::Failed,
                _ => Code::Invalid,
            };
            StepError::new(code, format!("{}: {}", error.code.as_str(), error.message))
        })
    }

    async fn send(&self, message: OutgoingMessage) -> Result<Value, StepError> {
        match &message.to {
            Recipient::Bridge { bridge, chat } => {
                let delivery = Delivery {
                    reply_id: message.key.as_str().to_owned(),
                    destination: Destination {
                        chat_id: chat.clone(),
                        thread_id: None,
                        reply_to_message_id: None,
                        recipient_id: None,
                    },
                    text: message.text,
                    spoken: false,
                };
                let to = format!("{bridge}:{chat}");
                if !self.first_send(message.key.as_str()).await? {
                    tracing::info!(key = %message.key.as_str(), "a message another node sent already is not sent again");
                    return Ok(json!({"to": to, "queued": true}));
                }
                self.parts()?
                    .dispatcher
                    .send_once(bridge, delivery)
                    .await
                    .map_err(|error| StepError::new(Code::Failed, error.to_string()))?;
                Ok(json!({"to": to, "queued": true}))
            }
            Recipient::Web { sender } => {
                let frame = json!({"type": "notification", "id": message.key.as_str(),
                    "payload": message.text, "timestamp": unix_now()})
                .to_string();
                let clients = &self.parts()?.clients;
                let mut arrived = clients.arrivals();
                // With no page of the person open, it waits for one (up to the step's
                // timeout): one opening here, or, looked for again now and then, on
                // another node.
                while !clients.deliver(sender, &frame).await {
                    tokio::select! {
                        _ = arrived.changed() => {}
                        () = tokio::time::sleep(LOOK_FOR_PAGES_AGAIN) => {}
                    }
                }
                Ok(json!({"to": format!("web:{sender}"), "delivered": true}))
            }
        }
    }
}
