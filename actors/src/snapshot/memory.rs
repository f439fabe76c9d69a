//! An in-memory [`SnapshotStore`] with a turn journal: a first-class fake for tests and
//! benchmarks that must not touch the disk. It stores encoded bytes, so it exercises the
//! same encoding as real stores.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{EncodedRecord, EncodedSnapshot, Journal, SessionSnapshot, SnapshotStore, StoreError};
use crate::ids::SessionKey;

#[derive(Debug, Default)]
pub struct MemorySnapshotStore {
    stored: Mutex<Stored>,
}

#[derive(Debug, Default)]
struct Stored {
    /// Encoded snapshots by key; a `BTreeMap` so `list` pages in key order.
    snapshots: BTreeMap<SessionKey, Vec<u8>>,
    /// Encoded journal records of each session, in append order.
    journals: BTreeMap<SessionKey, Vec<Vec<u8>>>,
}

impl MemorySnapshotStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn stored(&self) -> MutexGuard<'_, Stored> {
        self.stored
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many journal records `key` has after its snapshot.
    pub fn journal_len(&self, key: &SessionKey) -> usize {
        self.stored().journals.get(key).map_or(0, Vec::len)
    }
}

#[async_trait::async_trait]
impl Journal for MemorySnapshotStore {
    async fn append(&self, record: EncodedRecord) -> Result<(), StoreError> {
        let mut stored = self.stored();
        stored
            .journals
            .entry(record.key)
            .or_default()
            .push(record.bytes);
        Ok(())
    }
}

#[async_trait::async_trait]
impl SnapshotStore for MemorySnapshotStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<SessionSnapshot>, StoreError> {
        let stored = self.stored();
        let records = stored.journals.get(key).into_iter().flatten();
        SessionSnapshot::recover(
            key,
            stored.snapshots.get(key).map(Vec::as_slice),
            records.map(Vec::as_slice),
        )
    }

    async fn save(&self, snapshot: EncodedSnapshot) -> Result<(), StoreError> {
        let mut stored = self.stored();
        stored.journals.remove(&snapshot.key);
        stored.snapshots.insert(snapshot.key, snapshot.bytes);
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let mut stored = self.stored();
        stored.journals.remove(key);
        Ok(stored.snapshots.remove(key).is_some())
    }

    fn journal(self: Arc<Self>) -> Option<Arc<dyn Journal>> {
        Some(self)
    }

    async fn list(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionKey>, StoreError> {
        let snapshots = &self.stored().snapshots;
        let keys = match after {
            Some(after) => snapshots
                .range::<SessionKey, _>((
                    std::ops::Bound::Excluded(after),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(key, _)| key.clone())
                .take(limit)
                .collect(),
            None => snapshots.keys().take(limit).cloned().collect(),
        };
        Ok(keys)
    }

    fn count(&self) -> u64 {
        self.stored().snapshots.len() as u64
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn passes_the_conformance_suite() {
        super::super::conformance::run_all(&super::MemorySnapshotStore::new()).await;
    }

    #[tokio::test]
    async fn passes_the_journal_conformance_suite() {
        let store = super::MemorySnapshotStore::new();
        super::super::conformance::run_journal(&store, &store).await;
    }
}
