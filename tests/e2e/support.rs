//! Helpers shared by the end-to-end tests.

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use troupe_testkit::process::TroupeProcess;

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_troupe"))
}

/// An `echo` node with `extra` appended to its config.
pub(crate) async fn echo_node(extra: &str) -> TroupeProcess {
    let config = format!("[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n{extra}");
    TroupeProcess::start(binary(), &config)
        .await
        .expect("troupe starts")
}

/// A node with `config` that exports its spans to `collector` within 100 ms of their end.
pub(crate) async fn traced_node(
    config: &str,
    collector: &troupe_testkit::otlp::OtlpReceiver,
) -> TroupeProcess {
    let endpoint = collector.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    TroupeProcess::start_with_env(binary(), config, &env)
        .await
        .expect("troupe starts")
}

/// A node whose `main` provider is an OpenAI-compatible server at `base_url`.
pub(crate) fn openai_provider(base_url: &str, extra: &str) -> String {
    format!(
        "[[providers]]\nname = \"main\"\nkind = \"openai\"\nbase_url = \"{base_url}\"\nmodel = \"fake-model\"\n{extra}\n"
    )
}

pub(crate) async fn connect(process: &TroupeProcess, headers: &[(&str, &str)]) -> Socket {
    let mut request = process.ws_url().into_client_request().unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(axum_header_name(name), value.parse().unwrap());
    }
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket connects");
    socket
}

fn axum_header_name(name: &str) -> tokio_tungstenite::tungstenite::http::HeaderName {
    tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap()
}

/// A WebSocket to `process` that said `hello` as `sender`.
pub(crate) async fn connect_as(process: &TroupeProcess, sender: &str) -> Socket {
    let mut socket = connect(process, &[]).await;
    send(
        &mut socket,
        serde_json::json!({"type": "hello", "sender_id": sender}),
    )
    .await;
    socket
}

pub(crate) async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next JSON text frame; `None` when the server closed the connection.
pub(crate) async fn next_frame(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s");
        match message {
            Some(Ok(Message::Text(text))) => {
                return Some(serde_json::from_str(text.as_str()).unwrap());
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Frames until one of `kind` comes; every frame read on the way is kept.
pub(crate) async fn frame_of(socket: &mut Socket, kind: &str, seen: &mut Vec<Value>) -> Value {
    while let Some(frame) = next_frame(socket).await {
        if frame["type"] == kind {
            return frame;
        }
        seen.push(frame);
    }
    panic!("closed before a {kind} frame: {seen:?}");
}

/// Frames up to and including the reply or error for `id`.
pub(crate) async fn frames_until_final(socket: &mut Socket, id: &str) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Some(frame) = next_frame(socket).await {
        let last =
            (frame["type"] == "reply" || frame["type"] == "error") && frame["in_reply_to"] == id;
        frames.push(frame);
        if last {
            return frames;
        }
    }
    panic!("connection closed before the final frame for {id}: {frames:?}");
}

/// The Prometheus text of the node at `base_url` (no token).
pub(crate) async fn metrics_page(base_url: &str) -> String {
    http()
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The first snapshot of the dashboard's stream (`GET /api/v1/ops/stream`), asked with
/// `token` (none on a node without one).
pub(crate) async fn first_overview(node: &TroupeProcess, token: Option<&str>) -> Value {
    let mut request = http().get(format!("{}/api/v1/ops/stream", node.http_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut stream = request.send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = stream.chunk().await.unwrap().expect("a first event");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: overview\ndata: {"), "{text}");
    let data = text
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .unwrap();
    serde_json::from_str(data).unwrap()
}

/// The node's `/metrics` page, asked with the owner's `token`.
pub(crate) async fn metrics_page_as(node: &TroupeProcess, token: &str) -> String {
    http()
        .get(format!("{}/metrics", node.http_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// POST /api/v1/messages with a JSON body.
pub(crate) async fn post_message(process: &TroupeProcess, body: &Value) -> (u16, Value) {
    post_message_as(process, None, body).await
}

/// POST /api/v1/messages with a JSON body and, when given, a bearer token.
pub(crate) async fn post_message_as(
    process: &TroupeProcess,
    token: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    post_json_as(process, token, "/api/v1/messages", body).await
}

/// POST `path` with a JSON body and, when given, a bearer token; answers the status and
/// the JSON body (`Null` when the body is not JSON).
pub(crate) async fn post_json_as(
    process: &TroupeProcess,
    token: Option<&str>,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let mut request = http()
        .post(format!("{}{path}", process.http_url()))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `check` every 20 ms until it holds, for at most `limit`.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls `method path` on the node without a body; answers the status and the JSON body
/// (`Null` when the body is not JSON).
pub(crate) async fn call(
    process: &TroupeProcess,
    method: reqwest::Method,
    path: &str,
) -> (u16, Value) {
    let response = http()
        .request(method, format!("{}{path}", process.http_url()))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET path`, see [`call`].
pub(crate) async fn get(process: &TroupeProcess, path: &str) -> (u16, Value) {
    call(process, reqwest::Method::GET, path).await
}

/// GET `path` with `token` as the bearer.
pub(crate) async fn get_as(process: &TroupeProcess, token: &str, path: &str) -> (u16, Value) {
    let response = http()
        .get(format!("{}{path}", process.http_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// What each entry of a session's `history` (as the sessions API shows it) says.
pub(crate) fn said(session: &Value) -> Vec<&str> {
    session["history"]
        .as_array()
        .map(|history| {
            history
                .iter()
                .map(|entry| entry["content"].as_str().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// The first bridge's status once it is in `state` (or the last one seen after 10 s).
pub(crate) async fn bridge_status_once(process: &TroupeProcess, state: &str) -> Value {
    let mut status = Value::Null;
    for _ in 0..400 {
        status = get(process, "/api/v1/bridges").await.1["bridges"][0].clone();
        if status["state"] == state {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    status
}

/// A metric's value from the node's `/metrics` (`name` with its labels, if any).
pub(crate) async fn metric_value(node: &TroupeProcess, name: &str) -> Option<f64> {
    let page = metrics_page(&node.http_url()).await;
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

/// The node's resident memory (`VmRSS`), in KiB.
pub(crate) fn resident_kib(node: &TroupeProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid().unwrap())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
        .expect("VmRSS in /proc")
}

/// The owner's token of [`owner_and_ada_node`].
pub(crate) const OWNER_TOKEN: &str = "owner-token-0123456789";
/// Ada's own token (`[[server.tokens]]`) on [`owner_and_ada_node`].
pub(crate) const ADA_TOKEN: &str = "ada-token-0123456789ab";

/// An echo node with the owner's token and a sender, `ada`, with a token of her own.
pub(crate) async fn owner_and_ada_node() -> TroupeProcess {
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[server]\ntoken = \"{OWNER_TOKEN}\"\n\n[[server.tokens]]\nsender_id = \"ada\"\ntoken_env = \"ADA_TOKEN\"\n"
    );
    TroupeProcess::start_with_env(binary(), &config, &[("ADA_TOKEN", ADA_TOKEN)])
        .await
        .expect("troupe starts")
}

/// The models directory `./scripts/fetch-test-models` fills: ONNX Runtime and the
/// all-MiniLM-L6-v2 embedder, laid out as `[models] dir` expects.
pub(crate) fn test_models_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("TROUPE_TEST_MODELS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/models"),
        std::path::PathBuf::from,
    );
    assert!(
        dir.join("all-minilm-l6-v2/model.onnx").is_file(),
        "{} has no models: run ./scripts/fetch-test-models (./scripts/test does)",
        dir.display()
    );
    dir
}
