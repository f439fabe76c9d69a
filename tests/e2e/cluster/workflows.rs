//! Workflows in a cluster: three real nodes on a real `nats-server`, the Telegram double and
//! the counting reports skill of `crate::workflows`.
//!
//! - A run is killed with SIGKILL on whichever node holds it, at every step boundary in turn
//!   (two boundaries a run, four runs), and finishes on another node with each skill call
//!   done once and its message delivered once.
//! - A one-second schedule fires fifty times while the node that schedules is killed: no
//!   firing runs twice or sends twice, and none is skipped silently.
//! - A run waiting for a person's reply gets it when the reply enters another node (the one
//!   polling Telegram), and the person is acknowledged, not answered.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use troupe_testkit::cluster::ClusterSandbox;
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::telegram::FakeTelegram;

use crate::support::{binary, eventually, get, http};
use crate::workflows::{
    BOOKING, ReportsSkill, TOKEN, WAIT, answered_yes, config, firings, got_when, put_toml,
    skill_ready,
};

const MEMBERS: [&str; 3] = ["node-0", "node-1", "node-2"];

/// The brief of `crate::workflows` with its steps named `<step>_<k>` and its summary
/// naming the run, so four of them can each be held at their own points.
fn brief(k: usize) -> String {
    format!(
        r#"
name = "brief-{k}"
owner = "person:ada"

[[steps]]
id = "fetch_{k}"
[[steps.branches]]
steps = [{{ id = "sales_{k}", tool = "reports.fetch", arguments = {{ source = "sales{k}" }} }}]
[[steps.branches]]
steps = [{{ id = "support_{k}", tool = "reports.fetch", arguments = {{ source = "support{k}" }} }}]

[[steps]]
id = "summary_{k}"
model = "Run {k}: {{{{ steps.fetch_{k}.output.0.total }}}} and {{{{ steps.fetch_{k}.output.1.total }}}}"

[[steps]]
id = "tell_{k}"
send = "{{{{ steps.summary_{k}.output }}}}"
to = "tg:42"
"#
    )
}

/// The two boundaries each run is killed at: every boundary of a step, once.
const KILLS: [[&str; 2]; 4] = [
    ["before:sales", "after:summary"],
    ["after:sales", "before:tell"],
    ["finished:sales", "after:tell"],
    ["before:summary", "finished:tell"],
];

async fn start_cluster(fake: &FakeTelegram, skill_url: &str, holds: &[&str]) -> ClusterSandbox {
    ClusterSandbox::start_with_env(
        binary(),
        MEMBERS.len(),
        &config(fake, skill_url, holds),
        &[],
        &[
            ("TG_TOKEN", TOKEN),
            ("SKILL_SECRET", "a-secret-shared-with-reports"),
        ],
    )
    .await
    .expect("the cluster starts")
}

async fn settled(cluster: &ClusterSandbox) {
    cluster
        .wait_settled(0, &MEMBERS, 64, WAIT)
        .await
        .expect("the cluster settles");
}

fn holds(node: &TroupeProcess) -> usize {
    node.log().matches("held at its test hold point").count()
}

/// Waits until a live node holds the run at a new point; answers which.
async fn next_hold(cluster: &ClusterSandbox, seen: &mut [usize]) -> usize {
    let started = std::time::Instant::now();
    loop {
        for (index, node) in cluster.nodes.iter().enumerate() {
            if node.pid().is_some() && holds(node) > seen[index] {
                seen[index] = holds(node);
                return index;
            }
        }
        if started.elapsed() > WAIT {
            for (index, node) in cluster.nodes.iter().enumerate() {
                let notable: Vec<String> = node
                    .log()
                    .lines()
                    .filter(|line| {
                        line.contains("workflow") || line.contains("WARN") || line.contains("ERROR")
                    })
                    .map(str::to_owned)
                    .collect();
                eprintln!("--- node-{index}:\n{}", notable.join("\n"));
            }
            panic!("the run was never held again");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a run of `workflow` through `node` with `Idempotency-Key: key`; answers its id.
async fn start_once(node: &TroupeProcess, workflow: &str, key: &str) -> String {
    let started = http()
        .post(format!(
            "{}/api/v1/workflows/{workflow}/runs",
            node.http_url()
        ))
        .header("idempotency-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let run: Value = started.json().await.unwrap();
    let run = run["run"]["run"].as_str().unwrap().to_owned();
    assert_eq!(
        run,
        troupe_workflows::journal::event_run_id(workflow, "api", key)
    );
    run
}

/// The live node singleton `name` runs on now, as the nodes' logs tell.
fn holder(cluster: &ClusterSandbox, name: &str) -> Option<usize> {
    let named = format!("name={name}");
    let mut holders = cluster.nodes.iter().enumerate().filter(|(_, node)| {
        node.pid().is_some()
            && node
                .log()
                .lines()
                .rfind(|line| line.ends_with(&named) || line.contains(&format!("{named} ")))
                .is_some_and(|line| line.contains("singleton started on this node"))
    });
    let first = holders.next().map(|(index, _)| index);
    first.filter(|_| holders.next().is_none())
}

fn alive(cluster: &ClusterSandbox) -> &TroupeProcess {
    cluster
        .nodes
        .iter()
        .find(|node| node.pid().is_some())
        .expect("a node is alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_at_every_step_boundary_finishes_on_another_node_with_each_effect_once() {
    let fake = FakeTelegram::start(TOKEN).await;
    let (skill, skill_url) = ReportsSkill::start().await;
    let points: Vec<String> = KILLS
        .iter()
        .enumerate()
        .flat_map(|(index, pair)| pair.map(|point| format!("{point}_{}", index + 1)))
        .collect();
    let points: Vec<&str> = points.iter().map(String::as_str).collect();
    let mut cluster = start_cluster(&fake, &skill_url, &points).await;
    settled(&cluster).await;
    for node in &cluster.nodes {
        skill_ready(node).await;
    }
    for k in 1..=KILLS.len() {
        put_toml(&cluster.nodes[k % 3], &brief(k)).await;
    }
    // Added through one node, the definitions reach every node.
    for node in &cluster.nodes {
        eventually(WAIT, || async {
            get(node, &format!("/api/v1/workflows/brief-{}", KILLS.len()))
                .await
                .0
                == 200
        })
        .await;
    }
    let mut seen: Vec<usize> = cluster.nodes.iter().map(holds).collect();
    for (index, pair) in KILLS.iter().enumerate() {
        let k = index + 1;
        let workflow = format!("brief-{k}");
        // Started through a node that may not hold the run: it is journaled there and
        // taken up by the node that holds the run's partition. Sent again through another
        // node with the same key, it starts nothing and answers the same run.
        let run = start_once(&cluster.nodes[index % 3], &workflow, &format!("kill-{k}")).await;
        let again = start_once(
            &cluster.nodes[(index + 1) % 3],
            &workflow,
            &format!("kill-{k}"),
        )
        .await;
        assert_eq!(run, again);
        let mut killed = Vec::new();
        for point in pair {
            let holder = next_hold(&cluster, &mut seen).await;
            eprintln!("run {run}: held at {point} on node-{holder}; kill -9");
            cluster.nodes[holder].kill_hard().unwrap();
            killed.push(holder);
        }
        let survivor = alive(&cluster);
        let path = format!("/api/v1/workflows/{workflow}/runs/{run}");
        let shown = got_when(survivor, &path, |shown| {
            shown["run"]["status"] == "finished"
        })
        .await;
        eprintln!("run {run} finished: {}", shown["run"]);
        let text = format!("Run {k}: {} and {}", 5 * 100 + 100, 7 * 100 + 100);
        fake.wait_for_sent(WAIT, |_| fake.texts_to(42).contains(&text))
            .await;
        for holder in killed {
            cluster.nodes[holder].restart().await.unwrap();
            seen[holder] = holds(&cluster.nodes[holder]);
        }
        settled(&cluster).await;
        assert_eq!(
            fake.texts_to(42)
                .iter()
                .filter(|sent| **sent == text)
                .count(),
            1,
            "run {k}: the message is delivered once ({:?})",
            fake.texts_to(42)
        );
        assert_eq!(
            skill.work().0,
            2 * k,
            "run {k}: each report is fetched once"
        );
    }
    // A second delivery of any run would show by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        fake.texts_to(42).len(),
        KILLS.len(),
        "{:?}",
        fake.texts_to(42)
    );
    // A call in flight when its node died is asked again, under its key, never more.
    let requests = skill.requests.lock().unwrap().clone();
    for key in &requests {
        let asked = requests.iter().filter(|other| *other == key).count();
        assert!(asked <= 2, "{key} asked {asked} times");
    }
}

const TICK: &str = r#"
name = "tick"
owner = "person:ada"

[[triggers]]
every = "1s"

[[steps]]
id = "say"
send = "tick {{ run.id }}"
to = "tg:42"
"#;

/// The node that runs the scheduler singleton now.
fn scheduler(cluster: &ClusterSandbox) -> Option<usize> {
    cluster.nodes.iter().position(|node| {
        node.pid().is_some()
            && node
                .log()
                .lines()
                .rfind(|line| line.contains("workflow-scheduler"))
                .is_some_and(|line| {
                    line.contains("singleton started on this node")
                        || line.contains("took over a singleton")
                })
    })
}

async fn finished_runs(node: &TroupeProcess) -> usize {
    let (_, runs) = get(node, "/api/v1/workflows/tick/runs").await;
    runs["runs"].as_array().map_or(0, |runs| {
        runs.iter()
            .filter(|run| run["status"] == "finished")
            .count()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_schedule_fires_once_per_firing_while_its_scheduling_node_is_killed() {
    let fake = FakeTelegram::start(TOKEN).await;
    let (_skill, skill_url) = ReportsSkill::start().await;
    let mut cluster = start_cluster(&fake, &skill_url, &[]).await;
    settled(&cluster).await;
    put_toml(&cluster.nodes[1], TICK).await;
    eventually(WAIT, || async {
        finished_runs(&cluster.nodes[1]).await >= 15
    })
    .await;
    eventually(WAIT, || async { scheduler(&cluster).is_some() }).await;
    let doomed = scheduler(&cluster).unwrap();
    eprintln!("the scheduler runs on node-{doomed}; kill -9");
    cluster.nodes[doomed].kill_hard().unwrap();
    // Another node takes the scheduler over.
    eventually(WAIT, || async { scheduler(&cluster).is_some() }).await;
    eprintln!(
        "the scheduler moved to node-{}",
        scheduler(&cluster).unwrap()
    );
    let survivor = (doomed + 1) % 3;
    eventually(Duration::from_secs(90), || async {
        finished_runs(&cluster.nodes[survivor]).await >= 50
    })
    .await;
    let (fired, missed) = firings(&cluster.nodes[survivor], "tick").await;
    // Deleted, the workflow fires no more; its runs stay listed.
    let deleted = http()
        .delete(format!(
            "{}/api/v1/workflows/tick",
            cluster.nodes[survivor].http_url()
        ))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    let (ran, _) = firings(&cluster.nodes[survivor], "tick").await;
    // Every run ends, and each run's message is delivered exactly once.
    eventually(WAIT, || async {
        finished_runs(&cluster.nodes[survivor]).await == ran.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for text in fake.texts_to(42) {
        *sent.entry(text).or_default() += 1;
    }
    assert_eq!(sent.len(), ran.len(), "one message a run: {sent:?}");
    assert!(sent.values().all(|count| *count == 1), "{sent:?}");
    // One run a firing, and the firings one second apart: those the failover swallowed
    // were caught up by the next one run and recorded as missed, never skipped silently.
    let mut deduped = ran.clone();
    deduped.dedup();
    assert_eq!(deduped, ran, "a firing ran twice");
    let (_, listed) = get(&cluster.nodes[survivor], "/api/v1/workflows").await;
    assert!(
        listed["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|workflow| workflow["name"] != "tick")
    );
    let gaps: Vec<i64> = fired.windows(2).map(|pair| pair[1] - pair[0]).collect();
    let late: Vec<&i64> = gaps.iter().filter(|gap| **gap != 1000).collect();
    eprintln!(
        "{} firings; gaps other than 1 s: {late:?}; missed: {missed:?}",
        fired.len()
    );
    assert!(late.len() <= 1, "only the failover is caught up: {gaps:?}");
    assert!(
        late.iter().all(|gap| **gap <= 10_000),
        "the scheduler moved within seconds: {gaps:?}"
    );
    for pair in fired.windows(2) {
        let mut due = pair[0] + 1000;
        while due < pair[1] {
            assert!(
                missed.contains(&due),
                "{due} was skipped silently: {missed:?}"
            );
            due += 1000;
        }
    }
}

/// Where the Telegram poller and every workflow partition run, once that holds still.
async fn placement(cluster: &ClusterSandbox) -> (usize, Vec<usize>) {
    let look = || {
        let poller = holder(cluster, "bridge-tg")?;
        let partitions: Option<Vec<usize>> = (0..troupe_workflows::placement::PARTITIONS)
            .map(|partition| holder(cluster, &format!("workflow-runs-{partition}")))
            .collect();
        Some((poller, partitions?))
    };
    let started = std::time::Instant::now();
    loop {
        let before = look();
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(now) = look()
            && before.as_ref() == Some(&now)
        {
            return now;
        }
        assert!(started.elapsed() < WAIT, "the singletons never settled");
    }
}

/// An `Idempotency-Key` whose run of `workflow` a node other than `avoid` holds, with
/// that node.
fn held_elsewhere(partitions: &[usize], workflow: &str, avoid: usize) -> (String, usize) {
    (0..)
        .map(|index| format!("{workflow}-{index}"))
        .find_map(|key| {
            let run = troupe_workflows::journal::event_run_id(workflow, "api", &key);
            let holder = partitions[troupe_workflows::placement::partition_of(&run) as usize];
            (holder != avoid).then_some((key, holder))
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_entering_another_node_reaches_the_run_that_waits_for_it() {
    let fake = FakeTelegram::start(TOKEN).await;
    let (_skill, skill_url) = ReportsSkill::start().await;
    let config = config(&fake, &skill_url, &[]).replace(
        "poll_timeout_secs = 1\n",
        "poll_timeout_secs = 1\nallow_from = [\"42\"]\n",
    );
    let cluster = ClusterSandbox::start_with_env(
        binary(),
        MEMBERS.len(),
        &config,
        &[],
        &[
            ("TG_TOKEN", TOKEN),
            ("SKILL_SECRET", "a-secret-shared-with-reports"),
        ],
    )
    .await
    .expect("the cluster starts");
    settled(&cluster).await;
    put_toml(&cluster.nodes[0], BOOKING).await;
    let (poller, partitions) = placement(&cluster).await;
    // A run whose partition another node than the poller's holds.
    let (key, _) = held_elsewhere(&partitions, "booking", poller);
    let run = start_once(&cluster.nodes[poller], "booking", &key).await;
    eprintln!("the poller is on node-{poller}; run {run} on another node");
    answered_yes(&fake, &cluster.nodes[poller], &run).await;
}

const NOTIFY: &str = r#"
name = "notify"
owner = "person:ada"

[[steps]]
id = "tell"
send = "Your report is ready"
to = "web:ada"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflows_message_reaches_a_web_chat_open_on_another_node() {
    let fake = FakeTelegram::start(TOKEN).await;
    let (_skill, skill_url) = ReportsSkill::start().await;
    let cluster = start_cluster(&fake, &skill_url, &[]).await;
    settled(&cluster).await;
    put_toml(&cluster.nodes[1], NOTIFY).await;
    let (_, partitions) = placement(&cluster).await;
    // Ada's page is open on node-0; her run is held by another node.
    let (key, _) = held_elsewhere(&partitions, "notify", 0);
    let mut socket = crate::support::connect(&cluster.nodes[0], &[]).await;
    crate::support::send(
        &mut socket,
        serde_json::json!({"type": "hello", "sender_id": "ada"}),
    )
    .await;
    // Answered, the page is surely registered.
    crate::support::send(
        &mut socket,
        serde_json::json!({"type": "message", "id": "m1", "payload": "hi"}),
    )
    .await;
    crate::support::frames_until_final(&mut socket, "m1").await;
    let run = start_once(&cluster.nodes[1], "notify", &key).await;
    let notification = tokio::time::timeout(WAIT, async {
        loop {
            let frame = crate::support::next_frame(&mut socket)
                .await
                .expect("the page stays open");
            if frame["type"] == "notification" {
                return frame;
            }
        }
    })
    .await
    .expect("the notification arrives");
    assert_eq!(notification["payload"], "Your report is ready");
    assert_eq!(notification["id"], format!("{run}:tell:1"));
    let path = format!("/api/v1/workflows/notify/runs/{run}");
    let shown = got_when(&cluster.nodes[2], &path, |shown| {
        shown["run"]["status"] == "finished"
    })
    .await;
    assert_eq!(shown["journal"].as_array().unwrap().len(), 4, "{shown}");
}

const NAPPER: &str = r#"
name = "napper"
owner = "person:ada"

[[steps]]
id = "nap"
wait = "10m"
"#;

/// `POST …/runs/{run}/{action}` through `node`; answers the run's status after it.
async fn controlled(node: &TroupeProcess, run: &str, action: &str) -> String {
    let answer = http()
        .post(format!(
            "{}/api/v1/workflows/napper/runs/{run}/{action}",
            node.http_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{action}");
    let body: Value = answer.json().await.unwrap();
    body["run"]["status"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_paused_resumed_and_cancelled_through_nodes_that_do_not_hold_it() {
    let fake = FakeTelegram::start(TOKEN).await;
    let (_skill, skill_url) = ReportsSkill::start().await;
    let cluster = start_cluster(&fake, &skill_url, &[]).await;
    settled(&cluster).await;
    put_toml(&cluster.nodes[2], NAPPER).await;
    let (_, partitions) = placement(&cluster).await;
    let (key, holder) = held_elsewhere(&partitions, "napper", 0);
    let other = (1..3).find(|index| *index != holder).unwrap_or(0);
    let run = start_once(&cluster.nodes[0], "napper", &key).await;
    let path = format!("/api/v1/workflows/napper/runs/{run}");
    got_when(&cluster.nodes[0], &path, |shown| {
        shown["journal"].as_array().is_some_and(|journal| {
            journal
                .iter()
                .any(|record| record["type"] == "step_started")
        })
    })
    .await;
    assert_eq!(controlled(&cluster.nodes[0], &run, "pause").await, "paused");
    assert_eq!(
        controlled(&cluster.nodes[other], &run, "resume").await,
        "running"
    );
    assert_eq!(
        controlled(&cluster.nodes[0], &run, "cancel").await,
        "cancelled"
    );
    let shown = got_when(&cluster.nodes[holder], &path, |shown| {
        shown["run"]["status"] == "cancelled"
    })
    .await;
    let kinds: Vec<&str> = shown["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["started", "step_started", "paused", "resumed", "cancelled"],
        "{shown}"
    );
    // An ended run answers as ended through any node.
    let again = http()
        .post(format!("{}{path}/cancel", cluster.nodes[other].http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}
