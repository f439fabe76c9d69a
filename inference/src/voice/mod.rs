//! Voice: the protocols and engines that let Troupe hear and speak. So far the Wyoming
//! protocol ([`wyoming`]), which Home Assistant's voice services and satellites speak; the
//! engines (VAD, wake word, speech to text, text to speech) and the satellite pipeline are
//! still to come (see docs/voice.md).

pub mod wyoming;
