//! Voice: the protocols and engines that let Troupe hear and speak. So far the Wyoming
//! protocol ([`wyoming`]), which Home Assistant's voice services and satellites speak;
//! speech in and out through Wyoming services ([`WyomingStt`], [`WyomingTts`]) and
//! OpenAI-compatible audio endpoints ([`OpenAiStt`], [`OpenAiTts`]). Voice activity runs
//! on the local models (`crate::local::SileroVad`). The wake word, Piper in the process
//! and the satellite pipeline are still to come (see docs/voice.md).

mod openai_audio;
pub mod wyoming;
mod wyoming_client;
mod wyoming_stt;
mod wyoming_tts;

pub use openai_audio::{OpenAiStt, OpenAiTts};
pub use wyoming_stt::WyomingStt;
pub use wyoming_tts::WyomingTts;
