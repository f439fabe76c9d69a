//! Long-term memory by meaning, per person (the identity links decide who is one person:
//! `person:<name>` for linked accounts, else `platform:sender_id`).
//!
//! - **What is kept.** Facts the assistant was told or chose to keep (the `memory` skill:
//!   remember, forget, search, list) and, automatically, each finished exchange, embedded
//!   in the background after its reply ([`Memories::keep_turn`]).
//! - **Recall.** Before each turn the person's message is embedded and the memories
//!   nearest to it (top-k by cosine, above a relevance floor, without near-duplicates)
//!   join that turn's system prompt within a token budget ([`Memories::recall`]); the
//!   turn's events show what was recalled as a `memory__recall` tool call.
//! - **Storage.** A [`MemoryStore`]: `memory.redb` on one node ([`LocalMemoryStore`]), the
//!   cluster's JetStream in a cluster (`troupe_cluster::memory::JetStreamMemoryStore`).
//!   Vectors are kept as int8 (a unit vector's components times 127): a quarter of the
//!   size, and exact search over them ranks as float search does to within noise.
//! - **Scale.** Search is exact over the person's memories held in memory: fine to 10⁵
//!   memories per person (a few milliseconds on one core); past
//!   [`MAX_MEMORIES_PER_PERSON`] the oldest automatic memories are dropped first.

mod local;
mod recall;
mod store;

pub use local::LocalMemoryStore;
pub use recall::{Memories, MemoryConfig, Recalled, prompt_of};
pub use store::{
    Memory, MemoryError, MemoryId, MemoryKind, MemoryStore, MemoryView, NewMemory, PersonMemories,
    overflow, quantize,
};

/// Most memories one person keeps; the oldest automatic ones go first beyond it.
pub const MAX_MEMORIES_PER_PERSON: usize = 100_000;

#[cfg(test)]
mod tests;
