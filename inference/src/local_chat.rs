//! `kind = "local"`: a chat model that runs in the process (a GGUF file, with candle), so
//! a machine with no network and no keys still has an assistant. Its pool
//! (`troupe_actors::local_model`) runs one reply at a time on a thread of its own; the
//! pool's child joins the node's supervisor, and the model loads at the first turn.
//!
//! `model` names a model in the models dir (`smollm2-135m-instruct` is
//! `<dir>/smollm2-135m-instruct/model.gguf`, as `troupe models install` lays it out) or is
//! the path of a `.gguf` file. Replies are sampled at a low temperature from a fixed seed,
//! so the same conversation gets the same reply. The model cannot call tools: a request's
//! tools are not offered to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use troupe_actors::local_model::{LocalModelChild, LocalModelPool, PoolConfig, PoolError};
use troupe_actors::provider::{
    ChatRequest, Completion, DeltaSink, ModelProvider, ProviderError, ProviderErrorKind,
    ProviderInfo,
};

use crate::local::{ChatTurn, Generation, GgufChatLoader, GgufChatModel};

/// The file a model of the models dir keeps its weights in.
pub const MODEL_FILE: &str = "model.gguf";
/// Most tokens of reply when `max_tokens` is not set.
const DEFAULT_MAX_TOKENS: u32 = 512;
/// Low, as small models wander at higher temperatures.
const TEMPERATURE: f64 = 0.2;
const SEED: u64 = 299_792_458;

/// Where the GGUF file of `model` is: a path as given when it names a `.gguf` file or has
/// a `/`, else `<models_dir>/<model>/model.gguf`.
pub fn local_model_file(model: &str, models_dir: &Path) -> PathBuf {
    if model.ends_with(".gguf") || model.contains('/') {
        PathBuf::from(model)
    } else {
        models_dir.join(model).join(MODEL_FILE)
    }
}

/// A chat model running on this node.
pub struct LocalChatProvider {
    info: ProviderInfo,
    pool: LocalModelPool<GgufChatModel>,
    max_tokens: usize,
}

impl LocalChatProvider {
    /// The provider `name` for the model in `file`, and the child its pool runs as; at most
    /// `queue` replies wait for the model (more are refused as rate-limited).
    pub fn new(
        name: &str,
        model: &str,
        file: &Path,
        max_tokens: Option<u32>,
        queue: usize,
    ) -> (Self, LocalModelChild<GgufChatModel>) {
        let (pool, child) = LocalModelPool::new(
            model,
            GgufChatLoader::new(file),
            PoolConfig {
                queue,
                max_batch: 1,
            },
        );
        let provider = Self {
            info: ProviderInfo {
                name: name.to_owned(),
                kind: "local".to_owned(),
                model: model.to_owned(),
            },
            pool,
            max_tokens: max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) as usize,
        };
        (provider, child)
    }

    fn error(&self, error: &PoolError) -> ProviderError {
        let kind = match error {
            PoolError::Busy { .. } => ProviderErrorKind::RateLimited,
            PoolError::Unavailable { .. } | PoolError::Stopped { .. } => {
                ProviderErrorKind::Unavailable
            }
            PoolError::Failed { .. } => ProviderErrorKind::Server,
            PoolError::Crashed { .. } => ProviderErrorKind::Crashed,
            PoolError::WrongCount { .. } => ProviderErrorKind::Protocol,
        };
        ProviderError::new(kind, &self.info.name, error.to_string())
    }
}

#[async_trait::async_trait]
impl ModelProvider for LocalChatProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        deltas: &DeltaSink,
    ) -> Result<Completion, ProviderError> {
        let cancel = CancellationToken::new();
        // A caller that stops waiting (a stop, a timeout) stops the generation.
        let _stop_when_dropped = cancel.clone().drop_guard();
        let generation = Generation {
            system: request.system_prompt.clone(),
            turns: request
                .messages
                .iter()
                .map(|message| ChatTurn {
                    role: message.role,
                    text: Arc::clone(&message.content),
                })
                .collect(),
            max_tokens: self.max_tokens,
            temperature: TEMPERATURE,
            seed: SEED,
            deltas: if request.stream {
                deltas.clone()
            } else {
                DeltaSink::discard()
            },
            cancel,
        };
        let generated = self
            .pool
            .run(vec![generation])
            .await
            .map_err(|error| self.error(&error))?
            .pop()
            .ok_or_else(|| {
                ProviderError::new(
                    ProviderErrorKind::Protocol,
                    &self.info.name,
                    "the local model answered nothing",
                )
            })?;
        Ok(Completion {
            text: generated.text,
            tool_calls: Vec::new(),
            finish_reason: generated.finish_reason,
            usage: Some(generated.usage),
        })
    }
}
