//! The [`Inbox`] of a single node, in the snapshot store's database: its writes share the
//! store's writer, so a message's put, the snapshot that answers it and its removal are
//! group-committed with every other write instead of paying for commits of their own.
//!
//! A kept message is `order (u64, big-endian) ‖ JSON`: JSON because a message's metadata
//! is free-form JSON, which bincode cannot carry; the order, given at put, is the order
//! the messages are answered in after a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redb::{ReadOnlyTable, ReadableTable};

use super::StoreError;
use super::local::{INBOX, LocalSnapshotStore, SnapshotWrite, commit_error, encode_key, io_error};
use crate::ids::SessionKey;
use crate::inbox::Inbox;
use crate::message::InboundMessage;

const ORDER_BYTES: usize = 8;

/// `platform NUL conversation NUL id`: a session's messages sort together.
fn inbox_key(key: &SessionKey, id: &str) -> String {
    let mut stored = encode_key(key);
    stored.push('\0');
    stored.push_str(id);
    stored
}

fn split(value: &[u8]) -> Option<(u64, &[u8])> {
    let (order, message) = value.split_first_chunk::<ORDER_BYTES>()?;
    Some((u64::from_be_bytes(*order), message))
}

/// What one pass over the inbox table finds.
struct Scan {
    /// The messages kept, in order.
    waiting: Vec<InboundMessage>,
    /// The order after the highest one kept (0 for an empty inbox).
    next_order: u64,
}

/// Reads the messages kept, in order; one that cannot be read is reported and skipped.
fn scan(inbox: &ReadOnlyTable<&str, &[u8]>) -> Result<Scan, StoreError> {
    let mut waiting = Vec::new();
    let mut next_order = 0;
    for entry in inbox.iter().map_err(io_error)? {
        let (key, value) = entry.map_err(io_error)?;
        let split = split(value.value());
        if let Some((order, _)) = split {
            next_order = next_order.max(order + 1);
        }
        let decoded = split.and_then(|(order, message)| {
            serde_json::from_slice::<InboundMessage>(message)
                .ok()
                .map(|message| (order, message))
        });
        match decoded {
            Some(found) => waiting.push(found),
            None => tracing::error!(
                key = %key.value().replace('\0', "/"),
                "an inbox entry is unreadable; it is not answered"
            ),
        }
    }
    waiting.sort_by_key(|(order, _)| *order);
    Ok(Scan {
        waiting: waiting.into_iter().map(|(_, message)| message).collect(),
        next_order,
    })
}

/// The inbox's order counter, and what it held when the store opened: read in one pass at
/// open, and handed to the first [`Inbox::waiting`] unless the inbox changed before it
/// (the node answers what was kept before a restart right after it starts).
pub(super) struct InboxState {
    next_order: AtomicU64,
    at_open: Mutex<Option<Vec<InboundMessage>>>,
}

impl InboxState {
    /// Reads the inbox table once.
    pub(super) fn read(inbox: &ReadOnlyTable<&str, &[u8]>) -> Result<Self, StoreError> {
        let Scan {
            waiting,
            next_order,
        } = scan(inbox)?;
        Ok(Self {
            next_order: AtomicU64::new(next_order),
            at_open: Mutex::new(Some(waiting)),
        })
    }

    fn at_open(&self) -> MutexGuard<'_, Option<Vec<InboundMessage>>> {
        self.at_open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The order of a message put now; what was read at open is stale from here.
    fn next_order(&self) -> u64 {
        self.at_open().take();
        self.next_order.fetch_add(1, Ordering::Relaxed)
    }

    /// A message was answered, or a session deleted with its messages: what was read at
    /// open is stale from here.
    pub(super) fn changed(&self) {
        self.at_open().take();
    }

    /// What the inbox held at open, if nothing changed since and nobody took it yet.
    fn take_at_open(&self) -> Option<Vec<InboundMessage>> {
        self.at_open().take()
    }
}

#[async_trait::async_trait]
impl Inbox for LocalSnapshotStore {
    fn put(&self, message: &InboundMessage) -> BoxFuture<'static, Result<(), StoreError>> {
        let order = self.inbox.next_order();
        let mut bytes = order.to_be_bytes().to_vec();
        serde_json::to_writer(&mut bytes, message)
            .expect("an inbound message holds only JSON-encodable fields");
        let write = SnapshotWrite::InboxPut {
            key: inbox_key(&message.session_key(), message.id()),
            bytes,
        };
        self.writer()
            .enqueue(write)
            .map(|committed| committed.map(drop).map_err(commit_error))
            .boxed()
    }

    fn answered(&self, key: &SessionKey, id: &str) {
        self.inbox.changed();
        self.writer().ride_along(SnapshotWrite::InboxRemove {
            key: inbox_key(key, id),
        });
    }

    async fn waiting(&self) -> Result<Vec<InboundMessage>, StoreError> {
        if let Some(waiting) = self.inbox.take_at_open() {
            return Ok(waiting);
        }
        self.read(|database| {
            let transaction = database.begin_read().map_err(io_error)?;
            let inbox = transaction.open_table(INBOX).map_err(io_error)?;
            scan(&inbox).map(|scan| scan.waiting)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::message::{ContentType, MessageParts};
    use crate::snapshot::{SessionSnapshot, SnapshotStore};

    fn message(conversation: &str, id: &str) -> InboundMessage {
        InboundMessage::new(MessageParts {
            id: id.into(),
            platform: "ws".into(),
            sender_id: conversation.into(),
            conversation_id: conversation.into(),
            content_type: ContentType::Text,
            payload: format!("text of {id}"),
            timestamp: 7,
            reply_to: None,
            attachments: Vec::new(),
            metadata: BTreeMap::from([("route".into(), serde_json::json!({"websocket": "a"}))]),
        })
        .expect("a valid message")
    }

    fn ids(messages: &[InboundMessage]) -> Vec<&str> {
        messages.iter().map(|message| message.id()).collect()
    }

    #[tokio::test]
    async fn keeps_messages_in_the_order_they_were_put_across_a_restart() {
        let directory = tempfile::tempdir().unwrap();
        {
            let store = LocalSnapshotStore::open(directory.path()).unwrap();
            let puts = [("zed", "m1"), ("amy", "m2"), ("zed", "m3")]
                .map(|(conversation, id)| store.put(&message(conversation, id)));
            for put in puts {
                put.await.unwrap();
            }
        }
        let store = LocalSnapshotStore::open(directory.path()).unwrap();
        let waiting = store.waiting().await.unwrap();
        assert_eq!(ids(&waiting), ["m1", "m2", "m3"]);
        assert_eq!(
            waiting[0],
            message("zed", "m1"),
            "kept whole, metadata included"
        );
        store.put(&message("amy", "m4")).await.unwrap();
        assert_eq!(
            ids(&store.waiting().await.unwrap()),
            ["m1", "m2", "m3", "m4"],
            "a put after the restart comes after what was kept"
        );
    }

    #[tokio::test]
    async fn an_answered_message_leaves_with_the_next_commit() {
        let directory = tempfile::tempdir().unwrap();
        let store = LocalSnapshotStore::open(directory.path()).unwrap();
        store.put(&message("zed", "m1")).await.unwrap();
        let zed = SessionKey::new_unchecked("ws", "zed");
        store.answered(&zed, "m1");
        assert_eq!(
            ids(&store.waiting().await.unwrap()),
            ["m1"],
            "no commit yet"
        );
        store.put(&message("zed", "m2")).await.unwrap();
        assert_eq!(ids(&store.waiting().await.unwrap()), ["m2"]);
    }

    /// Reopens a store whose inbox kept `m1` (zed) and `m2` (amy).
    async fn reopened_with_two_kept(directory: &tempfile::TempDir) -> LocalSnapshotStore {
        {
            let store = LocalSnapshotStore::open(directory.path()).unwrap();
            store.put(&message("zed", "m1")).await.unwrap();
            store.put(&message("amy", "m2")).await.unwrap();
        }
        LocalSnapshotStore::open(directory.path()).unwrap()
    }

    #[tokio::test]
    async fn what_the_inbox_held_at_open_is_answered_only_while_nothing_changed_since() {
        let directory = tempfile::tempdir().unwrap();
        let store = reopened_with_two_kept(&directory).await;
        assert_eq!(ids(&store.waiting().await.unwrap()), ["m1", "m2"]);
        assert_eq!(
            ids(&store.waiting().await.unwrap()),
            ["m1", "m2"],
            "read again"
        );

        let directory = tempfile::tempdir().unwrap();
        let store = reopened_with_two_kept(&directory).await;
        store.answered(&SessionKey::new_unchecked("ws", "zed"), "m1");
        store.put(&message("amy", "m3")).await.unwrap();
        assert_eq!(ids(&store.waiting().await.unwrap()), ["m2", "m3"]);

        let directory = tempfile::tempdir().unwrap();
        let store = reopened_with_two_kept(&directory).await;
        store
            .save(SessionSnapshot::empty(SessionKey::new_unchecked("ws", "amy")).encode())
            .await
            .unwrap();
        assert!(
            store
                .delete(&SessionKey::new_unchecked("ws", "amy"))
                .await
                .unwrap()
        );
        assert_eq!(
            ids(&store.waiting().await.unwrap()),
            ["m1"],
            "amy's went with her"
        );
    }

    #[tokio::test]
    async fn deleting_a_session_forgets_what_its_inbox_kept_and_only_that() {
        let directory = tempfile::tempdir().unwrap();
        let store = LocalSnapshotStore::open(directory.path()).unwrap();
        let zed = SessionKey::new_unchecked("ws", "zed");
        store
            .save(SessionSnapshot::empty(zed.clone()).encode())
            .await
            .unwrap();
        for (conversation, id) in [("zed", "m1"), ("zed2", "m2"), ("ze", "m3")] {
            store.put(&message(conversation, id)).await.unwrap();
        }
        assert!(store.delete(&zed).await.unwrap());
        assert_eq!(ids(&store.waiting().await.unwrap()), ["m2", "m3"]);
    }
}
