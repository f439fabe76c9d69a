//! Skills end to end: the real binary, a scripted model (the OpenAI and Anthropic doubles)
//! that calls tools, and the skills that answer: built-ins (notes across a restart, a
//! reminder that arrives on Telegram after a restart), the example HTTP skill as its own
//! process (signed, schema-checked, time-limited, marked unavailable when it goes down),
//! permissions and confirmations.

use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::telegram::FakeTelegram;
use troupe_testkit::{free_port, loopback_listener, poll_until, serve};

use crate::support::{
    binary, connect, frames_until_final, get, openai_provider, post_message, send,
};

const WAIT: Duration = Duration::from_secs(20);

fn calls(list: &[(&str, &str, Value)]) -> FakeReply {
    FakeReply::ToolCalls(
        list.iter()
            .map(|(id, name, arguments)| ((*id).into(), (*name).into(), arguments.to_string()))
            .collect(),
    )
}

fn text(answer: &str) -> FakeReply {
    FakeReply::Text(vec![answer.into()])
}

/// The skills as `GET /api/v1/skills` shows them, once `name` has left `starting`.
async fn skills_when(node: &TroupeProcess, name: &str, state: &str) -> Value {
    let limit = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = get(node, "/api/v1/skills").await;
        assert_eq!(status, 200, "{body}");
        let skill = body["skills"]
            .as_array()
            .and_then(|skills| skills.iter().find(|skill| skill["name"] == name).cloned())
            .unwrap_or(Value::Null);
        if skill["state"] == state || std::time::Instant::now() > limit {
            assert_eq!(skill["state"], state, "{body}");
            return skill;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `tool` messages the model was sent, in order (OpenAI shape).
fn tool_messages(fake: &FakeLlm) -> Vec<Value> {
    fake.requests()
        .last()
        .map(|request| {
            request.body["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|message| message["role"] == "tool")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_round_streams_over_the_websocket() {
    let fake = FakeLlm::start(None).await;
    fake.script([
        calls(&[(
            "call_1",
            "calculator__evaluate",
            json!({"expression": "6 * 7"}),
        )]),
        text("It is 42."),
    ]);
    let node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .unwrap();
    let mut socket = connect(&node, &[]).await;
    send(&mut socket, json!({"type": "hello", "sender_id": "ada"})).await;
    send(
        &mut socket,
        json!({"type": "message", "id": "m1", "payload": "6 times 7?"}),
    )
    .await;
    let frames = frames_until_final(&mut socket, "m1").await;
    let kinds: Vec<&str> = frames
        .iter()
        .filter_map(|frame| frame["type"].as_str())
        .collect();
    let call = frames
        .iter()
        .find(|frame| frame["type"] == "tool_call")
        .unwrap_or_else(|| panic!("a tool_call frame: {frames:?}"));
    assert_eq!(call["name"], "calculator__evaluate");
    assert_eq!(call["arguments"], json!({"expression": "6 * 7"}));
    let result = frames
        .iter()
        .find(|frame| frame["type"] == "tool_result")
        .expect("a tool_result frame");
    assert_eq!(
        (result["call_id"].as_str(), result["ok"].as_bool()),
        (Some("call_1"), Some(true))
    );
    assert_eq!(result["result"]["result"], 42);
    assert_eq!(frames.last().unwrap()["payload"], "It is 42.", "{kinds:?}");

    let first = &fake.requests()[0].body;
    let offered: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|tool| tool["function"]["name"].as_str())
        .collect();
    assert!(
        offered.contains(&"notes__remember") && offered.contains(&"reminders__set"),
        "{offered:?}"
    );
    let results = tool_messages(&fake);
    assert_eq!(results[0]["tool_call_id"], "call_1");
    assert!(results[0]["content"].as_str().unwrap().contains("42"));
    // The round is part of the conversation's history.
    let (_, session) = get(&node, "/api/v1/sessions/ws:ada").await;
    let history = session["history"].as_array().unwrap();
    let roles: Vec<&str> = history
        .iter()
        .filter_map(|entry| entry["role"].as_str())
        .collect();
    assert_eq!(
        roles,
        ["user", "assistant", "tool", "assistant"],
        "{session}"
    );
    assert_eq!(history[1]["tool_calls"][0]["name"], "calculator__evaluate");
    assert_eq!(history[2]["tool_call_id"], "call_1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_calls_through_anthropic_come_back_in_one_message() {
    let fake = FakeLlm::start(Some("sk-ant")).await;
    fake.script([
        calls(&[
            ("toolu_1", "time__now", json!({"timezone": "Asia/Tokyo"})),
            (
                "toolu_2",
                "calculator__evaluate",
                json!({"expression": "2 +"}),
            ),
            ("toolu_3", "calculator__evaluate", json!({"expression": 5})),
        ]),
        text("Done."),
    ]);
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"anthropic\"\nbase_url = \"{}\"\nmodel = \"claude-fake\"\napi_key_env = \"KEY\"\nstream = false\n",
        fake.anthropic_base_url()
    );
    let node = TroupeProcess::start_with_env(binary(), &config, &[("KEY", "sk-ant")])
        .await
        .unwrap();
    let (status, reply) = post_message(
        &node,
        &json!({"id": "m1", "sender_id": "ada", "payload": "time and sums"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"]["payload"], "Done.");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let messages = requests[1].body["messages"].as_array().unwrap().clone();
    let results = messages.last().unwrap()["content"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        results.len(),
        3,
        "every result of the round in one user message"
    );
    assert_eq!(results[0]["is_error"], false);
    assert!(
        results[0]["content"]
            .as_str()
            .unwrap()
            .contains("Asia/Tokyo")
    );
    for failed in &results[1..] {
        assert_eq!(failed["is_error"], true);
        assert!(
            failed["content"]
                .as_str()
                .unwrap()
                .contains("invalid_arguments"),
            "{failed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_are_remembered_across_a_restart() {
    let fake = FakeLlm::start(None).await;
    fake.script([
        calls(&[(
            "c1",
            "notes__remember",
            json!({"text": "Ada's favourite tea is sencha"}),
        )]),
        text("Noted."),
    ]);
    let mut node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .unwrap();
    let (status, _) = post_message(
        &node,
        &json!({"id": "m1", "sender_id": "ada", "payload": "remember: sencha"}),
    )
    .await;
    assert_eq!(status, 200);
    node.terminate(Duration::from_secs(10)).await.unwrap();
    node.restart().await.unwrap();
    fake.script([
        calls(&[("c2", "notes__recall", json!({"query": "tea"}))]),
        text("Sencha."),
    ]);
    let (status, reply) = post_message(
        &node,
        &json!({"id": "m2", "sender_id": "ada", "payload": "my tea?"}),
    )
    .await;
    assert_eq!(
        (status, reply["reply"]["payload"].as_str()),
        (200, Some("Sencha."))
    );
    let recalled = tool_messages(&fake).last().cloned().unwrap();
    assert!(
        recalled["content"].as_str().unwrap().contains("sencha"),
        "{recalled}"
    );
    // Someone else's notes are their own.
    fake.script([
        calls(&[("c3", "notes__recall", json!({}))]),
        text("Nothing."),
    ]);
    post_message(
        &node,
        &json!({"id": "m3", "sender_id": "bob", "payload": "my notes?"}),
    )
    .await;
    let bobs = tool_messages(&fake).last().cloned().unwrap();
    assert!(
        bobs["content"].as_str().unwrap().contains("\"count\":0"),
        "{bobs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_arrives_on_telegram_after_a_restart() {
    let telegram = FakeTelegram::start("123:T").await;
    let fake = FakeLlm::start(None).await;
    fake.script([
        calls(&[(
            "c1",
            "reminders__set",
            json!({"text": "stretch your legs", "in_minutes": 0.1}),
        )]),
        text("I will remind you"),
    ]);
    let config = format!(
        "{}\n[[bridges]]\nname = \"tg\"\nkind = \"telegram\"\ntoken_env = \"TG\"\napi_base = \"{}\"\npoll_timeout_secs = 1\nallow_from = [\"42\"]\n",
        openai_provider(&fake.openai_base_url(), ""),
        telegram.api_base()
    );
    let mut node = TroupeProcess::start_with_env(binary(), &config, &[("TG", "123:T")])
        .await
        .unwrap();
    telegram.user_says(42, "remind me to stretch in 6 seconds");
    telegram
        .wait_for_sent(WAIT, |_| !telegram.texts_to(42).is_empty())
        .await;
    assert_eq!(telegram.texts_to(42), ["I will remind you"]);
    // Down before it is due, up again after: it still arrives, once.
    node.terminate(Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    node.restart().await.unwrap();
    telegram
        .wait_for_sent(WAIT, |_| telegram.texts_to(42).len() >= 2)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let texts = telegram.texts_to(42);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[1].contains("stretch your legs"), "{texts:?}");
}

/// The example skill's binary, built with the workspace.
fn example_skill() -> std::path::PathBuf {
    let path = binary().with_file_name("troupe-skill-file-search");
    assert!(
        path.exists(),
        "build the example skill first: cargo build -p troupe-skill-file-search"
    );
    path
}

struct Example {
    child: std::process::Child,
    root: tempfile::TempDir,
}

impl Example {
    fn start(port: u16, root: tempfile::TempDir) -> Self {
        let child = std::process::Command::new(example_skill())
            .env("SKILL_SECRET", "shared-secret-for-the-example")
            .env("SKILL_ROOT", root.path())
            .env("LISTEN", format!("127.0.0.1:{port}"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Self { child, root }
    }

    fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.root, tempfile::tempdir().unwrap())
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_http_skill_runs_signed_checked_and_recovers() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("packing-list.txt"), "passport\ncharger\n").unwrap();
    let port = free_port();
    let example = Example::start(port, root);
    // A second HTTP skill that never answers a call.
    let (listener, hang_address) = loopback_listener().await;
    let manifest =
        json!({"name": "slow", "tools": [{"name": "wait", "parameters": {"type": "object"}}]});
    let _hang = serve(
        listener,
        axum::Router::new()
            .route(
                "/manifest",
                axum::routing::get(move || {
                    let m = manifest.clone();
                    async move { axum::Json(m) }
                }),
            )
            .route(
                "/execute",
                axum::routing::post(std::future::pending::<String>),
            ),
    );
    let fake = FakeLlm::start(None).await;
    let config = format!(
        "{}\n[[skills]]\nkind = \"http\"\nname = \"files\"\nurl = \"http://127.0.0.1:{port}\"\nsecret_env = \"FILES_SECRET\"\npermissions.files = [\"{}\"]\n\
         [[skills]]\nkind = \"http\"\nname = \"slow\"\nurl = \"http://{hang_address}\"\nsecret_env = \"FILES_SECRET\"\ntimeout_secs = 1\n\
         [[skills]]\nkind = \"http\"\nname = \"impostor\"\nurl = \"http://127.0.0.1:{port}\"\nsecret_env = \"WRONG_SECRET\"\n",
        openai_provider(&fake.openai_base_url(), ""),
        example.root.path().display()
    );
    let node = TroupeProcess::start_with_env(
        binary(),
        &config,
        &[
            ("FILES_SECRET", "shared-secret-for-the-example"),
            ("WRONG_SECRET", "a-different-secret-entirely"),
        ],
    )
    .await
    .unwrap();
    let files = skills_when(&node, "files", "available").await;
    assert_eq!(files["tools"], json!(["files__search", "files__read"]));
    assert_eq!(files["kind"], "http");
    let impostor = skills_when(&node, "impostor", "unavailable").await;
    assert!(
        impostor["last_error"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{impostor}"
    );
    skills_when(&node, "slow", "available").await;

    fake.script([
        calls(&[
            ("a", "files__search", json!({"text": "charger"})),
            ("b", "files__search", json!({"max_results": "many"})),
            ("c", "slow__wait", json!({})),
        ]),
        text("Found it."),
    ]);
    let started = std::time::Instant::now();
    let (status, reply) = post_message(
        &node,
        &json!({"id": "m1", "sender_id": "ada", "payload": "charger?"}),
    )
    .await;
    assert_eq!(
        (status, reply["reply"]["payload"].as_str()),
        (200, Some("Found it.")),
        "{reply}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let results = tool_messages(&fake);
    assert!(
        results[0]["content"]
            .as_str()
            .unwrap()
            .contains("packing-list.txt"),
        "{results:?}"
    );
    assert!(
        results[1]["content"]
            .as_str()
            .unwrap()
            .contains("invalid_arguments"),
        "{results:?}"
    );
    assert!(
        results[2]["content"]
            .as_str()
            .unwrap()
            .contains("\"timeout\""),
        "{results:?}"
    );

    // The skill goes down: a call finds it gone, it is marked unavailable, then found again.
    let root = example.stop();
    fake.script([
        calls(&[("d", "files__search", json!({"name": "packing"}))]),
        text("Down."),
    ]);
    post_message(
        &node,
        &json!({"id": "m2", "sender_id": "ada", "payload": "again?"}),
    )
    .await;
    assert!(
        tool_messages(&fake).last().unwrap()["content"]
            .as_str()
            .unwrap()
            .contains("unavailable")
    );
    skills_when(&node, "files", "unavailable").await;
    let _back = Example::start(port, root);
    skills_when(&node, "files", "available").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_decide_who_sees_a_skill_and_confirmations_wait_for_yes() {
    let fake = FakeLlm::start(None).await;
    let config = format!(
        "{}\n[[skills]]\nkind = \"builtin\"\nname = \"notes\"\npermissions.confirm = [\"forget\"]\n\
         [[skills]]\nkind = \"builtin\"\nname = \"calculator\"\npermissions.users = [\"ws:ada\"]\n",
        openai_provider(&fake.openai_base_url(), "")
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    skills_when(&node, "calculator", "available").await;
    let (_, listed) = get(&node, "/api/v1/skills").await;
    assert_eq!(
        listed["skills"][0]["permissions"]["users"],
        json!(["ws:ada"])
    );
    let cli = std::process::Command::new(binary())
        .args(["skills", "--url", &node.http_url()])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{cli:?}");
    assert!(
        printed.contains("calculator") && printed.contains("notes__forget"),
        "{printed}"
    );

    let mut bob = connect(&node, &[]).await;
    send(&mut bob, json!({"type": "hello", "sender_id": "bob"})).await;
    fake.script([text("hi bob")]);
    send(
        &mut bob,
        json!({"type": "message", "id": "b1", "payload": "hi"}),
    )
    .await;
    frames_until_final(&mut bob, "b1").await;
    let mut socket = connect(&node, &[]).await;
    send(&mut socket, json!({"type": "hello", "sender_id": "ada"})).await;
    let offered = |index: usize| -> Vec<String> {
        fake.requests()[index].body["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        !offered(0)
            .iter()
            .any(|name| name.starts_with("calculator__")),
        "{:?}",
        offered(0)
    );

    fake.script([
        calls(&[("f1", "notes__forget", json!({"query": "tea"}))]),
        text("Forgotten."),
    ]);
    send(
        &mut socket,
        json!({"type": "message", "id": "a1", "payload": "forget tea"}),
    )
    .await;
    let asked = frames_until_final(&mut socket, "a1").await;
    assert!(offered(1).iter().any(|name| name == "calculator__evaluate"));
    let question = asked.last().unwrap()["payload"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        question.contains("notes__forget") && question.contains("yes"),
        "{question}"
    );
    assert!(!asked.iter().any(|frame| frame["type"] == "tool_result"));
    send(
        &mut socket,
        json!({"type": "message", "id": "a2", "payload": "yes"}),
    )
    .await;
    let ran = frames_until_final(&mut socket, "a2").await;
    let result = ran
        .iter()
        .find(|frame| frame["type"] == "tool_result")
        .expect("the call ran");
    assert_eq!(result["call_id"], "f1");
    assert_eq!(result["result"]["error"]["code"], "not_found", "{result}");
    assert_eq!(ran.last().unwrap()["payload"], "Forgotten.");
    let poll = poll_until(
        Duration::from_secs(1),
        || fake.requests().len(),
        |n| *n >= 3,
    )
    .await;
    assert_eq!(poll, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_set_in_the_web_chat_waits_for_the_person_to_come_back() {
    let fake = FakeLlm::start(None).await;
    fake.script([
        calls(&[(
            "c1",
            "reminders__set",
            json!({"text": "call mum", "in_minutes": 0.05}),
        )]),
        text("Will do"),
    ]);
    let node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .unwrap();
    let mut socket = connect(&node, &[]).await;
    send(&mut socket, json!({"type": "hello", "sender_id": "ada"})).await;
    send(
        &mut socket,
        json!({"type": "message", "id": "m1", "payload": "remind me to call mum in 3 s"}),
    )
    .await;
    let frames = frames_until_final(&mut socket, "m1").await;
    assert_eq!(frames.last().unwrap()["payload"], "Will do");
    drop(socket);
    // Due while nobody is connected: it waits, then reaches the next connection.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut socket = connect(&node, &[]).await;
    send(&mut socket, json!({"type": "hello", "sender_id": "ada"})).await;
    let notification = crate::support::next_frame(&mut socket)
        .await
        .expect("a notification frame");
    assert_eq!(notification["type"], "notification", "{notification}");
    assert_eq!(notification["payload"], "⏰ Reminder: call mum");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_event_stream_shows_tool_calls_and_results() {
    let fake = FakeLlm::start(None).await;
    fake.script([
        calls(&[("c1", "time__now", json!({"timezone": "Nowhere/Atlantis"}))]),
        text("No such zone."),
    ]);
    let node = TroupeProcess::start(binary(), &openai_provider(&fake.openai_base_url(), ""))
        .await
        .unwrap();
    let body = crate::support::http()
        .post(format!("{}/api/v1/messages", node.http_url()))
        .header("accept", "text/event-stream")
        .json(&json!({"id": "m1", "sender_id": "ada", "payload": "time in Atlantis?"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<(&str, Value)> = body
        .split("\n\n")
        .filter_map(|block| {
            let name = block
                .lines()
                .find_map(|line| line.strip_prefix("event: "))?;
            let data = block.lines().find_map(|line| line.strip_prefix("data: "))?;
            Some((name, serde_json::from_str(data).unwrap()))
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(name, _)| *name).collect();
    assert_eq!(names.first(), Some(&"tool_call"), "{body}");
    assert!(
        names.contains(&"tool_result") && names.last() == Some(&"reply"),
        "{body}"
    );
    let (_, result) = events
        .iter()
        .find(|(name, _)| *name == "tool_result")
        .unwrap();
    assert_eq!(result["ok"], false);
    assert_eq!(result["result"]["error"]["code"], "invalid_arguments");
}
