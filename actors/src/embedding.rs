//! Embeddings: texts to unit vectors that are near when their meanings are, for memory by
//! meaning and for `POST /v1/embeddings`. An [`Embedder`] is a local model in a pool
//! ([`PooledEmbedder`]) or an OpenAI-compatible `/v1/embeddings` service.

use std::sync::Arc;

use crate::local_model::{BatchModel, LocalModelPool, ModelFailure, PoolError};

/// One text's vector, and the tokens the model read of it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Embedded {
    pub vector: Vec<f32>,
    pub tokens: usize,
}

/// Why texts got no vectors.
#[derive(Clone, Debug, thiserror::Error)]
pub enum EmbedError {
    /// The local model's queue is full: try again shortly.
    #[error(transparent)]
    Local(#[from] PoolError),
    /// A remote embeddings service failed or refused.
    #[error("the embeddings service failed: {0}")]
    Remote(#[source] ModelFailure),
    /// Another node's model answered this failure (in a cluster).
    #[error("{message} (on another node)")]
    Peer {
        failure: EmbedFailure,
        message: Arc<str>,
    },
}

/// What kind of failure an [`EmbedError`] is, for the status a client gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EmbedFailure {
    /// Back-pressure: retry later (HTTP 503 with `busy`).
    Busy,
    /// The model is not installed or could not load (HTTP 503).
    Unavailable,
    /// The model or service failed on this request (HTTP 502).
    Failed,
}

impl EmbedError {
    pub const fn failure(&self) -> EmbedFailure {
        match self {
            Self::Local(PoolError::Busy { .. }) => EmbedFailure::Busy,
            Self::Local(PoolError::Unavailable { .. } | PoolError::Stopped { .. }) => {
                EmbedFailure::Unavailable
            }
            Self::Local(_) | Self::Remote(_) => EmbedFailure::Failed,
            Self::Peer { failure, .. } => *failure,
        }
    }
}

/// Turns texts into vectors.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// The model's name, as `/v1/embeddings` reports it.
    fn model(&self) -> &str;

    /// One vector per text, in order.
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Embedded>, EmbedError>;
}

/// An embedder that is a local model in a pool (batched with everyone else's texts).
pub struct PooledEmbedder<M: BatchModel<Input = String, Output = Embedded>> {
    pool: LocalModelPool<M>,
}

impl<M: BatchModel<Input = String, Output = Embedded>> PooledEmbedder<M> {
    pub const fn new(pool: LocalModelPool<M>) -> Self {
        Self { pool }
    }

    pub fn shared(self) -> Arc<dyn Embedder> {
        Arc::new(self)
    }
}

#[async_trait::async_trait]
impl<M: BatchModel<Input = String, Output = Embedded>> Embedder for PooledEmbedder<M> {
    fn model(&self) -> &str {
        self.pool.model()
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Embedded>, EmbedError> {
        Ok(self.pool.run(texts).await?)
    }
}
