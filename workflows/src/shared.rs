//! The definitions of a cluster: one key per workflow, named like it, in the
//! `troupe_workflow_definitions` bucket, holding its TOML. A node stores a change there
//! before making it ([`crate::catalog::SharedDefinitions`]), and every node follows the
//! bucket ([`JetStreamDefinitions::follow`]), so a workflow added through any node runs and
//! fires everywhere, and each node's `workflows/` directory mirrors the cluster's.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, CatalogError, SharedDefinitions};
use crate::jetstream::{FOR_EVER, StreamSettings, bucket};
use crate::journal::JournalError;

/// The definitions, by workflow name.
pub const DEFINITIONS_BUCKET: &str = "troupe_workflow_definitions";
/// Pause before a broken watch is opened again.
const REWATCH_PAUSE: Duration = Duration::from_secs(1);

/// The cluster's definitions bucket.
#[derive(Clone, Debug)]
pub struct JetStreamDefinitions {
    bucket: kv::Store,
}

fn shared_failure(error: impl std::error::Error + Send + Sync + 'static) -> CatalogError {
    CatalogError::Shared(Box::new(error))
}

impl JetStreamDefinitions {
    /// The bucket, created if missing.
    pub async fn open(
        client: async_nats::Client,
        settings: StreamSettings,
    ) -> Result<Self, JournalError> {
        let jetstream = async_nats::jetstream::new(client);
        Ok(Self {
            bucket: bucket(&jetstream, DEFINITIONS_BUCKET, settings, FOR_EVER).await?,
        })
    }

    /// Offers the cluster this node's definitions it has never held (one it deleted stays
    /// deleted: the file goes), then applies everything the bucket holds, and every
    /// change, to `catalog` until `stop`.
    pub async fn follow(self, catalog: Arc<Catalog>, stop: CancellationToken) {
        self.offer(&catalog).await;
        while !stop.is_cancelled() {
            match self.bucket.watch_with_history(">").await {
                Ok(mut changes) => loop {
                    let change = tokio::select! {
                        () = stop.cancelled() => return,
                        change = changes.next() => change,
                    };
                    match change {
                        Some(Ok(entry)) => apply(&catalog, &entry).await,
                        Some(Err(error)) => {
                            tracing::debug!(%error, "the workflow definitions watch broke");
                            break;
                        }
                        None => break,
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "cannot follow the cluster's workflow definitions yet");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(REWATCH_PAUSE) => {}
            }
        }
    }

    async fn offer(&self, catalog: &Catalog) {
        for workflow in catalog.list() {
            let name = workflow.name();
            match self.bucket.entry(name).await {
                Ok(Some(entry)) if entry.operation != Operation::Put => {
                    tracing::info!(
                        workflow = name,
                        "the cluster deleted this workflow; its file goes"
                    );
                    if let Err(error) = catalog.apply_removed(name).await {
                        tracing::warn!(workflow = name, %error, "could not remove a workflow the cluster deleted");
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    let offered = match workflow.definition().to_toml() {
                        Ok(text) => self.bucket.create(name, text.into()).await.map(drop),
                        Err(error) => {
                            tracing::warn!(workflow = name, %error, "a workflow cannot be offered to the cluster");
                            continue;
                        }
                    };
                    if let Err(error) = offered {
                        tracing::debug!(workflow = name, %error, "another node offered this workflow first");
                    }
                }
                Err(error) => {
                    tracing::warn!(workflow = name, %error, "could not offer a workflow to the cluster");
                }
            }
        }
    }
}

async fn apply(catalog: &Catalog, entry: &kv::Entry) {
    let outcome = match entry.operation {
        Operation::Put => match std::str::from_utf8(&entry.value) {
            Ok(text) => catalog.apply_shared(text).await.map(drop),
            Err(error) => Err(shared_failure(error)),
        },
        Operation::Delete | Operation::Purge => catalog.apply_removed(&entry.key).await.map(drop),
    };
    if let Err(error) = outcome {
        tracing::error!(workflow = %entry.key, %error, "a workflow the cluster holds was not applied here");
    }
}

#[async_trait::async_trait]
impl SharedDefinitions for JetStreamDefinitions {
    async fn put(&self, name: &str, toml: &str) -> Result<(), CatalogError> {
        self.bucket
            .put(name, toml.to_owned().into())
            .await
            .map(drop)
            .map_err(shared_failure)
    }

    async fn remove(&self, name: &str) -> Result<(), CatalogError> {
        self.bucket.delete(name).await.map_err(shared_failure)
    }
}
