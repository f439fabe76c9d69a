//! Token accounting across a cluster: every node reports the whole cluster's usage (each
//! follows the usage stream), and a person's daily budget holds whichever node runs their
//! conversations.

use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::cluster::ClusterSandbox;
use troupe_testkit::fake_llm::FakeLlm;

use super::settle;
use crate::support::{binary, eventually, openai_provider};

/// The budget of Ada's tokens per day.
const BUDGET: u64 = 30;

async fn usage(client: &reqwest::Client, base: &str) -> Value {
    client
        .get(format!("{base}/api/v1/usage?by=person&since=1h"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn tokens_of(report: &Value, person: &str) -> u64 {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == person)
        .map_or(0, |row| row["total_tokens"].as_u64().unwrap())
}

/// Ada says hello in a conversation of her own for `turn`, through `base`: the status and
/// body.
async fn hello(client: &reqwest::Client, base: &str, turn: usize) -> (u16, Value) {
    let response = client
        .post(format!("{base}/api/v1/messages"))
        .json(&json!({"id": format!("ada-{turn}"), "sender_id": "ada",
            "conversation_id": format!("ada-{turn}"), "payload": "hello"}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_reports_the_clusters_usage_and_a_budget_holds_wherever_turns_run() {
    let fake = FakeLlm::start(None).await;
    let config = format!(
        "[[budgets.people]]\nperson = \"api:ada\"\ntokens_per_day = {BUDGET}\n\n\
         [[prices]]\nmodel = \"fake-model\"\ninput = 1.0\noutput = 2.0\n\n{}",
        openai_provider(&fake.openai_base_url(), "")
    );
    let cluster = ClusterSandbox::start(binary(), 2, &config, &[])
        .await
        .expect("the cluster starts");
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    let bases: Vec<String> = cluster.nodes.iter().map(|node| node.http_url()).collect();
    let client = reqwest::Client::new();

    // Each turn in a conversation of its own (its session on its shard's owner), through
    // either node, until Ada's budget refuses one.
    let mut refused = None;
    for turn in 0..20 {
        let spent = tokens_of(&usage(&client, &bases[0]).await, "api:ada");
        let (status, body) = hello(&client, &bases[turn % 2], turn).await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
            assert!(spent >= BUDGET, "refused at {spent} of {BUDGET}");
            refused = Some(turn);
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(spent < BUDGET, "answered at {spent} of {BUDGET}");
        // Both nodes come to count the turn, whichever ran it.
        let client = &client;
        let bases = &bases;
        eventually(Duration::from_secs(10), || async move {
            let first = tokens_of(&usage(client, &bases[0]).await, "api:ada");
            let second = tokens_of(&usage(client, &bases[1]).await, "api:ada");
            first == second && first > spent
        })
        .await;
    }
    let refused = refused.expect("the budget refused a turn");
    assert!(refused >= 2, "a few turns ran first: {refused}");
    let (first, second) = (
        usage(&client, &bases[0]).await,
        usage(&client, &bases[1]).await,
    );
    assert_eq!(first["rows"], second["rows"], "one account of the cluster");
    assert_eq!(first["total"]["turns"].as_u64(), Some(refused as u64));
}
