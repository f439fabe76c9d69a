//! Voice: the protocols and engines that let Troupe hear and speak. So far the Wyoming
//! protocol ([`wyoming`]), which Home Assistant's voice services and satellites speak;
//! speech in and out through Wyoming services ([`WyomingStt`], [`WyomingTts`]) and
//! OpenAI-compatible audio endpoints ([`OpenAiStt`], [`OpenAiTts`]). Voice activity runs
//! on the local models (`crate::local::SileroVad`). [`WyomingSatellite`] runs the pipeline
//! for a Home Assistant voice satellite, as a bridge; its [`Ear`] (wake word, then voice
//! activity, then speech to text) also hears the web page's hands-free microphone.

mod ear;
mod openai_audio;
mod recording;
mod satellite;
mod satellite_link;
mod voice_note;
mod voice_reply;
pub mod wyoming;
mod wyoming_client;
mod wyoming_stt;
mod wyoming_tts;

pub use ear::{Ear, EarEvent, WAKE_TIMEOUT};
pub use openai_audio::{OpenAiStt, OpenAiTts};
pub use recording::{Recording, decode_recording};
pub use satellite::{SATELLITE_PLATFORM, VoiceEngines, WyomingSatellite};
pub use voice_note::{
    MAX_VOICE_NOTE_BYTES, MAX_VOICE_NOTE_SECONDS, VoiceNoteError, VoiceNotes, decode_ogg_opus,
};
pub use voice_reply::{SpokenNotes, VoiceReplyError, encode_ogg_opus};
pub use wyoming_client::check_wyoming_uri;
pub use wyoming_stt::WyomingStt;
pub use wyoming_tts::WyomingTts;
