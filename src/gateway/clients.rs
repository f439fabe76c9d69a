//! The WebSocket connections of this node by sender id, so that something the assistant
//! says unasked (a reminder) reaches the person's open web chats.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Message;
use dashmap::DashMap;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;

/// One sender's open connections, each with its id.
type Connections = Vec<(u64, UnboundedSender<Message>)>;

/// Cheap to clone; shared by the access layer and the reminder delivery.
#[derive(Clone, Default)]
pub(crate) struct Clients {
    by_sender: Arc<DashMap<String, Connections>>,
    next_id: Arc<AtomicU64>,
    /// Signalled when a connection arrives (what waited for its person may go now).
    arrivals: Arc<Notify>,
}

impl Clients {
    /// Adds a connection; the id removes it again.
    pub(crate) fn register(&self, sender: &str, outgoing: UnboundedSender<Message>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.by_sender
            .entry(sender.to_owned())
            .or_default()
            .push((id, outgoing));
        self.arrivals.notify_one();
        id
    }

    /// Waits until a connection registers.
    pub(crate) async fn arrival(&self) {
        self.arrivals.notified().await;
    }

    pub(crate) fn unregister(&self, sender: &str, id: u64) {
        self.by_sender.remove_if_mut(sender, |_, connections| {
            connections.retain(|(other, _)| *other != id);
            connections.is_empty()
        });
    }

    /// Sends `text` to every open connection of `sender`; whether any took it.
    pub(crate) fn push(&self, sender: &str, text: &str) -> bool {
        let Some(connections) = self.by_sender.get(sender) else {
            return false;
        };
        connections
            .iter()
            .filter(|(_, outgoing)| outgoing.send(Message::Text(text.into())).is_ok())
            .count()
            > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_to_every_open_connection_of_a_sender() {
        let clients = Clients::default();
        let (first, mut first_queue) = tokio::sync::mpsc::unbounded_channel();
        let (second, mut second_queue) = tokio::sync::mpsc::unbounded_channel();
        let one = clients.register("ada", first);
        clients.register("ada", second);
        assert!(clients.push("ada", "hi"));
        assert!(first_queue.try_recv().is_ok() && second_queue.try_recv().is_ok());
        assert!(!clients.push("bob", "hi"));
        clients.unregister("ada", one);
        drop(second_queue);
        assert!(
            !clients.push("ada", "gone"),
            "a closed connection takes nothing"
        );
    }
}
