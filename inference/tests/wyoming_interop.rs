//! Troupe's Wyoming codec against the official Python `wyoming` library (1.10.2, from the
//! test venv): events the library writes decode to what it meant, and events Troupe writes
//! read back in the library as they were written.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Map, Value, json};
use troupe_inference::voice::wyoming::{WyomingDecoder, WyomingEvent, WyomingLimits};

fn python() -> Command {
    let mut command = Command::new(troupe_testkit::test_venv().join("bin/python"));
    command.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/wyoming_codec.py"
    ));
    command
}

fn event(kind: &str, data: Value, payload: Vec<u8>) -> WyomingEvent {
    let Value::Object(data) = data else {
        return WyomingEvent::new(kind, Map::new());
    };
    WyomingEvent::new(kind, data).with_payload(payload)
}

/// The fixtures the script writes, as Troupe should read them.
fn fixtures() -> Vec<WyomingEvent> {
    let audio: Vec<u8> = (0..2048).map(|index| (index % 256) as u8).collect();
    vec![
        event("describe", json!({}), Vec::new()),
        event(
            "audio-start",
            json!({"rate": 16000, "width": 2, "channels": 1, "timestamp": null}),
            Vec::new(),
        ),
        event(
            "audio-chunk",
            json!({"rate": 16000, "width": 2, "channels": 1, "timestamp": 0}),
            audio,
        ),
        event(
            "transcript",
            json!({"text": "what is two plus two? ünïcode ✓"}),
            Vec::new(),
        ),
        event("audio-stop", json!({"timestamp": null}), Vec::new()),
    ]
}

#[test]
fn events_the_library_writes_decode_as_it_meant_them() {
    let output = python().arg("write").output().expect("python runs");
    assert!(output.status.success(), "{output:?}");
    let mut decoder = WyomingDecoder::new(WyomingLimits::default());
    let mut decoded = Vec::new();
    for piece in output.stdout.chunks(5) {
        decoder.push(piece);
        while let Some(event) = decoder.next_event().unwrap() {
            decoded.push(event);
        }
    }
    assert_eq!(decoded, fixtures());
}

#[test]
fn events_troupe_writes_read_back_in_the_library_as_written() {
    let mut reader = python()
        .arg("read")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    let bytes: Vec<u8> = fixtures().iter().flat_map(WyomingEvent::encode).collect();
    reader
        .stdin
        .take()
        .expect("its stdin")
        .write_all(&bytes)
        .unwrap();
    let output = reader.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let read: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let expected: Vec<Value> = fixtures()
        .into_iter()
        .map(|event| {
            let hex: String = event
                .payload
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            json!({"type": event.kind, "data": event.data, "payload_hex": hex})
        })
        .collect();
    assert_eq!(read, expected);
}
