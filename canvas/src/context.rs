//! The board as a turn's context: a message whose metadata names a room (`canvas_room`,
//! which the canvas page's chat panel sends) is answered with that room's board in the
//! system prompt, read when the turn starts, so "turn these notes into a diagram" needs no
//! tool call to see the notes.

use serde_json::Value;
use troupe_actors::message::InboundMessage;
use troupe_actors::turn_context::TurnContext;

use crate::room_name::RoomName;
use crate::rooms::Canvas;
use crate::skill::describe_board;

/// The message metadata naming the room the person is looking at.
pub const CANVAS_ROOM_METADATA: &str = "canvas_room";

/// Reads the board a message names.
#[derive(Clone, Debug)]
pub struct BoardContext {
    canvas: Canvas,
}

impl BoardContext {
    pub const fn new(canvas: Canvas) -> Self {
        Self { canvas }
    }
}

#[async_trait::async_trait]
impl TurnContext for BoardContext {
    async fn context_for(&self, message: &InboundMessage) -> Option<String> {
        let name = message
            .metadata()
            .get(CANVAS_ROOM_METADATA)
            .and_then(Value::as_str)?;
        let Ok(room) = RoomName::parse(name) else {
            tracing::debug!(room = name, "a message names no valid canvas room");
            return None;
        };
        match self.canvas.items(&room).await {
            Ok(items) => Some(board_context(&room, &items)),
            Err(error) => {
                tracing::warn!(%room, %error, "the board could not be read for a turn");
                None
            }
        }
    }
}

/// What the model is told about the board.
fn board_context(room: &RoomName, items: &Value) -> String {
    format!(
        "The person is writing from the canvas board \"{room}\" and sees it as they write. \
         Item ids are in the first column. To change the board, use the canvas tools with \
         room \"{room}\".\n{}",
        describe_board(room, items)
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_context_names_the_room_and_lists_its_items() {
        let room = RoomName::parse("plans").unwrap();
        let items = json!({"n1": {"type": "note", "text": "ship it", "x": 1, "y": 2}});
        let context = board_context(&room, &items);
        assert!(context.contains("room \"plans\""), "{context}");
        assert!(
            context.contains("n1 note \"ship it\" at (1, 2)"),
            "{context}"
        );
    }
}
