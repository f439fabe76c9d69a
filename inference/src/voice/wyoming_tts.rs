//! Text to speech through a Wyoming service (`wyoming-piper`, or any service that answers
//! `synthesize`): one connection per utterance, the text sent as `synthesize`, the audio
//! passed on chunk by chunk as `audio-chunk` events arrive, until `audio-stop`.

use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use troupe_actors::voice::{AudioChunk, AudioFormat, SpeechError, TextToSpeech};

use super::wyoming::WyomingEvent;
use super::wyoming_client::{WyomingService, format_of};

/// A Wyoming text-to-speech service.
#[derive(Clone, Debug)]
pub struct WyomingTts {
    service: WyomingService,
    voice: Option<String>,
}

impl WyomingTts {
    /// The service at `uri` (`tcp://HOST:PORT`), speaking with `voice` (its default when
    /// `None`); it may stay silent for `timeout` at most.
    pub fn new(
        name: &str,
        uri: &str,
        voice: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, SpeechError> {
        Ok(Self {
            service: WyomingService::new(name, uri, timeout)?,
            voice: voice.map(str::to_owned),
        })
    }

    fn synthesize(&self, text: &str) -> WyomingEvent {
        let mut data = Map::new();
        data.insert("text".into(), Value::from(text));
        if let Some(voice) = &self.voice {
            data.insert("voice".into(), json!({ "name": voice }));
        }
        WyomingEvent::new("synthesize", data)
    }
}

#[async_trait::async_trait]
impl TextToSpeech for WyomingTts {
    fn name(&self) -> &str {
        self.service.name()
    }

    async fn speak(
        &self,
        text: &str,
        audio: &mpsc::Sender<AudioChunk>,
    ) -> Result<AudioFormat, SpeechError> {
        let mut connection = self.service.connect().await?;
        connection.send(&self.synthesize(text)).await?;
        let mut format = None;
        loop {
            let event = connection.next_event().await?;
            match event.kind.as_str() {
                "audio-start" => format = format_of(&event.data),
                "audio-chunk" => {
                    let chunk_format = format_of(&event.data)
                        .or(format)
                        .ok_or_else(|| self.service.protocol("audio-chunk without a format"))?;
                    format = Some(chunk_format);
                    let chunk = AudioChunk {
                        format: chunk_format,
                        pcm: event.payload,
                    };
                    audio
                        .send(chunk)
                        .await
                        .map_err(|_| SpeechError::ListenerGone)?;
                }
                "audio-stop" => {
                    return format.ok_or_else(|| self.service.protocol("audio-stop without audio"));
                }
                "error" => return Err(self.service.refused(&event)),
                // Other events (`info`, pings) do not concern an utterance.
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synthesize_event_names_the_voice_when_one_is_chosen() {
        let tts = WyomingTts::new(
            "piper",
            "tcp://127.0.0.1:10200",
            Some("en_US-joe-medium"),
            Duration::from_secs(5),
        )
        .unwrap();
        let event = tts.synthesize("Hello.");
        assert_eq!(event.kind, "synthesize");
        assert_eq!(
            Value::Object(event.data),
            json!({"text": "Hello.", "voice": {"name": "en_US-joe-medium"}})
        );
    }
}
