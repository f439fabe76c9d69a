//! The cluster's workflow stores against a real `nats-server`, each "node" with its own
//! connection: a journal is fenced against the node that lost its run, one run id is
//! started once, definitions reach every node (a deleted one stays deleted), and a send
//! is claimed once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::StorageType;
use serde_json::{Map, json};
use tokio_util::sync::CancellationToken;
use troupe_testkit::nats::NatsServer;
use troupe_workflows::effects::StepErrorCode;
use troupe_workflows::jetstream::{JetStreamWorkflowStore, SendClaims, StreamSettings};
use troupe_workflows::journal::{
    Cause, DEFAULT_JOURNAL_LIMIT, Record, RunJournal, RunSummary, WorkflowStore,
};
use troupe_workflows::shared::JetStreamDefinitions;
use troupe_workflows::{Catalog, WorkflowDefinition};

const SETTINGS: StreamSettings = StreamSettings {
    replicas: 1,
    storage: StorageType::File,
};

async fn node(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url()).await.expect("NATS is up")
}

async fn store(server: &NatsServer) -> Arc<JetStreamWorkflowStore> {
    Arc::new(
        JetStreamWorkflowStore::open(node(server).await, SETTINGS)
            .await
            .expect("the stream opens"),
    )
}

fn started() -> Record {
    Record::Started {
        workflow: "w".into(),
        input: Map::new(),
        cause: Cause::Manual { by: "test".into() },
        definitions: Vec::new(),
        at: 1,
    }
}

fn step(index: i64, finished: bool) -> Record {
    if finished {
        Record::StepFinished {
            step: format!("s{index}"),
            attempt: 1,
            at: index,
            output: json!(index),
        }
    } else {
        Record::StepStarted {
            step: format!("s{index}"),
            attempt: 1,
            at: index,
            due: None,
        }
    }
}

fn journal_of(store: &Arc<JetStreamWorkflowStore>, summary: RunSummary) -> RunJournal {
    RunJournal::new(
        Arc::clone(store) as Arc<dyn WorkflowStore>,
        summary,
        DEFAULT_JOURNAL_LIMIT,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_a_run_cannot_append_after_the_node_that_took_it_up() {
    let server = NatsServer::start().await;
    let (first, second) = (store(&server).await, store(&server).await);
    assert!(first.take_up("r").await.unwrap().is_empty());
    let lost = journal_of(
        &first,
        RunSummary::starting("r", "w", Cause::Manual { by: "test".into() }, 1),
    );
    lost.append(&started()).await.unwrap();
    lost.append(&step(2, false)).await.unwrap();

    // The second node takes the run up and goes on.
    let records = second.take_up("r").await.unwrap();
    assert_eq!(records, vec![started(), step(2, false)]);
    let taken = journal_of(&second, RunSummary::replayed(&records, "r").unwrap());
    taken.append(&step(2, true)).await.unwrap();

    // The first, not knowing yet, is refused, and the journal keeps the second's record.
    let refused = lost.append(&step(3, false)).await.unwrap_err();
    assert_eq!(refused.code, StepErrorCode::Storage);
    assert!(refused.message.contains("another node"), "{refused}");
    assert_eq!(
        first.records("r").await.unwrap(),
        vec![started(), step(2, false), step(2, true)]
    );
    // The summary in the bucket follows the records that were stored.
    let summary = second
        .summaries()
        .await
        .unwrap()
        .into_iter()
        .find(|summary| summary.run == "r")
        .unwrap();
    assert_eq!((summary.records, summary.steps_finished), (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_id_started_on_two_nodes_at_once_is_stored_once() {
    let server = NatsServer::start().await;
    let (first, second) = (store(&server).await, store(&server).await);
    for store in [&first, &second] {
        assert!(store.take_up("firing").await.unwrap().is_empty());
    }
    let summary = || RunSummary::starting("firing", "w", Cause::Manual { by: "test".into() }, 1);
    journal_of(&first, summary())
        .append(&started())
        .await
        .unwrap();
    let second_start = journal_of(&second, summary()).append(&started()).await;
    assert!(second_start.is_err(), "the second start is refused");
    assert_eq!(second.records("firing").await.unwrap(), vec![started()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_claimed_by_one_node_only() {
    let server = NatsServer::start().await;
    let first = SendClaims::open(node(&server).await, SETTINGS)
        .await
        .unwrap();
    let second = SendClaims::open(node(&server).await, SETTINGS)
        .await
        .unwrap();
    assert!(first.claim("run:tell:1", "node-0").await.unwrap());
    assert!(!second.claim("run:tell:1", "node-1").await.unwrap());
    assert!(second.claim("run:tell:2", "node-1").await.unwrap());
}

fn definition(name: &str) -> WorkflowDefinition {
    WorkflowDefinition::from_toml(&format!(
        "name = \"{name}\"\nowner = \"person:ada\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n"
    ))
    .unwrap()
}

/// A node's catalog in its own directory, following the cluster's definitions.
async fn shared_catalog(
    server: &NatsServer,
    dir: &std::path::Path,
    stop: &CancellationToken,
) -> Arc<Catalog> {
    let catalog = Arc::new(Catalog::load(dir).unwrap());
    let definitions = JetStreamDefinitions::open(node(server).await, SETTINGS)
        .await
        .unwrap();
    catalog.share(Arc::new(definitions.clone()));
    tokio::spawn(definitions.follow(Arc::clone(&catalog), stop.clone()));
    catalog
}

async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} never happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_reach_every_node_and_a_deleted_one_stays_deleted() {
    let server = NatsServer::start().await;
    let stop = CancellationToken::new();
    let (one, two, three) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = shared_catalog(&server, one.path(), &stop).await;
    let second = shared_catalog(&server, two.path(), &stop).await;

    assert!(!first.put(definition("brief")).await.unwrap(), "new");
    until("brief reaching the second node", || {
        second.get("brief").is_some()
    })
    .await;
    assert!(
        two.path().join("brief.toml").exists(),
        "mirrored to its directory"
    );
    first.put(definition("gone")).await.unwrap();
    until("gone reaching the second node", || {
        second.get("gone").is_some()
    })
    .await;
    assert!(second.remove("gone").await.unwrap());
    // The file goes just after the workflow leaves memory.
    until("the removal reaching the first node", || {
        first.get("gone").is_none() && !one.path().join("gone.toml").exists()
    })
    .await;

    // A node that was away holds a file of the deleted workflow, and one of its own.
    std::fs::write(
        three.path().join("gone.toml"),
        definition("gone").to_toml().unwrap(),
    )
    .unwrap();
    std::fs::write(
        three.path().join("local.toml"),
        definition("local").to_toml().unwrap(),
    )
    .unwrap();
    let third = shared_catalog(&server, three.path(), &stop).await;
    until("the deleted workflow going from the returning node", || {
        third.get("gone").is_none() && !three.path().join("gone.toml").exists()
    })
    .await;
    until(
        "the returning node's own workflow reaching the others",
        || first.get("local").is_some() && second.get("local").is_some(),
    )
    .await;
    assert!(third.get("brief").is_some());
    stop.cancel();
}
