//! The y-sync protocol for one room, sans-IO: frames in, [`Effects`] out. The room actor
//! stores what [`Effects::journal`] holds before it sends any frame, so no client can see an
//! update that a crash could lose.
//!
//! The protocol is the one `y-websocket` speaks (y-protocols `sync` and `awareness`):
//! - the server greets with sync step 1 (its state vector) and the known awareness states;
//! - a client's sync step 1 is answered with step 2 (what the client lacks);
//! - a client's step 2 or update is applied, journaled, and forwarded to the others as an
//!   update;
//! - awareness updates are applied and forwarded; a connection's awareness states are
//!   removed when it leaves, and any state is removed after [`AWARENESS_TIMEOUT`] without an
//!   update (clients renew theirs every 15 s);
//! - an awareness query is answered with every state.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use yrs::encoding::read::Cursor;
use yrs::sync::protocol::MessageReader;
use yrs::sync::{Awareness, AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, ReadTxn, StateVector, Transact, Update};

/// A client's awareness state is dropped after this long without an update.
pub const AWARENESS_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection to a room, as the room knows it.
pub type ConnectionId = u64;

/// One binary WebSocket frame, shared by every connection it goes to.
pub type Frame = Arc<[u8]>;

/// What handling a frame asks of the caller, in this order: store `journal` durably, then
/// send `reply` to the sender, and the journal's updates (as [`updates_frame`]) and
/// `awareness` to every other connection.
#[derive(Debug, Default)]
pub struct Effects {
    /// Document updates (Yjs update v1) to append to the room's journal and then forward.
    pub journal: Vec<Vec<u8>>,
    pub reply: Vec<Frame>,
    /// Awareness frames for every other connection, and presence news for the room's
    /// replicas on other nodes (in a cluster).
    pub awareness: Vec<Frame>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.journal.is_empty() && self.reply.is_empty() && self.awareness.is_empty()
    }
}

/// The limits a room enforces on every frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomLimits {
    /// Largest document update in one message.
    pub max_update_bytes: usize,
    /// Largest the stored document may grow (its snapshot and journal together).
    pub max_document_bytes: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        Self {
            max_update_bytes: 8 * 1024 * 1024,
            max_document_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why a frame was refused. The room is unharmed: nothing of the frame was applied.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the message is not y-sync: {0}")]
    Malformed(#[from] yrs::encoding::read::Error),
    #[error("the update is {bytes} bytes; the most is {limit}")]
    UpdateTooLarge { bytes: usize, limit: usize },
    #[error("the document would exceed {limit} bytes")]
    DocumentTooLarge { limit: usize },
    #[error("the update cannot be applied: {0}")]
    BadUpdate(#[from] yrs::error::UpdateError),
    #[error("the awareness update cannot be applied: {0}")]
    Awareness(#[from] yrs::sync::awareness::Error),
    #[error("this connection may only read the room")]
    ReadOnly,
    #[error("unsupported message type {0}")]
    Unsupported(u8),
}

impl ProtocolError {
    /// The WebSocket close code (RFC 6455 §7.4.1) a connection is closed with.
    pub const fn close_code(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::BadUpdate(_) | Self::Awareness(_) => 1007,
            Self::UpdateTooLarge { .. } | Self::DocumentTooLarge { .. } => 1009,
            Self::ReadOnly => 1008,
            Self::Unsupported(_) => 1003,
        }
    }
}

/// One room's document, awareness and connections.
pub struct RoomState {
    awareness: Awareness,
    limits: RoomLimits,
    /// The awareness client ids each connection speaks for.
    controlled: HashMap<ConnectionId, HashSet<ClientID>>,
    /// When each client's awareness state was last renewed.
    renewed: HashMap<ClientID, Instant>,
    /// Bytes stored for the document: its snapshot and journal.
    stored_bytes: usize,
}

impl std::fmt::Debug for RoomState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RoomState")
            .field("connections", &self.controlled.len())
            .field("stored_bytes", &self.stored_bytes)
            .finish_non_exhaustive()
    }
}

impl RoomState {
    /// A room loaded from its stored snapshot and the journal after it, in order.
    pub fn load<'a>(
        limits: RoomLimits,
        snapshot: Option<&'a [u8]>,
        journal: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self, ProtocolError> {
        let doc = Doc::new();
        let mut stored_bytes = 0;
        {
            let mut transaction = doc.transact_mut();
            for update in snapshot.into_iter().chain(journal) {
                stored_bytes += update.len();
                transaction.apply_update(Update::decode_v1(update)?)?;
            }
        }
        Ok(Self {
            awareness: Awareness::new(doc),
            limits,
            controlled: HashMap::new(),
            renewed: HashMap::new(),
            stored_bytes,
        })
    }

    pub fn doc(&self) -> &Doc {
        self.awareness.doc()
    }

    /// Bytes stored for the document (its snapshot and journal).
    pub const fn stored_bytes(&self) -> usize {
        self.stored_bytes
    }

    /// The whole document as one update, for a snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        self.doc()
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// A snapshot of `snapshot_bytes` replaced the stored journal.
    pub fn compacted(&mut self, snapshot_bytes: usize) {
        self.stored_bytes = snapshot_bytes;
    }

    /// Whether anyone is connected.
    pub fn is_empty(&self) -> bool {
        self.controlled.is_empty()
    }

    /// Connections in the room.
    pub fn connections(&self) -> usize {
        self.controlled.len()
    }

    /// A new connection: what the server says first (sync step 1, then the awareness states).
    pub fn join(&mut self, connection: ConnectionId) -> Vec<Frame> {
        self.controlled.entry(connection).or_default();
        let state_vector = self.doc().transact().state_vector();
        let mut greeting = vec![frame(&Message::Sync(SyncMessage::SyncStep1(state_vector)))];
        if let Ok(states) = self.awareness.update()
            && !states.clients.is_empty()
        {
            greeting.push(frame(&Message::Awareness(states)));
        }
        greeting
    }

    /// Handles one frame from `connection`. On error nothing of the frame was applied.
    pub fn handle(
        &mut self,
        connection: ConnectionId,
        writable: bool,
        data: &[u8],
        now: Instant,
    ) -> Result<Effects, ProtocolError> {
        let messages = parse(data)?;
        let mut effects = Effects::default();
        for message in messages {
            match message {
                Message::Sync(SyncMessage::SyncStep1(state_vector)) => {
                    let missing = self
                        .doc()
                        .transact()
                        .encode_state_as_update_v1(&state_vector);
                    effects
                        .reply
                        .push(frame(&Message::Sync(SyncMessage::SyncStep2(missing))));
                }
                Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                    self.apply(writable, update, &mut effects)?;
                }
                Message::Awareness(update) => {
                    self.apply_awareness(connection, update, now, &mut effects)?;
                }
                Message::AwarenessQuery => {
                    effects
                        .reply
                        .push(frame(&Message::Awareness(self.awareness.update()?)));
                }
                // A client may say it is denied; the server decides access itself.
                Message::Auth(_) => {}
                Message::Custom(tag, _) => return Err(ProtocolError::Unsupported(tag)),
            }
        }
        Ok(effects)
    }

    /// An update the node itself made (a REST patch, the assistant's edit): applied,
    /// journaled and sent to every connection, like a client's.
    pub fn apply_local(&mut self, update: Vec<u8>) -> Result<Effects, ProtocolError> {
        let mut effects = Effects::default();
        self.apply(true, update, &mut effects)?;
        Ok(effects)
    }

    /// Applies an update another node has already stored (a replica's news, in a cluster),
    /// whatever the limits: the frames to send every connection. Of a `whole` update (a
    /// snapshot) only what the document lacked is sent on, often nothing.
    pub fn apply_remote(
        &mut self,
        update: Vec<u8>,
        whole: bool,
    ) -> Result<Vec<Frame>, ProtocolError> {
        let decoded = Update::decode_v1(&update)?;
        let before = whole.then(|| self.doc().transact().state_vector());
        self.doc().transact_mut().apply_update(decoded)?;
        let news = match before {
            None => {
                self.stored_bytes += update.len();
                update
            }
            Some(before) => {
                self.stored_bytes = self.stored_bytes.max(update.len());
                let missing = self.doc().transact().encode_state_as_update_v1(&before);
                if Update::decode_v1(&missing).is_ok_and(|missing| missing.is_empty()) {
                    return Ok(Vec::new());
                }
                missing
            }
        };
        Ok(vec![frame(&Message::Sync(SyncMessage::Update(news)))])
    }

    /// A document update from a client: applied, journaled, forwarded.
    fn apply(
        &mut self,
        writable: bool,
        bytes: Vec<u8>,
        effects: &mut Effects,
    ) -> Result<(), ProtocolError> {
        if bytes.len() > self.limits.max_update_bytes {
            return Err(ProtocolError::UpdateTooLarge {
                bytes: bytes.len(),
                limit: self.limits.max_update_bytes,
            });
        }
        let update = Update::decode_v1(&bytes)?;
        if update.is_empty() {
            // A client's answer to sync step 1 when it has nothing new.
            return Ok(());
        }
        if !writable {
            return Err(ProtocolError::ReadOnly);
        }
        if self.stored_bytes + bytes.len() > self.limits.max_document_bytes {
            return Err(ProtocolError::DocumentTooLarge {
                limit: self.limits.max_document_bytes,
            });
        }
        self.doc().transact_mut().apply_update(update)?;
        self.stored_bytes += bytes.len();
        effects.journal.push(bytes);
        Ok(())
    }

    fn apply_awareness(
        &mut self,
        connection: ConnectionId,
        update: AwarenessUpdate,
        now: Instant,
        effects: &mut Effects,
    ) -> Result<(), ProtocolError> {
        let forwarded = frame(&Message::Awareness(update.clone()));
        let clients: Vec<(ClientID, bool)> = update
            .clients
            .iter()
            .map(|(client, entry)| (*client, &*entry.json != "null"))
            .collect();
        self.awareness.apply_update(update)?;
        let controlled = self.controlled.entry(connection).or_default();
        for (client, present) in clients {
            if present {
                controlled.insert(client);
                self.renewed.insert(client, now);
            } else {
                controlled.remove(&client);
                self.renewed.remove(&client);
            }
        }
        effects.awareness.push(forwarded);
        Ok(())
    }

    /// The awareness states of every client but those the connections `skip` picks speak
    /// for, as one frame; `None` when there are none.
    pub fn presence_except(&self, skip: impl Fn(ConnectionId) -> bool) -> Option<Frame> {
        let skipped: HashSet<ClientID> = self
            .controlled
            .iter()
            .filter(|(connection, _)| skip(**connection))
            .flat_map(|(_, clients)| clients.iter().copied())
            .collect();
        let clients: Vec<ClientID> = self
            .renewed
            .keys()
            .filter(|client| !skipped.contains(client))
            .copied()
            .collect();
        if clients.is_empty() {
            return None;
        }
        let update = self.awareness.update_with_clients(clients).ok()?;
        Some(frame(&Message::Awareness(update)))
    }

    /// Sets the awareness state of a participant the node speaks for (the assistant), with
    /// its own client id; answers the frames that tell every connection. Like any state, it
    /// is removed after [`AWARENESS_TIMEOUT`] without a renewal.
    pub fn set_presence(&mut self, client: u64, json: &str, now: Instant) -> Vec<Frame> {
        let client = ClientID::new(client);
        let clock = self
            .awareness
            .meta(client)
            .map_or(1, |(clock, _)| clock + 1);
        let mut clients = HashMap::new();
        clients.insert(
            client,
            yrs::sync::awareness::AwarenessUpdateEntry {
                clock,
                json: json.into(),
            },
        );
        let update = AwarenessUpdate { clients };
        let frame = frame(&Message::Awareness(update.clone()));
        if self.awareness.apply_update(update).is_err() {
            return Vec::new();
        }
        self.renewed.insert(client, now);
        vec![frame]
    }

    /// `connection` left: its awareness states are removed, and the others are told.
    pub fn leave(&mut self, connection: ConnectionId) -> Effects {
        let clients: Vec<ClientID> = self
            .controlled
            .remove(&connection)
            .map(|clients| clients.into_iter().collect())
            .unwrap_or_default();
        self.remove_states(clients)
    }

    /// Removes the awareness states not renewed within [`AWARENESS_TIMEOUT`] before `now`.
    pub fn expire_awareness(&mut self, now: Instant) -> Effects {
        let expired: Vec<ClientID> = self
            .renewed
            .iter()
            .filter(|(_, renewed)| now.duration_since(**renewed) >= AWARENESS_TIMEOUT)
            .map(|(client, _)| *client)
            .collect();
        for clients in self.controlled.values_mut() {
            for client in &expired {
                clients.remove(client);
            }
        }
        self.remove_states(expired)
    }

    fn remove_states(&mut self, clients: Vec<ClientID>) -> Effects {
        let mut effects = Effects::default();
        if clients.is_empty() {
            return effects;
        }
        for client in &clients {
            self.renewed.remove(client);
            self.awareness.remove_state(*client);
        }
        if let Ok(removed) = self.awareness.update_with_clients(clients) {
            effects.awareness.push(frame(&Message::Awareness(removed)));
        }
        effects
    }
}

/// Every message in a frame, or the first decoding error.
fn parse(data: &[u8]) -> Result<Vec<Message>, ProtocolError> {
    let mut decoder = DecoderV1::new(Cursor::new(data));
    let messages = MessageReader::new(&mut decoder).collect::<Result<Vec<_>, _>>()?;
    if messages.is_empty() {
        return Err(ProtocolError::Malformed(
            yrs::encoding::read::Error::EndOfBuffer(1),
        ));
    }
    Ok(messages)
}

/// One update frame that carries every one of `updates` (already applied to a room, so
/// well-formed): merged into one update when there are several, so that a busy room sends
/// each connection one frame per batch, not one per update.
pub fn updates_frame(updates: &[Vec<u8>]) -> Result<Frame, ProtocolError> {
    let update = match updates {
        [one] => one.clone(),
        several => yrs::merge_updates_v1(several)?,
    };
    Ok(frame(&Message::Sync(SyncMessage::Update(update))))
}

/// One message, encoded as a frame.
pub fn frame(message: &Message) -> Frame {
    message.encode_v1().into()
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
