//! WhatsApp end to end: the real binary verifies Meta's webhook subscription, checks every
//! notification's signature, answers people through the Graph API double (typing shown,
//! rate limits retried, status notifications ignored) and refuses forgeries.

use std::time::Duration;

use troupe_testkit::process::TroupeProcess;
use troupe_testkit::whatsapp::{FakeWhatsApp, GraphFailure, PHONE_NUMBER_ID};

use crate::support::{binary, get};

const TOKEN: &str = "EAAG-test-access-token";
const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
const VERIFY: &str = "my-verify-token";

async fn node(fake: &FakeWhatsApp, extra: &str) -> TroupeProcess {
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[[bridges]]\nname = \"wa\"\nkind = \"whatsapp\"\nphone_number_id = \"{PHONE_NUMBER_ID}\"\naccess_token_env = \"WA_TOKEN\"\napp_secret_env = \"WA_SECRET\"\nverify_token_env = \"WA_VERIFY\"\napi_base = \"{}\"\n{extra}\n",
        fake.api_base()
    );
    TroupeProcess::start_with_env(
        binary(),
        &config,
        &[
            ("WA_TOKEN", TOKEN),
            ("WA_SECRET", APP_SECRET),
            ("WA_VERIFY", VERIFY),
        ],
    )
    .await
    .expect("troupe starts")
}

async fn texts_when(fake: &FakeWhatsApp, wa_id: &str, count: usize) -> Vec<String> {
    for _ in 0..400 {
        if fake.texts_to(wa_id).len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    fake.texts_to(wa_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_verifies_the_webhook_and_people_are_answered() {
    let fake = FakeWhatsApp::start(TOKEN, APP_SECRET).await;
    let node = node(&fake, "allow_from = [\"16505551234\"]").await;
    let url = format!("{}/bridges/wa/webhook", node.http_url());
    let client = reqwest::Client::new();

    let verify = client
        .get(format!(
            "{url}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={VERIFY}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status(), 200);
    assert_eq!(verify.text().await.unwrap(), "1158201444");
    let wrong = client
        .get(format!(
            "{url}?hub.mode=subscribe&hub.challenge=1&hub.verify_token=guess"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);

    fake.fail_next([GraphFailure::RateLimit, GraphFailure::Unavailable]);
    let notification =
        fake.text_notification("16505551234", "Sheena Nelson", "Does it come in **blue**?");
    assert_eq!(fake.notify(&url, &notification).await, 200);
    // Meta redelivers a notification it thinks failed: one answer only.
    assert_eq!(fake.notify(&url, &notification).await, 200);
    assert_eq!(
        fake.notify(&url, &fake.status_notification("16505551234"))
            .await,
        200
    );
    let texts = texts_when(&fake, "16505551234", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.texts_to("16505551234"),
        vec!["Does it come in *blue*?".to_owned()],
        "{texts:?}"
    );
    let sent = fake.sent();
    assert!(
        sent[0]["context"]["message_id"]
            .as_str()
            .unwrap()
            .starts_with("wamid."),
        "quotes the question"
    );
    assert!(
        fake.read_receipts()
            .iter()
            .any(|receipt| receipt["typing_indicator"]["type"] == "text"),
        "typing shown"
    );
    let (_, bridges) = get(&node, "/api/v1/bridges").await;
    let status = &bridges["bridges"][0];
    assert_eq!(status["kind"], "whatsapp");
    assert_eq!(status["state"], "connected");
    assert_eq!(status["messages_received"], 1);
    assert_eq!(status["replies_delivered"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_malformed_notifications_are_refused_and_strangers_pair() {
    let fake = FakeWhatsApp::start(TOKEN, APP_SECRET).await;
    let node = node(&fake, "").await;
    let url = format!("{}/bridges/wa/webhook", node.http_url());
    let client = reqwest::Client::new();
    let notification = fake.text_notification("4915112345678", "Eve", "hi");
    let forged = client
        .post(&url)
        .header("X-Hub-Signature-256", "sha256=00")
        .json(&notification)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let unsigned = client.post(&url).json(&notification).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let body = "{broken";
    let malformed = client
        .post(&url)
        .header("X-Hub-Signature-256", fake.signature(body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let json_body: serde_json::Value = malformed.json().await.unwrap();
    assert_eq!(json_body["error"]["code"], "invalid_notification");

    // Signed and from a stranger: a pairing code, not the model.
    assert_eq!(fake.notify(&url, &notification).await, 200);
    let texts = texts_when(&fake, "4915112345678", 1).await;
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("troupe pair approve"), "{texts:?}");
    let (_, session) = get(&node, "/api/v1/sessions/whatsapp:4915112345678").await;
    assert_eq!(session["error"]["code"], "not_found", "{session}");
}
