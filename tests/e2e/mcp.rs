//! MCP servers as skills, end to end, against servers nobody here wrote: the reference
//! servers from npm (`@modelcontextprotocol/server-filesystem` over stdio,
//! `@modelcontextprotocol/server-everything` over Streamable HTTP) and a server written with
//! the official Python SDK (PyPI `mcp`), over both transports. A stdio server runs with a
//! clean environment, its working directory and, without a network grant, no network.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::{free_port, test_venv};

use crate::support::{binary, get, openai_provider, post_message};

const WAIT: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn npm_server(name: &str) -> String {
    let path = repo().join("tests/mcp/node_modules/.bin").join(name);
    assert!(
        path.exists(),
        "run scripts/test-deps (npm ci in tests/mcp) first: {}",
        path.display()
    );
    path.display().to_string()
}

fn python() -> String {
    test_venv().join("bin/python").display().to_string()
}

fn python_server() -> String {
    repo()
        .join("tests/e2e/python/mcp_server.py")
        .display()
        .to_string()
}

fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Waits until every named skill is available; answers `GET /api/v1/skills`.
async fn all_available(node: &TroupeProcess, names: &[&str]) -> Value {
    let limit = std::time::Instant::now() + WAIT;
    loop {
        let (_, body) = get(node, "/api/v1/skills").await;
        let ready = names.iter().all(|name| {
            body["skills"].as_array().is_some_and(|skills| {
                skills
                    .iter()
                    .any(|skill| skill["name"] == *name && skill["state"] == "available")
            })
        });
        if ready {
            return body;
        }
        assert!(
            std::time::Instant::now() < limit,
            "skills not available: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tools_of<'a>(skills: &'a Value, name: &str) -> Vec<&'a str> {
    skills["skills"]
        .as_array()
        .and_then(|all| all.iter().find(|skill| skill["name"] == name))
        .and_then(|skill| skill["tools"].as_array())
        .map(|tools| tools.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Runs one scripted round of calls and answers the tool results the model was sent.
async fn round(
    node: &TroupeProcess,
    fake: &FakeLlm,
    id: &str,
    calls: &[(&str, &str, Value)],
) -> Vec<Value> {
    fake.script([
        FakeReply::ToolCalls(
            calls
                .iter()
                .map(|(call, name, args)| ((*call).into(), (*name).into(), args.to_string()))
                .collect(),
        ),
        FakeReply::Text(vec!["ok".into()]),
    ]);
    let (status, reply) = post_message(
        node,
        &json!({"id": id, "sender_id": "ada", "payload": "go"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let messages = fake.requests().last().unwrap().body["messages"]
        .as_array()
        .cloned()
        .unwrap();
    let results: Vec<Value> = messages
        .into_iter()
        .filter(|message| message["role"] == "tool")
        .collect();
    results[results.len().saturating_sub(calls.len())..].to_vec()
}

fn content(result: &Value) -> String {
    result["content"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_servers_from_npm_and_python_in_a_sandbox() {
    let files = tempfile::tempdir().unwrap();
    std::fs::write(
        files.path().join("hello.txt"),
        "hello from the filesystem server\n",
    )
    .unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start(None).await;
    let config = format!(
        "{}\n[[skills]]\nkind = \"mcp\"\nname = \"fs\"\ncommand = {}\n\
         [[skills]]\nkind = \"mcp\"\nname = \"py\"\ncommand = {}\ncwd = {:?}\nenv = {{ GREETING = \"hi\" }}\nlimits = {{ max_open_files = 256 }}\n",
        openai_provider(&fake.openai_base_url(), ""),
        toml_list(&[
            &npm_server("mcp-server-filesystem"),
            &files.path().display().to_string()
        ]),
        toml_list(&[&python(), &python_server(), "stdio"]),
        workdir.path().display().to_string(),
    );
    let node = TroupeProcess::start_with_env(
        binary(),
        &config,
        &[("TROUPE_TEST_SECRET", "must-not-leak")],
    )
    .await
    .unwrap();
    let skills = all_available(&node, &["fs", "py"]).await;
    assert!(
        tools_of(&skills, "fs").contains(&"fs__read_text_file"),
        "{skills}"
    );
    assert_eq!(
        tools_of(&skills, "py"),
        ["py__add", "py__sandbox", "py__explode"]
    );

    let hello = files.path().join("hello.txt").display().to_string();
    let results = round(
        &node,
        &fake,
        "m1",
        &[
            ("c1", "fs__read_text_file", json!({"path": hello})),
            ("c2", "py__add", json!({"a": 40, "b": 2})),
            ("c3", "py__explode", json!({})),
            ("c4", "py__add", json!({"a": "forty"})),
        ],
    )
    .await;
    assert!(
        content(&results[0]).contains("hello from the filesystem server"),
        "{results:?}"
    );
    assert!(content(&results[1]).contains("42"), "{results:?}");
    // The SDK reports the failure without the exception text.
    assert!(content(&results[2]).contains("\"failed\""), "{results:?}");
    assert!(
        content(&results[3]).contains("invalid_arguments"),
        "{results:?}"
    );

    let sandbox = round(&node, &fake, "m2", &[("c5", "py__sandbox", json!({}))]).await;
    let seen: Value = serde_json::from_str(&content(&sandbox[0])).unwrap_or_else(|_| json!({}));
    let seen = if seen.get("result").is_some() {
        seen["result"].clone()
    } else {
        seen
    };
    assert_eq!(
        seen["cwd"],
        json!(workdir.path().canonicalize().unwrap().display().to_string()),
        "{seen}"
    );
    let env: Vec<&str> = seen["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"GREETING") && env.contains(&"PATH"),
        "{env:?}"
    );
    assert!(
        !env.contains(&"TROUPE_TEST_SECRET"),
        "the server saw Troupe's environment: {env:?}"
    );
    assert_eq!(
        seen["interfaces"],
        json!(["lo"]),
        "no network without a grant"
    );
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for_port(port: u16) {
    let limit = std::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < limit,
            "nothing listens on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_servers_from_npm_and_python() {
    let everything_port = free_port();
    let _everything = Server(
        std::process::Command::new(npm_server("mcp-server-everything"))
            .arg("streamableHttp")
            .env("PORT", everything_port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let python_port = free_port();
    let _python = Server(
        std::process::Command::new(python())
            .args([python_server(), "http".into(), python_port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(everything_port).await;
    wait_for_port(python_port).await;
    let fake = FakeLlm::start(None).await;
    let config = format!(
        "{}\n[[skills]]\nkind = \"mcp\"\nname = \"everything\"\nurl = \"http://127.0.0.1:{everything_port}/mcp\"\n\
         [[skills]]\nkind = \"mcp\"\nname = \"pyhttp\"\nurl = \"http://127.0.0.1:{python_port}/mcp\"\ntimeout_secs = 10\n",
        openai_provider(&fake.openai_base_url(), ""),
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    let skills = all_available(&node, &["everything", "pyhttp"]).await;
    assert!(
        tools_of(&skills, "everything").contains(&"everything__get-sum"),
        "{skills}"
    );
    let results = round(
        &node,
        &fake,
        "m1",
        &[
            ("c1", "everything__get-sum", json!({"a": 19, "b": 23})),
            ("c2", "everything__echo", json!({"message": "over http"})),
            ("c3", "pyhttp__add", json!({"a": 1, "b": 2})),
        ],
    )
    .await;
    assert!(content(&results[0]).contains("42"), "{results:?}");
    assert!(content(&results[1]).contains("over http"), "{results:?}");
    assert!(content(&results[2]).contains('3'), "{results:?}");
}

/// The skill named `name` in a `GET /api/v1/skills` answer.
fn skill<'a>(skills: &'a Value, name: &str) -> &'a Value {
    skills["skills"]
        .as_array()
        .and_then(|all| all.iter().find(|skill| skill["name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn the_node_is_ready_only_once_its_skills_have_started() {
    let fake = FakeLlm::start(None).await;
    let server = toml_list(&[&python(), &python_server(), "stdio"]);
    let config = format!(
        "{}\n[[skills]]\nkind = \"mcp\"\nname = \"slow\"\ncommand = {server}\n\
         env = {{ START_DELAY = \"1.5\" }}\n\
         [[skills]]\nkind = \"mcp\"\nname = \"silent\"\ncommand = {server}\n\
         env = {{ START_DELAY = \"60\" }}\ntimeout_secs = 3\n",
        openai_provider(&fake.openai_base_url(), ""),
    );
    // `start` returns once `/readyz` answers 200.
    let started = std::time::Instant::now();
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    let (_, skills) = get(&node, "/api/v1/skills").await;
    assert_eq!(skill(&skills, "slow")["state"], "available", "{skills}");
    assert!(tools_of(&skills, "slow").contains(&"slow__add"), "{skills}");
    // A server that never answers holds readiness for its time limit, no longer.
    assert_eq!(skill(&skills, "silent")["state"], "unavailable", "{skills}");
    let error = skill(&skills, "silent")["last_error"]
        .as_str()
        .unwrap_or("");
    assert!(error.contains("no manifest within 3s"), "{skills}");
    assert!(started.elapsed() < Duration::from_secs(20), "{skills}");
}
