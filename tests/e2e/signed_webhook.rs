//! The signed-webhook bridge end to end: signed messages in over HTTP, replies POSTed to
//! the caller's URL, signed, with an idempotency key, retried until accepted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use troupe_actors::message::unix_now;
use troupe_bridges::webhook::sign;
use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, get};

const SECRET: &str = "a-long-shared-secret-0123456789";

#[derive(Clone, Default)]
pub(crate) struct Receiver {
    /// (headers, body) of every delivery attempt.
    pub(crate) attempts: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    /// Attempts answered 503 before the first 200.
    failures_left: Arc<Mutex<u32>>,
}

pub(crate) async fn start_receiver(failures: u32) -> (String, Receiver) {
    let receiver = Receiver {
        failures_left: Arc::new(Mutex::new(failures)),
        ..Receiver::default()
    };
    let state = receiver.clone();
    let app = axum::Router::new().route(
        "/replies",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                state.attempts.lock().unwrap().push((headers, body));
                let mut left = state.failures_left.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/replies", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, receiver)
}

async fn node(deliver_url: &str) -> TroupeProcess {
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[[bridges]]\nname = \"hooks\"\nkind = \"webhook\"\nsecret_env = \"HOOK_SECRET\"\ndeliver_url = \"{deliver_url}\"\n"
    );
    TroupeProcess::start_with_env(binary(), &config, &[("HOOK_SECRET", SECRET)])
        .await
        .expect("troupe starts")
}

pub(crate) async fn post_signed(
    node: &TroupeProcess,
    body: &Value,
    timestamp: u64,
    secret: &str,
) -> (u16, Value) {
    let body = body.to_string();
    let response = reqwest::Client::new()
        .post(format!("{}/bridges/hooks/webhook", node.http_url()))
        .header("content-type", "application/json")
        .header("X-Troupe-Timestamp", timestamp.to_string())
        .header(
            "X-Troupe-Signature",
            sign(secret.as_bytes(), timestamp, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_messages_are_answered_at_the_callers_url_once() {
    let (url, receiver) = start_receiver(2).await;
    let node = node(&url).await;
    let message = json!({"id": "h1", "sender_id": "lamp", "payload": "turn on the light"});
    let (status, body) = post_signed(&node, &message, unix_now(), SECRET).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["id"], "h1");
    // The caller retries (its own network hiccup): the same id is one message.
    let (status, _) = post_signed(&node, &message, unix_now(), SECRET).await;
    assert_eq!(status, 202);

    for _ in 0..200 {
        if receiver.attempts.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts = receiver.attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.len(),
        3,
        "two 503s, then accepted, then nothing more"
    );
    let keys: Vec<_> = attempts
        .iter()
        .map(|(headers, _)| headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert!(
        keys.iter().all(|key| *key == keys[0]),
        "one idempotency key: {keys:?}"
    );
    let (headers, body) = &attempts[2];
    let timestamp: u64 = headers["x-troupe-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        headers["x-troupe-signature"].to_str().unwrap(),
        sign(SECRET.as_bytes(), timestamp, body.as_bytes()),
        "replies are signed like requests"
    );
    let reply: Value = serde_json::from_str(body).unwrap();
    assert_eq!(reply["text"], "turn on the light");
    assert_eq!(reply["in_reply_to"], "h1");
    assert_eq!(reply["recipient_id"], "lamp");
    assert_eq!(reply["reply_id"], keys[0]);

    let (_, bridges) = get(&node, "/api/v1/bridges").await;
    let status = &bridges["bridges"][0];
    assert_eq!(status["state"], "connected");
    assert_eq!(status["messages_received"], 1);
    assert_eq!(status["replies_delivered"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_malformed_requests_are_refused() {
    let (url, receiver) = start_receiver(0).await;
    let node = node(&url).await;
    let message = json!({"id": "h2", "sender_id": "mallory", "payload": "hi"});
    let (status, body) =
        post_signed(&node, &message, unix_now(), "not-the-shared-secret-at-all").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = post_signed(&node, &message, unix_now() - 3600, SECRET).await;
    assert_eq!(status, 401, "a replayed old request");
    let unsigned = reqwest::Client::new()
        .post(format!("{}/bridges/hooks/webhook", node.http_url()))
        .json(&message)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let (status, body) = post_signed(
        &node,
        &json!({"id": "h3", "payload": "no sender"}),
        unix_now(),
        SECRET,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_message");
    let (status, _) = post_signed(
        &node,
        &json!({"id": "has space", "sender_id": "x", "payload": "y"}),
        unix_now(),
        SECRET,
    )
    .await;
    assert_eq!(status, 400);
    // What REST refuses, the webhook refuses too.
    for (message, what) in [
        (
            json!({"id": "h4", "sender_id": "x", "payload": "  "}),
            "empty",
        ),
        (
            json!({"id": "h5", "sender_id": "x", "payload": "y",
                   "metadata": {"troupe.reply_route": {"bridge": "tg"}}}),
            "reserved",
        ),
    ] {
        let (status, body) = post_signed(&node, &message, unix_now(), SECRET).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_message");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(what),
            "{body}"
        );
    }
    let unknown = reqwest::Client::new()
        .post(format!("{}/bridges/nope/webhook", node.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.attempts.lock().unwrap().is_empty(),
        "nothing reached the model"
    );
    let (status, _) = get(&node, "/healthz").await;
    assert_eq!(status, 200, "the node is fine");
}
