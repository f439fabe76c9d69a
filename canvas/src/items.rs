//! The board's data model (docs/canvas.md): a `Y.Map` named `items` holds item id → `Y.Map`
//! with `type`, `text`, `x`, `y`, `w`, `h`, `color`, `from`/`to` (arrows), `points`
//! (strokes), `author` and `z`. Any Yjs program can read and write a board in it.
//!
//! Here: reading the items as JSON, and turning a JSON patch (add, update, delete) into one
//! Yjs update made by an author with a client id of its own, which the room then applies,
//! journals and sends on like any client's.

use serde::{Deserialize, Serialize};
use serde_json::{Map as JsonMap, Value};
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::{Any, Doc, Map, MapPrelim, MapRef, Out, ReadTxn, StateVector, Transact, Update};

/// Who makes an edit the node applies itself, with the Yjs client id it edits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Author {
    /// A REST patch.
    Api { client: u64 },
    /// The assistant, a peer with a presence of its own.
    Assistant { client: u64 },
}

impl Author {
    /// The name stamped on the items it touches.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Api { .. } => "api",
            Self::Assistant { .. } => "assistant",
        }
    }

    pub const fn client(self) -> u64 {
        match self {
            Self::Api { client } | Self::Assistant { client } => client,
        }
    }
}

/// The root map that holds the board.
pub const ITEMS: &str = "items";
/// Most items one patch may touch.
pub const MAX_PATCH_ITEMS: usize = 1000;

/// What an item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemType {
    Note,
    Rect,
    Ellipse,
    Text,
    Arrow,
    Stroke,
    Image,
}

/// An item's fields as JSON gives them; absent fields are left as they are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemFields {
    /// Required to update; chosen by the node when an added item has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub item_type: Option<ItemType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// A stroke's points, `[[x, y], …]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<Vec<[f64; 2]>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
}

/// Changes to a board, applied as one transaction.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemsPatch {
    #[serde(default)]
    pub add: Vec<ItemFields>,
    #[serde(default)]
    pub update: Vec<ItemFields>,
    #[serde(default)]
    pub delete: Vec<String>,
}

/// Why a patch was refused; nothing of it was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("the patch changes nothing")]
    Empty,
    #[error("a patch touches at most {MAX_PATCH_ITEMS} items")]
    TooMany,
    #[error("an added item needs a `type`")]
    MissingType,
    #[error("an updated item needs its `id`")]
    MissingId,
    #[error("an item id is 1–128 characters")]
    BadId,
    #[error("the board has no item `{0}`")]
    UnknownItem(String),
    #[error("an item `{0}` exists already")]
    Exists(String),
    #[error("`{0}` must be a finite number")]
    NotFinite(&'static str),
}

/// Every item of the board in `doc`, as JSON: `{id: {field: value}}`.
pub fn items_json(doc: &Doc) -> Value {
    let items = doc.get_or_insert_map(ITEMS);
    let any = items.to_json(&doc.transact());
    serde_json::to_value(&any).unwrap_or_else(|_| Value::Object(JsonMap::new()))
}

/// The fields of `fields` that are set, as `(key, value)`; `author` is stamped on.
fn field_values(fields: &ItemFields, author: &str) -> Result<Vec<(&'static str, Any)>, ItemError> {
    let mut values: Vec<(&'static str, Any)> = Vec::new();
    if let Some(item_type) = fields.item_type {
        let name = serde_json::to_value(item_type)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        values.push(("type", Any::from(name)));
    }
    for (key, text) in [
        ("text", &fields.text),
        ("color", &fields.color),
        ("from", &fields.from),
        ("to", &fields.to),
    ] {
        if let Some(text) = text {
            values.push((key, Any::from(text.as_str())));
        }
    }
    for (key, number) in [
        ("x", fields.x),
        ("y", fields.y),
        ("w", fields.w),
        ("h", fields.h),
        ("z", fields.z),
    ] {
        if let Some(number) = number {
            if !number.is_finite() {
                return Err(ItemError::NotFinite(key));
            }
            values.push((key, Any::from(number)));
        }
    }
    if let Some(points) = &fields.points {
        if points.iter().flatten().any(|number| !number.is_finite()) {
            return Err(ItemError::NotFinite("points"));
        }
        let points: Vec<Any> = points
            .iter()
            .map(|[x, y]| Any::from(vec![Any::from(*x), Any::from(*y)]))
            .collect();
        values.push(("points", Any::from(points)));
    }
    values.push(("author", Any::from(author)));
    Ok(values)
}

fn checked_id(id: &str) -> Result<&str, ItemError> {
    if id.is_empty() || id.chars().count() > 128 {
        return Err(ItemError::BadId);
    }
    Ok(id)
}

fn new_id() -> String {
    format!("i{:016x}", rand::random::<u64>())
}

/// The update that applies `patch` to the board in `room`, made by a document with the
/// author's own client id; and the ids of the added items.
pub fn patch_update(
    room: &Doc,
    author: Author,
    patch: &ItemsPatch,
) -> Result<(Vec<u8>, Vec<String>), ItemError> {
    let client = author.client();
    let author = author.name();
    let touched = patch.add.len() + patch.update.len() + patch.delete.len();
    if touched == 0 {
        return Err(ItemError::Empty);
    }
    if touched > MAX_PATCH_ITEMS {
        return Err(ItemError::TooMany);
    }
    let (state, room_state) = {
        let transaction = room.transact();
        (
            transaction.encode_state_as_update_v1(&StateVector::default()),
            transaction.state_vector(),
        )
    };
    let editor = Doc::with_client_id(client);
    let items = editor.get_or_insert_map(ITEMS);
    let mut added = Vec::with_capacity(patch.add.len());
    {
        let mut transaction = editor.transact_mut();
        if let Ok(update) = Update::decode_v1(&state) {
            // The room's own state decodes; applying it to an empty document cannot fail
            // for want of anything.
            let _ = transaction.apply_update(update);
        }
        for fields in &patch.add {
            let item_type = fields.item_type.ok_or(ItemError::MissingType)?;
            let id = match &fields.id {
                Some(id) => checked_id(id)?.to_owned(),
                None => new_id(),
            };
            if items.contains_key(&transaction, &id) {
                return Err(ItemError::Exists(id));
            }
            let values = field_values(fields, author)?;
            debug_assert!(
                values.iter().any(|(key, _)| *key == "type"),
                "{item_type:?}"
            );
            items.insert(&mut transaction, id.as_str(), MapPrelim::from_iter(values));
            added.push(id);
        }
        for fields in &patch.update {
            let id = checked_id(fields.id.as_deref().ok_or(ItemError::MissingId)?)?;
            let Some(Out::YMap(item)) = items.get(&transaction, id) else {
                return Err(ItemError::UnknownItem(id.to_owned()));
            };
            set_fields(&item, &mut transaction, field_values(fields, author)?);
        }
        for id in &patch.delete {
            if items.remove(&mut transaction, id.as_str()).is_none() {
                return Err(ItemError::UnknownItem(id.clone()));
            }
        }
    }
    let update = editor.transact().encode_state_as_update_v1(&room_state);
    Ok((update, added))
}

fn set_fields(
    item: &MapRef,
    transaction: &mut yrs::TransactionMut<'_>,
    values: Vec<(&'static str, Any)>,
) {
    for (key, value) in values {
        item.insert(transaction, key, value);
    }
}

#[cfg(test)]
#[path = "items_tests.rs"]
mod tests;
