//! The node's workflow engine: the definitions in `<data_dir>/workflows/`, the journal
//! store, the effects its steps have here ([`effects`]), and its scheduler (on one node its
//! own task; in a cluster a singleton, so exactly one node fires each schedule).

pub(crate) mod effects;
pub(crate) mod watch;

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
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
}

/// Reads the definitions and opens the store; `None` when `[workflows] enabled = false`.
pub(crate) fn prepare(config: &Config) -> anyhow::Result<Option<Prepared>> {
    if !config.workflows.enabled {
        return Ok(None);
    }
    let dir = config.storage.data_dir.join("workflows");
    let catalog = Catalog::load(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let local = LocalWorkflowStore::open(&config.storage.data_dir)
        .context("starting the workflow store's writer")?;
    let disk = Some(local.storage().clone());
    Ok(Some(Prepared {
        catalog: Arc::new(catalog),
        store: Arc::new(local),
        disk,
    }))
}

impl Prepared {
    /// The engine, with the effects its steps have on this node.
    pub(crate) fn engine(&self, config: &Config, effects: Arc<dyn Effects>) -> Workflows {
        Workflows::new(EngineParts {
            catalog: Arc::clone(&self.catalog),
            store: Arc::clone(&self.store),
            effects,
            replies: Default::default(),
            clock: Clock::system(),
            limits: config.workflows.limits(),
            journal_limit: config.workflows.journal_limit_bytes,
        })
    }
}

/// Fires the schedules: on a single node until `shutdown`; in a cluster as the singleton
/// `workflow-scheduler`, which moves to another node when its node dies. Deletes, hourly,
/// the runs that ended longer than `[workflows] keep_runs_days` ago.
pub(crate) fn run_schedules(
    config: &Config,
    workflows: &Workflows,
    cluster: Option<&troupe_cluster::ClusterNode>,
    shutdown: &CancellationToken,
) {
    let pruning = workflows.clone();
    tokio::spawn({
        let (keep, stop) = (config.workflows.keep_runs(), shutdown.clone());
        async move { pruning.prune_ended(keep, stop).await }
    });
    match cluster {
        Some(cluster) => {
            let workflows = workflows.clone();
            cluster.run_singleton(
                "workflow-scheduler",
                Arc::new(move |token| {
                    Box::pin(troupe_workflows::schedule::run_scheduler(
                        workflows.clone(),
                        token,
                    ))
                }),
            );
        }
        None => {
            tokio::spawn(troupe_workflows::schedule::run_scheduler(
                workflows.clone(),
                shutdown.clone(),
            ));
        }
    }
}
