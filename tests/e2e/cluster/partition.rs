//! Partitions at the network: node-2 runs on a test host in its own network namespace and
//! reaches NATS over a veth link, as its clients reach it. The link is cut (packets vanish
//! both ways: no reset, no refusal) under load, and healed. Nothing acknowledged is lost,
//! no session runs on two nodes at once, and the cut-off node says it is not ready within
//! its lease.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use troupe_testkit::cluster::ClusterSandbox;
use troupe_testkit::fake_llm::FakeLlm;
use troupe_testkit::nats::NatsServer;
use troupe_testkit::netns::NetHost;
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::proxy::CuttableProxy;

use super::{
    assert_histories_match, history, node_config, rest_load, send_message, settle, turns_of,
};
use crate::support::{binary, openai_provider};

const TOKEN: &str = "partition-test-token-0123456789";
/// The default `cluster.lease_ms`: how long a node's shards stay its own without renewal.
const LEASE: Duration = Duration::from_millis(1_500);

/// What node-2's own clients sent, and what came back before the cut.
#[derive(Default)]
struct HostTally {
    /// Conversation → (message id → reply id), for the answers that arrived.
    answered: BTreeMap<String, BTreeMap<String, String>>,
    /// (conversation, message id) of requests that got no answer.
    unanswered: Vec<(String, String)>,
}

async fn post_to_host(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    conversation: &str,
) -> Result<Value, String> {
    let request = client
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(3));
    send_message(request, id, conversation, id).await
}

/// Clients of node-2 itself: each conversation sends in turn until `stop`.
async fn host_load(base: String, stop: tokio_util::sync::CancellationToken) -> HostTally {
    let client = reqwest::Client::new();
    let mut tally = HostTally::default();
    let mut turn = 0;
    while !stop.is_cancelled() {
        for index in 0..4 {
            let conversation = format!("h{index}");
            let id = format!("{conversation}-m{turn}");
            match post_to_host(&client, &base, &id, &conversation).await {
                Ok(reply) => {
                    let reply_id = reply["id"].as_str().unwrap_or_default().to_owned();
                    tally
                        .answered
                        .entry(conversation)
                        .or_default()
                        .insert(id, reply_id);
                }
                Err(_) => tally.unanswered.push((conversation, id)),
            }
        }
        turn += 1;
    }
    tally
}

/// `/readyz` of the host's node, asked from inside its namespace (the only place that can
/// still reach it during the cut).
async fn ready_inside(host: &NetHost, node: &TroupeProcess) -> Option<u16> {
    let output = tokio::process::Command::new("ip")
        .args(["netns", "exec", &host.name, "curl", "-s", "-m", "1"])
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/readyz", node.http_url()))
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_at_the_network_fences_itself_and_loses_nothing_acknowledged() {
    assert!(
        NetHost::supported(),
        "network namespaces need root and iproute2, as CI has"
    );
    let fake = FakeLlm::start(None).await;
    let config = node_config(&fake);
    let cluster =
        ClusterSandbox::start_on(NatsServer::start().await, binary(), 2, &config, &[], &[])
            .await
            .expect("node-0 and node-1 start");
    let host = NetHost::create(0).expect("the test host is made");
    let nats_door = CuttableProxy::start_on(
        (host.outside_address, 0).into(),
        ([127, 0, 0, 1], cluster.nats.port()).into(),
    )
    .await;
    let nats_url = format!("nats://{}", nats_door.address);
    // The model, too, is reached over the link (the host has a loopback of its own).
    let llm_address: std::net::SocketAddr = fake
        .openai_base_url()
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .parse()
        .expect("the fake model listens on an address");
    let llm_door = CuttableProxy::start_on((host.outside_address, 0).into(), llm_address).await;
    let host_config = format!(
        "[assistant]\nhistory_window = 2000\n\n{}",
        openai_provider(&format!("http://{}/v1", llm_door.address), "")
    );
    let node2 = TroupeProcess::start_on_host(
        &host,
        binary(),
        &host_config,
        &[
            ("TROUPE_NATS_URL", &nats_url),
            ("TROUPE_NODE_ID", "node-2"),
            ("TROUPE_TOKEN", TOKEN),
        ],
    )
    .await
    .expect("node-2 starts on its host");
    let all = ["node-0", "node-1", "node-2"];
    settle(&cluster, 0, &all).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let bases = vec![cluster.nodes[0].http_url(), cluster.nodes[1].http_url()];
    let load = tokio::spawn(rest_load(bases.clone(), 20, "n".into(), stop.clone()));
    let stop_host = tokio_util::sync::CancellationToken::new();
    let on_host = tokio::spawn(host_load(node2.http_url(), stop_host.clone()));
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    host.cut().unwrap();
    let cut_at = Instant::now();
    let mut not_ready_after = None;
    while cut_at.elapsed() < LEASE * 4 {
        if ready_inside(&host, &node2).await == Some(503) {
            not_ready_after = Some(cut_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let not_ready_after = not_ready_after.expect("the cut-off node reports not-ready");
    assert!(
        not_ready_after <= LEASE + Duration::from_millis(500),
        "not-ready {not_ready_after:?} after the cut; the lease is {LEASE:?}"
    );
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    stop_host.cancel();
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    host.heal().unwrap();
    settle(&cluster, 0, &all).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let tally = load.await.unwrap();
    let host_tally = on_host.await.unwrap();

    assert!(
        tally.errors.is_empty(),
        "requests failed: {:?}",
        tally.errors
    );
    assert_eq!(tally.sent, tally.replied);
    assert_histories_match(&bases[0], &tally).await;
    assert!(
        !host_tally.answered.is_empty(),
        "node-2 answered its clients before the cut"
    );
    // What node-2 answered is in the history, once; what it did not, a retry with the same
    // id gets answered by the cluster, once.
    let client = reqwest::Client::new();
    for (conversation, id) in &host_tally.unanswered {
        let retried = super::post(&client, &bases[0], id, conversation, id).await;
        assert!(retried.is_ok(), "{id}: the retry is answered: {retried:?}");
    }
    for index in 0..4 {
        let conversation = format!("h{index}");
        // `turns_of` fails on a message processed twice.
        let stored = turns_of(&history(&client, &bases[0], &conversation).await);
        let answered = host_tally.answered.get(&conversation).into_iter().flatten();
        for (message, reply) in answered {
            assert_eq!(
                stored.get(message),
                Some(reply),
                "{conversation}: {message}"
            );
        }
        let retried = host_tally
            .unanswered
            .iter()
            .filter(|(of, _)| *of == conversation);
        for (_, message) in retried {
            assert!(
                stored.contains_key(message),
                "{conversation}: {message} is stored"
            );
        }
    }
    let log = node2.log();
    assert!(
        log.contains("stops serving its shards"),
        "the cut-off node fenced itself:\n{log}"
    );
    assert_eq!(
        ready_inside(&host, &node2).await,
        Some(200),
        "node-2 is ready again after the heal"
    );
}
