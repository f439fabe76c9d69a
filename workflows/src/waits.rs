//! The cluster's [`WaitBoard`]: one key per waiting run in the `troupe_workflow_waits` KV
//! bucket (`<who as hex>.<run as hex>`), which every node follows into memory. A message
//! entering any node is checked against that copy (no NATS call for a message nobody
//! awaits), and one that a run elsewhere awaits is offered to that run's node.
//!
//! Writes go through one task in the order they were made, so a wait that ends right after
//! it began is never left on the board by a put overtaking its delete.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use dashmap::DashMap;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::events::ArrivedMessage;
use crate::jetstream::{FOR_EVER, StreamSettings, bucket};
use crate::journal::JournalError;
use crate::replies::{WaitBoard, is_from};

/// Who is awaited by which run.
pub const WAITS_BUCKET: &str = "troupe_workflow_waits";
/// Pause before a broken watch is opened again.
const REWATCH_PAUSE: Duration = Duration::from_secs(1);

/// One waiting run, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Wait {
    who: String,
    run: String,
}

fn key(who: &str, run: &str) -> String {
    format!("{}.{}", hex::encode(who), hex::encode(run))
}

/// The board in the cluster's KV bucket, and this node's copy of it.
#[derive(Debug)]
pub struct JetStreamWaits {
    writes: mpsc::UnboundedSender<(String, Option<Wait>)>,
    known: Arc<DashMap<String, Wait>>,
}

impl JetStreamWaits {
    /// The bucket (created if missing), followed from now on.
    pub async fn open(
        client: async_nats::Client,
        settings: StreamSettings,
    ) -> Result<Self, JournalError> {
        let jetstream = async_nats::jetstream::new(client);
        let store = bucket(&jetstream, WAITS_BUCKET, settings, FOR_EVER).await?;
        let known: Arc<DashMap<String, Wait>> = Arc::default();
        let (writes, queued) = mpsc::unbounded_channel();
        tokio::spawn(write(store.clone(), queued));
        tokio::spawn(follow(store, Arc::downgrade(&known)));
        Ok(Self { writes, known })
    }
}

async fn write(store: kv::Store, mut queued: mpsc::UnboundedReceiver<(String, Option<Wait>)>) {
    while let Some((key, wait)) = queued.recv().await {
        let written = match wait {
            Some(wait) => match serde_json::to_vec(&wait) {
                Ok(value) => store
                    .put(&key, value.into())
                    .await
                    .map(drop)
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            },
            None => store.delete(&key).await.map_err(|error| error.to_string()),
        };
        if let Err(error) = written {
            tracing::warn!(%key, %error, "could not update the workflow wait board; replies entering other nodes may not reach the run");
        }
    }
}

/// Keeps `known` equal to the bucket for as long as the board exists.
async fn follow(store: kv::Store, known: Weak<DashMap<String, Wait>>) {
    while known.strong_count() > 0 {
        match store.watch_with_history(">").await {
            Ok(mut changes) => {
                while let Some(change) = changes.next().await {
                    let Some(known) = known.upgrade() else { return };
                    match change {
                        Ok(entry) => observe(&known, &entry),
                        Err(error) => {
                            tracing::debug!(%error, "the workflow wait board's watch broke");
                            break;
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot follow the workflow wait board yet"),
        }
        tokio::time::sleep(REWATCH_PAUSE).await;
    }
}

fn observe(known: &DashMap<String, Wait>, entry: &kv::Entry) {
    match entry.operation {
        Operation::Put => match serde_json::from_slice::<Wait>(&entry.value) {
            Ok(wait) => {
                known.insert(entry.key.clone(), wait);
            }
            Err(error) => tracing::warn!(key = %entry.key, %error, "an unreadable workflow wait"),
        },
        Operation::Delete | Operation::Purge => {
            known.remove(&entry.key);
        }
    }
}

impl WaitBoard for JetStreamWaits {
    fn waiting(&self, who: &str, run: &str) {
        let wait = Wait {
            who: who.to_owned(),
            run: run.to_owned(),
        };
        let key = key(who, run);
        self.known.insert(key.clone(), wait.clone());
        let _ = self.writes.send((key, Some(wait)));
    }

    fn done(&self, who: &str, run: &str) {
        let key = key(who, run);
        self.known.remove(&key);
        let _ = self.writes.send((key, None));
    }

    fn awaited_by(&self, message: &ArrivedMessage) -> Option<String> {
        self.known
            .iter()
            .find(|entry| is_from(message, &entry.value().who))
            .map(|entry| entry.value().run.clone())
    }
}
