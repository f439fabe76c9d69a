//! `Room`: the actor that holds one open room's document. It applies each client frame
//! ([`RoomState`]) at once, appends the updates to the store and only then sends anything
//! on, so no client sees an update a crash could lose. Updates that arrive while a batch is
//! being stored are stored and sent together next ([`batch`]), so a busy room stays ahead
//! of its clients. It folds the journal into a snapshot now and then, drops awareness
//! states nobody renews, and stops (passivates) once it has been empty for
//! `idle_passivate`: the next join loads it again.

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::items::{Author, ItemError, ItemsPatch, items_json, patch_update};
use crate::metrics as metric_names;
use crate::protocol::{ConnectionId, Effects, Frame, ProtocolError, RoomLimits, RoomState};
use crate::room_name::RoomName;
use crate::store::{CanvasStoreError, Remote, SharedCanvasStore};
use batch::{Answer, Batch, Next, Pipeline, forwarded_frames};

/// The assistant's colour in presence lists and cursors.
const ASSISTANT_COLOR: &str = "#7c3aed";

/// How rooms behave; from `[canvas]` in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomSettings {
    pub limits: RoomLimits,
    /// An empty room leaves memory after this long.
    pub idle_passivate: Duration,
    /// Frames queued for one slow connection before it is closed.
    pub outbox_frames: usize,
    /// The journal is folded into a snapshot after this many updates…
    pub compact_after_updates: usize,
    /// …or this many bytes.
    pub compact_after_bytes: usize,
    /// Frames one connection may send a second, in bursts of one second's worth.
    pub max_updates_per_second: u32,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            limits: RoomLimits::default(),
            idle_passivate: Duration::from_secs(60),
            outbox_frames: 1024,
            compact_after_updates: 1000,
            compact_after_bytes: 4 * 1024 * 1024,
            max_updates_per_second: 500,
        }
    }
}

/// Why a connection is closed: a WebSocket close code and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: String,
}

impl From<&ProtocolError> for CloseReason {
    fn from(error: &ProtocolError) -> Self {
        Self {
            code: error.close_code(),
            reason: error.to_string(),
        }
    }
}

/// What a room sends one connection.
#[derive(Clone, Debug)]
pub enum Outgoing {
    Frame(Frame),
    /// The room closed the connection; nothing follows.
    Close(CloseReason),
}

pub enum RoomMessage {
    Join {
        connection: ConnectionId,
        writable: bool,
        outbox: mpsc::Sender<Outgoing>,
        reply: RpcReplyPort<()>,
    },
    /// One binary frame; answered once it was handled (applied, stored, sent on): `false`
    /// when the room no longer has the connection (it was closed), so nothing was applied.
    /// No answer comes when the room could not store it (and closed the connection).
    Frame {
        connection: ConnectionId,
        data: Vec<u8>,
        reply: RpcReplyPort<bool>,
    },
    Leave {
        connection: ConnectionId,
    },
    /// The board's items as JSON.
    Items {
        reply: RpcReplyPort<serde_json::Value>,
    },
    /// How many clients are connected here, and the document's stored bytes.
    Describe {
        reply: RpcReplyPort<(usize, u64)>,
    },
    /// Applies a patch as one update by `author` (client id `client`); answers the ids of
    /// the added items.
    Patch {
        patch: ItemsPatch,
        author: Author,
        reply: RpcReplyPort<Result<Vec<String>, PatchError>>,
    },
    /// Closes every connection and stops; the caller deletes what is stored.
    Close {
        reply: RpcReplyPort<()>,
    },
    /// What the room's replicas on other nodes did (in a cluster).
    Remote(Remote),
    /// A batch of updates came back from the store.
    Stored(Stored),
    /// Time to look for expired awareness and idleness: sent to every open room by their
    /// parent on one shared timer, so a room holds no timer task of its own.
    Tick,
}

/// A batch of updates back from the store, with the rest of the batch to send now.
pub struct Stored {
    batch: Batch,
    /// The frames that carry the batch's updates to the others.
    frames: Vec<Frame>,
    /// How many updates, and their bytes.
    count: usize,
    bytes: usize,
    /// The store's last sequence with them.
    result: Result<u64, CanvasStoreError>,
}

/// Why a patch was not applied; nothing of it was.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error(transparent)]
    Item(#[from] ItemError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("the update could not be stored")]
    Storage,
}

pub struct RoomArgs {
    pub name: RoomName,
    pub store: SharedCanvasStore,
    pub settings: RoomSettings,
}

struct Peer {
    writable: bool,
    outbox: mpsc::Sender<Outgoing>,
}

pub struct RoomActorState {
    myself: ActorRef<RoomMessage>,
    name: RoomName,
    store: SharedCanvasStore,
    settings: RoomSettings,
    room: RoomState,
    peers: HashMap<ConnectionId, Peer>,
    /// The last sequence in the store's journal that the document holds all of.
    last_sequence: u64,
    /// Whether other nodes hold replicas of the room: then `last_sequence` follows the
    /// store's feed (which holds every node's updates in order), not this room's appends.
    replicated: bool,
    /// The pseudo-connection standing for each other node's clients in the presence state.
    remote_nodes: HashMap<std::sync::Arc<str>, ConnectionId>,
    /// Updates and bytes journaled since the last snapshot.
    since_snapshot: (usize, usize),
    /// Since when the room has had no connection.
    empty_since: Option<Instant>,
    /// Passes the store's feed (in a cluster) to the room.
    feed: Option<tokio::task::JoinHandle<()>>,
    /// What waits for the store.
    pipeline: Pipeline,
    /// The room was deleted while a batch was being stored: answered once it is back.
    closing: Option<RpcReplyPort<()>>,
}

/// Other nodes' pseudo-connections are numbered from here up; this node's from 0 up.
const REMOTE_CONNECTIONS: ConnectionId = 1 << 63;

pub struct Room;

impl Actor for Room {
    type Msg = RoomMessage;
    type State = RoomActorState;
    type Arguments = RoomArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RoomArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let opened = args.store.open(&args.name).await?;
        let stored = opened.stored;
        let room = RoomState::load(
            args.settings.limits,
            stored.snapshot.as_deref(),
            stored.journal.iter().map(Vec::as_slice),
        )?;
        let journal_bytes = stored.journal.iter().map(Vec::len).sum();
        let replicated = opened.feed.is_some();
        let feed = opened.feed.map(|mut feed| {
            let room = myself.clone();
            tokio::spawn(async move {
                while let Some(remote) = feed.recv().await {
                    if room.cast(RoomMessage::Remote(remote)).is_err() {
                        break;
                    }
                }
            })
        });
        metrics::gauge!(metric_names::ROOMS_OPEN).increment(1.0);
        Ok(RoomActorState {
            myself,
            name: args.name,
            store: args.store,
            settings: args.settings,
            room,
            peers: HashMap::new(),
            last_sequence: stored.last_sequence,
            replicated,
            remote_nodes: HashMap::new(),
            since_snapshot: (stored.journal.len(), journal_bytes),
            empty_since: Some(Instant::now()),
            feed,
            pipeline: Pipeline::default(),
            closing: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: RoomMessage,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RoomMessage::Join {
                connection,
                writable,
                outbox,
                reply,
            } => {
                for frame in state.room.join(connection) {
                    let _ = outbox.try_send(Outgoing::Frame(frame));
                }
                state.peers.insert(connection, Peer { writable, outbox });
                metrics::gauge!(metric_names::CONNECTIONS).increment(1.0);
                state.empty_since = None;
                let _ = reply.send(());
            }
            RoomMessage::Frame {
                connection,
                data,
                reply,
            } => state.frame(connection, &data, reply),
            RoomMessage::Leave { connection } => state.leave(connection),
            RoomMessage::Describe { reply } => {
                let _ = reply.send((state.peers.len(), state.room.stored_bytes() as u64));
            }
            RoomMessage::Items { reply } => {
                let items = items_json(state.room.doc());
                state.deliver(None, Effects::default(), Answer::Items { reply, items });
            }
            RoomMessage::Patch {
                patch,
                author,
                reply,
            } => state.patch(&patch, author, reply),
            RoomMessage::Close { reply } => state.delete(reply),
            RoomMessage::Remote(remote) => state.remote(&myself, remote).await,
            RoomMessage::Stored(stored) => state.stored(stored).await,
            RoomMessage::Tick => state.tick(&myself).await,
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(feed) = state.feed.take() {
            feed.abort();
        }
        metrics::gauge!(metric_names::ROOMS_OPEN).decrement(1.0);
        metrics::gauge!(metric_names::CONNECTIONS).decrement(state.peers.len() as f64);
        Ok(())
    }
}

impl RoomActorState {
    /// Handles a frame: answers `false` at once when `connection` is not in the room (any
    /// more), and `true` once what the frame changed is stored and sent on.
    fn frame(&mut self, connection: ConnectionId, data: &[u8], reply: RpcReplyPort<bool>) {
        let Some(writable) = self.peers.get(&connection).map(|peer| peer.writable) else {
            let _ = reply.send(false);
            return;
        };
        match self.room.handle(connection, writable, data, Instant::now()) {
            Ok(effects) => self.deliver(Some(connection), effects, Answer::Frame(reply)),
            Err(error) => {
                tracing::debug!(room = %self.name, connection, %error, "a frame was refused");
                self.close(connection, CloseReason::from(&error));
                let _ = reply.send(true);
            }
        }
    }

    /// Applies a patch through the same path as a client's update.
    /// The assistant's presence (name, colour and cursor) follows its edits.
    fn patch(
        &mut self,
        patch: &ItemsPatch,
        author: Author,
        reply: RpcReplyPort<Result<Vec<String>, PatchError>>,
    ) {
        let (mut effects, added) = match self.patch_effects(patch, author) {
            Ok(applied) => applied,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        if let Author::Assistant { client } = author {
            let cursor = patch
                .add
                .iter()
                .chain(&patch.update)
                .find_map(|item| Some(serde_json::json!({"x": item.x?, "y": item.y?})));
            let presence = serde_json::json!({
                "user": {"name": "Assistant", "color": ASSISTANT_COLOR},
                "cursor": cursor,
            });
            effects.awareness.extend(self.room.set_presence(
                client,
                &presence.to_string(),
                Instant::now(),
            ));
        }
        self.deliver(None, effects, Answer::Patch { reply, added });
    }

    fn patch_effects(
        &mut self,
        patch: &ItemsPatch,
        author: Author,
    ) -> Result<(Effects, Vec<String>), PatchError> {
        let (update, added) = patch_update(self.room.doc(), author, patch)?;
        Ok((self.room.apply_local(update)?, added))
    }

    /// Holds the effects of what `from` sent (or the node did: `None`) until the updates
    /// among them and before them are stored, then sends them and answers.
    fn deliver(&mut self, from: Option<ConnectionId>, effects: Effects, answer: Answer) {
        self.pipeline.hold(from, effects, Some(answer));
        self.store_next();
    }

    /// Effects nobody waits for (awareness that changed on its own).
    fn announce(&mut self, effects: Effects) {
        self.pipeline.hold(None, effects, None);
        self.store_next();
    }

    /// Sends what needs no store, or starts storing the next batch (at most one at a
    /// time, so appends stay in order).
    fn store_next(&mut self) {
        match self.pipeline.next() {
            Next::Wait => {}
            Next::Release(batch) => self.release(batch, &[]),
            Next::Store(mut batch) => {
                let updates = batch.take_updates();
                let (store, name, room) =
                    (self.store.clone(), self.name.clone(), self.myself.clone());
                let (after, size) = (self.last_sequence, self.room.stored_bytes() as u64);
                tokio::spawn(async move {
                    let frames = forwarded_frames(&updates);
                    let count = updates.len();
                    let bytes = updates.iter().map(Vec::len).sum();
                    let result = store.append(&name, after, updates, size).await;
                    let _ = room.cast(RoomMessage::Stored(Stored {
                        batch,
                        frames,
                        count,
                        bytes,
                        result,
                    }));
                });
            }
        }
    }

    /// A batch came back from the store: sent on when it was stored. When it was not,
    /// the document in memory holds updates the store does not, so the room stops; clients
    /// reconnect, the room loads what was stored, and their sync sends the updates again.
    async fn stored(&mut self, stored: Stored) {
        self.pipeline.stored();
        if let Some(reply) = self.closing.take() {
            stored.batch.refuse();
            self.myself.stop(Some("deleted".into()));
            let _ = reply.send(());
            return;
        }
        match stored.result {
            Ok(last) => {
                metrics::counter!(metric_names::UPDATES).increment(stored.count as u64);
                metrics::counter!(metric_names::UPDATE_BYTES).increment(stored.bytes as u64);
                if !self.replicated {
                    self.last_sequence = last;
                }
                self.since_snapshot.0 += stored.count;
                self.since_snapshot.1 += stored.bytes;
                self.release(stored.batch, &stored.frames);
                self.compact_if_due().await;
                self.store_next();
            }
            Err(error) => {
                tracing::error!(room = %self.name, %error, "updates could not be stored; the room restarts");
                stored.batch.refuse();
                self.pipeline.discard();
                self.close_all(&CloseReason {
                    code: 1011,
                    reason: "the canvas could not store the update; reconnect".into(),
                });
                self.myself.stop(Some("storage failed".into()));
            }
        }
    }

    /// Sends a batch whose updates are stored: the replies, the updates (`frames`) to all
    /// but their sole sender, the awareness to all but its sender; then answers.
    fn release(&mut self, batch: Batch, frames: &[Frame]) {
        let except = batch.sole_sender();
        let Batch {
            replies,
            awareness,
            answers,
            ..
        } = batch;
        for (connection, frame) in replies {
            let Some(peer) = self.peers.get(&connection) else {
                continue;
            };
            if peer.outbox.try_send(Outgoing::Frame(frame)).is_err() {
                self.close(connection, too_slow());
            }
        }
        self.broadcast(except, frames);
        for (from, frame) in &awareness {
            self.broadcast(*from, std::slice::from_ref(frame));
            self.store.share_presence(&self.name, frame);
        }
        for answer in answers {
            answer.send();
        }
    }

    /// The room was deleted: every connection is closed, and the room stops once no batch
    /// is in the store (so nothing is stored after the caller deletes the room).
    fn delete(&mut self, reply: RpcReplyPort<()>) {
        self.close_all(&CloseReason {
            code: 1001,
            reason: "the room was deleted".into(),
        });
        self.pipeline.discard();
        if self.pipeline.is_storing() {
            self.closing = Some(reply);
        } else {
            self.myself.stop(Some("deleted".into()));
            let _ = reply.send(());
        }
    }

    fn share_presence(&self, frames: &[Frame]) {
        for frame in frames {
            self.store.share_presence(&self.name, frame);
        }
    }

    /// Sends `frames` to every connection but `except`; a connection that cannot take them
    /// is closed.
    fn broadcast(&mut self, except: Option<ConnectionId>, frames: &[Frame]) {
        if frames.is_empty() {
            return;
        }
        let mut slow = Vec::new();
        for (connection, peer) in &self.peers {
            if Some(*connection) == except {
                continue;
            }
            for frame in frames {
                if peer
                    .outbox
                    .try_send(Outgoing::Frame(frame.clone()))
                    .is_err()
                {
                    slow.push(*connection);
                    break;
                }
            }
        }
        for connection in slow {
            self.close(connection, too_slow());
        }
    }

    fn close(&mut self, connection: ConnectionId, reason: CloseReason) {
        tracing::debug!(room = %self.name, connection, code = reason.code, reason = %reason.reason, "closing a connection");
        if let Some(peer) = self.peers.get(&connection) {
            let _ = peer.outbox.try_send(Outgoing::Close(reason));
        }
        self.leave(connection);
    }

    fn close_all(&mut self, reason: &CloseReason) {
        for peer in self.peers.values() {
            let _ = peer.outbox.try_send(Outgoing::Close(reason.clone()));
        }
        metrics::gauge!(metric_names::CONNECTIONS).decrement(self.peers.len() as f64);
        self.peers.clear();
    }

    fn leave(&mut self, connection: ConnectionId) {
        if self.peers.remove(&connection).is_none() {
            return;
        }
        metrics::gauge!(metric_names::CONNECTIONS).decrement(1.0);
        let effects = self.room.leave(connection);
        self.announce(effects);
        if self.peers.is_empty() {
            self.empty_since = Some(Instant::now());
        }
    }

    async fn tick(&mut self, myself: &ActorRef<RoomMessage>) {
        // Awareness only (no document), and not shared: each node expires its own.
        let expired = self.room.expire_awareness(Instant::now());
        self.broadcast(None, &expired.awareness);
        let idle = self.pipeline.is_idle()
            && self
                .empty_since
                .is_some_and(|since| since.elapsed() >= self.settings.idle_passivate);
        if idle {
            if self.since_snapshot.0 > 0 {
                self.compact().await;
            }
            tracing::debug!(room = %self.name, "an idle room passivates");
            metrics::counter!(metric_names::PASSIVATIONS).increment(1);
            myself.stop(Some("idle".into()));
        }
    }

    async fn compact_if_due(&mut self) {
        let (updates, bytes) = self.since_snapshot;
        if updates >= self.settings.compact_after_updates
            || bytes >= self.settings.compact_after_bytes
        {
            self.compact().await;
        }
    }

    /// Folds the journal into one snapshot. A failure keeps the journal: nothing is lost.
    async fn compact(&mut self) {
        let snapshot = self.room.snapshot();
        let bytes = snapshot.len();
        match self
            .store
            .compact(&self.name, self.last_sequence, snapshot)
            .await
        {
            Ok(()) => {
                metrics::counter!(metric_names::COMPACTIONS).increment(1);
                self.room.compacted(bytes);
                self.since_snapshot = (0, 0);
            }
            Err(error) => {
                tracing::warn!(room = %self.name, %error, "the room's journal could not be compacted; it stays as it is");
            }
        }
    }
}

fn too_slow() -> CloseReason {
    CloseReason {
        code: 1013,
        reason: "the connection could not keep up with the room".into(),
    }
}

#[path = "room_batch.rs"]
mod batch;
#[path = "room_remote.rs"]
mod remote;

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;
