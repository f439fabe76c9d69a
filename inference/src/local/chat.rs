//! A chat model run in the process with candle: a llama-family GGUF file (quantised
//! weights, with the tokenizer in its metadata), ChatML prompts, replies streamed token by
//! token. It runs in a `troupe_actors::local_model` pool, one generation at a time on the
//! pool's thread (candle's matrix products use its own worker threads), never on the async
//! runtime.
//!
//! - **Prompt.** The system prompt and the conversation in ChatML (`<|im_start|>role …
//!   <|im_end|>`), the control tokens put in by id: text in a message can never open or
//!   close a turn. The oldest messages are left out until the prompt and the reply fit
//!   the context ([`MAX_CONTEXT`] tokens at most).
//! - **Sampling.** Greedy at temperature 0, else temperature and top-p; a repeat penalty
//!   over the last 64 tokens keeps a small model from looping.
//! - **Cache.** The attention cache of the last reply is kept: a prompt that begins with
//!   that reply's conversation (the same conversation, one exchange on) reads only what is
//!   new. Any other prompt clears it.
//! - **Stop.** At an end token, at `max_tokens` (`length`), or when the caller gives up
//!   (the generation's token is cancelled: the turn was stopped or timed out).

use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::quantized_llama::ModelWeights;
use tokenizers::Tokenizer;
use tokio_util::sync::CancellationToken;
use troupe_actors::local_model::{BatchModel, ModelFailure, ModelLoader};
use troupe_actors::provider::{DeltaSink, FinishReason, Role, Usage};

use super::gguf_tokenizer::{token_id, tokenizer_of};

/// The most tokens of context a generation uses (prompt and reply), whatever the model
/// allows: the attention cache grows with it.
pub const MAX_CONTEXT: usize = 2048;
/// Tokens the repeat penalty looks back over.
const REPEAT_WINDOW: usize = 64;
const REPEAT_PENALTY: f32 = 1.1;
const TOP_P: f64 = 0.9;

/// Why a chat model could not load or run.
#[derive(Debug, thiserror::Error)]
pub enum ChatModelError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the GGUF metadata `{key}` is {reason}")]
    Metadata {
        key: &'static str,
        reason: &'static str,
    },
    #[error("the tokenizer `{0}` is not supported: Troupe runs byte-level BPE (`gpt2`) GGUF files")]
    UnsupportedTokenizer(String),
    #[error("the model's chat template is not ChatML (`<|im_start|>`), the only one Troupe writes")]
    UnsupportedTemplate,
    #[error("the tokenizer failed: {0}")]
    Tokenizer(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the model failed: {0}")]
    Model(#[from] candle_core::Error),
}

impl ChatModelError {
    pub(super) fn tokenizer(error: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self::Tokenizer(error)
    }
}

/// One message of the conversation to continue.
#[derive(Clone, Debug)]
pub struct ChatTurn {
    pub role: Role,
    pub text: Arc<str>,
}

/// One reply to generate.
#[derive(Debug)]
pub struct Generation {
    pub system: Option<Arc<str>>,
    pub turns: Vec<ChatTurn>,
    /// Most tokens of reply.
    pub max_tokens: usize,
    /// 0 for greedy decoding.
    pub temperature: f64,
    pub seed: u64,
    /// Where the reply's text goes as it is made.
    pub deltas: DeltaSink,
    /// Cancelled when the caller no longer waits.
    pub cancel: CancellationToken,
}

/// A generated reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    pub text: String,
    pub finish_reason: FinishReason,
    /// Its `cache_read_tokens` are the tokens of the prompt whose attention was already in
    /// the cache (from the previous reply's conversation), not read again.
    pub usage: Usage,
}

/// Where a chat model's file is.
#[derive(Clone, Debug)]
pub struct GgufChatLoader {
    path: PathBuf,
}

impl GgufChatLoader {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }
}

impl ModelLoader for GgufChatLoader {
    type Model = GgufChatModel;

    fn load(&self) -> Result<GgufChatModel, ModelFailure> {
        GgufChatModel::load(&self.path).map_err(|error| Arc::new(error) as ModelFailure)
    }
}

/// ChatML's control tokens, as the model's vocabulary numbers them.
#[derive(Clone, Copy, Debug)]
struct ChatMl {
    start: u32,
    end: u32,
}

/// A loaded chat model.
pub struct GgufChatModel {
    weights: ModelWeights,
    tokenizer: Tokenizer,
    chat: ChatMl,
    /// Tokens that end a reply.
    stops: Vec<u32>,
    context: usize,
    /// The tokens whose attention is in the weights' cache, in order: the last prompt and
    /// the reply tokens read after it.
    cached: Vec<u32>,
}

impl std::fmt::Debug for GgufChatModel {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GgufChatModel")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

fn control_token(tokenizer: &Tokenizer, token: &str) -> Result<u32, ChatModelError> {
    tokenizer
        .token_to_id(token)
        .ok_or(ChatModelError::UnsupportedTemplate)
}

impl GgufChatModel {
    /// Loads the model in `path` on the CPU.
    pub fn load(path: &Path) -> Result<Self, ChatModelError> {
        let read = |source| ChatModelError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(read)?;
        let content = Content::read(&mut file)?;
        let template = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|template| template.to_string().ok());
        if template.is_some_and(|template| !template.contains("<|im_start|>")) {
            return Err(ChatModelError::UnsupportedTemplate);
        }
        let mut tokenizer = tokenizer_of(&content)?;
        // Text in a message is text: it never becomes a control token.
        tokenizer.set_encode_special_tokens(true);
        let chat = ChatMl {
            start: control_token(&tokenizer, "<|im_start|>")?,
            end: control_token(&tokenizer, "<|im_end|>")?,
        };
        let mut stops = vec![chat.end];
        stops.extend(token_id(&content, "tokenizer.ggml.eos_token_id").ok());
        stops.extend(tokenizer.token_to_id("<|endoftext|>"));
        let context = content
            .metadata
            .get("llama.context_length")
            .and_then(|length| length.to_u32().ok())
            .map_or(MAX_CONTEXT, |length| (length as usize).min(MAX_CONTEXT));
        let (content, mut tensors) = fast_tensors(content, &mut file)?;
        let weights = ModelWeights::from_gguf(content, &mut tensors, &Device::Cpu)?;
        Ok(Self {
            weights,
            tokenizer,
            chat,
            stops,
            context,
            cached: Vec::new(),
        })
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, ChatModelError> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(ChatModelError::tokenizer)?
            .get_ids()
            .to_vec())
    }

    /// `<|im_start|>role\ntext<|im_end|>\n` as tokens.
    fn message(&self, role: &str, text: &str) -> Result<Vec<u32>, ChatModelError> {
        let mut tokens = vec![self.chat.start];
        tokens.extend(self.encode(&format!("{role}\n{text}"))?);
        tokens.push(self.chat.end);
        tokens.extend(self.encode("\n")?);
        Ok(tokens)
    }

    /// The id of `token` in the model's vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// The most tokens of prompt and reply together.
    pub const fn context(&self) -> usize {
        self.context
    }

    /// The prompt for `generation`: the system prompt, as many of the latest messages as
    /// fit with room for the reply, and the assistant's opening.
    pub fn prompt(&self, generation: &Generation) -> Result<Vec<u32>, ChatModelError> {
        let system = match &generation.system {
            Some(system) => self.message("system", system)?,
            None => Vec::new(),
        };
        let mut opening = vec![self.chat.start];
        opening.extend(self.encode("assistant\n")?);
        let budget = self
            .context
            .saturating_sub(generation.max_tokens.min(self.context / 2))
            .saturating_sub(system.len() + opening.len());
        let mut kept: Vec<Vec<u32>> = Vec::new();
        let mut used = 0;
        for turn in generation.turns.iter().rev() {
            let (role, text) = match turn.role {
                Role::User => ("user", turn.text.to_string()),
                Role::Assistant => ("assistant", turn.text.to_string()),
                Role::System => ("system", turn.text.to_string()),
                Role::Tool => ("user", format!("(a tool answered) {}", turn.text)),
            };
            let mut tokens = self.message(role, &text)?;
            if used + tokens.len() > budget {
                if kept.is_empty() {
                    // The latest message alone is too long: its end is kept.
                    tokens.drain(..tokens.len() - budget);
                    kept.push(tokens);
                }
                break;
            }
            used += tokens.len();
            kept.push(tokens);
        }
        let mut prompt = system;
        prompt.extend(kept.into_iter().rev().flatten());
        prompt.extend(opening);
        Ok(prompt)
    }

    /// Generates one reply, pushing its text into `generation.deltas` as it is made.
    pub fn generate(&mut self, generation: &Generation) -> Result<Generated, ChatModelError> {
        let prompt = self.prompt(generation)?;
        let room = self.context.saturating_sub(prompt.len());
        let max_tokens = generation.max_tokens.min(room);
        let temperature = (generation.temperature > 0.0).then_some(generation.temperature);
        let mut sampler = LogitsProcessor::new(generation.seed, temperature, Some(TOP_P));
        // A conversation that goes on reads only what is new since the last reply.
        let reused = if self.cached.len() < prompt.len() && prompt.starts_with(&self.cached) {
            self.cached.len()
        } else {
            self.weights.clear_kv_cache();
            0
        };
        self.cached.clear();
        let mut logits = forward(&mut self.weights, &prompt[reused..], reused)?;
        self.cached.extend_from_slice(&prompt);
        let mut reply: Vec<u32> = Vec::new();
        let mut text = String::new();
        let mut decoder = self.tokenizer.decode_stream(true);
        let mut finish_reason = FinishReason::Length;
        while reply.len() < max_tokens {
            if generation.cancel.is_cancelled() {
                finish_reason = FinishReason::Other;
                break;
            }
            let recent = &reply[reply.len().saturating_sub(REPEAT_WINDOW)..];
            let logits_now =
                candle_transformers::utils::apply_repeat_penalty(&logits, REPEAT_PENALTY, recent)?;
            let next = sampler.sample(&logits_now)?;
            if self.stops.contains(&next) {
                finish_reason = FinishReason::Stop;
                break;
            }
            reply.push(next);
            if let Some(piece) = decoder.step(next).map_err(ChatModelError::tokenizer)? {
                generation.deltas.push(&piece);
                text.push_str(&piece);
            }
            logits = forward(&mut self.weights, &[next], prompt.len() + reply.len() - 1)?;
            self.cached.push(next);
        }
        Ok(Generated {
            text,
            finish_reason,
            usage: Usage {
                input_tokens: prompt.len() as u64,
                output_tokens: reply.len() as u64,
                cache_read_tokens: reused as u64,
                cache_write_tokens: 0,
            },
        })
    }
}

/// Quantisations candle multiplies without SIMD: their tensors are requantised to
/// [`GgmlDType::Q8_0`] (AVX2 at run time), several times faster for a third more memory.
const SLOW_ON_CPU: [GgmlDType; 3] = [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];

/// The tensors of `content`, read from `file` into memory with the slow quantisations
/// requantised, and the content describing them there.
fn fast_tensors(
    mut content: Content,
    file: &mut File,
) -> Result<(Content, Cursor<Vec<u8>>), ChatModelError> {
    let size = |info: &candle_core::quantized::gguf_file::TensorInfo| {
        let dtype = if SLOW_ON_CPU.contains(&info.ggml_dtype) {
            GgmlDType::Q8_0
        } else {
            info.ggml_dtype
        };
        info.shape.elem_count() / dtype.block_size() * dtype.type_size()
    };
    let mut data = Vec::with_capacity(content.tensor_infos.values().map(size).sum());
    let mut names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    names.sort();
    for name in names {
        let tensor = content.tensor(file, &name, &Device::Cpu)?;
        let tensor = if SLOW_ON_CPU.contains(&tensor.dtype()) {
            let values = tensor.dequantize(&Device::Cpu)?;
            QTensor::quantize(&values, GgmlDType::Q8_0)?
        } else {
            tensor
        };
        let info = content
            .tensor_infos
            .get_mut(&name)
            .ok_or(ChatModelError::Metadata {
                key: "tensor_infos",
                reason: "changed while read",
            })?;
        info.ggml_dtype = tensor.dtype();
        info.offset = data.len() as u64;
        data.extend_from_slice(&tensor.data()?);
    }
    content.tensor_data_offset = 0;
    Ok((content, Cursor::new(data)))
}

/// The logits after `tokens`, which start at position `at`.
fn forward(
    weights: &mut ModelWeights,
    tokens: &[u32],
    at: usize,
) -> Result<Tensor, ChatModelError> {
    let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
    Ok(weights.forward(&input, at)?.squeeze(0)?)
}

impl BatchModel for GgufChatModel {
    type Input = Generation;
    type Output = Generated;

    fn run(&mut self, batch: Vec<Generation>) -> Result<Vec<Generated>, ModelFailure> {
        batch
            .iter()
            .map(|generation| {
                self.generate(generation)
                    .map_err(|error| Arc::new(error) as ModelFailure)
            })
            .collect()
    }
}
