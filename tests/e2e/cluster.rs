//! The cluster, end to end: a real `nats-server` and several real `troupe` nodes
//! (`ClusterSandbox`), driven over HTTP and WebSocket; nodes are killed, drained, partitioned
//! from NATS, and NATS itself restarts, and every acknowledged message must be answered
//! exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::cluster::ClusterSandbox;
use troupe_testkit::fake_llm::FakeLlm;

use crate::support::{binary, metrics_page, openai_provider};

mod canvas;
mod conversations;
mod inbox;
mod memory;
mod models;
mod ops;
mod partition;
mod pictures;
mod stop;
mod usage;
mod workflows;
use inbox::assert_inbox_drains;

const SHARDS: u64 = 64;

/// Every node's config: the fake model, and a history window long enough to hold every turn
/// of a test, so histories prove what happened.
fn node_config(fake: &FakeLlm) -> String {
    format!(
        "[assistant]\nhistory_window = 2000\n\n{}",
        openai_provider(&fake.openai_base_url(), "")
    )
}

async fn sandbox(count: usize, fake: &FakeLlm, proxied: &[usize]) -> ClusterSandbox {
    ClusterSandbox::start(binary(), count, &node_config(fake), proxied)
        .await
        .expect("the cluster starts")
}

fn ids(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("node-{index}")).collect()
}

async fn settle(cluster: &ClusterSandbox, observer: usize, members: &[&str]) -> Value {
    match cluster
        .wait_settled(observer, members, SHARDS, Duration::from_secs(20))
        .await
    {
        Ok(view) => view,
        Err(error) => {
            for (index, node) in cluster.nodes.iter().enumerate() {
                let log = node.log();
                let notable: Vec<&str> = log
                    .lines()
                    .filter(|line| {
                        !line.contains("nats connection") && !line.contains("async_nats")
                    })
                    .filter(|line| {
                        line.contains("WARN") || line.contains("ERROR") || line.contains("shard")
                    })
                    .collect();
                eprintln!("--- node-{index}:\n{}", notable.join("\n"));
            }
            eprintln!("--- shard keys:\n{}", shard_keys(cluster).await);
            panic!("{error}");
        }
    }
}

/// The shard keys as NATS holds them, for a failure message.
async fn shard_keys(cluster: &ClusterSandbox) -> String {
    use futures_util::StreamExt;
    let client = async_nats::connect(cluster.nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let bucket = jetstream.get_key_value("troupe_shards").await.unwrap();
    let mut keys = bucket.keys().await.unwrap();
    let mut lines = Vec::new();
    while let Some(Ok(key)) = keys.next().await {
        let entry = bucket.entry(&key).await.unwrap().unwrap();
        lines.push(format!(
            "{key} rev {} {:?} {}",
            entry.revision,
            entry.operation,
            String::from_utf8_lossy(&entry.value)
        ));
    }
    lines.sort();
    lines.join("\n")
}

/// Posts a message; `Ok(reply)` or `Err(status and body)`.
async fn post(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    conversation: &str,
    text: &str,
) -> Result<Value, String> {
    let request = client
        .post(format!("{base}/api/v1/messages"))
        .timeout(Duration::from_secs(30));
    send_message(request, id, conversation, text).await
}

/// Sends `request` (a `POST /api/v1/messages`) with the message; `Ok(reply)` or
/// `Err(status and body)`.
async fn send_message(
    request: reqwest::RequestBuilder,
    id: &str,
    conversation: &str,
    text: &str,
) -> Result<Value, String> {
    let body = json!({"id": id, "sender_id": conversation, "payload": text});
    let response = request
        .json(&body)
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
        hops += metric(&metrics_page(base).await, "troupe_cluster_hops_total");
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
    let text = metrics_page(&cluster.nodes[1].http_url()).await;
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
    assert_eq!(
        (&view["nodes"][0]["journal"], &view["nodes"][1]["journal"]),
        (&json!(true), &json!(true))
    );
    // Both read the turn journal: once each has watched the other for a lease, it opens.
    let opened = "every member reads the turn journal";
    for _ in 0..250 {
        if cluster.nodes.iter().all(|node| node.log().contains(opened)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for node in &cluster.nodes {
        assert!(node.log().contains(opened), "{}", node.log());
    }
    cluster.nodes[1].kill_hard().unwrap();
    let view = settle(&cluster, 0, &["node-0"]).await;
    assert_eq!(
        view["nodes"][0]["shards"], SHARDS,
        "the survivor took every shard"
    );
}

/// What a load run saw.
#[derive(Default)]
struct Tally {
    sent: usize,
    replied: usize,
    errors: Vec<String>,
    /// conversation → (message id → reply id) as the clients received them.
    replies: BTreeMap<String, BTreeMap<String, String>>,
    slowest: Duration,
}

/// Each conversation sends messages one after another, through the nodes in `bases` in
/// turn, until `stop` is set.
async fn rest_load(
    bases: Vec<String>,
    conversations: usize,
    prefix: String,
    stop: tokio_util::sync::CancellationToken,
) -> Tally {
    let client = reqwest::Client::new();
    let tasks = (0..conversations).map(|index| {
        let client = client.clone();
        let bases = bases.clone();
        let stop = stop.clone();
        let name = format!("{prefix}{index}");
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut turn = 0;
            while !stop.is_cancelled() {
                let base = &bases[(index + turn) % bases.len()];
                let id = format!("{name}-m{turn}");
                let started = std::time::Instant::now();
                tally.sent += 1;
                match post(&client, base, &id, &name, &format!("message {turn}")).await {
                    Ok(reply) => {
                        tally.replied += 1;
                        tally.slowest = tally.slowest.max(started.elapsed());
                        let reply_id = reply["id"].as_str().unwrap_or_default().to_owned();
                        tally
                            .replies
                            .entry(name.clone())
                            .or_default()
                            .insert(id, reply_id);
                    }
                    Err(error) => tally.errors.push(format!("{id} via {base}: {error}")),
                }
                turn += 1;
            }
            tally
        })
    });
    let mut total = Tally::default();
    for tally in futures_util::future::join_all(tasks).await {
        let tally = tally.unwrap();
        total.sent += tally.sent;
        total.replied += tally.replied;
        total.errors.extend(tally.errors);
        total.replies.extend(tally.replies);
        total.slowest = total.slowest.max(tally.slowest);
    }
    total
}

/// Every reply a client got is the one in the session's history, and no message was
/// processed twice.
async fn assert_histories_match(base: &str, tally: &Tally) {
    let client = reqwest::Client::new();
    for (conversation, replies) in &tally.replies {
        let stored = turns_of(&history(&client, base, conversation).await);
        for (message, reply) in replies {
            assert_eq!(
                stored.get(message),
                Some(reply),
                "{conversation}: the reply to {message} is the stored one"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_under_load_loses_and_duplicates_nothing() {
    let fake = FakeLlm::start(None).await;
    fake.set_echo_delay(Duration::from_millis(50));
    let mut cluster = sandbox(3, &fake, &[]).await;
    settle(&cluster, 0, &["node-0", "node-1", "node-2"]).await;
    let survivors = vec![cluster.nodes[0].http_url(), cluster.nodes[1].http_url()];
    let stop = tokio_util::sync::CancellationToken::new();
    let load = tokio::spawn(rest_load(survivors.clone(), 40, "k".into(), stop.clone()));
    // A WebSocket client on the doomed node: what it got acknowledged must still be answered.
    let mut socket = crate::support::connect(&cluster.nodes[2], &[]).await;
    let mut acked = Vec::new();
    for index in 0..30 {
        let id = format!("w{index}-m0");
        crate::support::send(&mut socket, json!({"type": "message", "id": id, "conversation_id": format!("w{index}"), "payload": "from the doomed node"})).await;
    }
    while acked.len() < 30 {
        let Some(frame) = crate::support::next_frame(&mut socket).await else {
            break;
        };
        if frame["type"] == "ack" {
            acked.push(frame["id"].as_str().unwrap().to_owned());
        }
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    cluster.nodes[2].kill_hard().unwrap();
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    stop.cancel();
    let tally = load.await.unwrap();
    assert!(
        tally.errors.is_empty(),
        "requests failed: {:?}",
        tally.errors
    );
    assert_eq!(tally.sent, tally.replied);
    assert!(tally.sent > 100, "there was load: {}", tally.sent);
    eprintln!(
        "sent {} replied {} slowest {:?}",
        tally.sent, tally.replied, tally.slowest
    );
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    assert_histories_match(&survivors[0], &tally).await;
    let client = reqwest::Client::new();
    for id in &acked {
        let conversation = id.split('-').next().unwrap();
        let mut answered = false;
        for _ in 0..100 {
            let response = client
                .get(format!(
                    "{}/api/v1/sessions/ws:{conversation}",
                    survivors[1]
                ))
                .send()
                .await
                .unwrap();
            if response.status().is_success() {
                let view: Value = response.json().await.unwrap();
                if turns_of(&view).contains_key(id) {
                    answered = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            answered,
            "acknowledged message {id} was answered after its node died"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_with_sigterm_loses_nothing() {
    let fake = FakeLlm::start(None).await;
    fake.set_echo_delay(Duration::from_millis(20));
    let mut cluster = sandbox(3, &fake, &[]).await;
    let all = ["node-0", "node-1", "node-2"];
    settle(&cluster, 0, &all).await;
    let mut combined = Tally::default();
    for restarting in 0..3 {
        let others: Vec<String> = (0..3)
            .filter(|index| *index != restarting)
            .map(|index| cluster.nodes[index].http_url())
            .collect();
        let stop = tokio_util::sync::CancellationToken::new();
        let load = tokio::spawn(rest_load(
            others.clone(),
            20,
            format!("r{restarting}-"),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let code = cluster.nodes[restarting]
            .terminate(Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(code, Some(0), "a drained node exits 0");
        let log = cluster.nodes[restarting].log();
        assert!(
            log.contains("handed shards over"),
            "it handed its shards over:\n{log}"
        );
        cluster.nodes[restarting].restart().await.unwrap();
        settle(&cluster, 0, &all).await;
        stop.cancel();
        let tally = load.await.unwrap();
        assert!(
            tally.errors.is_empty(),
            "requests failed: {:?}",
            tally.errors
        );
        assert_eq!(tally.sent, tally.replied);
        combined.replies.extend(tally.replies);
    }
    assert_histories_match(&cluster.nodes[1].http_url(), &combined).await;
    let text = metrics_page(&cluster.nodes[0].http_url()).await;
    assert!(metric(&text, "troupe_cluster_handovers_total") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reconnect_after_a_nats_restart_and_keep_every_conversation() {
    let fake = FakeLlm::start(None).await;
    let mut cluster = sandbox(2, &fake, &[]).await;
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    let client = reqwest::Client::new();
    let bases: Vec<String> = cluster.nodes.iter().map(|node| node.http_url()).collect();
    let mut replies: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let talk = async |round: usize, replies: &mut BTreeMap<String, BTreeMap<String, String>>| {
        for conversation in 0..10 {
            let name = format!("n{conversation}");
            let id = format!("{name}-m{round}");
            let reply = post(
                &client,
                &bases[(conversation + round) % 2],
                &id,
                &name,
                "hi",
            )
            .await
            .unwrap();
            replies
                .entry(name)
                .or_default()
                .insert(id, reply["id"].as_str().unwrap().to_owned());
        }
    };
    talk(0, &mut replies).await;
    // Turns still running when NATS goes down: their messages were delivered to consumers
    // whose state the restart loses (it is kept in memory), so the recreated consumers
    // must deliver them again, and the sessions answer the repeat with the same reply.
    fake.set_echo_delay(Duration::from_millis(1500));
    let slow_conversations = 0..4;
    let in_flight: Vec<_> = slow_conversations
        .clone()
        .map(|conversation| {
            let (client, base) = (client.clone(), bases[conversation % 2].clone());
            tokio::spawn(async move {
                let name = format!("n{conversation}");
                let id = format!("{name}-during");
                let reply = post(&client, &base, &id, &name, "slow").await;
                (name, id, reply)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.nats.restart().await;
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    settle(&cluster, 1, &["node-0", "node-1"]).await;
    fake.set_echo_delay(Duration::ZERO);
    for turn in in_flight {
        let (name, id, reply) = turn.await.unwrap();
        let reply = reply.unwrap_or_else(|error| panic!("{id} got no reply: {error}"));
        replies
            .entry(name)
            .or_default()
            .insert(id, reply["id"].as_str().unwrap().to_owned());
    }
    talk(1, &mut replies).await;
    let tally = Tally {
        replies,
        ..Tally::default()
    };
    assert_histories_match(&bases[0], &tally).await;
    for (conversation, turns) in &tally.replies {
        // Conversations `n0`…`n3` had one more turn: the slow one across the restart.
        let slow = slow_conversations
            .clone()
            .any(|index| *conversation == format!("n{index}"));
        let expected = if slow { 3 } else { 2 };
        assert_eq!(turns.len(), expected, "{conversation}");
    }
    assert_inbox_drains(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_nats_stops_answering_and_its_sessions_move_without_split_brain() {
    let fake = FakeLlm::start(None).await;
    let cluster = sandbox(3, &fake, &[2]).await;
    let all = ["node-0", "node-1", "node-2"];
    settle(&cluster, 0, &all).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let bases = vec![cluster.nodes[0].http_url(), cluster.nodes[1].http_url()];
    let load = tokio::spawn(rest_load(bases.clone(), 20, "p".into(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.proxies[2].as_ref().unwrap().cut();
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    cluster.proxies[2].as_ref().unwrap().heal();
    settle(&cluster, 0, &all).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let tally = load.await.unwrap();
    assert!(
        tally.errors.is_empty(),
        "requests failed: {:?}",
        tally.errors
    );
    assert_eq!(tally.sent, tally.replied);
    assert_histories_match(&bases[0], &tally).await;
    let log = cluster.nodes[2].log();
    assert!(
        log.contains("stops serving its shards"),
        "the cut-off node fenced itself:\n{log}"
    );
}

#[tokio::test]
async fn a_node_that_cannot_reach_nats_refuses_to_start_and_says_why() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", closed.local_addr().unwrap());
    drop(closed);
    let error = troupe_testkit::process::TroupeProcess::start_with_env(
        binary(),
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n",
        &[("TROUPE_NATS_URL", &url)],
    )
    .await
    .err()
    .expect("no node without its cluster")
    .to_string();
    assert!(error.contains("joining the cluster"), "{error}");
    assert!(error.contains("cannot connect to nats"), "{error}");
}

/// The trace id a log line carries (`trace_id=<32 hex>`), if any.
fn trace_ids(log: &str, marker: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains(marker))
        .filter_map(|line| {
            // Event fields print bare, span fields as debug strings (quoted).
            let start = line.find("trace_id=")? + "trace_id=".len();
            let value = line[start..].trim_start_matches('"');
            value.get(..32).map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_follows_a_message_from_its_ingress_node_to_its_owner() {
    let fake = FakeLlm::start(None).await;
    let config = openai_provider(&fake.openai_base_url(), "");
    let cluster = ClusterSandbox::start_with_env(
        binary(),
        2,
        &config,
        &[],
        &[("RUST_LOG", "info,troupe_cluster=debug")],
    )
    .await
    .unwrap();
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    let client = reqwest::Client::new();
    // Enough conversations that some are owned by the other node.
    for conversation in 0..16 {
        post(
            &client,
            &cluster.nodes[0].http_url(),
            &format!("t{conversation}"),
            &format!("t{conversation}"),
            "hi",
        )
        .await
        .unwrap();
    }
    let stored = trace_ids(&cluster.nodes[0].log(), "message stored in the inbox");
    assert_eq!(
        stored.len(),
        16,
        "every message got a trace id at its ingress"
    );
    let answered_elsewhere = trace_ids(&cluster.nodes[1].log(), "turn answered");
    assert!(
        !answered_elsewhere.is_empty(),
        "node-1 owns some of the sessions"
    );
    for trace_id in &answered_elsewhere {
        assert!(
            trace_id.bytes().all(|byte| byte.is_ascii_hexdigit()),
            "{trace_id}: {}",
            cluster.nodes[1].log()
        );
        assert!(
            stored.contains(trace_id),
            "{trace_id} was created at node-0's ingress"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shards_the_first_node_claimed_before_others_joined_fail_over_too() {
    // node-0 claimed every shard before node-1 existed: node-1 must know those claims
    // (from the bucket's history, not only from changes it saw) to take them over.
    let fake = FakeLlm::start(None).await;
    let mut cluster = sandbox(2, &fake, &[]).await;
    settle(&cluster, 1, &["node-0", "node-1"]).await;
    cluster.nodes[0].kill_hard().unwrap();
    let view = settle(&cluster, 1, &["node-1"]).await;
    assert_eq!(view["nodes"][0]["shards"], SHARDS, "{view}");
    let client = reqwest::Client::new();
    for conversation in 0..8 {
        let name = format!("after-{conversation}");
        post(
            &client,
            &cluster.nodes[1].http_url(),
            &name,
            &name,
            "still there?",
        )
        .await
        .unwrap();
    }
}
