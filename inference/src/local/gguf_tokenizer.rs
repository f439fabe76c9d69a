//! The tokenizer a GGUF file describes in its metadata (`tokenizer.ggml.*`), built as a
//! `tokenizers` tokenizer, for files that ship no `tokenizer.json`.
//!
//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`) is supported: the vocabulary and merges
//! come from the file, control tokens (`<|im_start|>`, `<|im_end|>`…) are special tokens
//! never split, and the pre-tokenizer follows `tokenizer.ggml.pre` (`smollm` and the
//! others llama.cpp calls GPT-2-like split digits one by one before the GPT-2 rule).
//! SentencePiece files (`llama`) are refused with a clear error.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use super::chat::ChatModelError;

/// `tokenizer.ggml.token_type` of a control token.
const CONTROL: i32 = 3;
/// `tokenizer.ggml.token_type` of a token the model's authors added.
const USER_DEFINED: i32 = 4;
/// Pre-tokenizers that split digits one by one before the GPT-2 rule.
const DIGIT_SPLITTING: [&str; 3] = ["smollm", "qwen2", "deepseek-llm"];

fn metadata<'a>(content: &'a Content, key: &'static str) -> Result<&'a Value, ChatModelError> {
    content.metadata.get(key).ok_or(ChatModelError::Metadata {
        key,
        reason: "missing",
    })
}

fn strings(content: &Content, key: &'static str) -> Result<Vec<String>, ChatModelError> {
    let wrong = |_| ChatModelError::Metadata {
        key,
        reason: "not a list of strings",
    };
    let values = metadata(content, key)?.to_vec().map_err(wrong)?;
    values
        .iter()
        .map(|value| value.to_string().cloned().map_err(wrong))
        .collect()
}

/// A token id the metadata names (`tokenizer.ggml.eos_token_id`…).
pub(super) fn token_id(content: &Content, key: &'static str) -> Result<u32, ChatModelError> {
    metadata(content, key)?
        .to_u32()
        .map_err(|_| ChatModelError::Metadata {
            key,
            reason: "not a token id",
        })
}

/// Builds the tokenizer `content` describes.
pub(super) fn tokenizer_of(content: &Content) -> Result<Tokenizer, ChatModelError> {
    let model = metadata(content, "tokenizer.ggml.model")?
        .to_string()
        .map_err(|_| ChatModelError::Metadata {
            key: "tokenizer.ggml.model",
            reason: "not a string",
        })?;
    if model != "gpt2" {
        return Err(ChatModelError::UnsupportedTokenizer(model.clone()));
    }
    let tokens = strings(content, "tokenizer.ggml.tokens")?;
    let merges = strings(content, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|merge| {
            merge
                .split_once(' ')
                .map(|(left, right)| (left.to_owned(), right.to_owned()))
                .ok_or(ChatModelError::Metadata {
                    key: "tokenizer.ggml.merges",
                    reason: "a merge is not two tokens",
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.clone(), id as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(ChatModelError::tokenizer)?;
    let mut tokenizer = Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let splits_digits = content
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|pre| pre.to_string().ok())
        .is_some_and(|pre| DIGIT_SPLITTING.contains(&pre.as_str()));
    if splits_digits {
        tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            byte_level.into(),
        ])));
    } else {
        tokenizer.with_pre_tokenizer(Some(byte_level));
    }
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let types = metadata(content, "tokenizer.ggml.token_type")
        .ok()
        .and_then(|types| types.to_vec().ok());
    let special: Vec<AddedToken> = tokens
        .iter()
        .enumerate()
        .filter(|(id, _)| {
            types
                .and_then(|types| types.get(*id))
                .and_then(|kind| kind.to_i32().ok())
                .is_some_and(|kind| kind == CONTROL || kind == USER_DEFINED)
        })
        .map(|(_, token)| AddedToken::from(token.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&special);
    Ok(tokenizer)
}
