//! The canvas across a cluster: unmodified Yjs clients (npm `yjs` + `y-websocket`) on three
//! nodes edit one room and converge; the room's journal is compacted in the cluster's
//! JetStream; a node killed with `kill -9` loses nothing its clients saw; a fresh client
//! reads the whole document from any node, also after every node restarted; and presence
//! crosses nodes, also to a replica that opens later.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use troupe_testkit::cluster::ClusterSandbox;
use troupe_testkit::process::TroupeProcess;
use yrs::sync::AwarenessUpdate;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::updates::encoder::Encode;

use crate::canvas::yjs_clients_across;
use crate::support::{binary, metrics_page};

async fn canvas_cluster() -> ClusterSandbox {
    ClusterSandbox::start(
        binary(),
        3,
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n",
        &[],
    )
    .await
    .expect("the cluster starts")
}

/// What a fresh client reads from `node`'s copy of `room`.
async fn read_room(node: &TroupeProcess, room: &str) -> String {
    let read = yjs_clients_across(&[node], room, 0, 0, 0).await;
    read["digest"].as_str().expect("a digest").to_owned()
}

async fn compactions(node: &TroupeProcess) -> f64 {
    metrics_page(&node.http_url())
        .await
        .lines()
        .find_map(|line| {
            line.strip_prefix("troupe_canvas_compactions_total")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_three_nodes_converge_and_a_killed_node_loses_nothing() {
    let mut cluster = canvas_cluster().await;
    let nodes: Vec<&TroupeProcess> = cluster.nodes.iter().collect();
    // Over a thousand updates: every replica passes the compaction threshold.
    let edited = yjs_clients_across(&nodes, "plans", 6, 11, 1500).await;
    assert_eq!(edited["converged"], true, "{edited}");
    let digest = edited["digest"].as_str().unwrap().to_owned();
    assert!(edited["items"].as_u64().unwrap() > 0, "{edited}");
    let mut compacted = 0.0;
    for node in &cluster.nodes {
        compacted += compactions(node).await;
        assert_eq!(
            read_room(node, "plans").await,
            digest,
            "every node serves it"
        );
    }
    assert!(compacted > 0.0, "the journal was compacted in the stream");
    let list: serde_json::Value =
        reqwest::get(format!("{}/api/v1/canvas", cluster.nodes[2].http_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let listed = &list["rooms"][0];
    assert_eq!(listed["room"], "plans", "{list}");
    assert!(listed["bytes"].as_u64().unwrap() > 0, "{list}");
    assert!(listed["updated_at_ms"].as_u64().unwrap() > 0, "{list}");

    cluster.nodes[0].kill_hard().unwrap();
    for survivor in &cluster.nodes[1..] {
        assert_eq!(
            read_room(survivor, "plans").await,
            digest,
            "what node-0's clients saw outlives it"
        );
    }
    let survivors: Vec<&TroupeProcess> = cluster.nodes[1..].iter().collect();
    let more = yjs_clients_across(&survivors, "plans", 4, 12, 200).await;
    assert_eq!(more["converged"], true, "{more}");
    let digest = more["digest"].as_str().unwrap().to_owned();

    cluster.nodes[0].restart().await.unwrap();
    assert_eq!(read_room(&cluster.nodes[0], "plans").await, digest);
    for node in &mut cluster.nodes {
        node.kill_hard().unwrap();
        node.restart().await.unwrap();
    }
    for node in &cluster.nodes {
        assert_eq!(
            read_room(node, "plans").await,
            digest,
            "the room outlives every node"
        );
    }
}

/// A raw y-websocket connection to `room` on `node`.
async fn open_room(
    node: &TroupeProcess,
    room: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("ws://{}/yjs/{room}", node.address);
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Reads frames until an awareness frame (type 1) mentions `name`; false after 10 s.
async fn sees_presence_of(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    name: &str,
) -> bool {
    let wanted = format!("\"name\":\"{name}\"");
    let look = async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Binary(frame) = message
                && frame.first() == Some(&1)
                && String::from_utf8_lossy(&frame).contains(&wanted)
            {
                return true;
            }
        }
        false
    };
    tokio::time::timeout(Duration::from_secs(10), look)
        .await
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_crosses_nodes_also_to_a_replica_that_opens_later() {
    let cluster = canvas_cluster().await;
    let mut bob = open_room(&cluster.nodes[1], "sketch").await;
    let mut ann = open_room(&cluster.nodes[0], "sketch").await;
    let entry = AwarenessUpdateEntry {
        clock: 1,
        json: r#"{"user":{"name":"ann"}}"#.into(),
    };
    let update = AwarenessUpdate {
        clients: [(yrs::ClientID::new(4242), entry)].into(),
    };
    let frame = yrs::sync::Message::Awareness(update).encode_v1();
    ann.send(Message::binary(frame)).await.unwrap();
    assert!(
        sees_presence_of(&mut bob, "ann").await,
        "bob, on another node, sees ann"
    );
    // node-2 has no replica of the room yet: it opens one, asks, and hears ann at once,
    // not at her client's next renewal (15 s in y-protocols).
    let mut cy = open_room(&cluster.nodes[2], "sketch").await;
    assert!(
        sees_presence_of(&mut cy, "ann").await,
        "cy, on a third node, sees ann"
    );
}
