//! The door that lets messages reach workflows: every access path's [`Ingress`], wrapped.
//!
//! - A message from someone a run waits for (a `wait_reply` step) goes to that run and is
//!   acknowledged at once; the assistant does not answer it.
//! - Otherwise it is handed on unchanged (and in order); when some workflow has a message
//!   trigger, a copy is matched beside it, off the message's path.

use std::sync::Arc;
use std::time::Duration;

use troupe_actors::ids::SessionKey;
use troupe_actors::ingress::{Ingress, Submission};
use troupe_actors::message::{ContentType, InboundMessage, OutboundReply, unix_now};
use troupe_actors::session::SessionView;
use troupe_actors::stop::StopOutcome;
use troupe_actors::turn::{TurnError, TurnEvent, turn_channel};
use troupe_workflows::Workflows;
use troupe_workflows::events::ArrivedMessage;

/// What a person is told when their message answered a workflow's question.
const ACKNOWLEDGEMENT: &str = "✓ Got it: your answer went to the workflow that asked.";

/// An [`Ingress`] that also shows each message to the workflows.
pub(crate) struct WatchingIngress {
    pub(crate) inner: Arc<dyn Ingress>,
    pub(crate) workflows: Workflows,
}

fn arrived(message: &InboundMessage) -> ArrivedMessage {
    ArrivedMessage {
        id: message.id().to_owned(),
        platform: message.platform().to_owned(),
        sender_id: message.sender_id().to_owned(),
        conversation_id: message.conversation_id().to_owned(),
        person: message.person().map(str::to_owned),
        text: message.payload().to_owned(),
        at_ms: jiff::Timestamp::now().as_millisecond(),
    }
}

/// The answer to a message a run took: accepted, and acknowledged.
fn acknowledged(message: &InboundMessage) -> Submission {
    let (events, receiver) = turn_channel();
    let _ = events.send(acknowledgement(message));
    Submission::accepted(receiver)
}

/// The reply that tells the person their message went to the run that asked.
fn acknowledgement(message: &InboundMessage) -> TurnEvent {
    let reply = OutboundReply {
        id: format!("ack-{}", message.id()),
        in_reply_to: message.id().to_owned(),
        platform: message.platform().to_owned(),
        recipient_id: message.sender_id().to_owned(),
        conversation_id: message.conversation_id().to_owned(),
        content_type: ContentType::Text,
        payload: ACKNOWLEDGEMENT.to_owned(),
        timestamp: unix_now(),
        awaiting: None,
        stopped: false,
    };
    TurnEvent::Reply {
        reply: Box::new(reply),
        model_latency: Duration::ZERO,
        usage: None,
    }
}

impl WatchingIngress {
    /// A message a run on another node may be waiting for: offered to that node first; if
    /// no run there takes it, it goes to its session as usual. (Such a message may reach
    /// its session after one sent just after it: only while a run elsewhere waits for its
    /// sender.)
    fn offered_elsewhere(
        &self,
        run: String,
        arrived: ArrivedMessage,
        message: InboundMessage,
    ) -> Submission {
        let (events, receiver) = turn_channel();
        let (workflows, inner) = (self.workflows.clone(), Arc::clone(&self.inner));
        let accepted = async move {
            match workflows.offer_to(&run, arrived).await {
                Ok(true) => {
                    let _ = events.send(acknowledgement(&message));
                    return Ok(());
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(run = %run, %error, "could not offer a reply to the run's node; the message is answered as usual");
                }
            }
            let submission = inner.submit(message)?;
            submission.accepted.await?;
            let mut answered = submission.events;
            tokio::spawn(async move {
                while let Some(event) = answered.recv().await {
                    if events.send(event).is_err() {
                        return;
                    }
                }
            });
            Ok(())
        };
        Submission {
            accepted: Box::pin(accepted),
            events: receiver,
        }
    }
}

#[async_trait::async_trait]
impl Ingress for WatchingIngress {
    fn submit(&self, message: InboundMessage) -> Result<Submission, TurnError> {
        let catalog = self.workflows.catalog();
        let (watching, awaiting) = (catalog.watches_messages(), catalog.awaits_replies());
        // A run's own model turns never reach workflows.
        if (!watching && !awaiting) || message.is_from_workflow() {
            return self.inner.submit(message);
        }
        let arrived = arrived(&message);
        if awaiting && self.workflows.replies().offer(&arrived) {
            return Ok(acknowledged(&message));
        }
        if awaiting && let Some(run) = self.workflows.replies().awaited_by(&arrived) {
            return Ok(self.offered_elsewhere(run, arrived, message));
        }
        if watching {
            let workflows = self.workflows.clone();
            tokio::spawn(async move {
                workflows.message_arrived(&arrived).await;
            });
        }
        self.inner.submit(message)
    }

    async fn history(&self, key: SessionKey) -> Result<Option<SessionView>, TurnError> {
        self.inner.history(key).await
    }

    async fn reset(&self, key: SessionKey) -> Result<bool, TurnError> {
        self.inner.reset(key).await
    }

    async fn stop(&self, key: SessionKey, message_id: String) -> Result<StopOutcome, TurnError> {
        self.inner.stop(key, message_id).await
    }
}
