//! Workflows end to end: the real binary runs a workflow that fetches two reports in
//! parallel from an HTTP skill, has the model sum them up, and sends the summary to a
//! Telegram chat (the testkit's Bot API double). Driven by the `troupe workflow` CLI and
//! the API; killed with SIGKILL at every step boundary in turn, after which the run
//! finishes once the node is back, with each skill call done once (the skill honours the
//! `Idempotency-Key` it is sent, and counts the work it does) and the message delivered
//! once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{Value, json};
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::telegram::FakeTelegram;
use troupe_testkit::{loopback_listener, serve};

use crate::support::{binary, eventually, get, http};

pub(crate) const TOKEN: &str = "123456:TEST-token";
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// An HTTP skill (`reports.fetch`) that does each idempotency key's work once, as a real
/// idempotent service would, and counts both the requests and the work.
#[derive(Clone, Default)]
pub(crate) struct ReportsSkill {
    pub(crate) requests: Arc<Mutex<Vec<String>>>,
    done: Arc<Mutex<HashMap<String, Value>>>,
}

impl ReportsSkill {
    pub(crate) async fn start() -> (Self, String) {
        let skill = Self::default();
        let (listener, address) = loopback_listener().await;
        let manifest = json!({"name": "reports", "tools": [{"name": "fetch",
            "description": "Fetches a report",
            "parameters": {"type": "object", "properties": {"source": {"type": "string"}},
                "required": ["source"]}}]});
        let executing = skill.clone();
        serve(
            listener,
            axum::Router::new()
                .route(
                    "/manifest",
                    axum::routing::get(move || {
                        let manifest = manifest.clone();
                        // Slow to start, as a service may be: a run taken up when the node
                        // starts must wait for it rather than fail.
                        async move {
                            tokio::time::sleep(Duration::from_millis(700)).await;
                            axum::Json(manifest)
                        }
                    }),
                )
                .route(
                    "/execute",
                    axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
                        let skill = executing.clone();
                        async move { axum::Json(skill.execute(&headers, &body)) }
                    }),
                ),
        );
        (skill, format!("http://{address}"))
    }

    fn execute(&self, headers: &HeaderMap, body: &Value) -> Value {
        let key = headers
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.requests.lock().unwrap().push(key.clone());
        let source = body["arguments"]["source"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let mut done = self.done.lock().unwrap();
        let result = done
            .entry(key)
            .or_insert_with(|| json!({"source": source, "total": source.len() * 100}));
        json!({"result": result})
    }

    /// Keys whose work was done (each once, by construction), and all requests.
    pub(crate) fn work(&self) -> (usize, usize) {
        (
            self.done.lock().unwrap().len(),
            self.requests.lock().unwrap().len(),
        )
    }
}

const BRIEF: &str = r#"
name = "brief"
owner = "person:ada"
description = "Two reports, summed up, sent to Telegram"

[[steps]]
id = "fetch"
[[steps.branches]]
steps = [{ id = "sales", tool = "reports.fetch", arguments = { source = "sales" } }]
[[steps.branches]]
steps = [{ id = "support", tool = "reports.fetch", arguments = { source = "support" } }]

[[steps]]
id = "summary"
model = "Sales {{ steps.fetch.output.0.total }}, support {{ steps.fetch.output.1.total }}"

[[steps]]
id = "tell"
send = "{{ steps.summary.output }}"
to = "tg:42"
"#;

/// A node with the echo model, the Telegram double and the reports skill; runs are held
/// at `holds` (see `workflows.test_hold`).
pub(crate) fn config(fake: &FakeTelegram, skill_url: &str, holds: &[&str]) -> String {
    let hold = if holds.is_empty() {
        String::new()
    } else {
        format!("[workflows]\ntest_hold = {holds:?}\n")
    };
    format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n\
         [[bridges]]\nname = \"tg\"\nkind = \"telegram\"\ntoken_env = \"TG_TOKEN\"\napi_base = \"{}\"\npoll_timeout_secs = 1\n\n\
         [[skills]]\nkind = \"http\"\nname = \"reports\"\nurl = \"{skill_url}\"\nsecret_env = \"SKILL_SECRET\"\n\n{hold}",
        fake.api_base()
    )
}

async fn node(config: &str) -> TroupeProcess {
    TroupeProcess::start_with_env(
        binary(),
        config,
        &[
            ("TG_TOKEN", TOKEN),
            ("SKILL_SECRET", "a-secret-shared-with-reports"),
        ],
    )
    .await
    .expect("troupe starts")
}

/// `troupe workflow …` against `node`.
fn cli(node: &TroupeProcess, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary())
        .arg("workflow")
        .args(args)
        .args(["--url", &node.http_url()])
        .output()
        .expect("the CLI runs")
}

fn add_brief(node: &TroupeProcess) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("brief.toml");
    std::fs::write(&file, BRIEF).unwrap();
    let added = cli(node, &["add", file.to_str().unwrap()]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
}

pub(crate) async fn skill_ready(node: &TroupeProcess) {
    eventually(WAIT, || async {
        let (_, skills) = get(node, "/api/v1/skills").await;
        skills["skills"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|skill| skill["name"] == "reports" && skill["state"] == "available")
    })
    .await;
}

async fn run_status(node: &TroupeProcess, run: &str) -> Value {
    let (_, shown) = get(node, &format!("/api/v1/workflows/brief/runs/{run}")).await;
    shown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_from_the_cli_and_shows_its_journal_step_by_step() {
    let fake = FakeTelegram::start(TOKEN).await;
    let (skill, skill_url) = ReportsSkill::start().await;
    let node = node(&config(&fake, &skill_url, &[])).await;
    skill_ready(&node).await;
    add_brief(&node);

    let ran = cli(&node, &["run", "brief", "--wait"]);
    let printed = String::from_utf8_lossy(&ran.stdout).to_string();
    assert!(
        ran.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let run = printed.lines().next().unwrap().trim().to_owned();
    assert!(run.starts_with("brief."), "{printed}");
    assert!(printed.contains("sales  attempt 1  done in"), "{printed}");
    assert!(
        printed.contains("output: {\"queued\":true,\"to\":\"tg:42\"}"),
        "{printed}"
    );

    fake.wait_for_sent(WAIT, |_| !fake.texts_to(42).is_empty())
        .await;
    assert_eq!(fake.texts_to(42), vec!["Sales 500, support 700".to_owned()]);
    assert_eq!(skill.work(), (2, 2));

    let shown = run_status(&node, &run).await;
    let steps: Vec<&str> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps.len(), 5, "{shown}");
    for step in ["fetch", "sales", "support", "summary", "tell"] {
        assert!(steps.contains(&step), "{step} in {steps:?}");
    }
    assert!(
        shown["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|step| step["status"] == "finished")
    );

    let listed = cli(&node, &["list"]);
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        listed.contains("brief") && listed.contains("finished"),
        "{listed}"
    );
    let logs = cli(&node, &["logs", &run]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("summary  attempt 1  done in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_definitions_and_unknown_runs_get_clear_errors() {
    let fake = FakeTelegram::start(TOKEN).await;
    let (_skill, skill_url) = ReportsSkill::start().await;
    let node = node(&config(&fake, &skill_url, &[])).await;
    let refused = http()
        .post(format!("{}/api/v1/workflows", node.http_url()))
        .header("content-type", "application/toml")
        .body("name = \"x\"\nowner = \"person:ada\"\n[[steps]]\nid = \"a\"\nwait = \"soon\"\n")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_workflow");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("steps[0].wait:"),
        "{body}"
    );

    let (status, body) = get(&node, "/api/v1/workflows/nope/runs/nope.1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_run"))
    );
    let started = http()
        .post(format!("{}/api/v1/workflows/nope/runs", node.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 404);
}

/// Kills the node at `point` of a run, restarts it without the hold, and checks the run
/// finishes with every effect done once.
async fn killed_at(point: &str) {
    eprintln!("kill -9 at {point}");
    let fake = FakeTelegram::start(TOKEN).await;
    let (skill, skill_url) = ReportsSkill::start().await;
    let mut node = node(&config(&fake, &skill_url, &[point])).await;
    skill_ready(&node).await;
    add_brief(&node);
    let ran = cli(&node, &["run", "brief"]);
    let run = String::from_utf8_lossy(&ran.stdout).trim().to_owned();
    assert!(run.starts_with("brief."), "{point}: {run}");
    eventually(WAIT, || async {
        node.log().contains("held at its test hold point")
    })
    .await;
    node.kill_hard().unwrap();
    node.rewrite_config(&config(&fake, &skill_url, &[]))
        .unwrap();
    node.restart().await.unwrap();
    eventually(WAIT, || async {
        run_status(&node, &run).await["run"]["status"] == "finished"
    })
    .await;
    fake.wait_for_sent(WAIT, |_| !fake.texts_to(42).is_empty())
        .await;
    // A second delivery would show now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        fake.texts_to(42),
        vec!["Sales 500, support 700".to_owned()],
        "{point}: the message is delivered once"
    );
    let (work, _) = skill.work();
    assert_eq!(work, 2, "{point}: each report is fetched once");
    // A call in flight when the node died (either branch's) is asked again, under its key.
    let requests = skill.requests.lock().unwrap().clone();
    for key in &requests {
        let asked = requests.iter().filter(|other| *other == key).count();
        assert!(asked <= 2, "{point}: {key} asked {asked} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_every_step_boundary_does_each_effect_once() {
    for point in [
        "before:sales",
        "after:sales",
        "finished:sales",
        "before:summary",
        "after:summary",
        "before:tell",
        "after:tell",
        "finished:tell",
    ] {
        killed_at(point).await;
    }
}

const HOOKED: &str = r#"
name = "hooked"
owner = "api:ada"
[[triggers]]
webhook_secret_env = "HOOK_SECRET"
[[steps]]
id = "say"
model = "note: {{ input.webhook.note }}"
"#;

const ASKED: &str = r#"
name = "asked"
owner = "api:ada"
[[triggers]]
message = "(?i)^brief me about (?P<topic>\\w+)"
platform = "api"
[[steps]]
id = "say"
# The run's own turn matches the pattern too: it must not start another run.
model = "brief me about {{ input.captures.topic }} again"
"#;

pub(crate) async fn put_toml(node: &TroupeProcess, text: &str) {
    let response = http()
        .post(format!("{}/api/v1/workflows", node.http_url()))
        .header("content-type", "application/toml")
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

/// `GET path` until `check` holds of its body.
pub(crate) async fn got_when(
    node: &TroupeProcess,
    path: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (_, body) = get(node, path).await;
        if check(&body) {
            return body;
        }
        assert!(
            started.elapsed() < WAIT,
            "{path} never became right: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn finished_output(node: &TroupeProcess, workflow: &str, run: &str) -> Value {
    let path = format!("/api/v1/workflows/{workflow}/runs/{run}");
    let shown = got_when(node, &path, |shown| shown["run"]["status"] == "finished").await;
    shown["journal"].as_array().unwrap().last().unwrap()["output"].clone()
}

fn signed_hook(
    node: &TroupeProcess,
    secret: &str,
    body: &str,
    key: &str,
) -> reqwest::RequestBuilder {
    let timestamp = troupe_actors::message::unix_now();
    http()
        .post(format!("{}/hooks/workflows/hooked", node.http_url()))
        .header("x-troupe-timestamp", timestamp.to_string())
        .header(
            "x-troupe-signature",
            troupe_actors::signing::sign_v1(secret.as_bytes(), timestamp, body.as_bytes()),
        )
        .header("idempotency-key", key)
        .body(body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_and_the_owners_matching_message_start_runs() {
    let node = TroupeProcess::start_with_env(
        binary(),
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n",
        &[("HOOK_SECRET", "a-webhook-secret-of-some-length")],
    )
    .await
    .unwrap();
    put_toml(&node, HOOKED).await;
    put_toml(&node, ASKED).await;

    let body = r#"{"note": "the door opened"}"#;
    let forged = signed_hook(&node, "not-the-secret", body, "k1")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let accepted = signed_hook(&node, "a-webhook-secret-of-some-length", body, "k1")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let run = accepted.json::<Value>().await.unwrap()["run"]["run"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        finished_output(&node, "hooked", &run).await,
        json!("note: the door opened")
    );
    let again = signed_hook(&node, "a-webhook-secret-of-some-length", body, "k1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.json::<Value>().await.unwrap()["run"]["run"],
        run.as_str()
    );
    let (_, runs) = get(&node, "/api/v1/workflows/hooked/runs").await;
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        1,
        "a retried call starts no second run"
    );

    let (status, _) = crate::support::post_message(
        &node,
        &json!({"sender_id": "bob", "payload": "Brief me about rust"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = crate::support::post_message(
        &node,
        &json!({"sender_id": "ada", "payload": "Brief me about rust"}),
    )
    .await;
    assert_eq!(status, 200);
    let runs = got_when(&node, "/api/v1/workflows/asked/runs", |runs| {
        runs["runs"].as_array().is_some_and(|runs| !runs.is_empty())
    })
    .await;
    let run = runs["runs"][0]["run"].as_str().unwrap().to_owned();
    assert_eq!(
        finished_output(&node, "asked", &run).await,
        json!("brief me about rust again")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, runs) = get(&node, "/api/v1/workflows/asked/runs").await;
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        1,
        "only the owner's message matches, and a run's own turn starts nothing"
    );
}

pub(crate) const BOOKING: &str = r#"
name = "booking"
owner = "telegram:42"
[[steps]]
id = "ask"
send = "Shall I book the table for 8?"
to = "tg:42"
[[steps]]
id = "answer"
# `to` names the bridge (`[[bridges]] name`); a reply is from the platform's sender.
wait_reply = "telegram:42"
timeout = "30s"
[[steps]]
id = "decide"
if = "{{ steps.answer.output.text }}"
contains = "yes"
then = [{ id = "book", send = "Booked for 8.", to = "tg:42" }]
else = [{ id = "skip", send = "Not booked.", to = "tg:42" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_asks_on_telegram_and_goes_on_with_the_persons_reply() {
    let fake = FakeTelegram::start(TOKEN).await;
    let (_skill, skill_url) = ReportsSkill::start().await;
    let config = config(&fake, &skill_url, &[]).replace(
        "poll_timeout_secs = 1\n",
        "poll_timeout_secs = 1\nallow_from = [\"42\"]\n",
    );
    let node = node(&config).await;
    put_toml(&node, BOOKING).await;
    let run = start_run(&node, "booking").await;
    answered_yes(&fake, &node, &run).await;
}

/// Starts a run of `workflow` through the API; answers its id.
async fn start_run(node: &TroupeProcess, workflow: &str) -> String {
    let started = http()
        .post(format!(
            "{}/api/v1/workflows/{workflow}/runs",
            node.http_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    started.json::<Value>().await.unwrap()["run"]["run"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The booking run asked on Telegram: the person says yes, the run books, and what the
/// person read is the question, the acknowledgement of their reply, and the booking.
pub(crate) async fn answered_yes(fake: &FakeTelegram, node: &TroupeProcess, run: &str) {
    fake.wait_for_sent(WAIT, |_| !fake.texts_to(42).is_empty())
        .await;
    fake.user_says(42, "yes, please");
    let output = finished_output(node, "booking", run).await;
    assert_eq!(output["holds"], true, "{output}");
    fake.wait_for_sent(WAIT, |_| fake.texts_to(42).len() >= 3)
        .await;
    // What the person reads (the bridge sends MarkdownV2).
    let texts: Vec<String> = fake
        .texts_to(42)
        .iter()
        .map(|text| troupe_testkit::telegram::markdown_v2::parse(text).unwrap())
        .collect();
    assert_eq!(texts[0], "Shall I book the table for 8?");
    assert!(texts.contains(&"Booked for 8.".to_owned()), "{texts:?}");
    assert!(
        texts.iter().any(|text| text.starts_with("✓ Got it")),
        "the reply is acknowledged, not answered by the assistant: {texts:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.texts_to(42).len(), 3, "{:?}", fake.texts_to(42));
}

/// Due times of `workflow`'s scheduled runs, and of its first trigger's missed firings.
pub(crate) async fn firings(node: &TroupeProcess, workflow: &str) -> (Vec<i64>, Vec<i64>) {
    let (_, runs) = get(node, &format!("/api/v1/workflows/{workflow}/runs")).await;
    let mut ran: Vec<i64> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["cause"]["due_ms"].as_i64().unwrap())
        .collect();
    ran.sort_unstable();
    let (_, listed) = get(node, "/api/v1/workflows").await;
    let missed = listed["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["name"] == workflow)
        .map(|entry| {
            entry["triggers"][0]["missed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|firing| firing["due_ms"].as_i64().unwrap())
                .collect()
        })
        .unwrap_or_default();
    (ran, missed)
}

/// Sleeps until unix ms `at`.
async fn until(at: i64) {
    let left = at - jiff::Timestamp::now().as_millisecond();
    tokio::time::sleep(Duration::from_millis(u64::try_from(left).unwrap_or(0))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_across_downtime_catches_up_once_inside_its_window_and_records_a_miss_beyond_it()
{
    const EVERY: i64 = 6_000;
    let mut node = TroupeProcess::start(
        binary(),
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n",
    )
    .await
    .unwrap();
    // Every 6 s; a firing missed by up to 4 s still runs.
    put_toml(
        &node,
        "name = \"tick\"\nowner = \"person:ada\"\n[[triggers]]\nevery = \"6s\"\ncatch_up = \"4s\"\n[[steps]]\nid = \"a\"\ntool = \"time.now\"\n",
    )
    .await;
    let runs_at_least = |count: usize| {
        move |runs: &Value| {
            runs["runs"]
                .as_array()
                .is_some_and(|runs| runs.len() >= count)
        }
    };
    got_when(&node, "/api/v1/workflows/tick/runs", runs_at_least(1)).await;
    let first = firings(&node, "tick").await.0[0];

    // Down across the next firing, back 1 s after it (inside the window): it runs once.
    until(first + 2_000).await;
    node.terminate(Duration::from_secs(5)).await.unwrap();
    until(first + EVERY + 1_000).await;
    node.restart().await.unwrap();
    got_when(&node, "/api/v1/workflows/tick/runs", runs_at_least(2)).await;
    let (ran, missed) = firings(&node, "tick").await;
    assert_eq!(
        &ran[..2],
        [first, first + EVERY],
        "the missed firing ran once"
    );
    assert!(missed.is_empty(), "{missed:?}");

    // Down across the next firing, back 5 s after it (beyond the window): recorded as missed.
    let second = first + EVERY;
    until(second + 2_000).await;
    node.terminate(Duration::from_secs(5)).await.unwrap();
    until(second + EVERY + 5_000).await;
    node.restart().await.unwrap();
    let listed = got_when(&node, "/api/v1/workflows", |listed| {
        listed["workflows"][0]["triggers"][0]["missed"]
            .as_array()
            .is_some_and(|missed| !missed.is_empty())
    })
    .await;
    let missed: Vec<i64> = listed["workflows"][0]["triggers"][0]["missed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|firing| firing["due_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(
        missed,
        [second + EVERY],
        "beyond the window: missed, not run"
    );
    let (ran, _) = firings(&node, "tick").await;
    assert!(!ran.contains(&(second + EVERY)), "{ran:?}");
    assert!(node.log().contains("a scheduled firing was missed"));
}

const TELL_WEB: &str = r#"
name = "tell-web"
owner = "person:ada"

[[steps]]
id = "tell"
send = "The report is ready"
to = "web:ada"
timeout = "1h"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_web_chat_waits_for_the_persons_page_to_open() {
    let fake = FakeTelegram::start(TOKEN).await;
    let (_skill, skill_url) = ReportsSkill::start().await;
    let node = node(&config(&fake, &skill_url, &[])).await;
    put_toml(&node, TELL_WEB).await;
    let run = start_run(&node, "tell-web").await;
    // No page of Ada's is open: the step waits, it does not fail.
    let path = format!("/api/v1/workflows/tell-web/runs/{run}");
    got_when(&node, &path, |shown| {
        shown["journal"].as_array().is_some_and(|journal| {
            journal
                .iter()
                .any(|record| record["type"] == "step_started")
        })
    })
    .await;
    let mut socket = crate::support::connect(&node, &[]).await;
    crate::support::send(&mut socket, json!({"type": "hello", "sender_id": "ada"})).await;
    let notification = crate::support::next_frame(&mut socket)
        .await
        .expect("a notification frame");
    assert_eq!(notification["type"], "notification", "{notification}");
    assert_eq!(notification["payload"], "The report is ready");
    let shown = got_when(&node, &path, |shown| shown["run"]["status"] == "finished").await;
    let failures = shown["journal"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["type"] == "step_failed")
        .count();
    assert_eq!(failures, 0, "it waited rather than failed: {shown}");
}
