//! `canvas`: the assistant edits a room as a peer. Its edits carry its own Yjs client id and
//! `author: "assistant"`, and its presence (name, colour, cursor) shows in the room while it
//! works. Tools (each takes a `room`): `read` (the board as compact text), `add_note`,
//! `add_items` (shapes and arrows in one transaction), `update_item`, `delete_items` and
//! `connect` (an arrow between two items).

use serde_json::{Value, json};
use troupe_actors::skill::{Skill, SkillCall, SkillError, SkillManifest, SkillTool};

use crate::items::{ItemError, ItemFields, ItemType, ItemsPatch};
use crate::room::PatchError;
use crate::room_name::RoomName;
use crate::rooms::{Canvas, CanvasError};

/// Most items `read` lists; the rest are counted.
const MAX_LISTED: usize = 300;
/// Where notes without a position go: a grid of this many columns…
const GRID_COLUMNS: usize = 6;
/// …with cells this large.
const GRID_CELL: (f64, f64) = (220.0, 160.0);

/// The skill over this node's canvas.
pub struct CanvasSkill {
    canvas: Canvas,
}

impl CanvasSkill {
    pub const fn new(canvas: Canvas) -> Self {
        Self { canvas }
    }

    async fn patch(&self, room: &RoomName, patch: ItemsPatch) -> Result<Vec<String>, SkillError> {
        self.canvas
            .patch(room, patch, self.canvas.assistant())
            .await
            .map_err(|error| skill_error(&error))
    }

    async fn items(&self, room: &RoomName) -> Result<Value, SkillError> {
        self.canvas
            .items(room)
            .await
            .map_err(|error| skill_error(&error))
    }

    async fn run(&self, action: &str, arguments: &Value) -> Result<Value, SkillError> {
        let room = room_argument(arguments)?;
        match action {
            "read" => {
                let items = self.items(&room).await?;
                Ok(json!({"room": room, "board": describe_board(&room, &items)}))
            }
            "add_note" => {
                let mut note: ItemFields = fields(arguments, &["text", "x", "y", "color"])?;
                note.item_type = Some(ItemType::Note);
                if note.x.is_none() || note.y.is_none() {
                    let count = self
                        .items(&room)
                        .await?
                        .as_object()
                        .map_or(0, |items| items.len());
                    let (x, y) = grid_cell(count);
                    note.x = note.x.or(Some(x));
                    note.y = note.y.or(Some(y));
                }
                let added = self
                    .patch(
                        &room,
                        ItemsPatch {
                            add: vec![note],
                            ..ItemsPatch::default()
                        },
                    )
                    .await?;
                Ok(json!({"id": added.first()}))
            }
            "add_items" => {
                let items: Vec<ItemFields> = serde_json::from_value(arguments["items"].clone())
                    .map_err(|error| SkillError::invalid(format!("`items`: {error}")))?;
                let ids = self
                    .patch(
                        &room,
                        ItemsPatch {
                            add: items,
                            ..ItemsPatch::default()
                        },
                    )
                    .await?;
                Ok(json!({"ids": ids}))
            }
            "update_item" => {
                let item: ItemFields =
                    fields(arguments, &["id", "text", "x", "y", "w", "h", "color"])?;
                let id = item.id.clone();
                self.patch(
                    &room,
                    ItemsPatch {
                        update: vec![item],
                        ..ItemsPatch::default()
                    },
                )
                .await?;
                Ok(json!({"id": id}))
            }
            "delete_items" => {
                let ids: Vec<String> = serde_json::from_value(arguments["ids"].clone())
                    .map_err(|error| SkillError::invalid(format!("`ids`: {error}")))?;
                let count = ids.len();
                self.patch(
                    &room,
                    ItemsPatch {
                        delete: ids,
                        ..ItemsPatch::default()
                    },
                )
                .await?;
                Ok(json!({"deleted": count}))
            }
            "connect" => {
                let arrow = ItemFields {
                    item_type: Some(ItemType::Arrow),
                    from: Some(string_argument(arguments, "from")?),
                    to: Some(string_argument(arguments, "to")?),
                    text: arguments["label"].as_str().map(str::to_owned),
                    ..ItemFields::default()
                };
                let added = self
                    .patch(
                        &room,
                        ItemsPatch {
                            add: vec![arrow],
                            ..ItemsPatch::default()
                        },
                    )
                    .await?;
                Ok(json!({"id": added.first()}))
            }
            other => Err(SkillError::invalid(format!("no tool `{other}`"))),
        }
    }
}

fn room_argument(arguments: &Value) -> Result<RoomName, SkillError> {
    let name = string_argument(arguments, "room")?;
    RoomName::parse(&name).map_err(|error| SkillError::invalid(format!("`room`: {error}")))
}

fn string_argument(arguments: &Value, name: &str) -> Result<String, SkillError> {
    arguments[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| SkillError::invalid(format!("`{name}` must be a string")))
}

/// The named arguments, as item fields.
fn fields(arguments: &Value, names: &[&str]) -> Result<ItemFields, SkillError> {
    let picked: serde_json::Map<String, Value> = names
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), arguments.get(*name)?.clone())))
        .collect();
    serde_json::from_value(Value::Object(picked))
        .map_err(|error| SkillError::invalid(error.to_string()))
}

fn grid_cell(index: usize) -> (f64, f64) {
    let column = (index % GRID_COLUMNS) as f64;
    let row = (index / GRID_COLUMNS) as f64;
    (40.0 + column * GRID_CELL.0, 40.0 + row * GRID_CELL.1)
}

fn skill_error(error: &CanvasError) -> SkillError {
    match error {
        CanvasError::Patch(PatchError::Item(ItemError::UnknownItem(id))) => {
            SkillError::invalid(format!("the board has no item `{id}`; read it first"))
        }
        CanvasError::Patch(PatchError::Item(error)) => SkillError::invalid(error.to_string()),
        other => SkillError::failed(other.to_string()),
    }
}

/// The board as compact text for the model: one line per item, in reading order.
pub fn describe_board(room: &RoomName, items: &Value) -> String {
    let Some(items) = items.as_object() else {
        return format!("Board \"{room}\" is empty.");
    };
    if items.is_empty() {
        return format!("Board \"{room}\" is empty.");
    }
    let mut listed: Vec<(&String, &Value)> = items.iter().collect();
    let position = |item: &Value| {
        (
            item["y"].as_f64().unwrap_or(0.0),
            item["x"].as_f64().unwrap_or(0.0),
        )
    };
    listed.sort_by(|a, b| {
        position(a.1)
            .partial_cmp(&position(b.1))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.0.cmp(b.0))
    });
    let mut text = format!("Board \"{room}\": {} items.\n", items.len());
    for (id, item) in listed.iter().take(MAX_LISTED) {
        text.push_str(&describe_item(id, item));
        text.push('\n');
    }
    if listed.len() > MAX_LISTED {
        text.push_str(&format!("… and {} more.\n", listed.len() - MAX_LISTED));
    }
    text
}

fn describe_item(id: &str, item: &Value) -> String {
    let kind = item["type"].as_str().unwrap_or("item");
    let mut line = format!("{id} {kind}");
    if kind == "arrow" {
        line.push_str(&format!(
            " {} -> {}",
            item["from"].as_str().unwrap_or("?"),
            item["to"].as_str().unwrap_or("?")
        ));
    }
    if let Some(text) = item["text"].as_str().filter(|text| !text.is_empty()) {
        line.push_str(&format!(" {text:?}"));
    }
    if let (Some(x), Some(y)) = (item["x"].as_f64(), item["y"].as_f64()) {
        line.push_str(&format!(" at ({x}, {y})"));
    }
    if let (Some(w), Some(h)) = (item["w"].as_f64(), item["h"].as_f64()) {
        line.push_str(&format!(" size {w}x{h}"));
    }
    if let Some(color) = item["color"].as_str() {
        line.push_str(&format!(" {color}"));
    }
    line
}

/// The schema of an item the model may add.
fn item_schema() -> Value {
    json!({"type": "object", "properties": {
        "id": {"type": "string", "description": "optional; chosen for you if omitted"},
        "type": {"type": "string", "enum": ["note", "rect", "ellipse", "text", "arrow", "stroke", "image"]},
        "text": {"type": "string"},
        "x": {"type": "number"}, "y": {"type": "number"},
        "w": {"type": "number"}, "h": {"type": "number"},
        "color": {"type": "string", "description": "a CSS colour"},
        "from": {"type": "string", "description": "arrow: the id it starts at"},
        "to": {"type": "string", "description": "arrow: the id it points to"},
        "points": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}},
        "z": {"type": "number"}},
        "required": ["type"], "additionalProperties": false})
}

#[async_trait::async_trait]
impl Skill for CanvasSkill {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        let room = json!({"type": "string", "description": "the canvas room (board) name"});
        Ok(SkillManifest {
            name: "canvas".into(),
            description: "Read and edit a shared whiteboard (canvas room) as a collaborator."
                .into(),
            version: env!("CARGO_PKG_VERSION").into(),
            tools: vec![
                SkillTool::new(
                    "read",
                    "The board's items as text: id, type, text, position, arrows' ends.",
                    json!({"type": "object", "properties": {"room": room}, "required": ["room"], "additionalProperties": false}),
                ),
                SkillTool::new(
                    "add_note",
                    "Adds a sticky note; returns its id. Placed on a free spot if x and y are omitted.",
                    json!({"type": "object", "properties": {
                        "room": room, "text": {"type": "string"},
                        "x": {"type": "number"}, "y": {"type": "number"}, "color": {"type": "string"}},
                        "required": ["room", "text"], "additionalProperties": false}),
                ),
                SkillTool::new(
                    "add_items",
                    "Adds notes, shapes, text and arrows in one change; returns their ids in order.",
                    json!({"type": "object", "properties": {
                        "room": room, "items": {"type": "array", "items": item_schema(), "minItems": 1, "maxItems": 200}},
                        "required": ["room", "items"], "additionalProperties": false}),
                ),
                SkillTool::new(
                    "update_item",
                    "Changes an item's text, position, size or colour.",
                    json!({"type": "object", "properties": {
                        "room": room, "id": {"type": "string"}, "text": {"type": "string"},
                        "x": {"type": "number"}, "y": {"type": "number"},
                        "w": {"type": "number"}, "h": {"type": "number"}, "color": {"type": "string"}},
                        "required": ["room", "id"], "additionalProperties": false}),
                ),
                SkillTool::new(
                    "delete_items",
                    "Removes items by id.",
                    json!({"type": "object", "properties": {
                        "room": room, "ids": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 200}},
                        "required": ["room", "ids"], "additionalProperties": false}),
                ),
                SkillTool::new(
                    "connect",
                    "Draws an arrow from one item to another, with an optional label; returns its id.",
                    json!({"type": "object", "properties": {
                        "room": room, "from": {"type": "string"}, "to": {"type": "string"},
                        "label": {"type": "string"}},
                        "required": ["room", "from", "to"], "additionalProperties": false}),
                ),
            ],
            permissions: Default::default(),
        })
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        self.run(&call.action, &call.arguments).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_reads_in_order_with_arrows_and_labels() {
        let room = RoomName::parse("plan").unwrap();
        let items = json!({
            "b": {"type": "note", "text": "second", "x": 300, "y": 0},
            "a": {"type": "note", "text": "first", "x": 10, "y": 0},
            "c": {"type": "arrow", "from": "a", "to": "b", "text": "then", "y": 5}
        });
        let text = describe_board(&room, &items);
        assert_eq!(
            text,
            "Board \"plan\": 3 items.\na note \"first\" at (10, 0)\nb note \"second\" at (300, 0)\nc arrow a -> b \"then\"\n"
        );
        assert_eq!(
            describe_board(&room, &json!({})),
            "Board \"plan\" is empty."
        );
    }

    #[test]
    fn notes_without_a_position_fill_a_grid() {
        assert_eq!(grid_cell(0), (40.0, 40.0));
        assert_eq!(grid_cell(7), (260.0, 200.0));
    }
}
