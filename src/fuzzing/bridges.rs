//! The bridge target: an HTTP request to `/bridges/{name}/…`, as a platform (or anyone
//! else) sends it, handled by each platform's bridge. Half the inputs carry a correct
//! signature computed here, so the fuzzer reaches the payload parsers behind the checks;
//! the other half exercise the signature and header parsing itself.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use ed25519_dalek::Signer;
use troupe_actors::bridge::{
    Bridge, BridgeContext, BridgeError, BridgeInbound, BridgeStateStore, InboundSink, StatusHandle,
    WebhookRequest,
};
use troupe_actors::message::unix_now;
use troupe_actors::signing::hmac_sha256_hex;
use troupe_bridges::discord::config::DiscordSettings;
use troupe_bridges::secrets::Secret;
use troupe_bridges::slack::config::{SlackMode, SlackSettings};
use troupe_bridges::telegram::config::{TelegramMode, TelegramSettings};
use troupe_bridges::whatsapp::config::WhatsAppSettings;

const SECRET: &str = "fuzzing-secret-0123456789";
/// Nothing listens there: a bridge that tries to call its platform fails at once.
const NOWHERE: &str = "http://127.0.0.1:9";
const DISCORD_KEY: [u8; 32] = [7; 32];

/// The bridges under test, built once.
struct Bridges {
    all: Vec<Arc<dyn Bridge>>,
    discord_key: ed25519_dalek::SigningKey,
}

fn bridges() -> &'static Bridges {
    static BRIDGES: OnceLock<Bridges> = OnceLock::new();
    BRIDGES.get_or_init(|| {
        let discord_key = ed25519_dalek::SigningKey::from_bytes(&DISCORD_KEY);
        let mut all: Vec<Arc<dyn Bridge>> = vec![
            Arc::new(troupe_bridges::telegram::TelegramBridge::new(
                TelegramSettings {
                    token: Secret::new("123:fuzz"),
                    mode: TelegramMode::Webhook,
                    webhook_url: Some("https://example.invalid/bridges/t/webhook".into()),
                    webhook_secret: Some(Secret::new(SECRET)),
                    poll_timeout_secs: 1,
                    api_base: NOWHERE.into(),
                },
            )),
            Arc::new(troupe_bridges::slack::SlackBridge::new(SlackSettings {
                bot_token: Secret::new("xoxb-fuzz"),
                mode: SlackMode::Events,
                signing_secret: Some(Secret::new(SECRET)),
                app_token: None,
                api_base: NOWHERE.into(),
                files_base: format!("{NOWHERE}/"),
            })),
            Arc::new(troupe_bridges::discord::DiscordBridge::new(
                DiscordSettings {
                    bot_token: Secret::new("fuzz"),
                    public_key: Some(discord_key.verifying_key()),
                    application_id: Some("1".into()),
                    api_base: NOWHERE.into(),
                    cdn_base: format!("{NOWHERE}/"),
                },
            )),
            Arc::new(troupe_bridges::whatsapp::WhatsAppBridge::new(
                WhatsAppSettings {
                    phone_number_id: "1".into(),
                    access_token: Secret::new("fuzz"),
                    app_secret: Secret::new(SECRET),
                    verify_token: Secret::new(SECRET),
                    graph_base: NOWHERE.into(),
                },
            )),
        ];
        if let Some(webhook) = webhook_bridge() {
            all.push(webhook);
        }
        Bridges { all, discord_key }
    })
}

/// The signed-webhook bridge reads its secret only from the environment or a file.
fn webhook_bridge() -> Option<Arc<dyn Bridge>> {
    let path = std::env::temp_dir().join(format!("troupe-fuzz-secret-{}", std::process::id()));
    std::fs::write(&path, SECRET).ok()?;
    let config = troupe_bridges::webhook::WebhookConfig {
        secret_env: None,
        secret_file: Some(path.clone()),
        deliver_url: None,
        max_skew_secs: 300,
    };
    let bridge = config.build().ok();
    let _ = std::fs::remove_file(path);
    Some(Arc::new(bridge?))
}

/// Takes what a bridge hands over and checks it came through its own door.
struct CheckingSink;

#[async_trait::async_trait]
impl InboundSink for CheckingSink {
    async fn receive(&self, bridge: &str, inbound: BridgeInbound) -> Result<(), BridgeError> {
        assert_eq!(
            inbound.message.platform(),
            bridge,
            "a bridge writes only as its own platform"
        );
        Ok(())
    }
}

struct NoState;

#[async_trait::async_trait]
impl BridgeStateStore for NoState {
    async fn get(&self, _bridge: &str, _key: &str) -> Result<Option<String>, BridgeError> {
        Ok(None)
    }
    async fn put(&self, _bridge: &str, _key: &str, _value: &str) -> Result<(), BridgeError> {
        Ok(())
    }
}

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = RefCell::new(
        tokio::runtime::Builder::new_current_thread().enable_all().build().ok()
    );
}

/// One request: the first byte picks the bridge, whether it is signed, the method and the
/// endpoint; then header lines (`name: value`, and `?query`) up to a blank line; then
/// the body.
pub(super) fn webhook(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let bridges = bridges();
    let bridge = &bridges.all[usize::from(pick) % bridges.all.len()];
    let choice = pick / 8;
    let mut request = parse_request(rest, choice);
    if choice & 1 == 1 {
        sign(bridge.kind(), &mut request, &bridges.discord_key);
    }
    if bridge
        .webhook_body_limit()
        .is_some_and(|limit| request.body.len() > limit)
    {
        return; // the gateway refuses it before the bridge sees it
    }
    let context = BridgeContext {
        name: bridge.kind().to_owned(),
        sink: Arc::new(CheckingSink),
        state: Arc::new(NoState),
        status: StatusHandle::new(bridge.kind(), bridge.kind()),
        shutdown: tokio_util::sync::CancellationToken::new(),
    };
    RUNTIME.with(|runtime| {
        if let Some(runtime) = runtime.borrow().as_ref() {
            let response = runtime.block_on(bridge.webhook(request, &context));
            assert!(
                (100..600).contains(&response.status),
                "a bridge answers a real HTTP status"
            );
        }
    });
}

fn parse_request(data: &[u8], choice: u8) -> WebhookRequest {
    let split = data.windows(2).position(|pair| pair == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (&[][..], data),
    };
    let head = String::from_utf8_lossy(head);
    let mut headers = Vec::new();
    let mut query = Vec::new();
    for line in head.lines() {
        if let Some(pairs) = line.strip_prefix('?') {
            query.extend(url::form_urlencoded::parse(pairs.as_bytes()).into_owned());
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    WebhookRequest {
        method: if choice & 2 == 0 { "POST" } else { "GET" }.into(),
        endpoint: if choice & 4 == 0 {
            "webhook"
        } else {
            "interactions"
        }
        .into(),
        headers,
        query,
        body: bytes::Bytes::copy_from_slice(body),
    }
}

/// Puts the platform's correct signature first, where the bridge looks.
fn sign(kind: &str, request: &mut WebhookRequest, discord_key: &ed25519_dalek::SigningKey) {
    let timestamp = unix_now();
    let now = timestamp.to_string();
    let body = request.body.clone();
    let secret = SECRET.as_bytes();
    let signed: Vec<(&str, String)> = match kind {
        "telegram" => vec![("x-telegram-bot-api-secret-token", SECRET.into())],
        "slack" => vec![
            ("x-slack-request-timestamp", now.clone()),
            (
                "x-slack-signature",
                format!(
                    "v0={}",
                    hmac_sha256_hex(secret, &[b"v0:", now.as_bytes(), b":", &body])
                ),
            ),
        ],
        "discord" => {
            let message = [now.as_bytes(), &body].concat();
            vec![
                ("x-signature-timestamp", now),
                (
                    "x-signature-ed25519",
                    hex::encode(discord_key.sign(&message).to_bytes()),
                ),
            ]
        }
        "whatsapp" => vec![(
            "x-hub-signature-256",
            format!("sha256={}", hmac_sha256_hex(secret, &[&body])),
        )],
        _ => vec![
            ("x-troupe-timestamp", now),
            (
                "x-troupe-signature",
                troupe_bridges::webhook::sign(secret, timestamp, &body),
            ),
        ],
    };
    let mut headers: Vec<(String, String)> = signed
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    headers.append(&mut request.headers);
    request.headers = headers;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bridge_answers_a_real_status_signed_or_not() {
        // Each kind, signed and not; a panic or a wrong platform fails the test.
        for pick in 0..32u8 {
            let mut data = vec![pick];
            data.extend_from_slice(b"content-type: application/json\n\n{\"update_id\":1}");
            webhook(&data);
        }
    }

    #[test]
    fn the_harness_signature_is_one_the_webhook_bridge_accepts() {
        let bridges = bridges();
        let webhook = bridges
            .all
            .iter()
            .find(|bridge| bridge.kind() == "webhook")
            .unwrap();
        let mut request = parse_request(br#"{"id":"m1","sender_id":"s","payload":"hello"}"#, 0);
        sign("webhook", &mut request, &bridges.discord_key);
        let context = BridgeContext {
            name: "webhook".into(),
            sink: Arc::new(CheckingSink),
            state: Arc::new(NoState),
            status: StatusHandle::new("webhook", "webhook"),
            shutdown: tokio_util::sync::CancellationToken::new(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let response = runtime.block_on(webhook.webhook(request, &context));
        assert!(response.status < 300, "{response:?}");
    }
}
