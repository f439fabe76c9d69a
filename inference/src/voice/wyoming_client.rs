//! One connection to a Wyoming service (`tcp://HOST:PORT`): connect, send events, read
//! events, each within the service's timeout, every failure a typed [`SpeechError`] that
//! names the service.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use troupe_actors::voice::{AudioFormat, SpeechError};

use super::wyoming::{WyomingDecoder, WyomingEvent, WyomingLimits};

/// Bytes read from a service at once.
const READ_BUFFER: usize = 16 * 1024;

/// Where a Wyoming service is, and how long it may stay silent.
#[derive(Clone, Debug)]
pub(super) struct WyomingService {
    name: String,
    /// `HOST:PORT`.
    address: String,
    timeout: Duration,
}

/// Checks that `uri` is a Wyoming address (`tcp://HOST:PORT`).
pub fn check_wyoming_uri(uri: &str) -> Result<(), SpeechError> {
    tcp_address(uri).map(drop)
}

/// `HOST:PORT` of a `tcp://HOST:PORT` address.
pub(super) fn tcp_address(uri: &str) -> Result<String, SpeechError> {
    let bad = || SpeechError::BadAddress(uri.to_owned());
    let address = uri.strip_prefix("tcp://").ok_or_else(bad)?;
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(address.to_owned())
}

/// The audio format an event's data gives (`rate`, `width`, `channels`).
pub(super) fn format_of(data: &Map<String, Value>) -> Option<AudioFormat> {
    let number = |key: &str| data.get(key).and_then(Value::as_u64);
    Some(AudioFormat {
        rate: u32::try_from(number("rate")?).ok()?,
        width: u16::try_from(number("width")?).ok()?,
        channels: u16::try_from(number("channels")?).ok()?,
    })
}

/// An event's data giving `format`.
pub(super) fn format_data(format: AudioFormat) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("rate".into(), Value::from(format.rate));
    data.insert("width".into(), Value::from(format.width));
    data.insert("channels".into(), Value::from(format.channels));
    data
}

impl WyomingService {
    pub(super) fn new(name: &str, uri: &str, timeout: Duration) -> Result<Self, SpeechError> {
        Ok(Self {
            name: name.to_owned(),
            address: tcp_address(uri)?,
            timeout,
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!("{} (tcp://{})", self.name, self.address)
    }

    fn timed_out(&self) -> SpeechError {
        SpeechError::TimedOut {
            service: self.describe(),
            seconds: self.timeout.as_secs(),
        }
    }

    fn unreachable(&self, source: std::io::Error) -> SpeechError {
        SpeechError::Unreachable {
            service: self.describe(),
            source: Box::new(source),
        }
    }

    pub(super) fn protocol(&self, reason: impl std::fmt::Display) -> SpeechError {
        SpeechError::Protocol {
            service: self.describe(),
            reason: reason.to_string(),
        }
    }

    /// The service's `error` event as an error.
    pub(super) fn refused(&self, event: &WyomingEvent) -> SpeechError {
        let reason = event
            .data
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("an error without text");
        SpeechError::Refused {
            service: self.describe(),
            reason: reason.to_owned(),
        }
    }

    pub(super) async fn connect(&self) -> Result<WyomingConnection<'_>, SpeechError> {
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|source| self.unreachable(source))?;
        Ok(WyomingConnection {
            service: self,
            stream,
            decoder: WyomingDecoder::new(WyomingLimits::default()),
            buffer: vec![0; READ_BUFFER],
        })
    }
}

/// An open connection to a service.
pub(super) struct WyomingConnection<'a> {
    service: &'a WyomingService,
    stream: TcpStream,
    decoder: WyomingDecoder,
    buffer: Vec<u8>,
}

impl WyomingConnection<'_> {
    pub(super) async fn send(&mut self, event: &WyomingEvent) -> Result<(), SpeechError> {
        tokio::time::timeout(self.service.timeout, self.stream.write_all(&event.encode()))
            .await
            .map_err(|_| self.service.timed_out())?
            .map_err(|source| self.service.unreachable(source))
    }

    /// The next event from the service, within its timeout.
    pub(super) async fn next_event(&mut self) -> Result<WyomingEvent, SpeechError> {
        loop {
            if let Some(event) = self
                .decoder
                .next_event()
                .map_err(|error| self.service.protocol(error))?
            {
                return Ok(event);
            }
            let read =
                tokio::time::timeout(self.service.timeout, self.stream.read(&mut self.buffer))
                    .await
                    .map_err(|_| self.service.timed_out())?
                    .map_err(|source| self.service.unreachable(source))?;
            if read == 0 {
                return Err(self.service.protocol("the connection closed mid-exchange"));
            }
            self.decoder.push(&self.buffer[..read]);
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
    fn formats_round_trip_through_event_data() {
        let format = AudioFormat {
            rate: 16000,
            width: 2,
            channels: 1,
        };
        assert_eq!(format_of(&format_data(format)), Some(format));
        assert_eq!(format_of(&Map::new()), None);
    }
}
