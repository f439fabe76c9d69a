//! Voice notes in Ogg Opus (made by Debian's `opusenc` from Piper's speech, as messaging
//! apps record them) decode to the speech they hold: as long as it, and the same audio as
//! the reference decoder (`opusdec`) gives. Damaged, cut-off and over-long recordings are
//! refused by kind, and decoding stops at the limit instead of holding it all.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use troupe_inference::voice::{MAX_VOICE_NOTE_SECONDS, VoiceNoteError, decode_ogg_opus};
use troupe_testkit::voice::{ogg_opus, piper_to_wav, silent_wav};

fn samples_of(wav: &Path) -> (u32, Vec<i16>) {
    let bytes = std::fs::read(wav).unwrap();
    let rate = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    let samples = bytes[44..]
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    (rate, samples)
}

/// The best normalised correlation of `ours` with `theirs` over small shifts (the two
/// decoders' resamplers delay the audio differently).
fn correlation(ours: &[i16], theirs: &[i16]) -> f64 {
    (-50i64..=50)
        .map(|lag| {
            let (mut dot, mut a, mut b) = (0f64, 0f64, 0f64);
            for (index, &sample) in ours.iter().enumerate() {
                let Some(&other) = usize::try_from(index as i64 + lag)
                    .ok()
                    .and_then(|at| theirs.get(at))
                else {
                    continue;
                };
                let (x, y) = (f64::from(sample), f64::from(other));
                dot += x * y;
                a += x * x;
                b += y * y;
            }
            dot / (a.sqrt() * b.sqrt()).max(f64::MIN_POSITIVE)
        })
        .fold(f64::MIN, f64::max)
}

#[test]
fn a_voice_note_decodes_to_the_speech_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("note.wav");
    piper_to_wav("What is two plus two?", &wav);
    let note = ogg_opus(&wav);
    let decoded = decode_ogg_opus(&note).unwrap();

    let (rate, spoken) = samples_of(&wav);
    let spoken_seconds = spoken.len() as f64 / f64::from(rate);
    let decoded_seconds = decoded.len() as f64 / 16_000.0;
    assert!(
        (decoded_seconds - spoken_seconds).abs() < 0.02,
        "{decoded_seconds:.3} s decoded of {spoken_seconds:.3} s spoken"
    );

    let reference = dir.path().join("reference.wav");
    let status = Command::new("opusdec")
        .args(["--quiet", "--rate", "16000"])
        .arg(dir.path().join("note.ogg"))
        .arg(&reference)
        .status()
        .expect("opusdec runs (opus-tools)");
    assert!(status.success());
    let (_, theirs) = samples_of(&reference);
    let similar = correlation(&decoded, &theirs);
    assert!(similar > 0.95, "correlation with opusdec {similar:.3}");
}

#[test]
fn damaged_and_cut_off_voice_notes_are_refused_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("note.wav");
    piper_to_wav("Two plus two is four.", &wav);
    let note = ogg_opus(&wav);

    let cut = decode_ogg_opus(&note[..note.len() * 2 / 3]);
    assert!(matches!(cut, Err(VoiceNoteError::Truncated)), "{cut:?}");

    let mut damaged = note;
    let middle = damaged.len() / 2;
    for byte in &mut damaged[middle..middle + 64] {
        *byte ^= 0x5a;
    }
    let refused = decode_ogg_opus(&damaged).unwrap_err();
    assert!(!refused.to_string().is_empty());

    let mut wave = std::fs::read(&wav).unwrap();
    wave.truncate(1000);
    assert!(matches!(
        decode_ogg_opus(&wave),
        Err(VoiceNoteError::NotOgg(_))
    ));
}

#[test]
fn a_recording_longer_than_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("long.wav");
    silent_wav(&wav, Duration::from_secs(MAX_VOICE_NOTE_SECONDS + 60));
    let note = ogg_opus(&wav);
    assert!(matches!(
        decode_ogg_opus(&note),
        Err(VoiceNoteError::TooLong)
    ));
}

#[test]
fn a_spoken_reply_encodes_to_a_voice_note_that_opusdec_and_troupe_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("reply.wav");
    piper_to_wav("Two plus two is four.", &wav);
    let (rate, spoken) = samples_of(&wav);
    let note = troupe_inference::voice::encode_ogg_opus(&spoken, rate).unwrap();
    assert_eq!(&note[..4], b"OggS");

    let decoded = decode_ogg_opus(&note).unwrap();
    let seconds = spoken.len() as f64 / f64::from(rate);
    let decoded_seconds = decoded.len() as f64 / 16_000.0;
    assert!(
        (decoded_seconds - seconds).abs() < 0.03,
        "{decoded_seconds:.3} s back of {seconds:.3} s"
    );

    let file = dir.path().join("reply.ogg");
    std::fs::write(&file, &note).unwrap();
    let reference = dir.path().join("back.wav");
    let status = Command::new("opusdec")
        .args(["--quiet", "--rate", "16000"])
        .arg(&file)
        .arg(&reference)
        .status()
        .unwrap();
    assert!(status.success(), "opusdec reads the voice note");
    let (_, theirs) = samples_of(&reference);
    let similar = correlation(&decoded, &theirs);
    assert!(similar > 0.95, "correlation with opusdec {similar:.3}");
}
