//! `[memory]`: long-term memory by meaning (see `troupe_actors::memory`), on the local
//! embedding model of `[models]`.

use serde::{Deserialize, Serialize};
use troupe_actors::memory::MemoryConfig;

use super::{ConfigError, invalid};

/// `[memory]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemorySettings {
    /// Keep and recall memories (when the embedding model is there).
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
    /// Most memories one turn recalls.
    #[serde(default = "default_top_k")]
    pub(crate) top_k: usize,
    /// Least cosine similarity a recalled memory has with the message (-1 to 1).
    #[serde(default = "default_min_similarity")]
    pub(crate) min_similarity: f32,
    /// Most tokens recalled memories add to a turn's prompt.
    #[serde(default = "default_max_prompt_tokens")]
    pub(crate) max_prompt_tokens: usize,
    /// Keep each finished exchange automatically.
    #[serde(default = "yes")]
    pub(crate) keep_turns: bool,
}

const fn yes() -> bool {
    true
}

const fn default_top_k() -> usize {
    MemoryConfig::DEFAULT.top_k
}

const fn default_min_similarity() -> f32 {
    MemoryConfig::DEFAULT.min_similarity
}

const fn default_max_prompt_tokens() -> usize {
    MemoryConfig::DEFAULT.max_prompt_tokens
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            top_k: default_top_k(),
            min_similarity: default_min_similarity(),
            max_prompt_tokens: default_max_prompt_tokens(),
            keep_turns: true,
        }
    }
}

impl MemorySettings {
    /// Checks every key; the error names the first one out of range.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=50).contains(&self.top_k) {
            return Err(invalid("memory.top_k", "must be between 1 and 50"));
        }
        if !(-1.0..=1.0).contains(&self.min_similarity) {
            return Err(invalid("memory.min_similarity", "must be between -1 and 1"));
        }
        if !(16..=8192).contains(&self.max_prompt_tokens) {
            return Err(invalid(
                "memory.max_prompt_tokens",
                "must be between 16 and 8192",
            ));
        }
        Ok(())
    }

    pub(crate) const fn config(&self) -> MemoryConfig {
        MemoryConfig {
            top_k: self.top_k,
            min_similarity: self.min_similarity,
            max_prompt_tokens: self.max_prompt_tokens,
            keep_turns: self.keep_turns,
        }
    }
}
