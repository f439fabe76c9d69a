//! The operator's dashboard in a cluster: any node's stream shows every member, which node
//! owns how many shards (all of them owned once settled), NATS connected, and where each
//! cluster-wide singleton runs.

use std::time::Duration;

use serde_json::Value;
use troupe_testkit::cluster::ClusterSandbox;
use troupe_testkit::fake_llm::FakeLlm;
use troupe_testkit::telegram::FakeTelegram;

use super::{SHARDS, node_config, settle};
use crate::support::{binary, eventually, first_overview};

const TG_TOKEN: &str = "123456:CLUSTER-OPS";

fn singletons_placed(overview: &Value) -> bool {
    let singletons = overview["cluster"]["singletons"].as_array().unwrap();
    !singletons.is_empty()
        && singletons
            .iter()
            .all(|singleton| matches!(singleton["node"].as_str(), Some("node-0" | "node-1")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_members_shard_owners_and_where_singletons_run() {
    let fake = FakeLlm::start(None).await;
    // A bridge: its receiving loop is a singleton, which runs on one node of the two.
    let telegram = FakeTelegram::start(TG_TOKEN).await;
    let config = format!(
        "{}\n[[bridges]]\nname = \"tg\"\nkind = \"telegram\"\ntoken_env = \"TG_TOKEN\"\napi_base = \"{}\"\npoll_timeout_secs = 1\n",
        node_config(&fake),
        telegram.api_base()
    );
    let cluster =
        ClusterSandbox::start_with_env(binary(), 2, &config, &[], &[("TG_TOKEN", TG_TOKEN)])
            .await
            .expect("the cluster starts");
    settle(&cluster, 1, &["node-0", "node-1"]).await;
    let node = &cluster.nodes[1];
    eventually(Duration::from_secs(20), || async move {
        singletons_placed(&first_overview(node, None).await)
    })
    .await;
    let overview = first_overview(node, None).await;
    let view = &overview["cluster"];
    assert_eq!(view["node_id"], "node-1");
    assert_eq!(view["nats"], "connected");
    assert_eq!(view["ready"], true);
    let members: Vec<&str> = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| member["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 2, "{members:?}");
    let owned: u64 = view["shards_by_owner"]
        .as_object()
        .unwrap()
        .values()
        .map(|count| count.as_u64().unwrap())
        .sum();
    assert_eq!(owned + view["unowned_shards"].as_u64().unwrap(), SHARDS);
    assert_eq!(view["unowned_shards"], 0, "settled: every shard owned");
    assert_eq!(view["shards"], SHARDS);
}
