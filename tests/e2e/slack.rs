//! Slack end to end: the Events API (signature, freshness, url_verification, retries) and
//! Socket Mode (hello, envelopes acknowledged once stored, reconnect on disconnect), with
//! replies through `chat.postMessage` in the question's thread.

use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::slack::{FakeSlack, PostFailure};

use crate::support::{binary, bridge_status_once};

const BOT: &str = "xoxb-test-bot-token";
const APP: &str = "xapp-test-app-token";
const SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const WAIT: Duration = Duration::from_secs(20);

async fn node(fake: &FakeSlack, mode: &str) -> TroupeProcess {
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[[bridges]]\nname = \"slack\"\nkind = \"slack\"\nmode = \"{mode}\"\nbot_token_env = \"SLACK_BOT\"\nsigning_secret_env = \"SLACK_SIGNING\"\napp_token_env = \"SLACK_APP\"\napi_base = \"{}\"\nallow_from = [\"U1\"]\n",
        fake.api_base()
    );
    TroupeProcess::start_with_env(
        binary(),
        &config,
        &[
            ("SLACK_BOT", BOT),
            ("SLACK_APP", APP),
            ("SLACK_SIGNING", SIGNING),
        ],
    )
    .await
    .expect("troupe starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_api_requests_are_verified_and_answered_in_threads() {
    let fake = FakeSlack::start(BOT, APP, SIGNING).await;
    let node = node(&fake, "events").await;
    let url = format!("{}/bridges/slack/webhook", node.http_url());
    assert_eq!(
        bridge_status_once(&node, "connected").await["state"],
        "connected"
    );

    let (status, body) = fake
        .post_event(&url, &json!({"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}), None)
        .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );

    fake.fail_next_posts([PostFailure::RateLimited(1), PostFailure::InternalError]);
    let mention = fake.callback(&fake.mention_event("C123", "U1", "what is **2** < 3?"));
    assert_eq!(fake.post_event(&url, &mention, None).await.0, 200);
    // Slack retries when it thinks we were slow: the same event, one answer.
    assert_eq!(fake.post_event(&url, &mention, Some(1)).await.0, 200);
    let dm = fake.callback(&fake.dm_event("D9", "U1", "hello in private"));
    assert_eq!(fake.post_event(&url, &dm, None).await.0, 200);

    let posted = fake.wait_for_posts(WAIT, |posted| posted.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let posted_now = fake.posted();
    assert_eq!(posted_now.len(), 2, "{posted:?}");
    let in_channel = posted_now
        .iter()
        .find(|body| body["channel"] == "C123")
        .unwrap();
    assert_eq!(in_channel["text"], "what is *2* &lt; 3?");
    assert_eq!(
        in_channel["thread_ts"], mention["event"]["ts"],
        "answered in the thread"
    );
    let private = posted_now
        .iter()
        .find(|body| body["channel"] == "D9")
        .unwrap();
    assert_eq!(private["text"], "hello in private");
    assert!(private.get("thread_ts").is_none());

    // Forged, stale and malformed requests.
    let client = reqwest::Client::new();
    let forged = client
        .post(&url)
        .header("X-Slack-Request-Timestamp", "1795000000")
        .header("X-Slack-Signature", "v0=deadbeef")
        .json(&dm)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let stale_body = dm.to_string();
    let stale = client
        .post(&url)
        .header("X-Slack-Request-Timestamp", "1600000000")
        .header(
            "X-Slack-Signature",
            fake.signature(1_600_000_000, &stale_body),
        )
        .body(stale_body)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 401, "a replay from long ago");
    let (status, _) = fake.post_event(&url, &json!({"no": "type"}), None).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_acknowledges_stored_events_and_reconnects_when_asked() {
    let fake = FakeSlack::start(BOT, APP, SIGNING).await;
    let node = node(&fake, "socket").await;
    assert_eq!(
        bridge_status_once(&node, "connected").await["state"],
        "connected"
    );
    let first = fake.push_envelope(&fake.dm_event("D1", "U1", "over the socket"));
    fake.wait_for_posts(WAIT, |posted| !posted.is_empty()).await;
    assert_eq!(fake.posted()[0]["text"], "over the socket");
    assert!(fake.acks().contains(&first));

    fake.request_reconnect();
    for _ in 0..200 {
        if fake.connections() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(fake.connections() >= 2, "reconnected after disconnect");
    let second = fake.push_envelope(&fake.mention_event("C5", "U1", "after the reconnect"));
    fake.wait_for_posts(WAIT, |posted| posted.len() >= 2).await;
    assert_eq!(fake.posted()[1]["text"], "after the reconnect");
    assert!(fake.acks().contains(&second));
    let status = bridge_status_once(&node, "connected").await;
    assert_eq!(status["messages_received"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_bot_token_shows_as_failed() {
    let fake = FakeSlack::start("xoxb-another-token", APP, SIGNING).await;
    let node = node(&fake, "events").await;
    let status = bridge_status_once(&node, "failed").await;
    assert_eq!(status["state"], "failed", "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("invalid_auth")
    );
}
