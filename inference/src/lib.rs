//! Model providers: OpenAI-compatible Chat Completions (OpenAI, Ollama's `/v1`, vLLM,
//! llama.cpp server, LM Studio), the Anthropic Messages API, a GGUF chat model run in the
//! process (`local`), and `echo`. Each implements
//! `troupe_actors::ModelProvider`; [`build_provider`] turns a typed [`ProviderConfig`] into
//! one, with one registration line per kind.

mod anthropic;
mod config;
mod echo;
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod local;
mod local_chat;
mod openai;
mod remote_embedder;
pub mod voice;

pub use anthropic::ANTHROPIC_VERSION;
pub use anthropic::AnthropicProvider;
pub use config::{
    ANTHROPIC_DEFAULT_BASE_URL, BuiltProvider, ConfigError, OPENAI_DEFAULT_BASE_URL,
    ProviderConfig, ProviderKind, build_provider,
};
pub use echo::EchoProvider;
pub use http::warm_up;
pub use local_chat::{LocalChatProvider, MODEL_FILE, local_model_file};
pub use openai::OpenAiProvider;
pub use remote_embedder::RemoteEmbedder;

/// Scales `vector` to length 1 (an all-zero vector stays as it is): embedders answer unit
/// vectors, so that cosine similarity is their dot product.
pub(crate) fn unit_length(vector: &mut [f32]) {
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
    if norm > 0.0 {
        for value in vector {
            *value /= norm;
        }
    }
}
