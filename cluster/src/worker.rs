//! `ShardWorker`: while this node owns a shard, pulls the shard's messages from the durable
//! inbox, hands each to its session (in order), streams the turn's events to the node that
//! waits for them, and acknowledges the message only once the final reply went out, so a
//! message is never lost: if this node dies, JetStream delivers it again to the next owner,
//! whose session answers a repeated id with the reply it already stored.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use troupe_actors::node::NodeHandle;
use troupe_actors::{ErrorCode, TraceParent, TurnEvent, TurnEventReceiver};

use crate::envelope::{self, InboxEnvelope, ReplyEnvelope, ReplyRoute};
use crate::metrics as metric_names;
use crate::node::Shared;
use crate::subjects;

/// Turns one shard has started and not yet answered. A pull asks for no more messages than
/// there are free places, so a backlog waits in the stream (where it costs nothing) rather
/// than in session mailboxes, where every waiting message would need a progress ack each
/// third of `ack_wait` to stay ours, and would be delivered again if one came late.
const TURNS_IN_FLIGHT: usize = 32;
/// How long one pull waits for messages; also the longest a stop waits for the pull.
const PULL_EXPIRY: Duration = Duration::from_secs(1);
/// Delay before a message whose turn failed for a passing reason is delivered again.
const RETRY_DELAY: Duration = Duration::from_millis(200);
/// Pause after a failed or interrupted pull, before the consumer is opened again.
const REOPEN_PAUSE: Duration = Duration::from_millis(200);

/// A running worker for one shard.
pub(crate) struct ShardWorker {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ShardWorker {
    /// Opens the shard's durable consumer and starts pulling; where the inbox stream of
    /// older builds exists, also drains the shard's messages from it.
    pub(crate) async fn start(
        shared: Arc<Shared>,
        node: NodeHandle,
        shard: u32,
    ) -> Result<Self, ConsumerError> {
        let consumer = open_consumer(&shared, shard, Source::Current).await?;
        let legacy = if shared.inbox.legacy().is_some() {
            open_consumer(&shared, shard, Source::Legacy)
                .await
                // Deleted meanwhile, most likely: nothing is left to drain.
                .inspect_err(|error| {
                    tracing::warn!(shard, %error, "not draining the older inbox stream");
                })
                .ok()
        } else {
            None
        };
        let stop = CancellationToken::new();
        let current = pull_loop(
            Arc::clone(&shared),
            node.clone(),
            shard,
            Source::Current,
            consumer,
            stop.clone(),
        );
        let task = match legacy {
            Some(legacy) => {
                let draining = pull_loop(shared, node, shard, Source::Legacy, legacy, stop.clone());
                tokio::spawn(async move {
                    futures_util::future::join(current, draining).await;
                })
            }
            None => tokio::spawn(current),
        };
        tracing::debug!(shard, "serving the shard");
        Ok(Self { stop, task })
    }

    /// Whether the worker stopped by itself (it found the shard is not its node's any more).
    pub(crate) fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops pulling and waits until every turn it started has been answered and acked,
    /// at most `limit`: past it, the turns are abandoned (not acked, so JetStream delivers
    /// them again to the next owner).
    pub(crate) async fn stop(self, limit: Duration) {
        self.stop.cancel();
        let abort = self.task.abort_handle();
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::warn!("a shard worker did not finish in time; its turns are delivered again");
            abort.abort();
        }
    }
}

type ShardConsumer = async_nats::jetstream::consumer::Consumer<pull::Config>;

/// Which inbox stream a shard's consumer reads.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// The shard's stream of the current layout.
    Current,
    /// The single stream of builds before the inbox was split (drained during an upgrade).
    Legacy,
}

/// The shard's durable consumer, created if missing.
///
/// Its state (what was delivered and is not acknowledged yet) is kept in the server's
/// memory, not in a file: on a work-queue stream the stream itself holds exactly the
/// messages not acknowledged yet, so a consumer lost with a server restart is created
/// again and starts at the first of them, and nothing is lost. Kept in files, each of the
/// shards' consumers rewrote its state file up to ten times a second, which was the largest
/// single cost of the NATS server under load.
async fn open_consumer(
    shared: &Shared,
    shard: u32,
    source: Source,
) -> Result<ShardConsumer, ConsumerError> {
    let config = &shared.config;
    let (stream, filter_subject) = match (source, shared.inbox.legacy()) {
        (Source::Legacy, Some(legacy)) => (legacy, subjects::legacy_inbox(shard)),
        (Source::Legacy, None) => return Err(ConsumerError::NoLegacyStream),
        (Source::Current, _) => (shared.inbox.of(shard), subjects::inbox(shard)),
    };
    let name = subjects::shard_consumer(shard);
    let consumer_config = pull::Config {
        durable_name: Some(name.clone()),
        filter_subject,
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait(),
        // JetStream never gives up on a message by itself (a message it stopped
        // delivering would be lost without an answer); `Turn::forward` answers a message
        // that failed `max_deliver` times with its error instead.
        max_deliver: -1,
        max_ack_pending: 4096,
        memory_storage: true,
        ..pull::Config::default()
    };
    let opening = stream.get_or_create_consumer(&name, consumer_config);
    tokio::time::timeout(config.lease(), opening)
        .await
        .map_err(|_| ConsumerError::TimedOut { shard })?
        .map_err(|source| ConsumerError::Open { shard, source })
}

/// Why a shard's consumer could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsumerError {
    #[error("there is no older inbox stream")]
    NoLegacyStream,
    #[error("opening the consumer of shard {shard} timed out")]
    TimedOut { shard: u32 },
    #[error("cannot open the consumer of shard {shard}: {source}")]
    Open {
        shard: u32,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
}

/// Whether the single inbox stream of older builds no longer exists (an operator deleted
/// it after the upgrade), so draining it has ended; not when the server cannot say.
async fn legacy_stream_gone(shared: &Shared) -> bool {
    matches!(crate::inbox::find_legacy(&shared.jetstream).await, Ok(None))
}

/// Pulls `source`'s messages of `shard` until `stop`, or until this node turns out not to
/// own the shard: then it cancels `stop`, so the worker's other loop ends too. The drain
/// of the older stream also ends by itself once that stream is deleted.
async fn pull_loop(
    shared: Arc<Shared>,
    node: NodeHandle,
    shard: u32,
    source: Source,
    mut consumer: ShardConsumer,
    stop: CancellationToken,
) {
    let turns = TaskTracker::new();
    let places = Arc::new(Semaphore::new(TURNS_IN_FLIGHT));
    let mut owner = true;
    let mut interrupted = false;
    while owner && !stop.is_cancelled() {
        if interrupted {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(REOPEN_PAUSE) => {}
            }
            // The server may have lost the consumer (a restart): open it again.
            match open_consumer(&shared, shard, source).await {
                Ok(reopened) => consumer = reopened,
                Err(_) if matches!(source, Source::Legacy) && legacy_stream_gone(&shared).await => {
                    tracing::info!(shard, "the older inbox stream was deleted: its drain ends");
                    break;
                }
                Err(error) => tracing::debug!(shard, %error, "cannot open the consumer yet"),
            }
            interrupted = false;
        }
        // Wait for a free place, then ask for as many messages as there are.
        let wanted = tokio::select! {
            () = stop.cancelled() => break,
            free = places.acquire() => match free {
                Ok(free) => {
                    drop(free);
                    places.available_permits()
                }
                Err(_) => break,
            },
        };
        let pull = consumer
            .batch()
            .max_messages(wanted)
            .expires(PULL_EXPIRY)
            .messages();
        let mut messages = match tokio::time::timeout(PULL_EXPIRY, pull).await {
            Ok(Ok(messages)) => messages,
            Ok(Err(error)) => {
                tracing::debug!(shard, %error, "pull failed; retrying");
                interrupted = true;
                continue;
            }
            Err(_) => continue,
        };
        // A pull ends by itself after PULL_EXPIRY; the timeout only guards a lost connection.
        while let Ok(Some(message)) = tokio::time::timeout(PULL_EXPIRY * 2, messages.next()).await {
            match message {
                Ok(message) if owner => {
                    // The pull asked for at most the free places: this does not wait.
                    let Ok(place) = Arc::clone(&places).acquire_owned().await else {
                        break;
                    };
                    owner = dispatch(&shared, &node, shard, &turns, message, place).await;
                }
                // Not the owner any more: the rest of this pull goes back at once.
                Ok(message) => {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
                Err(error) => {
                    tracing::debug!(shard, %error, "pull interrupted");
                    interrupted = true;
                    break;
                }
            }
        }
    }
    if !owner {
        stop.cancel();
    }
    turns.close();
    turns.wait().await;
}

/// Hands one inbox message to its session and starts forwarding the turn's events.
/// Returns `false` when this node turned out not to own the shard: the worker stops, so it
/// does not keep taking (and handing back) messages meant for the owner.
async fn dispatch(
    shared: &Arc<Shared>,
    node: &NodeHandle,
    shard: u32,
    turns: &TaskTracker,
    message: async_nats::jetstream::Message,
    place: OwnedSemaphorePermit,
) -> bool {
    let envelope: InboxEnvelope = match envelope::decode(&message.payload) {
        Ok(envelope) => envelope,
        Err(error @ envelope::EnvelopeError::TooNew(_)) => {
            // Written by a newer node during a rolling upgrade: leave it for a newer owner.
            tracing::warn!(%error, "inbox message from a newer version left for a newer node");
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            return true;
        }
        Err(error) => {
            tracing::error!(%error, "unreadable inbox message dropped");
            let _ = message.ack_with(AckKind::Term).await;
            return true;
        }
    };
    let delivered = message.info().map_or(1, |info| info.delivered);
    if delivered > 1 {
        metrics::counter!(metric_names::REDELIVERIES).increment(1);
    }
    if !shared.owns(shard) {
        // Fenced, or the shard moved and the manager has not stopped this worker yet: the
        // owner will get the message.
        let _ = message.ack_with(AckKind::Nak(None)).await;
        tracing::debug!(shard, "not the shard's owner now; the worker stops");
        return false;
    }
    if envelope.origin != shared.membership.me() {
        metrics::counter!(metric_names::HOPS).increment(1);
    }
    let parent = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(subjects::TRACEPARENT_HEADER))
        .and_then(|value| TraceParent::parse(value.as_str()));
    let span = tracing::debug_span!(
        "cluster_turn",
        otel.kind = "consumer",
        node = %shared.membership.me(),
        trace_id = parent.map(TraceParent::trace_id_hex).unwrap_or_default(),
        message_id = %envelope.message.id(),
        delivered,
    );
    if let Some(parent) = parent {
        parent.adopt(&span);
    }
    let Ok(events) = span.in_scope(|| node.route(envelope.message)) else {
        let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
        return true;
    };
    shared
        .membership
        .load
        .in_flight
        .fetch_add(1, Ordering::Relaxed);
    let turn = Turn {
        shared: Arc::clone(shared),
        message,
        reply_to: envelope.reply_to,
        delivered,
        _place: place,
    };
    turns.spawn(turn.forward(events).instrument(span));
    true
}

/// One message being answered.
struct Turn {
    shared: Arc<Shared>,
    message: async_nats::jetstream::Message,
    reply_to: Option<ReplyRoute>,
    delivered: i64,
    /// The shard's place this turn holds until it is answered.
    _place: OwnedSemaphorePermit,
}

/// Failures that another try may not have: the message is delivered again rather than
/// answered with the error.
const fn is_passing(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::SessionFailed | ErrorCode::ShuttingDown | ErrorCode::StorageError
    )
}

impl Turn {
    async fn forward(self, mut events: TurnEventReceiver) {
        let mut progress = tokio::time::interval(self.shared.config.ack_wait() / 3);
        progress.tick().await;
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else {
                        // The session stopped with the message queued: deliver it again.
                        self.retry().await;
                        break;
                    };
                    if let TurnEvent::Failed { error, .. } = &event
                        && is_passing(error.code)
                        && self.delivered < self.shared.config.max_deliver
                    {
                        self.retry().await;
                        break;
                    }
                    let last = event.is_final();
                    self.publish(&event).await;
                    if last {
                        if let Err(error) = self.message.ack().await {
                            tracing::warn!(%error, "ack failed; the message may be delivered again");
                        }
                        tracing::debug!("turn answered and acknowledged");
                        break;
                    }
                }
                _ = progress.tick() => {
                    let _ = self.message.ack_with(AckKind::Progress).await;
                }
            }
        }
        self.shared
            .membership
            .load
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }

    async fn retry(&self) {
        let _ = self.message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
    }

    async fn publish(&self, event: &TurnEvent) {
        let Some(route) = &self.reply_to else {
            return;
        };
        let reply = ReplyEnvelope {
            waiter: route.waiter,
            event: std::borrow::Cow::Borrowed(event),
        };
        if let Err(error) = self
            .shared
            .client
            .publish(subjects::replies(&route.node), envelope::encode(&reply))
            .await
        {
            tracing::debug!(%error, "could not send a turn event to its node");
        }
    }
}
