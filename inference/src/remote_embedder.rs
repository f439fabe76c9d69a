//! An [`Embedder`] that is an OpenAI-compatible `POST /v1/embeddings` service (OpenAI,
//! Ollama's `/v1`, vLLM, llama.cpp server…): the second implementation beside the local
//! model. Vectors are normalised here (not every service does); the tokens each text cost
//! are estimated from the request's `usage`, shared out by length.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use troupe_actors::embedding::{EmbedError, Embedded, Embedder};

/// Why the service gave no vectors.
#[derive(Debug, thiserror::Error)]
enum RemoteError {
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered {got} vectors for {asked} texts")]
    Count {
        url: String,
        asked: usize,
        got: usize,
    },
}

#[derive(Debug, Deserialize)]
struct Answer {
    data: Vec<Item>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Debug, Deserialize)]
struct Usage {
    prompt_tokens: usize,
}

/// `model` at the OpenAI-compatible `base_url` (ending in `/v1`).
pub struct RemoteEmbedder {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
}

impl RemoteEmbedder {
    pub fn new(
        base_url: &str,
        model: &str,
        api_key: Option<String>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            client,
            url: format!("{}/embeddings", base_url.trim_end_matches('/')),
            model: model.to_owned(),
            api_key,
        })
    }

    async fn ask(&self, texts: &[String]) -> Result<Answer, RemoteError> {
        let http = |source| RemoteError::Http {
            url: self.url.clone(),
            source,
        };
        let mut request = self.client.post(&self.url).json(&json!({
            "model": self.model, "input": texts, "encoding_format": "float",
        }));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(http)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(RemoteError::Status {
                url: self.url.clone(),
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
            });
        }
        response.json().await.map_err(http)
    }
}

#[async_trait::async_trait]
impl Embedder for RemoteEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Embedded>, EmbedError> {
        let failed = |error: RemoteError| EmbedError::Remote(Arc::new(error));
        let mut answer = self.ask(&texts).await.map_err(failed)?;
        if answer.data.len() != texts.len() {
            return Err(failed(RemoteError::Count {
                url: self.url.clone(),
                asked: texts.len(),
                got: answer.data.len(),
            }));
        }
        answer.data.sort_by_key(|item| item.index);
        let characters: usize = texts.iter().map(|text| text.chars().count().max(1)).sum();
        let tokens = answer
            .usage
            .map_or(characters / 4, |usage| usage.prompt_tokens);
        Ok(answer
            .data
            .into_iter()
            .zip(&texts)
            .map(|(mut item, text)| {
                crate::unit_length(&mut item.embedding);
                Embedded {
                    vector: item.embedding,
                    tokens: (tokens * text.chars().count().max(1))
                        .div_ceil(characters)
                        .max(1),
                }
            })
            .collect())
    }
}
