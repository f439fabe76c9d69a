//! `ClusterIngress`: the cluster's door for access paths. A submitted message is stored in
//! the durable inbox (JetStream, `Nats-Msg-Id` = session + message id, so a repeat inside
//! the dedupe window is dropped by the server) and counts as accepted only once JetStream
//! acknowledged it. The turn's events come back on this node's reply subject, wherever the
//! session runs, and reach the waiting client; a waiter takes exactly one final event.
//!
//! A repeat that JetStream dropped still gets its answer: it is sent once more as a
//! *replay* (a fresh `Nats-Msg-Id`), and the session answers the known id with the reply it
//! stored, without asking the model again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use async_nats::jetstream::message::PublishMessage;
use dashmap::DashMap;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use troupe_actors::session::SessionView;
use troupe_actors::snapshot::SnapshotStore;
use troupe_actors::stop::StopOutcome;
use troupe_actors::trace::TraceParent;
use troupe_actors::{
    ErrorCode, InboundMessage, Ingress, SessionKey, Submission, TurnError, TurnEvents, turn_channel,
};

use crate::envelope::{self, InboxEnvelope, ReplyEnvelope, ReplyRoute, RpcRequest, RpcResponse};
use crate::metrics as metric_names;
use crate::node::Shared;
use crate::placement::shard_of;
use crate::subjects;

/// How long a request to another node waits for its answer.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// The `traceparent` header's name, built once.
const TRACEPARENT: async_nats::HeaderName =
    async_nats::HeaderName::from_static(subjects::TRACEPARENT_HEADER);
/// Tries of a request whose owner moved meanwhile.
const RPC_ATTEMPTS: usize = 5;

/// One message for the publisher task.
struct PublishJob {
    subject: String,
    publish: PublishMessage,
    sent: oneshot::Sender<Result<PublishAckFuture, PublishError>>,
}

/// The cluster's [`Ingress`].
pub struct ClusterIngress {
    shared: Arc<Shared>,
    waiters: Arc<DashMap<u64, TurnEvents>>,
    next_waiter: AtomicU64,
    publisher: mpsc::UnboundedSender<PublishJob>,
}

fn storage_error(error: impl std::fmt::Display) -> TurnError {
    TurnError::new(
        ErrorCode::StorageError,
        format!("the message could not be stored: {error}"),
    )
}

impl ClusterIngress {
    /// Starts the publisher (one task, so messages reach JetStream in submission order)
    /// and the listener for this node's replies.
    pub(crate) async fn start(
        shared: Arc<Shared>,
    ) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let (publisher, jobs) = mpsc::unbounded_channel();
        tokio::spawn(run_publisher(shared.jetstream.clone(), jobs));
        let waiters: Arc<DashMap<u64, TurnEvents>> = Arc::default();
        let replies = shared
            .client
            .subscribe(subjects::replies(shared.membership.me()))
            .await?;
        tokio::spawn(run_reply_listener(
            Arc::clone(&shared),
            Arc::clone(&waiters),
            replies,
        ));
        Ok(Arc::new(Self {
            shared,
            waiters,
            next_waiter: AtomicU64::new(1),
            publisher,
        }))
    }

    fn enqueue(
        &self,
        subject: String,
        publish: PublishMessage,
    ) -> oneshot::Receiver<Result<PublishAckFuture, PublishError>> {
        let (sent, receiver) = oneshot::channel();
        let _ = self.publisher.send(PublishJob {
            subject,
            publish,
            sent,
        });
        receiver
    }

    /// The node that owns `key`'s shard, if one is alive.
    fn owner_of(&self, key: &SessionKey) -> Option<String> {
        let shard = shard_of(key, self.shared.config.shards);
        let record = self.shared.owners.get(&shard)?;
        let owner = record.owner.as_ref()?;
        self.shared
            .membership
            .is_alive(&owner.node)
            .then(|| owner.node.clone())
    }

    /// Asks the owner of `key`'s session; `None` when no live node owns it right now.
    async fn ask_owner(
        &self,
        key: &SessionKey,
        request: &RpcRequest,
    ) -> Result<Option<RpcResponse>, TurnError> {
        for attempt in 0..RPC_ATTEMPTS {
            let Some(owner) = self.owner_of(key) else {
                return Ok(None);
            };
            let shard = shard_of(key, self.shared.config.shards);
            let answer = if owner == self.shared.membership.me()
                && self.shared.serving.contains_key(&shard)
            {
                answer_locally(&self.shared, request).await
            } else {
                let asked = tokio::time::timeout(
                    RPC_TIMEOUT,
                    self.shared
                        .client
                        .request(subjects::node_rpc(&owner), envelope::encode(request)),
                )
                .await;
                match asked {
                    Ok(Ok(message)) => envelope::decode(&message.payload).unwrap_or_else(|error| {
                        RpcResponse::Failed {
                            code: ErrorCode::Internal,
                            message: format!("unreadable answer from {owner}: {error}"),
                        }
                    }),
                    _ => RpcResponse::Failed {
                        code: ErrorCode::SessionFailed,
                        message: format!("node {owner} did not answer"),
                    },
                }
            };
            match answer {
                RpcResponse::Failed {
                    code: ErrorCode::SessionFailed,
                    ..
                } if attempt + 1 < RPC_ATTEMPTS => {
                    tokio::time::sleep(self.shared.config.heartbeat()).await;
                }
                answer => return Ok(Some(answer)),
            }
        }
        Err(TurnError::new(
            ErrorCode::SessionFailed,
            "the session is moving; try again",
        ))
    }
}

/// Answers a request for a session this node serves.
pub(crate) async fn answer_locally(shared: &Shared, request: &RpcRequest) -> RpcResponse {
    let key = match request {
        RpcRequest::History { key } | RpcRequest::Reset { key } | RpcRequest::Stop { key, .. } => {
            key
        }
    };
    let shard = shard_of(key, shared.config.shards);
    let Some(node) = shared.node.get() else {
        return not_owner();
    };
    if !shared.serving.contains_key(&shard) || !shared.owns(shard) {
        return not_owner();
    }
    let answer = match request {
        RpcRequest::History { key } => node
            .history(key.clone())
            .await
            .map(|view| RpcResponse::History { view }),
        RpcRequest::Reset { key } => node
            .reset(key.clone())
            .await
            .map(|existed| RpcResponse::Reset { existed }),
        RpcRequest::Stop { key, message_id } => Ok(RpcResponse::Stop {
            stop: node.stop(key, message_id),
        }),
    };
    answer.unwrap_or_else(|error| RpcResponse::Failed {
        code: error.code,
        message: error.message,
    })
}

fn not_owner() -> RpcResponse {
    RpcResponse::Failed {
        code: ErrorCode::SessionFailed,
        message: "this node does not serve that session now".into(),
    }
}

fn unexpected(answer: &RpcResponse) -> TurnError {
    match answer {
        RpcResponse::Failed { code, message } => TurnError::new(*code, message.clone()),
        other => TurnError::new(ErrorCode::Internal, format!("unexpected answer {other:?}")),
    }
}

#[async_trait::async_trait]
impl Ingress for ClusterIngress {
    fn submit(&self, message: InboundMessage) -> Result<Submission, TurnError> {
        if self.shared.stop.is_cancelled() {
            return Err(TurnError::new(
                ErrorCode::ShuttingDown,
                "the node is leaving the cluster",
            ));
        }
        let key = message.session_key();
        let shard = shard_of(&key, self.shared.config.shards);
        let dedupe_id = format!("{key}/{}", message.id());
        let waiter = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let (events, receiver) = turn_channel();
        self.waiters.insert(waiter, events);
        let envelope = InboxEnvelope {
            message,
            reply_to: Some(ReplyRoute {
                node: self.shared.membership.me().to_owned(),
                waiter,
            }),
            origin: self.shared.membership.me().to_owned(),
        };
        let payload = envelope::encode(&envelope);
        // The hop to the owner is a span of this trace; without OpenTelemetry export the
        // header still carries one trace id that both nodes log.
        let span = tracing::debug_span!(
            "cluster_ingress",
            otel.kind = "producer",
            shard,
            message_id = %envelope.message.id(),
        );
        let trace = TraceParent::of_span(&span).unwrap_or_else(TraceParent::random);
        let publish = PublishMessage::build()
            .payload(payload.clone())
            .header(async_nats::header::NATS_MESSAGE_ID, dedupe_id)
            .header(TRACEPARENT, trace.to_header());
        let sent = self.enqueue(subjects::inbox(shard), publish);
        let waiters = Arc::clone(&self.waiters);
        let publisher = self.publisher.clone();
        let accepted = async move {
            let stored = async {
                let ack = sent.await.map_err(storage_error)?.map_err(storage_error)?;
                ack.await.map_err(storage_error)
            };
            match stored.await {
                Ok(ack) if ack.duplicate => {
                    metrics::counter!(metric_names::DEDUPES).increment(1);
                    replay(&publisher, subjects::inbox(shard), payload, trace).await
                }
                Ok(ack) => {
                    tracing::debug!(
                        trace_id = %trace.trace_id_hex(),
                        shard,
                        sequence = ack.sequence,
                        "message stored in the inbox"
                    );
                    Ok(())
                }
                Err(error) => {
                    waiters.remove(&waiter);
                    Err(error)
                }
            }
        }
        .instrument(span);
        Ok(Submission {
            accepted: Box::pin(accepted),
            events: receiver,
        })
    }

    async fn history(&self, key: SessionKey) -> Result<Option<SessionView>, TurnError> {
        match self
            .ask_owner(&key, &RpcRequest::History { key: key.clone() })
            .await?
        {
            Some(RpcResponse::History { view }) => Ok(view),
            Some(other) => Err(unexpected(&other)),
            // Nobody serves it now: what it saved is its history.
            None => {
                let snapshot =
                    self.shared.store.load(&key).await.map_err(|error| {
                        TurnError::new(ErrorCode::StorageError, error.to_string())
                    })?;
                Ok(snapshot.map(|snapshot| SessionView::from_snapshot(&snapshot)))
            }
        }
    }

    async fn reset(&self, key: SessionKey) -> Result<bool, TurnError> {
        match self
            .ask_owner(&key, &RpcRequest::Reset { key: key.clone() })
            .await?
        {
            Some(RpcResponse::Reset { existed }) => Ok(existed),
            Some(other) => Err(unexpected(&other)),
            None => Err(TurnError::new(
                ErrorCode::SessionFailed,
                "no node serves this session right now; try again in a moment",
            )),
        }
    }

    async fn stop(&self, key: SessionKey, message_id: String) -> Result<StopOutcome, TurnError> {
        let request = RpcRequest::Stop {
            key: key.clone(),
            message_id,
        };
        match self.ask_owner(&key, &request).await? {
            Some(RpcResponse::Stop { stop }) => Ok(stop),
            Some(other) => Err(unexpected(&other)),
            // Nobody serves the session, so nothing of it runs.
            None => Ok(StopOutcome::NotRunning),
        }
    }
}

/// Sends a repeat again under a fresh id so that the session answers this waiter too.
async fn replay(
    publisher: &mpsc::UnboundedSender<PublishJob>,
    subject: String,
    payload: bytes::Bytes,
    trace: TraceParent,
) -> Result<(), TurnError> {
    let publish = PublishMessage::build()
        .payload(payload)
        .message_id(format!("replay-{}", uuid::Uuid::new_v4().simple()))
        .header(TRACEPARENT, trace.to_header());
    let (sent, receiver) = oneshot::channel();
    let _ = publisher.send(PublishJob {
        subject,
        publish,
        sent,
    });
    let ack = receiver
        .await
        .map_err(storage_error)?
        .map_err(storage_error)?;
    ack.await.map(|_| ()).map_err(storage_error)
}

async fn run_publisher(
    jetstream: async_nats::jetstream::Context,
    mut jobs: mpsc::UnboundedReceiver<PublishJob>,
) {
    while let Some(job) = jobs.recv().await {
        let sent = jetstream.send_publish(job.subject, job.publish).await;
        let _ = job.sent.send(sent);
    }
}

/// How often waiters whose client went away are forgotten.
const SWEEP_PERIOD: Duration = Duration::from_secs(10);

async fn run_reply_listener(
    shared: Arc<Shared>,
    waiters: Arc<DashMap<u64, TurnEvents>>,
    mut replies: async_nats::Subscriber,
) {
    let mut sweep = tokio::time::interval(SWEEP_PERIOD);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            _ = sweep.tick() => waiters.retain(|_, events| !events.is_closed()),
            message = replies.next() => {
                let Some(message) = message else { return };
                let reply: ReplyEnvelope<'_> = match envelope::decode(&message.payload) {
                    Ok(reply) => reply,
                    Err(error) => {
                        tracing::warn!(%error, "unreadable turn event ignored");
                        continue;
                    }
                };
                let event = reply.event.into_owned();
                if event.is_final() {
                    // One final event per waiter: a second answer for it is dropped here.
                    if let Some((_, events)) = waiters.remove(&reply.waiter) {
                        let _ = events.send(event);
                    }
                } else if let Some(events) = waiters.get(&reply.waiter) {
                    let _ = events.send(event);
                }
            }
        }
    }
}
