//! The collaborative canvas: rooms any unmodified Yjs client can join (the y-sync protocol
//! y-websocket speaks), kept by the assistant's node.
//!
//! - [`room_name`]: the validated name of a room;
//! - [`context`]: the board a chat message names, as its turn's context;
//! - [`items`]: the board's data model, read as JSON and patched from JSON;
//! - [`page`]: the canvas page, a whiteboard bound to a room, compiled in;
//! - [`protocol`]: one room's y-sync logic, sans-IO (frames in, effects out);
//! - [`room`]: the actor holding one open room;
//! - [`rooms`]: the actor supervising the rooms, and the [`Canvas`] handle that joins them;
//! - [`skill`]: the `canvas` skill, the assistant's tools as a peer in a room;
//! - [`store`]: each room's snapshot and journal;
//! - [`jetstream`]: the store of rooms in a cluster, shared live by the nodes' replicas;
//! - [`tokens`]: short-lived room-scoped client tokens.

pub mod context;
pub mod items;
pub mod jetstream;
pub mod metrics;
pub mod page;
pub mod protocol;
pub mod room;
pub mod room_name;
pub mod rooms;
pub mod skill;
pub mod store;
#[cfg(test)]
mod test_edits;
pub mod tokens;

pub use protocol::{ConnectionId, Effects, Frame, ProtocolError, RoomLimits, RoomState};
pub use room::{CloseReason, Outgoing, RoomSettings};
pub use room_name::{RoomName, RoomNameError};
pub use rooms::{Canvas, CanvasError, Joined, RoomSummary};
pub use store::{CanvasStore, LocalCanvasStore, SharedCanvasStore};
pub use tokens::{Access, RoomGrant, RoomTokens};
