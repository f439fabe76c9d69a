//! Voice on the web page's WebSocket (`/ws`), driven by a plain WebSocket client as the
//! page drives it: Piper says a question, sent as binary frames of 16 kHz PCM16;
//! pocketsphinx (through Wyoming) transcribes it; the answer streams as text and is spoken
//! back by a Piper voice inside the node, its audio in binary frames. Push-to-talk and
//! hands-free (voice activity) listening; barge-in (speech while the assistant speaks stops
//! its voice); and bad audio, which gets clear errors on a connection that stays open.
//! Then the page itself, in Chromium with a fake microphone playing the question
//! (`python/browser_voice.py`): hands-free, the question is heard, answered and played, and
//! the question said again while the answer plays stops it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::otlp::OtlpReceiver;
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::voice::{WyomingServer, pcm16_at_16k, piper_says, pocketsphinx};

use crate::python::{run_python, script};
use crate::support::{
    Socket, binary, connect_as, echo_node, frames_until_final, get, metrics_page, openai_provider,
    send, test_models_dir,
};

/// The voice Piper in the node speaks with.
const PIPER: &str = "{ kind = \"piper\", voice = \"en_US-joe-medium\" }";
/// Bytes of one frame the test sends: 100 ms.
const FRAME: usize = 3_200;

/// The `[models]` and `[voice]` sections of a node that hears with `stt` and speaks with
/// Piper.
fn voice_section(stt: &WyomingServer) -> String {
    format!(
        "[models]\ndir = \"{models}\"\n\n[voice]\nstt = {{ kind = \"wyoming\", uri = \"{stt}\" }}\ntts = {PIPER}\n",
        models = test_models_dir().display(),
        stt = stt.uri,
    )
}

/// `text` said by Piper as a page sends it (16 kHz mono PCM16), after `before` and before
/// `after` seconds of silence.
fn spoken(text: &str, before: f64, after: f64) -> Vec<u8> {
    let silence = |seconds: f64| vec![0u8; (seconds * 16_000.0) as usize * 2];
    [
        silence(before),
        pcm16_at_16k(&piper_says(text), 22_050),
        silence(after),
    ]
    .concat()
}

async fn send_audio(socket: &mut Socket, pcm: &[u8]) {
    for frame in pcm.chunks(FRAME) {
        socket
            .send(Message::binary(frame.to_vec()))
            .await
            .expect("audio is sent");
    }
}

/// What the node sent: a JSON frame, or a binary frame of audio.
enum Heard {
    Json(Value),
    Audio(Vec<u8>),
}

impl std::fmt::Debug for Heard {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json(value) => write!(formatter, "{value}"),
            Self::Audio(pcm) => write!(formatter, "<{} bytes of audio>", pcm.len()),
        }
    }
}

async fn next(socket: &mut Socket) -> Heard {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a frame within 30 s")
            .expect("the connection is open")
            .expect("a frame");
        match message {
            Message::Text(text) => return Heard::Json(serde_json::from_str(&text).unwrap()),
            Message::Binary(audio) => return Heard::Audio(audio.to_vec()),
            _ => {}
        }
    }
}

/// Everything up to and including the first JSON frame `until` accepts.
async fn until(socket: &mut Socket, until: impl Fn(&Value) -> bool) -> Vec<Heard> {
    let mut heard = Vec::new();
    loop {
        let frame = next(socket).await;
        let done = matches!(&frame, Heard::Json(value) if until(value));
        heard.push(frame);
        if done {
            return heard;
        }
    }
}

fn of_type(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |frame| frame["type"] == kind
}

fn json_frames(heard: &[Heard]) -> Vec<&Value> {
    heard
        .iter()
        .filter_map(|frame| match frame {
            Heard::Json(value) => Some(value),
            Heard::Audio(_) => None,
        })
        .collect()
}

fn find<'a>(heard: &'a [Heard], kind: &str) -> &'a Value {
    json_frames(heard)
        .into_iter()
        .find(|frame| frame["type"] == kind)
        .unwrap_or_else(|| panic!("a {kind} frame in {:?}", json_frames(heard)))
}

/// Seconds and loudness (RMS, 0 to 1) of the audio frames in `heard` (PCM16 at `rate`).
fn audio_of(heard: &[Heard], rate: f64) -> (f64, f64) {
    let samples: Vec<f64> = heard
        .iter()
        .filter_map(|frame| match frame {
            Heard::Audio(pcm) => Some(pcm),
            Heard::Json(_) => None,
        })
        .flat_map(|pcm| pcm.chunks_exact(2))
        .map(|pair| f64::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0)
        .collect();
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    let rms = (samples.iter().map(|s| s * s).sum::<f64>() / samples.len() as f64).sqrt();
    (samples.len() as f64 / rate, rms)
}

async fn voice_start(socket: &mut Socket, start: Value) -> Value {
    send(socket, start).await;
    let heard = until(socket, |frame| {
        frame["type"] == "voice_ready" || frame["type"] == "error"
    })
    .await;
    json_frames(&heard).last().copied().cloned().unwrap()
}

#[tokio::test]
async fn a_question_said_push_to_talk_is_transcribed_answered_and_spoken_back() {
    let stt = pocketsphinx().await;
    let node = echo_node(&voice_section(&stt)).await;
    let (_, voice) = get(&node, "/api/v1/voice").await;
    assert_eq!(
        voice["engines"]["web"],
        json!({"push_to_talk": true, "hands_free": true, "wake_word": false, "speaks": true}),
        "{voice}"
    );
    let mut socket = connect_as(&node, "ada").await;
    let ready = voice_start(&mut socket, json!({"type": "voice_start"})).await;
    assert_eq!(
        ready,
        json!({"type": "voice_ready", "mode": "push_to_talk", "rate": 16000, "width": 2,
            "channels": 1, "wake_word": null, "speaks": true})
    );
    send_audio(&mut socket, &spoken("What is two plus two?", 0.3, 0.3)).await;
    send(&mut socket, json!({"type": "voice_end"})).await;
    let heard = until(&mut socket, of_type("speech_end")).await;
    let frames = json_frames(&heard);
    let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    let transcript = find(&heard, "transcript");
    let id = transcript["id"].as_str().unwrap();
    let said = transcript["payload"].as_str().unwrap();
    assert!(said.contains("two plus two"), "{said}");
    assert!(id.starts_with("voice-"), "{transcript}");
    assert_eq!(transcript["conversation_id"], "ada");
    let position = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap();
    assert!(
        position("voice_started") < position("transcript"),
        "{kinds:?}"
    );
    assert!(position("transcript") < position("ack"), "{kinds:?}");
    assert_eq!(find(&heard, "ack")["id"], id);
    // The echo model answers with what was said; its speech is announced, then streams.
    let speech = find(&heard, "speech");
    assert_eq!(
        speech,
        &json!({"type": "speech", "in_reply_to": id, "rate": 22050, "width": 2, "channels": 1})
    );
    assert_eq!(find(&heard, "speech_end")["in_reply_to"], id);
    let (seconds, loudness) = audio_of(&heard, 22_050.0);
    assert!(seconds > 0.8 && seconds < 8.0, "{seconds} s of speech");
    assert!(loudness > 0.02, "the speech is not silence: {loudness}");
    let reply = if kinds.contains(&"reply") {
        find(&heard, "reply").clone()
    } else {
        frames_until_final(&mut socket, id).await.pop().unwrap()
    };
    assert_eq!(
        (reply["in_reply_to"].as_str(), reply["payload"].as_str()),
        (Some(id), Some(said))
    );
    // The transcript is the person's message in the conversation.
    let (_, session) = get(&node, "/api/v1/sessions/ws:ada").await;
    assert_eq!(session["history"][0]["role"], "user", "{session}");
    assert_eq!(session["history"][0]["content"], said, "{session}");
    let metrics = metrics_page(&node.http_url()).await;
    for stage in ["transcript", "first_token", "first_audio"] {
        let count = format!("troupe_voice_stage_seconds_count{{stage=\"{stage}\"}}");
        assert!(metrics.contains(&count), "{count} in {metrics}");
    }
}

#[tokio::test]
async fn a_question_said_on_the_page_is_one_trace_from_the_utterance_to_its_spoken_reply() {
    let (collector, stt) = (OtlpReceiver::start().await, pocketsphinx().await);
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n{}",
        voice_section(&stt)
    );
    let node = crate::support::traced_node(&config, &collector).await;
    let mut socket = connect_as(&node, "ada").await;
    voice_start(&mut socket, json!({"type": "voice_start"})).await;
    send_audio(&mut socket, &spoken("What is two plus two?", 0.3, 0.3)).await;
    send(&mut socket, json!({"type": "voice_end"})).await;
    until(&mut socket, of_type("speech_end")).await;

    let names = [
        "voice_utterance",
        "voice_transcribe",
        "gateway_turn",
        "session_turn",
        "voice_speak",
    ];
    let spans = collector.spans_named(Duration::from_secs(20), &names).await;
    let utterance = &spans["voice_utterance"];
    assert_eq!(utterance.attributes["mode"], "push_to_talk");
    for (name, span) in &spans {
        assert_eq!(span.trace_id, utterance.trace_id, "{name} is in the trace");
    }
    assert_eq!(spans["voice_transcribe"].parent_id, utterance.span_id);
    assert_eq!(
        spans["gateway_turn"].parent_id, utterance.span_id,
        "the turn is the utterance's"
    );
    let speak = &spans["voice_speak"];
    assert_eq!(
        speak.parent_id, utterance.span_id,
        "the reply's speech joins it"
    );
    for stage in ["first_token_ms", "tts_first_audio_ms", "first_audio_ms"] {
        assert!(
            speak.attributes[stage].parse::<u64>().is_ok(),
            "{stage}: {speak:?}"
        );
    }
}

#[tokio::test]
async fn hands_free_with_the_wake_word_answers_only_what_follows_the_word() {
    let stt = pocketsphinx().await;
    let config =
        voice_section(&stt).replace("[voice]\n", "[voice]\nwake_word = \"hey_jarvis_v0.1\"\n");
    let node = echo_node(&config).await;
    let (_, voice) = get(&node, "/api/v1/voice").await;
    assert_eq!(voice["engines"]["web"]["wake_word"], true, "{voice}");
    let mut socket = connect_as(&node, "ada").await;
    let ready = voice_start(
        &mut socket,
        json!({"type": "voice_start", "mode": "hands_free", "wake_word": true, "speak": false}),
    )
    .await;
    assert_eq!(
        (ready["wake_word"].as_str(), ready["speaks"].as_bool()),
        (Some("hey_jarvis_v0.1"), Some(false)),
        "{ready}"
    );
    // Without the word, the question is not taken; with it, it is.
    send_audio(&mut socket, &spoken("What is one plus one?", 0.5, 1.2)).await;
    send_audio(
        &mut socket,
        &spoken("Hey Jarvis, what is two plus two?", 0.5, 1.2),
    )
    .await;
    let heard = until(&mut socket, of_type("transcript")).await;
    let kinds: Vec<&str> = json_frames(&heard)
        .iter()
        .filter_map(|frame| frame["type"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["wake_word", "voice_started", "voice_stopped", "transcript"]
    );
    let transcript = find(&heard, "transcript")["payload"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(transcript.contains("two plus two"), "{transcript}");
    assert!(!transcript.contains("one plus one"), "{transcript}");
    let id = find(&heard, "transcript")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answered = frames_until_final(&mut socket, &id).await;
    assert_eq!(answered.last().unwrap()["payload"], transcript.as_str());
    assert!(
        answered.iter().all(|frame| frame["type"] != "speech"),
        "speak: false is not spoken"
    );
}

#[tokio::test]
async fn hands_free_speech_while_the_assistant_speaks_stops_its_voice() {
    let stt = pocketsphinx().await;
    let llm = FakeLlm::start(None).await;
    let open = std::sync::Arc::default();
    llm.script([
        // The first answer speaks two sentences, then never ends: it is still being
        // spoken when the person speaks again.
        FakeReply::StreamThenHang(
            vec![
                "First, let me think. ".into(),
                "Then I will answer. ".into(),
            ],
            std::sync::Arc::clone(&open),
        ),
        FakeReply::Text(vec!["Four.".into()]),
    ]);
    let config = format!(
        "{}\n{}",
        openai_provider(&llm.openai_base_url(), ""),
        voice_section(&stt)
    );
    let node = TroupeProcess::start(binary(), &config)
        .await
        .expect("troupe starts");
    let mut socket = connect_as(&node, "ada").await;
    let ready = voice_start(
        &mut socket,
        json!({"type": "voice_start", "mode": "hands_free"}),
    )
    .await;
    assert_eq!(ready["mode"], "hands_free", "{ready}");
    send_audio(&mut socket, &spoken("What is two plus two?", 0.5, 1.2)).await;
    let heard = until(&mut socket, of_type("speech")).await;
    let kinds: Vec<String> = json_frames(&heard)
        .iter()
        .map(|f| f["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        kinds.iter().take(3).collect::<Vec<_>>(),
        ["voice_started", "voice_stopped", "transcript"],
        "{kinds:?}"
    );
    let first = find(&heard, "transcript")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(find(&heard, "speech")["in_reply_to"], first.as_str());

    // The person speaks again: the assistant's voice stops, though its text goes on.
    send_audio(&mut socket, &spoken("Stop, I know.", 0.3, 1.2)).await;
    let heard = until(&mut socket, of_type("speech_stopped")).await;
    assert!(
        json_frames(&heard)
            .iter()
            .any(|f| f["type"] == "voice_started"),
        "{heard:?}"
    );
    let stopped = find(&heard, "speech_stopped");
    assert_eq!(
        stopped,
        &json!({"type": "speech_stopped", "in_reply_to": first, "reason": "interrupted"})
    );
    // The first answer is stopped; the second question is answered and spoken whole.
    send(&mut socket, json!({"type": "stop", "in_reply_to": first})).await;
    let heard = until(&mut socket, of_type("speech_end")).await;
    let frames = json_frames(&heard);
    assert!(
        frames.iter().all(|f| !(f["in_reply_to"] == first.as_str()
            && (f["type"] == "speech" || f["type"] == "speech_end"))),
        "nothing more of the first answer is spoken: {frames:?}"
    );
    let second = find(&heard, "transcript");
    assert!(
        second["payload"].as_str().unwrap().contains("stop"),
        "{second}"
    );
    assert_eq!(find(&heard, "speech")["in_reply_to"], second["id"]);
    assert_eq!(find(&heard, "speech_end")["in_reply_to"], second["id"]);
    assert!(
        audio_of(&heard, 22_050.0).0 > 0.3,
        "the second answer is heard"
    );
}

#[tokio::test]
async fn bad_audio_gets_clear_errors_and_the_connection_stays_open() {
    let stt = pocketsphinx().await;
    let node = echo_node(&voice_section(&stt)).await;
    let mut socket = connect_as(&node, "ada").await;
    let error_of = |heard: Vec<Heard>| {
        let frames = json_frames(&heard);
        let error = frames.last().copied().unwrap();
        (
            error["code"].as_str().unwrap_or_default().to_owned(),
            error["message"].as_str().unwrap_or_default().to_owned(),
        )
    };
    // Audio before the microphone opened.
    send_audio(&mut socket, &[0; 640]).await;
    let (code, message) = error_of(until(&mut socket, of_type("error")).await);
    assert_eq!(code, "invalid_frame");
    assert!(message.contains("voice_start"), "{message}");
    // A conversation id that cannot be one.
    let refused = voice_start(
        &mut socket,
        json!({"type": "voice_start", "conversation_id": "bad id with spaces"}),
    )
    .await;
    assert_eq!(refused["code"], "invalid_frame", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("conversation_id")
    );
    // No wake word on this node.
    let refused = voice_start(
        &mut socket,
        json!({"type": "voice_start", "mode": "hands_free", "wake_word": true}),
    )
    .await;
    assert_eq!(refused["code"], "voice_unavailable", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("wake_word"));

    voice_start(&mut socket, json!({"type": "voice_start"})).await;
    // Half a sample, and more than half a second in one frame.
    for frame in [vec![0u8; 641], vec![0u8; 20_000]] {
        socket.send(Message::binary(frame)).await.unwrap();
        let (code, message) = error_of(until(&mut socket, of_type("error")).await);
        assert_eq!(code, "invalid_frame");
        assert!(message.contains("PCM16"), "{message}");
    }
    // A press too short to be speech.
    send_audio(&mut socket, &[0; 1_600]).await;
    send(&mut socket, json!({"type": "voice_end"})).await;
    until(&mut socket, of_type("voice_heard_nothing")).await;
    // Minutes of audio at once, far faster than it is spoken: refused, not buffered.
    let ready = voice_start(
        &mut socket,
        json!({"type": "voice_start", "mode": "hands_free"}),
    )
    .await;
    assert_eq!(ready["type"], "voice_ready", "{ready}");
    for _ in 0..400 {
        socket
            .send(Message::binary(vec![0u8; 16_000]))
            .await
            .unwrap();
    }
    let (code, message) = error_of(until(&mut socket, of_type("error")).await);
    assert_eq!(code, "audio_too_fast", "{message}");
    // The microphone was closed: what still came is refused until it opens again.
    let (code, message) = error_of(until(&mut socket, of_type("error")).await);
    assert_eq!(code, "invalid_frame", "{message}");
    assert!(message.contains("voice_start"), "{message}");
    // Typed messages still work on the same connection.
    send(
        &mut socket,
        json!({"type": "message", "id": "m1", "payload": "still here"}),
    )
    .await;
    let reply = frames_until_final(&mut socket, "m1").await.pop().unwrap();
    assert_eq!(reply["payload"], "still here");

    // A node without speech to text says so.
    let plain = echo_node("").await;
    let mut socket = connect_as(&plain, "ada").await;
    let refused = voice_start(&mut socket, json!({"type": "voice_start"})).await;
    assert_eq!(refused["code"], "voice_unavailable", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("[voice] stt"));
}

#[tokio::test]
async fn a_question_spoken_into_the_web_page_is_answered_aloud_and_speaking_again_stops_it() {
    let stt = pocketsphinx().await;
    let node = echo_node(&format!(
        "[server]\ntoken = \"page-token\"\n\n{}",
        voice_section(&stt)
    ))
    .await;
    // The fake microphone plays this over and over: a question, then a pause shorter
    // than the spoken answer, so the question comes again while the answer plays.
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("question.wav");
    let silence = |seconds: f64| vec![0.0f32; (seconds * 22_050.0) as usize];
    let samples = [
        silence(0.3),
        piper_says("What is two plus two?"),
        silence(1.2),
    ]
    .concat();
    let pcm: Vec<u8> = samples
        .iter()
        .flat_map(|sample| ((sample.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
        .collect();
    let format = troupe_actors::voice::AudioFormat {
        rate: 22_050,
        width: 2,
        channels: 1,
    };
    std::fs::write(&wav, format.wav(&pcm)).unwrap();
    let shots = crate::web_app::artefacts();
    std::fs::create_dir_all(&shots).unwrap();

    let seen = run_python(vec![
        script("browser_voice.py").display().to_string(),
        node.http_url(),
        "page-token".into(),
        wav.display().to_string(),
        shots.display().to_string(),
        crate::web_app::axe_script().display().to_string(),
    ])
    .await;
    assert_eq!(seen["talk_visible"], true, "{seen}");
    assert_eq!(seen["pressed_while_listening"], "true", "{seen}");
    let transcript = seen["transcript"].as_str().unwrap();
    assert!(transcript.contains("two plus two"), "{seen}");
    assert_eq!(
        seen["answer"], transcript,
        "the echo model answers what was heard"
    );
    assert!(seen["audio_pieces"].as_u64().unwrap() > 0, "{seen}");
    assert!(seen["barge_ins"].as_u64().unwrap() >= 1, "{seen}");
    assert_eq!(seen["speaking_after_barge_in"], "false", "{seen}");
    assert_eq!(seen["pressed_after"], "false", "{seen}");
    assert_eq!(seen["axe_violations"], json!([]), "{seen}");
    // Held to talk, the question is heard too; a tap leaves the microphone closed.
    let held = seen["held_transcript"].as_str().unwrap();
    assert!(held.contains("two plus two"), "{seen}");
    assert_eq!(seen["voice_after_tap"], "off", "{seen}");
}
