//! The assistant as a peer on the canvas: a scripted model (the OpenAI double) calls the
//! `canvas` tools in a chat turn, and a Yjs client in the room sees the note appear, made
//! with the assistant's own client id and presence.

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::process::TroupeProcess;
use yrs::updates::decoder::Decode;

use crate::canvas::{Socket, read_items};
use crate::support::{binary, openai_provider, post_message};

fn call(id: &str, name: &str, arguments: &Value) -> FakeReply {
    FakeReply::ToolCalls(vec![(id.into(), name.into(), arguments.to_string())])
}

/// Reads frames until an awareness update names `name`; answers its state.
async fn presence_of(socket: &mut Socket, name: &str) -> Value {
    loop {
        let Some(Ok(Message::Binary(frame))) = socket.next().await else {
            panic!("the room closed before {name} showed up");
        };
        if let Ok(yrs::sync::Message::Awareness(update)) = yrs::sync::Message::decode_v1(&frame) {
            for entry in update.clients.values() {
                let state: Value = serde_json::from_str(&entry.json).unwrap_or(Value::Null);
                if state["user"]["name"] == name {
                    return state;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assistants_note_reaches_a_yjs_client_with_its_own_presence() {
    let fake = FakeLlm::start(None).await;
    fake.script([
        call(
            "call_1",
            "canvas__add_note",
            &json!({"room": "plan", "text": "ship on Friday", "x": 120, "y": 80}),
        ),
        call("call_2", "canvas__read", &json!({"room": "plan"})),
        FakeReply::Text(vec!["I put a note on the board.".into()]),
    ]);
    let node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .expect("troupe starts");
    let url = format!("ws://{}/yjs/plan", node.address);
    let (mut watcher, _) = tokio_tungstenite::connect_async(&url).await.unwrap();

    let (status, body) = post_message(
        &node,
        &json!({"id": "m1", "sender_id": "ada", "payload": "Add a note to the plan board"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let presence = presence_of(&mut watcher, "Assistant").await;
    assert_eq!(presence["cursor"], json!({"x": 120.0, "y": 80.0}));
    let items = read_items(&mut watcher).await;
    let notes: Vec<&Value> = items.as_object().unwrap().values().collect();
    assert_eq!(notes.len(), 1, "{items}");
    assert_eq!(notes[0]["text"], "ship on Friday");
    assert_eq!(notes[0]["author"], "assistant");

    // The model read the board back as text, the note on it.
    let requests = fake.requests();
    let last = requests.last().unwrap();
    let tool_results: Vec<&Value> = last.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == "tool")
        .collect();
    assert_eq!(tool_results.len(), 2);
    let board = tool_results[1]["content"].as_str().unwrap();
    assert!(
        board.contains("note \\\"ship on Friday\\\" at (120, 80)"),
        "{board}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_naming_a_room_is_answered_with_its_board_in_the_prompt_and_only_then() {
    let fake = FakeLlm::start(None).await;
    fake.script([
        FakeReply::Text(vec!["Two notes: ship it and test it.".into()]),
        FakeReply::Text(vec!["Hello.".into()]),
    ]);
    let node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .expect("troupe starts");
    let patch = json!({"add": [
        {"id": "n1", "type": "note", "text": "ship it", "x": 10, "y": 20},
        {"id": "n2", "type": "note", "text": "test it", "x": 200, "y": 20}
    ]});
    let patched = reqwest::Client::new()
        .patch(format!("{}/api/v1/canvas/ideas/items", node.http_url()))
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);

    let (status, body) = post_message(
        &node,
        &json!({"id": "m1", "sender_id": "ada", "payload": "What is on my board?",
                "metadata": {"canvas_room": "ideas"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_message(
        &node,
        &json!({"id": "m2", "sender_id": "ada", "payload": "And now?"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let requests = fake.requests();
    let system = |index: usize| {
        let messages = requests[index].body["messages"].as_array().unwrap().clone();
        messages
            .iter()
            .filter(|message| message["role"] == "system")
            .map(|message| message["content"].as_str().unwrap_or("").to_owned())
            .collect::<String>()
    };
    let with_board = system(0);
    assert!(
        with_board.contains("n1 note \"ship it\" at (10, 20)")
            && with_board.contains("n2 note \"test it\"")
            && with_board.contains("room \"ideas\""),
        "{with_board}"
    );
    assert!(
        !system(1).contains("ship it"),
        "the board was for that turn only"
    );
    let history = requests[1].body["messages"].to_string();
    assert!(
        !history.contains("n1 note"),
        "and is not in the history: {history}"
    );
}
