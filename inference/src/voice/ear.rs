//! What a microphone is for at each moment (a satellite's, or a web page's hands-free
//! listening): nothing yet (before [`Ear::start`]), the wake word (when one is wanted and a
//! wake-word engine is configured), or an utterance. After the wake word, an utterance must start
//! within [`WAKE_TIMEOUT`], or the ear goes back to waiting for the word.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use troupe_actors::voice::{
    Listener, ListenerConfig, SpeechError, SpeechToText, VoiceActivity, WakeWord, WakeWordSpotter,
};

/// How long after the wake word speech may take to start.
pub const WAKE_TIMEOUT: Duration = Duration::from_secs(8);

/// What a piece of audio brought.
#[derive(Debug, PartialEq, Eq)]
pub enum EarEvent {
    Nothing,
    /// The wake word ended in it.
    WakeWord,
    /// Speech started in it (the satellite is told `voice-started`).
    VoiceStarted,
    /// No speech followed the wake word in time: the ear waits for the word again.
    GaveUp,
    /// An utterance ended in it: what was said. `unannounced` when its start was not
    /// answered as [`EarEvent::VoiceStarted`] (it started in the same audio).
    Said {
        text: String,
        unannounced: bool,
    },
}

enum Mode {
    /// No `run-pipeline` yet.
    Idle,
    WaitingForWord(WakeWordSpotter),
    Listening {
        listener: Listener,
        /// When listening began after the wake word (`None`: no wake word is needed).
        woken: Option<Instant>,
    },
}

/// One microphone's ear.
pub struct Ear {
    vad: Arc<dyn VoiceActivity>,
    stt: Arc<dyn SpeechToText>,
    wake: Option<Arc<dyn WakeWord>>,
    config: ListenerConfig,
    /// Each utterance needs the wake word first.
    needs_word: bool,
    mode: Mode,
    /// The utterance under way was answered as [`EarEvent::VoiceStarted`].
    announced: bool,
}

impl Ear {
    pub fn new(
        vad: Arc<dyn VoiceActivity>,
        stt: Arc<dyn SpeechToText>,
        wake: Option<Arc<dyn WakeWord>>,
        config: ListenerConfig,
    ) -> Self {
        Self {
            vad,
            stt,
            wake,
            config,
            needs_word: false,
            mode: Mode::Idle,
            announced: false,
        }
    }

    /// The satellite asked for a pipeline run: `wake_here` when it leaves the wake word to
    /// Troupe. Without a wake-word engine every utterance is taken.
    pub fn start(&mut self, wake_here: bool) {
        self.needs_word = wake_here && self.wake.is_some();
        self.await_next_utterance();
    }

    /// The wake word's name, while one is listened for.
    pub fn wake_word(&self) -> Option<&str> {
        self.needs_word
            .then(|| self.wake.as_deref().map(WakeWord::name))
            .flatten()
    }

    fn await_next_utterance(&mut self) {
        self.announced = false;
        self.mode = match (&self.wake, self.needs_word) {
            (Some(wake), true) => Mode::WaitingForWord(WakeWordSpotter::new(Arc::clone(wake))),
            _ => Mode::Listening {
                listener: self.listener(),
                woken: None,
            },
        };
    }

    fn listener(&self) -> Listener {
        Listener::new(Arc::clone(&self.vad), Arc::clone(&self.stt), self.config)
    }

    /// Takes `pcm` (16 kHz mono PCM16) as heard.
    pub async fn hear(&mut self, pcm: &[u8]) -> Result<EarEvent, SpeechError> {
        let outcome = match &mut self.mode {
            Mode::Idle => return Ok(EarEvent::Nothing),
            Mode::WaitingForWord(spotter) => {
                if !spotter.hear(pcm).await? {
                    return Ok(EarEvent::Nothing);
                }
                // What followed the word in this audio is the start of the utterance.
                let after_word = spotter.take_pending();
                let mut listener = self.listener();
                listener.hear(&after_word).await?;
                self.mode = Mode::Listening {
                    listener,
                    woken: Some(Instant::now()),
                };
                return Ok(EarEvent::WakeWord);
            }
            Mode::Listening { listener, woken } => {
                let gave_up = woken.is_some_and(|woken| woken.elapsed() > WAKE_TIMEOUT)
                    && !listener.is_hearing();
                if gave_up {
                    self.await_next_utterance();
                    return Ok(EarEvent::GaveUp);
                }
                let outcome = listener.hear(pcm).await;
                if matches!(outcome, Ok(None)) && listener.is_hearing() && !self.announced {
                    self.announced = true;
                    return Ok(EarEvent::VoiceStarted);
                }
                outcome
            }
        };
        self.heard(outcome)
    }

    /// The satellite's audio stopped: an utterance under way ends here.
    pub async fn finish(&mut self) -> Result<EarEvent, SpeechError> {
        let outcome = match &mut self.mode {
            Mode::Listening { listener, .. } => listener.finish().await,
            _ => return Ok(EarEvent::Nothing),
        };
        self.heard(outcome)
    }

    /// After a failure, starts over where an utterance begins.
    pub fn reset(&mut self) {
        if !matches!(self.mode, Mode::Idle) {
            self.await_next_utterance();
        }
    }

    fn heard(
        &mut self,
        outcome: Result<Option<troupe_actors::voice::Heard>, SpeechError>,
    ) -> Result<EarEvent, SpeechError> {
        match outcome? {
            Some(heard) => {
                let unannounced = !self.announced;
                self.await_next_utterance();
                Ok(EarEvent::Said {
                    text: heard.text,
                    unannounced,
                })
            }
            None => Ok(EarEvent::Nothing),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;
    use troupe_actors::voice::{AudioFormat, VAD_FRAME, VadState, WAKE_CHUNK, WakeState};

    use super::*;

    /// Speech wherever the audio is loud.
    struct Loud;

    #[async_trait::async_trait]
    impl VoiceActivity for Loud {
        fn name(&self) -> &str {
            "loud"
        }

        async fn speech(
            &self,
            state: VadState,
            samples: Vec<f32>,
        ) -> Result<(Vec<f32>, VadState), SpeechError> {
            let loud = |frame: &[f32]| if frame[0].abs() > 0.5 { 0.9 } else { 0.0 };
            Ok((samples.chunks_exact(VAD_FRAME).map(loud).collect(), state))
        }
    }

    /// Hears the word "loud" in any loud chunk.
    struct WordIsLoud;

    #[async_trait::async_trait]
    impl WakeWord for WordIsLoud {
        fn name(&self) -> &str {
            "hey_loud"
        }

        async fn scores(
            &self,
            state: WakeState,
            samples: Vec<f32>,
        ) -> Result<(Vec<f32>, WakeState), SpeechError> {
            let loud = |chunk: &[f32]| {
                if chunk.iter().any(|sample| sample.abs() > 0.5) {
                    0.9
                } else {
                    0.0
                }
            };
            Ok((samples.chunks_exact(WAKE_CHUNK).map(loud).collect(), state))
        }
    }

    /// Transcribes any utterance as "it was loud".
    struct Transcriber;

    #[async_trait::async_trait]
    impl SpeechToText for Transcriber {
        fn name(&self) -> &str {
            "transcriber"
        }

        async fn transcribe(
            &self,
            _format: AudioFormat,
            mut audio: mpsc::Receiver<Vec<u8>>,
        ) -> Result<String, SpeechError> {
            while audio.recv().await.is_some() {}
            Ok("it was loud".into())
        }
    }

    fn ear(wake: bool) -> Ear {
        let wake: Option<Arc<dyn WakeWord>> = wake.then(|| Arc::new(WordIsLoud) as _);
        Ear::new(
            Arc::new(Loud),
            Arc::new(Transcriber),
            wake,
            ListenerConfig::default(),
        )
    }

    fn seconds(sample: i16, seconds: f64) -> Vec<u8> {
        sample.to_le_bytes().repeat((seconds * 16_000.0) as usize)
    }

    fn said(text: &str) -> EarEvent {
        EarEvent::Said {
            text: text.into(),
            unannounced: false,
        }
    }

    /// Feeds `audio` in 80 ms pieces; answers what was heard, in order.
    async fn feed(ear: &mut Ear, audio: &[u8]) -> Vec<EarEvent> {
        let mut heard = Vec::new();
        for piece in audio.chunks(2 * WAKE_CHUNK) {
            match ear.hear(piece).await.unwrap() {
                EarEvent::Nothing => {}
                other => heard.push(other),
            }
        }
        heard
    }

    #[tokio::test]
    async fn before_a_pipeline_run_nothing_is_heard() {
        let mut ear = ear(false);
        assert!(feed(&mut ear, &seconds(30_000, 1.0)).await.is_empty());
    }

    #[tokio::test]
    async fn without_a_wake_word_every_utterance_is_taken() {
        let mut ear = ear(false);
        ear.start(true);
        assert_eq!(ear.wake_word(), None);
        let speech = [seconds(30_000, 1.0), seconds(0, 1.0)].concat();
        let heard = feed(&mut ear, &[speech.clone(), speech].concat()).await;
        assert_eq!(
            heard,
            [
                EarEvent::VoiceStarted,
                said("it was loud"),
                EarEvent::VoiceStarted,
                said("it was loud")
            ]
        );
    }

    #[tokio::test]
    async fn with_a_wake_word_only_speech_after_it_is_taken() {
        let mut ear = ear(true);
        ear.start(true);
        assert_eq!(ear.wake_word(), Some("hey_loud"));
        let word_then_question =
            [seconds(30_000, 0.2), seconds(30_000, 1.0), seconds(0, 1.0)].concat();
        let heard = feed(&mut ear, &word_then_question).await;
        assert_eq!(
            heard,
            [
                EarEvent::WakeWord,
                EarEvent::VoiceStarted,
                said("it was loud")
            ]
        );
        // Back to waiting: the next loud sound is the word again, not a question.
        assert_eq!(
            feed(&mut ear, &seconds(30_000, 0.1)).await,
            [EarEvent::WakeWord]
        );
    }

    #[tokio::test]
    async fn a_satellite_that_wakes_itself_needs_no_word_here() {
        let mut ear = ear(true);
        ear.start(false);
        assert_eq!(ear.wake_word(), None);
        let speech = [seconds(30_000, 1.0), seconds(0, 1.0)].concat();
        assert_eq!(
            feed(&mut ear, &speech).await,
            [EarEvent::VoiceStarted, said("it was loud")]
        );
    }

    #[tokio::test]
    async fn speech_that_starts_and_ends_in_one_piece_is_said_unannounced() {
        let mut ear = ear(false);
        ear.start(false);
        let speech = [seconds(30_000, 1.0), seconds(0, 1.0)].concat();
        assert_eq!(
            ear.hear(&speech).await.unwrap(),
            EarEvent::Said {
                text: "it was loud".into(),
                unannounced: true
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_after_the_wake_word_goes_back_to_waiting_for_it() {
        let mut ear = ear(true);
        ear.start(true);
        assert_eq!(
            feed(&mut ear, &seconds(30_000, 0.1)).await,
            [EarEvent::WakeWord]
        );
        tokio::time::advance(WAKE_TIMEOUT + Duration::from_secs(1)).await;
        assert_eq!(feed(&mut ear, &seconds(0, 0.2)).await, [EarEvent::GaveUp]);
        // Waiting for the word again: loud audio is the word, not an utterance.
        assert_eq!(
            feed(&mut ear, &seconds(30_000, 0.1)).await,
            [EarEvent::WakeWord]
        );
    }
}
