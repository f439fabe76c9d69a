//! Pictures for vision models, against a real node and an OpenAI-compatible double that
//! checks image parts as the API does: a picture uploaded into a conversation and shown by
//! a WebSocket message reaches the model as an image part (and again while the window
//! holds it, after a `kill -9` too), the history names it, the page can fetch it, and
//! deleting the conversation deletes it. What is not a picture, too large, too many, or another conversation's gets
//! a clear error.

use base64::Engine;
use serde_json::{Value, json};
use troupe_actors::testing::PIXEL_PNG;
use troupe_testkit::fake_llm::FakeLlm;
use troupe_testkit::process::TroupeProcess;

use crate::support::{
    binary, call, connect_as, frames_until_final, get, http, openai_provider, send,
};

async fn upload(
    node: &TroupeProcess,
    conversation: &str,
    kind: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let response = http()
        .post(format!(
            "{}/api/v1/conversations/{conversation}/uploads",
            node.http_url()
        ))
        .header("content-type", kind)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn showing(id: &str, text: &str, uploads: &[&str]) -> Value {
    let attachments: Vec<Value> = uploads
        .iter()
        .map(|upload| json!({"content_type": "image", "upload_id": upload}))
        .collect();
    json!({"type": "message", "id": id, "payload": text, "attachments": attachments})
}

#[tokio::test]
async fn an_uploaded_picture_reaches_the_model_as_an_image_part_and_leaves_with_its_conversation() {
    let fake = FakeLlm::start(None).await;
    let config = format!(
        "{}\n[uploads]\nmax_image_bytes = 2048\n",
        openai_provider(&fake.openai_base_url(), "")
    );
    let mut node = TroupeProcess::start(binary(), &config).await.unwrap();
    let (status, stored) = upload(&node, "ada", "image/png", PIXEL_PNG.to_vec()).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["media_type"], "image/png");
    assert_eq!(stored["bytes"], PIXEL_PNG.len());
    let id = stored["upload_id"].as_str().unwrap().to_owned();

    let mut socket = connect_as(&node, "ada").await;
    send(&mut socket, showing("m1", "what is this?", &[&id])).await;
    let frames = frames_until_final(&mut socket, "m1").await;
    assert_eq!(
        frames.last().unwrap()["payload"],
        "echo: what is this?",
        "{frames:?}"
    );
    let data_url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(PIXEL_PNG)
    );
    let asked = json!({"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": data_url}},
    ]});
    assert_eq!(fake.requests()[0].body["messages"][1], asked);
    // The next turn's window still holds the picture.
    send(
        &mut socket,
        json!({"type": "message", "id": "m2", "payload": "and now?"}),
    )
    .await;
    frames_until_final(&mut socket, "m2").await;
    assert_eq!(fake.requests()[1].body["messages"][1], asked);

    // After kill -9 the conversation still shows the picture to the model.
    node.kill_hard().unwrap();
    node.restart().await.unwrap();
    let mut socket = connect_as(&node, "ada").await;
    send(
        &mut socket,
        json!({"type": "message", "id": "m3", "payload": "still there?"}),
    )
    .await;
    frames_until_final(&mut socket, "m3").await;
    assert_eq!(fake.requests()[2].body["messages"][1], asked);

    let (_, view) = get(&node, "/api/v1/conversations/ada").await;
    assert_eq!(
        view["history"][0]["images"],
        json!([{"upload": id, "media_type": "image/png"}])
    );
    let picture = http()
        .get(format!(
            "{}/api/v1/conversations/ada/uploads/{id}",
            node.http_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(picture.status().as_u16(), 200);
    assert_eq!(picture.headers()["content-type"], "image/png");
    assert_eq!(picture.headers()["x-content-type-options"], "nosniff");
    assert_eq!(&picture.bytes().await.unwrap()[..], PIXEL_PNG);

    // Another conversation cannot show or fetch it.
    let mut bob = connect_as(&node, "bob").await;
    send(&mut bob, showing("b1", "mine now", &[&id])).await;
    let refused = frames_until_final(&mut bob, "b1").await;
    let refused = refused.last().unwrap();
    assert_eq!(refused["code"], "invalid_message", "{refused}");
    let (status, _) = get(&node, &format!("/api/v1/conversations/bob/uploads/{id}")).await;
    assert_eq!(status, 404);

    // Deleting the conversation deletes its pictures.
    let (status, _) = call(&node, reqwest::Method::DELETE, "/api/v1/conversations/ada").await;
    assert_eq!(status, 200);
    let (status, body) = get(&node, &format!("/api/v1/conversations/ada/uploads/{id}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn what_is_not_a_picture_too_large_too_many_or_unknown_gets_a_clear_error() {
    let fake = FakeLlm::start(None).await;
    let config = format!(
        "{}\n[uploads]\nmax_image_bytes = 2048\nmax_images_per_message = 2\n",
        openai_provider(&fake.openai_base_url(), "")
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    let (status, body) = upload(
        &node,
        "ada",
        "image/svg+xml",
        b"<svg onload=alert(1)>".to_vec(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );
    let (status, body) = upload(&node, "ada", "text/html", PIXEL_PNG.to_vec()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );
    let mut large = PIXEL_PNG.to_vec();
    large.resize(4096, 0);
    let (status, body) = upload(&node, "ada", "image/png", large).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );

    let mut socket = connect_as(&node, "ada").await;
    let unknown = "up-0123456789abcdef0123456789abcdef";
    send(&mut socket, showing("m1", "this?", &[unknown])).await;
    let frames = frames_until_final(&mut socket, "m1").await;
    let last = frames.last().unwrap();
    assert_eq!(last["code"], "invalid_message", "{last}");
    assert!(
        last["message"].as_str().unwrap().contains(unknown),
        "{last}"
    );
    send(
        &mut socket,
        showing("m2", "these?", &[unknown, unknown, unknown]),
    )
    .await;
    let frames = frames_until_final(&mut socket, "m2").await;
    assert_eq!(
        frames.last().unwrap()["code"],
        "too_many_images",
        "{frames:?}"
    );
    send(&mut socket, showing("m3", "that?", &["../../etc/passwd"])).await;
    let frames = frames_until_final(&mut socket, "m3").await;
    assert_eq!(
        frames.last().unwrap()["code"],
        "invalid_frame",
        "{frames:?}"
    );
    assert!(
        fake.requests().is_empty(),
        "no refused message reached the model"
    );
    let (_, view) = get(&node, "/api/v1/conversations/ada").await;
    assert_eq!(
        view["error"]["code"], "not_found",
        "nothing was kept: {view}"
    );
}
