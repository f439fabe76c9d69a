//! A provider served over a real `nats-server` to a node on another connection: text
//! streams in order, failures keep their kind, nobody serving fails at once, and a call
//! dropped on the asking node stops the serving node's call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use troupe_actors::provider::{ChatMessage, Role};
use troupe_actors::testing::{Scripted, ScriptedProvider};

use super::*;

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        system_prompt: Some("be brief".into()),
        messages: vec![ChatMessage::new(Role::User, text)],
        stream: true,
        ..ChatRequest::default()
    }
}

fn recording() -> (DeltaSink, Arc<Mutex<Vec<String>>>) {
    let pieces = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&pieces);
    let deltas = DeltaSink::new(move |text| sink.lock().unwrap().push(text.to_owned()));
    (deltas, pieces)
}

async fn until(what: impl Fn() -> bool, description: &str) {
    for _ in 0..1_000 {
        if what() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{description}: not within ten seconds");
}

#[tokio::test]
async fn a_model_on_one_node_answers_the_calls_of_another_streaming() {
    let server = troupe_testkit::nats::NatsServer::start().await;
    let asking = ClusterChatProvider::new(
        async_nats::connect(server.url()).await.unwrap(),
        "offline",
        "smollm2-135m-instruct",
    );
    let refused = asking
        .complete(&request("hi"), &DeltaSink::discard())
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ProviderErrorKind::Unavailable, "{refused}");

    let model = Arc::new(ScriptedProvider::new(
        "offline",
        [
            Scripted::Text(vec!["The capital ".into(), "is ".into(), "Paris.".into()]),
            Scripted::Fail(ProviderErrorKind::RateLimited, None),
            Scripted::StreamThenHang(vec!["Once upon".into()]),
        ],
    ));
    let serving = async_nats::connect(server.url()).await.unwrap();
    serve_chat_model(serving.clone(), model.clone(), "smollm2-135m-instruct")
        .await
        .unwrap();
    crate::models::round_trip(&serving).await;

    let (deltas, pieces) = recording();
    let completion = asking
        .complete(&request("What is the capital of France?"), &deltas)
        .await
        .unwrap();
    assert_eq!(completion.text, "The capital is Paris.");
    assert_eq!(*pieces.lock().unwrap(), ["The capital ", "is ", "Paris."]);
    assert_eq!(
        model.requests()[0],
        request("What is the capital of France?"),
        "the whole request arrives"
    );
    let failed = asking
        .complete(&request("again"), &DeltaSink::discard())
        .await
        .unwrap_err();
    assert_eq!(failed.kind, ProviderErrorKind::RateLimited, "{failed}");

    // Dropping the call on the asking node stops the serving node's.
    let (deltas, pieces) = recording();
    let call = tokio::spawn(async move { asking.complete(&request("a story"), &deltas).await });
    until(|| !pieces.lock().unwrap().is_empty(), "the story streams").await;
    assert_eq!(model.calls_in_progress(), 1);
    call.abort();
    until(|| model.calls_in_progress() == 0, "the serving call stops").await;
}
