//! The assistant's voice on one `/ws` connection: the replies to what the person said are
//! spoken sentence by sentence as their text streams ([`SentenceFeed`]), and the audio
//! goes out as it is made: a `speech` frame with its format, binary frames of PCM16, then
//! `speech_end`. Barge-in ([`Speaker::silence`]) cancels every reply not yet spoken
//! whole: the sentence being made stops, the rest is never made, and each such reply gets
//! one `speech_stopped` frame. One task per connection speaks, one sentence at
//! a time, so replies never talk over each other.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use troupe_actors::TraceParent;
use troupe_actors::metrics as metric_names;
use troupe_actors::voice::{AudioChunk, AudioFormat, SentenceFeed, SpeechError, TextToSpeech};

/// Sentences of one reply, to speak in order.
struct Job {
    in_reply_to: Arc<str>,
    sentences: Vec<String>,
    /// The reply's last sentences: `speech_end` follows them.
    last: bool,
    /// Cancelled by barge-in (and once the reply was spoken).
    cancel: CancellationToken,
    /// When the person's speech was heard (the first audio's latency is measured from it).
    heard: Instant,
    /// When these sentences were ready to speak.
    ready: Instant,
    /// The utterance's trace, which the reply's `voice_speak` span joins.
    trace: Option<TraceParent>,
    /// How long after the speech the reply's first text came.
    first_token: Option<Duration>,
}

/// A reply not yet spoken whole, and what stops it.
type Unspoken = (Arc<str>, CancellationToken);

/// Where a connection's replies are spoken: cheap to clone, one per reply being spoken.
#[derive(Clone)]
pub(super) struct Speaker {
    jobs: mpsc::UnboundedSender<Job>,
    /// The replies that barge-in would stop: those not yet spoken whole.
    speaking: Arc<Mutex<Vec<Unspoken>>>,
    outgoing: mpsc::UnboundedSender<Message>,
}

impl Speaker {
    /// Starts the connection's voice: it speaks with `tts` and sends to `outgoing`; it
    /// ends when the connection and its replies are gone.
    pub(super) fn start(
        tts: Arc<dyn TextToSpeech>,
        outgoing: mpsc::UnboundedSender<Message>,
    ) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(speak_jobs(tts, queue, outgoing.clone()));
        Self {
            jobs,
            speaking: Arc::default(),
            outgoing,
        }
    }

    /// The voice of the reply to `in_reply_to`, heard at `heard`, in `trace`.
    pub(super) fn reply(
        &self,
        in_reply_to: &str,
        heard: Instant,
        trace: Option<TraceParent>,
    ) -> ReplyVoice {
        let cancel = CancellationToken::new();
        let in_reply_to: Arc<str> = in_reply_to.into();
        let mut speaking = self.speaking.lock().unwrap_or_else(PoisonError::into_inner);
        speaking.retain(|(_, token)| !token.is_cancelled());
        speaking.push((Arc::clone(&in_reply_to), cancel.clone()));
        ReplyVoice {
            in_reply_to,
            feed: SentenceFeed::default(),
            cancel,
            jobs: self.jobs.clone(),
            heard,
            trace,
            first_token: None,
        }
    }

    /// Barge-in: every reply not yet spoken whole stops, and is told `speech_stopped`
    /// (audio of it that was on its way before is to be dropped).
    pub(super) fn silence(&self) {
        let speaking =
            std::mem::take(&mut *self.speaking.lock().unwrap_or_else(PoisonError::into_inner));
        for (in_reply_to, token) in speaking {
            if token.is_cancelled() {
                continue;
            }
            token.cancel();
            let _ = send(
                &self.outgoing,
                &json!({"type": "speech_stopped", "in_reply_to": &*in_reply_to, "reason": "interrupted"}),
            );
        }
    }
}

/// One reply's voice: its text as it streams, in, and its sentences, out to the speaker.
pub(super) struct ReplyVoice {
    in_reply_to: Arc<str>,
    feed: SentenceFeed,
    cancel: CancellationToken,
    jobs: mpsc::UnboundedSender<Job>,
    heard: Instant,
    trace: Option<TraceParent>,
    /// How long after the speech the reply's first text came, once it has.
    first_token: Option<Duration>,
}

impl ReplyVoice {
    /// A piece of the reply's text arrived.
    pub(super) fn delta(&mut self, text: &str) {
        self.first_token();
        let sentences = self.feed.push(text);
        self.say(sentences, false);
    }

    /// The reply ended as `text`: the rest of it is spoken.
    pub(super) fn finish(mut self, text: &str) {
        self.first_token();
        let sentences = self.feed.finish(text);
        self.say(sentences, true);
    }

    /// Records how long the reply's first text took after the speech ended, once.
    fn first_token(&mut self) {
        if self.first_token.is_none() {
            let took = self.heard.elapsed();
            self.first_token = Some(took);
            metrics::histogram!(metric_names::VOICE_STAGE_SECONDS, "stage" => "first_token")
                .record(took.as_secs_f64());
        }
    }

    /// The turn failed or was stopped: nothing more is said, and what is being said stops.
    pub(super) fn cancel(self) {
        self.cancel.cancel();
    }

    fn say(&self, sentences: Vec<String>, last: bool) {
        if self.cancel.is_cancelled() || (sentences.is_empty() && !last) {
            return;
        }
        let _ = self.jobs.send(Job {
            in_reply_to: Arc::clone(&self.in_reply_to),
            sentences,
            last,
            cancel: self.cancel.clone(),
            heard: self.heard,
            ready: Instant::now(),
            trace: self.trace,
            first_token: self.first_token,
        });
    }
}

fn text_frame(value: &Value) -> Message {
    Message::Text(value.to_string().into())
}

/// What the speaker task remembers between jobs.
#[derive(Default)]
struct Voice {
    /// The reply whose audio is going out, in the format its `speech` frame announced.
    announced: Option<(Arc<str>, AudioFormat)>,
    /// The `voice_speak` span of the reply being spoken.
    span: Option<(Arc<str>, tracing::Span)>,
}

impl Voice {
    /// The `voice_speak` span of `job`'s reply, begun at its first sentences.
    fn span_for(&mut self, job: &Job, tts: &str) -> tracing::Span {
        if let Some((reply, span)) = &self.span
            && *reply == job.in_reply_to
        {
            return span.clone();
        }
        let span = tracing::debug_span!(
            "voice_speak",
            access = "ws",
            tts,
            first_token_ms = tracing::field::Empty,
            tts_first_audio_ms = tracing::field::Empty,
            first_audio_ms = tracing::field::Empty,
        );
        if let Some(trace) = job.trace {
            trace.adopt(&span);
        }
        if let Some(took) = job.first_token {
            span.record("first_token_ms", took.as_millis());
        }
        self.span = Some((Arc::clone(&job.in_reply_to), span.clone()));
        span
    }

    /// The reply is over (spoken, stopped or failed): its span ends.
    fn reply_over(&mut self) {
        self.announced = None;
        self.span = None;
    }
}

/// The connection's speaker task.
async fn speak_jobs(
    tts: Arc<dyn TextToSpeech>,
    mut queue: mpsc::UnboundedReceiver<Job>,
    outgoing: mpsc::UnboundedSender<Message>,
) {
    let mut voice = Voice::default();
    while let Some(job) = queue.recv().await {
        if speak_job(tts.as_ref(), &job, &mut voice, &outgoing)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The connection is gone.
struct Gone;

async fn speak_job(
    tts: &dyn TextToSpeech,
    job: &Job,
    voice: &mut Voice,
    outgoing: &mpsc::UnboundedSender<Message>,
) -> Result<(), Gone> {
    let span = voice.span_for(job, tts.name());
    for sentence in &job.sentences {
        if job.cancel.is_cancelled() {
            // Barge-in: `speech_stopped` went out when it happened.
            voice.reply_over();
            return Ok(());
        }
        let spoken = speak_sentence(tts, sentence, job, voice, outgoing)
            .instrument(span.clone())
            .await?;
        if let Err(error) = spoken {
            tracing::warn!(%error, in_reply_to = %job.in_reply_to, "a reply could not be spoken");
            let message = format!("the reply could not be spoken: {error}");
            send(
                outgoing,
                &json!({"type": "speech_stopped", "in_reply_to": &*job.in_reply_to,
                    "reason": "failed", "message": message}),
            )?;
            voice.reply_over();
            job.cancel.cancel();
            return Ok(());
        }
    }
    if job.last && !job.cancel.is_cancelled() {
        // Spoken whole: nothing of it is left for barge-in to stop.
        job.cancel.cancel();
        let announced = voice.announced.is_some();
        voice.reply_over();
        if announced {
            send(
                outgoing,
                &json!({"type": "speech_end", "in_reply_to": &*job.in_reply_to}),
            )?;
        }
    }
    Ok(())
}

/// Speaks one sentence, its audio out as it is made, until barge-in; the outer error:
/// the connection is gone.
async fn speak_sentence(
    tts: &dyn TextToSpeech,
    sentence: &str,
    job: &Job,
    voice: &mut Voice,
    outgoing: &mpsc::UnboundedSender<Message>,
) -> Result<Result<(), SpeechError>, Gone> {
    let (audio, mut made) = mpsc::channel::<AudioChunk>(8);
    let speaking = tts.speak(sentence, &audio);
    tokio::pin!(speaking);
    let mut finished = None;
    loop {
        tokio::select! {
            biased;
            () = job.cancel.cancelled() => return Ok(Ok(())),
            Some(chunk) = made.recv() => send_audio(chunk, job, voice, outgoing)?,
            result = &mut speaking, if finished.is_none() => finished = Some(result),
            else => break,
        }
        if finished.is_some() && made.is_empty() {
            break;
        }
    }
    while let Ok(chunk) = made.try_recv() {
        send_audio(chunk, job, voice, outgoing)?;
    }
    Ok(finished.map_or(Ok(()), |result| result.map(|_| ())))
}

fn send_audio(
    chunk: AudioChunk,
    job: &Job,
    voice: &mut Voice,
    outgoing: &mpsc::UnboundedSender<Message>,
) -> Result<(), Gone> {
    let fresh = voice
        .announced
        .as_ref()
        .is_none_or(|(reply, format)| *reply != job.in_reply_to || *format != chunk.format);
    if fresh {
        if voice.announced.is_none() {
            metrics::histogram!(metric_names::VOICE_STAGE_SECONDS, "stage" => "first_audio")
                .record(job.heard.elapsed().as_secs_f64());
            if let Some((_, span)) = &voice.span {
                span.record("tts_first_audio_ms", job.ready.elapsed().as_millis());
                span.record("first_audio_ms", job.heard.elapsed().as_millis());
            }
        }
        let format = chunk.format;
        send(
            outgoing,
            &json!({"type": "speech", "in_reply_to": &*job.in_reply_to,
            "rate": format.rate, "width": format.width, "channels": format.channels}),
        )?;
        voice.announced = Some((Arc::clone(&job.in_reply_to), format));
    }
    outgoing
        .send(Message::Binary(chunk.pcm.into()))
        .map_err(|_| Gone)
}

fn send(outgoing: &mpsc::UnboundedSender<Message>, value: &Value) -> Result<(), Gone> {
    outgoing.send(text_frame(value)).map_err(|_| Gone)
}
