//! The offline chat model through the real binary, on the packaged SmolLM2-135M-Instruct:
//! with no provider configured, no keys and nothing to find on the network,
//! `assistant.offline_fallback` answers with the local model, streaming; and a provider
//! that cannot be reached falls back to it.

use serde_json::{Value, json};
use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, connect_as, frames_until_final, send, test_models_dir};

/// No keys, no base URL: nothing to find.
const NO_KEYS: [(&str, &str); 3] = [
    ("OPENAI_API_KEY", ""),
    ("ANTHROPIC_API_KEY", ""),
    ("OPENAI_BASE_URL", ""),
];

async fn ask(node: &TroupeProcess, question: &str) -> Vec<Value> {
    let mut socket = connect_as(node, "ada").await;
    send(
        &mut socket,
        json!({"type": "message", "id": "q1", "payload": question}),
    )
    .await;
    frames_until_final(&mut socket, "q1").await
}

/// The chat model's entry of `GET /api/v1/models`, and the whole answer.
pub(crate) async fn chat_model_status(node: &TroupeProcess) -> (Value, Value) {
    let (_, status) = crate::support::get(node, "/api/v1/models").await;
    let chat = status["models"]
        .as_array()
        .and_then(|models| models.iter().find(|model| model["kind"] == "chat"))
        .cloned()
        .unwrap_or_default();
    (chat, status)
}

fn reply_text(frames: &[Value]) -> String {
    let last = frames.last().expect("a final frame");
    assert_eq!(last["type"], "reply", "{frames:?}");
    last["payload"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_network_and_no_keys_the_local_model_answers_streaming() {
    let config = format!(
        "[assistant]\noffline_fallback = true\n\n[models]\ndir = \"{}\"\n",
        test_models_dir().display()
    );
    let node = TroupeProcess::start_with_env(binary(), &config, &NO_KEYS)
        .await
        .expect("troupe starts");
    let frames = ask(&node, "What is the capital of France?").await;
    let reply = reply_text(&frames);
    assert!(reply.contains("Paris"), "{reply}");
    let deltas: Vec<&str> = frames
        .iter()
        .filter(|frame| frame["type"] == "delta")
        .filter_map(|frame| frame["payload"].as_str())
        .collect();
    assert!(deltas.len() > 2, "the reply streams: {frames:?}");
    assert_eq!(deltas.concat(), reply);
    let (chat, status) = chat_model_status(&node).await;
    assert_eq!(
        (&chat["name"], &chat["serves"], &chat["ready"]),
        (
            &json!("smollm2-135m-instruct"),
            &json!("provider main"),
            &json!(true)
        ),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_cannot_be_reached_falls_back_to_the_local_model() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = dead.local_addr().unwrap();
    drop(dead);
    let config = format!(
        "[assistant]\noffline_fallback = true\n\n[models]\ndir = \"{}\"\n\n\
         [[providers]]\nname = \"main\"\nkind = \"openai\"\nbase_url = \"http://{address}/v1\"\nmodel = \"gpt-4o-mini\"\nmax_retries = 0\n",
        test_models_dir().display()
    );
    let node = TroupeProcess::start_with_env(binary(), &config, &NO_KEYS)
        .await
        .expect("troupe starts");
    let reply = reply_text(&ask(&node, "What is the capital of France?").await);
    assert!(reply.contains("Paris"), "{reply}");
}
