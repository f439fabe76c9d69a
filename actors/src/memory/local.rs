//! Memories on one node: `memory.redb` in the data dir, one durable transaction per
//! change, and each person's memories held in memory once read (search is over them).

use std::path::Path;
use std::sync::Arc;

use dashmap::DashMap;
use redb::TableDefinition;

use super::store::{
    Memory, MemoryError, MemoryId, MemoryStore, NewMemory, PersonMemories, overflow,
};
use crate::storage::Storage;

/// `person\0id` → the memory (bincode).
const MEMORIES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("memories_v1");
/// redb's page cache: memories are read once per person, then served from memory.
const CACHE_BYTES: usize = 2 * 1024 * 1024;

fn key(person: &str, id: &MemoryId) -> String {
    format!("{person}\0{id}")
}

/// The keys of `person`'s memories: from `person\0` up to `person\x01`.
fn range(person: &str) -> (String, String) {
    (format!("{person}\0"), format!("{person}\u{1}"))
}

/// The memories of every person on this node.
#[derive(Clone)]
pub struct LocalMemoryStore {
    storage: Storage,
    /// Each person's memories once read, oldest first.
    people: Arc<DashMap<String, PersonMemories>>,
    /// One change at a time, so that the cache and the file agree.
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl LocalMemoryStore {
    /// `memory.redb` in `data_dir`, created at the first memory kept.
    pub fn new(data_dir: &Path) -> Self {
        let storage = Storage::lazy(
            "memory",
            &data_dir.join("memory.redb"),
            CACHE_BYTES,
            |transaction| transaction.open_table(MEMORIES).map(drop),
        );
        Self {
            storage,
            people: Arc::new(DashMap::new()),
            writer: Arc::default(),
        }
    }

    /// The database, for health reports next to the other stores.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Storage) -> Result<T, MemoryError> + Send + 'static,
    ) -> Result<T, MemoryError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || work(&storage))
            .await
            .map_err(MemoryError::store)?
    }

    async fn read(&self, person: &str) -> Result<PersonMemories, MemoryError> {
        let (from, to) = range(person);
        let memories = self
            .blocking(move |storage| {
                let Some(read) = storage
                    .run_existing(|database| {
                        let transaction = database.begin_read().map_err(MemoryError::store)?;
                        let table = transaction
                            .open_table(MEMORIES)
                            .map_err(MemoryError::store)?;
                        let mut memories = Vec::new();
                        for entry in table
                            .range(from.as_str()..to.as_str())
                            .map_err(MemoryError::store)?
                        {
                            let (_, value) = entry.map_err(MemoryError::store)?;
                            memories.push(Arc::new(Memory::decode(value.value())?));
                        }
                        Ok::<_, MemoryError>(memories)
                    })
                    .map_err(MemoryError::store)?
                else {
                    return Ok(Vec::new());
                };
                read
            })
            .await?;
        // In key order, which is id order: the order they were kept in.
        Ok(memories.into())
    }

    /// Writes `added` and deletes `removed` for `person` in one durable transaction.
    async fn write(
        &self,
        person: &str,
        added: Option<&Memory>,
        removed: Vec<MemoryId>,
    ) -> Result<usize, MemoryError> {
        let added = added
            .map(|memory| {
                memory
                    .encode()
                    .map(|bytes| (key(person, &memory.id), bytes))
            })
            .transpose()?;
        let removed: Vec<String> = removed.iter().map(|id| key(person, id)).collect();
        self.blocking(move |storage| {
            storage
                .run(|database| {
                    let transaction = database.begin_write().map_err(MemoryError::store)?;
                    let mut gone = 0;
                    {
                        let mut table = transaction
                            .open_table(MEMORIES)
                            .map_err(MemoryError::store)?;
                        if let Some((key, bytes)) = &added {
                            table
                                .insert(key.as_str(), bytes.as_slice())
                                .map_err(MemoryError::store)?;
                        }
                        for key in &removed {
                            if table
                                .remove(key.as_str())
                                .map_err(MemoryError::store)?
                                .is_some()
                            {
                                gone += 1;
                            }
                        }
                    }
                    transaction.commit().map_err(MemoryError::store)?;
                    Ok::<_, MemoryError>(gone)
                })
                .map_err(MemoryError::store)?
        })
        .await
    }
}

#[async_trait::async_trait]
impl MemoryStore for LocalMemoryStore {
    async fn add(&self, person: &str, memory: NewMemory) -> Result<Memory, MemoryError> {
        let _writing = self.writer.lock().await;
        let current = self.all(person).await?;
        let kept = Memory::kept(memory);
        let dropped = overflow(&current);
        self.write(person, Some(&kept), dropped.clone()).await?;
        let mut next: Vec<Arc<Memory>> = current
            .iter()
            .filter(|memory| !dropped.contains(&memory.id))
            .cloned()
            .collect();
        next.push(Arc::new(kept.clone()));
        self.people.insert(person.to_owned(), next.into());
        Ok(kept)
    }

    async fn all(&self, person: &str) -> Result<PersonMemories, MemoryError> {
        if let Some(memories) = self.people.get(person) {
            return Ok(Arc::clone(&memories));
        }
        let memories = self.read(person).await?;
        self.people.insert(person.to_owned(), Arc::clone(&memories));
        Ok(memories)
    }

    async fn forget(&self, person: &str, ids: &[MemoryId]) -> Result<usize, MemoryError> {
        let _writing = self.writer.lock().await;
        let current = self.all(person).await?;
        let gone = self.write(person, None, ids.to_vec()).await?;
        let next: Vec<Arc<Memory>> = current
            .iter()
            .filter(|memory| !ids.contains(&memory.id))
            .cloned()
            .collect();
        self.people.insert(person.to_owned(), next.into());
        Ok(gone)
    }
}
