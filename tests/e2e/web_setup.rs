//! The first-run set-up (`/api/v1/setup`) on a node with no model: in a real browser
//! (`python/browser_setup.py`) the notice offers it, the form follows the provider chosen,
//! axe-core passes on it, and since the node's troupe.toml exists it gives the lines to add
//! and changes nothing; from a name other than this machine's it is not offered.
//! (`src/gateway/setup_tests.rs` covers writing a new troupe.toml.)

use serde_json::{Value, json};
use troupe_testkit::process::TroupeProcess;

use crate::python::{run_python, script};
use crate::support::{echo_node, http};
use crate::web_app::{artefacts, axe_script};

#[tokio::test]
async fn with_no_model_the_page_offers_a_set_up_that_gives_the_lines_for_an_existing_config() {
    let node =
        echo_node("[server]\ntoken = \"page-token\"\nallowed_hosts = [\"troupe.example\"]\n").await;
    let before = std::fs::read_to_string(&node.config_path).unwrap();
    let seen = run_python(vec![
        script("browser_setup.py").display().to_string(),
        node.http_url(),
        "page-token".into(),
        artefacts().display().to_string(),
        axe_script().display().to_string(),
    ])
    .await;
    assert!(
        seen["notice"]
            .as_str()
            .unwrap()
            .contains("No model is configured")
    );
    assert_eq!(
        seen["models"],
        json!({
            "openai": {"model": "gpt-4o-mini", "key_shown": true},
            "ollama": {"model": "llama3.2", "key_shown": false},
            "anthropic": {"model": "claude-sonnet-4-5", "key_shown": true},
        })
    );
    assert_eq!(seen["axe_violations"], json!([]));
    let done = seen["done"].as_str().unwrap();
    assert!(
        done.contains("already exists") && done.contains("ANTHROPIC_API_KEY"),
        "{done}"
    );
    let lines = seen["lines"].as_str().unwrap();
    assert!(lines.contains("kind = \"anthropic\""), "{lines}");
    assert!(
        lines.contains("api_key_env = \"ANTHROPIC_API_KEY\""),
        "{lines}"
    );
    assert!(!lines.contains("sk-ant-from-the-browser"), "{lines}");
    assert_eq!(seen["closed"], true);
    assert_eq!(std::fs::read_to_string(&node.config_path).unwrap(), before);

    // A bad choice gets a clear error naming the field.
    let refused = post(
        &node,
        None,
        json!({"kind": "openai", "model": "gpt-4o-mini"}),
    )
    .await;
    assert_eq!(refused.0, 422);
    assert_eq!(refused.1["error"]["code"], "invalid_request");
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("api_key:")
    );

    // Reached by another name (a reverse proxy, another machine), it is not offered.
    let elsewhere = format!("troupe.example:{}", node.address.port());
    let status = http()
        .get(format!("{}/api/v1/setup", node.http_url()))
        .header("host", &elsewhere)
        .bearer_auth("page-token")
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    assert_eq!(
        status.json::<Value>().await.unwrap(),
        json!({"offered": false})
    );
    let refused = post(
        &node,
        Some(&elsewhere),
        json!({"kind": "ollama", "model": "llama3.2"}),
    )
    .await;
    assert_eq!(refused.0, 403);
    assert_eq!(refused.1["error"]["code"], "setup_not_offered");
}

#[tokio::test]
async fn a_node_with_a_model_offers_no_set_up() {
    let fake = troupe_testkit::fake_llm::FakeLlm::start(None).await;
    let config = crate::support::openai_provider(&fake.openai_base_url(), "");
    let node = TroupeProcess::start(crate::support::binary(), &config)
        .await
        .unwrap();
    let status: Value = http()
        .get(format!("{}/api/v1/setup", node.http_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status, json!({"offered": false}));
    let refused = post(&node, None, json!({"kind": "ollama", "model": "llama3.2"})).await;
    assert_eq!(refused.0, 403);
}

async fn post(node: &TroupeProcess, host: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = http()
        .post(format!("{}/api/v1/setup", node.http_url()))
        .bearer_auth("page-token")
        .json(&body);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let answer = request.send().await.unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap())
}
