//! Stop generating in a cluster: the turn runs on the node that owns the session, and a
//! stop sent to any node reaches it (the owner's RPC), whichever node the person's
//! connection is on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};

use super::{sandbox, settle};
use crate::support::{connect_as, eventually, frame_of, frames_until_final, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_sent_to_either_node_reaches_the_turn_where_it_runs() {
    let fake = FakeLlm::start(None).await;
    let open = Arc::new(AtomicUsize::new(0));
    let cluster = sandbox(2, &fake, &[]).await;
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    let mut socket = connect_as(&cluster.nodes[0], "ada").await;
    let client = reqwest::Client::new();
    // One session has one owner: of the two stops, at least one crosses to another node.
    for (id, stopping_node) in [("m1", 0), ("m2", 1)] {
        fake.script([FakeReply::StreamThenHang(
            vec![format!("answer to {id}")],
            Arc::clone(&open),
        )]);
        send(
            &mut socket,
            json!({"type": "message", "id": id, "payload": "think", "conversation_id": "ada/long"}),
        )
        .await;
        // Stop once the first words are shown: a stop before them undoes the turn instead.
        let mut seen = Vec::new();
        let delta = frame_of(&mut socket, "delta", &mut seen).await;
        assert_eq!(delta["in_reply_to"], id, "{seen:?}");
        let url = format!(
            "{}/api/v1/conversations/ada%2Flong/stop",
            cluster.nodes[stopping_node].http_url()
        );
        let answer = client
            .post(url)
            .json(&json!({"message_id": id}))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status().as_u16(),
            202,
            "stop of {id} at node-{stopping_node}"
        );
        let frames = frames_until_final(&mut socket, id).await;
        let reply = frames.last().unwrap();
        assert_eq!(
            (reply["stopped"].as_bool(), reply["payload"].as_str()),
            (Some(true), Some(format!("answer to {id}").as_str())),
            "{frames:?}"
        );
        eventually(Duration::from_secs(20), || {
            let open = Arc::clone(&open);
            async move { open.load(Ordering::SeqCst) == 0 }
        })
        .await;
    }
}
