//! Long-term memory in a three-node cluster, on the local all-MiniLM-L6-v2: what a person
//! told one node is recalled in a new conversation through another after the first was
//! killed with `kill -9`, and forgetting it through a third forgets it on every node.

use std::time::Duration;

use troupe_testkit::cluster::ClusterSandbox;
use troupe_testkit::fake_llm::FakeLlm;

use super::{node_config, settle};
use crate::memory::{ask_on_the_web, assert_recalled, memories_of};
use crate::support::{
    binary, call, connect_as, eventually, frames_until_final, send, test_models_dir,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fact_told_to_one_node_is_recalled_through_another_after_a_kill_9_until_forgotten() {
    let fake = FakeLlm::start(None).await;
    let config = format!(
        "{}\n[models]\ndir = \"{}\"\ndevice = \"cpu\"\n",
        node_config(&fake),
        test_models_dir().display()
    );
    let mut cluster = ClusterSandbox::start(binary(), 3, &config, &[])
        .await
        .expect("the cluster starts");
    settle(&cluster, 0, &["node-0", "node-1", "node-2"]).await;
    let mut socket = connect_as(&cluster.nodes[0], "ada").await;
    send(
        &mut socket,
        serde_json::json!({"type": "message", "id": "t1", "payload": "My cat is called Mimi.",
                           "conversation_id": "ada/told"}),
    )
    .await;
    let frames = frames_until_final(&mut socket, "t1").await;
    assert_eq!(frames.last().unwrap()["type"], "reply", "{frames:?}");
    drop(socket);
    // The exchange is kept in the background, in the cluster: another node lists it.
    eventually(Duration::from_secs(30), || async {
        !memories_of(&cluster.nodes[1], "ws:ada").await.is_empty()
    })
    .await;
    cluster.nodes[0].kill_hard().unwrap();
    settle(&cluster, 1, &["node-1", "node-2"]).await;

    let (recall, system) = ask_on_the_web(&cluster.nodes[2], &fake, "w1").await;
    assert_recalled(recall, &system, "My cat is called Mimi.");

    // Both exchanges are kept; forgetting about the cat through node 1 forgets them on
    // node 2 too.
    eventually(Duration::from_secs(30), || async {
        memories_of(&cluster.nodes[2], "ws:ada").await.len() == 2
    })
    .await;
    let (status, forgotten) = call(
        &cluster.nodes[1],
        reqwest::Method::DELETE,
        "/api/v1/memory/ws:ada?about=my%20cat",
    )
    .await;
    assert_eq!(status, 200, "{forgotten}");
    assert_eq!(
        forgotten["forgotten"].as_array().map(Vec::len),
        Some(2),
        "{forgotten}"
    );
    eventually(Duration::from_secs(30), || async {
        memories_of(&cluster.nodes[2], "ws:ada").await.is_empty()
    })
    .await;
    let (recall, system) = ask_on_the_web(&cluster.nodes[2], &fake, "w2").await;
    assert_eq!(recall, None, "nothing is recalled");
    assert!(!system.contains("Mimi"), "{system}");
}
