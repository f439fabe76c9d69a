//! First-class fakes for tests of every crate: a [`ScriptedProvider`] that answers from a
//! script and records what it was asked, and [`CountingSpeechToText`], which hears how
//! much audio it was sent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::provider::{
    ChatRequest, Completion, DeltaSink, FinishReason, ModelProvider, ProviderError,
    ProviderErrorKind, ProviderInfo, ToolCall, Usage,
};

/// The smallest valid PNG (one transparent pixel), for tests that upload a picture.
pub const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Scripted {
    /// Streams these pieces, then completes with their concatenation.
    Text(Vec<String>),
    /// Fails with this kind (and `Retry-After`, if any).
    Fail(ProviderErrorKind, Option<Duration>),
    /// Never answers.
    Hang,
    /// Answers after a delay.
    Delayed(Duration, String),
    /// Asks for these tool calls `(id, name, arguments)`.
    Tools(Vec<(String, String, String)>),
    /// Answers once the test lets it (`notify_one`).
    Gated(Arc<tokio::sync::Notify>, String),
    /// Panics with this text, as a buggy provider would.
    Panic(&'static str),
    /// Streams these pieces, then never finishes (until its call is dropped).
    StreamThenHang(Vec<String>),
    /// Plays the inner answer and reports this usage with it.
    Costing(Usage, Box<Scripted>),
}

/// A provider that plays a script; when the script runs out it echoes the last user message.
#[derive(Debug)]
pub struct ScriptedProvider {
    info: ProviderInfo,
    script: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<ChatRequest>>,
    /// Calls started and neither finished nor dropped.
    in_progress: Arc<AtomicUsize>,
}

/// Counts one call in progress until it is dropped.
struct InProgress(Arc<AtomicUsize>);

impl InProgress {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ScriptedProvider {
    pub fn new(name: &str, script: impl IntoIterator<Item = Scripted>) -> Self {
        Self {
            info: ProviderInfo {
                name: name.to_owned(),
                kind: "scripted".into(),
                model: "script".into(),
            },
            script: Mutex::new(script.into_iter().collect()),
            requests: Mutex::default(),
            in_progress: Arc::default(),
        }
    }

    /// Calls that have started and have neither ended nor been dropped.
    pub fn calls_in_progress(&self) -> usize {
        self.in_progress.load(Ordering::SeqCst)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn next(&self) -> Option<Scripted> {
        self.script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }
}

#[async_trait::async_trait]
impl ModelProvider for ScriptedProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        deltas: &DeltaSink,
    ) -> Result<Completion, ProviderError> {
        let _in_progress = InProgress::start(&self.in_progress);
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(request.clone());
        self.play(self.next(), request, deltas).await
    }
}

impl ScriptedProvider {
    async fn play(
        &self,
        next: Option<Scripted>,
        request: &ChatRequest,
        deltas: &DeltaSink,
    ) -> Result<Completion, ProviderError> {
        match next {
            Some(Scripted::Costing(usage, inner)) => Ok(Completion {
                usage: Some(usage),
                ..Box::pin(self.play(Some(*inner), request, deltas)).await?
            }),
            Some(Scripted::Text(pieces)) => {
                for piece in &pieces {
                    deltas.push(piece);
                }
                Ok(Completion::text(pieces.concat()))
            }
            Some(Scripted::Fail(kind, retry_after)) => {
                Err(
                    ProviderError::new(kind, &self.info.name, "scripted failure")
                        .with_retry_after(retry_after),
                )
            }
            Some(Scripted::Hang) => std::future::pending().await,
            Some(Scripted::StreamThenHang(pieces)) => {
                for piece in &pieces {
                    deltas.push(piece);
                }
                std::future::pending().await
            }
            Some(Scripted::Panic(text)) => panic!("{text}"),
            Some(Scripted::Tools(calls)) => Ok(Completion {
                text: String::new(),
                tool_calls: calls
                    .into_iter()
                    .map(|(id, name, arguments)| ToolCall {
                        id,
                        name,
                        arguments,
                    })
                    .collect(),
                finish_reason: FinishReason::ToolCalls,
                usage: None,
            }),
            Some(Scripted::Gated(gate, text)) => {
                gate.notified().await;
                deltas.push(&text);
                Ok(Completion::text(text))
            }
            Some(Scripted::Delayed(delay, text)) => {
                tokio::time::sleep(delay).await;
                deltas.push(&text);
                Ok(Completion::text(text))
            }
            None => {
                let last = request
                    .messages
                    .last()
                    .map(|message| message.content.to_string());
                let text = format!("echo: {}", last.unwrap_or_default());
                deltas.push(&text);
                Ok(Completion::text(text))
            }
        }
    }
}

/// An embedder for tests: words (of three letters or more) hashed into 64 dimensions,
/// normalised, so texts that share words are near.
pub struct WordsEmbedder;

pub fn words_vector(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; 64];
    for word in text
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
    {
        let hash = word.bytes().fold(7u32, |hash, byte| {
            hash.wrapping_mul(31).wrapping_add(u32::from(byte))
        });
        vector[(hash % 64) as usize] += 1.0;
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-9);
    vector.iter().map(|v| v / norm).collect()
}

#[async_trait::async_trait]
impl crate::embedding::Embedder for WordsEmbedder {
    fn model(&self) -> &str {
        "words"
    }

    async fn embed(
        &self,
        texts: Vec<String>,
    ) -> Result<Vec<crate::embedding::Embedded>, crate::embedding::EmbedError> {
        Ok(texts
            .iter()
            .map(|text| crate::embedding::Embedded {
                vector: words_vector(text),
                tokens: text.split_whitespace().count() + 2,
            })
            .collect())
    }
}

/// Speech to text that answers how much audio it heard: `"<N> bytes"`.
pub struct CountingSpeechToText;

#[async_trait::async_trait]
impl crate::voice::SpeechToText for CountingSpeechToText {
    fn name(&self) -> &str {
        "counting"
    }

    async fn transcribe(
        &self,
        _format: crate::voice::AudioFormat,
        mut audio: tokio::sync::mpsc::Receiver<Vec<u8>>,
    ) -> Result<String, crate::voice::SpeechError> {
        let mut bytes = 0;
        while let Some(pcm) = audio.recv().await {
            bytes += pcm.len();
        }
        Ok(format!("{bytes} bytes"))
    }
}
