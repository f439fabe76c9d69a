//! Voice: the small traits speech engines implement (plugins never see ractor):
//! [`TextToSpeech`], [`SpeechToText`] and [`VoiceActivity`]; the [`SpeechSegmenter`] that
//! turns voice activity into the start and end of an utterance; and the [`Listener`] that
//! hears an utterance in a stream of audio and transcribes it as it is spoken; and
//! [`speakable_sentences`], what a voice says of a Markdown reply (and [`SentenceFeed`],
//! the same as the reply streams); the [`WakeWord`]
//! trait with the [`WakeWordSpotter`] that listens for it; and [`VoiceNoteReader`], what
//! hears the voice notes people send on messaging platforms.

use tokio::sync::mpsc;

mod listener;
mod segmenter;
mod speakable;
mod wake;

pub use listener::{Heard, LISTENING_FORMAT, Listener, ListenerConfig};
pub use segmenter::{SpeechEdge, SpeechSegmenter};
pub use speakable::{MAX_SPOKEN_CHARS, SentenceFeed, speakable_sentences};
pub use wake::{WAKE_CHUNK, WAKE_THRESHOLD, WakeState, WakeWord, WakeWordSpotter};

/// Raw PCM's shape: samples per second, bytes per sample, channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioFormat {
    pub rate: u32,
    pub width: u16,
    pub channels: u16,
}

impl AudioFormat {
    /// Seconds of audio in `bytes` of PCM.
    pub fn seconds(&self, bytes: usize) -> f64 {
        let per_second = f64::from(self.rate) * f64::from(self.width) * f64::from(self.channels);
        if per_second == 0.0 {
            0.0
        } else {
            bytes as f64 / per_second
        }
    }
}

impl AudioFormat {
    /// `pcm` in this format as a WAV file.
    pub fn wav(&self, pcm: &[u8]) -> Vec<u8> {
        let block = u32::from(self.width) * u32::from(self.channels);
        let length = u32::try_from(pcm.len()).unwrap_or(u32::MAX);
        let mut wav = Vec::with_capacity(44 + pcm.len());
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&length.saturating_add(36).to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
        wav.extend_from_slice(&self.channels.to_le_bytes());
        wav.extend_from_slice(&self.rate.to_le_bytes());
        wav.extend_from_slice(&(self.rate * block).to_le_bytes());
        wav.extend_from_slice(&(block as u16).to_le_bytes());
        wav.extend_from_slice(&(self.width * 8).to_le_bytes());
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&length.to_le_bytes());
        wav.extend_from_slice(pcm);
        wav
    }
}

/// A piece of audio as it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioChunk {
    pub format: AudioFormat,
    pub pcm: Vec<u8>,
}

/// Why speech could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error("`{0}` is not a speech service address (tcp://HOST:PORT)")]
    BadAddress(String),
    #[error("the speech service {service} cannot be reached: {source}")]
    Unreachable {
        service: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the speech service {service} did not answer within {seconds} s")]
    TimedOut { service: String, seconds: u64 },
    #[error("the speech service {service} refused: {reason}")]
    Refused { service: String, reason: String },
    #[error("the speech service {service} broke the protocol: {reason}")]
    Protocol { service: String, reason: String },
    #[error("the speech engine {service} failed: {source}")]
    Failed {
        service: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the recording cannot be heard: {0}")]
    Undecodable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the audio's listener has gone")]
    ListenerGone,
    #[error(transparent)]
    Model(#[from] crate::local_model::PoolError),
}

/// Text to speech.
#[async_trait::async_trait]
pub trait TextToSpeech: Send + Sync + 'static {
    /// The engine's configured name.
    fn name(&self) -> &str;

    /// Speaks `text`, sending its audio to `audio` chunk by chunk as it is made (so that it
    /// can play before the rest is ready); answers the audio's format.
    async fn speak(
        &self,
        text: &str,
        audio: &mpsc::Sender<AudioChunk>,
    ) -> Result<AudioFormat, SpeechError>;
}

/// Voice notes: a recording as a messaging platform sends it, to text.
#[async_trait::async_trait]
pub trait VoiceNoteReader: Send + Sync + 'static {
    /// The largest recording it takes, in bytes (a bridge fetches no more).
    fn max_bytes(&self) -> u64;

    /// What was said in `recording` (its type as the platform named it, if it did).
    async fn transcribe(
        &self,
        recording: Vec<u8>,
        mime_type: Option<&str>,
    ) -> Result<String, SpeechError>;
}

/// Voice notes to send: a reply, spoken, as a recording messaging platforms take (Ogg
/// Opus).
#[async_trait::async_trait]
pub trait VoiceNoteWriter: Send + Sync + 'static {
    async fn voice_note(&self, text: &str) -> Result<VoiceNote, SpeechError>;
}

/// The most points in a voice note's waveform (Discord's limit).
pub const MAX_WAVEFORM_POINTS: usize = 256;

/// A reply spoken as a voice note: the recording (Ogg Opus), how long it plays, and the
/// loudness preview platforms draw (one point per 100 ms or more, at most
/// [`MAX_WAVEFORM_POINTS`], 0 to 255), taken from the speech it was made from.
#[derive(Clone, Debug, PartialEq)]
pub struct VoiceNote {
    recording: Vec<u8>,
    seconds: f64,
    waveform: Vec<u8>,
}

impl VoiceNote {
    /// `recording`, made from `speech` (mono PCM16 at `rate`).
    pub fn new(recording: Vec<u8>, speech: &[i16], rate: u32) -> Self {
        let seconds = speech.len() as f64 / f64::from(rate.max(1));
        let tenths = (seconds * 10.0).ceil() as usize;
        let points = tenths.clamp(1, MAX_WAVEFORM_POINTS);
        let loudness: Vec<f64> = (0..points)
            .map(|point| {
                let window =
                    &speech[point * speech.len() / points..(point + 1) * speech.len() / points];
                let energy: f64 = window.iter().map(|&sample| f64::from(sample).powi(2)).sum();
                (energy / window.len().max(1) as f64).sqrt()
            })
            .collect();
        let loudest = loudness.iter().copied().fold(0.0, f64::max);
        let waveform = loudness
            .iter()
            .map(|&level| {
                if loudest > 0.0 {
                    (level / loudest * 255.0).round() as u8
                } else {
                    0
                }
            })
            .collect();
        Self {
            recording,
            seconds,
            waveform,
        }
    }

    /// The recording: Ogg Opus.
    pub fn recording(&self) -> &[u8] {
        &self.recording
    }

    pub const fn seconds(&self) -> f64 {
        self.seconds
    }

    pub fn waveform(&self) -> &[u8] {
        &self.waveform
    }
}

/// Speech to text.
#[async_trait::async_trait]
pub trait SpeechToText: Send + Sync + 'static {
    /// The engine's configured name.
    fn name(&self) -> &str;

    /// Transcribes the speech arriving on `audio` (PCM in `format`, in chunks as it is
    /// heard; the channel's end is the end of speech); answers the text.
    async fn transcribe(
        &self,
        format: AudioFormat,
        audio: mpsc::Receiver<Vec<u8>>,
    ) -> Result<String, SpeechError>;
}

/// Samples in one voice-activity frame: 32 ms at 16 kHz.
pub const VAD_FRAME: usize = 512;
/// The sample rate voice activity is measured at.
pub const VAD_RATE: u32 = 16_000;

/// A stream's voice-activity state between frames, as its engine keeps it (empty: a new
/// stream).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VadState(pub Vec<f32>);

/// Voice activity detection.
#[async_trait::async_trait]
pub trait VoiceActivity: Send + Sync + 'static {
    /// The engine's configured name.
    fn name(&self) -> &str;

    /// The probability of speech in each whole [`VAD_FRAME`] of `samples` (16 kHz mono,
    /// -1 to 1), the stream going on from `state`; answers them and the state after.
    async fn speech(
        &self,
        state: VadState,
        samples: Vec<f32>,
    ) -> Result<(Vec<f32>, VadState), SpeechError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voice_notes_waveform_has_a_point_per_tenth_of_a_second_scaled_to_the_loudest() {
        // A second of silence, then two of speech, at 16 kHz.
        let speech = [vec![0i16; 16_000], vec![8_000i16; 32_000]].concat();
        let note = VoiceNote::new(b"OggS".to_vec(), &speech, 16_000);
        assert!((note.seconds() - 3.0).abs() < f64::EPSILON);
        assert_eq!(note.waveform().len(), 30);
        assert!(note.waveform()[..10].iter().all(|&point| point == 0));
        assert!(note.waveform()[10..].iter().all(|&point| point == 255));
        assert_eq!(note.recording(), b"OggS");
    }

    #[test]
    fn a_long_or_silent_voice_note_keeps_within_the_waveforms_limits() {
        let long = VoiceNote::new(Vec::new(), &vec![100i16; 16_000 * 60], 16_000);
        assert_eq!(long.waveform().len(), MAX_WAVEFORM_POINTS);
        let silent = VoiceNote::new(Vec::new(), &[], 16_000);
        assert_eq!((silent.waveform(), silent.seconds()), (&[0u8][..], 0.0));
    }
}
