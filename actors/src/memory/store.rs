//! What a memory is, and the [`MemoryStore`] trait that keeps them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A memory's id: unique per person (`m-` and 16 hex digits), ordered as memories were
/// kept (microseconds since 1970, then 12 random bits).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemoryId(String);

impl MemoryId {
    /// A fresh id, after every id made before it on this clock.
    pub fn new() -> Self {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_micros() as u64);
        Self(format!(
            "m-{:016x}",
            (micros << 12) | (rand::random::<u64>() & 0xfff)
        ))
    }

    /// An id a client named: `m-` and 16 lowercase hex digits, or `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.strip_prefix("m-")?;
        (digits.len() == 16
            && digits
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
        .then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for MemoryId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for MemoryId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Where a memory came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    /// The person or the assistant chose to keep it (the `memory` skill).
    Fact,
    /// A finished exchange, kept automatically.
    Turn,
}

/// A memory to keep.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMemory {
    pub text: String,
    pub kind: MemoryKind,
    /// Unit vector of `text`.
    pub vector: Vec<f32>,
    /// Tokens of `text` as the embedder read it (the prompt budget counts them).
    pub tokens: usize,
}

/// A kept memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub id: MemoryId,
    pub text: String,
    pub kind: MemoryKind,
    /// Unix seconds.
    pub created_at: u64,
    pub tokens: u32,
    /// The unit vector, each component times 127 (see [`quantize`]).
    pub vector: Vec<i8>,
}

impl Memory {
    /// `memory` as kept now, under a fresh id.
    pub fn kept(memory: NewMemory) -> Self {
        Self {
            id: MemoryId::new(),
            text: memory.text,
            kind: memory.kind,
            created_at: crate::message::unix_now(),
            tokens: u32::try_from(memory.tokens).unwrap_or(u32::MAX),
            vector: quantize(&memory.vector),
        }
    }

    /// The memory as stores keep it (bincode).
    pub fn encode(&self) -> Result<Vec<u8>, MemoryError> {
        bincode::serde::encode_to_vec(self, bincode::config::standard()).map_err(MemoryError::store)
    }

    /// A memory a store kept with [`Memory::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, MemoryError> {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map(|(memory, _)| memory)
            .map_err(MemoryError::store)
    }

    /// Cosine similarity with `query` (quantised the same way), in about -1..=1.
    pub fn similarity(&self, query: &[i8]) -> f32 {
        Self::similarity_of(&self.vector, query)
    }

    /// Cosine similarity of two quantised unit vectors.
    pub fn similarity_of(a: &[i8], b: &[i8]) -> f32 {
        let dot: i32 = a
            .iter()
            .zip(b)
            .map(|(a, b)| i32::from(*a) * i32::from(*b))
            .sum();
        dot as f32 / (127.0 * 127.0)
    }
}

/// A unit vector as int8: each component times 127, rounded.
pub fn quantize(vector: &[f32]) -> Vec<i8> {
    vector
        .iter()
        .map(|value| (value.clamp(-1.0, 1.0) * 127.0).round() as i8)
        .collect()
}

/// A memory as clients see it (the skill, the API): everything but its vector.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MemoryView<'a> {
    pub id: &'a MemoryId,
    pub text: &'a str,
    pub kind: MemoryKind,
    pub created_at: u64,
}

impl Memory {
    pub fn view(&self) -> MemoryView<'_> {
        MemoryView {
            id: &self.id,
            text: &self.text,
            kind: self.kind,
            created_at: self.created_at,
        }
    }
}

/// A person's memories, oldest first. Each is shared, so keeping one more copies
/// pointers, not memories.
pub type PersonMemories = Arc<[Arc<Memory>]>;

/// Why memories could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("the memory store failed: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the memory could not be embedded: {0}")]
    Embedding(#[from] crate::embedding::EmbedError),
    #[error("{0}")]
    Invalid(String),
}

impl MemoryError {
    /// The store failed with `error`.
    pub fn store(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Store(Box::new(error))
    }
}

/// Which memories make room for one more beside `memories` (a person's, oldest first):
/// past [`MAX_MEMORIES_PER_PERSON`](super::MAX_MEMORIES_PER_PERSON), the oldest automatic
/// ones, then the oldest facts.
pub fn overflow(memories: &[Arc<Memory>]) -> Vec<MemoryId> {
    let excess = (memories.len() + 1).saturating_sub(super::MAX_MEMORIES_PER_PERSON);
    let turns = memories
        .iter()
        .filter(|memory| memory.kind == MemoryKind::Turn);
    let facts = memories
        .iter()
        .filter(|memory| memory.kind == MemoryKind::Fact);
    turns
        .chain(facts)
        .take(excess)
        .map(|memory| memory.id.clone())
        .collect()
}

/// Keeps each person's memories.
#[async_trait::async_trait]
pub trait MemoryStore: Send + Sync + 'static {
    /// Keeps `memory` for `person`; answers its id.
    async fn add(&self, person: &str, memory: NewMemory) -> Result<Memory, MemoryError>;

    /// Every memory of `person`, oldest first.
    async fn all(&self, person: &str) -> Result<PersonMemories, MemoryError>;

    /// Deletes these memories of `person` for good; answers how many there were.
    async fn forget(&self, person: &str, ids: &[MemoryId]) -> Result<usize, MemoryError>;
}
