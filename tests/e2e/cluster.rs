//! The cluster, end to end: a real `nats-server` and several real `troupe` nodes
//! (`ClusterSandbox`), driven over HTTP and WebSocket; nodes are killed, drained, partitioned
//! from NATS, and NATS itself restarts, and every acknowledged message must be answered
//! exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::cluster::ClusterSandbox;
use troupe_testkit::fake_llm::FakeLlm;

use crate::support::{binary, openai_provider};

const SHARDS: u64 = 64;

async fn sandbox(count: usize, fake: &FakeLlm, proxied: &[usize]) -> ClusterSandbox {
    let config = openai_provider(&fake.openai_base_url(), "");
    ClusterSandbox::start(binary(), count, &config, proxied)
        .await
        .expect("the cluster starts")
}

fn ids(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("node-{index}")).collect()
}

async fn settle(cluster: &ClusterSandbox, observer: usize, members: &[&str]) -> Value {
    cluster
        .wait_settled(observer, members, SHARDS, Duration::from_secs(20))
        .await
        .unwrap()
}

/// Posts a message; `Ok(reply)` or `Err(status and body)`.
async fn post(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    conversation: &str,
    text: &str,
) -> Result<Value, String> {
    let body = json!({"id": id, "sender_id": conversation, "payload": text});
    let response = client
        .post(format!("{base}/api/v1/messages"))
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|error| error.to_string())?;
    if status.is_success() {
        Ok(body["reply"].clone())
    } else {
        Err(format!("{status}: {body}"))
    }
}

async fn history(client: &reqwest::Client, base: &str, conversation: &str) -> Value {
    let response = client
        .get(format!("{base}/api/v1/sessions/api:{conversation}"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

/// For each user message id in a history, the reply ids that follow it; panics on a
/// message id seen twice (a message processed twice).
fn turns_of(history: &Value) -> BTreeMap<String, String> {
    let entries = history["history"].as_array().unwrap();
    let mut turns = BTreeMap::new();
    for pair in entries.chunks(2) {
        assert_eq!(pair[0]["role"], "user", "{history}");
        assert_eq!(pair[1]["role"], "assistant", "{history}");
        let asked = pair[0]["message_id"].as_str().unwrap().to_owned();
        let answered = pair[1]["message_id"].as_str().unwrap().to_owned();
        assert!(
            turns.insert(asked.clone(), answered).is_none(),
            "{asked} processed twice: {history}"
        );
    }
    turns
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_entering_any_node_reach_their_session_and_every_node_answers_for_it() {
    let fake = FakeLlm::start(None).await;
    let cluster = sandbox(3, &fake, &[]).await;
    let members = ids(3);
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let view = settle(&cluster, 0, &members).await;
    assert_eq!(view["node_id"], "node-0");
    let client = reqwest::Client::new();
    let urls: Vec<String> = cluster.nodes.iter().map(|node| node.http_url()).collect();
    for conversation in 0..24 {
        for turn in 0..3 {
            let base = &urls[(conversation + turn) % 3];
            let name = format!("c{conversation}");
            let reply = post(
                &client,
                base,
                &format!("{name}-t{turn}"),
                &name,
                &format!("turn {turn}"),
            )
            .await
            .unwrap();
            assert_eq!(reply["payload"], format!("echo: turn {turn}"));
            assert_eq!(reply["in_reply_to"], format!("{name}-t{turn}"));
        }
    }
    for conversation in [0, 7, 23] {
        let name = format!("c{conversation}");
        let views: Vec<Value> =
            futures_util::future::join_all(urls.iter().map(|base| history(&client, base, &name)))
                .await;
        assert!(
            views.windows(2).all(|pair| pair[0] == pair[1]),
            "every node shows the same history"
        );
        assert_eq!(turns_of(&views[0]).len(), 3);
    }
    // The third turn of a conversation was sent with its whole history, whichever node ran it.
    let longest = fake
        .requests()
        .iter()
        .map(|request| request.body["messages"].as_array().map_or(0, Vec::len))
        .max();
    assert_eq!(longest, Some(6), "system + 2 earlier turns + the question");
    let mut hops = 0.0;
    for base in &urls {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        hops += metric(&text, "troupe_cluster_hops_total");
    }
    assert!(
        hops > 0.0,
        "some messages were answered on another node than they entered"
    );
    let sessions: Value = client
        .get(format!("{}/api/v1/sessions", urls[2]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sessions["total"], 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_message_id_gets_the_same_reply_from_any_node_and_the_model_once() {
    let fake = FakeLlm::start(None).await;
    let cluster = sandbox(2, &fake, &[]).await;
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    let client = reqwest::Client::new();
    let first = post(
        &client,
        &cluster.nodes[0].http_url(),
        "same-id",
        "rita",
        "hello",
    )
    .await
    .unwrap();
    let again = post(
        &client,
        &cluster.nodes[1].http_url(),
        "same-id",
        "rita",
        "hello",
    )
    .await
    .unwrap();
    assert_eq!(first, again, "the stored reply, not a second one");
    assert_eq!(fake.requests().len(), 1, "the model was asked once");
    let text = client
        .get(format!("{}/metrics", cluster.nodes[1].http_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&text, "troupe_cluster_dedupes_total"),
        1.0,
        "JetStream dropped the repeat"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_the_cluster_view_follow_membership() {
    let fake = FakeLlm::start(None).await;
    let mut cluster = sandbox(2, &fake, &[]).await;
    let view = settle(&cluster, 1, &["node-0", "node-1"]).await;
    let node = &view["nodes"][0];
    assert_eq!(node["state"], "active");
    assert!(
        node["address"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    cluster.nodes[1].kill_hard().unwrap();
    let view = settle(&cluster, 0, &["node-0"]).await;
    assert_eq!(
        view["nodes"][0]["shards"], SHARDS,
        "the survivor took every shard"
    );
}
