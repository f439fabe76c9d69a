//! Conversations survive restarts, `kill -9` and passivation; SIGTERM finishes in-flight
//! replies and exits 0.

use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::process::TroupeProcess;

use crate::support::{
    binary, connect, echo_node, eventually, frames_until_final, get, http, openai_provider,
    post_message, send,
};

/// The history entries of session `key`, as the sessions API shows them.
async fn history(node: &TroupeProcess, key: &str) -> Vec<Value> {
    let (_, session) = get(node, &format!("/api/v1/sessions/{key}")).await;
    session["history"].as_array().cloned().unwrap_or_default()
}

async fn history_len(node: &TroupeProcess, key: &str) -> usize {
    history(node, key).await.len()
}

#[tokio::test]
async fn conversations_survive_a_graceful_restart_and_kill_9() {
    let mut node = echo_node("").await;
    post_message(&node, &json!({"sender_id": "pat", "payload": "first"})).await;
    assert_eq!(
        node.terminate(Duration::from_secs(20)).await.unwrap(),
        Some(0)
    );
    node.restart().await.unwrap();
    assert_eq!(history_len(&node, "api:pat").await, 2);
    post_message(&node, &json!({"sender_id": "pat", "payload": "second"})).await;
    node.kill_hard().unwrap();
    node.restart().await.unwrap();
    assert_eq!(
        history_len(&node, "api:pat").await,
        4,
        "the reply seen before kill -9 is kept"
    );
}

#[tokio::test]
async fn every_acknowledged_reply_survives_kill_9_under_load() {
    let mut node = echo_node("").await;
    let mut senders = Vec::new();
    for user in 0..20 {
        let url = format!("{}/api/v1/messages", node.http_url());
        senders.push(tokio::spawn(async move {
            let client = http();
            for turn in 0..5 {
                let answer = client
                    .post(&url)
                    .json(&json!({"sender_id": format!("u{user}"), "payload": format!("m{turn}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 200);
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    node.kill_hard().unwrap();
    node.restart().await.unwrap();
    for user in 0..20 {
        assert_eq!(
            history_len(&node, &format!("api:u{user}")).await,
            10,
            "u{user}"
        );
    }
}

/// The ids of the user entries of `key`'s history that have a reply after them.
async fn answered_ids(node: &TroupeProcess, key: &str) -> Vec<String> {
    history(node, key)
        .await
        .windows(2)
        .filter(|pair| pair[0]["role"] == "user" && pair[1]["role"] == "assistant")
        .filter_map(|pair| pair[0]["message_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn every_acknowledged_message_is_answered_after_kill_9_and_a_retry_gets_that_answer() {
    const CONNECTIONS: usize = 20;
    const MESSAGES: usize = 10;
    let fake = FakeLlm::start(None).await;
    // Slow replies: each conversation's messages queue behind one another.
    fake.set_echo_delay(Duration::from_millis(100));
    let mut node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .unwrap();
    let mut sockets = Vec::new();
    for connection in 0..CONNECTIONS {
        let mut socket = connect(&node, &[]).await;
        send(
            &mut socket,
            json!({"type": "hello", "sender_id": format!("p{connection}")}),
        )
        .await;
        for index in 0..MESSAGES {
            let id = format!("p{connection}-{index}");
            send(
                &mut socket,
                json!({"type": "message", "id": id, "payload": id}),
            )
            .await;
        }
        sockets.push(socket);
    }
    let mut replied_before_kill = 0;
    for socket in &mut sockets {
        let mut acks = 0;
        while acks < MESSAGES {
            let frame = crate::support::next_frame(socket).await.expect("open");
            match frame["type"].as_str() {
                Some("ack") => acks += 1,
                Some("reply") => replied_before_kill += 1,
                _ => {}
            }
        }
    }
    node.kill_hard().unwrap();
    assert!(
        replied_before_kill < CONNECTIONS * MESSAGES / 2,
        "most acknowledged messages were still unanswered at the kill ({replied_before_kill} were)"
    );

    node.restart().await.unwrap();
    for connection in 0..CONNECTIONS {
        let key = format!("ws:p{connection}");
        let expected: Vec<_> = (0..MESSAGES)
            .map(|index| format!("p{connection}-{index}"))
            .collect();
        eventually(Duration::from_secs(30), || async {
            answered_ids(&node, &key).await == expected
        })
        .await;
    }

    // A retry of an id acknowledged before the kill gets the answer in the history.
    let stored_reply = history(&node, "ws:p7").await[19]["message_id"].clone();
    let mut socket = connect(&node, &[]).await;
    send(&mut socket, json!({"type": "hello", "sender_id": "p7"})).await;
    send(
        &mut socket,
        json!({"type": "message", "id": "p7-9", "payload": "p7-9"}),
    )
    .await;
    let frames = frames_until_final(&mut socket, "p7-9").await;
    let reply = frames.last().unwrap();
    assert_eq!(reply["type"], "reply", "{frames:?}");
    assert_eq!(reply["id"], stored_reply);
}

#[tokio::test]
async fn sigterm_finishes_the_reply_in_flight_then_exits_0() {
    let fake = FakeLlm::start(None).await;
    fake.script([FakeReply::Delayed(
        Duration::from_millis(800),
        Box::new(FakeReply::Text(vec!["late but here".into()])),
    )]);
    let mut node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .unwrap();
    let mut socket = connect(&node, &[]).await;
    send(&mut socket, json!({"type": "hello", "sender_id": "quinn"})).await;
    send(
        &mut socket,
        json!({"type": "message", "id": "inflight", "payload": "take your time"}),
    )
    .await;
    eventually(Duration::from_secs(5), || async {
        !fake.requests().is_empty()
    })
    .await;
    let terminate = tokio::spawn(async move {
        let code = node.terminate(Duration::from_secs(20)).await.unwrap();
        (code, node)
    });
    let frames = frames_until_final(&mut socket, "inflight").await;
    assert_eq!(frames.last().unwrap()["payload"], "late but here");
    let (code, mut node) = terminate.await.unwrap();
    assert_eq!(code, Some(0));
    node.restart().await.unwrap();
    assert_eq!(history_len(&node, "ws:quinn").await, 2);
}

#[tokio::test]
async fn idle_sessions_passivate_and_return_with_their_history() {
    let node = echo_node("[assistant]\nidle_passivate_secs = 1\n").await;
    post_message(&node, &json!({"sender_id": "sam", "payload": "remember"})).await;
    let sessions_url = format!("{}/api/v1/sessions", node.http_url());
    eventually(Duration::from_secs(10), || async {
        let list: Value = http()
            .get(&sessions_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["sessions"][0]["active"] == false
    })
    .await;
    let metrics = crate::support::metrics_page(&node.http_url()).await;
    assert!(
        metrics.contains("troupe_sessions_passivated 1"),
        "{metrics}"
    );
    post_message(&node, &json!({"sender_id": "sam", "payload": "again"})).await;
    assert_eq!(history_len(&node, "api:sam").await, 4);
}
