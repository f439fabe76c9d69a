//! The `Dispatcher`: between the bridges and the sessions. For each platform message it
//! 1. applies the bridge's access policy (strangers get a pairing code or nothing);
//! 2. journals the message durably ([`BridgeStore::admit`]); only then does the bridge tell
//!    its platform "received" (a webhook's 2xx, a polling offset);
//! 3. runs the turn through the [`Ingress`] (retrying while the session layer cannot take
//!    it), and records the reply in the outbox in the same transaction that closes the
//!    inbox entry;
//! 4. delivers the reply until the platform accepts it (429s and network errors are
//!    retried, honouring `retry_after`); the reply id is the idempotency key.
//!
//! After a restart [`Dispatcher::resume`] finishes what the journal holds: an answered
//! message is not asked again (the session answers a repeated id with its first reply) and
//! a delivered reply is not sent again. Until it has read the journal, messages and sends
//! wait, so nothing taken in at start-up is found there as well and answered twice.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::policy::{AccessPolicy, Admission, RateLimiter};
use super::store::{BridgeStore, InboxEntry};
use super::voice_notes::{count_voice_reply, deliver_spoken, hear_voice_note, spoken_reply};
use super::{
    Bridge, BridgeContext, BridgeError, BridgeErrorKind, BridgeInbound, Delivery, InboundSink,
    StatusHandle, VoiceReplies,
};
use crate::ingress::Ingress;
use crate::message::MessageLimits;
use crate::message::VOICE_NOTE_METADATA;
use crate::metrics as metric_names;
use crate::turn::{ErrorCode, TurnError, TurnEvent, TurnEventReceiver};
use crate::voice::{VoiceNoteReader, VoiceNoteWriter};

/// The events of one submitted turn.
type ReplyEvents = TurnEventReceiver;

/// Longest wait between two delivery or turn attempts.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// First wait after a failed attempt; doubled each time.
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(250);
/// How often "typing…" is renewed while the assistant thinks (platforms expire it ≈ 5 s).
const TYPING_RENEWAL: Duration = Duration::from_secs(4);
/// How long received ids are remembered to recognise a platform's retry.
const SEEN_RETENTION_SECS: u64 = 48 * 3600;

/// One registered bridge.
struct Registered {
    bridge: Arc<dyn Bridge>,
    policy: AccessPolicy,
    status: StatusHandle,
    voice_replies: VoiceReplies,
}

/// Shared by the bridge actors, the webhook routes and the API. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    ingress: Arc<dyn Ingress>,
    store: BridgeStore,
    bridges: DashMap<String, Registered>,
    limiter: RateLimiter,
    /// What a message from a platform may hold (its ids are valid by construction).
    limits: MessageLimits,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// What hears voice notes, once the node has one (`[voice] stt`).
    voice_notes: OnceLock<Arc<dyn VoiceNoteReader>>,
    /// What speaks replies as voice notes, once the node has one (`[voice] tts`).
    voice_replies: OnceLock<Arc<dyn VoiceNoteWriter>>,
    /// Set once [`Dispatcher::resume`] has read what the journal held: until then nothing
    /// new is taken in, so a message received at start-up is not also found there and
    /// answered twice, and the configured identity links apply to it.
    resumed: watch::Sender<bool>,
}

impl Dispatcher {
    pub fn new(
        ingress: Arc<dyn Ingress>,
        store: BridgeStore,
        limits: MessageLimits,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                ingress,
                store,
                bridges: DashMap::new(),
                limiter: RateLimiter::default(),
                limits,
                shutdown,
                tasks: TaskTracker::new(),
                voice_notes: OnceLock::new(),
                voice_replies: OnceLock::new(),
                resumed: watch::Sender::new(false),
            }),
        }
    }

    /// Voice notes are heard with `reader` from now on (once: a later reader is ignored).
    pub fn hear_voice_notes_with(&self, reader: Arc<dyn VoiceNoteReader>) {
        let _ = self.inner.voice_notes.set(reader);
    }

    /// Replies are spoken as voice notes with `writer`, where a bridge's `voice_replies`
    /// asks for it (once: a later writer is ignored).
    pub fn speak_replies_with(&self, writer: Arc<dyn VoiceNoteWriter>) {
        let _ = self.inner.voice_replies.set(writer);
    }

    /// When bridge `name`'s replies are also voice notes.
    pub fn set_voice_replies(&self, name: &str, voice_replies: VoiceReplies) {
        if let Some(mut registered) = self.inner.bridges.get_mut(name) {
            registered.voice_replies = voice_replies;
        }
    }

    /// Whether the reply to `inbound` on `bridge` is also a voice note.
    fn speaks_reply(&self, bridge: &str, inbound: &BridgeInbound) -> bool {
        let Some(registered) = self.inner.bridges.get(bridge) else {
            return false;
        };
        let spoke = inbound.message.metadata().contains_key(VOICE_NOTE_METADATA);
        self.inner.voice_replies.get().is_some()
            && match registered.voice_replies {
                VoiceReplies::Always => true,
                VoiceReplies::Auto => spoke,
                VoiceReplies::Never => false,
            }
    }

    /// Adds a bridge; answers the context its actor runs it with.
    pub fn register(
        &self,
        name: &str,
        bridge: Arc<dyn Bridge>,
        policy: AccessPolicy,
    ) -> BridgeContext {
        let status = StatusHandle::new(name, bridge.kind());
        self.inner.bridges.insert(
            name.to_owned(),
            Registered {
                bridge,
                policy,
                status: status.clone(),
                voice_replies: VoiceReplies::default(),
            },
        );
        self.context(name, status)
    }

    /// A fresh context for bridge `name` (its own shutdown token, the shared sink and state).
    fn context(&self, name: &str, status: StatusHandle) -> BridgeContext {
        BridgeContext {
            name: name.to_owned(),
            sink: Arc::new(self.clone()),
            state: Arc::new(self.inner.store.clone()),
            status,
            shutdown: self.inner.shutdown.child_token(),
        }
    }

    pub fn store(&self) -> &BridgeStore {
        &self.inner.store
    }

    /// The bridge named `name` with its context, for its webhook route.
    pub fn bridge(&self, name: &str) -> Option<(Arc<dyn Bridge>, BridgeContext)> {
        let registered = self.inner.bridges.get(name)?;
        let context = self.context(name, registered.status.clone());
        Some((Arc::clone(&registered.bridge), context))
    }

    /// Every bridge's status, by name.
    pub fn statuses(&self) -> Vec<(super::BridgeStatus, super::Capabilities)> {
        let mut statuses: Vec<_> = self
            .inner
            .bridges
            .iter()
            .map(|entry| (entry.status.snapshot(), entry.bridge.capabilities()))
            .collect();
        statuses.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        statuses
    }

    /// Finishes what the journal holds from before a restart, and keeps the journal pruned.
    /// Messages and sends wait for it (see `Inner::resumed`): call it once the identity
    /// links are in place.
    pub async fn resume(&self) -> Result<(), BridgeError> {
        let outbox = self.inner.store.pending_outbox().await?;
        let inbox = self.inner.store.pending_inbox().await?;
        self.inner.resumed.send_replace(true);
        for entry in outbox {
            self.spawn_delivery(entry.bridge, entry.delivery);
        }
        for entry in inbox {
            self.spawn_turn(entry, None);
        }
        let dispatcher = self.clone();
        self.inner.tasks.spawn(async move {
            let mut hourly = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    () = dispatcher.inner.shutdown.cancelled() => return,
                    _ = hourly.tick() => {}
                }
                if let Err(error) = dispatcher.inner.store.prune_seen(SEEN_RETENTION_SECS).await {
                    tracing::warn!(%error, "could not prune the bridges' journal");
                }
                let idle = Duration::from_secs(600);
                dispatcher.inner.limiter.forget_idle(idle, Instant::now());
            }
        });
        Ok(())
    }

    /// Waits until [`Dispatcher::resume`] has read the journal; an error if the node shuts
    /// down first.
    async fn resumed(&self) -> Result<(), BridgeError> {
        let mut resumed = self.inner.resumed.subscribe();
        tokio::select! {
            done = resumed.wait_for(|done| *done) => done.map(drop).map_err(|_| shutting_down()),
            () = self.inner.shutdown.cancelled() => Err(shutting_down()),
        }
    }

    /// Sends a message nobody asked for right now (a reminder): journaled in the outbox
    /// first, then delivered with the usual retries, and again after a restart if needed.
    pub async fn send(&self, bridge: &str, delivery: Delivery) -> Result<(), BridgeError> {
        self.require(bridge)?;
        self.resumed().await?;
        self.inner.store.enqueue(bridge, delivery.clone()).await?;
        self.spawn_delivery(bridge.to_owned(), delivery);
        Ok(())
    }

    /// Like [`Dispatcher::send`] for a message with an idempotency key as its reply id (a
    /// workflow's step): a reply id sent once before is not sent again, whether it is still
    /// in the outbox or delivered.
    pub async fn send_once(&self, bridge: &str, delivery: Delivery) -> Result<(), BridgeError> {
        self.require(bridge)?;
        self.resumed().await?;
        if self
            .inner
            .store
            .enqueue_once(bridge, delivery.clone())
            .await?
        {
            self.spawn_delivery(bridge.to_owned(), delivery);
        } else {
            tracing::info!(bridge, reply_id = %delivery.reply_id, "a message sent once already is not sent again");
        }
        Ok(())
    }

    /// Waits (up to `limit`) for turns and deliveries in flight; what is left stays in the
    /// journal for the next start.
    pub async fn close(&self, limit: Duration) {
        self.inner.tasks.close();
        if tokio::time::timeout(limit, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "bridge deliveries still in flight at shutdown; they resume at the next start"
            );
        }
    }

    async fn challenge(&self, bridge: &str, inbound: &BridgeInbound) -> Result<(), BridgeError> {
        let sender = sender_key(inbound);
        let request = self
            .inner
            .store
            .pairing_code(bridge, &sender, &inbound.sender_name)
            .await?;
        tracing::info!(
            bridge,
            %sender,
            code = %request.code,
            "pairing requested; approve with `troupe pair approve {}`",
            request.code
        );
        let delivery = Delivery {
            reply_id: format!("pair-{}", inbound.message.id()),
            destination: inbound.destination.clone(),
            text: format!(
                "Hi! I only talk to people my owner knows. Your pairing code is {}. \
                 Ask my owner to run: troupe pair approve {}",
                request.code, request.code
            ),
            spoken: false,
        };
        self.inner.store.enqueue(bridge, delivery.clone()).await?;
        self.spawn_delivery(bridge.to_owned(), delivery);
        Ok(())
    }

    /// Runs the turn of a journaled message; `events` are those of a submission made
    /// already (the first attempt), if any.
    fn spawn_turn(&self, entry: InboxEntry, events: Option<ReplyEvents>) {
        let dispatcher = self.clone();
        self.inner
            .tasks
            .spawn(async move { dispatcher.run_turn(entry, events).await });
    }

    fn spawn_delivery(&self, bridge: String, delivery: Delivery) {
        let dispatcher = self.clone();
        self.inner
            .tasks
            .spawn(async move { dispatcher.deliver(&bridge, delivery).await });
    }

    async fn run_turn(&self, entry: InboxEntry, events: Option<ReplyEvents>) {
        let Some((bridge, status)) = self.lookup(&entry.bridge) else {
            tracing::warn!(bridge = %entry.bridge, "a journaled message names a bridge that is no longer configured; it stays journaled");
            return;
        };
        let typing = self.keep_typing(&bridge, &entry.inbound);
        let answer = self.answer(&entry.inbound, events).await;
        typing.cancel();
        let Some(text) = answer else {
            return; // shutting down: the message stays in the inbox for the next start
        };
        let (reply_id, text) = text;
        status.reply_answered();
        let delivery = Delivery {
            reply_id,
            destination: entry.inbound.destination.clone(),
            text,
            spoken: self.speaks_reply(&entry.bridge, &entry.inbound),
        };
        let message_id = entry.inbound.message.id();
        if let Err(error) = self
            .inner
            .store
            .answered(&entry.bridge, message_id, Some(delivery.clone()))
            .await
        {
            // Still in the inbox: the next start answers it again, with the same reply.
            tracing::error!(%error, "could not journal a reply; it is sent now and again after a restart");
            status.delivery_failed(&error.to_string());
        }
        self.deliver(&entry.bridge, delivery).await;
    }

    /// The reply (id, text) to a message; `None` when the node shuts down first.
    async fn answer(
        &self,
        inbound: &BridgeInbound,
        mut submitted: Option<ReplyEvents>,
    ) -> Option<(String, String)> {
        let mut wait = FIRST_RETRY_WAIT;
        loop {
            let outcome = match submitted.take() {
                Some(events) => reply_of(events).await,
                None => self.turn(inbound).await,
            };
            match outcome {
                Ok(reply) => return Some(reply),
                Err(error) if is_passing(error.code) => {
                    tracing::debug!(%error.message, "the session layer could not take the message yet; retrying");
                }
                Err(error) => {
                    // The model failed for good: tell the person rather than stay silent.
                    let text = format!("Sorry, I could not answer that ({}).", error.message);
                    return Some((format!("err-{}", inbound.message.id()), text));
                }
            }
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(MAX_RETRY_WAIT);
        }
    }

    async fn turn(&self, inbound: &BridgeInbound) -> Result<(String, String), TurnError> {
        let submission = self.inner.ingress.submit(inbound.message.clone())?;
        submission.accepted.await?;
        reply_of(submission.events).await
    }

    /// Hands a journaled message to the session layer and waits until it is stored there
    /// (in a cluster: in the JetStream inbox), so the platform hears "received" only then.
    /// If it cannot be stored now, the journal keeps it and the turn submits it again.
    async fn submit_stored(&self, inbound: &BridgeInbound) -> Option<ReplyEvents> {
        let submission = match self.inner.ingress.submit(inbound.message.clone()) {
            Ok(submission) => submission,
            Err(error) => {
                tracing::warn!(%error.message, "the session layer cannot take the message now; it stays journaled");
                return None;
            }
        };
        match submission.accepted.await {
            Ok(()) => Some(submission.events),
            Err(error) => {
                tracing::warn!(%error.message, "the message was not stored by the session layer; it stays journaled");
                None
            }
        }
    }

    /// Delivers until the platform accepts, refuses for good, or the node shuts down (then
    /// the reply stays in the outbox for the next start).
    async fn deliver(&self, bridge_name: &str, delivery: Delivery) {
        let Some((bridge, status)) = self.lookup(bridge_name) else {
            return;
        };
        let recording = match (delivery.spoken, self.inner.voice_replies.get()) {
            (true, Some(writer)) => spoken_reply(writer.as_ref(), bridge_name, &delivery).await,
            _ => None,
        };
        let mut wait = FIRST_RETRY_WAIT;
        loop {
            let delivered = match &recording {
                Some(recording) => deliver_spoken(bridge.as_ref(), &delivery, recording)
                    .await
                    .map(count_voice_reply),
                None => bridge.deliver(&delivery).await,
            };
            match delivered {
                Ok(()) => {
                    status.reply_delivered();
                    break;
                }
                Err(error) if error.is_retryable() => {
                    metrics::counter!(metric_names::BRIDGE_DELIVERY_RETRIES, "bridge" => bridge_name.to_owned())
                        .increment(1);
                    let pause = error.retry_after.unwrap_or(wait);
                    tracing::warn!(bridge = bridge_name, %error, ?pause, "delivery failed; retrying");
                    tokio::select! {
                        () = self.inner.shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    wait = (wait * 2).min(MAX_RETRY_WAIT);
                }
                Err(error) => {
                    tracing::error!(bridge = bridge_name, %error, "the platform refused a reply; it is dropped");
                    status.delivery_failed(&error.to_string());
                    break;
                }
            }
        }
        if let Err(error) = self
            .inner
            .store
            .delivered(bridge_name, &delivery.reply_id)
            .await
        {
            tracing::error!(%error, "could not mark a reply delivered; it may be sent again after a restart");
        }
    }

    /// Shows "typing…" until the returned token is cancelled.
    fn keep_typing(&self, bridge: &Arc<dyn Bridge>, inbound: &BridgeInbound) -> CancellationToken {
        let done = self.inner.shutdown.child_token();
        if !bridge.capabilities().typing_indicator {
            return done;
        }
        let (bridge, destination, until) = (
            Arc::clone(bridge),
            inbound.destination.clone(),
            done.clone(),
        );
        self.inner.tasks.spawn(async move {
            loop {
                if let Err(error) = bridge.typing(&destination).await {
                    tracing::debug!(%error, "typing indicator failed");
                }
                tokio::select! {
                    () = until.cancelled() => return,
                    () = tokio::time::sleep(TYPING_RENEWAL) => {}
                }
            }
        });
        done
    }

    /// A direct message from an account linked to a person joins that person's
    /// conversation (`person:<name>`); groups stay their own.
    fn as_person(&self, mut inbound: BridgeInbound) -> Result<BridgeInbound, BridgeError> {
        if inbound.chat != super::ChatKind::Direct {
            return Ok(inbound);
        }
        if let Some(person) = self.inner.store.person_of(&sender_key(&inbound)) {
            inbound.message.join_person(person).map_err(|error| {
                BridgeError::new(
                    BridgeErrorKind::Malformed,
                    format!("linked person: {error}"),
                )
            })?;
        }
        Ok(inbound)
    }

    /// `inbound` with its voice note heard, when it has one and a reader is configured;
    /// `None` when the note could not be heard (the sender was told why).
    async fn heard(
        &self,
        bridge: &str,
        mut inbound: BridgeInbound,
    ) -> Result<Option<BridgeInbound>, BridgeError> {
        let (Some(reader), Some((platform, _))) =
            (self.inner.voice_notes.get(), self.lookup(bridge))
        else {
            return Ok(Some(inbound));
        };
        let heard = hear_voice_note(platform.as_ref(), reader.as_ref(), &mut inbound).await;
        let outcome = match &heard {
            Ok(false) => return Ok(Some(inbound)),
            Ok(true) => "heard",
            Err(refusal) if refusal.passing().is_some() => "retry",
            Err(_) => "refused",
        };
        metrics::counter!(metric_names::VOICE_NOTES, "outcome" => outcome).increment(1);
        match heard {
            Ok(_) => Ok(Some(inbound)),
            Err(refusal) => {
                if let Some(passing) = refusal.passing() {
                    tracing::warn!(bridge, %refusal, "a voice note cannot be heard now; the platform will deliver it again");
                    return Err(passing);
                }
                tracing::info!(bridge, %refusal, "a voice note was not heard");
                let delivery = Delivery {
                    reply_id: format!("voice-note-{}", inbound.message.id()),
                    destination: inbound.destination,
                    text: refusal.to_string(),
                    spoken: false,
                };
                self.send(bridge, delivery).await?;
                Ok(None)
            }
        }
    }

    fn require(&self, bridge: &str) -> Result<(), BridgeError> {
        match self.lookup(bridge) {
            Some(_) => Ok(()),
            None => Err(BridgeError::new(
                BridgeErrorKind::Rejected,
                format!("no bridge named {bridge}"),
            )),
        }
    }

    fn lookup(&self, name: &str) -> Option<(Arc<dyn Bridge>, StatusHandle)> {
        let registered = self.inner.bridges.get(name)?;
        Some((Arc::clone(&registered.bridge), registered.status.clone()))
    }
}

/// Notes in the message how to reach its sender later (`troupe.reply_route`): the bridge
/// and the destination, for skills that message people back, like reminders.
fn with_reply_route(bridge: &str, mut inbound: BridgeInbound) -> BridgeInbound {
    let route = serde_json::json!({"bridge": bridge, "destination": inbound.destination});
    inbound.message.set_reply_route(route);
    inbound
}

/// The reply of a submitted turn.
async fn reply_of(mut events: ReplyEvents) -> Result<(String, String), TurnError> {
    while let Some(event) = events.recv().await {
        match event {
            TurnEvent::Delta { .. } | TurnEvent::ToolCall { .. } | TurnEvent::ToolResult { .. } => {
            }
            TurnEvent::Reply { reply, .. } => return Ok((reply.id, reply.payload)),
            TurnEvent::Failed { error, .. } => return Err(error),
        }
    }
    Err(TurnError::new(
        ErrorCode::SessionFailed,
        "the session stopped before replying",
    ))
}

/// `platform:sender_id`: how pairing and allowlists name a person.
fn sender_key(inbound: &BridgeInbound) -> String {
    format!(
        "{}:{}",
        inbound.message.platform(),
        inbound.message.sender_id()
    )
}

fn shutting_down() -> BridgeError {
    BridgeError::new(BridgeErrorKind::Transient, "the node is shutting down")
}

/// Failures of the session layer that another try may not have (a busy conversation
/// too: the journal keeps the message until its session has room).
const fn is_passing(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::SessionFailed
            | ErrorCode::ShuttingDown
            | ErrorCode::StorageError
            | ErrorCode::Busy
    )
}

#[async_trait::async_trait]
impl InboundSink for Dispatcher {
    async fn receive(&self, bridge: &str, inbound: BridgeInbound) -> Result<(), BridgeError> {
        self.resumed().await?;
        self.inner
            .limits
            .admit(&inbound.message)
            .map_err(|error| BridgeError::new(BridgeErrorKind::Rejected, error.to_string()))?;
        let (policy, status) = self
            .inner
            .bridges
            .get(bridge)
            .map(|registered| (registered.policy.clone(), registered.status.clone()))
            .ok_or_else(|| {
                BridgeError::new(
                    BridgeErrorKind::Rejected,
                    format!("no bridge named {bridge}"),
                )
            })?;
        let known = self.inner.store.is_paired(&sender_key(&inbound)).await?;
        let sender_id = inbound.message.sender_id().to_owned();
        let refuse = |reason: &'static str| {
            metrics::counter!(metric_names::BRIDGE_REFUSED, "bridge" => bridge.to_owned(), "reason" => reason)
                .increment(1);
            tracing::debug!(bridge, sender = %sender_id, reason, "message not passed to the assistant");
        };
        match policy.decide(&inbound, known) {
            Admission::Refuse(reason) => {
                status.message_received();
                refuse(reason);
                Ok(())
            }
            Admission::Challenge => {
                status.message_received();
                self.challenge(bridge, &inbound).await
            }
            Admission::Admit => {
                let sender = sender_key(&inbound);
                let Some(inbound) = self.heard(bridge, inbound).await? else {
                    return Ok(());
                };
                let inbound = with_reply_route(bridge, self.as_person(inbound)?);
                if !self.inner.store.admit(bridge, &inbound).await? {
                    tracing::debug!(bridge, id = %inbound.message.id(), "a platform's retry of a received message");
                    return Ok(());
                }
                status.message_received();
                if !self
                    .inner
                    .limiter
                    .allow(&sender, policy.rate_limit_per_minute, Instant::now())
                {
                    refuse("rate_limited");
                    // Journaled but not to be answered: close its inbox entry.
                    return self
                        .inner
                        .store
                        .answered(bridge, inbound.message.id(), None)
                        .await;
                }
                let submitted = self.submit_stored(&inbound).await;
                self.spawn_turn(
                    InboxEntry {
                        bridge: bridge.to_owned(),
                        inbound,
                        received_at: crate::message::unix_now(),
                    },
                    submitted,
                );
                Ok(())
            }
        }
    }
}
