//! `POST /v1/embeddings` in OpenAI's form, served by the local embedder, so any OpenAI SDK
//! gets vectors without a key or the network; and `GET /api/v1/models`, what is installed.
//!
//! The request is OpenAI's: `input` (a string or a list of strings), `model`,
//! `encoding_format` (`float`, or `base64`: little-endian `f32`s, which the Python SDK
//! asks for), `dimensions` (only the model's own) and `user` (ignored). Token arrays are
//! refused: this node embeds text. The answer names the model that ran.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use troupe_actors::embedding::{EmbedError, EmbedFailure, Embedded};

use super::AppState;
use super::error::{ApiCode, ApiError};
use super::rest::{body_limit, read_json_body};

/// Most texts in one request (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddingsRequest {
    input: Input,
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "OpenAI requires it; the local embedder answers any name"
    )]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Encoding,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    #[allow(dead_code, reason = "OpenAI's end-user id; nothing here is per user")]
    user: Option<String>,
}

/// `input`: one text, several, or something else (token ids: refused).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
    Other(Value),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    #[default]
    Float,
    Base64,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ApiCode::InvalidRequest, message)
}

impl EmbeddingsRequest {
    /// The texts to embed, checked.
    fn texts(self) -> Result<(Vec<String>, Encoding, Option<usize>), ApiError> {
        let texts = match self.input {
            Input::One(text) => vec![text],
            Input::Many(texts) => texts,
            Input::Other(other) => {
                let tokens = other.as_array().is_some_and(|items| {
                    items.iter().all(|item| item.is_number() || item.is_array())
                });
                return Err(invalid(if tokens {
                    "`input` holds token ids: this node embeds text, so send strings"
                } else {
                    "`input` must be a string or a list of strings"
                }));
            }
        };
        if texts.is_empty() || texts.len() > MAX_INPUTS {
            return Err(invalid(format!(
                "`input` must hold 1 to {MAX_INPUTS} texts"
            )));
        }
        if let Some(index) = texts.iter().position(String::is_empty) {
            return Err(invalid(format!("`input[{index}]` is empty")));
        }
        Ok((texts, self.encoding_format, self.dimensions))
    }
}

impl From<EmbedError> for ApiError {
    fn from(error: EmbedError) -> Self {
        let (status, code) = match error.failure() {
            EmbedFailure::Busy => (StatusCode::TOO_MANY_REQUESTS, ApiCode::Busy),
            EmbedFailure::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, ApiCode::ModelUnavailable)
            }
            EmbedFailure::Failed => (StatusCode::BAD_GATEWAY, ApiCode::ModelFailed),
        };
        Self::new(status, code, error.to_string())
    }
}

/// One vector as the answer carries it.
fn encoded(vector: &[f32], encoding: Encoding) -> Value {
    match encoding {
        Encoding::Float => json!(vector),
        Encoding::Base64 => {
            let bytes: Vec<u8> = vector
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect();
            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

/// `POST /v1/embeddings`.
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: EmbeddingsRequest = read_json_body(&headers, body, body_limit(&state)).await?;
    let (texts, encoding, dimensions) = request.texts()?;
    let Some(embedder) = state.models.embedder() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiCode::ModelUnavailable,
            state.models.why_no_embedder(),
        ));
    };
    let embedded: Vec<Embedded> = embedder.embed(texts).await?;
    let width = embedded.first().map_or(0, |first| first.vector.len());
    if let Some(asked) = dimensions
        && asked != width
    {
        return Err(invalid(format!(
            "`dimensions` must be {width}, the size of {}'s vectors",
            embedder.model()
        )));
    }
    let tokens: usize = embedded.iter().map(|item| item.tokens).sum();
    let data: Vec<Value> = embedded
        .iter()
        .enumerate()
        .map(|(index, item)| {
            json!({"object": "embedding", "index": index, "embedding": encoded(&item.vector, encoding)})
        })
        .collect();
    let answer = json!({
        "object": "list",
        "data": data,
        "model": embedder.model(),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    Ok(axum::Json(answer).into_response())
}

/// `GET /api/v1/models`: the models directory, ONNX Runtime, and each local model with
/// whether it is ready and, if not, what is missing.
pub(crate) async fn models(State(state): State<AppState>) -> Response {
    axum::Json(state.models.status()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Result<(Vec<String>, Encoding, Option<usize>), ApiError> {
        serde_json::from_value::<EmbeddingsRequest>(body)
            .map_err(|error| invalid(error.to_string()))?
            .texts()
    }

    #[test]
    fn one_text_or_several_are_taken_and_token_arrays_empty_texts_and_too_many_are_not() {
        let (texts, encoding, _) = request(json!({"input": "hi", "model": "m"})).unwrap();
        assert_eq!((texts, encoding), (vec!["hi".to_owned()], Encoding::Float));
        let (texts, encoding, dimensions) =
            request(json!({"input": ["a", "b"], "encoding_format": "base64", "dimensions": 384}))
                .unwrap();
        assert_eq!(texts.len(), 2);
        assert_eq!((encoding, dimensions), (Encoding::Base64, Some(384)));
        for (body, expected) in [
            (json!({"input": [1, 2, 3]}), "token ids"),
            (json!({"input": [[1, 2]]}), "token ids"),
            (json!({"input": 5}), "a string or a list of strings"),
            (json!({"input": []}), "1 to 2048"),
            (json!({"input": ["a", ""]}), "`input[1]` is empty"),
            (json!({"input": vec!["a"; MAX_INPUTS + 1]}), "1 to 2048"),
        ] {
            let refused = request(body).unwrap_err();
            assert!(refused.message.contains(expected), "{}", refused.message);
        }
        assert!(request(json!({"input": "a", "encoding_format": "hex"})).is_err());
        assert!(request(json!({"input": "a", "stream": true})).is_err());
    }

    #[test]
    fn base64_carries_little_endian_floats() {
        let text = encoded(&[1.0, -0.5], Encoding::Base64);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_str().unwrap())
            .unwrap();
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-0.5f32).to_le_bytes()].concat()
        );
        assert_eq!(encoded(&[0.25], Encoding::Float), json!([0.25]));
    }
}
