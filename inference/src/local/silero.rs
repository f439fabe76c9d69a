//! Silero VAD (v5/v6 ONNX, MIT) on ONNX Runtime: the probability that each 32 ms frame of
//! 16 kHz audio holds speech. As the Silero package runs it: each frame of 512 samples is
//! read with the last 64 samples before it, and the model's recurrent state (2 × 128)
//! carries from frame to frame, kept per stream in a [`VadState`] (the state, then the
//! context) so that one loaded model serves every stream.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::Session;
use ort::value::Tensor;
use troupe_actors::local_model::{BatchModel, LocalModelPool, ModelFailure, ModelLoader};
use troupe_actors::voice::{SpeechError, VAD_FRAME, VAD_RATE, VadState, VoiceActivity};

use super::runtime::{OnnxRuntime, RuntimeError, cpu_session};

/// Samples of the frame before that each frame is read with.
const CONTEXT: usize = 64;
/// The recurrent state's size: 2 × 1 × 128.
const STATE: usize = 2 * 128;

/// Why the VAD model could not load or run.
#[derive(Debug, thiserror::Error)]
pub enum VadError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot load the VAD model {path}: {source}")]
    Session {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error("the VAD model failed: {0}")]
    Run(#[source] ort::Error),
    #[error("the VAD model's output is not a probability and a state")]
    Output,
}

fn failure(error: VadError) -> ModelFailure {
    Arc::new(error)
}

/// Where Silero VAD's model is, and the runtime that runs it.
#[derive(Clone, Debug)]
pub struct SileroVad {
    runtime: OnnxRuntime,
    model: PathBuf,
}

impl SileroVad {
    pub fn new(runtime: OnnxRuntime, model: &Path) -> Self {
        Self {
            runtime,
            model: model.to_owned(),
        }
    }
}

impl ModelLoader for SileroVad {
    type Model = SileroModel;

    fn load(&self) -> Result<SileroModel, ModelFailure> {
        let environment = self
            .runtime
            .environment()
            .map_err(|error| failure(error.into()))?;
        // One thread, as Silero's own wrapper: a frame is too small to share.
        let session = cpu_session(&environment, &self.model, 1).map_err(|source| {
            failure(VadError::Session {
                path: self.model.clone(),
                source,
            })
        })?;
        Ok(SileroModel { session })
    }
}

/// One stream's audio to measure, from its state.
#[derive(Debug)]
pub struct VadRequest {
    pub state: VadState,
    pub samples: Vec<f32>,
}

/// A loaded Silero VAD.
pub struct SileroModel {
    session: Session,
}

impl SileroModel {
    /// The speech probability of each whole frame of `samples`, going on from `state`.
    pub fn measure(
        &mut self,
        state: VadState,
        samples: &[f32],
    ) -> Result<(Vec<f32>, VadState), VadError> {
        let mut memory = state.0;
        memory.resize(STATE + CONTEXT, 0.0);
        let mut probabilities = Vec::with_capacity(samples.len() / VAD_FRAME);
        let mut input = Vec::with_capacity(CONTEXT + VAD_FRAME);
        for frame in samples.chunks_exact(VAD_FRAME) {
            input.clear();
            input.extend_from_slice(&memory[STATE..]);
            input.extend_from_slice(frame);
            let inputs = ort::inputs![
                "input" => Tensor::from_array(([1, CONTEXT + VAD_FRAME], input.clone())).map_err(VadError::Run)?,
                "state" => Tensor::from_array(([2, 1, 128], memory[..STATE].to_vec())).map_err(VadError::Run)?,
                "sr" => Tensor::from_array(([0usize; 0], vec![i64::from(VAD_RATE)])).map_err(VadError::Run)?,
            ];
            let outputs = self.session.run(inputs).map_err(VadError::Run)?;
            let (_, probability) = outputs
                .get("output")
                .ok_or(VadError::Output)?
                .try_extract_tensor::<f32>()
                .map_err(VadError::Run)?;
            let (_, next) = outputs
                .get("stateN")
                .ok_or(VadError::Output)?
                .try_extract_tensor::<f32>()
                .map_err(VadError::Run)?;
            if next.len() != STATE {
                return Err(VadError::Output);
            }
            probabilities.push(*probability.first().ok_or(VadError::Output)?);
            memory[..STATE].copy_from_slice(next);
            memory[STATE..].copy_from_slice(&frame[VAD_FRAME - CONTEXT..]);
        }
        Ok((probabilities, VadState(memory)))
    }
}

impl BatchModel for SileroModel {
    type Input = VadRequest;
    type Output = (Vec<f32>, VadState);

    fn run(&mut self, batch: Vec<VadRequest>) -> Result<Vec<Self::Output>, ModelFailure> {
        batch
            .into_iter()
            .map(|request| {
                self.measure(request.state, &request.samples)
                    .map_err(failure)
            })
            .collect()
    }
}

/// Voice activity from a Silero model in a pool.
pub struct PooledVad {
    pool: LocalModelPool<SileroModel>,
}

impl PooledVad {
    pub const fn new(pool: LocalModelPool<SileroModel>) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl VoiceActivity for PooledVad {
    fn name(&self) -> &str {
        self.pool.model()
    }

    async fn speech(
        &self,
        state: VadState,
        samples: Vec<f32>,
    ) -> Result<(Vec<f32>, VadState), SpeechError> {
        let mut answered = self.pool.run(vec![VadRequest { state, samples }]).await?;
        answered.pop().ok_or_else(|| SpeechError::Protocol {
            service: self.pool.model().to_owned(),
            reason: "the VAD model answered nothing".to_owned(),
        })
    }
}
