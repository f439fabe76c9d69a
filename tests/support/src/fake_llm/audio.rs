//! OpenAI's audio endpoints as they are published, for tests:
//!
//! - `POST /v1/audio/transcriptions`: `multipart/form-data` with `file` (the audio file)
//!   and `model`, optional `language`, `response_format` (`json` by default) → `{"text"}`.
//!   No recogniser runs here: the text says what was received (a WAV file's seconds and
//!   rate), so a test can check the audio arrived whole.
//! - `POST /v1/audio/speech`: JSON `model`, `input` (at most 4,096 characters), `voice`,
//!   `response_format` → the audio. Only `pcm` is served here (raw 24 kHz 16-bit mono, as
//!   OpenAI sends it): a tone of 60 ms per character, streamed in 4 KiB pieces.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Shared, openai_error};

/// OpenAI's limit on `input`.
const MAX_INPUT_CHARS: usize = 4_096;
const PCM_RATE: usize = 24_000;

/// Seconds and sample rate of a PCM WAV file.
fn wav_shape(bytes: &[u8]) -> Option<(f64, u32)> {
    if bytes.get(..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let rate = u32::from_le_bytes(bytes.get(24..28)?.try_into().ok()?);
    let bytes_per_second = u32::from_le_bytes(bytes.get(28..32)?.try_into().ok()?);
    let data = bytes.windows(4).position(|window| window == b"data")?;
    let length = u32::from_le_bytes(bytes.get(data + 4..data + 8)?.try_into().ok()?);
    Some((f64::from(length) / f64::from(bytes_per_second.max(1)), rate))
}

pub(super) async fn transcriptions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let mut fields = serde_json::Map::new();
    let mut file = None;
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            fields.insert("file_name".into(), Value::from(file_name));
            file = field.bytes().await.ok();
        } else if let Ok(text) = field.text().await {
            fields.insert(name, Value::from(text));
        }
    }
    let body = Value::Object(fields);
    shared.record("/v1/audio/transcriptions", &headers, &body);
    let Some(file) = file else {
        return openai_error(400, None, "'file' is a required property");
    };
    if !body["model"].is_string() {
        return openai_error(400, None, "'model' is a required property");
    }
    let Some((seconds, rate)) = wav_shape(&file) else {
        return openai_error(
            400,
            None,
            "The audio file could not be decoded or its format is not supported.",
        );
    };
    axum::Json(json!({"text": format!("{seconds:.1} seconds of {rate} Hz audio")})).into_response()
}

pub(super) async fn speech(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    shared.record("/v1/audio/speech", &headers, &body);
    for required in ["model", "input", "voice"] {
        if !body[required].is_string() {
            return openai_error(400, None, &format!("'{required}' is a required property"));
        }
    }
    let input = body["input"].as_str().unwrap_or_default();
    if input.is_empty() || input.chars().count() > MAX_INPUT_CHARS {
        return openai_error(400, None, "'input' must be 1 to 4096 characters");
    }
    if body["response_format"].as_str() != Some("pcm") {
        return openai_error(
            400,
            None,
            "this test double serves response_format 'pcm' only",
        );
    }
    let samples = input.chars().count() * PCM_RATE * 60 / 1000;
    let pcm: Vec<u8> = (0..samples)
        .flat_map(|index| {
            let phase = index as f32 * 440.0 * std::f32::consts::TAU / PCM_RATE as f32;
            ((phase.sin() * 8_000.0) as i16).to_le_bytes()
        })
        .collect();
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        pcm.chunks(4096).map(|piece| Ok(piece.to_vec())).collect();
    Response::builder()
        .header("content-type", "audio/pcm")
        .body(Body::from_stream(futures_util::stream::iter(pieces)))
        .unwrap_or_else(|_| openai_error(500, None, "the audio could not be sent"))
}
