//! The canvas with unmodified Yjs clients: npm `yjs` and `y-websocket` (tests/yjs, from its
//! lock file) editing one room of a node at once, the room surviving `kill -9`, and the
//! close reasons a bad room or frame gets.

use std::path::PathBuf;
use std::process::Command;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use troupe_testkit::process::TroupeProcess;

use crate::support::binary;

fn yjs_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/yjs");
    assert!(
        dir.join("node_modules/yjs").exists(),
        "run scripts/test-deps (npm ci in tests/yjs) first"
    );
    dir
}

/// Runs `converge.mjs` against `node`'s room: `clients` clients making `ops` seeded edits
/// (0 clients: only a fresh client reading the room). Answers what it printed.
async fn yjs_clients(node: &TroupeProcess, room: &str, clients: u32, seed: u32, ops: u32) -> Value {
    let url = format!("ws://{}/yjs", node.address);
    let dir = yjs_dir();
    let room = room.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(dir)
            .arg("converge.mjs")
            .args([url, room])
            .args([clients, seed, ops].map(|number| number.to_string()))
            .output()
    })
    .await
    .unwrap()
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the clients did not converge: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}

async fn echo_node() -> TroupeProcess {
    TroupeProcess::start(
        binary(),
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n",
    )
    .await
    .expect("troupe starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_yjs_clients_with_random_disconnects_converge_and_the_room_survives_kill_9() {
    let mut node = echo_node().await;
    let edited = yjs_clients(&node, "board", 5, 42, 300).await;
    assert_eq!(edited["converged"], true, "{edited}");
    assert!(edited["items"].as_u64().unwrap() > 10, "{edited}");

    // Every update was stored before any client saw it: a crash loses none of them.
    node.kill_hard().unwrap();
    node.restart().await.unwrap();
    let read = yjs_clients(&node, "board", 0, 0, 0).await;
    assert_eq!(read["digest"], edited["digest"]);
    let other = yjs_clients(&node, "another-room", 0, 0, 0).await;
    assert_eq!(other["items"], 0, "rooms are separate: {other}");
}

/// Connects to `/yjs/{path}` and answers the close frame the node sends first.
async fn close_of(node: &TroupeProcess, path: &str, send: Option<Message>) -> (CloseCode, String) {
    let url = format!("ws://{}/yjs/{path}", node.address);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    if let Some(message) = send {
        socket.send(message).await.unwrap();
    }
    while let Some(message) = socket.next().await {
        if let Message::Close(Some(frame)) = message.unwrap() {
            return (frame.code, frame.reason.to_string());
        }
    }
    panic!("the connection ended without a close frame");
}

#[tokio::test]
async fn bad_room_names_and_frames_are_closed_with_a_reason() {
    let node = echo_node().await;
    let (code, reason) = close_of(&node, "a%2Fb", None).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("letters, digits"), "{reason}");
    let (code, reason) = close_of(&node, &"x".repeat(129), None).await;
    assert_eq!(
        (code, reason.contains("128")),
        (CloseCode::Policy, true),
        "{reason}"
    );

    let (code, reason) = close_of(&node, "ok", Some(Message::text("hello"))).await;
    assert_eq!(code, CloseCode::Unsupported, "{reason}");
    let (code, reason) = close_of(&node, "ok", Some(Message::binary(vec![0, 9, 9]))).await;
    assert_eq!(code, CloseCode::Invalid, "{reason}");
    assert!(reason.contains("not y-sync"), "{reason}");
    // The room itself is unharmed.
    let read = yjs_clients(&node, "ok", 0, 0, 0).await;
    assert_eq!(read["converged"], true);
}
