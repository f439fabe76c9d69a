//! `Rooms`: the actor that supervises the open rooms (one [`Room`] actor each) and opens
//! them on demand, and [`Canvas`], the cheap handle the access layer joins rooms through.
//!
//! `Rooms` is a child of the node supervisor ([`Canvas::child_spec`]). A room that fails is
//! forgotten, and its clients are disconnected; the next join loads it from the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::mpsc;
use troupe_actors::supervisor::ChildSpec;

use crate::items::{Author, ItemsPatch};
use crate::protocol::ConnectionId;
use crate::room::{Outgoing, PatchError, Room, RoomArgs, RoomMessage, RoomSettings};
use crate::room_name::RoomName;
use crate::store::{CanvasStoreError, SharedCanvasStore};

/// Why a room could not be joined or used.
#[derive(Debug, thiserror::Error)]
pub enum CanvasError {
    #[error("the canvas is not running")]
    NotRunning,
    #[error("the room could not be opened: {0}")]
    Open(#[source] ActorProcessingErr),
    #[error("the room closed")]
    RoomClosed,
    #[error(transparent)]
    Patch(#[from] PatchError),
    #[error(transparent)]
    Store(#[from] CanvasStoreError),
}

pub enum RoomsMessage {
    Open {
        name: RoomName,
        reply: RpcReplyPort<Result<ActorRef<RoomMessage>, ActorProcessingErr>>,
    },
    /// The rooms open on this node.
    ListOpen {
        reply: RpcReplyPort<Vec<(RoomName, ActorRef<RoomMessage>)>>,
    },
    /// Closes the room if it is open and deletes what is stored; answers whether anything
    /// was.
    Delete {
        name: RoomName,
        reply: RpcReplyPort<Result<bool, CanvasStoreError>>,
    },
    /// The shared timer: every open room gets a [`RoomMessage::Tick`].
    Tick,
}

/// How often each room looks for expired awareness and idleness.
const TICK: Duration = Duration::from_secs(5);

pub struct RoomsArgs {
    pub store: SharedCanvasStore,
    pub settings: RoomSettings,
}

pub struct RoomsState {
    store: SharedCanvasStore,
    settings: RoomSettings,
    open: HashMap<RoomName, ActorRef<RoomMessage>>,
    by_actor: HashMap<ActorId, RoomName>,
    ticker: tokio::task::JoinHandle<()>,
}

pub struct Rooms;

impl Actor for Rooms {
    type Msg = RoomsMessage;
    type State = RoomsState;
    type Arguments = RoomsArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RoomsArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RoomsState {
            store: args.store,
            settings: args.settings,
            open: HashMap::new(),
            by_actor: HashMap::new(),
            ticker: myself.send_interval(TICK, || RoomsMessage::Tick),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: RoomsMessage,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RoomsMessage::Open { name, reply } => {
                let _ = reply.send(state.open(&myself, name).await);
            }
            RoomsMessage::ListOpen { reply } => {
                let open = state
                    .open
                    .iter()
                    .map(|(name, room)| (name.clone(), room.clone()))
                    .collect();
                let _ = reply.send(open);
            }
            RoomsMessage::Delete { name, reply } => {
                if let Some(room) = state.open.remove(&name) {
                    state.by_actor.remove(&room.get_id());
                    let _ = room.call(|reply| RoomMessage::Close { reply }, None).await;
                }
                let _ = reply.send(state.store.delete(&name).await);
            }
            RoomsMessage::Tick => {
                for room in state.open.values() {
                    let _ = room.cast(RoomMessage::Tick);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(name) = state.forget(cell.get_id()) {
                    tracing::error!(room = %name, %error, "a room failed; it loads again on its next join");
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.forget(cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

impl RoomsState {
    async fn open(
        &mut self,
        myself: &ActorRef<RoomsMessage>,
        name: RoomName,
    ) -> Result<ActorRef<RoomMessage>, ActorProcessingErr> {
        if let Some(room) = self.open.get(&name) {
            return Ok(room.clone());
        }
        let args = RoomArgs {
            name: name.clone(),
            store: Arc::clone(&self.store),
            settings: self.settings,
        };
        let (room, _) = Actor::spawn_linked(None, Room, args, myself.get_cell()).await?;
        self.by_actor.insert(room.get_id(), name.clone());
        self.open.insert(name, room.clone());
        Ok(room)
    }

    fn forget(&mut self, actor: ActorId) -> Option<RoomName> {
        let name = self.by_actor.remove(&actor)?;
        self.open.remove(&name);
        Some(name)
    }
}

/// One room in the room list (`GET /api/v1/canvas`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RoomSummary {
    pub room: RoomName,
    /// Clients connected to this node.
    pub clients: usize,
    /// Bytes stored for the document, as counted against `canvas.max_document_bytes`.
    pub bytes: u64,
    /// When an update was last stored (ms since the Unix epoch); `None` for a room opened
    /// but never edited.
    pub updated_at_ms: Option<u64>,
}

/// Joins rooms. Cheap to clone.
#[derive(Clone)]
pub struct Canvas {
    store: SharedCanvasStore,
    settings: RoomSettings,
    /// The running `Rooms` actor, set (again) each time the supervisor starts it.
    rooms: Arc<RwLock<Option<ActorRef<RoomsMessage>>>>,
    next_connection: Arc<AtomicU64>,
    /// The Yjs client ids of this node's REST edits and of its assistant.
    api_client: u64,
    assistant_client: u64,
}

impl std::fmt::Debug for Canvas {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Canvas")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Canvas {
    /// A canvas over `store`; it runs once [`Canvas::child_spec`] is started.
    pub fn new(store: SharedCanvasStore, settings: RoomSettings) -> Self {
        Self {
            store,
            settings,
            rooms: Arc::default(),
            next_connection: Arc::new(AtomicU64::new(1)),
            api_client: new_client_id(),
            assistant_client: new_client_id(),
        }
    }

    pub const fn settings(&self) -> &RoomSettings {
        &self.settings
    }

    /// The node supervisor's child that runs the rooms.
    pub fn child_spec(&self) -> ChildSpec {
        let canvas = self.clone();
        ChildSpec {
            name: "canvas".into(),
            start: Arc::new(move |supervisor| {
                let canvas = canvas.clone();
                Box::pin(async move {
                    let args = RoomsArgs {
                        store: Arc::clone(&canvas.store),
                        settings: canvas.settings,
                    };
                    let (rooms, _) = Actor::spawn_linked(None, Rooms, args, supervisor).await?;
                    *canvas
                        .rooms
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rooms.clone());
                    Ok(rooms.get_cell())
                })
            }),
        }
    }

    /// Joins `room`: answers the connection, and the frames (and the close) the room sends it.
    pub async fn join(
        &self,
        room: RoomName,
        writable: bool,
    ) -> Result<(Joined, mpsc::Receiver<Outgoing>), CanvasError> {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        // A room that passivates between being found and being joined is opened again.
        for _ in 0..3 {
            let actor = self.open(&room).await?;
            let (outbox, frames) = mpsc::channel(self.settings.outbox_frames);
            let joined = actor
                .call(
                    |reply| RoomMessage::Join {
                        connection,
                        writable,
                        outbox,
                        reply,
                    },
                    None,
                )
                .await;
            if matches!(joined, Ok(ractor::rpc::CallResult::Success(()))) {
                return Ok((
                    Joined {
                        room: actor,
                        connection,
                    },
                    frames,
                ));
            }
        }
        Err(CanvasError::RoomClosed)
    }

    /// The board's items as JSON (the room is opened if need be).
    pub async fn items(&self, room: &RoomName) -> Result<serde_json::Value, CanvasError> {
        let actor = self.open(room).await?;
        match actor.call(|reply| RoomMessage::Items { reply }, None).await {
            Ok(ractor::rpc::CallResult::Success(items)) => Ok(items),
            _ => Err(CanvasError::RoomClosed),
        }
    }

    /// The REST author (`api`), with this node's client id for it.
    pub const fn api(&self) -> Author {
        Author::Api {
            client: self.api_client,
        }
    }

    /// The assistant, with this node's client id for it.
    pub const fn assistant(&self) -> Author {
        Author::Assistant {
            client: self.assistant_client,
        }
    }

    /// Applies `patch` to the board as one transaction by `author`; answers the ids of the
    /// added items.
    pub async fn patch(
        &self,
        room: &RoomName,
        patch: ItemsPatch,
        author: Author,
    ) -> Result<Vec<String>, CanvasError> {
        let actor = self.open(room).await?;
        match actor
            .call(
                |reply| RoomMessage::Patch {
                    patch,
                    author,
                    reply,
                },
                None,
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(done)) => Ok(done?),
            _ => Err(CanvasError::RoomClosed),
        }
    }

    /// Closes the room's connections and deletes it; answers whether anything was stored.
    pub async fn delete(&self, room: &RoomName) -> Result<bool, CanvasError> {
        let name = room.clone();
        match self
            .rooms()?
            .call(|reply| RoomsMessage::Delete { name, reply }, None)
            .await
        {
            Ok(ractor::rpc::CallResult::Success(deleted)) => Ok(deleted?),
            _ => Err(CanvasError::NotRunning),
        }
    }

    /// Every room, stored or open here, by name: its clients on this node, its stored
    /// bytes (the open room's own count where it is open) and its last stored update.
    pub async fn list(&self) -> Result<Vec<RoomSummary>, CanvasError> {
        let mut summaries: BTreeMap<RoomName, RoomSummary> = self
            .store
            .rooms()
            .await?
            .into_iter()
            .map(|record| {
                let summary = RoomSummary {
                    room: record.room.clone(),
                    clients: 0,
                    bytes: record.bytes,
                    updated_at_ms: Some(record.updated_at_ms),
                };
                (record.room, summary)
            })
            .collect();
        let Ok(ractor::rpc::CallResult::Success(open)) = self
            .rooms()?
            .call(|reply| RoomsMessage::ListOpen { reply }, None)
            .await
        else {
            return Err(CanvasError::NotRunning);
        };
        for (name, room) in open {
            // A room that closes meanwhile keeps what the store said of it.
            let Ok(ractor::rpc::CallResult::Success((clients, bytes))) = room
                .call(|reply| RoomMessage::Describe { reply }, None)
                .await
            else {
                continue;
            };
            let summary = summaries.entry(name.clone()).or_insert(RoomSummary {
                room: name,
                clients: 0,
                bytes: 0,
                updated_at_ms: None,
            });
            summary.clients = clients;
            summary.bytes = bytes;
        }
        Ok(summaries.into_values().collect())
    }

    fn rooms(&self) -> Result<ActorRef<RoomsMessage>, CanvasError> {
        self.rooms
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(CanvasError::NotRunning)
    }

    async fn open(&self, room: &RoomName) -> Result<ActorRef<RoomMessage>, CanvasError> {
        let rooms = self.rooms()?;
        let name = room.clone();
        match rooms
            .call(|reply| RoomsMessage::Open { name, reply }, None)
            .await
        {
            Ok(ractor::rpc::CallResult::Success(Ok(actor))) => Ok(actor),
            Ok(ractor::rpc::CallResult::Success(Err(error))) => Err(CanvasError::Open(error)),
            _ => Err(CanvasError::NotRunning),
        }
    }
}

/// A Yjs client id for this node's own edits: 53 bits (what Yjs clients can hold), never 0.
fn new_client_id() -> u64 {
    (rand::random::<u64>() & ((1 << 53) - 1)).max(1)
}

/// One connection in a room; leaves it when dropped.
pub struct Joined {
    room: ActorRef<RoomMessage>,
    connection: ConnectionId,
}

impl Joined {
    /// Hands one binary frame to the room; returns once the room handled it (applied,
    /// stored, sent on), so a connection never has more than one frame in the room's mailbox.
    /// An error means the room closed this connection (or stopped): nothing was applied.
    pub async fn send(&self, data: Vec<u8>) -> Result<(), CanvasError> {
        let connection = self.connection;
        match self
            .room
            .call(
                |reply| RoomMessage::Frame {
                    connection,
                    data,
                    reply,
                },
                None,
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(true)) => Ok(()),
            _ => Err(CanvasError::RoomClosed),
        }
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        let _ = self.room.cast(RoomMessage::Leave {
            connection: self.connection,
        });
    }
}
