//! One person, one memory: a Telegram account and a webhook caller linked with
//! `troupe identity link` share one conversation (`person:<name>`), and each reply goes
//! back on the platform its question came from.

use std::time::Duration;

use serde_json::json;
use troupe_actors::message::unix_now;
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::telegram::FakeTelegram;

use crate::signed_webhook::{post_signed, start_receiver};
use crate::support::{binary, get, said};

const TOKEN: &str = "123456:TEST-token";
const SECRET: &str = "a-long-shared-secret-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_accounts_share_one_conversation_and_get_replies_where_they_asked() {
    let telegram = FakeTelegram::start(TOKEN).await;
    let (url, receiver) = start_receiver(0).await;
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n\
         [[bridges]]\nname = \"tg\"\nkind = \"telegram\"\ntoken_env = \"TG_TOKEN\"\napi_base = \"{}\"\npoll_timeout_secs = 1\n\n\
         [[bridges]]\nname = \"hooks\"\nkind = \"webhook\"\nsecret_env = \"HOOK_SECRET\"\ndeliver_url = \"{url}\"\n",
        telegram.api_base()
    );
    let node = TroupeProcess::start_with_env(
        binary(),
        &config,
        &[("TG_TOKEN", TOKEN), ("HOOK_SECRET", SECRET)],
    )
    .await
    .unwrap();
    let link = std::process::Command::new(binary())
        .args([
            "identity",
            "link",
            "telegram:42",
            "webhook:ada",
            "--person",
            "ada",
            "--url",
            &node.http_url(),
        ])
        .output()
        .unwrap();
    assert!(link.status.success(), "{link:?}");
    assert!(String::from_utf8_lossy(&link.stdout).contains("ada: "));

    // Linking paired the Telegram account: no pairing code, a real answer.
    telegram.user_says(42, "remember: my cat is Mimi");
    telegram
        .wait_for_sent(Duration::from_secs(20), |sent| !sent.is_empty())
        .await;
    assert_eq!(telegram.texts_to(42), vec!["remember: my cat is Mimi"]);
    let message = json!({"id": "w1", "sender_id": "ada", "payload": "what is my cat called?"});
    let (status, _) = post_signed(&node, &message, unix_now(), SECRET).await;
    assert_eq!(status, 202);
    for _ in 0..200 {
        if !receiver.attempts.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let delivered = receiver.attempts.lock().unwrap().clone();
    assert_eq!(
        delivered.len(),
        1,
        "the webhook question is answered on the webhook"
    );
    assert_eq!(telegram.texts_to(42).len(), 1, "and not on Telegram");

    let (status, history) = get(&node, "/api/v1/sessions/person:ada").await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(
        said(&history),
        vec![
            "remember: my cat is Mimi",
            "remember: my cat is Mimi",
            "what is my cat called?",
            "what is my cat called?"
        ],
        "one conversation across both platforms"
    );
    let (_, people) = get(&node, "/api/v1/identities").await;
    assert_eq!(people["people"][0]["person"], "ada");

    let unlink = std::process::Command::new(binary())
        .args([
            "identity",
            "unlink",
            "webhook:ada",
            "--url",
            &node.http_url(),
        ])
        .output()
        .unwrap();
    assert!(unlink.status.success());
    let (status, body) = crate::support::call(
        &node,
        reqwest::Method::DELETE,
        "/api/v1/identities/webhook:ada",
    )
    .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pairing_and_identity_requests_get_clear_errors() {
    let node = crate::support::echo_node("").await;
    let client = reqwest::Client::new();
    let base = node.http_url();
    let cases = [
        ("/api/v1/pairing/approve", "{not json", 400, "invalid_json"),
        (
            "/api/v1/pairing/approve",
            r#"{"code": "NOPE1234"}"#,
            404,
            "unknown_code",
        ),
        (
            "/api/v1/pairing/approve",
            r#"{"code": "X", "extra": 1}"#,
            400,
            "invalid_json",
        ),
        (
            "/api/v1/identities/link",
            r#"{"members": ["telegram:1"]}"#,
            422,
            "invalid_identity",
        ),
        (
            "/api/v1/identities/link",
            r#"{"members": ["nocolon", "slack:U1"]}"#,
            422,
            "invalid_identity",
        ),
        (
            "/api/v1/identities/link",
            r#"{"members": "telegram:1"}"#,
            400,
            "invalid_json",
        ),
    ];
    for (path, body, status, code) in cases {
        let response = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{path} {body}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{path} {body}: {answer}");
    }
    let (status, body) =
        crate::support::call(&node, reqwest::Method::DELETE, "/api/v1/pairing/telegram:1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_paired"))
    );
    let approve = std::process::Command::new(binary())
        .args(["pair", "approve", "NOPE1234", "--url", &base])
        .output()
        .unwrap();
    assert!(!approve.status.success());
    assert!(String::from_utf8_lossy(&approve.stderr).contains("no pending pairing"));
}
