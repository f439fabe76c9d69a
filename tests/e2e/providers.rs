//! Providers through the whole node: streaming from OpenAI-compatible and Anthropic test
//! doubles, retries on 429, fallbacks, and provider failures that reach the user as errors.

use serde_json::json;
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, connect, frames_until_final, openai_provider, post_message, send};

#[tokio::test]
async fn streams_from_an_openai_compatible_server_over_the_websocket() {
    let fake = FakeLlm::start(None).await;
    fake.script([FakeReply::Text(vec![
        "The ".into(),
        "answer ".into(),
        "is 42".into(),
    ])]);
    let node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .unwrap();
    let mut socket = connect(&node, &[]).await;
    send(
        &mut socket,
        json!({"type": "message", "id": "q", "payload": "meaning?"}),
    )
    .await;
    let frames = frames_until_final(&mut socket, "q").await;
    let deltas: Vec<&str> = frames
        .iter()
        .filter(|f| f["type"] == "delta")
        .map(|f| f["payload"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, ["The ", "answer ", "is 42"]);
    assert_eq!(frames.last().unwrap()["payload"], "The answer is 42");
}

#[tokio::test]
async fn streams_from_an_anthropic_server() {
    let fake = FakeLlm::start(Some("ak-e2e")).await;
    fake.script([FakeReply::Text(vec!["Bonjour".into(), "!".into()])]);
    let config = format!(
        "[assistant]\nprovider = \"claude\"\n\n[[providers]]\nname = \"claude\"\nkind = \"anthropic\"\nbase_url = \"{}\"\nmodel = \"claude-test\"\napi_key_env = \"TROUPE_E2E_ANTHROPIC\"\n",
        fake.anthropic_base_url()
    );
    let node =
        TroupeProcess::start_with_env(binary(), &config, &[("TROUPE_E2E_ANTHROPIC", "ak-e2e")])
            .await
            .unwrap();
    let mut socket = connect(&node, &[]).await;
    send(
        &mut socket,
        json!({"type": "message", "id": "fr", "payload": "hello in french"}),
    )
    .await;
    let frames = frames_until_final(&mut socket, "fr").await;
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "delta" && f["payload"] == "Bonjour")
    );
    assert_eq!(frames.last().unwrap()["payload"], "Bonjour!");
    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.body["system"], "You are a helpful personal assistant.");
    assert_eq!(sent.body["stream"], true);
}

#[tokio::test]
async fn rate_limits_are_retried_and_the_reply_still_arrives() {
    let fake = FakeLlm::start(None).await;
    fake.script([
        FakeReply::Status {
            status: 429,
            retry_after: Some("0.05".into()),
            message: "slow down".into(),
        },
        FakeReply::Status {
            status: 503,
            retry_after: None,
            message: "busy".into(),
        },
        FakeReply::Text(vec!["finally".into()]),
    ]);
    let node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .unwrap();
    let (status, body) = post_message(&node, &json!({"sender_id": "r", "payload": "hi"})).await;
    assert_eq!(
        (status, body["reply"]["payload"].as_str()),
        (200, Some("finally"))
    );
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn a_failing_provider_falls_back_to_the_next() {
    let broken = FakeLlm::start(None).await;
    broken.script([FakeReply::Status {
        status: 401,
        retry_after: None,
        message: "bad key".into(),
    }]);
    let backup = FakeLlm::start(None).await;
    backup.script([FakeReply::Text(vec!["from backup".into()])]);
    let config = format!(
        "{}\n[[providers]]\nname = \"backup\"\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"m\"\n",
        openai_provider(&broken.openai_base_url(), "fallbacks = [\"backup\"]"),
        backup.openai_base_url()
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    let (status, body) = post_message(&node, &json!({"sender_id": "f", "payload": "hi"})).await;
    assert_eq!(
        (status, body["reply"]["payload"].as_str()),
        (200, Some("from backup"))
    );
}

#[tokio::test]
async fn provider_errors_and_hangs_reach_the_user_as_clear_errors() {
    let fake = FakeLlm::start(None).await;
    fake.script([
        FakeReply::Status {
            status: 404,
            retry_after: None,
            message: "model `nope` not found".into(),
        },
        FakeReply::Hang,
    ]);
    let node = TroupeProcess::start(
        binary(),
        &openai_provider(&fake.openai_base_url(), "timeout_secs = 1\nmax_retries = 0"),
    )
    .await
    .unwrap();
    let (status, body) = post_message(&node, &json!({"sender_id": "e", "payload": "hi"})).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "provider_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{body}"
    );

    let mut socket = connect(&node, &[]).await;
    send(
        &mut socket,
        json!({"type": "message", "id": "slow", "payload": "hi"}),
    )
    .await;
    let last = frames_until_final(&mut socket, "slow").await.pop().unwrap();
    assert_eq!(last["type"], "error");
    assert_eq!(last["code"], "provider_timeout");
}

#[tokio::test]
async fn rest_clients_get_the_provider_stream_as_server_sent_events() {
    let fake = FakeLlm::start(None).await;
    fake.script([FakeReply::Text(vec![
        "one ".into(),
        "two ".into(),
        "three".into(),
    ])]);
    let node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .unwrap();
    let body = crate::support::http()
        .post(format!("{}/api/v1/messages", node.http_url()))
        .header("accept", "text/event-stream")
        .json(&json!({"id": "sse", "sender_id": "curl-user", "payload": "count"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let deltas: Vec<serde_json::Value> = body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .filter(|event: &serde_json::Value| event["type"] == "delta")
        .collect();
    let pieces: Vec<&str> = deltas
        .iter()
        .map(|delta| delta["payload"].as_str().unwrap())
        .collect();
    assert_eq!(pieces, ["one ", "two ", "three"]);
    assert!(body.contains("\"payload\":\"one two three\""), "{body}");
}
