//! Silero VAD (v6, from `./scripts/fetch-test-models`) on ONNX Runtime: speech Piper spoke
//! (the packaged voice, through the `piper` command of the test venv), framed by silence,
//! is found where it is; silence is not speech; and a stream measured in pieces reads as it
//! does whole.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use std::io::Write;
use troupe_actors::local_model::ModelLoader;
use troupe_actors::voice::{SpeechEdge, SpeechSegmenter, VAD_FRAME, VadState};
use troupe_inference::local::{OnnxRuntime, SileroVad};

fn models_dir() -> PathBuf {
    std::env::var_os("TROUPE_TEST_MODELS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models"),
        PathBuf::from,
    )
}

/// `text` spoken by Piper: 16-bit mono samples at the voice's 22,050 Hz.
fn spoken(text: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("speech.wav");
    let mut piper = Command::new(troupe_testkit::test_venv().join("bin/piper"))
        .arg("-m")
        .arg(models_dir().join("voices/en_US-joe-medium.onnx"))
        .arg("-f")
        .arg(&wav)
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
fn at_16k(samples: &[f32], from: u32) -> Vec<f32> {
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

#[test]
fn speech_is_found_where_it_is_and_silence_is_not_speech() {
    let runtime = OnnxRuntime::locate(None, &models_dir()).expect("ONNX Runtime is fetched");
    let mut vad = SileroVad::new(runtime, &models_dir().join("silero-vad/silero_vad.onnx"))
        .load()
        .expect("the model loads");
    let speech = at_16k(
        &spoken("What is two plus two? I would like to know."),
        22_050,
    );
    let second = vec![0.0f32; 16_000];
    let audio: Vec<f32> = [second.as_slice(), &speech, &second, &second].concat();

    let (probabilities, _) = vad.measure(VadState::default(), &audio).unwrap();
    assert_eq!(probabilities.len(), audio.len() / VAD_FRAME);
    let mut segmenter = SpeechSegmenter::new();
    let edges: Vec<SpeechEdge> = probabilities
        .iter()
        .filter_map(|probability| segmenter.push(*probability))
        .collect();
    let seconds = |frame: u64| frame as f64 * VAD_FRAME as f64 / 16_000.0;
    let speech_seconds = speech.len() as f64 / 16_000.0;
    match edges.as_slice() {
        [
            SpeechEdge::Started { frame: start },
            SpeechEdge::Ended { frame: end },
        ] => {
            assert!(
                (0.9..1.4).contains(&seconds(*start)),
                "starts at {} s",
                seconds(*start)
            );
            assert!(
                (seconds(*end) - (1.0 + speech_seconds)).abs() < 0.6,
                "ends at {} s, the speech at {} s",
                seconds(*end),
                1.0 + speech_seconds
            );
        }
        other => panic!("one utterance, not {other:?} ({probabilities:?})"),
    }

    // Measured in pieces of any size, a stream reads as it does whole.
    let mut state = VadState::default();
    let mut pieces = Vec::new();
    for piece in audio.chunks(VAD_FRAME * 7) {
        let (some, next) = vad.measure(state, piece).unwrap();
        pieces.extend(some);
        state = next;
    }
    assert_eq!(pieces.len(), probabilities.len());
    for (whole, piece) in probabilities.iter().zip(&pieces) {
        assert!((whole - piece).abs() < 1e-4, "{whole} vs {piece}");
    }

    let (silent, _) = vad
        .measure(VadState::default(), &[second.as_slice(), &second].concat())
        .unwrap();
    assert!(
        silent.iter().all(|probability| *probability < 0.2),
        "{silent:?}"
    );
}
