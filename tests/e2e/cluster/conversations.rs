//! A person's conversations in a cluster: listed, titled, renamed and deleted from any node,
//! since they and their titles live in the shared store (JetStream KV).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use troupe_testkit::fake_llm::FakeLlm;

use super::{sandbox, settle};

async fn call(
    client: &reqwest::Client,
    method: Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url).timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    (
        answer.status().as_u16(),
        answer.json().await.unwrap_or(Value::Null),
    )
}

fn titles(listed: &Value) -> Vec<(String, Value)> {
    listed["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["conversation_id"].as_str().unwrap().to_owned(),
                item["title"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_lists_titles_renames_and_deletes_the_same_conversations() {
    let fake = FakeLlm::start(None).await;
    let cluster = sandbox(2, &fake, &[]).await;
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    let client = reqwest::Client::new();
    let [first, second] = [cluster.nodes[0].http_url(), cluster.nodes[1].http_url()];
    for (conversation, text) in [
        ("rita", "Tulips in spring"),
        ("rita/roses", "Roses in June"),
    ] {
        let body = json!({"sender_id": "rita", "conversation_id": conversation, "payload": text});
        let (status, answer) = call(
            &client,
            Method::POST,
            format!("{first}/api/v1/messages"),
            Some(body),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    let list = |base: &str| format!("{base}/api/v1/conversations?sender=rita&platform=api");

    let (status, listed) = call(&client, Method::GET, list(&second), None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["total"], 2, "{listed}");

    // Titled on the second node (the double echoes the first message), seen on the first.
    let title = format!("{second}/api/v1/conversations/rita%2Froses/title?platform=api");
    let (status, titled) = call(&client, Method::POST, title, None).await;
    assert_eq!(
        (status, &titled["title"]),
        (200, &json!("echo: Roses in June")),
        "{titled}"
    );
    let (_, listed) = call(&client, Method::GET, list(&first), None).await;
    assert!(
        titles(&listed).contains(&("rita/roses".into(), json!("echo: Roses in June"))),
        "{listed}"
    );

    // Renamed on the first, seen on the second.
    let rename = format!("{first}/api/v1/conversations/rita%2Froses?platform=api");
    let (status, _) = call(
        &client,
        Method::PATCH,
        rename,
        Some(json!({"title": "Roses"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, listed) = call(&client, Method::GET, list(&second), None).await;
    assert!(
        titles(&listed).contains(&("rita/roses".into(), json!("Roses"))),
        "{listed}"
    );

    // Deleted on the second, gone on the first.
    let delete = format!("{second}/api/v1/conversations/rita%2Froses?platform=api");
    let (status, deleted) = call(&client, Method::DELETE, delete, None).await;
    assert_eq!(status, 200, "{deleted}");
    let (_, listed) = call(&client, Method::GET, list(&first), None).await;
    assert_eq!(titles(&listed), [("rita".to_owned(), Value::Null)]);
    let (status, _) = call(
        &client,
        Method::GET,
        format!("{first}/api/v1/sessions/api:rita%2Froses"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}
