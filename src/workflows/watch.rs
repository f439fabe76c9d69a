//! The door that lets messages start workflows: every access path's [`Ingress`], wrapped.
//! A message is handed on unchanged (and in order); when some workflow has a message
//! trigger, a copy is looked at beside it, off the message's path.

use std::sync::Arc;

use troupe_actors::ids::SessionKey;
use troupe_actors::ingress::{Ingress, Submission};
use troupe_actors::message::InboundMessage;
use troupe_actors::session::SessionView;
use troupe_actors::stop::StopOutcome;
use troupe_actors::turn::TurnError;
use troupe_workflows::Workflows;
use troupe_workflows::events::ArrivedMessage;

use super::effects::WORKFLOW_PLATFORM;

/// An [`Ingress`] that also shows each message to the workflows' message triggers.
pub(crate) struct WatchingIngress {
    pub(crate) inner: Arc<dyn Ingress>,
    pub(crate) workflows: Workflows,
}

#[async_trait::async_trait]
impl Ingress for WatchingIngress {
    fn submit(&self, message: InboundMessage) -> Result<Submission, TurnError> {
        // A run's own model turns never start runs.
        if self.workflows.catalog().watches_messages() && message.platform() != WORKFLOW_PLATFORM {
            let arrived = ArrivedMessage {
                id: message.id().to_owned(),
                platform: message.platform().to_owned(),
                sender_id: message.sender_id().to_owned(),
                conversation_id: message.conversation_id().to_owned(),
                person: message.person().map(str::to_owned),
                text: message.payload().to_owned(),
            };
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
