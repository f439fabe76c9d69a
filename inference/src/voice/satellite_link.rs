//! The pieces of one connection to a Wyoming satellite: its events read as they come (no
//! timeout: a satellite may be quiet for hours), events written whole from two tasks (what
//! was heard, and the reply's audio), a reply's audio framed as `audio-start`,
//! `audio-chunk`s and `audio-stop`, what a `run-pipeline` asks for, and who has the floor.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use troupe_actors::bridge::{BridgeError, BridgeErrorKind};
use troupe_actors::voice::{AudioChunk, AudioFormat};

use super::wyoming::{WyomingDecoder, WyomingEvent, WyomingLimits};
use super::wyoming_client::format_data;

/// Bytes read from a satellite at once.
const READ_BUFFER: usize = 16 * 1024;
/// After the reply's audio should have played, the microphone is still ignored this long
/// (the speaker's buffer and the room's echo).
const PLAYBACK_MARGIN: Duration = Duration::from_millis(500);

/// A broken or closed link to the satellite: the bridge reconnects.
pub(super) fn link_lost(satellite: &str, reason: impl std::fmt::Display) -> BridgeError {
    BridgeError::new(
        BridgeErrorKind::Transient,
        format!("the satellite {satellite}: {reason}"),
    )
}

/// What the satellite sends, event by event.
pub(super) struct EventReader {
    satellite: String,
    read: OwnedReadHalf,
    decoder: WyomingDecoder,
    buffer: Vec<u8>,
}

impl EventReader {
    pub(super) fn new(satellite: &str, read: OwnedReadHalf) -> Self {
        Self {
            satellite: satellite.to_owned(),
            read,
            decoder: WyomingDecoder::new(WyomingLimits::default()),
            buffer: vec![0; READ_BUFFER],
        }
    }

    pub(super) async fn next_event(&mut self) -> Result<WyomingEvent, BridgeError> {
        loop {
            match self.decoder.next_event() {
                Ok(Some(event)) => return Ok(event),
                Ok(None) => {}
                Err(error) => {
                    return Err(BridgeError::new(
                        BridgeErrorKind::Malformed,
                        format!(
                            "the satellite {} broke the protocol: {error}",
                            self.satellite
                        ),
                    ));
                }
            }
            let read = self
                .read
                .read(&mut self.buffer)
                .await
                .map_err(|error| link_lost(&self.satellite, error))?;
            if read == 0 {
                return Err(link_lost(&self.satellite, "it closed the connection"));
            }
            self.decoder.push(&self.buffer[..read]);
        }
    }
}

/// Where events to the satellite go, each written whole (the hearing and the speaking
/// tasks both write).
pub(super) struct EventWriter {
    satellite: String,
    write: tokio::sync::Mutex<OwnedWriteHalf>,
    timeout: Duration,
}

impl EventWriter {
    pub(super) fn new(satellite: &str, write: OwnedWriteHalf, timeout: Duration) -> Self {
        Self {
            satellite: satellite.to_owned(),
            write: tokio::sync::Mutex::new(write),
            timeout,
        }
    }

    pub(super) async fn send(&self, event: &WyomingEvent) -> Result<(), BridgeError> {
        let bytes = event.encode();
        let mut write = self.write.lock().await;
        tokio::time::timeout(self.timeout, write.write_all(&bytes))
            .await
            .map_err(|_| link_lost(&self.satellite, "it stopped reading"))?
            .map_err(|error| link_lost(&self.satellite, error))
    }

    /// Tells the satellite something went wrong (it shows or plays it; `code` is for its
    /// event service).
    pub(super) async fn error(&self, code: &str, text: &str) -> Result<(), BridgeError> {
        let mut data = Map::new();
        data.insert("text".into(), Value::from(text));
        data.insert("code".into(), Value::from(code));
        self.send(&WyomingEvent::new("error", data)).await
    }
}

/// One reply's audio on its way to the satellite's speaker.
pub(super) struct AudioOut<'a> {
    writer: &'a EventWriter,
    format: Option<AudioFormat>,
    /// When the first chunk went out: the satellite starts playing then.
    started: Option<Instant>,
    seconds: f64,
}

impl<'a> AudioOut<'a> {
    pub(super) const fn new(writer: &'a EventWriter) -> Self {
        Self {
            writer,
            format: None,
            started: None,
            seconds: 0.0,
        }
    }

    /// Sends `chunk`, starting the audio (again, if its format changed) first.
    pub(super) async fn chunk(&mut self, chunk: AudioChunk) -> Result<(), BridgeError> {
        if self.format != Some(chunk.format) {
            if self.format.is_some() {
                self.stop().await?;
            }
            self.writer
                .send(&WyomingEvent::new("audio-start", format_data(chunk.format)))
                .await?;
            self.format = Some(chunk.format);
            self.started.get_or_insert_with(Instant::now);
        }
        self.seconds += chunk.format.seconds(chunk.pcm.len());
        let event =
            WyomingEvent::new("audio-chunk", format_data(chunk.format)).with_payload(chunk.pcm);
        self.writer.send(&event).await
    }

    /// Ends the audio (if any started); answers when it will have played.
    pub(super) async fn finish(mut self) -> Result<Option<Instant>, BridgeError> {
        if self.format.is_some() {
            self.stop().await?;
        }
        Ok(self
            .started
            .map(|started| started + Duration::from_secs_f64(self.seconds)))
    }

    async fn stop(&mut self) -> Result<(), BridgeError> {
        self.format = None;
        self.writer
            .send(&WyomingEvent::new("audio-stop", Map::new()))
            .await
    }
}

/// What a satellite's `run-pipeline` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PipelineRun {
    /// `start_stage = "wake"`: the satellite did not detect the wake word itself.
    pub(super) wake_here: bool,
    /// `end_stage = "tts"`: it plays the reply (`handle` and earlier: it only wants text).
    pub(super) speaks: bool,
}

impl PipelineRun {
    pub(super) fn of(data: &Map<String, Value>) -> Self {
        let stage = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or_default();
        Self {
            wake_here: stage("start_stage") == "wake",
            speaks: matches!(stage("end_stage"), "tts" | ""),
        }
    }
}

/// Who has the floor. The link is half duplex: while the satellite plays a reply, what
/// its microphone hears is mostly that reply, so it is not listened to.
#[derive(Debug, Default)]
pub(super) struct Floor {
    /// The satellite wants replies spoken (its last `run-pipeline` ends at `tts`).
    speaks: AtomicBool,
    speaking: AtomicBool,
    playing_until: Mutex<Option<Instant>>,
}

impl Floor {
    pub(super) fn pipeline(&self, run: PipelineRun) {
        self.speaks.store(run.speaks, Ordering::Relaxed);
    }

    pub(super) fn replies_are_spoken(&self) -> bool {
        self.speaks.load(Ordering::Relaxed)
    }

    pub(super) fn speaking(&self, speaking: bool) {
        self.speaking.store(speaking, Ordering::Relaxed);
    }

    /// The reply's audio plays until `until`.
    pub(super) fn playing_until(&self, until: Instant) {
        *self
            .playing_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(until + PLAYBACK_MARGIN);
    }

    /// The assistant is speaking, or its reply is still playing.
    pub(super) fn assistant_has_it(&self) -> bool {
        self.speaking.load(Ordering::Relaxed)
            || self
                .playing_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some_and(|until| Instant::now() < until)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_pipeline_run_says_where_the_wake_word_is_heard_and_whether_to_speak() {
        let remote_wake =
            PipelineRun::of(&data(json!({"start_stage": "wake", "end_stage": "tts"})));
        assert_eq!(
            remote_wake,
            PipelineRun {
                wake_here: true,
                speaks: true
            }
        );
        let text_only =
            PipelineRun::of(&data(json!({"start_stage": "asr", "end_stage": "handle"})));
        assert_eq!(
            text_only,
            PipelineRun {
                wake_here: false,
                speaks: false
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_microphone_is_ignored_until_the_reply_has_played() {
        let floor = Floor::default();
        assert!(!floor.assistant_has_it());
        floor.speaking(true);
        assert!(floor.assistant_has_it());
        floor.speaking(false);
        floor.playing_until(Instant::now() + Duration::from_secs(2));
        assert!(floor.assistant_has_it());
        tokio::time::advance(Duration::from_secs(2) + PLAYBACK_MARGIN).await;
        assert!(!floor.assistant_has_it());
    }
}
