//! `Room`: the actor that holds one open room's document. It applies each client frame
//! ([`RoomState`]), appends the updates to the store and only then sends anything on, so
//! no client sees an update a crash could lose. It folds the journal into a snapshot now and
//! then, drops awareness states nobody renews, and stops (passivates) once it has been empty
//! for `idle_passivate`: the next join loads it again.

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::items::{Author, ItemError, ItemsPatch, items_json, patch_update};
use crate::metrics as metric_names;
use crate::protocol::{ConnectionId, Effects, Frame, ProtocolError, RoomLimits, RoomState};
use crate::room_name::RoomName;
use crate::store::{Remote, SharedCanvasStore};

/// The assistant's colour in presence lists and cursors.
const ASSISTANT_COLOR: &str = "#7c3aed";
/// How often a room looks for expired awareness and idleness.
const TICK: Duration = Duration::from_secs(5);

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
    Tick,
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
    ticker: Option<tokio::task::JoinHandle<()>>,
    /// Passes the store's feed (in a cluster) to the room.
    feed: Option<tokio::task::JoinHandle<()>>,
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
        let ticker = myself.send_interval(TICK, || RoomMessage::Tick);
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
            ticker: Some(ticker),
            feed,
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
            } => {
                let known = state.frame(&myself, connection, &data).await;
                let _ = reply.send(known);
            }
            RoomMessage::Leave { connection } => state.leave(connection),
            RoomMessage::Describe { reply } => {
                let _ = reply.send((state.peers.len(), state.room.stored_bytes() as u64));
            }
            RoomMessage::Items { reply } => {
                let _ = reply.send(items_json(state.room.doc()));
            }
            RoomMessage::Patch {
                patch,
                author,
                reply,
            } => {
                let _ = reply.send(state.patch(&myself, &patch, author).await);
            }
            RoomMessage::Close { reply } => {
                state.close_all(&CloseReason {
                    code: 1001,
                    reason: "the room was deleted".into(),
                });
                myself.stop(Some("deleted".into()));
                let _ = reply.send(());
            }
            RoomMessage::Remote(remote) => state.remote(&myself, remote).await,
            RoomMessage::Tick => state.tick(&myself).await,
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for task in [state.ticker.take(), state.feed.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        metrics::gauge!(metric_names::ROOMS_OPEN).decrement(1.0);
        metrics::gauge!(metric_names::CONNECTIONS).decrement(state.peers.len() as f64);
        Ok(())
    }
}

impl RoomActorState {
    /// Handles a frame; `false` when `connection` is not in the room (any more).
    async fn frame(
        &mut self,
        myself: &ActorRef<RoomMessage>,
        connection: ConnectionId,
        data: &[u8],
    ) -> bool {
        let Some(writable) = self.peers.get(&connection).map(|peer| peer.writable) else {
            return false;
        };
        match self.room.handle(connection, writable, data, Instant::now()) {
            Ok(effects) => {
                self.deliver(myself, Some(connection), effects).await;
            }
            Err(error) => {
                tracing::debug!(room = %self.name, connection, %error, "a frame was refused");
                self.close(connection, CloseReason::from(&error));
            }
        }
        true
    }

    /// Applies a patch through the same path as a client's update.
    /// The assistant's presence (name, colour and cursor) follows its edits.
    async fn patch(
        &mut self,
        myself: &ActorRef<RoomMessage>,
        patch: &ItemsPatch,
        author: Author,
    ) -> Result<Vec<String>, PatchError> {
        let (update, added) = patch_update(self.room.doc(), author, patch)?;
        let mut effects = self.room.apply_local(update)?;
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
            let frames = self
                .room
                .set_presence(client, &presence.to_string(), Instant::now());
            effects.presence.extend(frames.iter().cloned());
            effects.broadcast.extend(frames);
        }
        if self.deliver(myself, None, effects).await {
            Ok(added)
        } else {
            Err(PatchError::Storage)
        }
    }

    /// Stores the effects' updates, then sends their frames (`from` gets the replies, the
    /// others the broadcast); `false` when the store failed and the room stops.
    async fn deliver(
        &mut self,
        myself: &ActorRef<RoomMessage>,
        from: Option<ConnectionId>,
        effects: Effects,
    ) -> bool {
        if !effects.journal.is_empty() {
            let bytes: usize = effects.journal.iter().map(Vec::len).sum();
            let count = effects.journal.len();
            match self
                .store
                .append(
                    &self.name,
                    self.last_sequence,
                    effects.journal,
                    self.room.stored_bytes() as u64,
                )
                .await
            {
                Ok(last) => {
                    metrics::counter!(metric_names::UPDATES).increment(count as u64);
                    metrics::counter!(metric_names::UPDATE_BYTES).increment(bytes as u64);
                    if !self.replicated {
                        self.last_sequence = last;
                    }
                    self.since_snapshot.0 += count;
                    self.since_snapshot.1 += bytes;
                }
                Err(error) => {
                    // The document in memory holds an update the store does not: drop it.
                    // Clients reconnect, the room loads what was stored, and their sync
                    // sends the update again.
                    tracing::error!(room = %self.name, %error, "an update could not be stored; the room restarts");
                    self.close_all(&CloseReason {
                        code: 1011,
                        reason: "the canvas could not store the update; reconnect".into(),
                    });
                    myself.stop(Some("storage failed".into()));
                    return false;
                }
            }
        }
        if let Some(from) = from
            && let Some(peer) = self.peers.get(&from)
        {
            for frame in effects.reply {
                if peer.outbox.try_send(Outgoing::Frame(frame)).is_err() {
                    self.close(from, too_slow());
                    break;
                }
            }
        }
        self.broadcast(from, &effects.broadcast);
        self.share_presence(&effects.presence);
        self.compact_if_due().await;
        true
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
        self.broadcast(None, &effects.broadcast);
        self.share_presence(&effects.presence);
        if self.peers.is_empty() {
            self.empty_since = Some(Instant::now());
        }
    }

    async fn tick(&mut self, myself: &ActorRef<RoomMessage>) {
        let expired = self.room.expire_awareness(Instant::now());
        self.broadcast(None, &expired.broadcast);
        let idle = self
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

#[path = "room_remote.rs"]
mod remote;

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;
