//! The WebSocket access path.

use serde_json::json;

use crate::support::{connect, echo_node, frames_until_final, next_frame, send};

#[tokio::test]
async fn hello_then_message_gets_ack_deltas_and_the_full_reply() {
    let node = echo_node("").await;
    let mut socket = connect(&node, &[]).await;
    send(&mut socket, json!({"type": "hello", "sender_id": "alice"})).await;
    send(
        &mut socket,
        json!({"type": "message", "id": "c1", "content_type": "text", "payload": "hi there"}),
    )
    .await;
    let frames = frames_until_final(&mut socket, "c1").await;
    assert_eq!(frames[0], json!({"type": "ack", "id": "c1"}));
    let deltas: String = frames
        .iter()
        .filter(|frame| frame["type"] == "delta")
        .map(|frame| frame["payload"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "hi there");
    let reply = frames.last().unwrap();
    assert_eq!(reply["type"], "reply");
    assert_eq!(reply["in_reply_to"], "c1");
    assert_eq!(reply["payload"], "hi there");
    assert_eq!(reply["content_type"], "text");
    assert!(reply["id"].as_str().unwrap().starts_with("r-"));
    assert!(reply["timestamp"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(
        crate::support::get(&node, "/api/v1/sessions/ws:alice")
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn without_hello_the_connection_gets_its_own_anonymous_sender() {
    let node = echo_node("").await;
    let mut first = connect(&node, &[]).await;
    let mut second = connect(&node, &[]).await;
    for socket in [&mut first, &mut second] {
        send(
            socket,
            json!({"type": "message", "id": "a1", "payload": "who am i"}),
        )
        .await;
        frames_until_final(socket, "a1").await;
    }
    let (_, sessions) = crate::support::get(&node, "/api/v1/sessions").await;
    let keys: Vec<&str> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|key| key.starts_with("ws:anon-")));
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_stays_open() {
    let node = echo_node("[server]\nmax_payload_bytes = 100\n").await;
    let mut socket = connect(&node, &[]).await;
    let bad_frames = [
        ("not json at all".to_owned(), "invalid_frame"),
        (
            json!({"type": "shout", "payload": "x"}).to_string(),
            "invalid_frame",
        ),
        (
            json!({"type": "message", "id": "e1", "payload": ""}).to_string(),
            "invalid_message",
        ),
        (
            json!({"type": "message", "id": "e2", "payload": "x".repeat(101)}).to_string(),
            "payload_too_large",
        ),
        (
            json!({"type": "message", "id": "e3", "content_type": "video", "payload": "x"})
                .to_string(),
            "unknown_content_type",
        ),
        (
            json!({"type": "message", "id": "e4", "content_type": "image", "payload": "x"})
                .to_string(),
            "unsupported_content_type",
        ),
        (
            json!({"type": "message", "id": "bad id", "payload": "x"}).to_string(),
            "invalid_message",
        ),
        (
            json!({"type": "message", "id": "e5", "payload": "x", "extra": 1}).to_string(),
            "invalid_frame",
        ),
        (
            json!({"type": "hello", "sender_id": "late"}).to_string(),
            "invalid_frame",
        ),
    ];
    for (text, code) in bad_frames {
        use futures_util::SinkExt;
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(text.clone()))
            .await
            .unwrap();
        let frame = next_frame(&mut socket).await.expect("still open");
        assert_eq!(frame["type"], "error", "{text}");
        assert_eq!(frame["code"], code, "{text}: {frame}");
        assert!(!frame["message"].as_str().unwrap().is_empty());
    }
    send(
        &mut socket,
        json!({"type": "message", "id": "ok", "payload": "still here"}),
    )
    .await;
    let frames = frames_until_final(&mut socket, "ok").await;
    assert_eq!(frames.last().unwrap()["payload"], "still here");
}

#[tokio::test]
async fn a_token_is_required_in_the_header_or_the_hello_frame() {
    let node = echo_node("[server]\ntoken = \"s3cret\"\n").await;

    let mut no_hello = connect(&node, &[]).await;
    send(
        &mut no_hello,
        json!({"type": "message", "id": "x", "payload": "hi"}),
    )
    .await;
    let refused = next_frame(&mut no_hello).await.unwrap();
    assert_eq!(refused["code"], "unauthorized");
    assert!(
        next_frame(&mut no_hello).await.is_none(),
        "closed after refusing"
    );

    let mut wrong = connect(&node, &[]).await;
    send(&mut wrong, json!({"type": "hello", "token": "guess"})).await;
    assert_eq!(
        next_frame(&mut wrong).await.unwrap()["code"],
        "unauthorized"
    );

    let mut by_hello = connect(&node, &[]).await;
    send(
        &mut by_hello,
        json!({"type": "hello", "sender_id": "bob", "token": "s3cret"}),
    )
    .await;
    send(
        &mut by_hello,
        json!({"type": "message", "id": "h1", "payload": "hi"}),
    )
    .await;
    assert_eq!(
        frames_until_final(&mut by_hello, "h1")
            .await
            .last()
            .unwrap()["type"],
        "reply"
    );

    let mut by_header = connect(&node, &[("authorization", "Bearer s3cret")]).await;
    send(
        &mut by_header,
        json!({"type": "message", "id": "h2", "payload": "hi"}),
    )
    .await;
    assert_eq!(
        frames_until_final(&mut by_header, "h2")
            .await
            .last()
            .unwrap()["type"],
        "reply"
    );
}

#[tokio::test]
async fn foreign_browser_origins_are_refused_before_the_upgrade() {
    let node = echo_node("[server]\nallowed_origins = [\"https://app.example\"]\n").await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = node.ws_url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let error = tokio_tungstenite::connect_async(request).await.unwrap_err();
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 403),
        other => panic!("expected a 403, got {other:?}"),
    }
    let same_origin = format!("http://{}", node.address);
    let _ = connect(&node, &[("origin", same_origin.as_str())]).await;
    let _ = connect(&node, &[("origin", "https://app.example")]).await;
}

#[tokio::test]
async fn a_client_that_floods_without_reading_is_bounded() {
    use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
    let fake = FakeLlm::start(None).await;
    fake.script(std::iter::repeat_n(FakeReply::Hang, 300));
    let config = crate::support::openai_provider(&fake.openai_base_url(), "");
    let node = troupe_testkit::process::TroupeProcess::start(crate::support::binary(), &config)
        .await
        .unwrap();
    let mut socket = connect(&node, &[]).await;
    // One conversation each: a conversation's own backlog (64) is not what this checks.
    for index in 0..257 {
        send(
            &mut socket,
            json!({"type": "message", "id": format!("f{index}"),
                   "conversation_id": format!("c{index}"), "payload": "wait"}),
        )
        .await;
    }
    // Acks go out as the messages are stored, so the refusal may come before some of them.
    let (mut acks, mut refused) = (0, false);
    while acks < 256 || !refused {
        let frame = next_frame(&mut socket).await.expect("still open");
        if frame["type"] == "ack" {
            acks += 1;
            continue;
        }
        assert!(!refused, "one refusal only: {frame}");
        assert_eq!(frame["type"], "error", "{frame}");
        assert_eq!(frame["code"], "too_many_in_flight");
        assert_eq!(frame["in_reply_to"], "f256");
        refused = true;
    }
    assert_eq!(acks, 256);
}
