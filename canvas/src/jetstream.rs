//! Rooms in a cluster: every node with clients in a room holds a replica of it (its own
//! `Room` actor), and the replicas meet in one JetStream stream.
//!
//! - Each room's updates are messages on its own subject of the `TROUPE_CANVAS` stream
//!   (`troupe.canvas.u.<room as hex>`, file storage, the cluster's replica count). A node
//!   appends a client's update and waits for the stream's acknowledgement before any client
//!   sees it, so what a client has seen is stored in the cluster, whichever node dies.
//! - A replica reads its room's subject from the start to load it, then keeps following it
//!   (an ordered consumer): other nodes' updates arrive in stored order and are applied and
//!   sent to its clients; its own come back as echoes. Yjs updates commute, so replicas
//!   that apply the same updates in different orders hold the same document.
//! - Compaction publishes a snapshot (the whole document, marked `Troupe-Kind: snapshot`) on
//!   the same subject and then purges only what the snapshot covers: the messages up to the
//!   sequence its replica had applied. A replica reading or following the subject at any
//!   moment therefore still meets either every update or a snapshot holding the ones purged,
//!   which is why the snapshot lives in the stream and not in a KV entry next to it.
//! - Presence (awareness) is not stored: replicas relay it on plain NATS subjects
//!   (`troupe.canvas.p.<room as hex>`), and a node that dies stops renewing its clients'
//!   entries, which expire after 30 s. A replica that opens says `hello` there and the
//!   others answer with their clients' presence. A deleted room is announced there too.
//!
//! NATS carries at most `max_payload` bytes a message (1 MiB unless the server says
//! otherwise): a larger update is refused, and a larger document keeps its journal instead
//! of being compacted (see docs/canvas.md).

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_nats::jetstream::{self, Context};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use crate::protocol::Frame;
use crate::room_name::RoomName;
use crate::store::{CanvasStore, CanvasStoreError, OpenedRoom, Remote, RoomRecord, StoredRoom};

/// The stream holding every room's updates and snapshots.
pub const STREAM: &str = "TROUPE_CANVAS";
const UPDATES: &str = "troupe.canvas.u";
const PRESENCE: &str = "troupe.canvas.p";
/// The node that published a message.
const NODE_HEADER: &str = "Troupe-Node";
/// `snapshot` on a snapshot; on a presence subject, `hello` from a replica that opened and
/// `deleted` when the room was deleted.
const KIND_HEADER: &str = "Troupe-Kind";
/// NATS's `max_payload` where the server has not announced one yet.
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// The room's stored bytes with the message, as the room counts them (for the room list).
const SIZE_HEADER: &str = "Troupe-Size";
/// Rooms whose last message is read at once for the room list.
const LIST_CONCURRENCY: usize = 16;
/// Room for a message's headers within NATS's `max_payload`.
const HEADER_ROOM: usize = 1024;
/// Remote events buffered for one room before the feed waits for the room.
const FEED_BUFFER: usize = 256;
/// Presence frames buffered for publishing before new ones are dropped.
const PRESENCE_BUFFER: usize = 4096;
/// The longest a room's load waits for the stream.
const LOAD_LIMIT: Duration = Duration::from_secs(30);

/// How the stream is kept; from `[cluster]`.
#[derive(Clone, Copy, Debug)]
pub struct StreamSettings {
    pub replicas: usize,
    pub storage: stream::StorageType,
}

/// Rooms stored in the cluster's JetStream and shared live between nodes. Cheap to clone.
#[derive(Clone, Debug)]
pub struct JetStreamCanvasStore {
    client: async_nats::Client,
    jetstream: Context,
    stream: stream::Stream,
    node: Arc<str>,
    max_message_bytes: usize,
    presence: mpsc::Sender<(String, HeaderMap, Frame)>,
}

impl JetStreamCanvasStore {
    /// Prepares the stream (created if missing) for node `node`.
    pub async fn open(
        client: async_nats::Client,
        node: &str,
        settings: StreamSettings,
    ) -> Result<Self, CanvasStoreError> {
        let jetstream = jetstream::new(client.clone());
        let stream = jetstream
            .get_or_create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec![format!("{UPDATES}.*")],
                storage: settings.storage,
                num_replicas: settings.replicas,
                ..Default::default()
            })
            .await
            .map_err(|error| CanvasStoreError::cluster("prepare the canvas stream", error))?;
        let max_payload = match client.server_info().max_payload {
            0 => DEFAULT_MAX_PAYLOAD,
            announced => announced,
        };
        let max_message_bytes = max_payload.saturating_sub(HEADER_ROOM);
        let (presence, outgoing) = mpsc::channel(PRESENCE_BUFFER);
        tokio::spawn(publish_presence(client.clone(), outgoing));
        Ok(Self {
            client,
            jetstream,
            stream,
            node: node.into(),
            max_message_bytes,
            presence,
        })
    }

    /// The largest update the cluster carries in one message.
    pub const fn max_update_bytes(&self) -> usize {
        self.max_message_bytes
    }

    fn headers(&self, kind: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(NODE_HEADER, &*self.node);
        if let Some(kind) = kind {
            headers.insert(KIND_HEADER, kind);
        }
        headers
    }

    /// Headers of a stored message: who sent it, its kind, and the room's size with it.
    fn stored_headers(&self, kind: Option<&str>, size: u64) -> HeaderMap {
        let mut headers = self.headers(kind);
        headers.insert(SIZE_HEADER, size.to_string().as_str());
        headers
    }

    fn fits(&self, bytes: usize) -> Result<(), CanvasStoreError> {
        if bytes > self.max_message_bytes {
            return Err(CanvasStoreError::TooLarge {
                bytes,
                limit: self.max_message_bytes,
            });
        }
        Ok(())
    }

    /// Publishes `payload` on the room's subject and waits until the stream stored it.
    async fn publish(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Vec<u8>,
    ) -> Result<jetstream::context::PublishAckFuture, CanvasStoreError> {
        self.fits(payload.len())?;
        self.jetstream
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|error| CanvasStoreError::cluster("store a canvas update", error))
    }

    /// Tells the room's other replicas `kind` (`hello`, `deleted`) on its presence subject.
    async fn announce(&self, room: &RoomName, kind: &str) -> Result<(), async_nats::PublishError> {
        self.client
            .publish_with_headers(
                presence_subject(room),
                self.headers(Some(kind)),
                bytes::Bytes::new(),
            )
            .await
    }

    /// The last message on `subject`, if it has any.
    async fn last_message(
        &self,
        subject: &str,
    ) -> Result<Option<jetstream::message::StreamMessage>, CanvasStoreError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some(message)),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(CanvasStoreError::cluster("read a canvas room", error)),
        }
    }

    /// The room of `subject` as its last message tells it; `None` for a subject that names
    /// no room, or whose messages were purged meanwhile.
    async fn room_record(&self, subject: String) -> Result<Option<RoomRecord>, CanvasStoreError> {
        let Some(room) = subject
            .strip_prefix(UPDATES)
            .and_then(|hex| hex.strip_prefix('.'))
            .and_then(|hex| hex::decode(hex).ok())
            .and_then(|name| String::from_utf8(name).ok())
            .and_then(|name| RoomName::parse(&name).ok())
        else {
            return Ok(None);
        };
        let Some(message) = self.last_message(&subject).await? else {
            return Ok(None);
        };
        let bytes = header(Some(&message.headers), SIZE_HEADER)
            .and_then(|size| size.parse().ok())
            .unwrap_or(message.payload.len() as u64);
        let updated_at_ms =
            u64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        Ok(Some(RoomRecord {
            room,
            bytes,
            updated_at_ms,
        }))
    }
}

fn updates_subject(room: &RoomName) -> String {
    // Room names may hold `.`, a subject's separator: hex keeps each room one token.
    format!("{UPDATES}.{}", hex::encode(room.as_str()))
}

fn presence_subject(room: &RoomName) -> String {
    format!("{PRESENCE}.{}", hex::encode(room.as_str()))
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(async_nats::HeaderValue::as_str)
}

#[async_trait::async_trait]
impl CanvasStore for JetStreamCanvasStore {
    async fn load(&self, room: &RoomName) -> Result<StoredRoom, CanvasStoreError> {
        Ok(self.open(room).await?.stored)
    }

    async fn open(&self, room: &RoomName) -> Result<OpenedRoom, CanvasStoreError> {
        // Presence first, so that nothing said while the room loads is missed.
        let presence = self
            .client
            .subscribe(presence_subject(room))
            .await
            .map_err(|error| CanvasStoreError::cluster("follow a room's presence", error))?;
        // Then the other replicas are asked for their clients' presence.
        self.announce(room, "hello")
            .await
            .map_err(|error| CanvasStoreError::cluster("ask for a room's presence", error))?;
        let subject = updates_subject(room);
        let last = self
            .last_message(&subject)
            .await?
            .map(|message| message.sequence);
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|error| CanvasStoreError::cluster("follow a canvas room", error))?;
        let mut updates = consumer
            .messages()
            .await
            .map_err(|error| CanvasStoreError::cluster("follow a canvas room", error))?;
        let mut stored = StoredRoom::default();
        if let Some(last) = last {
            tokio::time::timeout(LOAD_LIMIT, read_until(&mut updates, last, &mut stored))
                .await
                .map_err(|elapsed| {
                    CanvasStoreError::cluster("load a canvas room in time", elapsed)
                })??;
        }
        let (events, feed) = mpsc::channel(FEED_BUFFER);
        tokio::spawn(follow(Arc::clone(&self.node), updates, presence, events));
        Ok(OpenedRoom {
            stored,
            feed: Some(feed),
        })
    }

    async fn append(
        &self,
        room: &RoomName,
        _after: u64,
        updates: Vec<Vec<u8>>,
        size: u64,
    ) -> Result<u64, CanvasStoreError> {
        let subject = updates_subject(room);
        let mut acks = Vec::with_capacity(updates.len());
        for update in updates {
            let headers = self.stored_headers(None, size);
            acks.push(self.publish(subject.clone(), headers, update).await?);
        }
        let mut last = 0;
        for ack in acks {
            let ack = ack
                .await
                .map_err(|error| CanvasStoreError::cluster("store a canvas update", error))?;
            last = ack.sequence;
        }
        Ok(last)
    }

    async fn compact(
        &self,
        room: &RoomName,
        through: u64,
        snapshot: Vec<u8>,
    ) -> Result<(), CanvasStoreError> {
        let subject = updates_subject(room);
        let headers = self.stored_headers(Some("snapshot"), snapshot.len() as u64);
        self.publish(subject.clone(), headers, snapshot)
            .await?
            .await
            .map_err(|error| CanvasStoreError::cluster("store a canvas snapshot", error))?;
        // Only what the snapshot covers goes: later updates may not be in it.
        self.stream
            .purge()
            .filter(subject)
            .sequence(through.saturating_add(1))
            .await
            .map_err(|error| CanvasStoreError::cluster("fold a canvas journal", error))?;
        Ok(())
    }

    async fn delete(&self, room: &RoomName) -> Result<bool, CanvasStoreError> {
        let purged = self
            .stream
            .purge()
            .filter(updates_subject(room))
            .await
            .map_err(|error| CanvasStoreError::cluster("delete a canvas room", error))?;
        self.announce(room, "deleted")
            .await
            .map_err(|error| CanvasStoreError::cluster("announce a deleted room", error))?;
        Ok(purged.purged > 0)
    }

    async fn rooms(&self) -> Result<Vec<RoomRecord>, CanvasStoreError> {
        let subjects: Vec<(String, usize)> = self
            .stream
            .info_with_subjects(format!("{UPDATES}.*"))
            .await
            .map_err(|error| CanvasStoreError::cluster("list the canvas rooms", error))?
            .try_collect()
            .await
            .map_err(|error| CanvasStoreError::cluster("list the canvas rooms", error))?;
        let records = futures_util::stream::iter(subjects)
            .map(|(subject, _)| self.room_record(subject))
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        let mut records: Vec<RoomRecord> = records.into_iter().flatten().collect();
        records.sort_by(|left, right| left.room.cmp(&right.room));
        Ok(records)
    }

    fn share_presence(&self, room: &RoomName, frame: &Frame) {
        let message = (
            presence_subject(room),
            self.headers(None),
            Arc::clone(frame),
        );
        if self.presence.try_send(message).is_err() {
            tracing::debug!(room = %room, "presence dropped: the cluster is behind");
        }
    }
}

/// Reads the room's messages into `stored` until the one at `last`.
async fn read_until(
    updates: &mut pull::Ordered,
    last: u64,
    stored: &mut StoredRoom,
) -> Result<(), CanvasStoreError> {
    while let Some(message) = updates.next().await {
        let message =
            message.map_err(|error| CanvasStoreError::cluster("load a canvas room", error))?;
        let sequence = message
            .info()
            .map_err(|error| CanvasStoreError::cluster("load a canvas room", error))?
            .stream_sequence;
        stored.journal.push(message.payload.to_vec());
        stored.last_sequence = sequence;
        if sequence >= last {
            return Ok(());
        }
    }
    Err(CanvasStoreError::cluster(
        "load a canvas room",
        "the stream ended",
    ))
}

/// Passes other nodes' updates and presence to the room until it closes its end.
async fn follow(
    node: Arc<str>,
    mut updates: pull::Ordered,
    mut presence: async_nats::Subscriber,
    events: mpsc::Sender<Remote>,
) {
    loop {
        let event = tokio::select! {
            () = events.closed() => break,
            message = updates.next() => match message {
                Some(Ok(message)) => update_event(&node, &message),
                Some(Err(error)) => {
                    tracing::warn!(%error, "a canvas room's feed broke; the room reloads");
                    Some(Remote::Lost)
                }
                None => Some(Remote::Lost),
            },
            message = presence.next() => match message {
                Some(message) => presence_event(&node, &message),
                None => Some(Remote::Lost),
            },
        };
        let Some(event) = event else { continue };
        let lost = matches!(event, Remote::Lost);
        if events.send(event).await.is_err() || lost {
            break;
        }
    }
    let _ = presence.unsubscribe().await;
}

fn update_event(node: &str, message: &jetstream::Message) -> Option<Remote> {
    let sequence = message.info().ok()?.stream_sequence;
    let headers = message.headers.as_ref();
    if header(headers, NODE_HEADER) == Some(node) {
        return Some(Remote::Echo { sequence });
    }
    Some(Remote::Update {
        sequence,
        update: message.payload.to_vec(),
        whole: header(headers, KIND_HEADER) == Some("snapshot"),
    })
}

fn presence_event(node: &str, message: &async_nats::Message) -> Option<Remote> {
    let headers = message.headers.as_ref();
    let from = header(headers, NODE_HEADER)?;
    if from == node {
        return None;
    }
    match header(headers, KIND_HEADER) {
        Some("deleted") => return Some(Remote::Deleted),
        Some("hello") => return Some(Remote::PresenceWanted),
        _ => {}
    }
    Some(Remote::Presence {
        node: from.into(),
        frame: message.payload.to_vec(),
    })
}

/// Publishes presence frames in the order they were shared.
async fn publish_presence(
    client: async_nats::Client,
    mut outgoing: mpsc::Receiver<(String, HeaderMap, Frame)>,
) {
    while let Some((subject, headers, frame)) = outgoing.recv().await {
        let payload = bytes::Bytes::copy_from_slice(&frame);
        if let Err(error) = client.publish_with_headers(subject, headers, payload).await {
            tracing::debug!(%error, "presence could not be published");
        }
    }
}
