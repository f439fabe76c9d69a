//! Text to speech through a real `wyoming-piper` (PyPI, in the test venv) serving the
//! packaged voice en_US-joe-medium (from `./scripts/fetch-test-models`): the audio comes
//! back in chunks, is speech (not silence) of a plausible length; a service that is not
//! there is a clear error.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use troupe_actors::voice::{AudioChunk, SpeechError, TextToSpeech};
use troupe_inference::voice::WyomingTts;

/// A `wyoming-piper` on a free port, stopped when dropped.
struct Piper {
    child: Child,
    uri: String,
}

impl Drop for Piper {
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

async fn piper() -> Piper {
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
    let port = free_port();
    let child = Command::new(troupe_testkit::test_venv().join("bin/wyoming-piper"))
        .args([
            "--voice",
            "en_US-joe-medium",
            "--local-files-only",
            "--data-dir",
        ])
        .arg(&voices)
        .args(["--uri", &format!("tcp://127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("wyoming-piper starts (scripts/test-deps installs it)");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "wyoming-piper listens"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Piper {
        child,
        uri: format!("tcp://127.0.0.1:{port}"),
    }
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
    let (sender, mut receiver) = mpsc::channel::<AudioChunk>(64);
    let collecting = tokio::spawn(async move {
        let mut chunks = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            chunks.push(chunk);
        }
        chunks
    });
    let format = tts
        .speak(
            "Hello, I am your assistant. The weather is fine today.",
            &sender,
        )
        .await
        .unwrap();
    drop(sender);
    let chunks = collecting.await.unwrap();
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
