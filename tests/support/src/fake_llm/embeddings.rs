//! `POST /v1/embeddings` as OpenAI publishes it: `input` a string or a list of strings,
//! `model`, `encoding_format` `float` (the only one served here); the answer's `data` holds
//! one `{"object": "embedding", "index", "embedding"}` per input, with `usage`. Vectors are
//! 32 dimensions of hashed character trigrams, normalised: texts that share pieces of words
//! are near, so recall can be tested against it.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Shared, openai_error};

fn trigram_vector(text: &str) -> Vec<f32> {
    let mut vector = [0.0f32; 32];
    let chars: Vec<char> = format!("  {}  ", text.to_lowercase()).chars().collect();
    for window in chars.windows(3) {
        let hash = window.iter().fold(17u32, |hash, c| {
            hash.wrapping_mul(131).wrapping_add(*c as u32)
        });
        vector[(hash % 32) as usize] += 1.0;
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-9);
    vector.iter().map(|v| v / norm).collect()
}

pub(super) async fn openai_embeddings(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    shared.record("/v1/embeddings", &headers, &body);
    let texts: Vec<String> = match &body["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) && !items.is_empty() => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => return openai_error(400, None, "'input' must be a string or an array of strings"),
    };
    if body["model"].as_str().is_none_or(str::is_empty) {
        return openai_error(400, None, "you must provide a model parameter");
    }
    let tokens: usize = texts
        .iter()
        .map(|text| text.split_whitespace().count() + 1)
        .sum();
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index, "embedding": trigram_vector(text)})
        })
        .collect();
    axum::Json(json!({
        "object": "list", "data": data, "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}
