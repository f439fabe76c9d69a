//! The y-sync room logic against yrs documents playing the clients.

use yrs::{GetString, Map};

use super::*;
use crate::test_edits::edit;

fn room() -> RoomState {
    RoomState::load(RoomLimits::default(), None, []).unwrap()
}

fn client_doc(client: u64) -> Doc {
    Doc::with_client_id(client)
}

fn decode(frame: &[u8]) -> Message {
    parse(frame).unwrap().remove(0)
}

fn apply_frames(doc: &Doc, frames: &[Frame]) {
    for frame in frames {
        if let Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) =
            decode(frame)
        {
            doc.transact_mut()
                .apply_update(Update::decode_v1(&update).unwrap())
                .unwrap();
        }
    }
}

fn text_of(doc: &Doc) -> String {
    let shared = doc.get_or_insert_text("t");
    shared.get_string(&doc.transact())
}

#[test]
fn a_joining_client_is_greeted_with_the_servers_state_vector() {
    let mut room = room();
    let greeting = room.join(1);
    assert_eq!(greeting.len(), 1, "no awareness states yet");
    assert!(matches!(
        decode(&greeting[0]),
        Message::Sync(SyncMessage::SyncStep1(_))
    ));
}

#[test]
fn an_update_is_applied_journaled_and_forwarded_to_the_others() {
    let mut room = room();
    room.join(1);
    room.join(2);
    let alice = client_doc(11);
    let effects = room
        .handle(1, true, &edit(&alice, "hello"), Instant::now())
        .unwrap();
    assert_eq!(effects.journal.len(), 1);
    assert!(effects.reply.is_empty() && effects.awareness.is_empty());
    let bob = client_doc(12);
    apply_frames(&bob, &[updates_frame(&effects.journal).unwrap()]);
    assert_eq!(text_of(&bob), "hello");
    assert_eq!(
        room.doc()
            .get_or_insert_text("t")
            .get_string(&room.doc().transact()),
        "hello"
    );
}

#[test]
fn sync_step_1_is_answered_with_what_the_client_lacks() {
    let mut room = room();
    room.join(1);
    let alice = client_doc(11);
    room.handle(1, true, &edit(&alice, "abc"), Instant::now())
        .unwrap();
    let bob = client_doc(12);
    let step1 = Message::Sync(SyncMessage::SyncStep1(bob.transact().state_vector())).encode_v1();
    room.join(2);
    let effects = room.handle(2, true, &step1, Instant::now()).unwrap();
    assert!(effects.journal.is_empty() && effects.awareness.is_empty());
    apply_frames(&bob, &effects.reply);
    assert_eq!(text_of(&bob), "abc");
}

#[test]
fn a_stored_room_loads_from_its_snapshot_and_journal() {
    let alice = client_doc(11);
    let mut first = room();
    let one = first
        .handle(1, true, &edit(&alice, "one "), Instant::now())
        .unwrap();
    let snapshot = first.snapshot();
    first.compacted(snapshot.len());
    let two = first
        .handle(1, true, &edit(&alice, "two"), Instant::now())
        .unwrap();
    assert_eq!(one.journal.len(), 1);
    let loaded = RoomState::load(
        RoomLimits::default(),
        Some(&snapshot),
        two.journal.iter().map(Vec::as_slice),
    )
    .unwrap();
    assert_eq!(text_of(loaded.doc()), "one two");
}

#[test]
fn a_read_only_connection_may_sync_but_not_edit() {
    let mut room = room();
    room.join(1);
    let empty = Message::Sync(SyncMessage::SyncStep2(Update::new().encode_v1())).encode_v1();
    assert!(
        room.handle(1, false, &empty, Instant::now())
            .unwrap()
            .is_empty()
    );
    let refused = room.handle(1, false, &edit(&client_doc(11), "x"), Instant::now());
    assert!(matches!(refused, Err(ProtocolError::ReadOnly)));
    assert_eq!(text_of(room.doc()), "");
}

#[test]
fn updates_and_documents_over_their_limits_are_refused_and_leave_the_room_unharmed() {
    let limits = RoomLimits {
        max_update_bytes: 64,
        max_document_bytes: 100,
    };
    let mut room = RoomState::load(limits, None, []).unwrap();
    room.join(1);
    let alice = client_doc(11);
    let big = room.handle(1, true, &edit(&alice, &"x".repeat(200)), Instant::now());
    assert!(matches!(
        big,
        Err(ProtocolError::UpdateTooLarge { limit: 64, .. })
    ));
    assert_eq!(big.unwrap_err().close_code(), 1009);
    let bob = client_doc(12);
    room.handle(1, true, &edit(&bob, "0123456789"), Instant::now())
        .unwrap();
    let mut refused = None;
    for _ in 0..10 {
        if let Err(error) = room.handle(1, true, &edit(&bob, "0123456789"), Instant::now()) {
            refused = Some(error);
            break;
        }
    }
    assert!(matches!(
        refused,
        Some(ProtocolError::DocumentTooLarge { limit: 100 })
    ));
    assert!(room.stored_bytes() <= 100);
    assert!(text_of(room.doc()).starts_with("0123456789"));
}

#[test]
fn malformed_and_unknown_frames_are_refused_with_a_close_code() {
    let mut room = room();
    room.join(1);
    for garbage in [&[][..], &[0, 9, 1][..], &[0, 2, 5, 1, 2][..]] {
        let error = room.handle(1, true, garbage, Instant::now()).unwrap_err();
        assert_eq!(error.close_code(), 1007, "{garbage:?}: {error}");
    }
    let custom = room
        .handle(1, true, &[7, 1, 0], Instant::now())
        .unwrap_err();
    assert!(matches!(custom, ProtocolError::Unsupported(7)));
}

fn awareness_frame(client: u64, clock: u32, json: &str) -> Vec<u8> {
    let mut clients = std::collections::HashMap::new();
    clients.insert(
        ClientID::new(client),
        yrs::sync::awareness::AwarenessUpdateEntry {
            clock,
            json: json.into(),
        },
    );
    Message::Awareness(AwarenessUpdate { clients }).encode_v1()
}

fn awareness_states(frame: &[u8]) -> Vec<(u64, String)> {
    let Message::Awareness(update) = decode(frame) else {
        panic!("an awareness frame");
    };
    let mut states: Vec<_> = update
        .clients
        .into_iter()
        .map(|(client, entry)| (client.get(), entry.json.to_string()))
        .collect();
    states.sort();
    states
}

#[test]
fn awareness_is_forwarded_and_a_leaving_connections_states_are_removed() {
    let mut room = room();
    room.join(1);
    room.join(2);
    let now = Instant::now();
    let effects = room
        .handle(1, true, &awareness_frame(11, 1, r#"{"user":"ada"}"#), now)
        .unwrap();
    assert_eq!(
        awareness_states(&effects.awareness[0]),
        [(11, r#"{"user":"ada"}"#.to_owned())]
    );
    let greeting = room.join(3);
    assert_eq!(
        awareness_states(&greeting[1]),
        [(11, r#"{"user":"ada"}"#.to_owned())]
    );

    let left = room.leave(1);
    assert_eq!(
        awareness_states(&left.awareness[0]),
        [(11, "null".to_owned())]
    );
    assert_eq!(room.join(4).len(), 1, "no states are left to greet with");
}

#[test]
fn awareness_not_renewed_for_thirty_seconds_is_removed() {
    let mut room = room();
    room.join(1);
    let start = Instant::now();
    room.handle(1, true, &awareness_frame(11, 1, r#"{"a":1}"#), start)
        .unwrap();
    room.handle(
        1,
        true,
        &awareness_frame(12, 1, r#"{"b":1}"#),
        start + Duration::from_secs(20),
    )
    .unwrap();
    assert!(
        room.expire_awareness(start + Duration::from_secs(29))
            .is_empty()
    );
    let expired = room.expire_awareness(start + AWARENESS_TIMEOUT);
    assert_eq!(
        awareness_states(&expired.awareness[0]),
        [(11, "null".to_owned())]
    );
    assert!(
        room.expire_awareness(start + Duration::from_secs(49))
            .is_empty()
    );
    let later = room.expire_awareness(start + Duration::from_secs(50));
    assert_eq!(
        awareness_states(&later.awareness[0]),
        [(12, "null".to_owned())]
    );
}

#[test]
fn a_map_edit_from_one_client_reaches_another_through_the_room() {
    let mut room = room();
    room.join(1);
    let alice = client_doc(11);
    let items = alice.get_or_insert_map("items");
    let before = alice.transact().state_vector();
    items.insert(&mut alice.transact_mut(), "n1", "note");
    let update = alice.transact().encode_state_as_update_v1(&before);
    let effects = room
        .handle(
            1,
            true,
            &Message::Sync(SyncMessage::Update(update)).encode_v1(),
            Instant::now(),
        )
        .unwrap();
    let bob = client_doc(12);
    apply_frames(&bob, &[updates_frame(&effects.journal).unwrap()]);
    let seen = bob.get_or_insert_map("items");
    assert_eq!(seen.len(&bob.transact()), 1);
}

#[test]
fn several_clients_updates_travel_as_one_merged_frame() {
    let mut room = room();
    room.join(1);
    room.join(2);
    let (alice, bob) = (client_doc(11), client_doc(12));
    let mut journal = Vec::new();
    for (connection, doc, text) in [(1, &alice, "ab"), (2, &bob, "cd"), (1, &alice, "ef")] {
        let effects = room
            .handle(connection, true, &edit(doc, text), Instant::now())
            .unwrap();
        journal.extend(effects.journal);
    }
    let merged = updates_frame(&journal).unwrap();
    let carol = client_doc(13);
    apply_frames(&carol, &[merged]);
    assert_eq!(text_of(&carol), text_of(&room_text(&room)));
    assert_eq!(text_of(&carol).len(), 6);
}

fn room_text(room: &RoomState) -> Doc {
    let copy = client_doc(99);
    copy.transact_mut()
        .apply_update(Update::decode_v1(&room.snapshot()).unwrap())
        .unwrap();
    copy
}

/// The update inside an update frame.
fn update_of(frame: &[u8]) -> Vec<u8> {
    match decode(frame) {
        Message::Sync(SyncMessage::Update(update)) => update,
        other => panic!("an update frame, not {other:?}"),
    }
}

fn whole_state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

#[test]
fn another_nodes_update_reaches_every_connection_and_of_its_snapshot_only_the_news() {
    let mut room = room();
    room.join(1);
    let alice = client_doc(11);
    let frames = room
        .apply_remote(update_of(&edit(&alice, "hello")), false)
        .unwrap();
    let bob = client_doc(12);
    apply_frames(&bob, &frames);
    assert_eq!(text_of(&bob), "hello");

    let nothing_new = room.apply_remote(whole_state(&alice), true).unwrap();
    assert!(nothing_new.is_empty(), "the room held all of the snapshot");
    edit(&alice, " world");
    let news = room.apply_remote(whole_state(&alice), true).unwrap();
    apply_frames(&bob, &news);
    assert_eq!(text_of(&bob), "hello world");
    assert!(room.apply_remote(vec![1, 2, 3], false).is_err());
}

#[test]
fn only_this_nodes_clients_presence_is_offered_to_other_nodes() {
    let mut room = room();
    let local = 1;
    let other_node = 1 << 63;
    room.join(local);
    room.join(other_node);
    let now = Instant::now();
    let effects = room
        .handle(
            local,
            true,
            &awareness_frame(11, 1, r#"{"user":"ada"}"#),
            now,
        )
        .unwrap();
    assert_eq!(effects.awareness.len(), 1, "ada's presence is shared");
    room.handle(
        other_node,
        false,
        &awareness_frame(12, 1, r#"{"user":"bea"}"#),
        now,
    )
    .unwrap();
    let assistant = room.set_presence(13, r#"{"user":"assistant"}"#, now);
    assert_eq!(assistant.len(), 1);

    let own = room
        .presence_except(|connection| connection >= other_node)
        .expect("states to offer");
    assert_eq!(
        awareness_states(&own),
        [
            (11, r#"{"user":"ada"}"#.to_owned()),
            (13, r#"{"user":"assistant"}"#.to_owned())
        ]
    );
    room.leave(local);
    let own = room
        .presence_except(|connection| connection >= other_node)
        .expect("the assistant stays");
    assert_eq!(
        awareness_states(&own),
        [(13, r#"{"user":"assistant"}"#.to_owned())]
    );
}
