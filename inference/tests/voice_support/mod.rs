//! What the voice tests share: the models dir, speech spoken by Piper (the packaged voice,
//! through the `piper` command of the test venv), a resampler for tests, and real Wyoming
//! services on free ports (`wyoming-piper`, and the pocketsphinx speech-to-text server of
//! `tests/voice/wyoming_pocketsphinx.py`).

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use troupe_actors::voice::{AudioChunk, AudioFormat, TextToSpeech};

pub(crate) fn models_dir() -> PathBuf {
    std::env::var_os("TROUPE_TEST_MODELS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models"),
        PathBuf::from,
    )
}

/// `text` spoken by Piper: 16-bit mono samples at the voice's 22,050 Hz.
pub(crate) fn piper_says(text: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("speech.wav");
    let mut piper = Command::new(troupe_testkit::test_venv().join("bin/piper"))
        .arg("-m")
        .arg(models_dir().join("voices/en_US-joe-medium.onnx"))
        .arg("-f")
        .arg(&wav)
        // No generator noise: the same words are the same audio every time.
        .args(["--noise-scale", "0", "--noise-w-scale", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("piper runs (scripts/test-deps installs it)");
    piper
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(piper.wait().unwrap().success());
    let bytes = std::fs::read(&wav).unwrap();
    let data = bytes
        .windows(4)
        .position(|window| window == b"data")
        .expect("a data chunk")
        + 8;
    bytes[data..]
        .chunks_exact(2)
        .map(|pair| f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0)
        .collect()
}

/// `samples` at `from` Hz, at 16 kHz (linear interpolation: enough for a VAD).
pub(crate) fn at_16k(samples: &[f32], from: u32) -> Vec<f32> {
    let step = f64::from(from) / 16_000.0;
    (0..(samples.len() as f64 / step) as usize)
        .map(|index| {
            let at = index as f64 * step;
            let (left, fraction) = (at.floor() as usize, (at - at.floor()) as f32);
            let next = samples.get(left + 1).copied().unwrap_or(samples[left]);
            samples[left] * (1.0 - fraction) + next * fraction
        })
        .collect()
}

/// A Wyoming service on a free port, stopped when dropped.
pub(crate) struct Service {
    child: Child,
    pub(crate) uri: String,
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

pub(crate) async fn piper() -> Service {
    let voices = models_dir().join("voices");
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
            // No generator noise: the same words are the same audio every time.
            "--noise-scale",
            "0",
            "--noise-w-scale",
            "0",
            "--data-dir",
        ])
        .arg(&voices);
    service(command).await
}

pub(crate) async fn pocketsphinx() -> Service {
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

/// What `tts` says for `text`: its format and PCM, in the chunks it came in.
pub(crate) async fn speak_all(
    tts: &dyn TextToSpeech,
    text: &str,
) -> (AudioFormat, Vec<AudioChunk>) {
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
