//! Models that run in the process: ONNX Runtime, loaded from a library file at run time
//! (`ort` with `load-dynamic`, so a node without it still starts), and the sentence
//! embedder built on it. The models run in `troupe_actors::local_model` pools: this module
//! only loads them and runs one batch.

mod chat;
mod gguf_tokenizer;
pub mod install;
mod piper;
mod runtime;
mod sentence;
mod silero;
mod wakeword;

pub use chat::{
    ChatModelError, ChatTurn, Generated, Generation, GgufChatLoader, GgufChatModel, MAX_CONTEXT,
};
pub use piper::{Piper, PiperError, PiperFiles, PiperModel, PiperVoice, PooledPiper};
pub use runtime::{Device, ORT_DYLIB_PATH, OnnxRuntime, RuntimeError};
pub use sentence::{MAX_TOKENS, SentenceEmbedder, SentenceFiles, SentenceModel};
pub use silero::{PooledVad, SileroModel, SileroVad, VadError, VadRequest};
pub use troupe_espeak::{ESPEAK_LIBRARY, Espeak, EspeakError, EspeakPaths};
pub use wakeword::{
    OpenWakeWord, PooledWakeWord, WakeRequest, WakeWordError, WakeWordFiles, WakeWordModel,
};
