//! Real voice components for the tests, each on a free port and stopped when dropped:
//! speech spoken by Piper (the packaged voice, through the `piper` command of the test
//! venv), `wyoming-piper` serving that voice, the pocketsphinx speech-to-text server of
//! `tests/voice/wyoming_pocketsphinx.py` (the official `wyoming` library around PyPI
//! pocketsphinx), and an unmodified `wyoming-satellite` whose microphone plays a WAV file
//! and whose speaker writes to a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/fetch-test-models` put the test models: `TROUPE_TEST_MODELS`, else the
/// repository's `.cache/models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("TROUPE_TEST_MODELS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models"),
        PathBuf::from,
    )
}

/// The venv `wyoming-satellite` is installed in: it pins an older `wyoming` than the test
/// venv's, so it has its own (`.venv-satellite` beside the test venv).
pub fn satellite_venv() -> PathBuf {
    crate::test_venv().with_file_name(".venv-satellite")
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Writes `text` spoken by Piper to `wav` (mono 16-bit at the voice's 22,050 Hz), without
/// generator noise so that the same words are the same audio every time.
pub fn piper_to_wav(text: &str, wav: &Path) {
    let mut piper = Command::new(crate::test_venv().join("bin/piper"))
        .arg("-m")
        .arg(models_dir().join("voices/en_US-joe-medium.onnx"))
        .arg("-f")
        .arg(wav)
        .args(["--noise-scale", "0", "--noise-w-scale", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("piper runs (scripts/test-deps installs it)");
    piper
        .stdin
        .take()
        .expect("piper's stdin")
        .write_all(text.as_bytes())
        .expect("piper reads the text");
    assert!(piper.wait().expect("piper ends").success(), "piper spoke");
}

/// `wav` as a voice note: Ogg Opus, as Telegram's apps record them, made by Debian's
/// `opusenc` (`opus-tools`, which `scripts/test-deps` installs).
pub fn ogg_opus(wav: &Path) -> Vec<u8> {
    let ogg = wav.with_extension("ogg");
    let status = Command::new("opusenc")
        .args(["--quiet", "--bitrate", "24"])
        .arg(wav)
        .arg(&ogg)
        .status()
        .expect("opusenc runs (scripts/test-deps installs opus-tools)");
    assert!(status.success(), "opusenc encoded {}", wav.display());
    std::fs::read(&ogg).expect("the voice note")
}

/// Writes `length` of silence to `wav` (16 kHz mono 16-bit).
pub fn silent_wav(wav: &Path, length: Duration) {
    const RATE: u32 = 16_000;
    let samples = (length.as_secs_f64() * f64::from(RATE)) as u32;
    let data = samples * 2;
    let mut bytes = Vec::with_capacity(44 + data as usize);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&RATE.to_le_bytes());
    bytes.extend_from_slice(&(RATE * 2).to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data.to_le_bytes());
    bytes.resize(44 + data as usize, 0);
    std::fs::write(wav, bytes).expect("a silent WAV is written");
}

/// `text` spoken by Piper: samples at the voice's 22,050 Hz, from -1 to 1.
pub fn piper_says(text: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let wav = dir.path().join("speech.wav");
    piper_to_wav(text, &wav);
    let bytes = std::fs::read(&wav).expect("piper's WAV");
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

/// A Wyoming server (a service or a satellite) on a free port, stopped when dropped.
pub struct WyomingServer {
    child: Child,
    pub uri: String,
}

impl Drop for WyomingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` with `--uri tcp://127.0.0.1:PORT` and waits until it listens.
async fn listening(command: Command) -> WyomingServer {
    listening_on(crate::free_port(), command).await
}

async fn listening_on(port: u16, mut command: Command) -> WyomingServer {
    let uri = format!("tcp://127.0.0.1:{port}");
    let child = command
        .args(["--uri", &uri])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the Wyoming server starts (scripts/test-deps installs it)");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the Wyoming server listens"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    WyomingServer { child, uri }
}

/// `wyoming-piper` serving the packaged voice (`en_US-joe-medium`).
pub async fn piper() -> WyomingServer {
    let voices = models_dir().join("voices");
    assert!(
        voices.join("en_US-joe-medium.onnx").is_file(),
        "{} has no voice: run ./scripts/fetch-test-models (./scripts/test does)",
        voices.display()
    );
    let mut command = Command::new(crate::test_venv().join("bin/wyoming-piper"));
    command
        .args([
            "--voice",
            "en_US-joe-medium",
            "--local-files-only",
            "--noise-scale",
            "0",
            "--noise-w-scale",
            "0",
            "--data-dir",
        ])
        .arg(&voices);
    listening(command).await
}

/// The tests' Wyoming speech-to-text server: PyPI pocketsphinx, streaming.
pub async fn pocketsphinx() -> WyomingServer {
    let mut command = Command::new(crate::test_venv().join("bin/python"));
    command
        .args(["-W", "ignore"])
        .arg(repository().join("tests/voice/wyoming_pocketsphinx.py"));
    listening(command).await
}

/// An unmodified `wyoming-satellite` whose microphone plays `speech` (a mono 16-bit WAV)
/// at real time after a second of silence, then silence, and whose speaker appends what
/// it plays to `speaker` (raw 22,050 Hz mono PCM16).
pub async fn satellite(name: &str, speech: &Path, speaker: &Path) -> WyomingServer {
    satellite_on(crate::free_port(), name, speech, speaker, &[]).await
}

/// [`satellite`] whose microphone stays silent until `gate` exists (see
/// [`open_gate`]): the question is asked only once the node listens.
pub async fn gated_satellite(
    name: &str,
    speech: &Path,
    speaker: &Path,
    gate: &Path,
    extra: &[&str],
) -> WyomingServer {
    satellite_with(crate::free_port(), name, speech, speaker, extra, Some(gate)).await
}

/// Opens a [`gated_satellite`]'s microphone.
pub fn open_gate(gate: &Path) {
    std::fs::write(gate, b"go").expect("the microphone's gate opens");
}

/// [`satellite`] on `port` (to bring one back where it was), with `extra` arguments.
pub async fn satellite_on(
    port: u16,
    name: &str,
    speech: &Path,
    speaker: &Path,
    extra: &[&str],
) -> WyomingServer {
    satellite_with(port, name, speech, speaker, extra, None).await
}

async fn satellite_with(
    port: u16,
    name: &str,
    speech: &Path,
    speaker: &Path,
    extra: &[&str],
    gate: Option<&Path>,
) -> WyomingServer {
    let venv = satellite_venv();
    let mic = format!(
        "{} {} {}",
        crate::test_venv().join("bin/python").display(),
        repository().join("tests/voice/paced_mic.py").display(),
        speech.display()
    );
    let snd = format!("sh -c 'cat >> {}'", speaker.display());
    // Its `wyoming-satellite` script names an entry point the package lacks: run the module.
    let mut command = Command::new(venv.join("bin/python"));
    command
        .args(["-m", "wyoming_satellite", "--name", name, "--no-zeroconf"])
        .args(["--mic-command", &mic])
        .args(["--snd-command", &snd])
        .args(extra);
    if let Some(gate) = gate {
        command.env("TROUPE_MIC_GATE", gate);
    }
    listening_on(port, command).await
}

/// `samples` (at `rate`, from -1 to 1) as 16 kHz mono PCM16, as a web page's microphone
/// sends them (linear interpolation: plenty for speech to text).
pub fn pcm16_at_16k(samples: &[f32], rate: u32) -> Vec<u8> {
    let step = f64::from(rate) / 16_000.0;
    let count = (samples.len() as f64 / step) as usize;
    (0..count)
        .flat_map(|index| {
            let at = index as f64 * step;
            let before = at.floor() as usize;
            let after = (before + 1).min(samples.len() - 1);
            let weight = (at - before as f64) as f32;
            let sample = samples[before] * (1.0 - weight) + samples[after] * weight;
            ((sample.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes()
        })
        .collect()
}
