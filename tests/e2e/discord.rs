//! Discord end to end: the Gateway (identify, dispatches, reconnect with resume),
//! replies over REST (split at 2000, rate limits, nonce), and the `/ask` interaction with
//! its Ed25519 signature checked.

use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::discord::{APPLICATION_ID, FakeDiscord};
use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, bridge_status_once};

const TOKEN: &str = "MTIzNDU2Nzg5.discord-test-token";
const WAIT: Duration = Duration::from_secs(20);

async fn node(fake: &FakeDiscord) -> TroupeProcess {
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[[bridges]]\nname = \"discord\"\nkind = \"discord\"\nbot_token_env = \"DISCORD_TOKEN\"\npublic_key = \"{}\"\napplication_id = \"{APPLICATION_ID}\"\napi_base = \"{}\"\nallow_from = [\"42\"]\n",
        fake.public_key_hex(),
        fake.api_base()
    );
    TroupeProcess::start_with_env(binary(), &config, &[("DISCORD_TOKEN", TOKEN)])
        .await
        .expect("troupe starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_messages_are_answered_and_a_reconnect_resumes_the_session() {
    let fake = FakeDiscord::start(TOKEN).await;
    let node = node(&fake).await;
    assert_eq!(
        bridge_status_once(&node, "connected").await["state"],
        "connected"
    );

    fake.user_writes("500", None, "42", "hello from a DM", false);
    fake.user_writes(
        "600",
        Some("1"),
        "42",
        "chatter nobody asked the bot about",
        false,
    );
    fake.rate_limit_next(1);
    let long: String = (0..500).map(|index| format!("w{index} ")).collect();
    let mention = fake.user_writes(
        "600",
        Some("1"),
        "42",
        &format!("<@999000000000000001> {long}"),
        true,
    );
    fake.wait_for(WAIT, |fake| fake.posted().len() >= 3).await;
    let posted = fake.posted();
    assert_eq!(posted.len(), 3, "{posted:#?}");
    let dm = posted
        .iter()
        .find(|message| message["channel_id"] == "500")
        .unwrap();
    assert_eq!(dm["content"], "hello from a DM");
    let in_server: Vec<&Value> = posted
        .iter()
        .filter(|message| message["channel_id"] == "600")
        .collect();
    assert_eq!(in_server.len(), 2, "split at 2000 characters");
    assert!(
        in_server
            .iter()
            .all(|message| message["content"].as_str().unwrap().chars().count() <= 2000)
    );
    assert_eq!(
        in_server[0]["message_reference"]["message_id"],
        mention["id"]
    );
    assert!(
        in_server
            .iter()
            .all(|message| message["nonce"].as_str().unwrap().len() == 25)
    );
    assert!(fake.typing_calls() >= 1);

    // Discord asks the bot to reconnect: it resumes, and what came meanwhile arrives.
    fake.ask_to_reconnect();
    fake.wait_for(WAIT, |fake| fake.sessions().1 == 1).await;
    fake.user_writes("500", None, "42", "while you were away", false);
    fake.wait_for(WAIT, |fake| fake.posted().len() >= 4).await;
    assert_eq!(fake.posted()[3]["content"], "while you were away");
    let (identifies, resumes) = fake.sessions();
    assert_eq!(
        (identifies, resumes),
        (1, 1),
        "resumed, not identified again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ask_command_is_verified_deferred_and_answered() {
    let fake = FakeDiscord::start(TOKEN).await;
    let node = node(&fake).await;
    let url = format!("{}/bridges/discord/interactions", node.http_url());
    let (status, body) = fake.send_interaction(&url, &json!({"id": "1", "type": 1, "application_id": APPLICATION_ID, "token": "t", "version": 1}), true).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"type": 1})
    );
    // Discord checks that bad signatures are refused.
    let (status, _) = fake
        .send_interaction(&url, &json!({"id": "2", "type": 1}), false)
        .await;
    assert_eq!(status, 401);
    let unsigned = reqwest::Client::new()
        .post(&url)
        .json(&json!({"type": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    let ask = fake.ask_interaction("600", "1", "42", "what is the plan?");
    let (status, body) = fake.send_interaction(&url, &ask, true).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["type"],
        5,
        "deferred: thinking…"
    );
    fake.wait_for(WAIT, |fake| !fake.interaction_replies().is_empty())
        .await;
    let replies = fake.interaction_replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, ask["token"].as_str().unwrap());
    assert_eq!(replies[0].1["content"], "what is the plan?");
    assert!(
        fake.posted().is_empty(),
        "answered through the interaction, not a new message"
    );
    let (status, _) = fake
        .send_interaction(
            &url,
            &json!({"type": 2, "data": {"name": "ask", "options": []}}),
            true,
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_fails_the_gateway_with_its_reason() {
    let fake = FakeDiscord::start("another-token").await;
    let node = node(&fake).await;
    let status = bridge_status_once(&node, "failed").await;
    assert_eq!(status["state"], "failed", "{status}");
    assert!(
        status["last_error"].as_str().unwrap().contains("401"),
        "{status}"
    );
}
