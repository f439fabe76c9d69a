//! Voice: the protocols and engines that let Troupe hear and speak. So far the Wyoming
//! protocol ([`wyoming`]), which Home Assistant's voice services and satellites speak, and
//! speech in and out through Wyoming services ([`WyomingStt`], [`WyomingTts`]); the other
//! engines (VAD, wake word, Piper in the process) and the satellite pipeline are still to
//! come (see docs/voice.md).

pub mod wyoming;
mod wyoming_client;
mod wyoming_stt;
mod wyoming_tts;

pub use wyoming_stt::WyomingStt;
pub use wyoming_tts::WyomingTts;
