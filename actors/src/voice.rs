//! Voice: the small traits speech engines implement (plugins never see ractor). So far
//! [`TextToSpeech`] and [`SpeechToText`]; voice activity and wake words follow.

use tokio::sync::mpsc;

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
        source: std::io::Error,
    },
    #[error("the speech service {service} did not answer within {seconds} s")]
    TimedOut { service: String, seconds: u64 },
    #[error("the speech service {service} refused: {reason}")]
    Refused { service: String, reason: String },
    #[error("the speech service {service} broke the protocol: {reason}")]
    Protocol { service: String, reason: String },
    #[error("the audio's listener has gone")]
    ListenerGone,
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
