//! `Ingress`: how an access path (WebSocket, REST, the OpenAI facade, later a bridge) hands
//! a message to its session without knowing where that session runs. A single node routes
//! it to its own registry ([`crate::node::NodeHandle`]); a cluster node first stores it in
//! the durable inbox and lets the session's owner, on whatever node, answer.

use futures_util::future::BoxFuture;

use crate::ids::SessionKey;
use crate::message::InboundMessage;
use crate::session::SessionView;
use crate::stop::StopOutcome;
use crate::turn::{TurnError, TurnEventReceiver};

/// A message handed over for delivery.
pub struct Submission {
    /// Resolves once the message is safely stored (a single node: in its inbox, see
    /// [`crate::inbox`]; a cluster: when JetStream acknowledged it). Only then may the
    /// sender be told "accepted".
    pub accepted: BoxFuture<'static, Result<(), TurnError>>,
    /// The turn's events: deltas, then exactly one final event (or the channel closes).
    pub events: TurnEventReceiver,
}

impl Submission {
    /// A submission that is accepted already.
    pub fn accepted(events: TurnEventReceiver) -> Self {
        Self {
            accepted: Box::pin(std::future::ready(Ok(()))),
            events,
        }
    }
}

/// The door every access path uses into the session layer.
#[async_trait::async_trait]
pub trait Ingress: Send + Sync + 'static {
    /// Hands a message to its session. Synchronous on purpose: two messages submitted one
    /// after the other reach their session in that order.
    fn submit(&self, message: InboundMessage) -> Result<Submission, TurnError>;

    /// A session's history, whichever node holds it; `Ok(None)` when it does not exist.
    async fn history(&self, key: SessionKey) -> Result<Option<SessionView>, TurnError>;

    /// Resets a session; answers whether there was anything to reset.
    async fn reset(&self, key: SessionKey) -> Result<bool, TurnError>;

    /// Stops the turn of `message_id` in `key`'s session, whichever node runs it.
    async fn stop(&self, key: SessionKey, message_id: String) -> Result<StopOutcome, TurnError>;
}

#[async_trait::async_trait]
impl Ingress for crate::node::NodeHandle {
    fn submit(&self, message: InboundMessage) -> Result<Submission, TurnError> {
        crate::node::NodeHandle::submit(self, message)
    }

    async fn history(&self, key: SessionKey) -> Result<Option<SessionView>, TurnError> {
        crate::node::NodeHandle::history(self, key).await
    }

    async fn reset(&self, key: SessionKey) -> Result<bool, TurnError> {
        crate::node::NodeHandle::reset(self, key).await
    }

    async fn stop(&self, key: SessionKey, message_id: String) -> Result<StopOutcome, TurnError> {
        Ok(crate::node::NodeHandle::stop(self, &key, &message_id))
    }
}
