//! The [`Inbox`] of a single node, in the snapshot store's database: its writes share the
//! store's writer, so a message's put, the snapshot that answers it and its removal are
//! group-committed with every other write instead of paying for commits of their own.
//!
//! A kept message is `order (u64, big-endian) ‖ JSON`: JSON because a message's metadata
//! is free-form JSON, which bincode cannot carry; the order, given at put, is the order
//! the messages are answered in after a restart.

use std::sync::atomic::Ordering;

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

/// The order after the highest one kept (0 for an empty inbox).
pub(super) fn next_order(inbox: &ReadOnlyTable<&str, &[u8]>) -> Result<u64, StoreError> {
    let mut next = 0;
    for entry in inbox.iter().map_err(io_error)? {
        let (_, value) = entry.map_err(io_error)?;
        if let Some((order, _)) = split(value.value()) {
            next = next.max(order + 1);
        }
    }
    Ok(next)
}

fn split(value: &[u8]) -> Option<(u64, &[u8])> {
    let (order, message) = value.split_first_chunk::<ORDER_BYTES>()?;
    Some((u64::from_be_bytes(*order), message))
}

/// The messages kept, in order; one that cannot be read is reported and skipped.
fn read_waiting(inbox: &ReadOnlyTable<&str, &[u8]>) -> Result<Vec<InboundMessage>, StoreError> {
    let mut waiting = Vec::new();
    for entry in inbox.iter().map_err(io_error)? {
        let (key, value) = entry.map_err(io_error)?;
        let decoded = split(value.value()).and_then(|(order, message)| {
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
    Ok(waiting.into_iter().map(|(_, message)| message).collect())
}

#[async_trait::async_trait]
impl Inbox for LocalSnapshotStore {
    fn put(&self, message: &InboundMessage) -> BoxFuture<'static, Result<(), StoreError>> {
        let order = self.next_in_inbox.fetch_add(1, Ordering::Relaxed);
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
        self.writer().ride_along(SnapshotWrite::InboxRemove {
            key: inbox_key(key, id),
        });
    }

    async fn waiting(&self) -> Result<Vec<InboundMessage>, StoreError> {
        self.read(|database| {
            let transaction = database.begin_read().map_err(io_error)?;
            let inbox = transaction.open_table(INBOX).map_err(io_error)?;
            read_waiting(&inbox)
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
