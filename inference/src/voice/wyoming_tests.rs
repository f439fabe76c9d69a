//! The Wyoming codec on its own: round trips in any chunking, both header forms, and clear
//! errors for what a peer may send wrong. Interop with the official Python library is in
//! `inference/tests/wyoming_interop.rs`.

use serde_json::json;

use super::*;

fn data(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn events() -> Vec<WyomingEvent> {
    vec![
        WyomingEvent::new("describe", Map::new()),
        WyomingEvent::new(
            "audio-start",
            data(json!({"rate": 16000, "width": 2, "channels": 1})),
        ),
        WyomingEvent::new(
            "audio-chunk",
            data(json!({"rate": 16000, "width": 2, "channels": 1, "timestamp": 0})),
        )
        .with_payload((0..=255u8).cycle().take(2048).collect()),
        WyomingEvent::new(
            "transcript",
            data(json!({"text": "what is two plus two? ünïcode ✓"})),
        ),
        WyomingEvent::new("audio-stop", Map::new()),
    ]
}

fn decode_all(bytes: &[u8], chunk: usize) -> Vec<WyomingEvent> {
    let mut decoder = WyomingDecoder::new(WyomingLimits::default());
    let mut decoded = Vec::new();
    for piece in bytes.chunks(chunk) {
        decoder.push(piece);
        while let Some(event) = decoder.next_event().unwrap() {
            decoded.push(event);
        }
    }
    decoded
}

#[test]
fn events_round_trip_in_any_chunking() {
    let bytes: Vec<u8> = events().iter().flat_map(WyomingEvent::encode).collect();
    for chunk in [1, 2, 7, 64, 1000, bytes.len()] {
        assert_eq!(decode_all(&bytes, chunk), events(), "chunks of {chunk}");
    }
}

#[test]
fn data_in_the_header_and_after_it_are_merged() {
    let body = br#"{"text": "after", "extra": 1}"#;
    let header = format!(
        "{{\"type\": \"transcript\", \"data\": {{\"text\": \"inline\", \"language\": \"en\"}}, \"data_length\": {}}}\n",
        body.len()
    );
    let mut bytes = header.into_bytes();
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(b"{\"type\": \"ping\", \"data\": {\"text\": \"x\"}}\n");
    let decoded = decode_all(&bytes, 3);
    assert_eq!(
        decoded[0].data,
        data(json!({"text": "after", "language": "en", "extra": 1}))
    );
    assert_eq!(decoded[1].kind, "ping");
    assert_eq!(decoded[1].data, data(json!({"text": "x"})));
}

fn first_error(bytes: &[u8], limits: WyomingLimits) -> WyomingError {
    let mut decoder = WyomingDecoder::new(limits);
    decoder.push(bytes);
    loop {
        match decoder.next_event() {
            Err(error) => return error,
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error for {:?}", String::from_utf8_lossy(bytes)),
        }
    }
}

#[test]
fn what_a_peer_sends_wrong_gets_a_clear_error() {
    let limits = WyomingLimits {
        max_header_bytes: 128,
        max_data_bytes: 64,
        max_payload_bytes: 1024,
    };
    assert!(matches!(
        first_error(b"not json\n", limits),
        WyomingError::BadHeader(_)
    ));
    assert!(matches!(
        first_error(b"[1, 2]\n", limits),
        WyomingError::NoType
    ));
    assert!(matches!(
        first_error(b"{\"data\": {}}\n", limits),
        WyomingError::NoType
    ));
    assert!(matches!(
        first_error(b"{\"type\": \"x\", \"data\": 3}\n", limits),
        WyomingError::DataNotAnObject
    ));
    assert!(matches!(
        first_error(b"{\"type\": \"x\", \"payload_length\": -1}\n", limits),
        WyomingError::BadLength {
            field: "payload_length"
        }
    ));
    assert!(matches!(
        first_error(b"{\"type\": \"x\", \"payload_length\": 4096}\n", limits),
        WyomingError::TooLarge {
            part: "payload",
            length: 4096,
            limit: 1024
        }
    ));
    assert!(matches!(
        first_error(b"{\"type\": \"x\", \"data_length\": 3}\nabc", limits),
        WyomingError::BadData(_)
    ));
    let endless = vec![b'{'; 200];
    assert!(matches!(
        first_error(&endless, limits),
        WyomingError::HeaderTooLong { limit: 128 }
    ));
}
