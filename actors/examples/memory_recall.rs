//! Recall latency over a person's memories, without the model: `cargo run --release -p
//! troupe-actors --example memory_recall`. Random unit vectors stand in for memories and
//! for the message (the model's own time to embed one message is measured by
//! `./scripts/bench embeddings`); what is timed is the rest of a recall: the exact int8
//! scan, the ranking, and the hop off the async runtime.

use std::sync::Arc;
use std::time::Instant;

use troupe_actors::embedding::{EmbedError, Embedded, Embedder};
use troupe_actors::memory::{
    Memories, Memory, MemoryConfig, MemoryError, MemoryId, MemoryKind, MemoryStore, NewMemory,
    PersonMemories, quantize,
};

fn unit_vector(seed: &mut u64) -> Vec<f32> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % 2001) as f32 / 1000.0 - 1.0
    };
    let vector: Vec<f32> = (0..384).map(|_| next()).collect();
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    vector.iter().map(|v| v / norm).collect()
}

/// Answers a fresh random vector for every text.
struct RandomEmbedder(std::sync::Mutex<u64>);

#[async_trait::async_trait]
impl Embedder for RandomEmbedder {
    fn model(&self) -> &str {
        "random"
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Embedded>, EmbedError> {
        let mut seed = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(texts
            .iter()
            .map(|_| Embedded {
                vector: unit_vector(&mut seed),
                tokens: 12,
            })
            .collect())
    }
}

/// One person's memories, made up front.
struct Fixed(PersonMemories);

#[async_trait::async_trait]
impl MemoryStore for Fixed {
    async fn add(&self, _: &str, _: NewMemory) -> Result<Memory, MemoryError> {
        Err(MemoryError::Invalid("read-only".into()))
    }

    async fn all(&self, _: &str) -> Result<PersonMemories, MemoryError> {
        Ok(Arc::clone(&self.0))
    }

    async fn forget(&self, _: &str, _: &[MemoryId]) -> Result<usize, MemoryError> {
        Ok(0)
    }
}

#[tokio::main]
async fn main() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for count in [10_000, 100_000] {
        let memories: PersonMemories = (0..count)
            .map(|index| {
                Arc::new(Memory {
                    id: MemoryId::new(),
                    text: format!("memory {index}"),
                    kind: MemoryKind::Turn,
                    created_at: 0,
                    tokens: 12,
                    vector: quantize(&unit_vector(&mut seed)),
                })
            })
            .collect();
        let recall = Memories::new(
            Arc::new(RandomEmbedder(std::sync::Mutex::new(seed))),
            Arc::new(Fixed(memories)),
            MemoryConfig {
                min_similarity: -1.0,
                ..MemoryConfig::default()
            },
        );
        let mut micros: Vec<u128> = Vec::new();
        for round in 0..320 {
            let started = Instant::now();
            let found = recall.recall("ada", "a question").await.expect("recalled");
            assert_eq!(found.len(), 5);
            if round >= 20 {
                micros.push(started.elapsed().as_micros());
            }
        }
        micros.sort_unstable();
        let at =
            |quantile: f64| micros[((micros.len() - 1) as f64 * quantile) as usize] as f64 / 1000.0;
        println!(
            "{count} memories: recall p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} recalls)",
            at(0.5),
            at(0.99),
            at(1.0),
            micros.len()
        );
    }
}
