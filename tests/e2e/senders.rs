//! Who may speak as whom: the access path sets the platform, a sender's own token
//! (`[[server.tokens]]`) speaks only as that sender, and the owner's token cannot claim it.

use serde_json::{Value, json};
use troupe_testkit::process::TroupeProcess;

use crate::support::{
    ADA_TOKEN, OWNER_TOKEN, connect, frames_until_final, http, next_frame, owner_and_ada_node,
    post_message_as, send,
};

const OWNER: &str = OWNER_TOKEN;
const ADA: &str = ADA_TOKEN;

async fn node() -> TroupeProcess {
    owner_and_ada_node().await
}

async fn post(node: &TroupeProcess, token: &str, body: &Value) -> (u16, Value) {
    post_message_as(node, Some(token), body).await
}

#[tokio::test]
async fn a_rest_caller_cannot_write_as_a_bridge_platform_or_as_a_sender_with_its_own_token() {
    let node = node().await;
    let (status, body) = post(
        &node,
        OWNER,
        &json!({"platform": "telegram", "sender_id": "42", "payload": "hi"}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("invalid_message")),
        "{body}"
    );
    for body in [
        json!({"sender_id": "ada", "payload": "pretending"}),
        json!({"sender_id": "mallory", "conversation_id": "ada/diary", "payload": "x"}),
    ] {
        let (status, answer) = post(&node, OWNER, &body).await;
        assert_eq!(status, 403, "{body}: {answer}");
    }
    let (status, body) = post(
        &node,
        OWNER,
        &json!({"sender_id": "carol", "payload": "hi"}),
    )
    .await;
    assert_eq!(
        status, 200,
        "the owner speaks for senders without a token: {body}"
    );
}

#[tokio::test]
async fn a_senders_token_speaks_only_as_that_sender_and_manages_nothing() {
    let node = node().await;
    let (status, body) = post(&node, ADA, &json!({"payload": "hello"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reply"]["recipient_id"], "ada");
    let (status, _) = post(
        &node,
        ADA,
        &json!({"conversation_id": "ada/work", "payload": "x"}),
    )
    .await;
    assert_eq!(status, 200, "ada/… is Ada's");
    for body in [
        json!({"sender_id": "bob", "payload": "x"}),
        json!({"conversation_id": "carol", "payload": "x"}),
    ] {
        let (status, answer) = post(&node, ADA, &body).await;
        assert_eq!(status, 403, "{body}: {answer}");
    }
    for path in ["/api/v1/sessions", "/api/v1/pairing", "/metrics"] {
        let response = http()
            .get(format!("{}{path}", node.http_url()))
            .bearer_auth(ADA)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
    let session = http()
        .get(format!("{}/api/v1/sessions/api:ada", node.http_url()))
        .bearer_auth(OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200, "the owner sees Ada's conversation");
}

#[tokio::test]
async fn a_websocket_hello_with_a_senders_token_binds_the_connection_to_that_sender() {
    let node = node().await;
    let mut socket = connect(&node, &[]).await;
    send(&mut socket, json!({"type": "hello", "token": ADA})).await;
    send(
        &mut socket,
        json!({"type": "message", "id": "w1", "payload": "hi"}),
    )
    .await;
    let reply = frames_until_final(&mut socket, "w1").await.pop().unwrap();
    assert_eq!(reply["type"], "reply", "{reply}");
    let session = http()
        .get(format!("{}/api/v1/sessions/ws:ada", node.http_url()))
        .bearer_auth(OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);

    let mut claiming = connect(&node, &[]).await;
    send(
        &mut claiming,
        json!({"type": "hello", "token": ADA, "sender_id": "bob"}),
    )
    .await;
    let refused = next_frame(&mut claiming).await.unwrap();
    assert_eq!(refused["code"], "sender_not_allowed", "{refused}");
    assert!(
        next_frame(&mut claiming).await.is_none(),
        "closed after refusing"
    );

    let mut owner = connect(&node, &[]).await;
    send(
        &mut owner,
        json!({"type": "hello", "token": OWNER, "sender_id": "ada"}),
    )
    .await;
    let refused = next_frame(&mut owner).await.unwrap();
    assert_eq!(refused["code"], "sender_not_allowed", "{refused}");
}
