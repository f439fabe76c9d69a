use std::sync::{Arc, Mutex};

use troupe_actors::ToolSpec;
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};

use super::*;

fn request(stream: bool) -> ChatRequest {
    ChatRequest {
        system_prompt: Some("be brief".into()),
        messages: vec![ChatMessage::new(Role::User, "hello there")],
        tools: Default::default(),
        stream,
    }
}

fn provider(fake: &FakeLlm, key: &str) -> AnthropicProvider {
    AnthropicProvider::new(
        "claude",
        &fake.anthropic_base_url(),
        "claude-test",
        key,
        256,
        true,
    )
}

#[tokio::test]
async fn streams_text_and_sends_the_wire_format() {
    let fake = FakeLlm::start(Some("ak-test")).await;
    fake.script([FakeReply::Text(vec!["Hel".into(), "lo".into()])]);
    let seen = Arc::new(Mutex::new(String::new()));
    let sink_seen = Arc::clone(&seen);
    let sink = DeltaSink::new(move |text| sink_seen.lock().unwrap().push_str(text));
    let completion = provider(&fake, "ak-test")
        .complete(&request(true), &sink)
        .await
        .unwrap();
    assert_eq!(completion.text, "Hello");
    assert_eq!(*seen.lock().unwrap(), "Hello");
    assert_eq!(
        completion.usage,
        Some(Usage {
            input_tokens: 5,
            output_tokens: 2,
            ..Usage::default()
        })
    );
    let sent = &fake.requests()[0];
    assert_eq!(sent.headers["x-api-key"], "ak-test");
    assert_eq!(sent.headers["anthropic-version"], ANTHROPIC_VERSION);
    assert_eq!(sent.body["system"], "be brief");
    assert_eq!(sent.body["max_tokens"], 256);
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "hello there"}])
    );
}

#[tokio::test]
async fn reads_a_non_streamed_message() {
    let fake = FakeLlm::start(Some("k")).await;
    fake.script([FakeReply::Text(vec!["whole".into()])]);
    let completion = provider(&fake, "k")
        .complete(&request(false), &DeltaSink::discard())
        .await
        .unwrap();
    assert_eq!(completion.text, "whole");
    assert_eq!(completion.finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn carries_tool_use_streamed_and_not() {
    for stream in [true, false] {
        let fake = FakeLlm::start(Some("k")).await;
        fake.script([FakeReply::ToolCall {
            id: "toolu_1".into(),
            name: "get_time".into(),
            argument_pieces: vec!["{\"zone\": ".into(), "\"UTC\"}".into()],
        }]);
        let mut with_tools = request(stream);
        with_tools.tools = Arc::from(vec![ToolSpec {
            name: "get_time".into(),
            description: "current time".into(),
            parameters: json!({"type": "object"}),
        }]);
        let completion = provider(&fake, "k")
            .complete(&with_tools, &DeltaSink::discard())
            .await
            .unwrap();
        assert_eq!(
            completion.finish_reason,
            FinishReason::ToolCalls,
            "stream={stream}"
        );
        let call = &completion.tool_calls[0];
        assert_eq!(
            (call.id.as_str(), call.name.as_str()),
            ("toolu_1", "get_time")
        );
        let arguments: Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(arguments, json!({"zone": "UTC"}));
        assert_eq!(
            fake.requests()[0].body["tools"][0]["input_schema"],
            json!({"type": "object"})
        );
    }
}

#[test]
fn tool_history_uses_anthropic_blocks() {
    let mut assistant = ChatMessage::new(Role::Assistant, "");
    assistant.tool_calls.push(ToolCall {
        id: "t1".into(),
        name: "n".into(),
        arguments: "{\"a\":1}".into(),
    });
    assert_eq!(
        serde_json::to_value(wire_message(&assistant)).unwrap(),
        json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "n", "input": {"a": 1}}]})
    );
    let mut result = ChatMessage::new(Role::Tool, "42");
    result.tool_call_id = Some("t1".into());
    assert_eq!(
        serde_json::to_value(wire_message(&result)).unwrap(),
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42", "is_error": false}]})
    );
}

#[test]
fn one_round_of_results_is_one_user_message_and_errors_are_flagged() {
    let mut assistant = ChatMessage::new(Role::Assistant, "");
    for id in ["t1", "t2"] {
        assistant.tool_calls.push(ToolCall {
            id: id.into(),
            name: "n".into(),
            arguments: "{}".into(),
        });
    }
    let mut ok = ChatMessage::new(Role::Tool, "42");
    ok.tool_call_id = Some("t1".into());
    let mut failed = ChatMessage::new(
        Role::Tool,
        r#"{"error":{"code":"timeout","message":"slow"}}"#,
    );
    failed.tool_call_id = Some("t2".into());
    let wire = serde_json::to_value(wire_messages(&[
        ChatMessage::new(Role::User, "go"),
        assistant,
        ok,
        failed,
        ChatMessage::new(Role::User, "and?"),
    ]))
    .unwrap();
    let wire = wire.as_array().unwrap();
    assert_eq!(wire.len(), 4);
    let results = wire[2]["content"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["is_error"], false);
    assert_eq!(
        (
            results[1]["tool_use_id"].as_str(),
            results[1]["is_error"].as_bool()
        ),
        (Some("t2"), Some(true))
    );
    assert_eq!(wire[3], json!({"role": "user", "content": "and?"}));
}

#[test]
fn an_answer_stopped_before_its_first_word_is_not_sent_as_empty_content() {
    let wire = serde_json::to_value(wire_messages(&[
        ChatMessage::new(Role::User, "write a poem"),
        ChatMessage::new(Role::Assistant, ""),
        ChatMessage::new(Role::User, "a short one"),
        ChatMessage::new(Role::Assistant, "Roses"),
    ]))
    .unwrap();
    assert_eq!(
        wire,
        json!([
            {"role": "user", "content": "write a poem"},
            {"role": "user", "content": "a short one"},
            {"role": "assistant", "content": "Roses"},
        ])
    );
}

#[tokio::test]
async fn maps_errors_including_overloaded_and_mid_stream() {
    let fake = FakeLlm::start(Some("k")).await;
    let unauthorized = provider(&fake, "bad")
        .complete(&request(true), &DeltaSink::discard())
        .await
        .unwrap_err();
    assert_eq!(unauthorized.kind, ProviderErrorKind::Unauthorized);
    fake.script([
        FakeReply::Status {
            status: 529,
            retry_after: None,
            message: "Overloaded".into(),
        },
        FakeReply::Status {
            status: 429,
            retry_after: Some("1".into()),
            message: "rate".into(),
        },
        FakeReply::StreamError(vec!["par".into()]),
    ]);
    let client = provider(&fake, "k");
    let overloaded = client
        .complete(&request(true), &DeltaSink::discard())
        .await
        .unwrap_err();
    assert_eq!(overloaded.kind, ProviderErrorKind::Server);
    assert!(overloaded.message.contains("Overloaded"));
    let limited = client
        .complete(&request(true), &DeltaSink::discard())
        .await
        .unwrap_err();
    assert_eq!(limited.retry_after, Some(std::time::Duration::from_secs(1)));
    let broken = client
        .complete(&request(true), &DeltaSink::discard())
        .await
        .unwrap_err();
    assert_eq!(broken.kind, ProviderErrorKind::Server);
}

#[tokio::test]
async fn carries_parallel_tool_use_blocks_streamed_and_not() {
    for stream in [true, false] {
        let fake = FakeLlm::start(Some("k")).await;
        fake.script([FakeReply::ToolCalls(vec![
            (
                "toolu_a".into(),
                "time__now".into(),
                r#"{"timezone":"UTC"}"#.into(),
            ),
            ("toolu_b".into(), "notes__recall".into(), "{}".into()),
        ])]);
        let completion = provider(&fake, "k")
            .complete(&request(stream), &DeltaSink::discard())
            .await
            .unwrap();
        let ids: Vec<&str> = completion
            .tool_calls
            .iter()
            .map(|call| call.id.as_str())
            .collect();
        assert_eq!(ids, ["toolu_a", "toolu_b"], "stream={stream}");
        let first: Value = serde_json::from_str(&completion.tool_calls[0].arguments).unwrap();
        assert_eq!(first, json!({"timezone": "UTC"}));
        assert_eq!(completion.finish_reason, FinishReason::ToolCalls);
    }
}

#[tokio::test]
async fn the_double_refuses_a_tool_use_without_its_result_like_the_api() {
    let fake = FakeLlm::start(Some("k")).await;
    let mut assistant = ChatMessage::new(Role::Assistant, "");
    assistant.tool_calls.push(ToolCall {
        id: "toolu_x".into(),
        name: "n".into(),
        arguments: "{}".into(),
    });
    let mut unanswered = request(false);
    unanswered.messages.push(assistant);
    unanswered
        .messages
        .push(ChatMessage::new(Role::User, "and?"));
    let error = provider(&fake, "k")
        .complete(&unanswered, &DeltaSink::discard())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ProviderErrorKind::BadRequest);
    assert!(error.message.contains("tool_result"), "{error}");
}

#[tokio::test]
async fn a_picture_goes_out_as_a_base64_image_block_before_the_text() {
    let fake = FakeLlm::start(Some("sk-ant")).await;
    fake.script([FakeReply::Text(vec!["A red dot.".into()])]);
    let mut asked = ChatMessage::new(Role::User, "what is this?");
    asked.images.push(troupe_actors::ImagePart {
        media_type: troupe_actors::ImageType::Jpeg,
        base64: "/9j/4AAQ".into(),
    });
    let request = ChatRequest {
        messages: vec![asked],
        ..request(false)
    };
    let completion = provider(&fake, "sk-ant")
        .complete(&request, &DeltaSink::discard())
        .await
        .unwrap();
    assert_eq!(completion.text, "A red dot.");
    assert_eq!(
        fake.requests()[0].body["messages"][0],
        json!({"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
            {"type": "text", "text": "what is this?"},
        ]})
    );
}
