//! The Wyoming protocol (rhasspy/wyoming), sans-IO: how Home Assistant's voice services
//! (Piper, Whisper, openWakeWord) and satellites talk.
//!
//! An event is a JSON header line, `{"type", "data"?, "data_length"?, "payload_length"?,
//! "version"?}` and `\n`; then `data_length` bytes of JSON data, merged over the header's
//! own `data`; then `payload_length` bytes of payload (audio). [`WyomingEvent::encode`]
//! writes events as the official library does (data after the header, its length in it);
//! [`WyomingDecoder`] reads either form from bytes as they arrive, in any chunks, within
//! [`WyomingLimits`], and never panics on what a peer sends.

use serde_json::{Map, Value};

/// The protocol version written in headers (the official library's, which it checks
/// nothing against).
pub const WYOMING_VERSION: &str = "1.10.2";

/// One event.
#[derive(Clone, Debug, PartialEq)]
pub struct WyomingEvent {
    /// `audio-chunk`, `transcribe`, `synthesize`, `describe`, `info`…
    pub kind: String,
    pub data: Map<String, Value>,
    /// Audio, for the events that carry it.
    pub payload: Vec<u8>,
}

impl WyomingEvent {
    pub fn new(kind: impl Into<String>, data: Map<String, Value>) -> Self {
        Self {
            kind: kind.into(),
            data,
            payload: Vec::new(),
        }
    }

    #[must_use]
    pub fn with_payload(mut self, payload: Vec<u8>) -> Self {
        self.payload = payload;
        self
    }

    /// The event's bytes, as the official library writes them.
    pub fn encode(&self) -> Vec<u8> {
        let data = (!self.data.is_empty()).then(|| Value::Object(self.data.clone()).to_string());
        let mut header = Map::new();
        header.insert("type".into(), Value::from(self.kind.as_str()));
        header.insert("version".into(), Value::from(WYOMING_VERSION));
        if let Some(data) = &data {
            header.insert("data_length".into(), Value::from(data.len()));
        }
        if !self.payload.is_empty() {
            header.insert("payload_length".into(), Value::from(self.payload.len()));
        }
        let header = Value::Object(header).to_string();
        let data_length = data.as_ref().map_or(0, String::len);
        let mut bytes = Vec::with_capacity(header.len() + 1 + data_length + self.payload.len());
        bytes.extend_from_slice(header.as_bytes());
        bytes.push(b'\n');
        if let Some(data) = data {
            bytes.extend_from_slice(data.as_bytes());
        }
        bytes.extend_from_slice(&self.payload);
        bytes
    }
}

/// The most a peer may send in one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WyomingLimits {
    pub max_header_bytes: usize,
    pub max_data_bytes: usize,
    pub max_payload_bytes: usize,
}

impl Default for WyomingLimits {
    /// A 64 KiB header, 1 MiB of data, 8 MiB of payload (minutes of 16 kHz audio; peers
    /// send it in chunks of a few KiB).
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_data_bytes: 1024 * 1024,
            max_payload_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Why bytes are not a Wyoming event. After one, the stream cannot be read further.
#[derive(Debug, thiserror::Error)]
pub enum WyomingError {
    #[error("a header line is longer than {limit} bytes")]
    HeaderTooLong { limit: usize },
    #[error("a header is not JSON: {0}")]
    BadHeader(#[source] serde_json::Error),
    #[error("a header is not a JSON object with a string `type`")]
    NoType,
    #[error("a header's `data` is not a JSON object")]
    DataNotAnObject,
    #[error("`{field}` is not a length")]
    BadLength { field: &'static str },
    #[error("an event's {part} of {length} bytes is over the limit of {limit}")]
    TooLarge {
        part: &'static str,
        length: usize,
        limit: usize,
    },
    #[error("an event's data is not a JSON object: {0}")]
    BadData(#[source] serde_json::Error),
}

/// Where the decoder is in the current event.
#[derive(Debug)]
enum Reading {
    Header,
    Body {
        kind: String,
        data: Map<String, Value>,
        data_length: usize,
        payload_length: usize,
    },
}

/// Reads events from bytes as they arrive.
#[derive(Debug)]
pub struct WyomingDecoder {
    limits: WyomingLimits,
    buffer: Vec<u8>,
    reading: Reading,
}

fn length(header: &Map<String, Value>, field: &'static str) -> Result<usize, WyomingError> {
    match header.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(value) => value
            .as_u64()
            .and_then(|length| usize::try_from(length).ok())
            .ok_or(WyomingError::BadLength { field }),
    }
}

fn within(part: &'static str, length: usize, limit: usize) -> Result<usize, WyomingError> {
    if length > limit {
        return Err(WyomingError::TooLarge {
            part,
            length,
            limit,
        });
    }
    Ok(length)
}

impl WyomingDecoder {
    pub fn new(limits: WyomingLimits) -> Self {
        Self {
            limits,
            buffer: Vec::new(),
            reading: Reading::Header,
        }
    }

    /// Takes bytes as they arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole event, if the bytes pushed hold one.
    pub fn next_event(&mut self) -> Result<Option<WyomingEvent>, WyomingError> {
        if matches!(self.reading, Reading::Header) && !self.read_header()? {
            return Ok(None);
        }
        let Reading::Body {
            data_length,
            payload_length,
            ..
        } = &self.reading
        else {
            return Ok(None);
        };
        let (data_length, payload_length) = (*data_length, *payload_length);
        if self.buffer.len() < data_length + payload_length {
            return Ok(None);
        }
        let Reading::Body { kind, mut data, .. } =
            std::mem::replace(&mut self.reading, Reading::Header)
        else {
            return Ok(None);
        };
        let rest = self.buffer.split_off(data_length + payload_length);
        let mut body = std::mem::replace(&mut self.buffer, rest);
        let payload = body.split_off(data_length);
        if data_length > 0 {
            let merged: Map<String, Value> =
                serde_json::from_slice(&body).map_err(WyomingError::BadData)?;
            data.extend(merged);
        }
        Ok(Some(WyomingEvent {
            kind,
            data,
            payload,
        }))
    }

    /// Reads the header line when it is whole; answers whether it was.
    fn read_header(&mut self) -> Result<bool, WyomingError> {
        let Some(end) = self.buffer.iter().position(|byte| *byte == b'\n') else {
            if self.buffer.len() > self.limits.max_header_bytes {
                return Err(WyomingError::HeaderTooLong {
                    limit: self.limits.max_header_bytes,
                });
            }
            return Ok(false);
        };
        if end > self.limits.max_header_bytes {
            return Err(WyomingError::HeaderTooLong {
                limit: self.limits.max_header_bytes,
            });
        }
        let rest = self.buffer.split_off(end + 1);
        let line = std::mem::replace(&mut self.buffer, rest);
        let header: Value = serde_json::from_slice(&line).map_err(WyomingError::BadHeader)?;
        let Value::Object(mut header) = header else {
            return Err(WyomingError::NoType);
        };
        let Some(Value::String(kind)) = header.remove("type") else {
            return Err(WyomingError::NoType);
        };
        let data = match header.remove("data") {
            Some(Value::Object(data)) => data,
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(WyomingError::DataNotAnObject),
        };
        self.reading = Reading::Body {
            kind,
            data,
            data_length: within(
                "data",
                length(&header, "data_length")?,
                self.limits.max_data_bytes,
            )?,
            payload_length: within(
                "payload",
                length(&header, "payload_length")?,
                self.limits.max_payload_bytes,
            )?,
        };
        Ok(true)
    }
}

#[cfg(test)]
#[path = "wyoming_tests.rs"]
mod tests;
