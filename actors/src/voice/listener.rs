//! [`Listener`]: from a stream of audio to what was said. Audio (16 kHz mono PCM16, in
//! chunks of any size, as it is heard) goes through voice activity detection; when speech
//! starts, the utterance (with the moment before it) streams to speech to text at once, so
//! that the transcript is ready soon after the speech ends.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{
    AudioFormat, SpeechEdge, SpeechError, SpeechSegmenter, SpeechToText, VAD_FRAME, VAD_RATE,
    VadState, VoiceActivity,
};

/// The audio a listener takes: 16 kHz mono PCM16.
pub const LISTENING_FORMAT: AudioFormat = AudioFormat {
    rate: VAD_RATE,
    width: 2,
    channels: 1,
};

/// How a listener cuts utterances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Frames kept from before speech is detected and sent with it (the first syllable
    /// starts before the detector is sure).
    pub preroll_frames: usize,
    /// The longest utterance, in frames; a longer one is cut there.
    pub max_utterance_frames: usize,
    /// The silence, in frames, that ends an utterance: shorter answers sooner, longer
    /// lets people pause.
    pub end_of_speech_frames: u64,
}

impl ListenerConfig {
    /// The frames of `millis` of audio, at least one (rounded up).
    pub const fn frames_of(millis: u64) -> u64 {
        let frame_millis = (VAD_FRAME as u64 * 1000) / VAD_RATE as u64;
        let frames = millis.div_ceil(frame_millis);
        if frames == 0 { 1 } else { frames }
    }
}

impl Default for ListenerConfig {
    /// Half a second before speech; thirty seconds of speech at most; half a second of
    /// silence ends it.
    fn default() -> Self {
        Self {
            preroll_frames: 16,
            max_utterance_frames: 30 * VAD_RATE as usize / VAD_FRAME,
            end_of_speech_frames: 16,
        }
    }
}

/// What was said, and when, in frames since the stream began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    pub text: String,
    pub started: u64,
    pub ended: u64,
}

/// An utterance being transcribed.
struct Utterance {
    started: u64,
    frames: usize,
    audio: mpsc::Sender<Vec<u8>>,
    transcript: JoinHandle<Result<String, SpeechError>>,
}

/// Hears utterances in one stream of audio.
pub struct Listener {
    vad: Arc<dyn VoiceActivity>,
    stt: Arc<dyn SpeechToText>,
    config: ListenerConfig,
    state: VadState,
    segmenter: SpeechSegmenter,
    /// Samples of a frame not yet whole.
    partial: Vec<f32>,
    /// The last frames before speech (PCM16), oldest first.
    preroll: VecDeque<Vec<u8>>,
    frame: u64,
    utterance: Option<Utterance>,
}

fn pcm16(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|sample| ((sample.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
        .collect()
}

impl Listener {
    pub fn new(
        vad: Arc<dyn VoiceActivity>,
        stt: Arc<dyn SpeechToText>,
        config: ListenerConfig,
    ) -> Self {
        Self {
            vad,
            stt,
            config,
            state: VadState::default(),
            segmenter: SpeechSegmenter::with(0.5, 8, config.end_of_speech_frames),
            partial: Vec::with_capacity(VAD_FRAME),
            preroll: VecDeque::with_capacity(config.preroll_frames + 1),
            frame: 0,
            utterance: None,
        }
    }

    /// Takes `pcm` (16 kHz mono PCM16, little-endian) as heard; answers what was said when
    /// an utterance ended in it.
    pub async fn hear(&mut self, pcm: &[u8]) -> Result<Option<Heard>, SpeechError> {
        self.partial.extend(
            pcm.chunks_exact(2)
                .map(|pair| f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0),
        );
        let whole = self.partial.len() / VAD_FRAME * VAD_FRAME;
        if whole == 0 {
            return Ok(None);
        }
        let samples: Vec<f32> = self.partial.drain(..whole).collect();
        let (probabilities, state) = self
            .vad
            .speech(std::mem::take(&mut self.state), samples.clone())
            .await?;
        self.state = state;
        let mut heard = None;
        for (frame, probability) in samples.chunks_exact(VAD_FRAME).zip(probabilities) {
            if let Some(done) = self.frame_heard(pcm16(frame), probability).await? {
                heard = Some(done);
            }
        }
        Ok(heard)
    }

    /// An utterance is under way.
    pub const fn is_hearing(&self) -> bool {
        self.utterance.is_some()
    }

    /// The stream ended: an utterance under way ends here.
    pub async fn finish(&mut self) -> Result<Option<Heard>, SpeechError> {
        self.end_utterance().await
    }

    async fn frame_heard(
        &mut self,
        frame: Vec<u8>,
        probability: f32,
    ) -> Result<Option<Heard>, SpeechError> {
        let index = self.frame;
        self.frame += 1;
        let edge = self.segmenter.push(probability);
        if let Some(utterance) = &mut self.utterance {
            utterance.frames += 1;
            let _ = utterance.audio.send(frame).await;
            let too_long = utterance.frames >= self.config.max_utterance_frames;
            if too_long || matches!(edge, Some(SpeechEdge::Ended { .. })) {
                if too_long {
                    self.segmenter.cut();
                }
                return self.end_utterance().await;
            }
            return Ok(None);
        }
        self.preroll.push_back(frame);
        if self.preroll.len() > self.config.preroll_frames {
            self.preroll.pop_front();
        }
        if let Some(SpeechEdge::Started { frame: started }) = edge {
            self.start_utterance(started.min(index)).await;
        }
        Ok(None)
    }

    async fn start_utterance(&mut self, started: u64) {
        let (audio, heard) = mpsc::channel(64);
        let stt = Arc::clone(&self.stt);
        let transcript = tokio::spawn(async move { stt.transcribe(LISTENING_FORMAT, heard).await });
        let mut frames = 0;
        for frame in self.preroll.drain(..) {
            frames += 1;
            let _ = audio.send(frame).await;
        }
        self.utterance = Some(Utterance {
            started,
            frames,
            audio,
            transcript,
        });
    }

    async fn end_utterance(&mut self) -> Result<Option<Heard>, SpeechError> {
        let Some(utterance) = self.utterance.take() else {
            return Ok(None);
        };
        drop(utterance.audio);
        let waiting = tracing::debug_span!("voice_transcribe", stt = %self.stt.name());
        let text = utterance
            .transcript
            .instrument(waiting)
            .await
            .map_err(|error| SpeechError::Protocol {
                service: self.stt.name().to_owned(),
                reason: error.to_string(),
            })??;
        Ok(Some(Heard {
            text,
            started: utterance.started,
            ended: self.frame,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::CountingSpeechToText;

    /// Speech wherever a frame is loud.
    struct Loudness;

    #[async_trait::async_trait]
    impl VoiceActivity for Loudness {
        fn name(&self) -> &str {
            "loudness"
        }

        async fn speech(
            &self,
            state: VadState,
            samples: Vec<f32>,
        ) -> Result<(Vec<f32>, VadState), SpeechError> {
            let loud = samples
                .chunks_exact(VAD_FRAME)
                .map(|frame| if frame[0].abs() > 0.1 { 0.9 } else { 0.0 })
                .collect();
            Ok((loud, state))
        }
    }

    /// What the counting speech to text answers for `count` frames.
    fn frames_said(count: usize) -> String {
        format!("{} bytes", count * VAD_FRAME * 2)
    }

    fn frames(loud: bool, count: usize) -> Vec<u8> {
        let sample: i16 = if loud { 16_000 } else { 0 };
        std::iter::repeat_n(sample.to_le_bytes(), VAD_FRAME * count)
            .flatten()
            .collect()
    }

    fn listener(config: ListenerConfig) -> Listener {
        Listener::new(Arc::new(Loudness), Arc::new(CountingSpeechToText), config)
    }

    #[tokio::test]
    async fn an_utterance_is_heard_with_the_moment_before_it_in_chunks_of_any_size() {
        let mut listener = listener(ListenerConfig {
            preroll_frames: 12,
            max_utterance_frames: 1_000,
            end_of_speech_frames: 16,
        });
        let audio = [frames(false, 20), frames(true, 30), frames(false, 40)].concat();
        let mut heard = Vec::new();
        for chunk in audio.chunks(700) {
            heard.extend(listener.hear(chunk).await.unwrap());
        }
        assert_eq!(heard.len(), 1, "{heard:?}");
        assert_eq!(heard[0].started, 20);
        // 12 frames before detection (4 of silence, 8 of speech), then the rest of the
        // speech and the 16 silent frames that ended it.
        assert_eq!(heard[0].text, frames_said(50));
        assert_eq!(heard[0].ended, 66);
        assert_eq!(listener.finish().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_long_utterance_is_cut_and_the_end_of_the_stream_ends_one() {
        let mut listener = listener(ListenerConfig {
            preroll_frames: 8,
            max_utterance_frames: 40,
            end_of_speech_frames: 16,
        });
        let heard = listener.hear(&frames(true, 60)).await.unwrap();
        assert_eq!(heard.map(|heard| heard.text), Some(frames_said(40)));
        // The speech goes on as a new utterance, under way when the stream ends, counted
        // from the start of the stream.
        let rest = listener.finish().await.unwrap().expect("heard");
        assert_eq!((rest.text, rest.started), (frames_said(20), 40));
    }

    #[tokio::test]
    async fn a_shorter_end_of_speech_window_ends_the_utterance_sooner() {
        let mut listener = listener(ListenerConfig {
            end_of_speech_frames: ListenerConfig::frames_of(150),
            ..ListenerConfig::default()
        });
        let audio = [frames(false, 20), frames(true, 30), frames(false, 40)].concat();
        let heard = listener.hear(&audio).await.unwrap().expect("heard");
        // 150 ms is 5 frames of 32 ms: the speech ended at frame 50, heard at 55.
        assert_eq!((heard.started, heard.ended), (20, 55));
        assert_eq!(ListenerConfig::frames_of(500), 16);
        assert_eq!(ListenerConfig::frames_of(0), 1);
    }

    #[tokio::test]
    async fn ten_minutes_of_silence_hear_nothing_and_keep_only_the_preroll() {
        let mut listener = listener(ListenerConfig::default());
        let chunk = frames(false, 2);
        // Ten minutes in 64 ms chunks, as a satellite streams them.
        for _ in 0..(10 * 60 * 1000 / 64) {
            assert_eq!(listener.hear(&chunk).await.unwrap(), None);
            assert!(listener.preroll.len() <= listener.config.preroll_frames);
            assert!(listener.partial.len() < VAD_FRAME);
        }
        assert!(!listener.is_hearing());
        assert_eq!(listener.finish().await.unwrap(), None);
    }
}
