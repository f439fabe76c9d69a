//! Local models shared by the cluster: a node without the embedding model (no ONNX Runtime,
//! no files) embeds with another node's, for `/v1/embeddings` and for long-term memory, and
//! says the model is unavailable once no node runs it; the chat model of one node answers
//! the conversations of every node.

use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::cluster::ClusterSandbox;
use troupe_testkit::fake_llm::FakeLlm;
use troupe_testkit::nats::NatsServer;
use troupe_testkit::process::TroupeProcess;

use super::{node_config, settle};
use crate::local_chat::chat_model_status;
use crate::memory::memories_of;
use crate::support::{
    binary, connect_as, eventually, frames_until_final, get, metrics_page, post_json_as, send,
    test_models_dir,
};

async fn embed(node: &TroupeProcess, text: &str) -> (u16, Value) {
    let body = json!({"model": "all-minilm-l6-v2", "input": [text]});
    post_json_as(node, None, "/v1/embeddings", &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_models_embeds_and_remembers_with_another_nodes_model() {
    let fake = FakeLlm::start(None).await;
    let with_models = format!(
        "{}\n[models]\ndir = \"{}\"\ndevice = \"cpu\"\n",
        node_config(&fake),
        test_models_dir().display()
    );
    let without = node_config(&fake);
    let mut cluster = ClusterSandbox::start_each(
        NatsServer::start().await,
        binary(),
        &[&with_models, &without],
        &[],
        &[],
    )
    .await
    .expect("the cluster starts");
    settle(&cluster, 0, &["node-0", "node-1"]).await;

    let (status, local) = embed(&cluster.nodes[0], "My cat is called Mimi.").await;
    assert_eq!(status, 200, "{local}");
    let (status, remote) = embed(&cluster.nodes[1], "My cat is called Mimi.").await;
    assert_eq!(status, 200, "{remote}");
    assert_eq!(
        remote["data"][0]["embedding"], local["data"][0]["embedding"],
        "the same model's vector"
    );
    let (_, status) = get(&cluster.nodes[1], "/api/v1/models").await;
    assert_eq!(
        status["models"][0]["service"], "the nodes of the cluster that run it",
        "{status}"
    );

    // Memory works on the node without models.
    let mut socket = connect_as(&cluster.nodes[1], "ada").await;
    send(
        &mut socket,
        json!({"type": "message", "id": "t1", "payload": "My cat is called Mimi."}),
    )
    .await;
    let frames = frames_until_final(&mut socket, "t1").await;
    assert_eq!(frames.last().unwrap()["type"], "reply", "{frames:?}");
    eventually(Duration::from_secs(30), || async {
        !memories_of(&cluster.nodes[1], "ws:ada").await.is_empty()
    })
    .await;

    cluster.nodes[0].kill_hard().unwrap();
    let (status, refused) = embed(&cluster.nodes[1], "anything").await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (503, Some("model_unavailable")),
        "{refused}"
    );
}

/// `troupe_local_model_items_total` of `model` on the node at `base`.
async fn items_of(base: &str, model: &str) -> u64 {
    let page = metrics_page(base).await;
    page.lines()
        .find(|line| {
            line.starts_with("troupe_local_model_items_total")
                && line.contains(&format!("model=\"{model}\""))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |items| items as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_model_of_one_node_answers_the_conversations_of_every_node() {
    let provider = "[memory]\nenabled = false\n\n[[providers]]\nname = \"main\"\nkind = \"local\"\nmodel = \"smollm2-135m-instruct\"\n";
    let with_model = format!(
        "{provider}\n[models]\ndir = \"{}\"\n",
        test_models_dir().display()
    );
    let cluster = ClusterSandbox::start_each(
        NatsServer::start().await,
        binary(),
        &[&with_model, provider],
        &[],
        &[],
    )
    .await
    .expect("the cluster starts");
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    let (chat, status) = chat_model_status(&cluster.nodes[1]).await;
    assert_eq!(
        chat["service"], "the nodes of the cluster that run it",
        "{status}"
    );

    // Conversations through the node without the file land on both nodes' shards; every
    // one is answered by the one node's model, streaming.
    let conversations = 6;
    let mut socket = connect_as(&cluster.nodes[1], "ada").await;
    for index in 0..conversations {
        let id = format!("q{index}");
        send(
            &mut socket,
            json!({"type": "message", "id": id, "payload": "What is the capital of France?",
                   "conversation_id": format!("ada/c{index}")}),
        )
        .await;
        let frames = frames_until_final(&mut socket, &id).await;
        let reply = frames.last().unwrap();
        assert_eq!(reply["type"], "reply", "{frames:?}");
        assert!(
            reply["payload"]
                .as_str()
                .unwrap_or_default()
                .contains("Paris"),
            "{reply}"
        );
        assert!(
            frames.iter().any(|frame| frame["type"] == "delta"),
            "{frames:?}"
        );
    }
    assert_eq!(
        items_of(&cluster.nodes[0].http_url(), "smollm2-135m-instruct").await,
        conversations,
        "node-0's model answered them all"
    );
    assert_eq!(
        items_of(&cluster.nodes[1].http_url(), "smollm2-135m-instruct").await,
        0
    );
}
