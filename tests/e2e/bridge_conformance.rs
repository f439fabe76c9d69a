//! The conformance suite every bridge passes, end to end through the real binary and the
//! platform's test double: a message is answered once in the sender's chat; the platform
//! delivering it again changes nothing; a long reply is split within the platform's limit
//! and loses nothing; the status tells the truth; a restart sends nothing twice.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use troupe_actors::message::unix_now;
use troupe_testkit::discord::FakeDiscord;
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::slack::FakeSlack;
use troupe_testkit::telegram::{FakeTelegram, markdown_v2};
use troupe_testkit::whatsapp::{FakeWhatsApp, PHONE_NUMBER_ID};

use crate::signed_webhook::{Receiver, post_signed, start_receiver};
use crate::support::{binary, bridge_status_once};

/// One platform, driven through its double.
#[async_trait]
trait Platform: Send + Sync {
    /// The `[[bridges]]` entry (named `b`), allowing the test's user.
    fn bridge(&self) -> String;
    fn env(&self) -> Vec<(&'static str, String)>;
    /// The platform's length limit for one message.
    fn limit(&self) -> usize;
    /// The user sends `text`; the platform delivers it to the node.
    async fn send(&self, node: &TroupeProcess, text: &str);
    /// The platform delivers the last message once more.
    async fn redeliver(&self, node: &TroupeProcess);
    /// The visible texts of the messages the user received.
    fn replies(&self) -> Vec<String>;
}

async fn wait_for_replies(platform: &dyn Platform, count: usize) -> Vec<String> {
    for _ in 0..800 {
        if platform.replies().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    platform.replies()
}

async fn conformance(platform: &dyn Platform) {
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n{}",
        platform.bridge()
    );
    let env = platform.env();
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect();
    let mut node = TroupeProcess::start_with_env(binary(), &config, &env)
        .await
        .unwrap();
    assert_eq!(
        bridge_status_once(&node, "connected").await["state"],
        "connected"
    );

    platform.send(&node, "hello conformance").await;
    assert_eq!(
        wait_for_replies(platform, 1).await,
        vec!["hello conformance"]
    );
    platform.redeliver(&node).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        platform.replies().len(),
        1,
        "a redelivered message is answered once"
    );

    let words = (platform.limit().min(8000) * 2 / 6).max(10);
    let long: String = (0..words).map(|index| format!("w{index:04} ")).collect();
    platform.send(&node, long.trim()).await;
    let splits = long.len() > platform.limit();
    let words_after_first = |replies: &[String]| -> usize {
        replies
            .iter()
            .skip(1)
            .map(|piece| piece.split_whitespace().count())
            .sum()
    };
    for _ in 0..800 {
        if words_after_first(&platform.replies()) >= words {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let replies = platform.replies();
    let pieces = &replies[1..];
    assert!(
        !pieces.is_empty() && (!splits || pieces.len() >= 2),
        "split: {} pieces",
        pieces.len()
    );
    for piece in pieces {
        assert!(
            piece.chars().count() <= platform.limit(),
            "{} > {}",
            piece.chars().count(),
            platform.limit()
        );
    }
    let received: usize = pieces
        .iter()
        .map(|piece| piece.split_whitespace().count())
        .sum();
    assert_eq!(received, words, "nothing lost across the split");

    let status = bridge_status_once(&node, "connected").await;
    assert_eq!(status["messages_received"], 2, "{status}");
    assert_eq!(status["replies_delivered"], 2, "{status}");
    assert_eq!(status["deliveries_failed"], 0, "{status}");

    let before = platform.replies().len();
    assert_eq!(
        node.terminate(Duration::from_secs(20)).await.unwrap(),
        Some(0)
    );
    node.restart().await.unwrap();
    assert_eq!(
        bridge_status_once(&node, "connected").await["state"],
        "connected"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        platform.replies().len(),
        before,
        "a restart sends nothing again"
    );
}

struct Telegram(FakeTelegram);

#[async_trait]
impl Platform for Telegram {
    fn bridge(&self) -> String {
        format!(
            "[[bridges]]\nname = \"b\"\nkind = \"telegram\"\ntoken_env = \"TOKEN\"\napi_base = \"{}\"\npoll_timeout_secs = 1\nallow_from = [\"42\"]\n",
            self.0.api_base()
        )
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("TOKEN", "123456:conformance".into())]
    }
    fn limit(&self) -> usize {
        4096
    }
    async fn send(&self, _node: &TroupeProcess, text: &str) {
        self.0.user_says(42, text);
    }
    async fn redeliver(&self, _node: &TroupeProcess) {
        self.0.redeliver_last();
    }
    fn replies(&self) -> Vec<String> {
        self.0
            .texts_to(42)
            .iter()
            .map(|text| markdown_v2::parse(text).unwrap_or_else(|_| text.clone()))
            .collect()
    }
}

struct Slack(FakeSlack, std::sync::Mutex<Value>);

#[async_trait]
impl Platform for Slack {
    fn bridge(&self) -> String {
        format!(
            "[[bridges]]\nname = \"b\"\nkind = \"slack\"\nbot_token_env = \"BOT\"\nsigning_secret_env = \"SIGNING\"\napi_base = \"{}\"\nallow_from = [\"U1\"]\n",
            self.0.api_base()
        )
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("BOT", "xoxb-conformance".into()),
            ("SIGNING", "conformance-signing-secret".into()),
        ]
    }
    fn limit(&self) -> usize {
        4000
    }
    async fn send(&self, node: &TroupeProcess, text: &str) {
        let callback = self.0.callback(&self.0.dm_event("D1", "U1", text));
        *self.1.lock().unwrap() = callback.clone();
        let url = format!("{}/bridges/b/webhook", node.http_url());
        assert_eq!(self.0.post_event(&url, &callback, None).await.0, 200);
    }
    async fn redeliver(&self, node: &TroupeProcess) {
        let callback = self.1.lock().unwrap().clone();
        let url = format!("{}/bridges/b/webhook", node.http_url());
        assert_eq!(self.0.post_event(&url, &callback, Some(1)).await.0, 200);
    }
    fn replies(&self) -> Vec<String> {
        self.0
            .posted()
            .iter()
            .map(|body| body["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

struct Discord(FakeDiscord);

#[async_trait]
impl Platform for Discord {
    fn bridge(&self) -> String {
        format!(
            "[[bridges]]\nname = \"b\"\nkind = \"discord\"\nbot_token_env = \"TOKEN\"\napi_base = \"{}\"\nallow_from = [\"42\"]\n",
            self.0.api_base()
        )
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("TOKEN", "conformance-token".into())]
    }
    fn limit(&self) -> usize {
        2000
    }
    async fn send(&self, _node: &TroupeProcess, text: &str) {
        self.0.user_writes("500", None, "42", text, false);
    }
    async fn redeliver(&self, _node: &TroupeProcess) {
        self.0.redeliver_last();
    }
    fn replies(&self) -> Vec<String> {
        self.0
            .posted()
            .iter()
            .map(|message| message["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

struct WhatsApp(FakeWhatsApp, std::sync::Mutex<Value>);

#[async_trait]
impl Platform for WhatsApp {
    fn bridge(&self) -> String {
        format!(
            "[[bridges]]\nname = \"b\"\nkind = \"whatsapp\"\nphone_number_id = \"{PHONE_NUMBER_ID}\"\naccess_token_env = \"TOKEN\"\napp_secret_env = \"SECRET\"\nverify_token_env = \"VERIFY\"\napi_base = \"{}\"\nallow_from = [\"15550001111\"]\n",
            self.0.api_base()
        )
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TOKEN", "EAAG-conformance".into()),
            ("SECRET", "conformance-app-secret".into()),
            ("VERIFY", "v".into()),
        ]
    }
    fn limit(&self) -> usize {
        4096
    }
    async fn send(&self, node: &TroupeProcess, text: &str) {
        let notification = self.0.text_notification("15550001111", "U", text);
        *self.1.lock().unwrap() = notification.clone();
        assert_eq!(
            self.0
                .notify(
                    &format!("{}/bridges/b/webhook", node.http_url()),
                    &notification
                )
                .await,
            200
        );
    }
    async fn redeliver(&self, node: &TroupeProcess) {
        let notification = self.1.lock().unwrap().clone();
        assert_eq!(
            self.0
                .notify(
                    &format!("{}/bridges/b/webhook", node.http_url()),
                    &notification
                )
                .await,
            200
        );
    }
    fn replies(&self) -> Vec<String> {
        self.0.texts_to("15550001111")
    }
}

const HOOK_SECRET: &str = "conformance-shared-secret";

struct Webhook(Receiver, String, std::sync::Mutex<Value>);

#[async_trait]
impl Platform for Webhook {
    fn bridge(&self) -> String {
        format!(
            "[[bridges]]\nname = \"hooks\"\nkind = \"webhook\"\nsecret_env = \"SECRET\"\ndeliver_url = \"{}\"\n",
            self.1
        )
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("SECRET", HOOK_SECRET.into())]
    }
    fn limit(&self) -> usize {
        // One request carries any length; the suite's split check needs a real limit.
        usize::MAX
    }
    async fn send(&self, node: &TroupeProcess, text: &str) {
        let message =
            json!({"id": format!("h{}", unix_now_nanos()), "sender_id": "u1", "payload": text});
        *self.2.lock().unwrap() = message.clone();
        assert_eq!(
            post_signed(node, &message, unix_now(), HOOK_SECRET).await.0,
            202
        );
    }
    async fn redeliver(&self, node: &TroupeProcess) {
        let message = self.2.lock().unwrap().clone();
        assert_eq!(
            post_signed(node, &message, unix_now(), HOOK_SECRET).await.0,
            202
        );
    }
    fn replies(&self) -> Vec<String> {
        self.0
            .attempts
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, body)| serde_json::from_str::<Value>(body).ok())
            .map(|reply| reply["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn unix_now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_conforms() {
    conformance(&Telegram(FakeTelegram::start("123456:conformance").await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_conforms() {
    let fake = FakeSlack::start(
        "xoxb-conformance",
        "xapp-unused",
        "conformance-signing-secret",
    )
    .await;
    conformance(&Slack(fake, std::sync::Mutex::new(Value::Null))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_conforms() {
    conformance(&Discord(FakeDiscord::start("conformance-token").await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_conform() {
    let (url, receiver) = start_receiver(0).await;
    conformance(&Webhook(receiver, url, std::sync::Mutex::new(Value::Null))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_conforms() {
    let fake = FakeWhatsApp::start("EAAG-conformance", "conformance-app-secret").await;
    conformance(&WhatsApp(fake, std::sync::Mutex::new(Value::Null))).await;
}
