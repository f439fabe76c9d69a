//! The REST API, its errors, and the sessions API.

use serde_json::{Value, json};

use reqwest::Method;

use crate::support::{call, echo_node, get, http, post_message};

#[tokio::test]
async fn posts_a_message_and_gets_the_reply() {
    let node = echo_node("").await;
    let (status, body) =
        post_message(&node, &json!({"sender_id": "alice", "payload": "hello"})).await;
    assert_eq!(status, 200);
    let reply = &body["reply"];
    assert_eq!(reply["payload"], "hello");
    assert_eq!(reply["platform"], "api");
    assert_eq!(reply["recipient_id"], "alice");
    assert_eq!(reply["conversation_id"], "alice");
    assert_eq!(reply["content_type"], "text");
    assert!(
        reply["in_reply_to"].as_str().unwrap().starts_with("m-"),
        "the server assigned an id"
    );
}

#[tokio::test]
async fn a_repeated_id_is_answered_with_the_first_reply() {
    let node = echo_node("").await;
    let message = json!({"id": "once", "sender_id": "bob", "payload": "ping"});
    let (_, first) = post_message(&node, &message).await;
    let (_, second) = post_message(&node, &message).await;
    assert_eq!(first["reply"], second["reply"]);
    let (_, session) = get(&node, "/api/v1/sessions/api:bob").await;
    assert_eq!(
        session["history"].as_array().unwrap().len(),
        2,
        "one turn, not two"
    );
}

#[tokio::test]
async fn streams_delta_and_reply_events() {
    let node = echo_node("").await;
    let response = http()
        .post(format!("{}/api/v1/messages", node.http_url()))
        .header("accept", "text/event-stream")
        .json(&json!({"id": "s1", "sender_id": "carol", "payload": "stream me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("event: delta"), "{body}");
    let reply_line = body
        .lines()
        .skip_while(|line| *line != "event: reply")
        .nth(1)
        .unwrap();
    let reply: Value = serde_json::from_str(reply_line.trim_start_matches("data: ")).unwrap();
    assert_eq!(reply["payload"], "stream me");
    assert_eq!(reply["in_reply_to"], "s1");
}

async fn raw_post(
    node: &troupe_testkit::process::TroupeProcess,
    content_type: &str,
    body: String,
) -> (u16, Value) {
    let response = http()
        .post(format!("{}/api/v1/messages", node.http_url()))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn every_bad_input_gets_a_clear_json_error() {
    let node = echo_node("[server]\nmax_payload_bytes = 1024\n").await;
    let cases = [
        (
            "application/json",
            "{not json".to_owned(),
            400,
            "invalid_json",
        ),
        (
            "text/plain",
            json!({"sender_id": "a", "payload": "x"}).to_string(),
            415,
            "unsupported_media_type",
        ),
        (
            "application/json",
            json!({"sender_id": "a", "payload": "x".repeat(1025)}).to_string(),
            413,
            "payload_too_large",
        ),
        (
            "application/json",
            "x".repeat(200_000),
            413,
            "payload_too_large",
        ),
        (
            "application/json",
            json!({"sender_id": "a", "payload": ""}).to_string(),
            422,
            "invalid_message",
        ),
        (
            "application/json",
            json!({"payload": "x"}).to_string(),
            422,
            "invalid_message",
        ),
        (
            "application/json",
            json!({"sender_id": "a", "payload": "x", "content_type": "video"}).to_string(),
            422,
            "unknown_content_type",
        ),
        (
            "application/json",
            json!({"sender_id": "a", "payload": "x", "content_type": "audio"}).to_string(),
            422,
            "unsupported_content_type",
        ),
        (
            "application/json",
            json!({"sender_id": "a b", "payload": "x"}).to_string(),
            422,
            "invalid_message",
        ),
        (
            "application/json",
            json!({"sender_id": "a", "payload": "x", "bogus": true}).to_string(),
            422,
            "invalid_message",
        ),
        (
            "application/json",
            json!({"sender_id": 5, "payload": "x"}).to_string(),
            422,
            "invalid_message",
        ),
    ];
    for (content_type, body, status, code) in cases {
        let shown = body.chars().take(60).collect::<String>();
        let (actual_status, answer) = raw_post(&node, content_type, body).await;
        assert_eq!(actual_status, status, "{shown}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{shown}: {answer}");
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    let (status, _) =
        post_message(&node, &json!({"sender_id": "a", "payload": "still fine"})).await;
    assert_eq!(status, 200, "the node survived all of it");
}

#[tokio::test]
async fn the_sessions_api_lists_shows_and_resets() {
    let node = echo_node("").await;
    for sender in ["dave", "erin"] {
        post_message(&node, &json!({"sender_id": sender, "payload": "hi"})).await;
    }
    let (_, list) = get(&node, "/api/v1/sessions").await;
    let keys: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["api:dave", "api:erin"]);
    let (_, page) = get(&node, "/api/v1/sessions?limit=1").await;
    assert_eq!(page["next_after"], "api:dave");
    let rest: Value = http()
        .get(format!(
            "{}/api/v1/sessions?after=api:dave",
            node.http_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["sessions"][0]["key"], "api:erin");

    let (_, session) = get(&node, "/api/v1/sessions/api:dave").await;
    assert_eq!(session["history"][0]["role"], "user");
    assert_eq!(session["history"][1]["role"], "assistant");

    let (deleted, answer) = call(&node, Method::DELETE, "/api/v1/sessions/api:dave").await;
    assert_eq!((deleted, &answer["reset"]), (200, &json!(true)));
    let (status, gone) = get(&node, "/api/v1/sessions/api:dave").await;
    assert_eq!((status, &gone["error"]["code"]), (404, &json!("not_found")));
    let (again, _) = call(&node, Method::DELETE, "/api/v1/sessions/api:dave").await;
    assert_eq!(again, 404);
    let (status, bad_key) = get(&node, "/api/v1/sessions/no-colon").await;
    assert_eq!(
        (status, &bad_key["error"]["code"]),
        (400, &json!("invalid_session_key"))
    );
}

#[tokio::test]
async fn a_token_protects_the_api_but_not_health() {
    let node = echo_node("[server]\ntoken = \"t0ken\"\n").await;
    let url = format!("{}/api/v1/messages", node.http_url());
    let body = json!({"sender_id": "a", "payload": "x"});
    let refused = http().post(&url).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    let wrong = http()
        .post(&url)
        .bearer_auth("nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let accepted = http()
        .post(&url)
        .bearer_auth("t0ken")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    for open in ["/healthz", "/readyz", "/"] {
        assert_eq!(get(&node, open).await.0, 200, "{open}");
    }
    assert_eq!(get(&node, "/metrics").await.0, 401);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let node = echo_node("").await;
    let (missing_status, missing) = call(&node, Method::GET, "/nope").await;
    assert_eq!(missing_status, 404);
    assert_eq!(missing["error"]["code"], "not_found");
    let (wrong_method_status, wrong_method) = call(&node, Method::PUT, "/api/v1/messages").await;
    assert_eq!(wrong_method_status, 405);
    assert_eq!(wrong_method["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn metrics_and_the_web_page_are_served() {
    let node = echo_node("").await;
    post_message(&node, &json!({"sender_id": "m", "payload": "count me"})).await;
    let metrics = crate::support::metrics_page(&node.http_url()).await;
    for name in [
        "troupe_messages_in_total 1",
        "troupe_messages_out_total 1",
        "troupe_sessions_active 1",
        "troupe_sessions_passivated",
        "troupe_gateway_added_latency_seconds_bucket",
        "troupe_model_latency_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    for section in ["/", "/rooms"] {
        let page = http()
            .get(format!("{}{section}", node.http_url()))
            .send()
            .await
            .unwrap();
        let policy = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            policy.contains("default-src 'none'") && !policy.contains("unsafe-inline"),
            "{section}: {policy}"
        );
        let html = page.text().await.unwrap();
        assert!(html.contains(r#"<script src="/app/app.js" defer></script>"#));
        assert!(!html.contains("https://") && !html.contains("<script>"));
    }
    let script = http()
        .get(format!("{}/app/app.js", node.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(script.text().await.unwrap().contains("new WebSocket"));
    let licenses = http()
        .get(format!("{}/app/LICENSES.txt", node.http_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for package in ["dompurify", "highlight.js", "marked"] {
        assert!(licenses.contains(&format!("==== {package} ")), "{package}");
    }
}
