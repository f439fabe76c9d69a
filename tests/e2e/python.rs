//! Real clients nobody here wrote: the official `openai` Python SDK and a real browser
//! (Chromium through Playwright), both from the venv `scripts/test-deps` prepares.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, echo_node, openai_provider};

pub(crate) fn python() -> PathBuf {
    let python = troupe_testkit::test_venv().join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/test-deps (./scripts/test does)",
        python.display()
    );
    python
}

pub(crate) fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/python")
        .join(name)
}

pub(crate) async fn run_python(args: Vec<String>) -> Value {
    let output =
        tokio::task::spawn_blocking(move || Command::new(python()).args(&args).output().unwrap())
            .await
            .unwrap();
    assert!(
        output.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn the_official_openai_sdk_gets_answers_streamed_and_not() {
    let fake = FakeLlm::start(None).await;
    fake.script([
        FakeReply::Text(vec!["first ".into(), "answer".into()]),
        FakeReply::Text(vec!["second ".into(), "streamed ".into(), "answer".into()]),
    ]);
    let config = format!(
        "[server]\ntoken = \"sdk-token\"\n\n{}",
        openai_provider(&fake.openai_base_url(), "")
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    let seen = run_python(vec![
        script("openai_sdk.py").display().to_string(),
        format!("{}/v1", node.http_url()),
        "sdk-token".into(),
    ])
    .await;
    assert_eq!(seen["models"], serde_json::json!(["troupe"]));
    assert_eq!(seen["whole"], "first answer");
    assert_eq!(seen["finish_reason"], "stop");
    assert_eq!(
        seen["pieces"],
        serde_json::json!(["second ", "streamed ", "answer"])
    );
    // The usage the model reported, as the SDK reads it (the fake's: 5 prompt tokens, one
    // completion token per piece).
    assert_eq!(seen["usage"]["prompt_tokens"], 5);
    assert_eq!(seen["usage"]["completion_tokens"], 2);
    assert_eq!(seen["usage"]["total_tokens"], 7);
    assert_eq!(seen["streamed_usage"]["completion_tokens"], 3);
    assert_eq!(
        seen["streamed_usage"]["prompt_tokens_details"]["cached_tokens"],
        0
    );
    let second_request = &fake.requests()[1].body["messages"];
    assert_eq!(
        second_request.as_array().unwrap().len(),
        4,
        "the session remembered: {second_request}"
    );
}

#[tokio::test]
async fn the_web_page_chats_in_a_real_browser() {
    let fake = FakeLlm::start(None).await;
    fake.script([
        FakeReply::ToolCalls(vec![(
            "call_1".into(),
            "calculator__evaluate".into(),
            r#"{"expression":"6 * 7"}"#.into(),
        )]),
        FakeReply::Text(vec![
            "streamed ".into(),
            "into a ".into(),
            "real browser".into(),
        ]),
    ]);
    let config = format!(
        "[server]\ntoken = \"page-token\"\n\n{}",
        openai_provider(&fake.openai_base_url(), "")
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    let seen = run_python(vec![
        script("browser_chat.py").display().to_string(),
        node.http_url(),
        "page-token".into(),
    ])
    .await;
    assert_eq!(seen["user"], "hello from a real browser");
    assert_eq!(seen["assistant"], "streamed into a real browser");
    assert_eq!(seen["notice"], "", "a configured model needs no notice");
    // The tool the assistant ran is a card above its answer, marked done with its timing.
    let tools = seen["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1, "{seen}");
    let card = &tools[0];
    assert_eq!(card["name"], "calculator__evaluate");
    assert!(
        card["classes"].as_str().unwrap().contains("succeeded"),
        "{card}"
    );
    assert!(
        card["status"].as_str().unwrap().starts_with("done in "),
        "{card}"
    );
    let sections = card["sections"].as_array().unwrap();
    assert!(
        sections[0]
            .as_str()
            .unwrap()
            .contains(r#""expression": "6 * 7""#),
        "{card}"
    );
    assert!(sections[1].as_str().unwrap().contains("42"), "{card}");
    assert_eq!(fake.requests()[0].body["stream"], true);
}

#[tokio::test]
async fn the_web_page_says_how_to_configure_a_model_when_there_is_none() {
    let node = echo_node("[server]\ntoken = \"page-token\"\n").await;
    let seen = run_python(vec![
        script("browser_chat.py").display().to_string(),
        node.http_url(),
        "page-token".into(),
    ])
    .await;
    assert_eq!(seen["assistant"], "hello from a real browser");
    assert!(
        seen["notice"]
            .as_str()
            .unwrap()
            .contains("No model is configured"),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_share_a_canvas_with_cursors_reconnects_undo_and_the_assistant() {
    let fake = FakeLlm::start(None).await;
    fake.script([
        FakeReply::ToolCalls(vec![(
            "call_1".into(),
            "canvas__add_note".into(),
            r#"{"room":"sketch","text":"the plan is ready","x":700,"y":80}"#.into(),
        )]),
        FakeReply::Text(vec!["I added ".into(), "the note.".into()]),
    ]);
    let config = format!(
        "[server]\ntoken = \"page-token\"\n\n{}",
        openai_provider(&fake.openai_base_url(), "")
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    let shots = std::env::var("TROUPE_SCREENSHOTS").unwrap_or_default();
    let mut args = vec![
        script("browser_canvas.py").display().to_string(),
        node.http_url(),
        "sketch".into(),
        "page-token".into(),
    ];
    if !shots.is_empty() {
        args.push(shots);
    }
    let seen = run_python(args).await;
    assert!(seen["moved_by"].as_f64().unwrap() > 100.0, "{seen}");
    assert!(seen["stroke_points"].as_u64().unwrap() >= 10, "{seen}");
    assert_eq!(
        seen["people_seen_by_bea"],
        serde_json::json!(["Bea (you)", "Ada"])
    );
    assert_eq!(seen["revoked"], 204);
    assert!(
        seen["tokens_minted_by_ada"].as_u64().unwrap() >= 2,
        "she minted a new one"
    );
    assert_eq!(seen["notes_after_undo"], serde_json::json!(["ship it"]));
    assert_eq!(seen["items_after_undo"], "2 items");
    assert_eq!(
        seen["notes_at_the_end"],
        serde_json::json!(["ship it", "the plan is ready"])
    );
    let tools = seen["assistant_tools"].as_array().unwrap();
    assert!(
        tools.len() == 1
            && tools[0].as_str().unwrap().starts_with("⚙ add_note")
            && tools[0].as_str().unwrap().ends_with('✓'),
        "{seen}"
    );
    // The chat turn saw the board (the page's message names the room).
    let system = fake.requests()[0].body["messages"][0]["content"].to_string();
    assert!(system.contains("note \\\"ship it\\\""), "{system}");
}
