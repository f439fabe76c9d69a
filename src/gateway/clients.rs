//! The WebSocket connections of this node by sender id, so that something the assistant
//! says unasked (a reminder, a workflow's message) reaches the person's open web chats.
//!
//! In a cluster the person's page may be open on another node: [`Clients::deliver`] asks
//! every node over NATS (`troupe.web.push.<sender as hex>`), and a node that has a
//! connection of that sender pushes the frame and answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use axum::extract::ws::Message;
use dashmap::DashMap;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

/// One sender's open connections, each with its id.
type Connections = Vec<(u64, UnboundedSender<Message>)>;

/// Cheap to clone; shared by the access layer and the reminder delivery.
#[derive(Clone)]
pub(crate) struct Clients {
    by_sender: Arc<DashMap<String, Connections>>,
    next_id: Arc<AtomicU64>,
    /// Counts the connections that arrived (what waited for its person may go now).
    arrivals: Arc<watch::Sender<u64>>,
    /// In a cluster: how other nodes' connections are reached.
    cluster: Arc<OnceLock<async_nats::Client>>,
}

impl Default for Clients {
    fn default() -> Self {
        Self {
            by_sender: Arc::default(),
            next_id: Arc::default(),
            arrivals: Arc::new(watch::channel(0).0),
            cluster: Arc::default(),
        }
    }
}

const PUSH_SUBJECTS: &str = "troupe.web.push";
/// How long a push waits for another node to say it reached a page.
const PUSH_WAIT: Duration = Duration::from_secs(1);

impl Clients {
    /// Adds a connection; the id removes it again.
    pub(crate) fn register(&self, sender: &str, outgoing: UnboundedSender<Message>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.by_sender
            .entry(sender.to_owned())
            .or_default()
            .push((id, outgoing));
        self.arrivals.send_modify(|arrived| *arrived += 1);
        id
    }

    /// Changes each time a connection registers from now on.
    pub(crate) fn arrivals(&self) -> watch::Receiver<u64> {
        self.arrivals.subscribe()
    }

    pub(crate) fn unregister(&self, sender: &str, id: u64) {
        self.by_sender.remove_if_mut(sender, |_, connections| {
            connections.retain(|(other, _)| *other != id);
            connections.is_empty()
        });
    }

    /// Sends `text` to `sender`'s open connections on any node; whether any took it.
    pub(crate) async fn deliver(&self, sender: &str, text: &str) -> bool {
        if self.push(sender, text) {
            return true;
        }
        let Some(client) = self.cluster.get() else {
            return false;
        };
        let subject = format!("{PUSH_SUBJECTS}.{}", hex::encode(sender));
        let asked = client.request(subject, text.to_owned().into());
        matches!(tokio::time::timeout(PUSH_WAIT, asked).await, Ok(Ok(_)))
    }

    /// Joins the cluster: other nodes' pushes reach this node's connections, until `stop`.
    pub(crate) fn join_cluster(&self, client: async_nats::Client, stop: CancellationToken) {
        if self.cluster.set(client.clone()).is_err() {
            return;
        }
        let clients = self.clone();
        tokio::spawn(async move {
            let mut asked = match client.subscribe(format!("{PUSH_SUBJECTS}.*")).await {
                Ok(subscription) => subscription,
                Err(error) => {
                    tracing::error!(%error, "web chats on this node cannot get other nodes' notifications");
                    return;
                }
            };
            loop {
                let request = tokio::select! {
                    () = stop.cancelled() => return,
                    request = asked.next() => request,
                };
                let Some(request) = request else { return };
                clients.answer(&client, request).await;
            }
        });
    }

    async fn answer(&self, client: &async_nats::Client, request: async_nats::Message) {
        let sender = request
            .subject
            .rsplit('.')
            .next()
            .and_then(|encoded| hex::decode(encoded).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let (Some(sender), Some(reply_to)) = (sender, request.reply) else {
            return;
        };
        let Ok(text) = std::str::from_utf8(&request.payload) else {
            return;
        };
        if self.push(&sender, text)
            && let Err(error) = client.publish(reply_to, bytes::Bytes::new()).await
        {
            tracing::debug!(%error, "could not tell another node its notification arrived");
        }
    }

    /// Sends `text` to every open connection of `sender` on this node; whether any took it.
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

    #[tokio::test]
    async fn every_waiter_sees_a_connection_arrive_even_one_that_was_busy() {
        let clients = Clients::default();
        let (mut reminders, mut workflow) = (clients.arrivals(), clients.arrivals());
        let (outgoing, _queue) = tokio::sync::mpsc::unbounded_channel();
        // Neither waits yet when the page arrives: both still see it.
        clients.register("ada", outgoing);
        reminders.changed().await.unwrap();
        workflow.changed().await.unwrap();
        assert!(!workflow.has_changed().unwrap(), "seen once");
    }
}
