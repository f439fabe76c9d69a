//! The inbox's streams, end to end: every message leaves them once answered, a node with
//! another layout refuses to join, and what an older build left in its single stream is
//! answered after an upgrade, until that stream is deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use troupe_cluster::subjects;
use troupe_testkit::cluster::ClusterSandbox;
use troupe_testkit::fake_llm::FakeLlm;
use troupe_testkit::nats::NatsServer;
use troupe_testkit::poll_until;

use super::{SHARDS, history, node_config, post, sandbox, settle, turns_of};
use crate::support::binary;

/// Messages in the inbox streams (those of this build and the older single one).
async fn inbox_messages(jetstream: &async_nats::jetstream::Context) -> (usize, u64) {
    use futures_util::StreamExt;
    let mut names = jetstream.stream_names();
    let (mut streams, mut messages) = (0, 0);
    while let Some(name) = names.next().await {
        let name = name.unwrap();
        if name.starts_with(subjects::LEGACY_INBOX_STREAM) {
            let mut stream = jetstream.get_stream(&name).await.unwrap();
            streams += 1;
            messages += stream.info().await.unwrap().state.messages;
        }
    }
    (streams, messages)
}

/// Waits until the durable inbox holds no message: every one was answered and acknowledged
/// to a consumer that exists (an acknowledgement a lost consumer never saw leaves the
/// message in the stream until a recreated consumer delivers it again).
pub(super) async fn assert_inbox_drains(cluster: &ClusterSandbox) {
    let client = async_nats::connect(cluster.nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (streams, left) = inbox_messages(&jetstream).await;
        assert!(
            streams >= 8,
            "the inbox is spread over 8 streams by default"
        );
        if left == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} messages never left the inbox"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_node_whose_inbox_layout_differs_from_the_clusters_refuses_to_start() {
    let fake = FakeLlm::start(None).await;
    let cluster = sandbox(1, &fake, &[]).await;
    settle(&cluster, 0, &["node-0"]).await;
    let config = format!(
        "[cluster]\nnats_url = \"{}\"\ninbox_streams = 4\n\n{}",
        cluster.nats.url(),
        node_config(&fake)
    );
    let error = troupe_testkit::process::TroupeProcess::start_with_env(
        binary(),
        &config,
        &[("TROUPE_NODE_ID", "node-4")],
    )
    .await
    .err()
    .expect("no node with another inbox layout")
    .to_string();
    // The streams are opened at once: whichever refuses first is named.
    assert!(error.contains("TROUPE_INBOX_"), "{error}");
    assert!(error.contains("inbox_streams"), "{error}");
}

/// What a node of a build before the inbox split left in its single inbox stream: the
/// message an older node acknowledged to its sender, never answered.
async fn fill_legacy_inbox(nats: &NatsServer, conversation: &str) {
    use async_nats::jetstream::stream;
    use troupe_actors::message::{ContentType, InboundMessage, MessageParts};
    use troupe_cluster::envelope::{self, InboxEnvelope};
    let jetstream = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    jetstream
        .create_stream(stream::Config {
            name: subjects::LEGACY_INBOX_STREAM.to_owned(),
            subjects: vec!["troupe.v1.inbox.>".to_owned()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..stream::Config::default()
        })
        .await
        .unwrap();
    let message = InboundMessage::new(MessageParts {
        id: "stored-by-an-older-node".into(),
        platform: "api".into(),
        sender_id: conversation.into(),
        conversation_id: conversation.into(),
        content_type: ContentType::Text,
        payload: "hello from before the upgrade".into(),
        timestamp: 1_700_000_000,
        reply_to: None,
        attachments: Vec::new(),
        metadata: BTreeMap::new(),
    })
    .expect("a valid message");
    let shard = troupe_cluster::placement::shard_of(&message.session_key(), SHARDS as u32);
    let stored = InboxEnvelope {
        message,
        reply_to: None,
        origin: "node-old".into(),
    };
    jetstream
        .publish(subjects::legacy_inbox(shard), envelope::encode(&stored))
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_an_older_build_left_in_its_single_inbox_stream_are_answered_after_an_upgrade() {
    let fake = FakeLlm::start(None).await;
    let nats = NatsServer::start().await;
    fill_legacy_inbox(&nats, "upgraded").await;
    let cluster = ClusterSandbox::start_on(nats, binary(), 2, &node_config(&fake), &[], &[])
        .await
        .expect("the cluster starts");
    settle(&cluster, 0, &["node-0", "node-1"]).await;
    let client = reqwest::Client::new();
    let base = cluster.nodes[1].http_url();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let session = format!("{base}/api/v1/sessions/api:upgraded");
    // The session exists (answers 200) with a question and its answer once the older
    // node's message was handled.
    loop {
        let response = client.get(&session).send().await.unwrap();
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            if body["history"]
                .as_array()
                .is_some_and(|turns| turns.len() >= 2)
            {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the older node's message was never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let turns = turns_of(&history(&client, &base, "upgraded").await);
    assert_eq!(
        turns.keys().collect::<Vec<_>>(),
        ["stored-by-an-older-node"],
        "the older node's message was answered once"
    );
    // New messages of the same session go to the new layout and are answered too.
    post(&client, &base, "after-the-upgrade", "upgraded", "hi")
        .await
        .unwrap();
    assert_eq!(
        turns_of(&history(&client, &base, "upgraded").await).len(),
        2
    );
    assert_inbox_drains(&cluster).await;
    // The operator deletes the emptied old stream: every node's drain of it ends (rather
    // than trying to reopen it for ever), and the shards go on being served.
    let jetstream =
        async_nats::jetstream::new(async_nats::connect(cluster.nats.url()).await.unwrap());
    jetstream
        .delete_stream(subjects::LEGACY_INBOX_STREAM)
        .await
        .unwrap();
    for node in &cluster.nodes {
        let log = poll_until(
            Duration::from_secs(10),
            || node.log(),
            |log| log.contains(DRAIN_ENDED),
        )
        .await;
        assert!(log.contains(DRAIN_ENDED), "{log}");
    }
    post(
        &client,
        &base,
        "after-the-deletion",
        "upgraded",
        "still there?",
    )
    .await
    .unwrap();
    assert_eq!(
        turns_of(&history(&client, &base, "upgraded").await).len(),
        3
    );
}

/// What a node logs when the drain of a deleted older inbox stream ends.
const DRAIN_ENDED: &str = "the older inbox stream was deleted: its drain ends";
