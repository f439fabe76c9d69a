//! Recordings that are not Ogg Opus, as platforms send them (made from Piper's "What is two
//! plus two?" by `scripts/fixtures/voice_recordings.py`): Opus in WebM (Slack's audio clips,
//! browsers), AAC in MP4 (phones' voice memos) and MP3. Each decodes to speech as long as
//! Piper's, at a rate speech to text is told, and is heard as the question by the tests'
//! pocketsphinx Wyoming server; cut-off and damaged files are refused, never a panic.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use troupe_actors::voice::VoiceNoteReader;
use troupe_inference::voice::{VoiceNoteError, VoiceNotes, WyomingStt, decode_recording};
use troupe_testkit::voice::{piper_says, pocketsphinx};

fn recording(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// (file, the rate it decodes at)
const RECORDINGS: [(&str, u32); 3] = [
    ("two_plus_two.webm", 16_000),
    ("two_plus_two.m4a", 44_100),
    ("two_plus_two.mp3", 22_050),
];

#[test]
fn each_kind_decodes_to_speech_as_long_as_what_was_said() {
    let said = piper_says("What is two plus two?").len() as f64 / 22_050.0;
    for (name, rate) in RECORDINGS {
        let decoded = decode_recording(recording(name)).unwrap();
        assert_eq!(decoded.rate, rate, "{name}");
        let seconds = decoded.samples.len() as f64 / f64::from(decoded.rate);
        // Encoders pad the start (AAC's priming, MP3's delay) by tens of milliseconds.
        assert!(
            (seconds - said).abs() < 0.15,
            "{name}: {seconds:.3} s decoded of {said:.3} s said"
        );
        let loud = decoded.samples.iter().map(|s| i32::from(*s).abs()).max();
        assert!(loud > Some(3_000), "{name} holds speech, not silence");
    }
}

#[test]
fn cut_off_and_damaged_recordings_are_refused_or_shorter_never_a_panic() {
    for (name, _) in RECORDINGS {
        let whole = recording(name);
        let cut = &whole[..whole.len() / 3];
        if let Ok(decoded) = decode_recording(cut) {
            let full = decode_recording(whole.as_slice()).unwrap();
            assert!(
                decoded.samples.len() < full.samples.len(),
                "{name} cut is shorter"
            );
        }
        let mut damaged = whole.clone();
        for byte in damaged.iter_mut().skip(whole.len() / 2).take(400) {
            *byte = byte.wrapping_mul(31).wrapping_add(7);
        }
        let _ = decode_recording(damaged);
    }
    // A container without a decodable track, and bytes that are no container.
    assert!(matches!(
        decode_recording(&recording("two_plus_two.m4a")[..64]),
        Err(VoiceNoteError::Unrecognised(_)
            | VoiceNoteError::DamagedStream(_)
            | VoiceNoteError::Empty)
    ));
}

#[tokio::test]
async fn each_kind_is_heard_as_the_question_it_holds() {
    let stt = pocketsphinx().await;
    let recogniser = WyomingStt::new(
        "pocketsphinx",
        &stt.uri,
        Some("en"),
        Duration::from_secs(30),
    )
    .unwrap();
    let notes = VoiceNotes::new(Arc::new(recogniser));
    for (name, _) in RECORDINGS {
        let heard = notes.transcribe(recording(name), None).await.unwrap();
        assert_eq!(heard, "what is two plus two", "{name}");
    }
}
