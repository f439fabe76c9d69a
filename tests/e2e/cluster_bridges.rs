//! Bridges in a cluster: a bridge's receiving loop (here a Telegram poller) runs on exactly
//! one node, the others show `standby`, and when that node dies the loop moves and the
//! conversation goes on.

use std::time::Duration;

use serde_json::Value;
use troupe_testkit::cluster::ClusterSandbox;
use troupe_testkit::telegram::FakeTelegram;

use crate::support::binary;

const TOKEN: &str = "123456:cluster-token";

async fn states(cluster: &ClusterSandbox) -> Vec<String> {
    let mut states = Vec::new();
    for node in &cluster.nodes {
        let url = format!("{}/api/v1/bridges", node.http_url());
        let state = match reqwest::get(url).await {
            Ok(response) => response.json::<Value>().await.map_or_else(
                |_| "unreachable".to_owned(),
                |body| {
                    body["bridges"][0]["state"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                },
            ),
            Err(_) => "unreachable".to_owned(),
        };
        states.push(state);
    }
    states
}

async fn wait_states(cluster: &ClusterSandbox, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..400 {
        seen = states(cluster).await;
        if done(&seen) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_polls_and_the_poller_moves_when_it_dies() {
    let fake = FakeTelegram::start(TOKEN).await;
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[[bridges]]\nname = \"tg\"\nkind = \"telegram\"\ntoken_env = \"TG_TOKEN\"\napi_base = \"{}\"\npoll_timeout_secs = 1\nallow_from = [\"42\"]\n",
        fake.api_base()
    );
    let mut cluster =
        ClusterSandbox::start_with_env(binary(), 2, &config, &[], &[("TG_TOKEN", TOKEN)])
            .await
            .unwrap();
    cluster
        .wait_settled(0, &["node-0", "node-1"], 64, Duration::from_secs(20))
        .await
        .unwrap();
    let one_polls = |states: &[String]| {
        states.iter().filter(|state| *state == "connected").count() == 1
            && states.iter().filter(|state| *state == "standby").count() == 1
    };
    let seen = wait_states(&cluster, one_polls).await;
    assert!(one_polls(&seen), "{seen:?}");

    fake.user_says(42, "first");
    fake.wait_for_sent(Duration::from_secs(20), |sent| !sent.is_empty())
        .await;
    assert_eq!(fake.texts_to(42), vec!["first"]);

    let poller = seen.iter().position(|state| state == "connected").unwrap();
    cluster.nodes[poller].kill_hard().unwrap();
    let survivor = 1 - poller;
    let seen = wait_states(&cluster, |states| states[survivor] == "connected").await;
    assert_eq!(seen[survivor], "connected", "the poller moved: {seen:?}");

    fake.user_says(42, "second");
    fake.wait_for_sent(Duration::from_secs(20), |sent| sent.len() >= 2)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.texts_to(42),
        vec!["first", "second"],
        "calls {:?}\nsurvivor log:\n{}",
        fake.calls(),
        cluster.nodes[survivor].log()
    );
}
