//! Voice: the protocols and engines that let Troupe hear and speak. So far the Wyoming
//! protocol ([`wyoming`]), which Home Assistant's voice services and satellites speak, and
//! text to speech through a Wyoming service ([`WyomingTts`]); the other engines (VAD, wake
//! word, speech to text, Piper in the process) and the satellite pipeline are still to
//! come (see docs/voice.md).

pub mod wyoming;
mod wyoming_tts;

pub use wyoming_tts::WyomingTts;
