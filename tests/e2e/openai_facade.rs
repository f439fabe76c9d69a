//! The OpenAI-compatible facade, with a real OpenAI-compatible test double behind the node.

use serde_json::{Value, json};
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, http, openai_provider};

async fn node_with_fake() -> (TroupeProcess, FakeLlm) {
    let fake = FakeLlm::start(Some("sk-upstream")).await;
    let config = openai_provider(
        &fake.openai_base_url(),
        "api_key_env = \"TROUPE_E2E_UPSTREAM_KEY\"",
    );
    let node = TroupeProcess::start_with_env(
        binary(),
        &config,
        &[("TROUPE_E2E_UPSTREAM_KEY", "sk-upstream")],
    )
    .await
    .unwrap();
    (node, fake)
}

async fn completion(node: &TroupeProcess, body: Value) -> Value {
    let response = http()
        .post(format!("{}/v1/chat/completions", node.http_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn with_user_the_session_remembers_across_requests() {
    let (node, fake) = node_with_fake().await;
    fake.script([FakeReply::Text(vec!["Nice to ".into(), "meet you".into()])]);
    let first = completion(
        &node,
        json!({"model": "troupe", "user": "u1",
        "messages": [{"role": "user", "content": "I am Ann"}]}),
    )
    .await;
    assert_eq!(first["object"], "chat.completion");
    assert_eq!(
        first["choices"][0]["message"]["content"],
        "Nice to meet you"
    );
    assert_eq!(first["choices"][0]["finish_reason"], "stop");
    completion(
        &node,
        json!({"user": "u1", "messages": [{"role": "user", "content": "who am I?"}]}),
    )
    .await;
    let upstream = fake.requests();
    let sent: Vec<&str> = upstream[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        sent,
        [
            "You are a helpful personal assistant.",
            "I am Ann",
            "Nice to meet you",
            "who am I?"
        ]
    );
    assert_eq!(upstream[1].headers["authorization"], "Bearer sk-upstream");
    assert_eq!(
        crate::support::get(&node, "/api/v1/sessions/openai:u1")
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn without_user_the_request_brings_its_own_history() {
    let (node, fake) = node_with_fake().await;
    let answer = completion(
        &node,
        json!({"messages": [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": [{"type": "text", "text": "three"}]}
    ], "temperature": 0.2}),
    )
    .await;
    assert_eq!(answer["choices"][0]["message"]["content"], "echo: three");
    let sent = &fake.requests()[0].body["messages"];
    assert_eq!(
        sent,
        &json!([
            {"role": "system", "content": "be terse"},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"}
        ])
    );
    let (_, sessions) = crate::support::get(&node, "/api/v1/sessions").await;
    assert_eq!(
        sessions["sessions"],
        json!([]),
        "stateless requests leave no session"
    );
}

#[tokio::test]
async fn streams_chunks_in_the_openai_format() {
    let (node, fake) = node_with_fake().await;
    fake.script([FakeReply::Text(vec!["a".into(), "b".into(), "c".into()])]);
    let body = http()
        .post(format!("{}/v1/chat/completions", node.http_url()))
        .json(
            &json!({"user": "s1", "stream": true, "messages": [{"role": "user", "content": "go"}]}),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data: Vec<&str> = body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .collect();
    assert_eq!(*data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "abc");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
}

#[tokio::test]
async fn lists_the_assistant_as_a_model_and_refuses_bad_requests() {
    let (node, _fake) = node_with_fake().await;
    let (_, models) = crate::support::get(&node, "/v1/models").await;
    assert_eq!(models["data"][0]["id"], "troupe");
    let empty = http()
        .post(format!("{}/v1/chat/completions", node.http_url()))
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 422);
    let broken = http()
        .post(format!("{}/v1/chat/completions", node.http_url()))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    assert_eq!(
        broken.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_json"
    );
}
