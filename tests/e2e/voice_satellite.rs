//! A real Home Assistant voice satellite: an unmodified `wyoming-satellite` whose
//! microphone plays Piper saying "Hey Jarvis, what is two plus two?" (at real time, between
//! silences) and whose speaker appends to a file. Troupe connects to it as
//! `[[voice.satellites]]` says, hears the wake word (openWakeWord), then the question
//! (Silero VAD, then pocketsphinx through Wyoming); the echo model answers in the
//! satellite's conversation, and the answer, spoken by `wyoming-piper`, lands in that
//! file; the satellite is told `voice-started` and `voice-stopped` around the question.
//! The satellite's state is in `GET /api/v1/voice`; it reconnects on its own, and a
//! Wyoming service that is not a satellite is refused with a clear error. The answer can
//! also be spoken by a Piper voice inside the node (`tts = { kind = "piper" }`), and what
//! it says then reads back through speech to text. A spoken turn is one trace: the
//! utterance, its transcription, the session's turn and the reply's speech.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use troupe_actors::voice::SpeechToText;
use troupe_testkit::otlp::OtlpReceiver;
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::voice::{
    WyomingServer, gated_satellite, open_gate, piper, piper_to_wav, pocketsphinx, satellite_on,
    silent_wav,
};

use crate::support::{binary, echo_node, eventually, get, test_models_dir};

/// A node that answers with `echo` and runs one satellite at `satellite_uri`.
async fn node_with_satellite(
    stt: &WyomingServer,
    tts: &WyomingServer,
    satellite_uri: &str,
) -> TroupeProcess {
    node_with_voice(stt, tts, satellite_uri, "").await
}

/// [`node_with_satellite`] with `voice` added to its `[voice]` section.
async fn node_with_voice(
    stt: &WyomingServer,
    tts: &WyomingServer,
    satellite_uri: &str,
    voice: &str,
) -> TroupeProcess {
    let tts = format!("{{ kind = \"wyoming\", uri = \"{}\" }}", tts.uri);
    echo_node(&voice_config(stt, &tts, satellite_uri, voice)).await
}

/// The `[models]` and `[voice]` sections of a node with one satellite, `kitchen`.
fn voice_config(stt: &WyomingServer, tts: &str, satellite_uri: &str, voice: &str) -> String {
    format!(
        "[models]\ndir = \"{models}\"\n\n[voice]\n{voice}\nstt = {{ kind = \"wyoming\", uri = \"{stt}\" }}\ntts = {tts}\n\n[[voice.satellites]]\nname = \"kitchen\"\nuri = \"{satellite_uri}\"\n",
        models = test_models_dir().display(),
        stt = stt.uri,
    )
}

/// The satellite `kitchen` as `GET /api/v1/voice` shows it.
async fn kitchen(node: &TroupeProcess) -> Value {
    let (status, voice) = get(node, "/api/v1/voice").await;
    assert_eq!(status, 200, "{voice}");
    voice["satellites"]
        .as_array()
        .and_then(|satellites| {
            satellites
                .iter()
                .find(|satellite| satellite["name"] == "kitchen")
        })
        .cloned()
        .unwrap_or(Value::Null)
}

/// The 22,050 Hz mono PCM16 the satellite's speaker played: its seconds and loudness (RMS,
/// 0 to 1).
fn played(speaker: &Path) -> (f64, f64) {
    let bytes = std::fs::read(speaker).unwrap_or_default();
    let samples: Vec<f64> = bytes
        .chunks_exact(2)
        .map(|pair| f64::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0)
        .collect();
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    let rms =
        (samples.iter().map(|sample| sample * sample).sum::<f64>() / samples.len() as f64).sqrt();
    (samples.len() as f64 / 22_050.0, rms)
}

/// Waits until `node` has answered and the answer has played whole into `speaker` (the
/// speaker has gone quiet); answers [`played`].
async fn answer_played(node: &TroupeProcess, speaker: &Path) -> (f64, f64) {
    eventually(Duration::from_secs(60), || async {
        played(speaker).0 > 0.5 && !conversation(node).await.is_empty()
    })
    .await;
    let mut last = 0.0;
    eventually(Duration::from_secs(30), || {
        let (seconds, _) = played(speaker);
        let settled = seconds > 0.0 && (seconds - last).abs() < f64::EPSILON;
        last = seconds;
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            settled
        }
    })
    .await;
    played(speaker)
}

/// The texts of the satellite's conversation, oldest first.
async fn conversation(node: &TroupeProcess) -> Vec<(String, String)> {
    let (_, session) = get(node, "/api/v1/sessions/satellite:kitchen").await;
    session["history"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .map(|message| {
                    (
                        message["role"].as_str().unwrap_or_default().to_owned(),
                        message["content"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_question_asked_at_a_satellite_after_its_wake_word_is_answered_aloud() {
    let dir = tempfile::tempdir().unwrap();
    let question = dir.path().join("question.wav");
    piper_to_wav("Hey Jarvis, what is two plus two?", &question);
    let speaker = dir.path().join("speaker.raw");
    let (stt, tts) = (pocketsphinx().await, piper().await);
    // The satellite runs a command on `voice-started` and on `voice-stopped` (its LEDs).
    let (started, stopped) = (dir.path().join("started"), dir.path().join("stopped"));
    let started_command = format!("sh -c 'echo started >> {}'", started.display());
    let stopped_command = format!("sh -c 'echo stopped >> {}'", stopped.display());
    let extra = [
        "--stt-start-command",
        started_command.as_str(),
        "--stt-stop-command",
        stopped_command.as_str(),
    ];
    let gate = dir.path().join("gate");
    let kitchen_satellite = gated_satellite("kitchen", &question, &speaker, &gate, &extra).await;
    let wake_word = "wake_word = \"hey_jarvis_v0.1\"";
    let node = node_with_voice(&stt, &tts, &kitchen_satellite.uri, wake_word).await;
    // The question is asked once the node listens.
    eventually(Duration::from_secs(60), || async {
        kitchen(&node).await["state"] == "connected"
    })
    .await;
    open_gate(&gate);

    answer_played(&node, &speaker).await;

    let said = conversation(&node).await;
    let question_heard = said
        .iter()
        .find(|(role, _)| role == "user")
        .map(|(_, text)| text.to_lowercase())
        .unwrap_or_default();
    assert!(
        question_heard.contains("two plus two"),
        "the question was heard as {question_heard:?} ({said:?})"
    );
    assert!(
        said.iter().any(|(role, text)| role == "assistant" && text.to_lowercase().contains("two plus two")),
        "the echo model answered: {said:?}"
    );
    let (seconds, loudness) = played(&speaker);
    assert!(
        (0.6..8.0).contains(&seconds),
        "the answer, one short sentence, played for {seconds:.2} s"
    );
    for (file, line) in [(&started, "started"), (&stopped, "stopped")] {
        let said = std::fs::read_to_string(file).unwrap_or_default();
        assert_eq!(
            said.lines().collect::<Vec<_>>(),
            [line],
            "voice-{line} once"
        );
    }
    assert!(
        loudness > 0.01,
        "the answer is speech, not silence (RMS {loudness:.4})"
    );

    let kitchen = kitchen(&node).await;
    assert_eq!(kitchen["state"], "connected", "{kitchen}");
    assert!(
        kitchen["messages_received"].as_u64() >= Some(1),
        "{kitchen}"
    );
    assert!(
        kitchen["replies_delivered"].as_u64() >= Some(1),
        "{kitchen}"
    );
    let metrics = crate::support::metrics_page(&node.http_url()).await;
    for stage in [
        "wake",
        "transcript",
        "first_token",
        "tts_first_audio",
        "first_audio",
    ] {
        let count = format!("troupe_voice_stage_seconds_count{{stage=\"{stage}\"}} ");
        assert!(metrics.contains(&count), "{count} in {metrics}");
    }
    let (_, voice) = get(&node, "/api/v1/voice").await;
    assert_eq!(voice["engines"]["vad"], "silero-vad", "{voice}");
    assert_eq!(voice["engines"]["wake_word"], "hey_jarvis_v0.1", "{voice}");
    assert_eq!(
        voice["engines"]["stt"],
        format!("wyoming {}", stt.uri),
        "{voice}"
    );
}

/// A room where nobody speaks: speech services, and a satellite's silent microphone and
/// speaker file.
struct QuietRoom {
    _dir: tempfile::TempDir,
    silence: PathBuf,
    speaker: PathBuf,
    stt: WyomingServer,
    tts: WyomingServer,
}

impl QuietRoom {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let silence = dir.path().join("silence.wav");
        silent_wav(&silence, Duration::from_secs(1));
        Self {
            speaker: dir.path().join("speaker.raw"),
            silence,
            _dir: dir,
            stt: pocketsphinx().await,
            tts: piper().await,
        }
    }

    /// The satellite `kitchen` on `port`, started with `extra` arguments.
    async fn satellite(&self, port: u16, extra: &[&str]) -> WyomingServer {
        satellite_on(port, "kitchen", &self.silence, &self.speaker, extra).await
    }
}

/// Waits until the satellite's last error mentions `words`.
async fn refused_for(node: &TroupeProcess, words: &str) {
    eventually(Duration::from_secs(30), || async {
        kitchen(node).await["last_error"]
            .as_str()
            .is_some_and(|error| error.contains(words))
    })
    .await;
    assert_ne!(kitchen(node).await["state"], "connected");
}

#[tokio::test]
async fn a_satellite_that_goes_away_is_reconnected_when_it_comes_back() {
    let room = QuietRoom::new().await;
    let port = troupe_testkit::free_port();
    let first = room.satellite(port, &[]).await;
    let node = node_with_satellite(&room.stt, &room.tts, &first.uri).await;
    eventually(Duration::from_secs(30), || async {
        kitchen(&node).await["state"] == "connected"
    })
    .await;

    drop(first);
    eventually(Duration::from_secs(30), || async {
        let kitchen = kitchen(&node).await;
        kitchen["state"] != "connected" && kitchen["last_error"].is_string()
    })
    .await;
    let _second = room.satellite(port, &[]).await;
    eventually(Duration::from_secs(60), || async {
        let kitchen = kitchen(&node).await;
        kitchen["state"] == "connected" && kitchen["restarts"].as_u64() >= Some(1)
    })
    .await;
}

#[tokio::test]
async fn a_wyoming_service_that_is_not_a_satellite_is_refused_with_a_clear_error() {
    let (stt, tts) = (pocketsphinx().await, piper().await);
    // The speech-to-text server answers `describe`, but as a service, not a satellite.
    let node = node_with_satellite(&stt, &tts, &stt.uri).await;
    refused_for(&node, "not a satellite").await;
}

#[tokio::test]
async fn a_node_with_a_satellite_and_no_voice_activity_model_refuses_to_start_and_says_why() {
    let empty = tempfile::tempdir().unwrap();
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[models]\ndir = \"{dir}\"\nonnxruntime = \"{runtime}\"\n\n[voice]\nstt = {{ kind = \"wyoming\", uri = \"tcp://127.0.0.1:9\" }}\ntts = {{ kind = \"wyoming\", uri = \"tcp://127.0.0.1:9\" }}\n\n[[voice.satellites]]\nname = \"kitchen\"\nuri = \"tcp://127.0.0.1:9\"\n",
        dir = empty.path().display(),
        runtime = test_models_dir()
            .join("onnxruntime/libonnxruntime.so")
            .display(),
    );
    let refused = TroupeProcess::start(binary(), &config)
        .await
        .err()
        .expect("the node refuses to start")
        .to_string();
    assert!(
        refused.contains("voice.vad") && refused.contains("troupe models install silero-vad"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_satellite_whose_microphone_is_not_16_khz_is_told_and_refused() {
    let room = QuietRoom::new().await;
    let wrong_rate = room
        .satellite(
            troupe_testkit::free_port(),
            &["--mic-command-rate", "48000"],
        )
        .await;
    let node = node_with_satellite(&room.stt, &room.tts, &wrong_rate.uri).await;
    refused_for(&node, "16 kHz mono 16-bit").await;
}

/// Piper in the process: the packaged voice through ONNX Runtime, eSpeak NG's phonemes.
const PIPER: &str =
    "{ kind = \"piper\", voice = \"en_US-joe-medium\", noise_scale = 0.0, noise_w = 0.0 }";

/// The satellite `kitchen`, whose microphone asks "What is two plus two?" (no wake word),
/// its speaker's file, and the speech-to-text server.
struct AskingSatellite {
    _dir: tempfile::TempDir,
    speaker: PathBuf,
    /// The microphone speaks once this exists.
    gate: PathBuf,
    stt: WyomingServer,
    satellite: WyomingServer,
}

impl AskingSatellite {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let question = dir.path().join("question.wav");
        piper_to_wav("What is two plus two?", &question);
        let speaker = dir.path().join("speaker.raw");
        let gate = dir.path().join("gate");
        Self {
            stt: pocketsphinx().await,
            satellite: gated_satellite("kitchen", &question, &speaker, &gate, &[]).await,
            speaker,
            gate,
            _dir: dir,
        }
    }

    /// Asks the question once `node` is connected to the satellite (a node slow to start
    /// would otherwise miss it).
    async fn ask(&self, node: &TroupeProcess) {
        eventually(Duration::from_secs(60), || async {
            kitchen(node).await["state"] == "connected"
        })
        .await;
        open_gate(&self.gate);
    }

    /// The node's `[models]` and `[voice]`, speaking with Piper in the process.
    fn config(&self) -> String {
        voice_config(&self.stt, PIPER, &self.satellite.uri, "")
    }
}

#[tokio::test]
async fn a_satellite_is_answered_by_the_piper_voice_inside_the_node() {
    let asked = AskingSatellite::new().await;
    let (stt, speaker) = (&asked.stt, &asked.speaker);
    let node = echo_node(&asked.config()).await;

    asked.ask(&node).await;
    let (seconds, loudness) = answer_played(&node, speaker).await;
    assert!(
        (0.6..8.0).contains(&seconds),
        "the answer played for {seconds:.2} s"
    );
    assert!(loudness > 0.01, "the answer is speech (RMS {loudness:.4})");

    // What the speaker played reads back, through speech to text, as the echoed answer.
    let answer = conversation(&node)
        .await
        .into_iter()
        .find(|(role, _)| role == "assistant")
        .map(|(_, text)| text)
        .unwrap_or_default();
    let recogniser = troupe_inference::voice::WyomingStt::new(
        "pocketsphinx",
        &stt.uri,
        Some("en"),
        Duration::from_secs(30),
    )
    .unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender.send(std::fs::read(speaker).unwrap()).await.unwrap();
    drop(sender);
    let format = troupe_actors::voice::AudioFormat {
        rate: 22_050,
        width: 2,
        channels: 1,
    };
    let heard = recogniser.transcribe(format, receiver).await.unwrap();
    assert!(
        heard.contains("two plus two") && answer.to_lowercase().contains("two plus two"),
        "the answer {answer:?} was heard back as {heard:?}"
    );
    let (_, voice) = get(&node, "/api/v1/voice").await;
    assert_eq!(voice["engines"]["tts"], "piper en_US-joe-medium", "{voice}");
}

#[tokio::test]
async fn a_node_whose_piper_voice_is_not_installed_refuses_to_start_and_says_how_to_install_it() {
    let stt = pocketsphinx().await;
    let tts = "{ kind = \"piper\", voice = \"en_US-nobody-medium\" }";
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n{}",
        voice_config(&stt, tts, "tcp://127.0.0.1:9", "")
    );
    let refused = TroupeProcess::start(binary(), &config)
        .await
        .err()
        .expect("the node refuses to start")
        .to_string();
    assert!(
        refused.contains("voice.tts")
            && refused.contains("troupe models install en_US-nobody-medium"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_spoken_turn_is_one_trace_from_the_utterance_to_its_spoken_reply() {
    let collector = OtlpReceiver::start().await;
    let asked = AskingSatellite::new().await;
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n{}",
        asked.config()
    );
    let node = crate::support::traced_node(&config, &collector).await;
    asked.ask(&node).await;
    answer_played(&node, &asked.speaker).await;

    let names = [
        "voice_utterance",
        "voice_transcribe",
        "session_turn",
        "chat echo",
        "voice_speak",
    ];
    let spans = collector.spans_named(Duration::from_secs(20), &names).await;
    let named = |name: &str| &spans[name];
    let utterance = named("voice_utterance");
    assert_eq!(utterance.attributes["satellite"], "kitchen");
    for (name, span) in &spans {
        assert_eq!(span.trace_id, utterance.trace_id, "{name} is in the trace");
    }
    let transcribe = named("voice_transcribe");
    assert_eq!(transcribe.parent_id, utterance.span_id);
    assert_eq!(transcribe.attributes["stt"], "stt");
    let turn = named("session_turn");
    assert_eq!(
        turn.parent_id, utterance.span_id,
        "the turn is the utterance's"
    );
    assert_eq!(turn.attributes["session"], "satellite:kitchen");
    let speak = named("voice_speak");
    assert_eq!(
        speak.parent_id, utterance.span_id,
        "the reply's speech joins it"
    );
    assert_eq!(speak.attributes["tts"], "en_US-joe-medium");
    for stage in ["first_token_ms", "tts_first_audio_ms", "first_audio_ms"] {
        assert!(
            speak.attributes[stage].parse::<u64>().is_ok(),
            "{stage}: {speak:?}"
        );
    }
}
