//! Telegram end to end: the real binary with a `[[bridges]] kind = "telegram"` entry talks
//! to the testkit's Bot API double (long polling and webhook mode), and people's messages
//! come back as replies in their chat: pairing first, then answers; long replies split and
//! escaped; flood waits sat out; a kill -9 in the middle loses and duplicates nothing.

use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::fake_llm::FakeLlm;
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::telegram::{BOT_USERNAME, FakeTelegram, SendFailure};

use crate::support::{binary, get, openai_provider};

const TOKEN: &str = "123456:TEST-token";
const ECHO: &str = "[[providers]]\nname = \"main\"\nkind = \"echo\"\n";
const WAIT: Duration = Duration::from_secs(20);

fn bridge(fake: &FakeTelegram, extra: &str) -> String {
    format!(
        "[[bridges]]\nname = \"tg\"\nkind = \"telegram\"\ntoken_env = \"TG_TOKEN\"\napi_base = \"{}\"\npoll_timeout_secs = 1\n{extra}\n",
        fake.api_base()
    )
}

async fn node(config: &str) -> TroupeProcess {
    TroupeProcess::start_with_env(binary(), config, &[("TG_TOKEN", TOKEN)])
        .await
        .expect("troupe starts")
}

async fn texts_when(fake: &FakeTelegram, chat: i64, count: usize) -> Vec<String> {
    fake.wait_for_sent(WAIT, |_| fake.texts_to(chat).len() >= count)
        .await;
    fake.texts_to(chat)
}

async fn bridge_status(node: &TroupeProcess) -> Value {
    let (status, body) = get(node, "/api/v1/bridges").await;
    assert_eq!(status, 200, "{body}");
    body["bridges"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_pairs_and_is_then_answered_in_their_chat() {
    let fake = FakeTelegram::start(TOKEN).await;
    let node = node(&format!("{ECHO}\n{}", bridge(&fake, ""))).await;
    fake.user_says(42, "hello");
    let texts = texts_when(&fake, 42, 1).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    let code = texts[0]
        .split("pairing code is ")
        .nth(1)
        .and_then(|rest| rest.get(..8))
        .expect("a pairing code")
        .to_owned();

    let approve = std::process::Command::new(binary())
        .args(["pair", "approve", &code, "--url", &node.http_url()])
        .output()
        .unwrap();
    assert!(approve.status.success(), "{approve:?}");
    assert!(String::from_utf8_lossy(&approve.stdout).contains("telegram:42"));

    fake.user_says(42, "what is 2+2?");
    let texts = texts_when(&fake, 42, 2).await;
    // Markup escaped for MarkdownV2; the double parsed it as Telegram does.
    assert_eq!(texts[1], "what is 2\\+2?", "{texts:?}");
    assert!(
        fake.chat_actions()
            .iter()
            .any(|action| action["action"] == "typing"),
        "typing shown while the assistant thinks"
    );
    let status = bridge_status(&node).await;
    assert_eq!(status["state"], "connected", "{status}");
    assert_eq!(status["kind"], "telegram");
    assert_eq!(status["messages_received"], 2);
    assert_eq!(status["capabilities"]["max_message_chars"], 4096);
    // The history is the session `telegram:42`: the stranger's first message never
    // reached the model.
    let (_, history) = get(&node, "/api/v1/sessions/telegram:42").await;
    let entries = history["history"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_replies_are_split_and_flood_waits_are_sat_out() {
    let fake = FakeTelegram::start(TOKEN).await;
    let node = node(&format!(
        "{ECHO}\n{}",
        bridge(&fake, "allow_from = [\"42\"]")
    ))
    .await;
    fake.fail_next_sends([SendFailure::FloodWait(1), SendFailure::ServerError]);
    let long: String = (0..700).map(|index| format!("w{index}. ")).collect();
    fake.user_says(42, &long);
    let texts = texts_when(&fake, 42, 2).await;
    assert_eq!(texts.len(), 2, "split in two, each sent once: {texts:?}");
    let visible: String = texts
        .iter()
        .map(|text| troupe_testkit::telegram::markdown_v2::parse(text).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        visible.split_whitespace().count(),
        700,
        "nothing lost across the split"
    );
    let status = bridge_status(&node).await;
    assert_eq!(status["replies_delivered"], 1);
    assert_eq!(status["deliveries_failed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_loses_and_duplicates_nothing() {
    let fake = FakeTelegram::start(TOKEN).await;
    let llm = FakeLlm::start(None).await;
    llm.set_echo_delay(Duration::from_millis(700));
    let config = format!(
        "{}\n{}",
        openai_provider(&llm.openai_base_url(), ""),
        bridge(&fake, "allow_from = [\"42\"]\nrate_limit_per_minute = 0")
    );
    let mut node = node(&config).await;
    for index in 0..4 {
        fake.user_says(42, &format!("question {index}"));
    }
    // Let the bridge receive (and journal) them; the model is still thinking.
    fake.wait_for_sent(Duration::from_millis(400), |_| false)
        .await;
    node.kill_hard().unwrap();
    node.restart().await.unwrap();
    fake.user_says(42, "question 4");
    texts_when(&fake, 42, 5).await;
    // Anything sent twice would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut texts = fake.texts_to(42);
    texts.sort();
    let expected: Vec<String> = (0..5)
        .map(|index| format!("echo: question {index}"))
        .collect();
    assert_eq!(texts, expected, "each answered exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_checks_the_secret_and_answers_updates() {
    let fake = FakeTelegram::start(TOKEN).await;
    // The node's port is chosen at start, so the webhook URL is set in a second step:
    // start once to learn the port, then point the config at it.
    let mut node = node(&format!(
        "{ECHO}\n{}",
        bridge(&fake, "allow_from = [\"42\"]")
    ))
    .await;
    let url = format!("{}/bridges/tg/webhook", node.http_url());
    node.terminate(WAIT).await.unwrap();
    let config = format!(
        "{ECHO}\n{}",
        bridge(
            &fake,
            &format!(
                "allow_from = [\"42\"]\nmode = \"webhook\"\nwebhook_url = \"{url}\"\nwebhook_secret_env = \"TG_SECRET\""
            )
        )
    );
    let listen = node.http_url().trim_start_matches("http://").to_owned();
    let node = TroupeProcess::start_with_env(
        binary(),
        &config,
        &[
            ("TG_TOKEN", TOKEN),
            ("TG_SECRET", "s3cret-Value_1"),
            ("TROUPE_LISTEN", listen.as_str()),
        ],
    )
    .await
    .unwrap();
    fake.wait_for_sent(WAIT, |_| fake.webhook().is_some()).await;
    assert_eq!(fake.webhook().as_deref(), Some(url.as_str()));

    let client = reqwest::Client::new();
    let update = json!({"update_id": 1, "message": {"message_id": 1, "date": 1,
        "from": {"id": 7, "first_name": "Eve"}, "chat": {"id": 7, "type": "private"}, "text": "hi"}});
    let forged = client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", "wrong")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let body: Value = forged.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let malformed = client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", "s3cret-Value_1")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);

    fake.user_says(42, &format!("@{BOT_USERNAME} via webhook"));
    let texts = texts_when(&fake, 42, 1).await;
    assert_eq!(
        texts,
        vec![format!("@{BOT_USERNAME} via webhook").replace('_', "\\_")]
    );
    assert_eq!(fake.pending_updates(), 0, "the webhook answered 200");
    assert!(
        fake.texts_to(7).is_empty(),
        "the forged update reached nobody"
    );
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_shows_as_failed_with_its_error() {
    let fake = FakeTelegram::start("999:other-token").await;
    let node = node(&format!("{ECHO}\n{}", bridge(&fake, ""))).await;
    let status = crate::support::bridge_status_once(&node, "failed").await;
    assert_eq!(status["state"], "failed", "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("Unauthorized"),
        "{status}"
    );
    let metrics = crate::support::metrics_page(&node.http_url()).await;
    assert!(
        metrics.contains("troupe_bridge_state{bridge=\"tg\",kind=\"telegram\"} 3"),
        "{metrics}"
    );
}
