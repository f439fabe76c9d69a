//! What a room does with its replicas' news from other nodes (in a cluster): their updates
//! are applied and sent to this node's clients (they are stored already), its own come back
//! as echoes that tell how far the document holds the stored journal, and their clients'
//! presence joins this room's as one pseudo-connection per node. A replica that opens asks
//! the others for their clients' presence, so its clients see everyone at once.

use std::sync::Arc;

use ractor::ActorRef;
use tokio::time::Instant;

use super::{CloseReason, REMOTE_CONNECTIONS, RoomActorState, RoomMessage};
use crate::protocol::ConnectionId;
use crate::store::Remote;

impl RoomActorState {
    pub(super) async fn remote(&mut self, myself: &ActorRef<RoomMessage>, remote: Remote) {
        match remote {
            Remote::Update {
                sequence,
                update,
                whole,
            } => {
                let bytes = update.len();
                match self.room.apply_remote(update, whole) {
                    Ok(frames) => self.broadcast(None, &frames),
                    Err(error) => {
                        // Stored by another node, so some client sent it; it cannot be
                        // applied here either way, and skipping it is all there is to do.
                        tracing::warn!(room = %self.name, sequence, %error, "another node's update cannot be applied");
                    }
                }
                self.last_sequence = self.last_sequence.max(sequence);
                if whole {
                    // Another replica compacted the journal: it need not be done here too.
                    self.since_snapshot = (0, 0);
                } else {
                    self.since_snapshot.0 += 1;
                    self.since_snapshot.1 += bytes;
                    self.compact_if_due().await;
                }
            }
            Remote::Echo { sequence } => {
                self.last_sequence = self.last_sequence.max(sequence);
            }
            Remote::Presence { node, frame } => self.remote_presence(node, &frame),
            Remote::PresenceWanted => {
                let own = self
                    .room
                    .presence_except(|connection| connection >= REMOTE_CONNECTIONS);
                self.share_presence(own.as_slice());
            }
            Remote::Deleted => {
                self.close_all(&CloseReason {
                    code: 1001,
                    reason: "the room was deleted".into(),
                });
                myself.stop(Some("deleted on another node".into()));
            }
            Remote::Lost => {
                tracing::warn!(room = %self.name, "the room lost the cluster; its clients reconnect and it loads again");
                self.close_all(&CloseReason {
                    code: 1011,
                    reason: "the canvas lost the cluster; reconnect".into(),
                });
                myself.stop(Some("cluster feed lost".into()));
            }
        }
    }

    /// Takes another node's awareness frame as its pseudo-connection's.
    fn remote_presence(&mut self, node: Arc<str>, frame: &[u8]) {
        let next = REMOTE_CONNECTIONS + self.remote_nodes.len() as ConnectionId;
        let connection = *self.remote_nodes.entry(node).or_insert(next);
        match self.room.handle(connection, false, frame, Instant::now()) {
            Ok(effects) => self.broadcast(None, &effects.awareness),
            Err(error) => {
                tracing::debug!(room = %self.name, %error, "another node's presence was refused");
            }
        }
    }
}
