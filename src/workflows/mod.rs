//! The node's workflow engine: the definitions in `<data_dir>/workflows/`, the journal
//! store, the effects its steps have here ([`effects`]), and its scheduler (on one node its
//! own task; in a cluster a singleton, so exactly one node fires each schedule).
//!
//! In a cluster the journals, summaries, schedule states and definitions are in JetStream,
//! and runs are split into partitions, each a singleton (`workflow-runs-<p>`) whose node
//! runs that partition's runs and takes them up when it moves there (see
//! `troupe_workflows::placement`).

pub(crate) mod effects;
pub(crate) mod watch;

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use troupe_workflows::jetstream::{JetStreamWorkflowStore, SendClaims, StreamSettings};
use troupe_workflows::placement::{PARTITIONS, RunRouter};
use troupe_workflows::replies::{ReplyWaiters, WaitBoard};
use troupe_workflows::routing::NatsRunRouter;
use troupe_workflows::shared::JetStreamDefinitions;
use troupe_workflows::waits::JetStreamWaits;
use troupe_workflows::{
    Catalog, Clock, Effects, EngineParts, LocalWorkflowStore, WorkflowStore, Workflows,
};

use crate::config::TroupeConfig as Config;

/// What the engine is built from before the node starts.
pub(crate) struct Prepared {
    catalog: Arc<Catalog>,
    store: Arc<dyn WorkflowStore>,
    /// The local store's database, for health reports (none in a cluster).
    pub(crate) disk: Option<troupe_actors::storage::Storage>,
    cluster: Option<ClusterParts>,
}

/// What a cluster adds to the engine.
struct ClusterParts {
    /// The definitions every node shares.
    definitions: JetStreamDefinitions,
    /// How runs held by other nodes are reached.
    router: Arc<NatsRunRouter>,
    /// Where send steps claim their keys.
    claims: SendClaims,
    /// Who the runs wait for.
    waits: Arc<JetStreamWaits>,
    node: String,
}

/// Reads the definitions and opens the store (the cluster's, in a cluster); `None` when
/// `[workflows] enabled = false`.
pub(crate) async fn prepare(
    config: &Config,
    cluster: Option<&troupe_cluster::ClusterNode>,
) -> anyhow::Result<Option<Prepared>> {
    if !config.workflows.enabled {
        return Ok(None);
    }
    let dir = config.storage.data_dir.join("workflows");
    let catalog = Catalog::load(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let catalog = Arc::new(catalog);
    let Some(cluster) = cluster else {
        let local = LocalWorkflowStore::open(&config.storage.data_dir)
            .context("starting the workflow store's writer")?;
        return Ok(Some(Prepared {
            catalog,
            disk: Some(local.storage().clone()),
            store: Arc::new(local),
            cluster: None,
        }));
    };
    let (replicas, storage) = cluster.stream_placement();
    let settings = StreamSettings { replicas, storage };
    let store = JetStreamWorkflowStore::open(cluster.client().clone(), settings)
        .await
        .context("preparing the workflow journals in the cluster")?;
    let definitions = JetStreamDefinitions::open(cluster.client().clone(), settings)
        .await
        .context("preparing the workflow definitions in the cluster")?;
    catalog.share(Arc::new(definitions.clone()));
    let claims = SendClaims::open(cluster.client().clone(), settings)
        .await
        .context("preparing the workflow sends in the cluster")?;
    let waits = JetStreamWaits::open(cluster.client().clone(), settings)
        .await
        .context("preparing the workflow wait board in the cluster")?;
    Ok(Some(Prepared {
        catalog,
        store: Arc::new(store),
        disk: None,
        cluster: Some(ClusterParts {
            definitions,
            router: Arc::new(NatsRunRouter::new(cluster.client().clone())),
            claims,
            waits: Arc::new(waits),
            node: cluster.node_id().to_owned(),
        }),
    }))
}

impl Prepared {
    /// In a cluster: where send steps claim their keys, and this node's id.
    pub(crate) fn send_claims(&self) -> Option<(SendClaims, String)> {
        self.cluster
            .as_ref()
            .map(|parts| (parts.claims.clone(), parts.node.clone()))
    }

    /// The engine, with the effects its steps have on this node.
    pub(crate) fn engine(&self, config: &Config, effects: Arc<dyn Effects>) -> Workflows {
        let replies = Arc::new(ReplyWaiters::default());
        if let Some(parts) = &self.cluster {
            replies.share(Arc::clone(&parts.waits) as Arc<dyn WaitBoard>);
        }
        Workflows::new(EngineParts {
            catalog: Arc::clone(&self.catalog),
            store: Arc::clone(&self.store),
            effects,
            replies,
            clock: Clock::system(),
            limits: config.workflows.limits(),
            journal_limit: config.workflows.journal_limit_bytes,
            router: self
                .cluster
                .as_ref()
                .map(|parts| Arc::clone(&parts.router) as Arc<dyn RunRouter>),
        })
    }
}

/// Fires the schedules and deletes, hourly, the runs that ended longer than `[workflows]
/// keep_runs_days` ago: on a single node until `shutdown`; in a cluster as the singleton
/// `workflow-scheduler`, which moves to another node when its node dies, next to the
/// partition singletons that run the runs and the task that follows the shared
/// definitions.
pub(crate) fn run_schedules(
    config: &Config,
    prepared: &Prepared,
    workflows: &Workflows,
    cluster: Option<&troupe_cluster::ClusterNode>,
    shutdown: &CancellationToken,
) {
    if let (Some(cluster), Some(parts)) = (cluster, &prepared.cluster) {
        tokio::spawn(
            parts
                .definitions
                .clone()
                .follow(Arc::clone(&prepared.catalog), shutdown.clone()),
        );
        for partition in 0..PARTITIONS {
            let (workflows, client) = (workflows.clone(), cluster.client().clone());
            cluster.run_singleton(
                format!("workflow-runs-{partition}"),
                Arc::new(move |token| {
                    Box::pin(troupe_workflows::routing::hold_partition(
                        workflows.clone(),
                        client.clone(),
                        partition,
                        token,
                    ))
                }),
            );
        }
    }
    let keep = config.workflows.keep_runs();
    match cluster {
        // One node prunes the cluster's journals: the one that schedules.
        Some(cluster) => {
            let workflows = workflows.clone();
            cluster.run_singleton(
                "workflow-scheduler",
                Arc::new(move |token| {
                    let workflows = workflows.clone();
                    Box::pin(async move {
                        tokio::join!(
                            workflows.prune_ended(keep, token.clone()),
                            troupe_workflows::schedule::run_scheduler(workflows.clone(), token),
                        );
                    })
                }),
            );
        }
        None => {
            let pruning = workflows.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move { pruning.prune_ended(keep, stop).await });
            tokio::spawn(troupe_workflows::schedule::run_scheduler(
                workflows.clone(),
                shutdown.clone(),
            ));
        }
    }
}
