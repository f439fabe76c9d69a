//! The command line: `chat -m`, `config check`, `version`, and start-up refusals.

use std::process::Command;

use crate::support::{binary, echo_node};

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_remove("TROUPE_TOKEN")
        .env_remove("TROUPE_CONFIG")
        .env_remove("TROUPE_LISTEN");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

#[tokio::test]
async fn chat_sends_one_message_and_prints_the_reply() {
    let node = echo_node("").await;
    let url = node.http_url();
    let output = tokio::task::spawn_blocking(move || {
        run(&["chat", "--url", &url, "-m", "hello from the cli"], &[])
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "hello from the cli"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("No model is configured"),
        "the echo notice is shown"
    );
    let url = node.http_url();
    let again = tokio::task::spawn_blocking(move || {
        run(&["chat", "--url", &url, "-m", "a second run"], &[])
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "a second run",
        "each run is a new message"
    );
}

#[test]
fn config_check_names_the_bad_key() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("troupe.toml");
    std::fs::write(&path, "[assistant]\nhistory_window = 0\n").unwrap();
    let output = run(
        &["config", "check", "--config", path.to_str().unwrap()],
        &[],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("assistant.history_window"));

    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:8787\"\nport = 1\n").unwrap();
    let output = run(
        &["config", "check", "--config", path.to_str().unwrap()],
        &[],
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("port"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    std::fs::write(&path, "[[providers]]\nname = \"main\"\nkind = \"echo\"\n").unwrap();
    let output = run(
        &["config", "check", "--config", path.to_str().unwrap()],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("config ok"));
}

#[test]
fn serving_on_a_public_address_without_a_token_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let output = run(
        &["serve"],
        &[
            ("TROUPE_LISTEN", "0.0.0.0:0"),
            ("TROUPE_DATA_DIR", data_dir.to_str().unwrap()),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("server.listen") && stderr.contains("TROUPE_TOKEN"),
        "{stderr}"
    );
}

#[test]
fn version_and_help_work() {
    let version = run(&["version"], &[]);
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("troupe "));
    for command in ["serve", "chat", "config", "bench"] {
        let help = run(&[command, "--help"], &[]);
        assert!(help.status.success(), "{command} --help");
    }
}

#[tokio::test]
async fn bench_measures_replies_and_the_durable_ingest() {
    let node = echo_node("").await;
    let url = node.http_url().replacen("http://", "ws://", 1) + "/ws";
    let output = tokio::task::spawn_blocking(move || {
        let load = ["--sessions", "3", "--messages", "7", "--in-flight", "4"];
        let mut args = vec!["bench", "--url", url.as_str()];
        args.extend(load);
        args.push("--ingest");
        run(&args, &[])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = |label: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_eq!(line("replies"), "21", "{stdout}");
    assert_eq!(line("acks"), "21", "every message acknowledged: {stdout}");
    assert_eq!(line("errors"), "0", "{stdout}");
    assert!(stdout.contains("ack latency"), "{stdout}");
}

#[tokio::test]
async fn interactive_chat_streams_each_line_and_remembers() {
    use std::io::Write;
    let fake = troupe_testkit::fake_llm::FakeLlm::start(None).await;
    let config = crate::support::openai_provider(&fake.openai_base_url(), "");
    let node = troupe_testkit::process::TroupeProcess::start(binary(), &config)
        .await
        .unwrap();
    let url = node.http_url();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(binary())
            .args(["chat", "--url", &url, "--sender", "terminal-user"])
            .env_remove("TROUPE_TOKEN")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"first line\nsecond line\n\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["echo: first line", "echo: second line"]
    );
    let second_prompt = &fake.requests()[1].body["messages"];
    assert_eq!(
        second_prompt.as_array().unwrap().len(),
        4,
        "system, first turn, second question"
    );
    let (_, session) = crate::support::get(&node, "/api/v1/sessions/ws:terminal-user").await;
    assert_eq!(session["history"].as_array().unwrap().len(), 4);
}
