//! Pictures in a cluster: uploaded through one node, kept in the cluster's object store,
//! shown to the model by whichever node runs the session, fetched and deleted from any.

use std::time::Duration;

use serde_json::{Value, json};
use troupe_actors::testing::PIXEL_PNG;
use troupe_testkit::fake_llm::FakeLlm;

use super::{sandbox, settle};
use crate::support::{connect_as, frames_until_final, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_uploaded_through_one_node_reaches_the_model_from_any() {
    let fake = FakeLlm::start(None).await;
    let cluster = sandbox(2, &fake, &[]).await;
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    let [first, second] = [cluster.nodes[0].http_url(), cluster.nodes[1].http_url()];
    let client = reqwest::Client::new();
    // A node takes uploads once it has watched the members' leases for a whole lease.
    let mut uploaded = Value::Null;
    for _ in 0..200 {
        let answer = client
            .post(format!("{second}/api/v1/conversations/ada/uploads"))
            .header("content-type", "image/png")
            .body(PIXEL_PNG.to_vec())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        uploaded = answer.json().await.unwrap();
        if status != 503 {
            assert_eq!(status, 201, "{uploaded}");
            break;
        }
        assert_eq!(uploaded["error"]["code"], "uploads_unavailable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = uploaded["upload_id"].as_str().expect("uploaded").to_owned();

    let mut socket = connect_as(&cluster.nodes[0], "ada").await;
    send(
        &mut socket,
        json!({"type": "message", "id": "m1", "payload": "what is it?",
               "attachments": [{"content_type": "image", "upload_id": id}]}),
    )
    .await;
    let frames = frames_until_final(&mut socket, "m1").await;
    assert_eq!(frames.last().unwrap()["type"], "reply", "{frames:?}");
    let asked = fake
        .requests()
        .into_iter()
        .find(|request| request.body["messages"][1]["content"].is_array())
        .expect("a request with the picture");
    let url = asked.body["messages"][1]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with("data:image/png;base64,iVBORw0KGgo"),
        "{url}"
    );

    let picture = |base: &str| format!("{base}/api/v1/conversations/ada/uploads/{id}");
    let fetched = client.get(picture(&first)).send().await.unwrap();
    assert_eq!(fetched.status().as_u16(), 200);
    assert_eq!(&fetched.bytes().await.unwrap()[..], PIXEL_PNG);
    let deleted = client
        .delete(format!("{first}/api/v1/conversations/ada"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    let gone = client.get(picture(&second)).send().await.unwrap();
    assert_eq!(gone.status().as_u16(), 404);
}
