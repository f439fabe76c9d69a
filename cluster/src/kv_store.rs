//! `JetStreamSnapshotStore`: session snapshots and their turn journal in a JetStream KV
//! bucket (file storage). Snapshots are the same versioned bincode bytes as the local
//! store's; journal records follow their snapshot as further values of the same key (see
//! [`crate::kv_journal`]).
//!
//! Writes are compare-and-set on the revision this node last read or wrote: a node whose
//! copy of a session is stale (another node took the session over and wrote since) gets
//! [`StoreError::Conflict`] instead of overwriting newer history or appending after it,
//! even when its write was delayed by a network partition.
//!
//! KV keys may only hold `[-/_=.a-zA-Z0-9]`, and session ids may hold anything visible, so a
//! key is the lowercase hex of `platform NUL conversation`: hex keeps the byte order, so keys
//! sort in `SessionKey` order like the local store's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::context::KeyValueErrorKind;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use dashmap::DashMap;
use futures_util::TryStreamExt;
use troupe_actors::SessionKey;
use troupe_actors::snapshot::{
    EncodedRecord, EncodedSnapshot, Journal, SessionSnapshot, SnapshotStore, StoreError,
};

use crate::journal_gate::JournalGate;
use crate::kv_journal::{self, HISTORY, KeyValue, StoredValue};

/// Any error, boxed, kept as the source.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the cluster could not be joined; each keeps the error underneath as its source.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to nats at {url}: {reason}")]
    Connect {
        url: String,
        #[source]
        reason: BoxError,
    },
    #[error("cannot open the key-value bucket {bucket}: {reason}")]
    Bucket {
        bucket: String,
        #[source]
        reason: BoxError,
    },
    /// Preparing the inbox stream, the other buckets or the subscriptions failed.
    #[error("cannot set up {what}: {reason}")]
    Setup {
        what: String,
        #[source]
        reason: BoxError,
    },
}

/// Snapshots in a JetStream KV bucket.
pub struct JetStreamSnapshotStore {
    bucket: kv::Store,
    /// Snapshots stored, as this node has seen them (counted at open and on every listing,
    /// kept on its own writes; other nodes' writes show at the next listing).
    count: AtomicU64,
    /// The revision of each key as this node last read or wrote it; no entry: it read none.
    revisions: DashMap<String, u64>,
    gate: JournalGate,
}

impl std::fmt::Debug for JetStreamSnapshotStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("JetStreamSnapshotStore")
            .field("count", &self.count())
            .finish()
    }
}

fn io_error(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Io(error.into())
}

fn encode_key(key: &SessionKey) -> String {
    let raw = format!("{}\0{}", key.platform(), key.conversation_id());
    raw.bytes().map(|byte| format!("{byte:02x}")).collect()
}

fn decode_key(stored: &str) -> Option<SessionKey> {
    let bytes: Option<Vec<u8>> = (0..stored.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(stored.get(index..index + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let (platform, conversation) = text.split_once('\0')?;
    Some(SessionKey::new_unchecked(platform, conversation))
}

impl JetStreamSnapshotStore {
    /// Connects to `url` and opens (or creates) `bucket`.
    pub async fn connect(url: &str, bucket: &str) -> Result<Self, ClusterError> {
        let client = async_nats::connect(url)
            .await
            .map_err(|error| ClusterError::Connect {
                url: url.to_owned(),
                reason: error.into(),
            })?;
        Self::open(async_nats::jetstream::new(client), bucket).await
    }

    /// Opens (or creates) `bucket` on file storage with one replica.
    pub async fn open(
        jetstream: async_nats::jetstream::Context,
        bucket: &str,
    ) -> Result<Self, ClusterError> {
        Self::open_with(
            jetstream,
            bucket,
            async_nats::jetstream::stream::StorageType::File,
            1,
        )
        .await
    }

    /// Opens (or creates) `bucket` with the given storage and replicas, for a store used by
    /// one node alone: a bucket made before the journal (one value per key) is updated to
    /// keep [`HISTORY`] values, and the journal is open at once.
    pub async fn open_with(
        jetstream: async_nats::jetstream::Context,
        bucket: &str,
        storage: async_nats::jetstream::stream::StorageType,
        replicas: usize,
    ) -> Result<Self, ClusterError> {
        let journaling = journaling_config(bucket, storage, replicas);
        let store = jetstream
            .create_or_update_key_value(journaling.clone())
            .await
            .map_err(|error| bucket_error(bucket, error.into()))?;
        let gate = JournalGate::new(jetstream, journaling, HISTORY, true);
        Self::counted(store, gate).await
    }

    /// Opens (or creates) `bucket` for a cluster node. An existing bucket is left as it is,
    /// and the journal stays shut until every member reads it ([`crate::journal_gate`]):
    /// during a rolling upgrade, builds from before the journal still share the bucket.
    pub(crate) async fn open_for_cluster(
        jetstream: async_nats::jetstream::Context,
        bucket: &str,
        storage: async_nats::jetstream::stream::StorageType,
        replicas: usize,
    ) -> Result<Self, ClusterError> {
        let journaling = journaling_config(bucket, storage, replicas);
        let store = match jetstream.get_key_value(bucket).await {
            Ok(store) => store,
            Err(error) if error.kind() == KeyValueErrorKind::GetBucket => jetstream
                .create_key_value(journaling.clone())
                .await
                .map_err(|error| bucket_error(bucket, error.into()))?,
            Err(error) => return Err(bucket_error(bucket, error.into())),
        };
        let history = store.stream.cached_info().config.max_messages_per_subject;
        let gate = JournalGate::new(jetstream, journaling, history, false);
        Self::counted(store, gate).await
    }

    /// The store over `bucket`, with its sessions counted.
    async fn counted(bucket: kv::Store, gate: JournalGate) -> Result<Self, ClusterError> {
        let counting_error = |error: BoxError| bucket_error(&bucket.name, error);
        let stored = match bucket.keys().await {
            Ok(keys) => keys
                .try_fold(0u64, |count, _| async move { Ok(count + 1) })
                .await
                .map_err(|error| counting_error(error.into()))?,
            Err(error) => return Err(counting_error(error.into())),
        };
        Ok(Self {
            bucket,
            count: AtomicU64::new(stored),
            revisions: DashMap::new(),
            gate,
        })
    }

    /// Whether sessions may append records, and how the bucket comes to keep them.
    pub(crate) fn journal_gate(&self) -> &JournalGate {
        &self.gate
    }
}

/// The sessions bucket's configuration once it keeps journal records.
fn journaling_config(
    bucket: &str,
    storage: async_nats::jetstream::stream::StorageType,
    replicas: usize,
) -> kv::Config {
    kv::Config {
        bucket: bucket.to_owned(),
        history: HISTORY,
        storage,
        num_replicas: replicas,
        ..kv::Config::default()
    }
}

fn bucket_error(bucket: &str, reason: BoxError) -> ClusterError {
    ClusterError::Bucket {
        bucket: bucket.to_owned(),
        reason,
    }
}

#[async_trait::async_trait]
impl SnapshotStore for JetStreamSnapshotStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<SessionSnapshot>, StoreError> {
        let stored_key = encode_key(key);
        let entry = self
            .bucket
            .entry(stored_key.clone())
            .await
            .map_err(io_error)?;
        match entry {
            Some(entry) if entry.operation == Operation::Put => {
                match StoredValue::of(&entry.value) {
                    StoredValue::Snapshot(bytes) => {
                        self.revisions.insert(stored_key, entry.revision);
                        SessionSnapshot::decode(key, bytes).map(Some)
                    }
                    // Records after the snapshot: the node that wrote them stopped before
                    // it folded them into a snapshot (on passivation, or every 32 records).
                    StoredValue::Record(_) => self.load_with_records(key, stored_key).await,
                }
            }
            _ => {
                self.revisions.remove(&stored_key);
                Ok(None)
            }
        }
    }

    /// Returns once JetStream has acknowledged the write (stored on the server). Fails with
    /// [`StoreError::Conflict`] when someone else wrote the key since this node read it.
    /// The values before the new snapshot (the previous one, the records it folds in) are
    /// purged after it where the bucket keeps more than one.
    async fn save(&self, snapshot: EncodedSnapshot) -> Result<(), StoreError> {
        let key = encode_key(&snapshot.key);
        let value = bytes::Bytes::from(snapshot.bytes);
        let conflict = || StoreError::Conflict {
            key: snapshot.key.to_string(),
        };
        let known = self.revisions.get(&key).map(|revision| *revision);
        let revision = match known {
            Some(revision) => match self.bucket.update(&key, value, revision).await {
                Ok(revision) => {
                    // A bucket that keeps one value per key drops the older one itself.
                    if self.gate.bucket_keeps_records() {
                        self.purge_before(&key, revision).await;
                    }
                    revision
                }
                Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => {
                    return Err(conflict());
                }
                Err(error) => return Err(io_error(error)),
            },
            None => match self.bucket.create(&key, value).await {
                Ok(revision) => {
                    self.count.fetch_add(1, Ordering::Relaxed);
                    revision
                }
                Err(error) if error.kind() == CreateErrorKind::AlreadyExists => {
                    return Err(conflict());
                }
                Err(error) => return Err(io_error(error)),
            },
        };
        self.revisions.insert(key, revision);
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let stored_key = encode_key(key);
        let entry = self
            .bucket
            .entry(stored_key.clone())
            .await
            .map_err(io_error)?;
        self.revisions.remove(&stored_key);
        if !entry.is_some_and(|entry| entry.operation == Operation::Put) {
            return Ok(false);
        }
        self.bucket.purge(&stored_key).await.map_err(io_error)?;
        self.count.fetch_sub(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Reads every key of the bucket to page them in order: fine for listing, not a hot path.
    async fn list(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionKey>, StoreError> {
        let after = after.map(encode_key);
        let mut keys: Vec<String> = self
            .bucket
            .keys()
            .await
            .map_err(io_error)?
            .try_collect()
            .await
            .map_err(io_error)?;
        // Other nodes write too: a full listing is the moment to correct the count.
        self.count.store(keys.len() as u64, Ordering::Relaxed);
        keys.retain(|key| after.as_ref().is_none_or(|after| key > after));
        keys.sort_unstable();
        Ok(keys
            .iter()
            .take(limit)
            .filter_map(|key| decode_key(key))
            .collect())
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The journal, while every member of the cluster reads it.
    fn journal(self: Arc<Self>) -> Option<Arc<dyn Journal>> {
        if self.gate.is_open() {
            Some(self)
        } else {
            None
        }
    }

    /// A session that left memory loads (and so records its revision) again when it
    /// returns: keeping its revision would only grow this map with every session served.
    fn forget(&self, key: &SessionKey) {
        self.revisions.remove(&encode_key(key));
    }
}

impl JetStreamSnapshotStore {
    /// Reads every value `stored_key` keeps and replays the records after its newest
    /// snapshot: an ordered consumer over the key's subject, so only for sessions whose
    /// newest value is a record.
    async fn load_with_records(
        &self,
        key: &SessionKey,
        stored_key: String,
    ) -> Result<Option<SessionSnapshot>, StoreError> {
        let history: Vec<KeyValue> = self
            .bucket
            .history(&stored_key)
            .await
            .map_err(io_error)?
            .map_ok(KeyValue::from)
            .try_collect()
            .await
            .map_err(io_error)?;
        let recovered = kv_journal::recover(key, &history)?;
        if let Some(revision) = recovered.revision {
            self.revisions.insert(stored_key, revision);
        } else {
            self.revisions.remove(&stored_key);
        }
        Ok(recovered.session)
    }

    /// Drops the values of `stored_key` older than `revision`. A failure only leaves them
    /// on disk (the bucket keeps at most [`HISTORY`] per key, and loading skips them), so
    /// it is logged, not returned.
    async fn purge_before(&self, stored_key: &str, revision: u64) {
        let subject = format!("{}{stored_key}", self.bucket.prefix);
        let purged = self
            .bucket
            .stream
            .purge()
            .filter(subject)
            .sequence(revision)
            .await;
        if let Err(error) = purged {
            tracing::warn!(%error, "could not purge a session's values older than its snapshot");
        }
    }
}

#[async_trait::async_trait]
impl Journal for JetStreamSnapshotStore {
    /// Appends the record as the key's next value, compare-and-set on the revision this
    /// node last read or wrote: [`StoreError::Conflict`] when another node wrote since, or
    /// when this node has not read the session.
    async fn append(&self, record: EncodedRecord) -> Result<(), StoreError> {
        let key = encode_key(&record.key);
        let conflict = || StoreError::Conflict {
            key: record.key.to_string(),
        };
        let Some(known) = self.revisions.get(&key).map(|revision| *revision) else {
            return Err(conflict());
        };
        let value = bytes::Bytes::from(kv_journal::tagged_record(&record.bytes));
        match self.bucket.update(&key, value, known).await {
            Ok(revision) => {
                self.revisions.insert(key, revision);
                Ok(())
            }
            Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => Err(conflict()),
            Err(error) => Err(io_error(error)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_kv_keys_that_keep_their_order() {
        let keys = [
            SessionKey::new_unchecked("api", "x"),
            SessionKey::new_unchecked("api", "y:z/ü"),
            SessionKey::new_unchecked("api2", "a"),
            SessionKey::new_unchecked("matrix", "!room:example.org"),
        ];
        let encoded: Vec<String> = keys.iter().map(encode_key).collect();
        for (key, stored) in keys.iter().zip(&encoded) {
            assert!(
                stored
                    .bytes()
                    .all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
            );
            assert_eq!(decode_key(stored).as_ref(), Some(key));
        }
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(sorted, encoded, "hex keys sort like session keys");
        assert_eq!(decode_key("zz"), None);
    }

    #[tokio::test]
    async fn passes_the_snapshot_store_conformance_suite_on_a_real_nats_server() {
        let server = troupe_testkit::nats::NatsServer::start().await;
        let store = JetStreamSnapshotStore::connect(&server.url(), "conformance")
            .await
            .unwrap();
        troupe_actors::snapshot::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn passes_the_journal_conformance_suite_on_a_real_nats_server() {
        let server = troupe_testkit::nats::NatsServer::start().await;
        let store = Arc::new(
            JetStreamSnapshotStore::connect(&server.url(), "journal")
                .await
                .unwrap(),
        );
        let journal = Arc::clone(&store)
            .journal()
            .expect("the cluster store journals");
        troupe_actors::snapshot::conformance::run_journal(store.as_ref(), journal.as_ref()).await;
    }

    pub(crate) fn record_of(key: &SessionKey, texts: &[&str], updated_at: u64) -> EncodedRecord {
        let history: std::collections::VecDeque<_> = texts
            .iter()
            .map(|text| troupe_actors::snapshot::HistoryEntry {
                role: troupe_actors::provider::Role::User,
                content: (*text).into(),
                tool_calls: Vec::new(),
                tool_call_id: None,
                message_id: None,
                timestamp: updated_at,
                images: Vec::new(),
            })
            .collect();
        troupe_actors::snapshot::RecordView::newest(&history, texts.len(), updated_at, None)
            .unwrap()
            .encode(key)
    }

    /// Values the bucket keeps for `key` now.
    async fn values_kept(store: &JetStreamSnapshotStore, key: &SessionKey) -> usize {
        use futures_util::StreamExt;
        store
            .bucket
            .history(encode_key(key))
            .await
            .unwrap()
            .count()
            .await
    }

    #[tokio::test]
    async fn a_node_that_takes_a_session_over_reads_its_records_and_fences_the_old_owner() {
        let server = troupe_testkit::nats::NatsServer::start().await;
        let owner = JetStreamSnapshotStore::connect(&server.url(), "sessions")
            .await
            .unwrap();
        let key = SessionKey::new_unchecked("ws", "alice");
        assert_eq!(owner.load(&key).await.unwrap(), None);
        owner
            .save(SessionSnapshot::empty(key.clone()).encode())
            .await
            .unwrap();
        owner.append(record_of(&key, &["one"], 3)).await.unwrap();
        owner.append(record_of(&key, &["two"], 4)).await.unwrap();

        // The owner dies before it folds the records in; another node loads the session.
        let successor = JetStreamSnapshotStore::connect(&server.url(), "sessions")
            .await
            .unwrap();
        let session = successor.load(&key).await.unwrap().unwrap();
        let texts: Vec<_> = session.history.iter().map(|e| &*e.content).collect();
        assert_eq!(texts, ["one", "two"]);
        assert_eq!(session.updated_at, 4);
        successor
            .append(record_of(&key, &["three"], 5))
            .await
            .unwrap();

        // The old owner, back from a partition, may neither append nor overwrite.
        assert!(matches!(
            owner.append(record_of(&key, &["stale"], 9)).await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            owner
                .save(SessionSnapshot::empty(key.clone()).encode())
                .await,
            Err(StoreError::Conflict { .. })
        ));
        // A node that never read the session may not append to it either.
        let stranger = JetStreamSnapshotStore::connect(&server.url(), "sessions")
            .await
            .unwrap();
        assert!(matches!(
            stranger.append(record_of(&key, &["blind"], 9)).await,
            Err(StoreError::Conflict { .. })
        ));
        let texts: Vec<_> = stranger
            .load(&key)
            .await
            .unwrap()
            .unwrap()
            .history
            .iter()
            .map(|e| e.content.to_string())
            .collect();
        assert_eq!(texts, ["one", "two", "three"]);
    }

    #[tokio::test]
    async fn a_snapshot_purges_the_values_it_replaces() {
        let server = troupe_testkit::nats::NatsServer::start().await;
        let store = JetStreamSnapshotStore::connect(&server.url(), "sessions")
            .await
            .unwrap();
        let key = SessionKey::new_unchecked("ws", "bob");
        let mut snapshot = SessionSnapshot::empty(key.clone());
        store.save(snapshot.encode()).await.unwrap();
        for turn in 0..5 {
            store
                .append(record_of(&key, &["turn"], turn))
                .await
                .unwrap();
        }
        assert_eq!(values_kept(&store, &key).await, 6);
        snapshot.updated_at = 6;
        store.save(snapshot.encode()).await.unwrap();
        assert_eq!(values_kept(&store, &key).await, 1, "only the new snapshot");
        assert_eq!(store.load(&key).await.unwrap(), Some(snapshot));
    }

    #[tokio::test]
    async fn a_bucket_from_before_the_journal_is_read_and_then_journals() {
        let server = troupe_testkit::nats::NatsServer::start().await;
        let client = async_nats::connect(server.url()).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let old = jetstream
            .create_key_value(kv::Config {
                bucket: "sessions".into(),
                history: 1,
                storage: async_nats::jetstream::stream::StorageType::File,
                ..kv::Config::default()
            })
            .await
            .unwrap();
        let key = SessionKey::new_unchecked("ws", "carol");
        let mut snapshot = SessionSnapshot::empty(key.clone());
        snapshot.updated_at = 2;
        old.put(encode_key(&key), snapshot.encode().bytes.into())
            .await
            .unwrap();

        let store = JetStreamSnapshotStore::open(jetstream.clone(), "sessions")
            .await
            .unwrap();
        let info = jetstream.get_stream("KV_sessions").await.unwrap();
        assert_eq!(info.cached_info().config.max_messages_per_subject, HISTORY);
        assert_eq!(store.load(&key).await.unwrap(), Some(snapshot));
        store.append(record_of(&key, &["kept"], 3)).await.unwrap();
        let reopened = JetStreamSnapshotStore::open(jetstream, "sessions")
            .await
            .unwrap();
        let session = reopened.load(&key).await.unwrap().unwrap();
        assert_eq!(session.history.len(), 1, "the record survived");
        assert_eq!(session.updated_at, 3);
    }

    #[tokio::test]
    async fn a_stale_writer_gets_a_conflict_instead_of_overwriting() {
        let server = troupe_testkit::nats::NatsServer::start().await;
        let first = JetStreamSnapshotStore::connect(&server.url(), "sessions")
            .await
            .unwrap();
        let second = JetStreamSnapshotStore::connect(&server.url(), "sessions")
            .await
            .unwrap();
        let key = SessionKey::new_unchecked("ws", "alice");
        let mut snapshot = SessionSnapshot::empty(key.clone());
        assert_eq!(first.load(&key).await.unwrap(), None);
        assert_eq!(second.load(&key).await.unwrap(), None);
        first.save(snapshot.encode()).await.unwrap();
        snapshot.updated_at = 5;
        assert!(matches!(
            second.save(snapshot.encode()).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(second.load(&key).await.unwrap().unwrap().updated_at, 0);
        second.save(snapshot.encode()).await.unwrap();
        snapshot.updated_at = 9;
        assert!(matches!(
            first.save(snapshot.encode()).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(first.load(&key).await.unwrap().unwrap().updated_at, 5);
        // A forgotten session must be loaded again before it may write.
        first.forget(&key);
        assert!(matches!(
            first.save(snapshot.encode()).await,
            Err(StoreError::Conflict { .. })
        ));
        first.load(&key).await.unwrap();
        first.save(snapshot.encode()).await.unwrap();
    }

    #[tokio::test]
    async fn a_store_opened_again_sees_and_counts_what_was_saved() {
        let server = troupe_testkit::nats::NatsServer::start().await;
        let key = SessionKey::new_unchecked("ws", "alice");
        {
            let store = JetStreamSnapshotStore::connect(&server.url(), "sessions")
                .await
                .unwrap();
            store
                .save(SessionSnapshot::empty(key.clone()).encode())
                .await
                .unwrap();
        }
        let again = JetStreamSnapshotStore::connect(&server.url(), "sessions")
            .await
            .unwrap();
        assert_eq!(again.count(), 1);
        assert_eq!(
            again.load(&key).await.unwrap(),
            Some(SessionSnapshot::empty(key))
        );
    }
}
