//! `Inbox`: where a single node keeps every accepted message until its answer is stored,
//! so that an `ack` means stored (in a cluster, the JetStream inbox plays this part and
//! nodes have no `Inbox`).
//!
//! - The node puts a message into its inbox as it routes it to its session, and the access
//!   path acknowledges it once that put is durable (group-committed with the store's other
//!   writes; the turn runs meanwhile).
//! - The session marks a message answered once its answer is stored with its snapshot, or
//!   when it answered without changing anything (a repeated id, a failure the client was
//!   told about). That removal rides along with a later commit instead of paying for one.
//! - A node that starts answers what is still in its inbox
//!   ([`crate::node::NodeHandle::answer_waiting`]). A message answered before a crash whose
//!   removal was not yet written is answered again from the history (the repeated-id rule),
//!   which changes nothing; a retry of its id after the restart gets the same answer.

use futures_util::future::BoxFuture;

use crate::ids::SessionKey;
use crate::message::InboundMessage;
use crate::snapshot::StoreError;

/// A durable list of messages accepted and not yet answered.
#[async_trait::async_trait]
pub trait Inbox: Send + Sync + 'static {
    /// Keeps `message`. The write is queued before this returns (so puts keep the order
    /// they were made in); the future answers once it is durable. A put of an id that is
    /// already kept replaces it.
    fn put(&self, message: &InboundMessage) -> BoxFuture<'static, Result<(), StoreError>>;

    /// The message `id` of `key` is answered and its answer stored: it need not be kept.
    /// Takes effect with the store's next commit; lost in a crash before it, which the
    /// repeated-id rule makes harmless.
    fn answered(&self, key: &SessionKey, id: &str);

    /// Every message kept, in the order they were put.
    async fn waiting(&self) -> Result<Vec<InboundMessage>, StoreError>;
}
