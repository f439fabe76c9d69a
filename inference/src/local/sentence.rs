//! A sentence embedder on ONNX Runtime: a BERT-family encoder (all-MiniLM-L6-v2 int8 by
//! default) and its `tokenizer.json`. A batch is tokenised (truncated at the model's
//! longest input, padded to the longest in the batch), run once, mean-pooled over the
//! attention mask and L2-normalised, as sentence-transformers does for these models.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::Session;
use ort::value::Tensor;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use troupe_actors::embedding::Embedded;
use troupe_actors::local_model::{BatchModel, ModelFailure, ModelLoader};

use super::runtime::{Device, OnnxRuntime};

/// Tokens one input keeps (all-MiniLM-L6-v2's `max_seq_length`).
pub const MAX_TOKENS: usize = 256;

/// The files of a sentence embedder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentenceFiles {
    pub model: PathBuf,
    pub tokenizer: PathBuf,
}

impl SentenceFiles {
    /// `model.onnx` and `tokenizer.json` in `folder`.
    pub fn in_folder(folder: &Path) -> Self {
        Self {
            model: folder.join("model.onnx"),
            tokenizer: folder.join("tokenizer.json"),
        }
    }
}

/// Why a sentence model could not load or run.
#[derive(Debug, thiserror::Error)]
enum SentenceError {
    #[error("{0}")]
    Runtime(#[from] super::RuntimeError),
    #[error("the tokenizer {path}: {source}")]
    Tokenizer {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },
    #[error("the model {path}: {source}")]
    Session {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error("the model has no output `last_hidden_state` of [batch, tokens, dimensions]")]
    Output,
    #[error("tokenising: {0}")]
    Tokenising(#[source] tokenizers::Error),
    #[error("running the model: {0}")]
    Run(#[source] ort::Error),
}

fn failure(error: SentenceError) -> ModelFailure {
    Arc::new(error)
}

/// Loads a [`SentenceModel`] on its pool's thread.
#[derive(Clone, Debug)]
pub struct SentenceEmbedder {
    runtime: OnnxRuntime,
    files: SentenceFiles,
    device: Device,
    /// Threads one batch may use inside ONNX Runtime.
    threads: usize,
}

impl SentenceEmbedder {
    pub fn new(runtime: OnnxRuntime, files: SentenceFiles, device: Device, threads: usize) -> Self {
        Self {
            runtime,
            files,
            device,
            threads: threads.max(1),
        }
    }
}

impl ModelLoader for SentenceEmbedder {
    type Model = SentenceModel;

    fn load(&self) -> Result<SentenceModel, ModelFailure> {
        let mut tokenizer = Tokenizer::from_file(&self.files.tokenizer).map_err(|source| {
            failure(SentenceError::Tokenizer {
                path: self.files.tokenizer.clone(),
                source,
            })
        })?;
        let tokenizer_error = |source| {
            failure(SentenceError::Tokenizer {
                path: self.files.tokenizer.clone(),
                source,
            })
        };
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(tokenizer_error)?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let environment = self
            .runtime
            .environment()
            .map_err(|error| failure(error.into()))?;
        let session_error = |source: ort::Error| {
            failure(SentenceError::Session {
                path: self.files.model.clone(),
                source,
            })
        };
        let session = Session::builder(&environment)
            .map_err(session_error)?
            .with_execution_providers(self.device.execution_providers())
            .map_err(|error| session_error(error.into()))?
            .with_intra_threads(self.threads)
            .map_err(|error| session_error(error.into()))?
            .with_memory_pattern(false)
            .map_err(|error| session_error(error.into()))?
            .commit_from_file(&self.files.model)
            .map_err(session_error)?;
        Ok(SentenceModel { session, tokenizer })
    }
}

/// A loaded sentence embedder: text in, a unit vector out.
pub struct SentenceModel {
    session: Session,
    tokenizer: Tokenizer,
}

impl SentenceModel {
    /// The token ids `text` is read as (without padding).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, ModelFailure> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|error| failure(SentenceError::Tokenising(error)))?;
        Ok(encoding.get_ids().to_vec())
    }

    fn embed(&mut self, texts: Vec<String>) -> Result<Vec<Embedded>, SentenceError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts, true)
            .map_err(SentenceError::Tokenising)?;
        let batch = encodings.len();
        let tokens = encodings.first().map_or(0, tokenizers::Encoding::len);
        let column = |pick: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<i64> {
            encodings
                .iter()
                .flat_map(|encoding| pick(encoding).iter().map(|&id| i64::from(id)))
                .collect()
        };
        let mask = column(tokenizers::Encoding::get_attention_mask);
        let tensor = |values: Vec<i64>| Tensor::from_array(([batch, tokens], values));
        let inputs = ort::inputs![
            "input_ids" => tensor(column(tokenizers::Encoding::get_ids)).map_err(SentenceError::Run)?,
            "attention_mask" => tensor(mask.clone()).map_err(SentenceError::Run)?,
            "token_type_ids" => tensor(column(tokenizers::Encoding::get_type_ids)).map_err(SentenceError::Run)?,
        ];
        let outputs = self.session.run(inputs).map_err(SentenceError::Run)?;
        let hidden = outputs
            .get("last_hidden_state")
            .ok_or(SentenceError::Output)?;
        let (shape, values) = hidden
            .try_extract_tensor::<f32>()
            .map_err(SentenceError::Run)?;
        let dimensions = match **shape {
            [b, t, d] if b == batch as i64 && t == tokens as i64 => d as usize,
            _ => return Err(SentenceError::Output),
        };
        Ok((0..batch)
            .map(|row| {
                let hidden = &values[row * tokens * dimensions..(row + 1) * tokens * dimensions];
                let mask = &mask[row * tokens..(row + 1) * tokens];
                Embedded {
                    vector: mean_pooled(hidden, mask, dimensions),
                    tokens: mask.iter().filter(|&&keep| keep != 0).count(),
                }
            })
            .collect())
    }
}

/// The mean of the token vectors the mask keeps, scaled to length 1.
fn mean_pooled(hidden: &[f32], mask: &[i64], dimensions: usize) -> Vec<f32> {
    let mut sum = vec![0.0f32; dimensions];
    let mut kept = 0.0f32;
    for (token, &keep) in hidden.chunks_exact(dimensions).zip(mask) {
        if keep != 0 {
            kept += 1.0;
            for (total, value) in sum.iter_mut().zip(token) {
                *total += value;
            }
        }
    }
    for total in &mut sum {
        *total /= kept.max(1e-9);
    }
    crate::unit_length(&mut sum);
    sum
}

impl BatchModel for SentenceModel {
    type Input = String;
    type Output = Embedded;

    fn run(&mut self, batch: Vec<String>) -> Result<Vec<Embedded>, ModelFailure> {
        self.embed(batch).map_err(failure)
    }
}
