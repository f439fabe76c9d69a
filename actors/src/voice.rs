//! Voice: the small traits speech engines implement (plugins never see ractor):
//! [`TextToSpeech`], [`SpeechToText`] and [`VoiceActivity`], and the [`SpeechSegmenter`]
//! that turns voice activity into the start and end of an utterance. Wake words follow.

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

/// The start or the end of an utterance, in frames since the stream began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpeechEdge {
    Started { frame: u64 },
    Ended { frame: u64 },
}

/// Turns speech probabilities, frame by frame, into utterances: speech starts at a frame
/// above `threshold` and ends after `min_silence_frames` below `threshold - 0.15`; an
/// utterance shorter than `min_speech_frames` is dropped as a click or a cough.
#[derive(Clone, Debug)]
pub struct SpeechSegmenter {
    threshold: f32,
    min_speech_frames: u64,
    min_silence_frames: u64,
    frame: u64,
    started: Option<u64>,
    /// Whether the utterance under way was announced (it lasted long enough).
    announced: bool,
    silent_since: Option<u64>,
}

impl SpeechSegmenter {
    /// Silero's defaults: a threshold of 0.5, 250 ms of speech at least, and an utterance
    /// ends after 500 ms of silence.
    pub fn new() -> Self {
        Self::with(0.5, 8, 16)
    }

    pub fn with(threshold: f32, min_speech_frames: u64, min_silence_frames: u64) -> Self {
        Self {
            threshold,
            min_speech_frames,
            min_silence_frames,
            frame: 0,
            started: None,
            announced: false,
            silent_since: None,
        }
    }

    /// Takes the next frame's probability; answers an edge when one is crossed (an end
    /// names the frame where the silence began).
    pub fn push(&mut self, probability: f32) -> Option<SpeechEdge> {
        let frame = self.frame;
        self.frame += 1;
        let Some(started) = self.started else {
            if probability >= self.threshold {
                self.started = Some(frame);
                self.silent_since = None;
            }
            return None;
        };
        if probability >= self.threshold - 0.15 {
            self.silent_since = None;
            if !self.announced && frame + 1 - started >= self.min_speech_frames {
                self.announced = true;
                return Some(SpeechEdge::Started { frame: started });
            }
            return None;
        }
        let silent_since = *self.silent_since.get_or_insert(frame);
        if frame + 1 - silent_since < self.min_silence_frames {
            return None;
        }
        let announced = std::mem::take(&mut self.announced);
        self.started = None;
        self.silent_since = None;
        announced.then_some(SpeechEdge::Ended {
            frame: silent_since,
        })
    }
}

impl Default for SpeechSegmenter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(probabilities: &[f32]) -> Vec<SpeechEdge> {
        let mut segmenter = SpeechSegmenter::with(0.5, 3, 4);
        probabilities
            .iter()
            .filter_map(|probability| segmenter.push(*probability))
            .collect()
    }

    #[test]
    fn an_utterance_starts_once_it_is_long_enough_and_ends_after_enough_silence() {
        let mut frames = vec![0.1; 5];
        frames.extend([0.9, 0.8, 0.4, 0.9, 0.1, 0.9]); // a dip to 0.4 is still speech
        frames.extend([0.1; 6]);
        assert_eq!(
            edges(&frames),
            [
                SpeechEdge::Started { frame: 5 },
                SpeechEdge::Ended { frame: 11 }
            ]
        );
    }

    #[test]
    fn a_click_is_not_an_utterance_and_silence_is_nothing() {
        let mut frames = vec![0.1, 0.9, 0.9];
        frames.extend([0.0; 8]);
        assert!(edges(&frames).is_empty());
        assert!(edges(&[0.0; 100]).is_empty());
    }

    #[test]
    fn speech_that_pauses_briefly_before_it_is_long_enough_still_starts() {
        // Speech, a pause shorter than the silence that ends it, more speech.
        let frames = [0.9, 0.9, 0.1, 0.9, 0.9, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(
            edges(&frames),
            [
                SpeechEdge::Started { frame: 0 },
                SpeechEdge::Ended { frame: 5 }
            ]
        );
    }
}
