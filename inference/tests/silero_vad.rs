//! Silero VAD (v6, from `./scripts/fetch-test-models`) on ONNX Runtime: speech Piper spoke
//! (the packaged voice, through the `piper` command of the test venv), framed by silence,
//! is found where it is; silence is not speech; and a stream measured in pieces reads as it
//! does whole.

mod voice_support;

use troupe_actors::local_model::ModelLoader;
use troupe_actors::voice::{SpeechEdge, SpeechSegmenter, VAD_FRAME, VadState};
use troupe_inference::local::{OnnxRuntime, SileroVad};
use troupe_testkit::voice::{models_dir, piper_says};
use voice_support::at_16k;

#[test]
fn speech_is_found_where_it_is_and_silence_is_not_speech() {
    let runtime = OnnxRuntime::locate(None, &models_dir()).expect("ONNX Runtime is fetched");
    let mut vad = SileroVad::new(runtime, &models_dir().join("silero-vad/silero_vad.onnx"))
        .load()
        .expect("the model loads");
    let speech = at_16k(
        &piper_says("What is two plus two? I would like to know."),
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
