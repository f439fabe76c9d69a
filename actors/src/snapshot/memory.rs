//! An in-memory [`SnapshotStore`]: a first-class fake for tests and benchmarks that must not
//! touch the disk. It stores encoded bytes, so it exercises the same encoding as real stores.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{EncodedSnapshot, SessionSnapshot, SnapshotStore, StoreError};
use crate::ids::SessionKey;

#[derive(Debug, Default)]
pub struct MemorySnapshotStore {
    /// Encoded snapshots by key; a `BTreeMap` so `list` pages in key order.
    snapshots: Mutex<BTreeMap<SessionKey, Vec<u8>>>,
}

impl MemorySnapshotStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn snapshots(&self) -> std::sync::MutexGuard<'_, BTreeMap<SessionKey, Vec<u8>>> {
        self.snapshots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl SnapshotStore for MemorySnapshotStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<SessionSnapshot>, StoreError> {
        let bytes = self.snapshots().get(key).cloned();
        bytes
            .map(|bytes| SessionSnapshot::decode(key, &bytes))
            .transpose()
    }

    async fn save(&self, snapshot: EncodedSnapshot) -> Result<(), StoreError> {
        self.snapshots().insert(snapshot.key, snapshot.bytes);
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        Ok(self.snapshots().remove(key).is_some())
    }

    async fn list(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionKey>, StoreError> {
        let snapshots = self.snapshots();
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
        self.snapshots().len() as u64
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn passes_the_conformance_suite() {
        super::super::conformance::run_all(&super::MemorySnapshotStore::new()).await;
    }
}
