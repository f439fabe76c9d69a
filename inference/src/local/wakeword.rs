//! openWakeWord on ONNX Runtime, as its own Python package streams it. Each 80 ms chunk
//! (1,280 samples at 16 kHz, read with the 480 samples before it, in 16-bit scale) goes
//! through three models:
//! 1. `melspectrogram.onnx`: 8 frames of a 32-band mel spectrogram (scaled `x / 10 + 2`),
//!    added to the last 76 frames;
//! 2. `embedding_model.onnx`: those 76 frames to one 96-dimensional embedding, added to the
//!    last 16 embeddings;
//! 3. the keyword's model (`hey_jarvis_v0.1.onnx`…): those embeddings to the score that
//!    the word just ended.
//!
//! A stream's buffers (samples, mel frames, embeddings) live in its [`WakeState`], so one
//! loaded model serves every stream. Until a stream has filled the keyword model's window
//! its scores are 0, as they are in the Python package.
//!
//! The pretrained keyword models are licensed CC BY-NC-SA 4.0 (non-commercial): Troupe
//! ships none; users install the ones they may use (docs/voice.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::Session;
use ort::value::Tensor;
use troupe_actors::local_model::{BatchModel, LocalModelPool, ModelFailure, ModelLoader};
use troupe_actors::voice::{SpeechError, WAKE_CHUNK, WakeState, WakeWord};

use super::runtime::{OnnxRuntime, RuntimeError, cpu_session};

/// Samples before a chunk that its mel frames are computed with.
const CONTEXT: usize = 480;
const MEL_BANDS: usize = 32;
/// Mel frames one embedding reads.
const MEL_WINDOW: usize = 76;
const EMBEDDING: usize = 96;

/// Why openWakeWord could not load or run.
#[derive(Debug, thiserror::Error)]
pub enum WakeWordError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot load the wake-word model {path}: {source}")]
    Session {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error("the wake-word model failed: {0}")]
    Run(#[source] ort::Error),
    #[error("the wake-word model {0} answered an unexpected shape")]
    Output(&'static str),
}

fn failure(error: WakeWordError) -> ModelFailure {
    Arc::new(error)
}

/// openWakeWord's files: its two shared models and one keyword's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WakeWordFiles {
    pub melspectrogram: PathBuf,
    pub embedding: PathBuf,
    pub keyword: PathBuf,
}

impl WakeWordFiles {
    /// The files in `folder`: `melspectrogram.onnx`, `embedding_model.onnx` and
    /// `<keyword>.onnx`.
    pub fn in_folder(folder: &Path, keyword: &str) -> Self {
        Self {
            melspectrogram: folder.join("melspectrogram.onnx"),
            embedding: folder.join("embedding_model.onnx"),
            keyword: folder.join(format!("{keyword}.onnx")),
        }
    }

    /// The first file that is missing, if one is.
    pub fn missing(&self) -> Option<&Path> {
        [&self.melspectrogram, &self.embedding, &self.keyword]
            .into_iter()
            .find(|path| !path.is_file())
            .map(PathBuf::as_path)
    }
}

/// Where openWakeWord's files are, and the runtime that runs them.
#[derive(Clone, Debug)]
pub struct OpenWakeWord {
    runtime: OnnxRuntime,
    files: WakeWordFiles,
}

impl OpenWakeWord {
    pub const fn new(runtime: OnnxRuntime, files: WakeWordFiles) -> Self {
        Self { runtime, files }
    }
}

impl ModelLoader for OpenWakeWord {
    type Model = WakeWordModel;

    fn load(&self) -> Result<WakeWordModel, ModelFailure> {
        let environment = self
            .runtime
            .environment()
            .map_err(|error| failure(error.into()))?;
        let session = |path: &Path| -> Result<Session, ModelFailure> {
            cpu_session(&environment, path, 1).map_err(|source| {
                failure(WakeWordError::Session {
                    path: path.to_owned(),
                    source,
                })
            })
        };
        let keyword = session(&self.files.keyword)?;
        let window = keyword
            .inputs()
            .first()
            .and_then(|input| input.dtype().tensor_shape())
            .and_then(|shape| shape.get(1).copied())
            .and_then(|frames| usize::try_from(frames).ok())
            .filter(|frames| *frames > 0)
            .ok_or_else(|| failure(WakeWordError::Output("keyword (its input)")))?;
        Ok(WakeWordModel {
            melspectrogram: session(&self.files.melspectrogram)?,
            embedding: session(&self.files.embedding)?,
            keyword,
            window,
        })
    }
}

/// One stream's audio to score, from its state.
#[derive(Debug)]
pub struct WakeRequest {
    pub state: WakeState,
    pub samples: Vec<f32>,
}

/// A stream's buffers, laid out in its [`WakeState`] one after the other.
struct Buffers {
    /// The last [`CONTEXT`] samples, 16-bit scale.
    context: Vec<f32>,
    /// The last [`MEL_WINDOW`] mel frames, [`MEL_BANDS`] each.
    mel: Vec<f32>,
    /// The last `window` embeddings.
    embeddings: Vec<f32>,
    /// Embeddings made from this stream's audio, up to `window`.
    filled: usize,
}

impl Buffers {
    fn of(state: WakeState, window: usize) -> Self {
        let sizes = [CONTEXT, MEL_WINDOW * MEL_BANDS, window * EMBEDDING, 1];
        if state.0.len() != sizes.iter().sum::<usize>() {
            // A new stream: silence before it, and mel frames of 1 as the package starts.
            return Self {
                context: vec![0.0; CONTEXT],
                mel: vec![1.0; MEL_WINDOW * MEL_BANDS],
                embeddings: vec![0.0; window * EMBEDDING],
                filled: 0,
            };
        }
        let mut rest = state.0;
        let mel = rest.split_off(CONTEXT);
        let context = rest;
        let mut rest = mel;
        let embeddings = rest.split_off(MEL_WINDOW * MEL_BANDS);
        let mel = rest;
        let mut embeddings = embeddings;
        let filled = embeddings.pop().unwrap_or_default() as usize;
        Self {
            context,
            mel,
            embeddings,
            filled,
        }
    }

    fn into_state(self) -> WakeState {
        let mut state = self.context;
        state.extend(self.mel);
        state.extend(self.embeddings);
        state.push(self.filled as f32);
        WakeState(state)
    }
}

/// Keeps the last `keep` values of `buffer` after appending `new`.
fn push_window(buffer: &mut Vec<f32>, new: &[f32], keep: usize) {
    buffer.extend_from_slice(new);
    let excess = buffer.len().saturating_sub(keep);
    buffer.drain(..excess);
}

/// A loaded openWakeWord.
pub struct WakeWordModel {
    melspectrogram: Session,
    embedding: Session,
    keyword: Session,
    /// Embeddings the keyword model reads (16 for the pretrained ones).
    window: usize,
}

impl WakeWordModel {
    /// The score of each whole chunk of `samples` (16 kHz, -1 to 1), going on from `state`.
    pub fn measure(
        &mut self,
        state: WakeState,
        samples: &[f32],
    ) -> Result<(Vec<f32>, WakeState), WakeWordError> {
        let mut buffers = Buffers::of(state, self.window);
        let mut scores = Vec::with_capacity(samples.len() / WAKE_CHUNK);
        for chunk in samples.chunks_exact(WAKE_CHUNK) {
            let mut input = std::mem::take(&mut buffers.context);
            input.extend(chunk.iter().map(|sample| sample * 32768.0));
            let frames = self.mel_frames(&input)?;
            push_window(&mut buffers.mel, &frames, MEL_WINDOW * MEL_BANDS);
            buffers.context = input.split_off(input.len() - CONTEXT);
            let embedding = self.embed(&buffers.mel)?;
            push_window(&mut buffers.embeddings, &embedding, self.window * EMBEDDING);
            buffers.filled = (buffers.filled + 1).min(self.window);
            let score = self.score(&buffers.embeddings)?;
            scores.push(if buffers.filled < self.window {
                0.0
            } else {
                score
            });
        }
        Ok((scores, buffers.into_state()))
    }

    /// The mel frames of `samples` (16-bit scale), scaled as openWakeWord scales them.
    fn mel_frames(&mut self, samples: &[f32]) -> Result<Vec<f32>, WakeWordError> {
        let input = Tensor::from_array(([1, samples.len()], samples.to_vec()))
            .map_err(WakeWordError::Run)?;
        let outputs = self
            .melspectrogram
            .run(ort::inputs![input])
            .map_err(WakeWordError::Run)?;
        let (_, frames) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(WakeWordError::Run)?;
        if frames.is_empty() || frames.len() % MEL_BANDS != 0 {
            return Err(WakeWordError::Output("melspectrogram"));
        }
        Ok(frames.iter().map(|value| value / 10.0 + 2.0).collect())
    }

    fn embed(&mut self, mel: &[f32]) -> Result<Vec<f32>, WakeWordError> {
        let input = Tensor::from_array(([1, MEL_WINDOW, MEL_BANDS, 1], mel.to_vec()))
            .map_err(WakeWordError::Run)?;
        let outputs = self
            .embedding
            .run(ort::inputs![input])
            .map_err(WakeWordError::Run)?;
        let (_, embedding) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(WakeWordError::Run)?;
        if embedding.len() != EMBEDDING {
            return Err(WakeWordError::Output("embedding"));
        }
        Ok(embedding.to_vec())
    }

    fn score(&mut self, embeddings: &[f32]) -> Result<f32, WakeWordError> {
        let input = Tensor::from_array(([1, self.window, EMBEDDING], embeddings.to_vec()))
            .map_err(WakeWordError::Run)?;
        let outputs = self
            .keyword
            .run(ort::inputs![input])
            .map_err(WakeWordError::Run)?;
        let (_, score) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(WakeWordError::Run)?;
        score
            .first()
            .copied()
            .ok_or(WakeWordError::Output("keyword"))
    }
}

impl BatchModel for WakeWordModel {
    type Input = WakeRequest;
    type Output = (Vec<f32>, WakeState);

    fn run(&mut self, batch: Vec<WakeRequest>) -> Result<Vec<Self::Output>, ModelFailure> {
        batch
            .into_iter()
            .map(|request| {
                self.measure(request.state, &request.samples)
                    .map_err(failure)
            })
            .collect()
    }
}

/// A wake word from an openWakeWord model in a pool.
pub struct PooledWakeWord {
    pool: LocalModelPool<WakeWordModel>,
    word: String,
}

impl PooledWakeWord {
    pub const fn new(pool: LocalModelPool<WakeWordModel>, word: String) -> Self {
        Self { pool, word }
    }
}

#[async_trait::async_trait]
impl WakeWord for PooledWakeWord {
    fn name(&self) -> &str {
        &self.word
    }

    async fn scores(
        &self,
        state: WakeState,
        samples: Vec<f32>,
    ) -> Result<(Vec<f32>, WakeState), SpeechError> {
        let mut answered = self.pool.run(vec![WakeRequest { state, samples }]).await?;
        answered.pop().ok_or_else(|| SpeechError::Protocol {
            service: self.pool.model().to_owned(),
            reason: "the wake-word model answered nothing".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_state_round_trips_and_a_foreign_one_starts_afresh() {
        let window = 16;
        let mut buffers = Buffers::of(WakeState::default(), window);
        assert_eq!(buffers.mel, vec![1.0; MEL_WINDOW * MEL_BANDS]);
        buffers.context[0] = 7.0;
        buffers.embeddings[3] = 2.5;
        buffers.filled = 9;
        let again = Buffers::of(buffers.into_state(), window);
        assert_eq!(again.context[0], 7.0);
        assert_eq!(again.embeddings[3], 2.5);
        assert_eq!(again.filled, 9);
        assert_eq!(again.embeddings.len(), window * EMBEDDING);
        let foreign = Buffers::of(WakeState(vec![0.5; 10]), window);
        assert_eq!(foreign.filled, 0);
    }

    #[test]
    fn a_window_keeps_only_its_newest_values() {
        let mut buffer = vec![1.0, 2.0, 3.0];
        push_window(&mut buffer, &[4.0, 5.0], 4);
        assert_eq!(buffer, [2.0, 3.0, 4.0, 5.0]);
    }
}
