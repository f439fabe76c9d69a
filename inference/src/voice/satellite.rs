//! A Home Assistant voice satellite (`wyoming-satellite` on a small board, or anything that
//! speaks its side of Wyoming) as a bridge. Troupe connects to it as Home Assistant does
//! (`describe`, then `run-satellite`), hears its microphone through voice activity and
//! speech to text, hands what was said to the session like any platform message (the
//! satellite is the sender, so `[[identities]]` can make it a person's), and speaks the
//! reply to its speaker sentence by sentence as `audio-chunk`s. The bridge actor reconnects
//! it with backoff and keeps its state (`GET /api/v1/voice`).
//!
//! Without a wake-word engine, a satellite that leaves the wake word to Troupe
//! (`start_stage = "wake"`) has every utterance answered: give such satellites their own
//! wake word (`wyoming-satellite --wake-uri`), or use them push-to-talk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use troupe_actors::TraceParent;
use troupe_actors::bridge::{
    Bridge, BridgeContext, BridgeError, BridgeErrorKind, BridgeInbound, Capabilities, ChatKind,
    Delivery, Destination, MarkdownDialect,
};
use troupe_actors::message::{ContentType, InboundMessage, MessageParts, unix_now};
use troupe_actors::metrics as metric_names;
use troupe_actors::voice::{
    AudioChunk, LISTENING_FORMAT, ListenerConfig, SpeechError, SpeechToText, TextToSpeech,
    VoiceActivity, WakeWord, speakable_sentences,
};

use super::ear::{Ear, EarEvent};
use super::satellite_link::{AudioOut, EventReader, EventWriter, Floor, PipelineRun, link_lost};
use super::wyoming::WyomingEvent;
use super::wyoming_client::{format_of, tcp_address};

/// The platform of what satellites hear (`satellite:<name>` in `[[identities]]`).
pub const SATELLITE_PLATFORM: &str = "satellite";
/// Replies waiting to be spoken.
const SPEECH_QUEUE: usize = 4;
/// A reply the satellite was away for is still spoken if it comes back within this long;
/// later, an answer out of nowhere would startle, and it is dropped.
const STALE_REPLY: Duration = Duration::from_secs(120);

/// The engines a satellite's pipeline runs on.
#[derive(Clone)]
pub struct VoiceEngines {
    pub vad: Arc<dyn VoiceActivity>,
    pub stt: Arc<dyn SpeechToText>,
    pub tts: Arc<dyn TextToSpeech>,
    /// The wake word, for satellites that leave it to Troupe.
    pub wake: Option<Arc<dyn WakeWord>>,
}

/// A reply to speak, and who waits for it to be spoken.
struct Speech {
    text: String,
    done: oneshot::Sender<Result<(), BridgeError>>,
}

/// One satellite.
pub struct WyomingSatellite {
    name: String,
    /// `HOST:PORT`.
    address: String,
    engines: VoiceEngines,
    listening: ListenerConfig,
    /// How long the satellite may take to connect, answer `describe` or read an event.
    timeout: Duration,
    /// The connected satellite's reply queue; `None` while it is not connected.
    speaker: Mutex<Option<mpsc::Sender<Speech>>>,
    /// Utterances heard, for their message ids.
    utterances: AtomicU64,
    /// Replies that could not be spoken yet (the satellite was away), since when.
    waiting: Mutex<HashMap<String, Instant>>,
    /// The last utterance handed to the session, until its reply is spoken.
    answering: Mutex<Option<Answering>>,
}

/// The utterance whose reply is awaited: when it ended (until the reply's first audio is
/// out), and its trace, which the reply's speech joins.
#[derive(Clone, Copy)]
struct Answering {
    ended: Option<Instant>,
    trace: Option<TraceParent>,
}

/// Records how long one stage of the voice pipeline took (`troupe_voice_stage_seconds`).
fn stage_took(stage: &'static str, since: Instant) {
    metrics::histogram!(metric_names::VOICE_STAGE_SECONDS, "stage" => stage)
        .record(since.elapsed().as_secs_f64());
}

impl WyomingSatellite {
    /// The satellite `name` at `uri` (`tcp://HOST:PORT`, its `--uri`), whose speech is cut
    /// into utterances as `listening` says.
    pub fn new(
        name: &str,
        uri: &str,
        engines: VoiceEngines,
        listening: ListenerConfig,
        timeout: Duration,
    ) -> Result<Self, SpeechError> {
        Ok(Self {
            name: name.to_owned(),
            address: tcp_address(uri)?,
            engines,
            listening,
            timeout,
            speaker: Mutex::new(None),
            utterances: AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
            answering: Mutex::new(None),
        })
    }

    fn answering(&self) -> std::sync::MutexGuard<'_, Option<Answering>> {
        self.answering
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn speaker(&self) -> std::sync::MutexGuard<'_, Option<mpsc::Sender<Speech>>> {
        self.speaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn link_lost(&self, reason: impl std::fmt::Display) -> BridgeError {
        link_lost(&self.name, reason)
    }

    /// Connects, and asks the satellite to stream (after making sure it is one).
    async fn open(&self) -> Result<(EventReader, EventWriter), BridgeError> {
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| self.link_lost("it did not accept a connection in time"))?
            .map_err(|error| self.link_lost(error))?;
        let (read, write) = stream.into_split();
        let mut reader = EventReader::new(&self.name, read);
        let writer = EventWriter::new(&self.name, write, self.timeout);
        writer
            .send(&WyomingEvent::new("describe", Map::new()))
            .await?;
        let info = tokio::time::timeout(self.timeout, async {
            loop {
                let event = reader.next_event().await?;
                if event.kind == "info" {
                    return Ok::<_, BridgeError>(event);
                }
            }
        })
        .await
        .map_err(|_| self.link_lost("it did not answer `describe`"))??;
        if !info.data.contains_key("satellite") {
            return Err(BridgeError::new(
                BridgeErrorKind::Rejected,
                format!(
                    "tcp://{} is a Wyoming service but not a satellite (its `info` has no `satellite`)",
                    self.address
                ),
            ));
        }
        writer
            .send(&WyomingEvent::new("run-satellite", Map::new()))
            .await?;
        Ok((reader, writer))
    }

    /// Hears the satellite until the link breaks.
    async fn hear(
        &self,
        mut reader: EventReader,
        writer: &EventWriter,
        floor: &Floor,
        context: &BridgeContext,
    ) -> Result<(), BridgeError> {
        let mut ear = Ear::new(
            Arc::clone(&self.engines.vad),
            Arc::clone(&self.engines.stt),
            self.engines.wake.clone(),
            self.listening,
        );
        // The span of the utterance under way, from its wake word or its first speech.
        let mut utterance: Option<tracing::Span> = None;
        loop {
            let event = reader.next_event().await?;
            // What ends in this event ended about now (the rest is its transcript).
            let arrived = Instant::now();
            let heard = match event.kind.as_str() {
                "run-pipeline" => {
                    let run = PipelineRun::of(&event.data);
                    floor.pipeline(run);
                    ear.start(run.wake_here);
                    if run.wake_here && ear.wake_word().is_none() {
                        tracing::debug!(satellite = %self.name, "no wake-word engine: every utterance is answered");
                    }
                    continue;
                }
                "audio-chunk" => {
                    if format_of(&event.data).is_some_and(|format| format != LISTENING_FORMAT) {
                        let text = "the microphone must stream 16 kHz mono 16-bit audio";
                        writer.error("unsupported-audio", text).await?;
                        return Err(BridgeError::new(
                            BridgeErrorKind::Rejected,
                            format!("the satellite {}: {text}", self.name),
                        ));
                    }
                    if floor.assistant_has_it() {
                        continue;
                    }
                    let span = utterance.clone().unwrap_or_else(tracing::Span::none);
                    ear.hear(&event.payload).instrument(span).await
                }
                "audio-stop" => ear.finish().await,
                _ => continue,
            };
            self.heard(heard, arrived, &mut ear, &mut utterance, writer, context)
                .await?;
        }
    }

    /// Acts on what the ear heard in one event, which arrived at `arrived`; `utterance`
    /// is the span of the utterance under way.
    async fn heard(
        &self,
        heard: Result<EarEvent, SpeechError>,
        arrived: Instant,
        ear: &mut Ear,
        utterance: &mut Option<tracing::Span>,
        writer: &EventWriter,
        context: &BridgeContext,
    ) -> Result<(), BridgeError> {
        match heard {
            Ok(EarEvent::Nothing) => Ok(()),
            Ok(EarEvent::GaveUp) => {
                // The wake word's utterance never came: its span ends here.
                *utterance = None;
                Ok(())
            }
            Ok(EarEvent::WakeWord) => {
                stage_took("wake", arrived);
                let span = utterance.get_or_insert_with(|| self.utterance_span());
                span.in_scope(|| tracing::debug!(satellite = %self.name, "wake word heard"));
                let mut detection = Map::new();
                let word = ear.wake_word().unwrap_or_default();
                detection.insert("name".into(), Value::from(word));
                writer
                    .send(&WyomingEvent::new("detection", detection))
                    .await
            }
            Ok(EarEvent::VoiceStarted) => {
                utterance.get_or_insert_with(|| self.utterance_span());
                writer
                    .send(&WyomingEvent::new("voice-started", Map::new()))
                    .await
            }
            Ok(EarEvent::Said { text, unannounced }) => {
                stage_took("transcript", arrived);
                let span = utterance.take().unwrap_or_else(|| self.utterance_span());
                *self.answering() = Some(Answering {
                    ended: Some(arrived),
                    trace: TraceParent::of_span(&span),
                });
                if unannounced {
                    writer
                        .send(&WyomingEvent::new("voice-started", Map::new()))
                        .await?;
                }
                writer
                    .send(&WyomingEvent::new("voice-stopped", Map::new()))
                    .await?;
                // The session's turn is a child of the utterance's span.
                self.said(text, writer, context).instrument(span).await
            }
            Err(error) => {
                tracing::warn!(satellite = %self.name, %error, "could not hear the satellite");
                *utterance = None;
                ear.reset();
                writer.error("stt-failed", &error.to_string()).await
            }
        }
    }

    /// The span of one utterance: its transcription and the session's turn are its
    /// children; the reply's speech joins its trace.
    fn utterance_span(&self) -> tracing::Span {
        tracing::debug_span!("voice_utterance", satellite = %self.name)
    }

    /// `text` was said: the satellite is told, and the session gets it.
    async fn said(
        &self,
        text: String,
        writer: &EventWriter,
        context: &BridgeContext,
    ) -> Result<(), BridgeError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let mut transcript = Map::new();
        transcript.insert("text".into(), Value::from(text));
        writer
            .send(&WyomingEvent::new("transcript", transcript))
            .await?;
        context.receive(self.inbound(text)?).await
    }

    fn inbound(&self, text: &str) -> Result<BridgeInbound, BridgeError> {
        let number = self.utterances.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let message = InboundMessage::new(MessageParts {
            id: format!("{}-{}-{number}", self.name, now.as_millis()),
            platform: SATELLITE_PLATFORM.to_owned(),
            sender_id: self.name.clone(),
            conversation_id: self.name.clone(),
            content_type: ContentType::Text,
            payload: text.to_owned(),
            timestamp: unix_now(),
            reply_to: None,
            attachments: Vec::new(),
            metadata: std::collections::BTreeMap::new(),
        })
        .map_err(|error| BridgeError::new(BridgeErrorKind::Malformed, error.to_string()))?;
        Ok(BridgeInbound {
            message,
            destination: Destination {
                chat_id: self.name.clone(),
                ..Destination::default()
            },
            chat: ChatKind::Direct,
            addressed: true,
            sender_name: self.name.clone(),
        })
    }

    /// Hands `text` to the connected satellite's speaker; answers once it was spoken.
    async fn speak(&self, text: &str) -> Result<(), BridgeError> {
        let not_connected = || {
            BridgeError::new(
                BridgeErrorKind::Transient,
                format!("the satellite {} is not connected", self.name),
            )
        };
        let speaker = self.speaker().clone().ok_or_else(not_connected)?;
        let (done, spoken) = oneshot::channel();
        speaker
            .send(Speech {
                text: text.to_owned(),
                done,
            })
            .await
            .map_err(|_| not_connected())?;
        spoken.await.map_err(|_| not_connected())?
    }

    /// Speaks the replies handed to [`Bridge::deliver`] until the link breaks.
    async fn speak_replies(
        &self,
        mut replies: mpsc::Receiver<Speech>,
        writer: &EventWriter,
        floor: &Floor,
    ) -> Result<(), BridgeError> {
        while let Some(speech) = replies.recv().await {
            floor.speaking(true);
            let span = tracing::debug_span!(
                "voice_speak",
                satellite = %self.name,
                tts = %self.engines.tts.name(),
                first_token_ms = tracing::field::Empty,
                tts_first_audio_ms = tracing::field::Empty,
                first_audio_ms = tracing::field::Empty,
            );
            if let Some(trace) = self.answering().and_then(|answering| answering.trace) {
                trace.adopt(&span);
            }
            let spoken = self.say(&speech.text, writer, floor).instrument(span).await;
            floor.speaking(false);
            // A voice that failed is that reply's end; a link that failed is the link's.
            let link_broken = spoken
                .as_ref()
                .err()
                .filter(|error| error.is_retryable())
                .cloned();
            let _ = speech.done.send(spoken);
            if let Some(broken) = link_broken {
                return Err(broken);
            }
        }
        Ok(())
    }

    /// Says `text` on the satellite: first `synthesize` (for its event service), then, when
    /// it plays replies, the audio of each sentence as soon as it is made.
    async fn say(
        &self,
        text: &str,
        writer: &EventWriter,
        floor: &Floor,
    ) -> Result<(), BridgeError> {
        let mut synthesize = Map::new();
        synthesize.insert("text".into(), Value::from(text));
        writer
            .send(&WyomingEvent::new("synthesize", synthesize))
            .await?;
        if !floor.replies_are_spoken() {
            return Ok(());
        }
        let started = Instant::now();
        let mut out = AudioOut::new(writer);
        for sentence in speakable_sentences(text) {
            let (chunks, mut made) = mpsc::channel::<AudioChunk>(32);
            let tts = Arc::clone(&self.engines.tts);
            let speaking = async move { tts.speak(&sentence, &chunks).await };
            let forwarding = async {
                while let Some(chunk) = made.recv().await {
                    out.chunk(chunk).await?;
                    self.first_audio_out(started);
                }
                Ok::<_, BridgeError>(())
            };
            let (spoken, forwarded) = tokio::join!(speaking, forwarding);
            forwarded?;
            if let Err(error) = spoken {
                tracing::warn!(satellite = %self.name, %error, "could not speak the reply");
                out.finish().await?;
                writer.error("tts-failed", &error.to_string()).await?;
                return Err(BridgeError::new(
                    BridgeErrorKind::Rejected,
                    format!("speaking on the satellite {}: {error}", self.name),
                ));
            }
        }
        if let Some(until) = out.finish().await? {
            floor.playing_until(until);
        }
        Ok(())
    }
}

impl WyomingSatellite {
    /// A reply's audio went out: its latencies are recorded, once (on the metrics, and on
    /// the current `voice_speak` span).
    fn first_audio_out(&self, reply_ready: Instant) {
        let Some(speech_ended) = self
            .answering()
            .as_mut()
            .and_then(|answering| answering.ended.take())
        else {
            return;
        };
        stage_took("tts_first_audio", reply_ready);
        stage_took("first_audio", speech_ended);
        let span = tracing::Span::current();
        span.record(
            "first_token_ms",
            reply_ready
                .saturating_duration_since(speech_ended)
                .as_millis(),
        );
        span.record("tts_first_audio_ms", reply_ready.elapsed().as_millis());
        span.record("first_audio_ms", speech_ended.elapsed().as_millis());
    }
}

#[async_trait::async_trait]
impl Bridge for WyomingSatellite {
    fn kind(&self) -> &'static str {
        SATELLITE_PLATFORM
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_chars: 4_000,
            markdown: MarkdownDialect::Plain,
            threads: false,
            typing_indicator: false,
            edits_for_streaming: false,
            attachments: false,
        }
    }

    async fn run(&self, context: &BridgeContext) -> Result<(), BridgeError> {
        let (reader, writer) = self.open().await?;
        context.status.connected();
        tracing::info!(satellite = %self.name, address = %self.address, "satellite connected");
        let (replies, queue) = mpsc::channel(SPEECH_QUEUE);
        *self.speaker() = Some(replies);
        let floor = Floor::default();
        let outcome = tokio::select! {
            () = context.shutdown.cancelled() => Ok(()),
            outcome = self.hear(reader, &writer, &floor, context) => outcome,
            outcome = self.speak_replies(queue, &writer, &floor) => outcome,
        };
        *self.speaker() = None;
        outcome
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<(), BridgeError> {
        // The reply reaches a satellite whole: its first token is here.
        if let Some(ended) = self
            .answering()
            .as_ref()
            .and_then(|answering| answering.ended)
        {
            stage_took("first_token", ended);
        }
        let outcome = self.speak(&delivery.text).await;
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Err(error) if error.is_retryable() => {
                let since = *waiting
                    .entry(delivery.reply_id.clone())
                    .or_insert_with(Instant::now);
                if since.elapsed() < STALE_REPLY {
                    return Err(error);
                }
                waiting.remove(&delivery.reply_id);
                Err(BridgeError::new(
                    BridgeErrorKind::Rejected,
                    format!(
                        "the satellite {} was away for more than {} s: the reply is not spoken",
                        self.name,
                        STALE_REPLY.as_secs()
                    ),
                ))
            }
            outcome => {
                waiting.remove(&delivery.reply_id);
                outcome
            }
        }
    }
}
