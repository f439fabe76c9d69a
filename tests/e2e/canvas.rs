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

pub(crate) fn yjs_dir() -> PathBuf {
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
    yjs_clients_across(&[node], room, clients, seed, ops).await
}

/// Like [`yjs_clients`], with the clients spread over `nodes` (client i on node i modulo
/// their number; the fresh reader on the first).
pub(crate) async fn yjs_clients_across(
    nodes: &[&TroupeProcess],
    room: &str,
    clients: u32,
    seed: u32,
    ops: u32,
) -> Value {
    let urls: Vec<String> = nodes
        .iter()
        .map(|node| format!("ws://{}/yjs", node.address))
        .collect();
    let urls = urls.join(",");
    let dir = yjs_dir();
    let room = room.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(dir)
            .arg("converge.mjs")
            .args([urls, room])
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

const OWNER: &str = "owner-token-0123456789abcdef";

async fn token_node() -> TroupeProcess {
    let config = format!(
        "[server]\ntoken = \"{OWNER}\"\n\n[[providers]]\nname = \"main\"\nkind = \"echo\"\n"
    );
    TroupeProcess::start(binary(), &config)
        .await
        .expect("troupe starts")
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/yjs/{room}` with a room token, or answers the HTTP status it was refused with.
async fn join_with(node: &TroupeProcess, room: &str, token: &str) -> Result<Socket, u16> {
    let url = format!("ws://{}/yjs/{room}?token={token}", node.address);
    match tokio_tungstenite::connect_async(url).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

async fn mint(node: &TroupeProcess, room: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/canvas/{room}/tokens", node.http_url()))
        .bearer_auth(OWNER)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A y-sync update frame that appends `text` to the shared text `t`.
fn text_update(client: u64, text: &str) -> Vec<u8> {
    use yrs::updates::encoder::Encode;
    use yrs::{ReadTxn, Text, Transact};
    let doc = yrs::Doc::with_client_id(client);
    let shared = doc.get_or_insert_text("t");
    shared.insert(&mut doc.transact_mut(), 0, text);
    let update = doc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update)).encode_v1()
}

/// Asks the room for its document (sync step 1) and answers it.
pub(crate) async fn read_doc(socket: &mut Socket) -> yrs::Doc {
    use yrs::updates::decoder::Decode;
    use yrs::updates::encoder::Encode;
    use yrs::{ReadTxn, Transact};
    let doc = yrs::Doc::new();
    let step1 = yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(
        doc.transact().state_vector(),
    ));
    socket
        .send(Message::binary(step1.encode_v1()))
        .await
        .unwrap();
    loop {
        let Some(Ok(Message::Binary(frame))) = socket.next().await else {
            panic!("the room did not answer");
        };
        if let Ok(yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep2(update))) =
            yrs::sync::Message::decode_v1(&frame)
        {
            doc.transact_mut()
                .apply_update(yrs::Update::decode_v1(&update).unwrap())
                .unwrap();
            return doc;
        }
    }
}

/// The room's shared text `t`.
async fn read_text(socket: &mut Socket) -> String {
    use yrs::{GetString, Transact};
    let doc = read_doc(socket).await;
    let text = doc.get_or_insert_text("t");
    text.get_string(&doc.transact())
}

/// The room's `items` map as JSON.
pub(crate) async fn read_items(socket: &mut Socket) -> Value {
    use yrs::Transact;
    use yrs::types::ToJson;
    let doc = read_doc(socket).await;
    let items = doc.get_or_insert_map("items").to_json(&doc.transact());
    serde_json::to_value(&items).unwrap()
}

/// Reads until the node closes the socket; answers the close code and reason.
async fn closed(socket: &mut Socket) -> (CloseCode, String) {
    while let Some(message) = socket.next().await {
        if let Ok(Message::Close(Some(frame))) = message {
            return (frame.code, frame.reason.to_string());
        }
    }
    panic!("the connection ended without a close frame");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_tokens_admit_browsers_read_only_or_writable_until_expiry_or_revocation() {
    let node = token_node().await;
    assert_eq!(join_with(&node, "plan", "rt_guess").await.err(), Some(401));
    assert_eq!(
        join_with(&node, "plan", OWNER).await.err(),
        Some(401),
        "the node's own token is never taken from a URL"
    );

    let (status, writer) = mint(&node, "plan", serde_json::json!({"access": "write"})).await;
    assert_eq!(status, 201, "{writer}");
    let (_, reader) = mint(&node, "plan", serde_json::json!({"access": "read"})).await;
    let writer_token = writer["token"].as_str().unwrap();
    assert_eq!(
        join_with(&node, "other-room", writer_token).await.err(),
        Some(401),
        "a token opens only its room"
    );
    let mut writing = join_with(&node, "plan", writer_token).await.unwrap();
    writing
        .send(Message::binary(text_update(1, "from the writer")))
        .await
        .unwrap();
    // One connection's frames are handled in order: the answer to this sync step follows
    // the update, so the room has it before the reader asks.
    assert_eq!(read_text(&mut writing).await, "from the writer");
    let mut reading = join_with(&node, "plan", reader["token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(read_text(&mut reading).await, "from the writer");
    reading
        .send(Message::binary(text_update(2, "from the reader")))
        .await
        .unwrap();
    let (code, reason) = closed(&mut reading).await;
    assert_eq!(code, CloseCode::Policy, "{reason}");
    assert!(reason.contains("only read"), "{reason}");

    let response = reqwest::Client::new()
        .delete(format!(
            "{}/api/v1/canvas/tokens/{}",
            node.http_url(),
            writer["id"].as_str().unwrap()
        ))
        .bearer_auth(OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let (code, reason) = closed(&mut writing).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Policy, "the room token was revoked")
    );
    assert_eq!(
        join_with(&node, "plan", writer_token).await.err(),
        Some(401)
    );

    let (_, short) = mint(
        &node,
        "plan",
        serde_json::json!({"access": "read", "ttl_secs": 1}),
    )
    .await;
    let mut expiring = join_with(&node, "plan", short["token"].as_str().unwrap())
        .await
        .unwrap();
    let (code, reason) = closed(&mut expiring).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Policy, "the room token expired")
    );

    let (status, body) = mint(
        &node,
        "plan",
        serde_json::json!({"access": "read", "ttl_secs": 0}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_ttl"))
    );
    let (status, body) = mint(&node, "plan", serde_json::json!({"access": "admin"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let (status, body) = mint(&node, "no%20spaces", serde_json::json!({"access": "read"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_room"))
    );
}

async fn rest(
    node: &TroupeProcess,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", node.http_url()))
        .bearer_auth(OWNER);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automations_patch_the_board_over_rest_and_yjs_clients_see_it() {
    use reqwest::Method;
    let node = token_node().await;
    let (status, body) = rest(
        &node,
        Method::PATCH,
        "/api/v1/canvas/ops/items",
        Some(serde_json::json!({"add": [
            {"id": "n1", "type": "note", "text": "ship it", "x": 10, "y": 20},
            {"id": "n2", "type": "note", "text": "test it"},
            {"type": "arrow", "from": "n1", "to": "n2"}
        ]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["added"].as_array().unwrap().len(), 3);
    let (status, body) = rest(
        &node,
        Method::PATCH,
        "/api/v1/canvas/ops/items",
        Some(serde_json::json!({"update": [{"id": "n2", "x": 300}], "delete": []})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (status, board) = rest(&node, Method::GET, "/api/v1/canvas/ops", None).await;
    assert_eq!(status, 200);
    assert_eq!(board["items"]["n1"]["text"], "ship it");
    assert_eq!(board["items"]["n2"]["x"].as_f64(), Some(300.0));
    assert_eq!(board["items"]["n1"]["author"], "api");

    // An unmodified Yjs client (room token, as a browser would) sees the same board.
    let (_, reader) = mint(&node, "ops", serde_json::json!({"access": "read"})).await;
    let mut socket = join_with(&node, "ops", reader["token"].as_str().unwrap())
        .await
        .unwrap();
    let items = read_items(&mut socket).await;
    assert_eq!(items, board["items"]);

    for (patch, status, code) in [
        (
            serde_json::json!({"update": [{"id": "ghost", "x": 1}]}),
            404,
            "unknown_item",
        ),
        (
            serde_json::json!({"add": [{"id": "n1", "type": "note"}]}),
            409,
            "item_exists",
        ),
        (
            serde_json::json!({"add": [{"text": "no type"}]}),
            400,
            "invalid_patch",
        ),
        (
            serde_json::json!({"add": [{"type": "note", "colour": "red"}]}),
            400,
            "invalid_json",
        ),
    ] {
        let (got, body) = rest(
            &node,
            Method::PATCH,
            "/api/v1/canvas/ops/items",
            Some(patch),
        )
        .await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }

    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", node.http_url()))
        .bearer_auth(OWNER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "troupe_canvas_updates_total 2",
        "troupe_canvas_rooms_open 1",
        "troupe_canvas_connections 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    let (status, list) = rest(&node, Method::GET, "/api/v1/canvas", None).await;
    assert_eq!(status, 200, "{list}");
    let listed = &list["rooms"][0];
    assert_eq!(list["rooms"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(
        (&listed["room"], &listed["clients"]),
        (&"ops".into(), &1.into())
    );
    assert!(listed["bytes"].as_u64().unwrap() > 0, "{list}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let updated = listed["updated_at_ms"].as_u64().unwrap();
    assert!(updated <= now_ms && updated + 60_000 > now_ms, "{list}");

    let (status, _) = rest(&node, Method::DELETE, "/api/v1/canvas/ops", None).await;
    assert_eq!(status, 204);
    let (code, reason) = closed(&mut socket).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Away, "the room was deleted")
    );
    let (_, list) = rest(&node, Method::GET, "/api/v1/canvas", None).await;
    assert_eq!(
        list["rooms"],
        serde_json::json!([]),
        "a deleted room is not listed"
    );
    let (_, board) = rest(&node, Method::GET, "/api/v1/canvas/ops", None).await;
    assert_eq!(board["items"], serde_json::json!({}));
    let (status, body) = rest(&node, Method::DELETE, "/api/v1/canvas/ops", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_room"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_mib_update_works_and_larger_ones_are_refused_with_a_reason() {
    let config =
        "[canvas]\nmax_update_bytes = 4194304\n\n[[providers]]\nname = \"main\"\nkind = \"echo\"\n";
    let node = TroupeProcess::start(binary(), config)
        .await
        .expect("troupe starts");
    let url = format!("ws://{}/yjs/big", node.address);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let two_mib = "x".repeat(2 * 1024 * 1024);
    socket
        .send(Message::binary(text_update(1, &two_mib)))
        .await
        .unwrap();
    assert_eq!(read_text(&mut socket).await.len(), two_mib.len());

    // Past the limit but within the WebSocket message cap: the room refuses the update.
    let over = "y".repeat(4 * 1024 * 1024 + 16 * 1024);
    let (mut refused, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    refused
        .send(Message::binary(text_update(2, &over)))
        .await
        .unwrap();
    let (code, reason) = closed(&mut refused).await;
    assert_eq!(code, CloseCode::Size, "{reason}");
    assert!(reason.contains("the most is 4194304"), "{reason}");
    // Far past it: the WebSocket layer refuses the message before reading it all.
    let (mut huge, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let _ = huge.send(Message::binary(vec![0u8; 6 * 1024 * 1024])).await;
    let (code, reason) = closed(&mut huge).await;
    assert_eq!(code, CloseCode::Size, "{reason}");

    // The room is unharmed.
    let (mut after, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(read_text(&mut after).await.len(), two_mib.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_sending_more_frames_a_second_than_allowed_is_closed_and_others_go_on() {
    let config = "[canvas]\nmax_updates_per_second = 20\n\n[[providers]]\nname = \"main\"\nkind = \"echo\"\n";
    let node = TroupeProcess::start(binary(), config)
        .await
        .expect("troupe starts");
    let url = format!("ws://{}/yjs/busy", node.address);
    let (mut flood, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    for step in 0..200 {
        let update = text_update(1000 + step, &format!("edit {step} "));
        if flood.send(Message::binary(update)).await.is_err() {
            break;
        }
    }
    let (code, reason) = closed(&mut flood).await;
    assert_eq!(code, CloseCode::Policy, "{reason}");
    assert!(reason.contains("max_updates_per_second"), "{reason}");

    // A second's worth at once passes, and the room holds what was accepted.
    let (mut steady, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let before = read_text(&mut steady).await;
    assert!(before.contains("edit 0 "), "{before}");
    for step in 0..10 {
        let update = text_update(2000 + step, &format!("calm {step} "));
        steady.send(Message::binary(update)).await.unwrap();
    }
    // Its frames are handled in order: the answer to its sync holds all ten.
    let after = read_text(&mut steady).await;
    assert!(
        (0..10).all(|step| after.contains(&format!("calm {step} "))),
        "{after}"
    );
}
