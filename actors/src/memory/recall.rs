//! [`Memories`]: keeping, finding and forgetting what a person said, by meaning.

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use super::store::{
    Memory, MemoryError, MemoryId, MemoryKind, MemoryStore, NewMemory, PersonMemories, quantize,
};
use crate::embedding::Embedder;

/// How recall chooses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemoryConfig {
    /// Most memories one turn recalls.
    pub top_k: usize,
    /// Least cosine similarity a recalled memory has with the person's message.
    pub min_similarity: f32,
    /// Most tokens the recalled memories may add to a turn's prompt.
    pub max_prompt_tokens: usize,
    /// Whether finished exchanges are kept automatically.
    pub keep_turns: bool,
}

impl MemoryConfig {
    /// Five memories at most, from a cosine of 0.3, within 400 tokens, exchanges kept.
    pub const DEFAULT: Self = Self {
        top_k: 5,
        min_similarity: 0.3,
        max_prompt_tokens: 400,
        keep_turns: true,
    };
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Two memories this alike are one, for recall.
const NEAR_DUPLICATE: f32 = 0.95;
/// "Forget X" forgets the memories that say X, or mean it this closely.
const FORGET_SIMILARITY: f32 = 0.5;
/// Longest memory kept, in characters.
const MAX_MEMORY_CHARS: usize = 2_000;
/// An exchange is kept in chunks of about this many characters of the answer.
const TURN_CHUNK_CHARS: usize = 600;
/// Most chunks one exchange is kept as.
const MAX_TURN_CHUNKS: usize = 4;

/// A memory that bears on a message, and how near it is.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Recalled {
    pub id: MemoryId,
    pub text: String,
    pub kind: MemoryKind,
    pub created_at: u64,
    pub similarity: f32,
    #[serde(skip)]
    tokens: u32,
    #[serde(skip)]
    vector: Vec<i8>,
}

impl Recalled {
    fn of(memory: &Memory, similarity: f32) -> Self {
        Self {
            id: memory.id.clone(),
            text: memory.text.clone(),
            kind: memory.kind,
            created_at: memory.created_at,
            similarity,
            tokens: memory.tokens,
            vector: memory.vector.clone(),
        }
    }
}

/// Long-term memory: the embedder that gives meaning, the store that keeps it.
pub struct Memories {
    embedder: Arc<dyn Embedder>,
    store: Arc<dyn MemoryStore>,
    config: MemoryConfig,
    /// Exchanges being kept in the background.
    keeping: TaskTracker,
}

fn shortened(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

impl Memories {
    pub fn new(
        embedder: Arc<dyn Embedder>,
        store: Arc<dyn MemoryStore>,
        config: MemoryConfig,
    ) -> Self {
        Self {
            embedder,
            store,
            config,
            keeping: TaskTracker::new(),
        }
    }

    /// Keeps `texts` for `person`, embedded together.
    async fn keep(
        &self,
        person: &str,
        texts: Vec<String>,
        kind: MemoryKind,
    ) -> Result<Vec<Memory>, MemoryError> {
        let embedded = self.embedder.embed(texts.clone()).await?;
        let mut kept = Vec::with_capacity(texts.len());
        for (text, embedded) in texts.into_iter().zip(embedded) {
            let memory = NewMemory {
                text,
                kind,
                vector: embedded.vector,
                tokens: embedded.tokens,
            };
            kept.push(self.store.add(person, memory).await?);
        }
        Ok(kept)
    }

    /// Keeps a fact about `person` (the same text twice is kept once).
    pub async fn remember(&self, person: &str, text: &str) -> Result<Memory, MemoryError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(MemoryError::Invalid("there is nothing to remember".into()));
        }
        if text.chars().count() > MAX_MEMORY_CHARS {
            return Err(MemoryError::Invalid(format!(
                "a memory holds at most {MAX_MEMORY_CHARS} characters"
            )));
        }
        let known = self.store.all(person).await?;
        if let Some(same) = known.iter().find(|memory| memory.text == text) {
            return Ok(Memory::clone(same));
        }
        let mut kept = self
            .keep(person, vec![text.to_owned()], MemoryKind::Fact)
            .await?;
        kept.pop()
            .ok_or_else(|| MemoryError::Invalid("the embedder answered nothing".into()))
    }

    /// `person`'s memories nearest to `query`, best first, at most `limit`, none below
    /// `floor`.
    async fn nearest(
        &self,
        person: &str,
        query: &str,
        limit: usize,
        floor: f32,
    ) -> Result<Vec<Recalled>, MemoryError> {
        let memories = self.store.all(person).await?;
        if memories.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let asked = self.embedder.embed(vec![query.to_owned()]).await?;
        let Some(asked) = asked.first() else {
            return Ok(Vec::new());
        };
        let query = quantize(&asked.vector);
        // An exact scan of up to 10⁵ memories takes milliseconds: off the async runtime.
        tokio::task::spawn_blocking(move || ranked(&memories, &query, limit, floor))
            .await
            .map_err(|error| MemoryError::Store(Box::new(error)))
    }

    /// What the `memory` skill's search finds: the nearest memories, whatever their score.
    pub async fn search(
        &self,
        person: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Recalled>, MemoryError> {
        self.nearest(person, query, limit, -1.0).await
    }

    /// What a turn answering `message` recalls: the nearest memories above the floor,
    /// without near-duplicates, within the prompt budget; best first.
    pub async fn recall(&self, person: &str, message: &str) -> Result<Vec<Recalled>, MemoryError> {
        let candidates = self
            .nearest(
                person,
                message,
                self.config.top_k * 4,
                self.config.min_similarity,
            )
            .await?;
        let mut chosen: Vec<Recalled> = Vec::new();
        let mut tokens = 0usize;
        for candidate in candidates {
            if chosen.len() == self.config.top_k {
                break;
            }
            let duplicate = chosen.iter().any(|kept| {
                kept.text == candidate.text
                    || Memory::similarity_of(&kept.vector, &candidate.vector) >= NEAR_DUPLICATE
            });
            let cost = candidate.tokens as usize;
            if duplicate || tokens + cost > self.config.max_prompt_tokens {
                continue;
            }
            tokens += cost;
            chosen.push(candidate);
        }
        Ok(chosen)
    }

    /// Forgets for good every memory of `person` that says `about` (any case) or means it
    /// closely; answers what was forgotten.
    pub async fn forget_about(
        &self,
        person: &str,
        about: &str,
    ) -> Result<Vec<Arc<Memory>>, MemoryError> {
        let about = about.trim();
        if about.is_empty() {
            return Err(MemoryError::Invalid("say what to forget".into()));
        }
        let memories = self.store.all(person).await?;
        let near: Vec<MemoryId> = self
            .nearest(person, about, memories.len(), FORGET_SIMILARITY)
            .await?
            .into_iter()
            .map(|recalled| recalled.id)
            .collect();
        let lowered = about.to_lowercase();
        let forgotten: Vec<Arc<Memory>> = memories
            .iter()
            .filter(|memory| {
                near.contains(&memory.id) || memory.text.to_lowercase().contains(&lowered)
            })
            .cloned()
            .collect();
        let ids: Vec<MemoryId> = forgotten.iter().map(|memory| memory.id.clone()).collect();
        self.store.forget(person, &ids).await?;
        Ok(forgotten)
    }

    /// Forgets these memories for good; answers how many there were.
    pub async fn forget(&self, person: &str, ids: &[MemoryId]) -> Result<usize, MemoryError> {
        self.store.forget(person, ids).await
    }

    /// Every memory of `person`, oldest first.
    pub async fn list(&self, person: &str) -> Result<PersonMemories, MemoryError> {
        self.store.all(person).await
    }

    /// Keeps a finished exchange in the background (in chunks when the answer is long);
    /// a failure is logged, never the turn's.
    pub fn keep_turn(self: &Arc<Self>, person: &str, question: &str, answer: &str) {
        if !self.config.keep_turns || question.trim().is_empty() {
            return;
        }
        let texts = turn_chunks(question, answer);
        let (memories, person) = (Arc::clone(self), person.to_owned());
        self.keeping.spawn(async move {
            if let Err(error) = memories.keep(&person, texts, MemoryKind::Turn).await {
                tracing::warn!(%error, "an exchange was not kept in memory");
            }
        });
    }

    /// Waits until the exchanges being kept are kept (tests, shutdown).
    pub async fn settled(&self) {
        self.keeping.close();
        self.keeping.wait().await;
        self.keeping.reopen();
    }
}

/// The `limit` memories nearest to `query` from `floor` up, best first.
fn ranked(memories: &[Arc<Memory>], query: &[i8], limit: usize, floor: f32) -> Vec<Recalled> {
    let mut scored: Vec<(f32, usize)> = memories
        .iter()
        .enumerate()
        .map(|(index, memory)| (memory.similarity(query), index))
        .filter(|(similarity, _)| *similarity >= floor)
        .collect();
    let best_first = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0);
    if scored.len() > limit {
        scored.select_nth_unstable_by(limit, best_first);
        scored.truncate(limit);
    }
    scored.sort_by(best_first);
    scored
        .into_iter()
        .map(|(similarity, index)| Recalled::of(&memories[index], similarity))
        .collect()
}

/// The exchange as memories: the question with each chunk of the answer.
fn turn_chunks(question: &str, answer: &str) -> Vec<String> {
    let question = shortened(question.trim(), MAX_MEMORY_CHARS / 2);
    let answer: Vec<char> = answer.trim().chars().collect();
    let chunks: Vec<String> = if answer.is_empty() {
        vec![String::new()]
    } else {
        answer
            .chunks(TURN_CHUNK_CHARS)
            .take(MAX_TURN_CHUNKS)
            .map(|chunk| chunk.iter().collect())
            .collect()
    };
    chunks
        .into_iter()
        .map(|chunk| {
            if chunk.is_empty() {
                format!("They said: {question}")
            } else {
                format!("They said: {question}\nYou answered: {chunk}")
            }
        })
        .collect()
}

/// The recalled memories as the system prompt shows them.
pub fn prompt_of(recalled: &[Recalled]) -> Option<String> {
    if recalled.is_empty() {
        return None;
    }
    let lines: Vec<String> = recalled
        .iter()
        .map(|memory| {
            format!(
                "- ({}) {}",
                day_of(memory.created_at),
                memory.text.replace('\n', " / ")
            )
        })
        .collect();
    Some(format!(
        "What you remember about this person from earlier conversations (use it when it helps; it may be out of date):\n{}",
        lines.join("\n")
    ))
}

/// `YYYY-MM-DD` of unix seconds (UTC).
fn day_of(seconds: u64) -> String {
    // Howard Hinnant's civil-from-days.
    let days = (seconds / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let of_era = days.rem_euclid(146_097);
    let year_of_era = (of_era - of_era / 1_460 + of_era / 36_524 - of_era / 146_096) / 365;
    let day_of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_written_as_calendar_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(951_782_400), "2000-02-29");
        assert_eq!(day_of(1_796_601_600), "2026-12-07");
    }

    #[test]
    fn a_long_answer_is_kept_in_chunks_each_with_its_question() {
        let answer = "word ".repeat(400);
        let chunks = turn_chunks("tell me everything", &answer);
        assert_eq!(chunks.len(), MAX_TURN_CHUNKS);
        assert!(
            chunks
                .iter()
                .all(|chunk| chunk.starts_with("They said: tell me everything\nYou answered: "))
        );
        assert_eq!(turn_chunks("hi", ""), ["They said: hi"]);
    }
}
