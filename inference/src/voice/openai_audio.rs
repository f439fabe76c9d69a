//! Speech through OpenAI-compatible audio endpoints: OpenAI itself, and the servers that
//! speak its API (faster-whisper-server/speaches, whisper.cpp's server, Groq, LocalAI).
//!
//! - **Speech to text**, `POST {base}/audio/transcriptions`: the utterance, gathered as it
//!   arrives, is sent whole as a WAV file (`multipart/form-data`: `file`, `model`,
//!   `language`?, `response_format=json`), since the endpoint takes a file; the answer's
//!   `text` is the transcript. At most 25 MB of audio, OpenAI's limit.
//! - **Text to speech**, `POST {base}/audio/speech` (`model`, `input`, `voice`,
//!   `response_format=pcm`): the audio (raw 24 kHz 16-bit mono) is passed on as its bytes
//!   arrive, so it can play before the rest is made.
//!
//! An answer that is not a success is a `Refused` error with the service's own message.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use troupe_actors::voice::{AudioChunk, AudioFormat, SpeechError, SpeechToText, TextToSpeech};

/// OpenAI's limit on an uploaded audio file.
const MAX_UPLOAD_BYTES: usize = 25 * 1024 * 1024;
/// The format of `response_format: pcm`.
const PCM_FORMAT: AudioFormat = AudioFormat {
    rate: 24_000,
    width: 2,
    channels: 1,
};

/// Where an OpenAI-compatible audio service is.
#[derive(Clone, Debug)]
struct AudioService {
    name: String,
    http: reqwest::Client,
    base_url: String,
    model: String,
    key: Option<String>,
}

impl AudioService {
    fn new(
        name: &str,
        base_url: &str,
        model: &str,
        key: Option<String>,
        timeout: Duration,
    ) -> Result<Self, SpeechError> {
        let parsed = reqwest::Url::parse(base_url)
            .map_err(|_| SpeechError::BadAddress(base_url.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SpeechError::BadAddress(base_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()
            .map_err(|error| SpeechError::Unreachable {
                service: name.to_owned(),
                source: Box::new(error),
            })?;
        Ok(Self {
            name: name.to_owned(),
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            key,
        })
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.name, self.base_url)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.post(format!("{}{path}", self.base_url));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    fn failed(&self, error: reqwest::Error) -> SpeechError {
        SpeechError::Unreachable {
            service: self.describe(),
            source: Box::new(error),
        }
    }

    /// `response` when it is a success, else its error as the service says it.
    async fn success(&self, response: reqwest::Response) -> Result<reqwest::Response, SpeechError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["error"]["message"]
            .as_str()
            .map_or_else(|| status.to_string(), str::to_owned);
        Err(SpeechError::Refused {
            service: self.describe(),
            reason: message,
        })
    }
}

/// Speech to text through `{base}/audio/transcriptions`.
#[derive(Clone, Debug)]
pub struct OpenAiStt {
    service: AudioService,
    language: Option<String>,
}

impl OpenAiStt {
    /// `model` at `base_url` (`https://api.openai.com/v1`, `http://127.0.0.1:8000/v1`…),
    /// with `key` when the service wants one.
    pub fn new(
        name: &str,
        base_url: &str,
        model: &str,
        key: Option<String>,
        language: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, SpeechError> {
        Ok(Self {
            service: AudioService::new(name, base_url, model, key, timeout)?,
            language: language.map(str::to_owned),
        })
    }
}

#[async_trait::async_trait]
impl SpeechToText for OpenAiStt {
    fn name(&self) -> &str {
        &self.service.name
    }

    async fn transcribe(
        &self,
        format: AudioFormat,
        mut audio: mpsc::Receiver<Vec<u8>>,
    ) -> Result<String, SpeechError> {
        let mut pcm = Vec::new();
        while let Some(chunk) = audio.recv().await {
            if pcm.len() + chunk.len() > MAX_UPLOAD_BYTES {
                return Err(SpeechError::Refused {
                    service: self.service.describe(),
                    reason: format!("an utterance is at most {MAX_UPLOAD_BYTES} bytes of audio"),
                });
            }
            pcm.extend_from_slice(&chunk);
        }
        let file = reqwest::multipart::Part::bytes(format.wav(&pcm))
            .file_name("speech.wav")
            .mime_str("audio/wav")
            .map_err(|error| self.service.failed(error))?;
        let mut form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", self.service.model.clone())
            .text("response_format", "json");
        if let Some(language) = &self.language {
            form = form.text("language", language.clone());
        }
        let response = self
            .service
            .post("/audio/transcriptions")
            .multipart(form)
            .send()
            .await
            .map_err(|error| self.service.failed(error))?;
        let answer: Value = self
            .service
            .success(response)
            .await?
            .json()
            .await
            .map_err(|error| self.service.failed(error))?;
        answer["text"]
            .as_str()
            .map(|text| text.trim().to_owned())
            .ok_or_else(|| SpeechError::Protocol {
                service: self.service.describe(),
                reason: "the answer has no text".to_owned(),
            })
    }
}

/// Text to speech through `{base}/audio/speech`.
#[derive(Clone, Debug)]
pub struct OpenAiTts {
    service: AudioService,
    voice: String,
}

impl OpenAiTts {
    /// `model` speaking with `voice` (`alloy`, `nova`…) at `base_url`.
    pub fn new(
        name: &str,
        base_url: &str,
        model: &str,
        voice: &str,
        key: Option<String>,
        timeout: Duration,
    ) -> Result<Self, SpeechError> {
        Ok(Self {
            service: AudioService::new(name, base_url, model, key, timeout)?,
            voice: voice.to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl TextToSpeech for OpenAiTts {
    fn name(&self) -> &str {
        &self.service.name
    }

    async fn speak(
        &self,
        text: &str,
        audio: &mpsc::Sender<AudioChunk>,
    ) -> Result<AudioFormat, SpeechError> {
        let body = json!({
            "model": self.service.model,
            "input": text,
            "voice": self.voice,
            "response_format": "pcm",
        });
        let response = self
            .service
            .post("/audio/speech")
            .json(&body)
            .send()
            .await
            .map_err(|error| self.service.failed(error))?;
        let mut bytes = self.service.success(response).await?.bytes_stream();
        // A piece may end mid-sample: the odd byte waits for the next piece.
        let mut carried: Option<u8> = None;
        while let Some(piece) = bytes.next().await {
            let piece = piece.map_err(|error| self.service.failed(error))?;
            let mut pcm: Vec<u8> = carried.take().into_iter().chain(piece).collect();
            if pcm.len() % 2 == 1 {
                carried = pcm.pop();
            }
            if pcm.is_empty() {
                continue;
            }
            let chunk = AudioChunk {
                format: PCM_FORMAT,
                pcm,
            };
            audio
                .send(chunk)
                .await
                .map_err(|_| SpeechError::ListenerGone)?;
        }
        Ok(PCM_FORMAT)
    }
}
