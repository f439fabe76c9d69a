//! Board patches against yrs documents.

use serde_json::json;

use super::*;

fn apply(doc: &Doc, update: &[u8]) {
    doc.transact_mut()
        .apply_update(Update::decode_v1(update).unwrap())
        .unwrap();
}

fn patch(value: Value) -> ItemsPatch {
    serde_json::from_value(value).unwrap()
}

#[test]
fn added_items_get_ids_and_their_author_and_reach_any_yjs_document() {
    let room = Doc::new();
    let (update, added) = patch_update(
        &room,
        Author::Assistant { client: 77 },
        &patch(json!({"add": [
            {"type": "note", "text": "plan", "x": 10, "y": 20},
            {"id": "a1", "type": "arrow", "from": "n1", "to": "n2"},
            {"id": "s1", "type": "stroke", "points": [[0, 0], [1.5, 2]]}
        ]})),
    )
    .unwrap();
    assert_eq!(added.len(), 3);
    assert_eq!(&added[1..], ["a1", "s1"]);
    apply(&room, &update);
    let items = items_json(&room);
    let note = &items[&added[0]];
    assert_eq!(note["type"], "note");
    assert_eq!(note["text"], "plan");
    assert_eq!(
        (note["x"].as_f64(), note["y"].as_f64()),
        (Some(10.0), Some(20.0))
    );
    assert_eq!(note["author"], "assistant");
    assert_eq!(items["a1"]["from"], "n1");
    assert_eq!(items["s1"]["points"], json!([[0, 0], [1.5, 2]]));
    let made_by = Update::decode_v1(&update).unwrap().state_vector();
    assert!(
        made_by.get(&yrs::ClientID::new(77)) > 0,
        "the author's own client id"
    );
}

#[test]
fn updates_and_deletes_change_only_what_they_name() {
    let room = Doc::new();
    let (update, _) = patch_update(
        &room,
        Author::Api { client: 5 },
        &patch(json!({"add": [{"id": "n1", "type": "note", "text": "a", "x": 1}, {"id": "n2", "type": "rect"}]})),
    )
    .unwrap();
    apply(&room, &update);
    let (update, added) = patch_update(
        &room,
        Author::Api { client: 5 },
        &patch(json!({"update": [{"id": "n1", "x": 99}], "delete": ["n2"]})),
    )
    .unwrap();
    assert!(added.is_empty());
    let copy = Doc::new();
    apply(
        &copy,
        &room
            .transact()
            .encode_state_as_update_v1(&StateVector::default()),
    );
    apply(&room, &update);
    apply(&copy, &update);
    let items = items_json(&room);
    assert_eq!(items, items_json(&copy));
    assert_eq!(items["n1"]["x"].as_f64(), Some(99.0));
    assert_eq!(items["n1"]["text"], "a");
    assert!(items.get("n2").is_none());
}

#[test]
fn bad_patches_are_refused_whole() {
    let room = Doc::new();
    let refused =
        |value: Value| patch_update(&room, Author::Api { client: 1 }, &patch(value)).unwrap_err();
    assert_eq!(refused(json!({})), ItemError::Empty);
    assert_eq!(
        refused(json!({"add": [{"text": "no type"}]})),
        ItemError::MissingType
    );
    assert_eq!(refused(json!({"update": [{"x": 1}]})), ItemError::MissingId);
    assert_eq!(
        refused(json!({"update": [{"id": "ghost", "x": 1}]})),
        ItemError::UnknownItem("ghost".into())
    );
    assert_eq!(
        refused(json!({"delete": ["ghost"]})),
        ItemError::UnknownItem("ghost".into())
    );
    assert_eq!(
        refused(json!({"add": [{"id": "", "type": "note"}]})),
        ItemError::BadId
    );
    let many: Vec<Value> = (0..=MAX_PATCH_ITEMS)
        .map(|_| json!({"type": "note"}))
        .collect();
    assert_eq!(refused(json!({"add": many})), ItemError::TooMany);
    assert!(serde_json::from_value::<ItemsPatch>(json!({"add": [{"type": "blob"}]})).is_err());
    assert!(
        serde_json::from_value::<ItemsPatch>(json!({"add": [{"type": "note", "size": 3}]}))
            .is_err()
    );
    let (update, _) = patch_update(
        &room,
        Author::Api { client: 1 },
        &patch(json!({"add": [{"id": "n", "type": "note"}]})),
    )
    .unwrap();
    apply(&room, &update);
    assert_eq!(
        refused(json!({"add": [{"id": "n", "type": "note"}]})),
        ItemError::Exists("n".into())
    );
    assert!(
        items_json(&room).get("n").is_some(),
        "the board is as it was"
    );
}

#[test]
fn numbers_must_be_finite() {
    let fields = ItemFields {
        item_type: Some(ItemType::Note),
        x: Some(f64::NAN),
        ..ItemFields::default()
    };
    let patch = ItemsPatch {
        add: vec![fields],
        ..ItemsPatch::default()
    };
    assert_eq!(
        patch_update(&Doc::new(), Author::Api { client: 1 }, &patch).unwrap_err(),
        ItemError::NotFinite("x")
    );
}
