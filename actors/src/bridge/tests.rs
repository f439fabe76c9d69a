//! Tests of the bridge layer with a fake bridge and a fake ingress: the journal, the
//! dispatcher (policy, dedupe, delivery retries, resume after a restart) and the actor's
//! reconnects.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::actor::{Backoff, BridgeActor, BridgeArgs};
use super::dispatch::Dispatcher;
use super::policy::AccessPolicy;
use super::store::BridgeStore;
use super::*;
use crate::ids::SessionKey;
use crate::ingress::{Ingress, Submission};
use crate::message::{ContentType, InboundMessage, MessageLimits, MessageParts, OutboundReply};
use crate::session::SessionView;
use crate::turn::{TurnError, TurnEvent};

/// A bridge that records deliveries and fails them as scripted.
#[derive(Default)]
struct FakeBridge {
    delivered: Mutex<Vec<Delivery>>,
    /// The voice notes sent: each reply's id and its recording.
    voices: Mutex<Vec<(String, Vec<u8>)>>,
    failures: Mutex<VecDeque<BridgeError>>,
    run_failures: AtomicUsize,
}

#[async_trait::async_trait]
impl Bridge for FakeBridge {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_chars: 1000,
            markdown: MarkdownDialect::Plain,
            threads: false,
            typing_indicator: false,
            edits_for_streaming: false,
            attachments: false,
        }
    }

    async fn run(&self, context: &BridgeContext) -> Result<(), BridgeError> {
        if self.run_failures.load(Ordering::SeqCst) > 0 {
            self.run_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(BridgeError::new(
                BridgeErrorKind::Transient,
                "connection reset",
            ));
        }
        context.status.connected();
        context.shutdown.cancelled().await;
        Ok(())
    }

    /// `fake-file:<words>` holds `<words>`; any other name is missing.
    async fn fetch_attachment(
        &self,
        attachment: &crate::message::Attachment,
        max_bytes: u64,
    ) -> Result<Vec<u8>, BridgeError> {
        let url = attachment.url.as_deref().unwrap_or_default();
        if url.starts_with("busy:") {
            return Err(BridgeError::new(BridgeErrorKind::Transient, "502"));
        }
        let words = url
            .strip_prefix("fake-file:")
            .ok_or_else(|| BridgeError::new(BridgeErrorKind::Rejected, "no such file"))?;
        assert_eq!(max_bytes, 1000, "the reader's limit");
        Ok(words.as_bytes().to_vec())
    }

    async fn deliver_voice(
        &self,
        delivery: &Delivery,
        note: &crate::voice::VoiceNote,
    ) -> Result<(), BridgeError> {
        self.voices
            .lock()
            .unwrap()
            .push((delivery.reply_id.clone(), note.recording().to_vec()));
        Ok(())
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<(), BridgeError> {
        if let Some(error) = self.failures.lock().unwrap().pop_front() {
            return Err(error);
        }
        self.delivered.lock().unwrap().push(delivery.clone());
        Ok(())
    }
}

/// Answers every message with `echo: <payload>` and counts what it was given.
#[derive(Default)]
struct EchoIngress {
    submitted: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Ingress for EchoIngress {
    fn submit(&self, message: InboundMessage) -> Result<Submission, TurnError> {
        self.submitted.lock().unwrap().push(message.id().to_owned());
        let (events, receiver) = crate::turn::turn_channel();
        let reply = OutboundReply {
            id: format!("r-{}", message.id()),
            in_reply_to: message.id().to_owned(),
            platform: message.platform().to_owned(),
            recipient_id: message.sender_id().to_owned(),
            conversation_id: message.conversation_id().to_owned(),
            content_type: ContentType::Text,
            payload: format!("echo: {}", message.payload()),
            timestamp: 0,
            awaiting: None,
            stopped: false,
        };
        let _ = events.send(TurnEvent::Reply {
            reply: Box::new(reply),
            model_latency: Duration::ZERO,
            usage: None,
        });
        Ok(Submission::accepted(receiver))
    }

    async fn history(&self, _key: SessionKey) -> Result<Option<SessionView>, TurnError> {
        Ok(None)
    }

    async fn reset(&self, _key: SessionKey) -> Result<bool, TurnError> {
        Ok(false)
    }

    async fn stop(
        &self,
        _key: SessionKey,
        _message_id: String,
    ) -> Result<crate::stop::StopOutcome, TurnError> {
        // It answers every message at once: nothing is ever running.
        Ok(crate::stop::StopOutcome::NotRunning)
    }
}

fn inbound(id: &str, sender: &str, text: &str) -> BridgeInbound {
    inbound_with(id, sender, text, Vec::new())
}

fn inbound_with(
    id: &str,
    sender: &str,
    text: &str,
    attachments: Vec<crate::message::Attachment>,
) -> BridgeInbound {
    BridgeInbound {
        message: InboundMessage::new(MessageParts {
            id: id.into(),
            platform: "fake".into(),
            sender_id: sender.into(),
            conversation_id: sender.into(),
            content_type: ContentType::Text,
            payload: text.into(),
            timestamp: 0,
            reply_to: None,
            attachments,
            metadata: std::collections::BTreeMap::new(),
        })
        .expect("a valid message"),
        destination: Destination {
            chat_id: sender.into(),
            ..Destination::default()
        },
        chat: ChatKind::Direct,
        addressed: true,
        sender_name: "Ada".into(),
    }
}

fn open_policy() -> AccessPolicy {
    AccessPolicy {
        dm_policy: policy::DmPolicy::Open,
        ..AccessPolicy::default()
    }
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn a_reply_id_queued_once_is_not_queued_again_even_after_delivery_or_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = BridgeStore::open(dir.path()).unwrap();
    let delivery = Delivery {
        reply_id: "run-1:tell:1".into(),
        destination: inbound("m1", "42", "hi").destination,
        text: "the report".into(),
        spoken: false,
    };
    assert!(store.enqueue_once("tg", delivery.clone()).await.unwrap());
    assert!(
        !store.enqueue_once("tg", delivery.clone()).await.unwrap(),
        "still queued"
    );
    store.delivered("tg", &delivery.reply_id).await.unwrap();
    assert!(
        !store.enqueue_once("tg", delivery.clone()).await.unwrap(),
        "delivered"
    );
    drop(store);
    let store = BridgeStore::open(dir.path()).unwrap();
    assert!(
        !store.enqueue_once("tg", delivery.clone()).await.unwrap(),
        "after a restart"
    );
    assert!(store.pending_outbox().await.unwrap().is_empty());
    assert!(
        store.enqueue_once("other", delivery).await.unwrap(),
        "ids are per bridge"
    );
}

#[tokio::test]
async fn the_journal_keeps_messages_replies_state_and_pairings() {
    let dir = tempfile::tempdir().unwrap();
    let store = BridgeStore::open(dir.path()).unwrap();
    let message = inbound("m1", "42", "hi");
    assert!(store.admit("tg", &message).await.unwrap());
    assert!(!store.admit("tg", &message).await.unwrap(), "a retry");
    assert_eq!(store.pending_inbox().await.unwrap().len(), 1);
    let delivery = Delivery {
        reply_id: "r1".into(),
        destination: message.destination.clone(),
        text: "hello".into(),
        spoken: false,
    };
    store
        .answered("tg", "m1", Some(delivery.clone()))
        .await
        .unwrap();
    assert!(store.pending_inbox().await.unwrap().is_empty());
    assert_eq!(store.pending_outbox().await.unwrap()[0].delivery, delivery);
    store.put("tg", "offset", "17").await.unwrap();
    let code = store
        .pairing_code("tg", "fake:7", "Eve")
        .await
        .unwrap()
        .code;
    assert_eq!(
        store
            .pairing_code("tg", "fake:7", "Eve")
            .await
            .unwrap()
            .code,
        code,
        "one code per sender"
    );
    drop(store);

    let store = BridgeStore::open(dir.path()).unwrap();
    assert_eq!(
        store.pending_outbox().await.unwrap().len(),
        1,
        "survives a reopen"
    );
    assert_eq!(
        store.get("tg", "offset").await.unwrap().as_deref(),
        Some("17")
    );
    store.delivered("tg", "r1").await.unwrap();
    assert!(store.pending_outbox().await.unwrap().is_empty());
    assert!(!store.is_paired("fake:7").await.unwrap());
    assert!(store.approve("NOPE").await.unwrap().is_none());
    let paired = store.approve(&code.to_lowercase()).await.unwrap().unwrap();
    assert_eq!(paired.sender, "fake:7");
    assert!(store.is_paired("fake:7").await.unwrap());
    assert!(store.pairing_requests().await.unwrap().is_empty());
    assert!(store.revoke("fake:7").await.unwrap());
    assert!(!store.is_paired("fake:7").await.unwrap());
}

#[tokio::test]
async fn messages_are_answered_once_and_strangers_get_a_pairing_code() {
    let dir = tempfile::tempdir().unwrap();
    let ingress = Arc::new(EchoIngress::default());
    let dispatcher = Dispatcher::new(
        Arc::clone(&ingress) as Arc<dyn Ingress>,
        BridgeStore::open(dir.path()).unwrap(),
        MessageLimits {
            max_payload_bytes: 1024,
            ..MessageLimits::default()
        },
        CancellationToken::new(),
    );
    let bridge = Arc::new(FakeBridge::default());
    let context = dispatcher.register(
        "f",
        Arc::clone(&bridge) as Arc<dyn Bridge>,
        AccessPolicy::default(),
    );
    dispatcher.resume().await.unwrap();

    context
        .receive(inbound("m1", "stranger", "hi"))
        .await
        .unwrap();
    wait_until(|| bridge.delivered.lock().unwrap().len() == 1).await;
    let code_text = bridge.delivered.lock().unwrap()[0].text.clone();
    assert!(code_text.contains("troupe pair approve"), "{code_text}");
    assert!(
        ingress.submitted.lock().unwrap().is_empty(),
        "a stranger never reaches the model"
    );

    let code = dispatcher.store().pairing_requests().await.unwrap()[0]
        .code
        .clone();
    dispatcher.store().approve(&code).await.unwrap();
    bridge.failures.lock().unwrap().extend([
        BridgeError::rate_limited(Duration::from_millis(20), "429"),
        BridgeError::new(BridgeErrorKind::Transient, "502"),
    ]);
    context
        .receive(inbound("m2", "stranger", "hello"))
        .await
        .unwrap();
    context
        .receive(inbound("m2", "stranger", "hello"))
        .await
        .unwrap();
    wait_until(|| bridge.delivered.lock().unwrap().len() == 2).await;
    assert_eq!(bridge.delivered.lock().unwrap()[1].text, "echo: hello");
    assert_eq!(
        *ingress.submitted.lock().unwrap(),
        vec!["m2".to_owned()],
        "the retry was recognised"
    );
    let status = context.status.snapshot();
    assert_eq!(
        status.messages_received, 2,
        "the retry is not a second message"
    );
    assert_eq!(status.replies_answered, 1, "the pairing code is no answer");
    assert_eq!(status.replies_delivered, 2);

    let too_long = inbound("m3", "stranger", &"x".repeat(2000));
    let error = context.receive(too_long).await.unwrap_err();
    assert_eq!(error.kind, BridgeErrorKind::Rejected);
    // A message with a bad id cannot be built at all (`InboundMessage::new`).
}

#[tokio::test]
async fn a_restart_finishes_what_the_journal_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = BridgeStore::open(dir.path()).unwrap();
    // Left behind by a crash: one message not answered, one reply not delivered.
    store
        .admit("f", &inbound("m1", "42", "pending"))
        .await
        .unwrap();
    let undelivered = Delivery {
        reply_id: "r-m0".into(),
        destination: Destination::default(),
        text: "echo: earlier".into(),
        spoken: false,
    };
    store.enqueue("f", undelivered).await.unwrap();

    let ingress = Arc::new(EchoIngress::default());
    let dispatcher = Dispatcher::new(
        Arc::clone(&ingress) as Arc<dyn Ingress>,
        store.clone(),
        MessageLimits {
            max_payload_bytes: 1024,
            ..MessageLimits::default()
        },
        CancellationToken::new(),
    );
    let bridge = Arc::new(FakeBridge::default());
    let context = dispatcher.register("f", Arc::clone(&bridge) as Arc<dyn Bridge>, open_policy());
    // A message that arrives while the node starts waits until the journal is read, so it
    // is not found there too and answered twice.
    let mut arriving =
        tokio::spawn(async move { context.receive(inbound("m2", "42", "while starting")).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut arriving)
            .await
            .is_err(),
        "taken in before the journal was read"
    );
    dispatcher.resume().await.unwrap();
    arriving.await.unwrap().unwrap();
    wait_until(|| bridge.delivered.lock().unwrap().len() == 3).await;
    let mut texts: Vec<String> = bridge
        .delivered
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.text.clone())
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        vec!["echo: earlier", "echo: pending", "echo: while starting"]
    );
    for _ in 0..400 {
        if store.pending_outbox().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        store.pending_outbox().await.unwrap().is_empty(),
        "delivered replies leave the outbox"
    );
    assert!(store.pending_inbox().await.unwrap().is_empty());
    let mut submitted = ingress.submitted.lock().unwrap().clone();
    submitted.sort();
    assert_eq!(submitted, ["m1", "m2"], "each message asked once");
}

#[tokio::test]
async fn the_actor_reconnects_with_backoff_and_reports_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = Dispatcher::new(
        Arc::new(EchoIngress::default()),
        BridgeStore::open(dir.path()).unwrap(),
        MessageLimits {
            max_payload_bytes: 1024,
            ..MessageLimits::default()
        },
        CancellationToken::new(),
    );
    let bridge = Arc::new(FakeBridge::default());
    bridge.run_failures.store(2, Ordering::SeqCst);
    let context = dispatcher.register("f", Arc::clone(&bridge) as Arc<dyn Bridge>, open_policy());
    let status = context.status.clone();
    let args = BridgeArgs {
        bridge,
        context,
        backoff: Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(40),
        },
    };
    let (actor, handle) = ractor::Actor::spawn(None, BridgeActor, args).await.unwrap();
    wait_until(|| status.state() == BridgeState::Connected).await;
    let snapshot = status.snapshot();
    assert_eq!(snapshot.restarts, 2);
    assert_eq!(snapshot.last_error, None, "cleared once connected");
    actor.stop(None);
    handle.await.unwrap();
    assert_eq!(status.state(), BridgeState::Stopped);
}

#[test]
fn backoff_grows_with_jitter_up_to_its_cap() {
    let backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    for failures in 1..20 {
        let wait = backoff.wait(failures);
        let full = Duration::from_millis(100 * (1 << (failures - 1).min(10))).min(backoff.max);
        assert!(wait <= full && wait >= full / 2, "{failures}: {wait:?}");
    }
}

/// Hears a recording as the words it holds; "noise" cannot be heard.
struct WordsReader;

#[async_trait::async_trait]
impl crate::voice::VoiceNoteReader for WordsReader {
    fn max_bytes(&self) -> u64 {
        1000
    }

    async fn transcribe(
        &self,
        recording: Vec<u8>,
        _mime_type: Option<&str>,
    ) -> Result<String, crate::voice::SpeechError> {
        match String::from_utf8(recording) {
            Ok(words) if words != "noise" => Ok(words),
            _ => Err(crate::voice::SpeechError::Undecodable("it is noise".into())),
        }
    }
}

/// A message holding only a voice note at `url`.
fn voice_note(id: &str, url: &str) -> BridgeInbound {
    let recording = crate::message::Attachment {
        content_type: ContentType::Audio,
        url: Some(url.to_owned()),
        name: None,
        mime_type: Some("audio/ogg".into()),
        size_bytes: None,
        upload_id: None,
    };
    inbound_with(id, "42", "[a voice note]", vec![recording])
}

#[tokio::test]
async fn a_voice_note_is_answered_as_what_was_said_and_one_not_heard_with_why() {
    let dir = tempfile::tempdir().unwrap();
    let ingress = Arc::new(EchoIngress::default());
    let dispatcher = Dispatcher::new(
        Arc::clone(&ingress) as Arc<dyn Ingress>,
        BridgeStore::open(dir.path()).unwrap(),
        MessageLimits::default(),
        CancellationToken::new(),
    );
    dispatcher.hear_voice_notes_with(Arc::new(WordsReader));
    let bridge = Arc::new(FakeBridge::default());
    let context = dispatcher.register("f", Arc::clone(&bridge) as Arc<dyn Bridge>, open_policy());
    dispatcher.resume().await.unwrap();

    let delivered = || bridge.delivered.lock().unwrap().len();
    let notes = [
        ("v1", "fake-file:what is two plus two"),
        ("v2", "elsewhere:x"),
        ("v3", "fake-file:noise"),
        ("v4", "fake-file:   "),
    ];
    for (count, (id, url)) in notes.into_iter().enumerate() {
        context.receive(voice_note(id, url)).await.unwrap();
        wait_until(|| delivered() == count + 1).await;
    }
    let texts: Vec<String> = bridge
        .delivered
        .lock()
        .unwrap()
        .iter()
        .map(|delivery| delivery.text.clone())
        .collect();
    assert_eq!(
        texts,
        [
            "echo: what is two plus two",
            "I could not get your voice note: no such file",
            "I could not hear your voice note: it is noise",
            "I heard nothing in your voice note.",
        ]
    );
    assert_eq!(
        *ingress.submitted.lock().unwrap(),
        ["v1"],
        "only what was heard reaches the model"
    );

    // The platform cannot give the recording now: it is asked to deliver the message
    // again, and the person is not told anything yet.
    let busy = context
        .receive(voice_note("v5", "busy:x"))
        .await
        .unwrap_err();
    assert!(busy.is_retryable(), "{busy:?}");
    assert_eq!(delivered(), 4);
}

/// Speaks a reply as a "recording" of its words.
struct WordsWriter;

#[async_trait::async_trait]
impl crate::voice::VoiceNoteWriter for WordsWriter {
    async fn voice_note(
        &self,
        text: &str,
    ) -> Result<crate::voice::VoiceNote, crate::voice::SpeechError> {
        let recording = format!("spoken: {text}").into_bytes();
        Ok(crate::voice::VoiceNote::new(
            recording,
            &[1_000; 8_000],
            16_000,
        ))
    }
}

#[tokio::test]
async fn replies_are_voice_notes_as_the_bridges_voice_replies_say() {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = Dispatcher::new(
        Arc::new(EchoIngress::default()) as Arc<dyn Ingress>,
        BridgeStore::open(dir.path()).unwrap(),
        MessageLimits::default(),
        CancellationToken::new(),
    );
    dispatcher.hear_voice_notes_with(Arc::new(WordsReader));
    dispatcher.speak_replies_with(Arc::new(WordsWriter));
    let bridge = Arc::new(FakeBridge::default());
    let context = dispatcher.register("f", Arc::clone(&bridge) as Arc<dyn Bridge>, open_policy());
    dispatcher.resume().await.unwrap();
    let delivered = || bridge.delivered.lock().unwrap().len();
    let voiced = || -> Vec<String> {
        bridge
            .voices
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    };

    // `auto`: a voice note is answered aloud, then in text; a typed message in text only.
    context
        .receive(voice_note("v1", "fake-file:hello there"))
        .await
        .unwrap();
    wait_until(|| delivered() == 1).await;
    context.receive(inbound("t1", "42", "typed")).await.unwrap();
    wait_until(|| delivered() == 2).await;
    assert_eq!(voiced(), ["r-v1"]);
    assert_eq!(
        bridge.voices.lock().unwrap()[0].1,
        b"spoken: echo: hello there"
    );

    dispatcher.set_voice_replies("f", VoiceReplies::Always);
    context
        .receive(inbound("t2", "42", "typed again"))
        .await
        .unwrap();
    wait_until(|| delivered() == 3).await;
    dispatcher.set_voice_replies("f", VoiceReplies::Never);
    context
        .receive(voice_note("v2", "fake-file:spoken again"))
        .await
        .unwrap();
    wait_until(|| delivered() == 4).await;
    assert_eq!(voiced(), ["r-v1", "r-t2"]);
}
