//! Speech through real Wyoming services: `wyoming-piper` (PyPI, in the test venv) serving
//! the packaged voice en_US-joe-medium (from `./scripts/fetch-test-models`), and a
//! speech-to-text server built on the official `wyoming` library around Debian's
//! pocketsphinx (`tests/voice/wyoming_pocketsphinx.py`). Piper's audio comes back in
//! chunks and is speech of a plausible length; the same audio, streamed to the
//! speech-to-text service, reads back as what was said; a service that is not there is a
//! clear error.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use troupe_actors::voice::{AudioChunk, AudioFormat, SpeechError, SpeechToText, TextToSpeech};
use troupe_inference::voice::{WyomingStt, WyomingTts};

/// A Wyoming service on a free port, stopped when dropped.
struct Service {
    child: Child,
    uri: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Starts `command` with `--uri tcp://127.0.0.1:PORT` and waits until it listens.
async fn service(mut command: Command) -> Service {
    let port = free_port();
    let uri = format!("tcp://127.0.0.1:{port}");
    let child = command
        .args(["--uri", &uri])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the service starts (scripts/test-deps installs it)");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the service listens"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Service { child, uri }
}

async fn piper() -> Service {
    let voices = std::env::var_os("TROUPE_TEST_MODELS")
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models"),
            PathBuf::from,
        )
        .join("voices");
    assert!(
        voices.join("en_US-joe-medium.onnx").is_file(),
        "{} has no voice: run ./scripts/fetch-test-models (./scripts/test does)",
        voices.display()
    );
    let mut command = Command::new(troupe_testkit::test_venv().join("bin/wyoming-piper"));
    command
        .args([
            "--voice",
            "en_US-joe-medium",
            "--local-files-only",
            "--data-dir",
        ])
        .arg(&voices);
    service(command).await
}

async fn pocketsphinx() -> Service {
    let mut command = Command::new(troupe_testkit::test_venv().join("bin/python"));
    command.args([
        "-W",
        "ignore",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/voice/wyoming_pocketsphinx.py"
        ),
    ]);
    service(command).await
}

/// What Piper says for `text`: its format and PCM, in the chunks it came in.
async fn spoken(tts: &WyomingTts, text: &str) -> (AudioFormat, Vec<AudioChunk>) {
    let (sender, mut receiver) = mpsc::channel::<AudioChunk>(64);
    let collecting = tokio::spawn(async move {
        let mut chunks = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            chunks.push(chunk);
        }
        chunks
    });
    let format = tts.speak(text, &sender).await.unwrap();
    drop(sender);
    (format, collecting.await.unwrap())
}

/// Root mean square of 16-bit samples, from 0 to 1.
fn loudness(pcm: &[u8]) -> f64 {
    let samples: Vec<f64> = pcm
        .chunks_exact(2)
        .map(|pair| f64::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0)
        .collect();
    (samples.iter().map(|sample| sample * sample).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_speaks_through_wyoming_in_chunks() {
    let piper = piper().await;
    let tts = WyomingTts::new("piper", &piper.uri, None, Duration::from_secs(30)).unwrap();
    let (format, chunks) = spoken(
        &tts,
        "Hello, I am your assistant. The weather is fine today.",
    )
    .await;
    assert_eq!((format.rate, format.width, format.channels), (22050, 2, 1));
    assert!(
        chunks.len() > 3,
        "the audio streams: {} chunks",
        chunks.len()
    );
    let pcm: Vec<u8> = chunks.iter().flat_map(|chunk| chunk.pcm.clone()).collect();
    let seconds = format.seconds(pcm.len());
    assert!((1.5..12.0).contains(&seconds), "{seconds} s of speech");
    assert!(
        loudness(&pcm) > 0.02,
        "speech, not silence: {}",
        loudness(&pcm)
    );

    drop(piper);
    let gone = tts.speak("Anyone there?", &mpsc::channel(1).0).await;
    assert!(
        matches!(gone, Err(SpeechError::Unreachable { .. })),
        "{gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_piper_says_streamed_to_speech_to_text_reads_back_as_said() {
    let (piper, recogniser) = (piper().await, pocketsphinx().await);
    let tts = WyomingTts::new("piper", &piper.uri, None, Duration::from_secs(30)).unwrap();
    let (format, chunks) = spoken(&tts, "What is two plus two?").await;
    let stt = WyomingStt::new(
        "pocketsphinx",
        &recogniser.uri,
        Some("en"),
        Duration::from_secs(30),
    )
    .unwrap();
    let (sender, receiver) = mpsc::channel(8);
    let streaming = tokio::spawn(async move {
        for chunk in chunks {
            sender.send(chunk.pcm).await.unwrap();
        }
    });
    let text = stt.transcribe(format, receiver).await.unwrap();
    streaming.await.unwrap();
    assert_eq!(text, "what is two plus two");

    drop(recogniser);
    let (_, nothing) = mpsc::channel(1);
    let gone = stt.transcribe(format, nothing).await;
    assert!(
        matches!(gone, Err(SpeechError::Unreachable { .. })),
        "{gone:?}"
    );
}
