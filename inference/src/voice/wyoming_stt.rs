//! Speech to text through a Wyoming service (`wyoming-faster-whisper`,
//! `wyoming-whisper-cpp`, or any service that answers `transcribe`): one connection per
//! utterance; the audio is sent as it arrives (`audio-start`, `audio-chunk`s,
//! `audio-stop`), and the service's `transcript` is the text.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use troupe_actors::voice::{AudioFormat, SpeechError, SpeechToText};

use super::wyoming::WyomingEvent;
use super::wyoming_client::{WyomingService, format_data};

/// A Wyoming speech-to-text service.
#[derive(Clone, Debug)]
pub struct WyomingStt {
    service: WyomingService,
    language: Option<String>,
}

impl WyomingStt {
    /// The service at `uri` (`tcp://HOST:PORT`), for speech in `language` (the service's
    /// choice when `None`); it may stay silent for `timeout` at most once the audio ends.
    pub fn new(
        name: &str,
        uri: &str,
        language: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, SpeechError> {
        Ok(Self {
            service: WyomingService::new(name, uri, timeout)?,
            language: language.map(str::to_owned),
        })
    }

    fn transcribe_event(&self) -> WyomingEvent {
        let mut data = Map::new();
        if let Some(language) = &self.language {
            data.insert("language".into(), Value::from(language.as_str()));
        }
        WyomingEvent::new("transcribe", data)
    }
}

#[async_trait::async_trait]
impl SpeechToText for WyomingStt {
    fn name(&self) -> &str {
        self.service.name()
    }

    async fn transcribe(
        &self,
        format: AudioFormat,
        mut audio: mpsc::Receiver<Vec<u8>>,
    ) -> Result<String, SpeechError> {
        let mut connection = self.service.connect().await?;
        connection.send(&self.transcribe_event()).await?;
        connection
            .send(&WyomingEvent::new("audio-start", format_data(format)))
            .await?;
        while let Some(pcm) = audio.recv().await {
            let chunk = WyomingEvent::new("audio-chunk", format_data(format)).with_payload(pcm);
            connection.send(&chunk).await?;
        }
        connection
            .send(&WyomingEvent::new("audio-stop", Map::new()))
            .await?;
        loop {
            let event = connection.next_event().await?;
            match event.kind.as_str() {
                "transcript" => {
                    return event
                        .data
                        .get("text")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| self.service.protocol("a transcript without text"));
                }
                "error" => return Err(self.service.refused(&event)),
                // Partial transcripts and other events: the final transcript follows.
                _ => {}
            }
        }
    }
}
