//! The operator's dashboard (`/ops`) in a real browser (`python/browser_ops.py`): it opens
//! under its own CSP once the token is given, its numbers move while `troupe bench` sends
//! load, tokens and cost show per person and model, a failed turn and a workflow run going
//! on are listed, the supervision tree is drawn, and a bridge whose platform dies shows as
//! down within a few seconds. axe-core passes on it, and screenshots are taken in both themes and sizes.
//! The stream behind it is the owner's alone.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::telegram::FakeTelegram;

use crate::python::{python, script};
use crate::support::{binary, openai_provider, post_message_as};
use crate::web_app::{artefacts, axe_script};

const TOKEN: &str = "ops-dashboard-token";
const TG_TOKEN: &str = "123456:OPS-token";
/// How long the page may take to show a dead bridge as down: its poll (1 s) failing, plus
/// the stream's one-second beat, with room for a loaded machine.
const DOWN_WITHIN_SECS: f64 = 8.0;

/// Runs the browser script; when it asks, `kill` runs, and its answer is read.
async fn drive_browser(node: &TroupeProcess, kill: impl FnOnce()) -> Value {
    let mut child = tokio::process::Command::new(python())
        .arg(script("browser_ops.py"))
        .arg(node.http_url())
        .arg(TOKEN)
        .arg(binary())
        .arg(artefacts())
        .arg(axe_script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut kill = Some(kill);
    let mut last = String::new();
    let reading = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "KILL" {
                if let Some(kill) = kill.take() {
                    kill();
                }
                stdin.write_all(b"killed\n").await.unwrap();
                stdin.flush().await.unwrap();
            } else if !line.trim().is_empty() {
                last = line;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(240), reading)
        .await
        .expect("the browser script finishes");
    assert!(
        child.wait().await.unwrap().success(),
        "browser_ops.py failed: {last}"
    );
    serde_json::from_str(&last).unwrap_or_else(|_| panic!("not JSON: {last}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_live_under_load_and_shows_a_dead_bridge_as_down() {
    let fake = FakeLlm::start(None).await;
    // The first turn fails at the provider: it must be listed.
    fake.script([FakeReply::Status {
        status: 401,
        retry_after: None,
        message: "bad key".into(),
    }]);
    let telegram = FakeTelegram::start(TG_TOKEN).await;
    let config = format!(
        "[server]\ntoken = \"{TOKEN}\"\n\n{}\n[[prices]]\nmodel = \"fake-model\"\ninput = 1.0\noutput = 4.0\n\n\
         [[bridges]]\nname = \"tg\"\nkind = \"telegram\"\ntoken_env = \"TG_TOKEN\"\napi_base = \"{}\"\npoll_timeout_secs = 1\n",
        openai_provider(&fake.openai_base_url(), ""),
        telegram.api_base()
    );
    let node = TroupeProcess::start_with_env(binary(), &config, &[("TG_TOKEN", TG_TOKEN)])
        .await
        .unwrap();
    let (status, failed) = post_message_as(
        &node,
        Some(TOKEN),
        &json!({"sender_id": "ada", "id": "will-fail", "payload": "hello"}),
    )
    .await;
    assert_eq!(status, 502, "{failed}");

    let anonymous = crate::support::get(&node, "/api/v1/ops/stream").await;
    assert_eq!(anonymous.0, 401);
    // A run going on (a long wait): the Workflows card lists it.
    let client = crate::support::http();
    let added = client
        .post(format!("{}/api/v1/workflows", node.http_url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/toml")
        .body(
            "name = \"nightly\"\nowner = \"person:ada\"\n[[steps]]\nid = \"nap\"\nwait = \"10m\"\n",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let started: Value = client
        .post(format!("{}/api/v1/workflows/nightly/runs", node.http_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = started["run"]["run"].as_str().unwrap().to_owned();

    let seen = drive_browser(&node, move || drop(telegram)).await;

    assert!(
        seen["status"].as_str().unwrap().starts_with("Live"),
        "{seen}"
    );
    for section in [
        "Traffic",
        "Bridges",
        "Model providers",
        "Token use and cost",
        "Supervision tree",
        "Last failed turns",
        "Cluster",
    ] {
        assert!(
            seen["sections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|name| name == section),
            "{section} in {}",
            seen["sections"]
        );
    }
    let load = &seen["load"];
    assert_eq!(load["bench_exit"], 0, "{}", load["bench"]);
    let most = |key: &str| {
        load[key]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .fold(0.0, f64::max)
    };
    assert!(most("rates") > 10.0, "turns/s moved: {}", load["rates"]);
    assert!(
        most("messages") >= seen["before"].as_f64().unwrap() + 800.0,
        "messages in moved: {}",
        load["messages"]
    );
    let workflows = seen["workflows"].as_str().unwrap();
    assert!(
        workflows.contains(&run) && workflows.contains("nightly"),
        "{workflows}"
    );
    let providers = seen["providers"].as_str().unwrap();
    assert!(providers.contains("fake-model"), "{providers}");
    assert!(providers.contains("unauthorized 1"), "{providers}");
    let stages = seen["stages"].as_str().unwrap();
    assert!(
        stages.contains("Model call") && stages.contains("Store"),
        "{stages}"
    );
    let usage = seen["usage"].as_str().unwrap();
    assert!(usage.contains("Total"), "{usage}");
    assert!(
        seen["usage_by_model"]
            .as_str()
            .unwrap()
            .contains("fake-model")
    );
    let failed = seen["failed"].as_str().unwrap();
    assert!(
        failed.contains("will-fail") && failed.contains("provider_unauthorized"),
        "{failed}"
    );
    let tree = seen["tree"].as_str().unwrap();
    assert!(
        tree.contains("NodeSupervisor") && tree.contains("registry"),
        "{tree}"
    );

    assert_eq!(seen["bridge_before"], "up");
    assert!(seen["bridge_after"].as_str().unwrap().starts_with("down"));
    let after = seen["bridge_down_after_secs"].as_f64().unwrap();
    assert!(after < DOWN_WITHIN_SECS, "down after {after} s");
    assert_eq!(seen["console_errors"], json!([]));
    assert_eq!(seen["axe_violations"], json!([]));
}
