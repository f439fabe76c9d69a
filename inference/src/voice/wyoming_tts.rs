//! Text to speech through a Wyoming service (`wyoming-piper`, or any service that answers
//! `synthesize`): one connection per utterance, the text sent as `synthesize`, the audio
//! passed on chunk by chunk as `audio-chunk` events arrive, until `audio-stop`.

use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use troupe_actors::voice::{AudioChunk, AudioFormat, SpeechError, TextToSpeech};

use super::wyoming::{WyomingDecoder, WyomingEvent, WyomingLimits};

/// Bytes read from the service at once.
const READ_BUFFER: usize = 16 * 1024;

/// A Wyoming text-to-speech service.
#[derive(Clone, Debug)]
pub struct WyomingTts {
    name: String,
    /// `HOST:PORT`.
    address: String,
    voice: Option<String>,
    /// The longest the service may stay silent (to connect, or between two events).
    timeout: Duration,
}

/// `HOST:PORT` of a `tcp://HOST:PORT` address.
fn tcp_address(uri: &str) -> Result<String, SpeechError> {
    let bad = || SpeechError::BadAddress(uri.to_owned());
    let address = uri.strip_prefix("tcp://").ok_or_else(bad)?;
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(address.to_owned())
}

fn format_of(data: &Map<String, Value>) -> Option<AudioFormat> {
    let number = |key: &str| data.get(key).and_then(Value::as_u64);
    Some(AudioFormat {
        rate: u32::try_from(number("rate")?).ok()?,
        width: u16::try_from(number("width")?).ok()?,
        channels: u16::try_from(number("channels")?).ok()?,
    })
}

impl WyomingTts {
    /// The service at `uri` (`tcp://HOST:PORT`), speaking with `voice` (its default when
    /// `None`).
    pub fn new(
        name: &str,
        uri: &str,
        voice: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, SpeechError> {
        Ok(Self {
            name: name.to_owned(),
            address: tcp_address(uri)?,
            voice: voice.map(str::to_owned),
            timeout,
        })
    }

    fn service(&self) -> String {
        format!("{} (tcp://{})", self.name, self.address)
    }

    fn timed_out(&self) -> SpeechError {
        SpeechError::TimedOut {
            service: self.service(),
            seconds: self.timeout.as_secs(),
        }
    }

    fn protocol(&self, reason: impl std::fmt::Display) -> SpeechError {
        SpeechError::Protocol {
            service: self.service(),
            reason: reason.to_string(),
        }
    }

    fn synthesize(&self, text: &str) -> WyomingEvent {
        let mut data = Map::new();
        data.insert("text".into(), Value::from(text));
        if let Some(voice) = &self.voice {
            data.insert("voice".into(), json!({ "name": voice }));
        }
        WyomingEvent::new("synthesize", data)
    }

    /// The next event from the service, within the timeout.
    async fn next_event(
        &self,
        stream: &mut TcpStream,
        decoder: &mut WyomingDecoder,
    ) -> Result<WyomingEvent, SpeechError> {
        let mut buffer = vec![0; READ_BUFFER];
        loop {
            if let Some(event) = decoder.next_event().map_err(|error| self.protocol(error))? {
                return Ok(event);
            }
            let read = tokio::time::timeout(self.timeout, stream.read(&mut buffer))
                .await
                .map_err(|_| self.timed_out())?
                .map_err(|source| SpeechError::Unreachable {
                    service: self.service(),
                    source,
                })?;
            if read == 0 {
                return Err(self.protocol("the connection closed before audio-stop"));
            }
            decoder.push(&buffer[..read]);
        }
    }
}

#[async_trait::async_trait]
impl TextToSpeech for WyomingTts {
    fn name(&self) -> &str {
        &self.name
    }

    async fn speak(
        &self,
        text: &str,
        audio: &mpsc::Sender<AudioChunk>,
    ) -> Result<AudioFormat, SpeechError> {
        let unreachable = |source| SpeechError::Unreachable {
            service: self.service(),
            source,
        };
        let mut stream = tokio::time::timeout(self.timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| self.timed_out())?
            .map_err(unreachable)?;
        stream
            .write_all(&self.synthesize(text).encode())
            .await
            .map_err(unreachable)?;
        let mut decoder = WyomingDecoder::new(WyomingLimits::default());
        let mut format = None;
        loop {
            let event = self.next_event(&mut stream, &mut decoder).await?;
            match event.kind.as_str() {
                "audio-start" => format = format_of(&event.data),
                "audio-chunk" => {
                    let chunk_format = format_of(&event.data)
                        .or(format)
                        .ok_or_else(|| self.protocol("audio-chunk without a format"))?;
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
                    return format.ok_or_else(|| self.protocol("audio-stop without audio"));
                }
                "error" => {
                    let reason = event
                        .data
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or("an error without text");
                    return Err(SpeechError::Refused {
                        service: self.service(),
                        reason: reason.to_owned(),
                    });
                }
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
    fn only_tcp_addresses_with_a_host_and_a_port_are_taken() {
        assert_eq!(
            tcp_address("tcp://127.0.0.1:10200").unwrap(),
            "127.0.0.1:10200"
        );
        assert_eq!(
            tcp_address("tcp://piper.lan:10200").unwrap(),
            "piper.lan:10200"
        );
        for bad in [
            "127.0.0.1:10200",
            "tcp://127.0.0.1",
            "tcp://:10200",
            "tcp://host:99999",
            "unix:///run/piper.sock",
        ] {
            assert!(
                matches!(tcp_address(bad), Err(SpeechError::BadAddress(_))),
                "{bad}"
            );
        }
    }

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
