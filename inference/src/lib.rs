//! Model providers: OpenAI-compatible Chat Completions (OpenAI, Ollama's `/v1`, vLLM,
//! llama.cpp server, LM Studio), the Anthropic Messages API, and `echo`. Each implements
//! `troupe_actors::ModelProvider`; [`build_provider`] turns a typed [`ProviderConfig`] into
//! one, with one registration line per kind.

mod anthropic;
mod config;
mod echo;
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod local;
mod openai;
mod remote_embedder;

pub use anthropic::ANTHROPIC_VERSION;
pub use anthropic::AnthropicProvider;
pub use config::{
    ANTHROPIC_DEFAULT_BASE_URL, ConfigError, OPENAI_DEFAULT_BASE_URL, ProviderConfig, ProviderKind,
    build_provider,
};
pub use echo::EchoProvider;
pub use http::warm_up;
pub use openai::OpenAiProvider;
pub use remote_embedder::RemoteEmbedder;
