//! The web page's microphone on `/ws`. After `voice_start`, binary frames carry 16 kHz
//! mono PCM16 (little-endian); a task per open microphone hears them, push-to-talk (all
//! of it until `voice_end` is one utterance, streamed to speech to text as it arrives) or
//! hands-free (the [`Ear`]: the wake word when asked for, voice activity, then speech to
//! text). What was said comes back to the connection, which sends it as a `transcript`
//! frame and then as the person's message; the reply's frames follow as for a typed
//! message, and its speech too ([`super::speaker`]). Speech that starts while the
//! assistant speaks stops its voice (barge-in). See docs/protocol.md, "Voice".

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::Message;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;
use troupe_actors::TraceParent;
use troupe_actors::message::InboundDraft;
use troupe_actors::metrics as metric_names;
use troupe_actors::voice::{LISTENING_FORMAT, SpeechError};
use troupe_inference::voice::{Ear, EarEvent};

use super::speaker::Speaker;
use super::{Connection, Next, error_frame, frame as text_frame};
use crate::gateway::error::ApiCode;
use crate::gateway::frames::{VoiceMode, VoiceStartFrame};
use crate::gateway::turns::turn_span;
use crate::voice::WebVoice;

/// The largest binary frame: half a second of audio (pages send 20 to 100 ms at a time).
pub(super) const MAX_AUDIO_FRAME_BYTES: usize = 16_000;
/// Audio frames waiting to be heard; a page that sends faster than real time for longer
/// than this is refused rather than buffered.
const AUDIO_QUEUE: usize = 128;
/// The longest push-to-talk utterance: one minute.
const MAX_PUSH_TO_TALK_BYTES: usize = 60 * 16_000 * 2;
/// Shorter than this, a push-to-talk press is a slip, not speech: a quarter of a second.
const MIN_PUSH_TO_TALK_BYTES: usize = 16_000 / 2;

/// What the microphone's task takes.
pub(super) enum VoiceInput {
    Audio(Bytes),
    /// The person is done speaking.
    End,
}

/// What was said, for the connection to send as the person's message.
pub(super) struct Said {
    text: String,
    /// When the speech ended.
    ended: Instant,
    /// The conversation `voice_start` named.
    conversation_id: Option<String>,
    /// Speaks the reply, when `voice_start` asked for it and the node has a voice.
    speaker: Option<Speaker>,
    /// The utterance's trace: the turn and the reply's speech join it.
    trace: Option<TraceParent>,
}

/// Where the microphone's task reports.
struct VoiceOut {
    outgoing: mpsc::UnboundedSender<Message>,
    said: mpsc::UnboundedSender<Said>,
    /// The assistant's voice on this connection, which barge-in stops; `None` when the
    /// node has none.
    voice: Option<Speaker>,
    conversation_id: Option<String>,
    /// Replies to what is said are spoken.
    speak: bool,
}

impl VoiceOut {
    fn frame(&self, value: &Value) {
        let _ = self.outgoing.send(Message::Text(value.to_string().into()));
    }

    fn failed(&self, code: ApiCode, message: &str) {
        self.frame(
            &json!({"type": "error", "in_reply_to": null, "code": code, "message": message}),
        );
    }

    /// Speech started: the assistant stops speaking.
    fn voice_started(&self) {
        self.frame(&json!({"type": "voice_started"}));
        if let Some(voice) = &self.voice {
            voice.silence();
        }
    }

    fn heard(&self, text: String, ended: Instant, utterance: &tracing::Span) {
        if text.trim().is_empty() {
            self.frame(&json!({"type": "voice_heard_nothing"}));
        } else {
            let _ = self.said.send(Said {
                text,
                ended,
                conversation_id: self.conversation_id.clone(),
                speaker: self.voice.clone().filter(|_| self.speak),
                trace: TraceParent::of_span(utterance),
            });
        }
    }

    fn speech_failed(&self, error: &SpeechError) {
        tracing::warn!(%error, "speech from the web page could not be heard");
        self.failed(
            ApiCode::SpeechFailed,
            &format!("what was said could not be heard: {error}"),
        );
    }
}

/// A connection's voice: its open microphone, and the assistant's voice once a
/// microphone opened on a node that has one.
pub(super) struct VoiceLink {
    microphone: Option<Microphone>,
    speaker: Option<Speaker>,
    said: mpsc::UnboundedSender<Said>,
}

impl VoiceLink {
    /// What microphones hear goes to `said`.
    pub(super) const fn new(said: mpsc::UnboundedSender<Said>) -> Self {
        Self {
            microphone: None,
            speaker: None,
            said,
        }
    }

    /// The person is done speaking.
    pub(super) fn end(&mut self) {
        if let Some(microphone) = self.microphone.take() {
            self.microphone = microphone.end();
        }
    }

    /// The microphone closes; speech not yet heard is dropped.
    pub(super) fn close(&mut self) {
        self.microphone = None;
    }

    /// The assistant stops speaking.
    pub(super) fn silence(&self) {
        if let Some(speaker) = &self.speaker {
            speaker.silence();
        }
    }
}

/// One open microphone: its audio goes to its task, which is stopped when this is
/// dropped (unless it was released to finish hearing).
struct Microphone {
    input: mpsc::Sender<VoiceInput>,
    task: Option<JoinHandle<()>>,
    mode: VoiceMode,
}

impl Drop for Microphone {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Why audio was refused.
enum AudioRefused {
    /// Faster than real time for too long: the microphone is closed.
    Flooded,
    /// The task has ended (push-to-talk heard its utterance).
    Closed,
}

impl Microphone {
    /// Opens the microphone in `mode`, heard with `engines`.
    fn open(mode: VoiceMode, wake_word: bool, engines: &Arc<WebVoice>, out: VoiceOut) -> Self {
        let (input, queue) = mpsc::channel(AUDIO_QUEUE);
        let engines = Arc::clone(engines);
        let task = match (mode, engines.vad.clone()) {
            (VoiceMode::HandsFree, Some(vad)) => {
                let mut ear = Ear::new(
                    vad,
                    Arc::clone(&engines.stt),
                    engines.wake.clone(),
                    engines.listening,
                );
                ear.start(wake_word);
                tokio::spawn(hands_free(ear, queue, out))
            }
            _ => tokio::spawn(push_to_talk(engines, queue, out)),
        };
        Self {
            input,
            task: Some(task),
            mode,
        }
    }

    /// Takes a frame of audio.
    fn audio(&self, pcm: Bytes) -> Result<(), AudioRefused> {
        self.input
            .try_send(VoiceInput::Audio(pcm))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => AudioRefused::Flooded,
                mpsc::error::TrySendError::Closed(_) => AudioRefused::Closed,
            })
    }

    /// The person is done speaking. Push-to-talk: the microphone is released and its
    /// utterance heard (answers `None`); hands-free: an utterance under way ends, and the
    /// microphone stays open.
    fn end(mut self) -> Option<Self> {
        let _ = self.input.try_send(VoiceInput::End);
        if self.mode == VoiceMode::PushToTalk {
            // Detached: it ends once it has heard the utterance.
            self.task = None;
            return None;
        }
        Some(self)
    }
}

/// Push-to-talk: everything until `End` is one utterance, streamed to speech to text as
/// it arrives.
async fn push_to_talk(
    engines: Arc<WebVoice>,
    mut input: mpsc::Receiver<VoiceInput>,
    out: VoiceOut,
) {
    let utterance = utterance_span("push_to_talk");
    let (audio, heard) = mpsc::channel(AUDIO_QUEUE);
    let stt = Arc::clone(&engines.stt);
    let transcribing =
        tracing::debug_span!(parent: &utterance, "voice_transcribe", stt = %stt.name());
    let transcript = tokio::spawn(
        async move { stt.transcribe(LISTENING_FORMAT, heard).await }.instrument(transcribing),
    );
    let mut bytes = 0;
    let mut started = false;
    while let Some(VoiceInput::Audio(pcm)) = input.recv().await {
        if !started {
            started = true;
            out.voice_started();
        }
        bytes += pcm.len();
        if bytes > MAX_PUSH_TO_TALK_BYTES {
            out.failed(
                ApiCode::AudioTooLong,
                "push-to-talk takes at most 60 s of speech; what came before is heard",
            );
            break;
        }
        // A service that failed drops its end: its error is reported below.
        let _ = audio.send(pcm.to_vec()).await;
    }
    let ended = Instant::now();
    drop(audio);
    if bytes < MIN_PUSH_TO_TALK_BYTES {
        transcript.abort();
        out.frame(&json!({"type": "voice_heard_nothing"}));
        return;
    }
    match transcript.await {
        Ok(Ok(text)) => {
            stage_took("transcript", ended);
            out.heard(text, ended, &utterance);
        }
        Ok(Err(error)) => out.speech_failed(&error),
        Err(error) => out.failed(
            ApiCode::SpeechFailed,
            &format!("speech to text stopped: {error}"),
        ),
    }
}

/// The span of one utterance from the page: its transcription and the session's turn are
/// its children, and the reply's speech joins its trace.
fn utterance_span(mode: &'static str) -> tracing::Span {
    tracing::debug_span!("voice_utterance", access = "ws", mode)
}

/// Hands-free: the ear cuts utterances until the microphone closes.
async fn hands_free(mut ear: Ear, mut input: mpsc::Receiver<VoiceInput>, out: VoiceOut) {
    // From the wake word or the first speech to the transcript.
    let mut utterance: Option<tracing::Span> = None;
    while let Some(input) = input.recv().await {
        let arrived = Instant::now();
        let listening = utterance.clone().unwrap_or_else(tracing::Span::none);
        let event = match input {
            VoiceInput::Audio(pcm) => ear.hear(&pcm).instrument(listening).await,
            VoiceInput::End => ear.finish().instrument(listening).await,
        };
        match event {
            Ok(EarEvent::Nothing) => {}
            Ok(EarEvent::WakeWord) => {
                stage_took("wake", arrived);
                utterance.get_or_insert_with(|| utterance_span("hands_free"));
                out.frame(&json!({"type": "wake_word", "name": ear.wake_word()}));
            }
            Ok(EarEvent::VoiceStarted) => {
                utterance.get_or_insert_with(|| utterance_span("hands_free"));
                out.voice_started();
            }
            Ok(EarEvent::GaveUp) => {
                utterance = None;
                out.frame(&json!({"type": "wake_timeout"}));
            }
            Ok(EarEvent::Said { text, unannounced }) => {
                if unannounced {
                    out.voice_started();
                }
                stage_took("transcript", arrived);
                out.frame(&json!({"type": "voice_stopped"}));
                let span = utterance
                    .take()
                    .unwrap_or_else(|| utterance_span("hands_free"));
                out.heard(text, arrived, &span);
            }
            Err(error) => {
                utterance = None;
                out.speech_failed(&error);
                ear.reset();
            }
        }
    }
}

impl Connection {
    /// `voice_start`: opens the microphone (closing one that was open), after the same
    /// checks as a message to the same conversation.
    pub(super) fn voice_start(&mut self, start: VoiceStartFrame) -> Next {
        if let Err(refused) = self.may_speak_in(start.conversation_id.as_deref()) {
            return refused;
        }
        // A conversation that cannot be one is refused now, not at the first utterance.
        if let Some(conversation) = &start.conversation_id
            && let Err(error) = troupe_actors::ids::SessionKey::new("ws", conversation)
        {
            let message = format!("field `conversation_id` is invalid: {error}");
            self.send(error_frame(None, ApiCode::InvalidFrame, &message));
            return Next::Continue;
        }
        let engines = match self.voice_engines(&start) {
            Ok(engines) => engines,
            Err(reason) => {
                self.send(error_frame(None, ApiCode::VoiceUnavailable, reason));
                return Next::Continue;
            }
        };
        self.register();
        // The person takes the floor: the assistant stops speaking.
        self.voice.silence();
        if self.voice.speaker.is_none()
            && let Some(tts) = &engines.tts
        {
            self.voice.speaker = Some(Speaker::start(Arc::clone(tts), self.outgoing.clone()));
        }
        let speaks = start.speak && self.voice.speaker.is_some();
        let wake_word = start
            .wake_word
            .then(|| engines.wake.as_ref().map(|wake| wake.name().to_owned()))
            .flatten();
        let out = VoiceOut {
            outgoing: self.outgoing.clone(),
            said: self.voice.said.clone(),
            voice: self.voice.speaker.clone(),
            conversation_id: start.conversation_id,
            speak: start.speak,
        };
        self.voice.microphone = Some(Microphone::open(start.mode, start.wake_word, &engines, out));
        self.send(text_frame(&json!({
            "type": "voice_ready", "mode": start.mode, "rate": LISTENING_FORMAT.rate,
            "width": LISTENING_FORMAT.width, "channels": LISTENING_FORMAT.channels,
            "wake_word": wake_word, "speaks": speaks,
        })));
        Next::Continue
    }

    /// The engines `start` needs, or why this node cannot listen that way.
    fn voice_engines(&self, start: &VoiceStartFrame) -> Result<Arc<WebVoice>, &'static str> {
        let engines =
            self.state.web_voice.clone().ok_or(
                "this node has no speech to text: configure [voice] stt (see docs/voice.md)",
            )?;
        let hands_free = start.mode == VoiceMode::HandsFree;
        if hands_free && engines.vad.is_none() {
            return Err(
                "hands-free listening needs the voice-activity model: run `troupe models install silero-vad`",
            );
        }
        if start.wake_word && !hands_free {
            return Err("a wake word is for hands-free listening (mode \"hands_free\")");
        }
        if start.wake_word && engines.wake.is_none() {
            return Err(
                "this node has no wake word: configure [voice] wake_word (see docs/voice.md)",
            );
        }
        Ok(engines)
    }

    /// A binary frame: audio for the open microphone.
    pub(super) fn voice_audio(&mut self, pcm: Bytes) {
        let Some(microphone) = &self.voice.microphone else {
            self.send(error_frame(
                None,
                ApiCode::InvalidFrame,
                "binary frames carry microphone audio: send voice_start first",
            ));
            return;
        };
        if pcm.len() > MAX_AUDIO_FRAME_BYTES || !pcm.len().is_multiple_of(2) {
            let message = format!(
                "an audio frame is 16 kHz mono PCM16: an even number of bytes, at most {MAX_AUDIO_FRAME_BYTES}"
            );
            self.send(error_frame(None, ApiCode::InvalidFrame, &message));
            return;
        }
        let refused = match microphone.audio(pcm) {
            Ok(()) => return,
            Err(AudioRefused::Flooded) => (
                ApiCode::AudioTooFast,
                "audio arrives faster than it can be heard: the microphone is closed; send it as it is recorded",
            ),
            Err(AudioRefused::Closed) => (
                ApiCode::InvalidFrame,
                "the microphone is closed: send voice_start first",
            ),
        };
        self.voice.close();
        self.send(error_frame(None, refused.0, refused.1));
    }

    /// What was said: a `transcript` frame, then the person's message, whose reply is
    /// spoken when it was asked for.
    pub(super) fn spoken(&mut self, said: Said) {
        let id = format!("voice-{}", uuid::Uuid::new_v4().simple());
        let conversation = said
            .conversation_id
            .clone()
            .unwrap_or_else(|| self.sender_id.clone());
        self.send(text_frame(&json!({
            "type": "transcript", "id": &id, "conversation_id": conversation, "payload": &said.text,
        })));
        let voice = said
            .speaker
            .map(|speaker| speaker.reply(&id, said.ended, said.trace));
        let draft = InboundDraft {
            id: Some(id.clone()),
            platform: Some("ws".into()),
            sender_id: Some(self.sender_id.clone()),
            conversation_id: said.conversation_id,
            content_type: Some("text".into()),
            payload: Some(said.text),
            ..InboundDraft::default()
        };
        let span = turn_span("ws", None);
        if let Some(trace) = said.trace {
            trace.adopt(&span);
        }
        self.accept(draft, Some(&id), span, voice);
    }
}

/// Records how long one stage of the voice pipeline took (`troupe_voice_stage_seconds`).
fn stage_took(stage: &'static str, since: Instant) {
    metrics::histogram!(metric_names::VOICE_STAGE_SECONDS, "stage" => stage)
        .record(since.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use troupe_actors::testing::CountingSpeechToText;
    use troupe_actors::voice::ListenerConfig;

    use super::*;

    /// A push-to-talk microphone with speech to text that counts, and what it sends.
    fn microphone() -> (
        Microphone,
        mpsc::UnboundedReceiver<Message>,
        mpsc::UnboundedReceiver<Said>,
    ) {
        let engines = Arc::new(WebVoice {
            stt: Arc::new(CountingSpeechToText),
            vad: None,
            wake: None,
            tts: None,
            listening: ListenerConfig::default(),
        });
        let (outgoing, frames) = mpsc::unbounded_channel();
        let (said, heard) = mpsc::unbounded_channel();
        let out = VoiceOut {
            outgoing,
            said,
            voice: None,
            conversation_id: Some("ada/voice".into()),
            speak: true,
        };
        let microphone = Microphone::open(VoiceMode::PushToTalk, false, &engines, out);
        (microphone, frames, heard)
    }

    fn frame_type(message: &Message) -> String {
        let Message::Text(text) = message else {
            return String::new();
        };
        let value: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        format!(
            "{}{}",
            value["type"].as_str().unwrap_or_default(),
            value["code"]
                .as_str()
                .map(|code| format!(":{code}"))
                .unwrap_or_default()
        )
    }

    #[tokio::test]
    async fn a_push_to_talk_press_longer_than_a_minute_is_heard_up_to_the_minute() {
        let (microphone, mut frames, mut heard) = microphone();
        // Sent at the pace the task takes it (as a page records), for 61 seconds.
        for _ in 0..122 {
            while matches!(
                microphone.audio(Bytes::from(vec![0u8; 16_000])),
                Err(AudioRefused::Flooded)
            ) {
                tokio::task::yield_now().await;
            }
        }
        assert!(
            microphone.end().is_none(),
            "a push-to-talk press ends with its release"
        );
        let said = heard.recv().await.expect("what was said");
        assert_eq!(said.text, format!("{MAX_PUSH_TO_TALK_BYTES} bytes"));
        assert_eq!(said.conversation_id.as_deref(), Some("ada/voice"));
        assert!(said.speaker.is_none(), "the node has no voice");
        let mut kinds = Vec::new();
        while let Ok(message) = frames.try_recv() {
            kinds.push(frame_type(&message));
        }
        assert_eq!(kinds, ["voice_started", "error:audio_too_long"]);
    }

    #[tokio::test]
    async fn a_press_too_short_to_be_speech_hears_nothing() {
        let (microphone, mut frames, mut heard) = microphone();
        assert!(microphone.audio(Bytes::from(vec![0u8; 3_200])).is_ok());
        drop(microphone.end());
        let mut kinds = Vec::new();
        while let Some(message) = frames.recv().await {
            kinds.push(frame_type(&message));
        }
        assert_eq!(kinds, ["voice_started", "voice_heard_nothing"]);
        assert!(heard.try_recv().is_err());
    }
}
