//! The findings of the outside security test, each reproduced against the real binary:
//! DNS rebinding, connection and body exhaustion, plain-text errors, token guessing.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use troupe_testkit::process::TroupeProcess;

use crate::support::{echo_node, http};

const TOKEN: &str = "0123456789abcdef-hardening";

/// Sends `request` as written on a new connection and reads the answer until the server
/// closes or 10 s pass; returns the status and the JSON body.
async fn raw(node: &TroupeProcess, request: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(node.address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_answer(&mut stream).await
}

async fn read_answer(stream: &mut TcpStream) -> (u16, Value) {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
            }
            if complete(&answer) {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "an answer within 10 s");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// Whether `answer` holds a whole response with a `content-length` body.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .is_some_and(|length| body.len() >= length)
}

fn get_with_host(path: &str, host: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n")
}

#[tokio::test]
async fn a_rebound_host_name_is_refused_on_every_route_before_it_runs() {
    let node = echo_node("").await;
    let rebound = "evil.example:8787";
    let origin = "Origin: http://evil.example:8787\r\n";
    for path in [
        "/api/v1/sessions",
        "/api/v1/pairing",
        "/",
        "/rooms",
        "/app/app.js",
        "/metrics",
        "/healthz",
        "/ws",
        "/bridges/hook/webhook",
        "/no/such/route",
    ] {
        let (status, body) = raw(&node, &get_with_host(path, rebound, origin)).await;
        assert_eq!(status, 421, "{path}: {body}");
        assert_eq!(body["error"]["code"], "host_not_allowed", "{path}");
    }
    let port = node.address.port();
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let (status, _) = raw(&node, &get_with_host("/api/v1/sessions", &host, "")).await;
        assert_eq!(status, 200, "{host} names the node");
    }
    let (status, body) = raw(&node, "GET /api/v1/sessions HTTP/1.0\r\n\r\n").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (421, &json!("host_not_allowed"))
    );
}

#[tokio::test]
async fn a_loopback_node_takes_requests_only_from_its_own_page_or_listed_origins() {
    let node = echo_node("[server]\nallowed_hosts = [\"assistant.example.com\"]\n").await;
    let host = node.address.to_string();
    let own = format!("Origin: http://{host}\r\n");
    let (status, _) = raw(&node, &get_with_host("/api/v1/sessions", &host, &own)).await;
    assert_eq!(status, 200);
    for origin in ["http://evil.example", "null", "http://localhost:1"] {
        let header = format!("Origin: {origin}\r\n");
        let (status, body) = raw(&node, &get_with_host("/api/v1/sessions", &host, &header)).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &json!("origin_not_allowed")),
            "{origin}"
        );
    }
    let proxied = "Origin: https://assistant.example.com\r\n";
    let (status, _) = raw(
        &node,
        &get_with_host("/api/v1/sessions", "assistant.example.com", proxied),
    )
    .await;
    assert_eq!(status, 200, "the public name behind a proxy is allowed");
}

#[tokio::test]
async fn idle_and_anonymous_connections_cannot_lock_out_a_client_with_the_token() {
    let config = format!("[server]\ntoken = \"{TOKEN}\"\nmax_connections = 8\n");
    let node = echo_node(&config).await;
    // The pending room is 6 of 8: six connections that never send a byte fill it.
    let mut idle = Vec::new();
    for _ in 0..6 {
        idle.push(TcpStream::connect(node.address).await.unwrap());
    }
    let host = node.address.to_string();
    let anonymous = get_with_host("/healthz", &host, "Connection: close\r\n");
    let mut refused = None;
    // Up to 5 s: on a loaded machine the node may take a while to accept the six.
    for _ in 0..250 {
        // The node counts a connection once it accepted it: wait until the six are in.
        let (status, body) = raw(&node, &anonymous).await;
        if status == 503 {
            refused = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("an anonymous request in the reserved room is refused");
    assert_eq!(refused["error"]["code"], "server_busy");
    // Two clients with the token take the reserved room and stay connected. A connection
    // the node answered may hold its slot a moment after its answer (the refused anonymous
    // one above), so each tries again until it is served, which also proves that the
    // reserved room serves a client with the token.
    let mut reserved = Vec::new();
    while reserved.len() < 2 {
        reserved.push(connection_served_with_the_token(&node, &host).await);
    }
    let mut over = TcpStream::connect(node.address).await.unwrap();
    let (status, body) = read_answer(&mut over).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("server_busy"))
    );
    drop((idle, reserved, over));
    let anonymous_again = get_with_host("/healthz", &host, "Connection: close\r\n");
    let mut served = false;
    for _ in 0..100 {
        if raw(&node, &anonymous_again).await.0 == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "the pending room comes back when connections close");
}

/// A kept-alive connection on which a request with the token was served `200`, within 5 s.
async fn connection_served_with_the_token(node: &TroupeProcess, host: &str) -> TcpStream {
    let request = get_with_host(
        "/api/v1/sessions",
        host,
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    for _ in 0..250 {
        let mut stream = TcpStream::connect(node.address).await.unwrap();
        // A refused connection may already be closed: its write fails, and it is retried.
        if stream.write_all(request.as_bytes()).await.is_ok()
            && read_answer(&mut stream).await.0 == 200
        {
            return stream;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the reserved room never served a client with the token");
}

/// Waits until the server closes `stream`; answers how long that took.
async fn closed_within(stream: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection was still open after {limit:?}"),
        }
    }
}

#[tokio::test]
async fn a_trickle_of_header_bytes_or_an_idle_keep_alive_does_not_hold_a_connection() {
    let node = echo_node("[server]\nheader_timeout_secs = 1\n").await;
    let (mut reader, mut writer) = TcpStream::connect(node.address).await.unwrap().into_split();
    let trickle = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa" {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    closed_within(&mut reader, Duration::from_secs(5)).await;
    trickle.abort();

    let host = node.address.to_string();
    let mut keep_alive = TcpStream::connect(node.address).await.unwrap();
    keep_alive
        .write_all(get_with_host("/healthz", &host, "").as_bytes())
        .await
        .unwrap();
    let (status, _) = read_answer(&mut keep_alive).await;
    assert_eq!(status, 200);
    closed_within(&mut keep_alive, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_408_and_an_unknown_bridge_reads_no_body() {
    let node =
        echo_node("[server]\nheader_timeout_secs = 1\nmin_body_bytes_per_sec = 1000\n").await;
    let host = node.address.to_string();
    let mut stalled = TcpStream::connect(node.address).await.unwrap();
    let head = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"payload\":"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let (status, body) = read_answer(&mut stalled).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (408, &json!("request_timeout"))
    );

    // Only the head is sent: the 404 must come without waiting for a megabyte.
    let mut unknown = TcpStream::connect(node.address).await.unwrap();
    let head = format!(
        "POST /bridges/nope/webhook HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
    );
    unknown.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (status, body) = read_answer(&mut unknown).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_refusal_is_a_json_error_even_from_the_framework() {
    let node = echo_node("").await;
    let base = node.http_url();
    for path in ["/api/v1/pairing/%FF", "/api/v1/identities/%FF"] {
        let response = http().delete(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
    }
    let huge = json!({"code": "x".repeat(64 * 1024)});
    for path in ["/api/v1/pairing/approve", "/api/v1/identities/link"] {
        let response = http()
            .post(format!("{base}{path}"))
            .json(&huge)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "payload_too_large", "{path}");
    }
    let response = http().get(format!("{base}/ws")).send().await.unwrap();
    assert!(response.status().is_client_error());
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
}

#[tokio::test]
async fn token_guesses_are_logged_and_an_address_that_keeps_guessing_is_refused() {
    let node = echo_node(&format!("[server]\ntoken = \"{TOKEN}\"\n")).await;
    let url = format!("{}/api/v1/sessions", node.http_url());
    let mut statuses = Vec::new();
    for guess in 0..31 {
        let response = http()
            .get(&url)
            .bearer_auth(format!("guess-{guess}"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert!(
        statuses[..30].iter().all(|status| *status == 401),
        "{statuses:?}"
    );
    assert_eq!(statuses[30], 429);
    let response = http().get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(
        response.status(),
        429,
        "even the right token waits out the lockout"
    );
    assert!(response.headers().contains_key("retry-after"));
    assert!(
        node.log().contains("authentication failed"),
        "failures are logged"
    );
    assert!(
        !node.log().contains("guess-1"),
        "the guessed tokens are not"
    );
}

#[tokio::test]
async fn a_websocket_that_never_says_hello_is_closed_with_a_reason() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let config = format!("[server]\ntoken = \"{TOKEN}\"\nheader_timeout_secs = 1\n");
    let node = echo_node(&config).await;
    let mut socket = crate::support::connect(&node, &[]).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("closed within 5 s");
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert!(frame.reason.contains("hello"), "{}", frame.reason);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn the_token_never_reaches_the_log_even_at_trace_level() {
    use crate::support::{binary, connect, frames_until_final, send};
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[server]\ntoken = \"{TOKEN}\"\n"
    );
    let node = TroupeProcess::start_with_env(binary(), &config, &[("RUST_LOG", "trace")])
        .await
        .expect("troupe starts");
    let mut socket = connect(&node, &[]).await;
    send(&mut socket, json!({"type": "hello", "token": TOKEN})).await;
    send(
        &mut socket,
        json!({"type": "message", "id": "t1", "payload": "hi"}),
    )
    .await;
    frames_until_final(&mut socket, "t1").await;
    let response = http()
        .get(format!("{}/api/v1/sessions", node.http_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let log = node.log();
    assert!(log.contains("DEBUG"), "the node logs verbosely");
    assert!(!log.contains(TOKEN), "the token is in the log");
}

/// A WebSocket opened by hand, so the test can send frames no client library would.
async fn raw_websocket(node: &TroupeProcess) -> TcpStream {
    let mut stream = TcpStream::connect(node.address).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        node.address
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A client frame: `first` is FIN, RSV and opcode; the payload is masked with zeros.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![first];
    match payload.len() {
        length @ 0..=125 => frame.push(0x80 | length as u8),
        length => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// The code of the close frame the server sends, or `None` if it closed without one.
async fn close_code(stream: &mut TcpStream) -> Option<u16> {
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    let mut rest = received.as_slice();
    while rest.len() >= 2 {
        let (opcode, length) = (rest[0] & 0x0f, usize::from(rest[1] & 0x7f));
        if opcode == 0x8 && length >= 2 {
            return Some(u16::from_be_bytes([rest[2], rest[3]]));
        }
        rest = rest.get(2 + length..)?;
    }
    None
}

#[tokio::test]
async fn websocket_protocol_violations_get_a_close_code_not_a_dropped_connection() {
    let node = echo_node("[server]\nmax_payload_bytes = 1024\n").await;
    let oversized = vec![b'a'; 80 * 1024];
    let cases: [(&str, Vec<u8>, u16); 4] = [
        (
            "invalid UTF-8",
            client_frame(0x81, &[0xff, 0xfe, 0xfd]),
            1007,
        ),
        ("reserved bits", client_frame(0x81 | 0x40, b"{}"), 1002),
        ("an unknown opcode", client_frame(0x83, b"{}"), 1002),
        ("an oversized message", client_frame(0x81, &oversized), 1009),
    ];
    for (what, frame, expected) in cases {
        let mut socket = raw_websocket(&node).await;
        socket.write_all(&frame).await.unwrap();
        assert_eq!(close_code(&mut socket).await, Some(expected), "{what}");
    }
}

#[tokio::test]
async fn a_conversation_flooded_past_its_backlog_gets_busy_and_its_owner_is_still_answered() {
    use crate::support::{connect, frames_until_final, next_frame, openai_provider, send};
    let fake = troupe_testkit::fake_llm::FakeLlm::start(None).await;
    fake.set_echo_delay(Duration::from_millis(300));
    let extra = "\n[assistant]\nbacklog_per_conversation = 2\n";
    let node = TroupeProcess::start(
        crate::support::binary(),
        &openai_provider(&fake.openai_base_url(), extra),
    )
    .await
    .unwrap();
    let mut flood = connect(&node, &[]).await;
    send(&mut flood, json!({"type": "hello", "sender_id": "flooder"})).await;
    for index in 0..4 {
        let frame = json!({"type": "message", "id": format!("f{index}"),
                           "conversation_id": "shared", "payload": "x"});
        send(&mut flood, frame).await;
    }
    let mut busy = 0;
    let mut answered = 0;
    while busy + answered < 4 {
        let frame = next_frame(&mut flood).await.expect("a frame");
        match frame["type"].as_str() {
            Some("error") if frame["code"] == "busy" => busy += 1,
            Some("reply") => answered += 1,
            _ => {}
        }
    }
    assert_eq!(
        (answered, busy),
        (2, 2),
        "two wait, the rest are refused at once"
    );
    // Over REST the same refusal is a 429. Two streamed requests wait: a stream's
    // headers come once its message was accepted.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let stream = http()
            .post(format!("{}/api/v1/messages", node.http_url()))
            .header("accept", "text/event-stream")
            .json(&json!({"sender_id": "flooder", "conversation_id": "again", "payload": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        streams.push(stream);
    }
    let (status, body) = crate::support::post_message(
        &node,
        &json!({"sender_id": "flooder", "conversation_id": "again", "payload": "z"}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("busy")),
        "{body}"
    );
    for stream in streams {
        assert!(stream.text().await.unwrap().contains("event: reply"));
    }
    let (status, body) = crate::support::post_message(
        &node,
        &json!({"sender_id": "flooder", "conversation_id": "shared", "payload": "y"}),
    )
    .await;
    assert_eq!(
        status, 200,
        "once the backlog drained, it takes messages again: {body}"
    );
    let mut owner = connect(&node, &[]).await;
    send(
        &mut owner,
        json!({"type": "message", "id": "mine", "payload": "hi"}),
    )
    .await;
    let reply = frames_until_final(&mut owner, "mine").await.pop().unwrap();
    assert_eq!(reply["type"], "reply");
}

#[tokio::test]
async fn webhook_bodies_read_before_their_signature_share_a_bounded_room() {
    let config = "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[server]\nmax_webhook_bytes_in_flight = 8388608\nheader_timeout_secs = 1\n\n[[bridges]]\nname = \"hooks\"\nkind = \"webhook\"\nsecret_env = \"HOOK_SECRET\"\n";
    let node = TroupeProcess::start_with_env(
        crate::support::binary(),
        config,
        &[("HOOK_SECRET", "0123456789abcdef0123456789abcdef")],
    )
    .await
    .expect("troupe starts");
    let host = node.address.to_string();
    let head = |length: usize| {
        format!(
            "POST /bridges/hooks/webhook HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    // Six MiB announced and half sent: most of the room is taken while it stalls.
    let mut stalled = TcpStream::connect(node.address).await.unwrap();
    stalled
        .write_all(head(6 * 1024 * 1024).as_bytes())
        .await
        .unwrap();
    stalled
        .write_all(&vec![b' '; 3 * 1024 * 1024])
        .await
        .unwrap();
    // The probes below may only start once the node has taken the stalled body's room.
    let metrics_url = node.http_url();
    crate::support::eventually(Duration::from_secs(10), || async {
        crate::support::metrics_page(&metrics_url)
            .await
            .contains("troupe_webhook_body_bytes_reserved 6291456")
    })
    .await;
    let mut refused = None;
    for _ in 0..100 {
        let (status, body) = raw(&node, &head(6 * 1024 * 1024)).await;
        if status == 503 {
            refused = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("a second large body finds no room");
    assert_eq!(refused["error"]["code"], "server_busy");
    let (status, body) = raw(&node, &head(7 * 1024 * 1024)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("payload_too_large"))
    );
    drop(stalled);
    // Once the stalled body is gone, a large body finds room again: this one never comes,
    // and only a body that was being read times out.
    let mut answered = None;
    for _ in 0..100 {
        let mut never = TcpStream::connect(node.address).await.unwrap();
        never
            .write_all(head(6 * 1024 * 1024).as_bytes())
            .await
            .unwrap();
        let (status, body) = read_answer(&mut never).await;
        if status != 503 {
            answered = Some((status, body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = answered.expect("the room came back");
    assert_eq!(
        (status, &body["error"]["code"]),
        (408, &json!("request_timeout")),
        "{body}"
    );
}
