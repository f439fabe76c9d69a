//! Wake words: the trait a wake-word engine implements, and [`WakeWordSpotter`], which
//! feeds it a stream of audio in chunks of any size and says when the word was heard.

use std::sync::Arc;

use super::SpeechError;

/// Samples in one wake-word chunk: 80 ms at 16 kHz.
pub const WAKE_CHUNK: usize = 1280;
/// Above this score, the word was said.
pub const WAKE_THRESHOLD: f32 = 0.5;

/// A stream's wake-word state between chunks, as its engine keeps it (empty: a new
/// stream).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WakeState(pub Vec<f32>);

/// Wake-word detection.
#[async_trait::async_trait]
pub trait WakeWord: Send + Sync + 'static {
    /// The wake word (`hey_jarvis_v0.1`).
    fn name(&self) -> &str;

    /// The score (0 to 1) that each whole [`WAKE_CHUNK`] of `samples` (16 kHz mono, -1 to
    /// 1) ends the wake word, the stream going on from `state`; answers them and the state
    /// after.
    async fn scores(
        &self,
        state: WakeState,
        samples: Vec<f32>,
    ) -> Result<(Vec<f32>, WakeState), SpeechError>;
}

/// Listens for the wake word in one stream of audio.
pub struct WakeWordSpotter {
    engine: Arc<dyn WakeWord>,
    state: WakeState,
    /// Samples of a chunk not yet whole.
    partial: Vec<f32>,
}

impl WakeWordSpotter {
    pub fn new(engine: Arc<dyn WakeWord>) -> Self {
        Self {
            engine,
            state: WakeState::default(),
            partial: Vec::with_capacity(WAKE_CHUNK),
        }
    }

    /// The engine's wake word.
    pub fn word(&self) -> &str {
        self.engine.name()
    }

    /// Takes `pcm` (16 kHz mono PCM16, little-endian) as heard; answers whether the wake
    /// word ended in it.
    pub async fn hear(&mut self, pcm: &[u8]) -> Result<bool, SpeechError> {
        self.partial.extend(
            pcm.chunks_exact(2)
                .map(|pair| f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0),
        );
        let whole = self.partial.len() / WAKE_CHUNK * WAKE_CHUNK;
        if whole == 0 {
            return Ok(false);
        }
        let samples: Vec<f32> = self.partial.drain(..whole).collect();
        let (scores, state) = self
            .engine
            .scores(std::mem::take(&mut self.state), samples)
            .await?;
        self.state = state;
        Ok(scores.iter().any(|score| *score > WAKE_THRESHOLD))
    }

    /// The audio heard after the last whole chunk (PCM16), which the engine has not scored
    /// yet: after the word, it is the start of what follows.
    pub fn take_pending(&mut self) -> Vec<u8> {
        self.partial
            .drain(..)
            .flat_map(|sample| ((sample * 32768.0).clamp(-32768.0, 32767.0) as i16).to_le_bytes())
            .collect()
    }

    /// Starts over, as for a new stream (after the word was heard and answered).
    pub fn reset(&mut self) {
        self.state = WakeState::default();
        self.partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Scores each chunk by its loudness, and records the chunk sizes it was given.
    #[derive(Default)]
    struct Loudness {
        calls: Mutex<Vec<usize>>,
    }

    #[async_trait::async_trait]
    impl WakeWord for Loudness {
        fn name(&self) -> &str {
            "loud"
        }

        async fn scores(
            &self,
            state: WakeState,
            samples: Vec<f32>,
        ) -> Result<(Vec<f32>, WakeState), SpeechError> {
            self.calls.lock().unwrap().push(samples.len());
            let scores = samples
                .chunks_exact(WAKE_CHUNK)
                .map(|chunk| chunk.iter().fold(0.0f32, |loudest, s| loudest.max(s.abs())))
                .collect();
            Ok((scores, state))
        }
    }

    fn pcm(sample: i16, samples: usize) -> Vec<u8> {
        sample.to_le_bytes().repeat(samples)
    }

    #[tokio::test]
    async fn audio_reaches_the_engine_in_whole_chunks_whatever_it_arrives_in() {
        let engine = Arc::new(Loudness::default());
        let mut spotter = WakeWordSpotter::new(engine.clone());
        for _ in 0..5 {
            assert!(!spotter.hear(&pcm(0, 700)).await.unwrap());
        }
        assert_eq!(*engine.calls.lock().unwrap(), [WAKE_CHUNK, WAKE_CHUNK]);
    }

    #[tokio::test]
    async fn a_score_above_the_threshold_is_the_word_heard() {
        let mut spotter = WakeWordSpotter::new(Arc::new(Loudness::default()));
        assert!(!spotter.hear(&pcm(8_000, WAKE_CHUNK)).await.unwrap());
        assert!(spotter.hear(&pcm(30_000, WAKE_CHUNK)).await.unwrap());
        spotter.reset();
        assert!(!spotter.hear(&pcm(30_000, WAKE_CHUNK - 1)).await.unwrap());
        assert_eq!(spotter.take_pending(), pcm(30_000, WAKE_CHUNK - 1));
        assert!(spotter.take_pending().is_empty());
    }
}
