use std::sync::{Arc, Mutex};

use serde_json::json;
use troupe_actors::{ChatMessage, ToolSpec};
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

fn recording_sink() -> (DeltaSink, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink_seen = Arc::clone(&seen);
    (
        DeltaSink::new(move |text| sink_seen.lock().unwrap().push(text.to_owned())),
        seen,
    )
}

fn provider(fake: &FakeLlm, key: Option<&str>) -> OpenAiProvider {
    OpenAiProvider::new(
        "main",
        &fake.openai_base_url(),
        "fake-model",
        key.map(str::to_owned),
        None,
        true,
    )
}

#[tokio::test]
async fn streams_text_and_sends_the_wire_format() {
    let fake = FakeLlm::start(Some("sk-test")).await;
    fake.script([FakeReply::Text(vec!["Hi".into(), " you".into()])]);
    let (sink, seen) = recording_sink();
    let completion = provider(&fake, Some("sk-test"))
        .complete(&request(true), &sink)
        .await
        .unwrap();
    assert_eq!(completion.text, "Hi you");
    assert_eq!(completion.finish_reason, FinishReason::Stop);
    assert_eq!(*seen.lock().unwrap(), ["Hi", " you"]);
    let sent = &fake.requests()[0];
    assert_eq!(sent.headers["authorization"], "Bearer sk-test");
    assert_eq!(sent.body["model"], "fake-model");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(
        sent.body["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(
        sent.body["messages"][1],
        json!({"role": "user", "content": "hello there"})
    );
}

#[tokio::test]
async fn a_tool_round_tools_and_the_token_limit_go_out_in_the_wire_format() {
    let fake = FakeLlm::start(None).await;
    fake.script([FakeReply::Text(vec!["done".into()])]);
    let call = ToolCall {
        id: "call_1".into(),
        name: "get_time".into(),
        arguments: "{}".into(),
    };
    let mut asked = ChatMessage::new(Role::Assistant, "");
    asked.tool_calls = vec![call];
    let mut answered = ChatMessage::new(Role::Tool, "{\"time\":\"noon\"}");
    answered.tool_call_id = Some("call_1".into());
    let round = ChatRequest {
        system_prompt: None,
        messages: vec![ChatMessage::new(Role::User, "time?"), asked, answered],
        tools: Arc::from(vec![ToolSpec {
            name: "get_time".into(),
            description: "current time".into(),
            parameters: json!({"type": "object"}),
        }]),
        stream: false,
    };
    let limited = OpenAiProvider::new("main", &fake.openai_base_url(), "m", None, Some(64), false);
    limited
        .complete(&round, &DeltaSink::discard())
        .await
        .unwrap();
    assert_eq!(
        fake.requests()[0].body,
        json!({
            "model": "m",
            "stream": false,
            "max_tokens": 64,
            "messages": [
                {"role": "user", "content": "time?"},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1",
                    "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
                {"role": "tool", "content": "{\"time\":\"noon\"}", "tool_call_id": "call_1"},
            ],
            "tools": [{"type": "function", "function": {"name": "get_time",
                "description": "current time", "parameters": {"type": "object"}}}],
        })
    );
}

#[tokio::test]
async fn reads_a_non_streamed_answer_with_usage() {
    let fake = FakeLlm::start(None).await;
    fake.script([FakeReply::Text(vec!["whole".into()])]);
    let completion = provider(&fake, None)
        .complete(&request(false), &DeltaSink::discard())
        .await
        .unwrap();
    assert_eq!(completion.text, "whole");
    assert_eq!(completion.usage.unwrap().input_tokens, 5);
    assert!(fake.requests()[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn carries_tool_calls_streamed_and_not() {
    for stream in [true, false] {
        let fake = FakeLlm::start(None).await;
        fake.script([FakeReply::ToolCall {
            id: "call_1".into(),
            name: "get_time".into(),
            argument_pieces: vec!["{\"zone\":".into(), "\"UTC\"}".into()],
        }]);
        let mut with_tools = request(stream);
        with_tools.tools = Arc::from(vec![ToolSpec {
            name: "get_time".into(),
            description: "current time".into(),
            parameters: json!({"type": "object"}),
        }]);
        let completion = provider(&fake, None)
            .complete(&with_tools, &DeltaSink::discard())
            .await
            .unwrap();
        assert_eq!(
            completion.finish_reason,
            FinishReason::ToolCalls,
            "stream={stream}"
        );
        assert_eq!(
            completion.tool_calls,
            [ToolCall {
                id: "call_1".into(),
                name: "get_time".into(),
                arguments: "{\"zone\":\"UTC\"}".into()
            }]
        );
        assert_eq!(
            fake.requests()[0].body["tools"][0]["function"]["name"],
            "get_time"
        );
    }
}

#[tokio::test]
async fn maps_http_failures_to_error_kinds() {
    let fake = FakeLlm::start(Some("right")).await;
    let wrong_key = provider(&fake, Some("wrong"))
        .complete(&request(true), &DeltaSink::discard())
        .await;
    let error = wrong_key.unwrap_err();
    assert_eq!(error.kind, ProviderErrorKind::Unauthorized);
    assert!(
        error.message.contains("Incorrect API key"),
        "{}",
        error.message
    );

    fake.script([
        FakeReply::Status {
            status: 429,
            retry_after: Some("2".into()),
            message: "slow down".into(),
        },
        FakeReply::Status {
            status: 503,
            retry_after: None,
            message: "down".into(),
        },
        FakeReply::Status {
            status: 404,
            retry_after: None,
            message: "no such model".into(),
        },
    ]);
    let client = provider(&fake, Some("right"));
    let limited = client
        .complete(&request(true), &DeltaSink::discard())
        .await
        .unwrap_err();
    assert_eq!(
        (limited.kind, limited.status),
        (ProviderErrorKind::RateLimited, Some(429))
    );
    assert_eq!(limited.retry_after, Some(std::time::Duration::from_secs(2)));
    let down = client
        .complete(&request(true), &DeltaSink::discard())
        .await
        .unwrap_err();
    assert_eq!(down.kind, ProviderErrorKind::Server);
    let missing = client
        .complete(&request(true), &DeltaSink::discard())
        .await
        .unwrap_err();
    assert_eq!(missing.kind, ProviderErrorKind::BadRequest);
}

#[tokio::test]
async fn a_mid_stream_error_fails_after_the_text_already_sent() {
    let fake = FakeLlm::start(None).await;
    fake.script([FakeReply::StreamError(vec!["partial".into()])]);
    let (sink, seen) = recording_sink();
    let error = provider(&fake, None)
        .complete(&request(true), &sink)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ProviderErrorKind::Server);
    assert_eq!(*seen.lock().unwrap(), ["partial"]);
    assert!(sink.has_emitted());
}

#[tokio::test]
async fn an_unreachable_server_is_a_network_error() {
    let provider = OpenAiProvider::new("main", "http://127.0.0.1:9/v1", "m", None, None, true);
    let error = provider
        .complete(&request(true), &DeltaSink::discard())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ProviderErrorKind::Network);
}

#[tokio::test]
async fn carries_parallel_tool_calls_streamed_and_not() {
    for stream in [true, false] {
        let fake = FakeLlm::start(None).await;
        fake.script([FakeReply::ToolCalls(vec![
            (
                "call_a".into(),
                "time__now".into(),
                r#"{"timezone":"Asia/Tokyo"}"#.into(),
            ),
            (
                "call_b".into(),
                "calculator__evaluate".into(),
                r#"{"expression":"1+1"}"#.into(),
            ),
        ])]);
        let completion = provider(&fake, None)
            .complete(&request(stream), &DeltaSink::discard())
            .await
            .unwrap();
        let calls: Vec<(&str, &str, Value)> = completion
            .tool_calls
            .iter()
            .map(|call| {
                let arguments = serde_json::from_str(&call.arguments).unwrap();
                (call.id.as_str(), call.name.as_str(), arguments)
            })
            .collect();
        assert_eq!(
            calls,
            [
                ("call_a", "time__now", json!({"timezone": "Asia/Tokyo"})),
                (
                    "call_b",
                    "calculator__evaluate",
                    json!({"expression": "1+1"})
                )
            ],
            "stream={stream}"
        );
    }
}

#[tokio::test]
async fn a_picture_goes_out_as_an_image_url_part_after_the_text() {
    let fake = FakeLlm::start(None).await;
    fake.script([FakeReply::Text(vec!["A red dot.".into()])]);
    let mut asked = ChatMessage::new(Role::User, "what is this?");
    asked.images.push(troupe_actors::ImagePart {
        media_type: troupe_actors::ImageType::Png,
        base64: "iVBORw0KGgo=".into(),
    });
    let request = ChatRequest {
        messages: vec![asked],
        ..request(false)
    };
    let completion = provider(&fake, None)
        .complete(&request, &DeltaSink::discard())
        .await
        .unwrap();
    assert_eq!(completion.text, "A red dot.");
    assert_eq!(
        fake.requests()[0].body["messages"][1],
        json!({"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]})
    );
}
