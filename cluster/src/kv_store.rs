//! `JetStreamSnapshotStore`: session snapshots in a JetStream KV bucket (file storage, one
//! revision kept per key). Values are the same versioned bincode bytes as the local store.
//!
//! KV keys may only hold `[-/_=.a-zA-Z0-9]`, and session ids may hold anything visible, so a
//! key is the lowercase hex of `platform NUL conversation`: hex keeps the byte order, so keys
//! sort in `SessionKey` order like the local store's.

use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use futures_util::TryStreamExt;
use troupe_actors::SessionKey;
use troupe_actors::snapshot::{EncodedSnapshot, SessionSnapshot, SnapshotStore, StoreError};

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to nats at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot open the key-value bucket {bucket}: {reason}")]
    Bucket { bucket: String, reason: String },
}

/// Snapshots in a JetStream KV bucket.
pub struct JetStreamSnapshotStore {
    bucket: kv::Store,
    /// Snapshots stored, as this node has seen them (counted at open, kept on writes).
    count: AtomicU64,
}

impl std::fmt::Debug for JetStreamSnapshotStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("JetStreamSnapshotStore")
            .field("count", &self.count())
            .finish()
    }
}

fn io_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Io(error.to_string())
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
                reason: error.to_string(),
            })?;
        Self::open(async_nats::jetstream::new(client), bucket).await
    }

    /// Opens (or creates) `bucket` through an existing JetStream context.
    pub async fn open(
        jetstream: async_nats::jetstream::Context,
        bucket: &str,
    ) -> Result<Self, ClusterError> {
        let bucket_error = |error: &dyn std::fmt::Display| ClusterError::Bucket {
            bucket: bucket.to_owned(),
            reason: error.to_string(),
        };
        let config = kv::Config {
            bucket: bucket.to_owned(),
            history: 1,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..kv::Config::default()
        };
        let store = jetstream
            .create_key_value(config)
            .await
            .map_err(|error| bucket_error(&error))?;
        let stored = match store.keys().await {
            Ok(keys) => keys
                .try_fold(0u64, |count, _| async move { Ok(count + 1) })
                .await
                .map_err(|error| bucket_error(&error))?,
            Err(error) => return Err(bucket_error(&error)),
        };
        Ok(Self {
            bucket: store,
            count: AtomicU64::new(stored),
        })
    }
}

#[async_trait::async_trait]
impl SnapshotStore for JetStreamSnapshotStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<SessionSnapshot>, StoreError> {
        let bytes = self.bucket.get(encode_key(key)).await.map_err(io_error)?;
        bytes
            .map(|bytes| SessionSnapshot::decode(key, &bytes))
            .transpose()
    }

    /// Returns once JetStream has acknowledged the write (stored on the server).
    async fn save(&self, snapshot: EncodedSnapshot) -> Result<(), StoreError> {
        let key = encode_key(&snapshot.key);
        let value = bytes::Bytes::from(snapshot.bytes);
        match self.bucket.create(&key, value.clone()).await {
            Ok(_) => {
                self.count.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) if error.kind() == CreateErrorKind::AlreadyExists => self
                .bucket
                .put(&key, value)
                .await
                .map(|_| ())
                .map_err(io_error),
            Err(error) => Err(io_error(error)),
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let stored_key = encode_key(key);
        let entry = self
            .bucket
            .entry(stored_key.clone())
            .await
            .map_err(io_error)?;
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
}

#[cfg(test)]
mod tests {
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
