//! Cluster-wide singletons: a task that must run exactly once in the whole cluster (one
//! Telegram long-poller per bot, one reminder scheduler), registered on every node with
//! [`crate::ClusterNode::run_singleton`]. It runs on one node and moves when that node dies
//! or drains.
//!
//! Same rules as shards (see [`crate::shards`]): a key per singleton in the
//! `troupe_singletons` bucket names its node and epoch, every change is a compare-and-set,
//! the preferred node is the rendezvous winner among stable members, a dead node's
//! singleton is taken once the server confirms its lease is gone, and a node whose lease
//! may have expired cancels its singletons before anyone else may start them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation};
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use troupe_actors::SessionKey;

use crate::membership::Membership;
use crate::metrics as metric_names;
use crate::node::Shared;
use crate::placement::{preferred_owner, shard_of};
use crate::shards::ShardOwner;

/// Starts a singleton's work; it runs until the token is cancelled (if it returns earlier,
/// it is started again after a pause).
pub type SingletonTask = Arc<dyn Fn(CancellationToken) -> BoxFuture<'static, ()> + Send + Sync>;

/// Pause before a singleton that returned by itself is started again.
const RESTART_PAUSE: Duration = Duration::from_secs(1);
/// Leases after which an unowned singleton is started by any node, not only its preferred.
const ORPHAN_GRACE_LEASES: u32 = 4;

/// Singletons registered on this node.
#[derive(Default)]
pub(crate) struct SingletonRegistry {
    tasks: Mutex<HashMap<String, SingletonTask>>,
    /// Where each ran when last looked at (`None`: nowhere), for the operator.
    holders: Mutex<HashMap<String, Option<String>>>,
}

/// A singleton and the node that runs it, as last seen.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SingletonView {
    pub name: String,
    /// `None`: nobody runs it now (between a holder's death and a takeover).
    pub node: Option<String>,
}

impl SingletonRegistry {
    pub(crate) fn register(&self, name: String, task: SingletonTask) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, task);
    }

    /// Every singleton registered here and where it ran when last looked at, by name.
    pub(crate) fn views(&self) -> Vec<SingletonView> {
        let holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        self.snapshot()
            .into_iter()
            .map(|(name, _)| SingletonView {
                node: holders.get(&name).cloned().flatten(),
                name,
            })
            .collect()
    }

    fn saw(&self, name: &str, holder: &Holder, me: &str) {
        let node = match holder {
            Holder::Nobody => None,
            Holder::Me { .. } => Some(me.to_owned()),
            Holder::Other { node, .. } => Some(node.clone()),
        };
        self.holders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), node);
    }

    fn snapshot(&self) -> Vec<(String, SingletonTask)> {
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tasks: Vec<(String, SingletonTask)> = tasks
            .iter()
            .map(|(name, task)| (name.clone(), Arc::clone(task)))
            .collect();
        tasks.sort_by(|left, right| left.0.cmp(&right.0));
        tasks
    }
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Where a singleton stands in the bucket.
enum Holder {
    Nobody,
    Me { epoch: u64, revision: u64 },
    Other { node: String, revision: u64 },
}

fn key(name: &str) -> String {
    // KV keys allow `[-/_=.a-zA-Z0-9]`: anything else becomes `_`.
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("singleton-{safe}")
}

/// Runs this node's part of singleton placement until the node stops.
pub(crate) async fn run_singletons(shared: Arc<Shared>, bucket: kv::Store) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut orphaned_since: HashMap<String, Instant> = HashMap::new();
    let mut ticks = tokio::time::interval(shared.config.heartbeat());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        if !shared.membership.lease_valid() {
            for (name, singleton) in running.drain() {
                tracing::warn!(%name, "lease not renewed in time; the singleton stops here");
                stop(singleton).await;
            }
            continue;
        }
        for (name, task) in shared.singletons.snapshot() {
            reconcile(
                &shared,
                &bucket,
                &name,
                &task,
                &mut running,
                &mut orphaned_since,
            )
            .await;
        }
        metrics::gauge!(metric_names::SINGLETONS_RUNNING).set(running.len() as f64);
    }
    for (_, singleton) in running.drain() {
        stop(singleton).await;
    }
}

async fn holder(shared: &Shared, bucket: &kv::Store, name: &str) -> Option<Holder> {
    let entry = tokio::time::timeout(shared.config.lease(), bucket.entry(key(name)))
        .await
        .ok()?
        .ok()?;
    let Some(entry) = entry.filter(|entry| entry.operation == Operation::Put) else {
        return Some(Holder::Nobody);
    };
    let owner: ShardOwner = serde_json::from_slice(&entry.value).ok()?;
    Some(if owner.node == shared.membership.me() {
        Holder::Me {
            epoch: owner.epoch,
            revision: entry.revision,
        }
    } else {
        Holder::Other {
            node: owner.node,
            revision: entry.revision,
        }
    })
}

async fn reconcile(
    shared: &Shared,
    bucket: &kv::Store,
    name: &str,
    task: &SingletonTask,
    running: &mut HashMap<String, Running>,
    orphaned_since: &mut HashMap<String, Instant>,
) {
    let Some(holder) = holder(shared, bucket, name).await else {
        return; // NATS did not answer: change nothing this round
    };
    let membership = &shared.membership;
    shared.singletons.saw(name, &holder, membership.me());
    let candidates = membership.stable_active_members();
    let slot = shard_of(&SessionKey::new_unchecked("singleton", name), u32::MAX);
    let prefers_me =
        preferred_owner(slot, candidates.iter().map(String::as_str)) == Some(membership.me());
    let lease = shared.config.lease();
    let mut orphaned = || {
        orphaned_since
            .entry(name.to_owned())
            .or_insert_with(Instant::now)
            .elapsed()
            >= lease * ORPHAN_GRACE_LEASES
    };
    match holder {
        Holder::Me { epoch, revision } if epoch == membership.epoch() => {
            orphaned_since.remove(name);
            if membership.is_draining() || (!prefers_me && !candidates.is_empty()) {
                if let Some(singleton) = running.remove(name) {
                    stop(singleton).await;
                }
                let _ = tokio::time::timeout(
                    lease,
                    bucket.delete_expect_revision(key(name), Some(revision)),
                )
                .await;
                tracing::info!(%name, "handed the singleton over");
                return;
            }
            ensure_running(shared, name, task, running);
        }
        Holder::Me { revision, .. } => {
            // Ours from an earlier incarnation: whatever ran then is gone.
            if let Some(singleton) = running.remove(name) {
                stop(singleton).await;
            }
            if claim(shared, bucket, name, Some(revision)).await {
                ensure_running(shared, name, task, running);
            }
        }
        Holder::Other { node, revision } => {
            if let Some(singleton) = running.remove(name) {
                stop(singleton).await;
            }
            if membership.is_draining() || membership.is_alive(&node) {
                orphaned_since.remove(name);
                return;
            }
            if (prefers_me || orphaned())
                && membership.confirmed_dead(&node).await
                && claim(shared, bucket, name, Some(revision)).await
            {
                metrics::counter!(metric_names::FAILOVERS).increment(1);
                tracing::info!(%name, from = %node, "took over a singleton of a lost node");
                ensure_running(shared, name, task, running);
            }
        }
        Holder::Nobody => {
            if !membership.is_draining()
                && (prefers_me || orphaned())
                && claim(shared, bucket, name, None).await
            {
                orphaned_since.remove(name);
                ensure_running(shared, name, task, running);
            }
        }
    }
}

async fn claim(shared: &Shared, bucket: &kv::Store, name: &str, expected: Option<u64>) -> bool {
    shared
        .claim_key(bucket, &key(name), expected)
        .await
        .is_some()
}

fn ensure_running(
    shared: &Shared,
    name: &str,
    task: &SingletonTask,
    running: &mut HashMap<String, Running>,
) {
    if running
        .get(name)
        .is_some_and(|singleton| !singleton.task.is_finished())
    {
        return;
    }
    let cancel = CancellationToken::new();
    let work = Arc::clone(task);
    let token = cancel.clone();
    let restarted = running.contains_key(name);
    let membership = Arc::clone(&shared.membership);
    let period = shared.config.heartbeat() / 2;
    let job = tokio::spawn(async move {
        if restarted {
            tokio::time::sleep(RESTART_PAUSE).await;
        }
        tokio::select! {
            () = token.cancelled() => {}
            () = work(token.clone()) => {}
            // Fencing that no slow NATS call of the placement loop can delay.
            () = lease_lost(&membership, period) => token.cancel(),
        }
    });
    tracing::info!(%name, "singleton started on this node");
    running.insert(name.to_owned(), Running { cancel, task: job });
}

async fn lease_lost(membership: &Membership, period: Duration) {
    while membership.lease_valid() {
        tokio::time::sleep(period).await;
    }
}

async fn stop(singleton: Running) {
    singleton.cancel.cancel();
    let _ = singleton.task.await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI32, Ordering};

    use troupe_testkit::nats::NatsServer;
    use troupe_testkit::proxy::CuttableProxy;

    use super::*;
    use crate::{ClusterConfig, ClusterNode};

    /// Who runs the singleton now, and the most that ever ran at once.
    #[derive(Default)]
    struct Watch {
        running: AtomicI32,
        most_at_once: AtomicI32,
        runner: Mutex<Option<String>>,
    }

    impl Watch {
        fn runner(&self) -> Option<String> {
            self.runner.lock().unwrap().clone()
        }

        async fn wait_for_runner(&self, not: Option<&str>) -> String {
            for _ in 0..300 {
                if let Some(runner) = self.runner()
                    && Some(runner.as_str()) != not
                {
                    return runner;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!(
                "no node took the singleton over (last runner {:?})",
                self.runner()
            );
        }
    }

    fn poller(node: &str, watch: &Arc<Watch>) -> SingletonTask {
        let node = node.to_owned();
        let watch = Arc::clone(watch);
        Arc::new(move |cancel: CancellationToken| {
            let node = node.clone();
            let watch = Arc::clone(&watch);
            Box::pin(async move {
                let now = watch.running.fetch_add(1, Ordering::SeqCst) + 1;
                watch.most_at_once.fetch_max(now, Ordering::SeqCst);
                *watch.runner.lock().unwrap() = Some(node.clone());
                // Dropped on cancellation: the guard below still runs.
                struct Leaving(Arc<Watch>, String);
                impl Drop for Leaving {
                    fn drop(&mut self) {
                        self.0.running.fetch_sub(1, Ordering::SeqCst);
                        let mut runner = self.0.runner.lock().unwrap();
                        if runner.as_deref() == Some(self.1.as_str()) {
                            *runner = None;
                        }
                    }
                }
                let _leaving = Leaving(Arc::clone(&watch), node);
                cancel.cancelled().await;
            })
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_singleton_runs_once_and_moves_when_its_node_leaves_or_is_cut_off() {
        let server = NatsServer::start().await;
        let target = ([127, 0, 0, 1], server.port()).into();
        let proxies = [
            CuttableProxy::start(target).await,
            CuttableProxy::start(target).await,
        ];
        let urls = [
            server.url(),
            format!("nats://{}", proxies[0].address),
            format!("nats://{}", proxies[1].address),
        ];
        let watch = Arc::new(Watch::default());
        let mut nodes = Vec::new();
        for (index, url) in urls.iter().enumerate() {
            let id = format!("n{index}");
            let (node, _) = ClusterNode::join(ClusterConfig::new(url.clone()), id.clone())
                .await
                .unwrap();
            node.run_singleton("telegram-poller", poller(&id, &watch));
            nodes.push(node);
        }
        let mut runner = watch.wait_for_runner(None).await;
        if runner == "n0" {
            // Graceful: the node leaves, the singleton moves at once.
            nodes[0].leave().await;
            runner = watch.wait_for_runner(Some("n0")).await;
        }
        // Hard: the runner loses NATS; it stops the singleton before another node starts it.
        let cut = if runner == "n1" { 0 } else { 1 };
        proxies[cut].cut();
        let next = watch.wait_for_runner(Some(&runner)).await;
        assert_ne!(next, runner);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(watch.running.load(Ordering::SeqCst), 1);
        assert_eq!(
            watch.most_at_once.load(Ordering::SeqCst),
            1,
            "the singleton never ran twice at once"
        );
        for node in &nodes {
            node.leave().await;
        }
    }
}
