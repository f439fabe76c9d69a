//! Operating a running node: JSON log lines (`[telemetry] log_format = "json"`), and the
//! log's level changed without a restart, through `PUT /api/v1/ops/log-level` and
//! `troupe ops log-level`, for the owner's token only; a bad level is refused and changes
//! nothing. `server.ops_token` reads the operator's views (usage, `/metrics`, the
//! dashboard's stream) and nothing else.

use std::process::Command;

use serde_json::{Value, json};
use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, echo_node, first_overview, http};

const TOKEN: &str = "ops-token";

/// The JSON lines of the node's log that say `message`.
fn logged(log: &str, message: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == message)
        .collect()
}

/// A request naming a host the node does not serve (refused, and logged at `debug`).
async fn foreign_host_request(url: &str) -> u16 {
    http()
        .get(format!("{url}/healthz"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn level_request(url: &str, body: Value) -> (u16, Value) {
    let response = http()
        .put(format!("{url}/api/v1/ops/log-level"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn logs_are_json_lines_and_their_level_changes_without_a_restart() {
    let node = echo_node(&format!(
        "[server]\ntoken = \"{TOKEN}\"\n\n[telemetry]\nlog_format = \"json\"\n"
    ))
    .await;
    let url = node.http_url();
    let log = node.log();
    let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let line: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("JSON: {line}"));
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(!line[key].is_null(), "{key} in {line}");
        }
    }

    let level = http()
        .get(format!("{url}/api/v1/ops/log-level"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        level.json::<Value>().await.unwrap(),
        json!({"level": "info"})
    );
    let anonymous = http()
        .get(format!("{url}/api/v1/ops/log-level"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // At `info`, a refused request's debug line is not written (it would be by the time
    // the refusal is answered).
    assert_eq!(foreign_host_request(&url).await, 421);
    assert!(logged(&node.log(), "request refused").is_empty());

    let changed = Command::new(binary())
        .args(["ops", "log-level", "debug", "--url", &url])
        .env("TROUPE_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(changed.status.success(), "{changed:?}");
    assert_eq!(String::from_utf8_lossy(&changed.stdout).trim(), "debug");
    assert_eq!(foreign_host_request(&url).await, 421);
    let refused = logged(&node.log(), "request refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["level"], "DEBUG");

    // A bad level is refused, and the level stays.
    for body in [json!({"level": "info,=["}), json!({"level": ""})] {
        let (status, answer) = level_request(&url, body).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (400, &json!("invalid_request")),
            "{answer}"
        );
    }
    for body in [json!({"level": 5}), json!({"level": "info", "extra": 1})] {
        let (status, answer) = level_request(&url, body).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (400, &json!("invalid_json")),
            "{answer}"
        );
    }
    let shown = Command::new(binary())
        .args(["ops", "log-level", "--url", &url])
        .env("TROUPE_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), "debug");
    let (status, answer) = level_request(&url, json!({"level": "warn,troupe=info"})).await;
    assert_eq!(
        (status, answer),
        (200, json!({"level": "warn,troupe=info"}))
    );
}

#[tokio::test]
async fn the_ops_token_reads_the_operators_views_and_nothing_else() {
    let config = format!(
        "[server]\ntoken = \"{TOKEN}\"\nops_token = \"wall-screen-token\"\n\n\
         [[server.tokens]]\nsender_id = \"ada\"\ntoken_env = \"ADA_OPS_TEST_TOKEN\"\n\n\
         [[providers]]\nname = \"main\"\nkind = \"echo\"\n"
    );
    let node = TroupeProcess::start_with_env(
        binary(),
        &config,
        &[("ADA_OPS_TEST_TOKEN", "ada-own-token")],
    )
    .await
    .unwrap();
    let url = node.http_url();
    let status = |path: &'static str, token: &'static str| {
        let url = url.clone();
        async move {
            http()
                .get(format!("{url}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("/api/v1/usage", "wall-screen-token").await, 200);
    assert_eq!(status("/metrics", "wall-screen-token").await, 200);
    assert_eq!(status("/api/v1/sessions", "wall-screen-token").await, 401);
    assert_eq!(
        status("/api/v1/ops/log-level", "wall-screen-token").await,
        401
    );
    assert_eq!(status("/api/v1/usage", TOKEN).await, 200);
    assert_eq!(status("/api/v1/usage", "a-wrong-token").await, 401);
    assert_eq!(
        status("/api/v1/usage", "ada-own-token").await,
        403,
        "a sender's"
    );
    let message = http()
        .post(format!("{url}/api/v1/messages"))
        .bearer_auth("wall-screen-token")
        .json(&json!({"sender_id": "x", "payload": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(message.status(), 401, "it sends nothing");

    // The dashboard's stream: one snapshot at once, as Server-Sent Events.
    let data = first_overview(&node, Some("wall-screen-token")).await;
    assert_eq!(data["node"]["ready"], true);
    assert_eq!(data["providers"][0]["name"], "main");
    assert!(
        data["supervision"]
            .as_array()
            .unwrap()
            .iter()
            .any(|child| child["name"] == "registry")
    );
}
