//! Stop generating, against a real node and an OpenAI-compatible double that streams and
//! then keeps thinking: a `stop` frame ends the turn with what the person saw, the node
//! closes the model's stream, and the conversation keeps the partial answer; the REST
//! form stops a turn another client waits on, and a turn stopped before its first word
//! leaves nothing behind. In a real browser (`python/browser_stop.py`), the web app offers
//! Stop while an answer comes, keeps the words shown, and gives an unanswered question back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::process::TroupeProcess;

use crate::python::{run_python, script};
use crate::support::{
    binary, connect_as, eventually, frame_of, frames_until_final, get, http, openai_provider, send,
};
use crate::web_app::{artefacts, axe_script};

async fn stop_by_rest(node: &TroupeProcess, conversation: &str, message_id: &str) -> (u16, Value) {
    let response = http()
        .post(format!(
            "{}/api/v1/conversations/{conversation}/stop",
            node.http_url()
        ))
        .json(&json!({"message_id": message_id}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn history(node: &TroupeProcess, conversation: &str) -> Vec<(String, String)> {
    let (_, view) = get(node, &format!("/api/v1/conversations/{conversation}")).await;
    view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let role = entry["role"].as_str().unwrap().to_owned();
            (role, entry["content"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_stopped_answer_ends_with_what_was_shown_and_the_model_stream_is_closed() {
    let fake = FakeLlm::start(None).await;
    let open = Arc::new(AtomicUsize::new(0));
    fake.script([FakeReply::StreamThenHang(
        vec!["Once upon".into(), " a time".into()],
        Arc::clone(&open),
    )]);
    let node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .unwrap();
    let mut socket = connect_as(&node, "ada").await;
    send(
        &mut socket,
        json!({"type": "message", "id": "m1", "payload": "tell me a story"}),
    )
    .await;
    let mut seen = Vec::new();
    let mut shown = String::new();
    while shown != "Once upon a time" {
        shown.push_str(
            frame_of(&mut socket, "delta", &mut seen).await["payload"]
                .as_str()
                .unwrap(),
        );
    }
    send(&mut socket, json!({"type": "stop", "in_reply_to": "m1"})).await;
    let frames = frames_until_final(&mut socket, "m1").await;
    let result = frames
        .iter()
        .find(|frame| frame["type"] == "stop_result")
        .expect("the stop is answered");
    assert_eq!(result["outcome"], "stopping");
    let reply = frames.last().unwrap();
    assert_eq!(reply["type"], "reply", "{frames:?}");
    assert_eq!(reply["stopped"], true);
    assert_eq!(reply["payload"], "Once upon a time");
    assert!(
        frames.iter().all(|frame| frame["type"] != "delta"),
        "nothing streams after the stop: {frames:?}"
    );
    // The node closed the model's stream rather than reading it to its end.
    eventually(Duration::from_secs(10), || {
        let open = Arc::clone(&open);
        async move { open.load(Ordering::SeqCst) == 0 }
    })
    .await;
    assert_eq!(
        history(&node, "ada").await,
        [
            ("user".to_owned(), "tell me a story".to_owned()),
            ("assistant".to_owned(), "Once upon a time".to_owned()),
        ]
    );

    // A stop that names a turn no longer running says so, on both forms.
    send(&mut socket, json!({"type": "stop", "in_reply_to": "m1"})).await;
    let again = frame_of(&mut socket, "stop_result", &mut seen).await;
    assert_eq!(again["outcome"], "not_running");
    let (status, body) = stop_by_rest(&node, "ada", "m1").await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (202, Some("not_running")),
        "{body}"
    );
}

#[tokio::test]
async fn a_rest_stop_before_the_first_word_leaves_the_conversation_as_it_was() {
    let fake = FakeLlm::start(None).await;
    let open = Arc::new(AtomicUsize::new(0));
    fake.script([
        FakeReply::Text(vec!["Paris".into()]),
        FakeReply::StreamThenHang(Vec::new(), Arc::clone(&open)),
    ]);
    let node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .unwrap();
    let mut socket = connect_as(&node, "ada").await;
    for (id, text) in [("m1", "capital of France?"), ("m2", "and of Spain?")] {
        send(
            &mut socket,
            json!({"type": "message", "id": id, "payload": text, "conversation_id": "ada/geo"}),
        )
        .await;
    }
    frames_until_final(&mut socket, "m1").await;
    // The second turn is running once the model has its stream open.
    eventually(Duration::from_secs(10), || {
        let open = Arc::clone(&open);
        async move { open.load(Ordering::SeqCst) == 1 }
    })
    .await;
    let (status, body) = stop_by_rest(&node, "ada%2Fgeo", "m2").await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (202, Some("stopping")),
        "{body}"
    );
    let frames = frames_until_final(&mut socket, "m2").await;
    let last = frames.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["code"].as_str()),
        (Some("error"), Some("stopped")),
        "{frames:?}"
    );
    eventually(Duration::from_secs(10), || {
        let open = Arc::clone(&open);
        async move { open.load(Ordering::SeqCst) == 0 }
    })
    .await;
    assert_eq!(
        history(&node, "ada%2Fgeo").await,
        [
            ("user".to_owned(), "capital of France?".to_owned()),
            ("assistant".to_owned(), "Paris".to_owned()),
        ]
    );

    // Bad stops get clear errors and change nothing.
    send(&mut socket, json!({"type": "stop"})).await;
    let refused = frame_of(&mut socket, "error", &mut Vec::new()).await;
    assert_eq!(refused["code"], "invalid_frame");
    let stop = json!({"type": "stop", "in_reply_to": "m1", "conversation_id": "not an id"});
    send(&mut socket, stop).await;
    let refused = frame_of(&mut socket, "error", &mut Vec::new()).await;
    assert_eq!(refused["code"], "invalid_frame");
    assert!(
        refused["in_reply_to"].is_null(),
        "a refused stop does not fail the message it named: {refused}"
    );
    let response = http()
        .post(format!("{}/api/v1/conversations/ada/stop", node.http_url()))
        .json(&json!({"id": "m2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test]
async fn the_web_app_offers_stop_keeps_a_partial_answer_and_takes_back_an_unanswered_question() {
    let fake = FakeLlm::start(None).await;
    let open = Arc::new(AtomicUsize::new(0));
    fake.script([
        FakeReply::StreamThenHang(
            vec!["Once upon".into(), " a time".into()],
            Arc::clone(&open),
        ),
        FakeReply::Text(vec!["Stories".into()]),
        FakeReply::StreamThenHang(Vec::new(), Arc::clone(&open)),
    ]);
    let config = format!(
        "[server]\ntoken = \"page-token\"\n\n{}",
        openai_provider(&fake.openai_base_url(), "")
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    let seen = run_python(vec![
        script("browser_stop.py").display().to_string(),
        node.http_url(),
        "page-token".into(),
        artefacts().display().to_string(),
        axe_script().display().to_string(),
    ])
    .await;
    assert_eq!(seen["stop_hidden_at_start"], true);
    assert_eq!(seen["stop_label"], "Stop generating");
    assert_eq!(seen["kept"], "Once upon a time");
    assert_eq!(seen["note"], "Stopped: the answer ends here.");
    assert_eq!(seen["input_while_waiting"], "");
    assert_eq!(seen["taken_back"], "Never mind");
    assert_eq!(
        seen["messages_after_take_back"], 2,
        "the stopped exchange left"
    );
    assert_eq!(seen["focused"], "input");
    assert_eq!(
        seen["after_reload"],
        json!(["Tell me a story", "Once upon a time"]),
        "the node kept the partial answer and nothing of the unanswered question"
    );
    assert_eq!(seen["axe_violations"], json!([]));
    assert_eq!(
        open.load(Ordering::SeqCst),
        0,
        "every model stream was closed"
    );
}
