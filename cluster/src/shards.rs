//! The shard manager: decides, every heartbeat and whenever ownership changes, which shards
//! this node should own, and claims, keeps or hands them over.
//!
//! Ownership is a key per shard in the `troupe_shards` KV bucket naming the owner node and
//! its epoch; every change is a compare-and-set on the key's revision, so of two nodes that
//! try, exactly one wins. A shard's owner is valid while its node's lease is (see
//! [`crate::membership`]). The preferred owner is the rendezvous winner among stable active
//! members: a node takes unowned shards it prefers at once (others after one lease), takes
//! a dead node's shards once the server confirms the lease is gone, and hands a shard to its
//! preferred owner (stop pulling, finish in-flight turns, let its sessions save and stop,
//! delete the key) when that node joins or this one drains.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use troupe_actors::node::NodeHandle;

use crate::metrics as metric_names;
use crate::node::{Shared, bounded};
use crate::placement::{preferred_owner, shard_of};
use crate::subjects;
use crate::worker::ShardWorker;

/// Leases after which a shard without a live owner is taken by any node, not only by its
/// preferred one.
const ORPHAN_GRACE_LEASES: u32 = 4;

/// Who owns a shard, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardOwner {
    pub node: String,
    pub epoch: u64,
}

/// A shard key as last seen: its owner (`None`: deleted) and revision.
#[derive(Clone, Debug)]
pub(crate) struct ShardRecord {
    pub(crate) owner: Option<ShardOwner>,
    pub(crate) revision: u64,
}

/// Requests to the manager.
pub(crate) enum ManagerCommand {
    /// Hand every shard over, then answer.
    Drain(oneshot::Sender<()>),
}

/// Keeps `shared.owners` current from the shards bucket until the node stops.
pub(crate) async fn watch_owners(shared: Arc<Shared>) {
    let mut reconnects = shared.reconnects.clone();
    while !shared.stop.is_cancelled() {
        reconnects.mark_unchanged();
        let resync_at = tokio::time::Instant::now() + crate::membership::RESYNC_PERIOD;
        // With history: the last value of every key first (shards claimed before this node
        // started included), then the changes. A plain watch sees only changes, and a
        // shard claimed earlier by a node that then died would never be taken over.
        match shared.shards_bucket.watch_with_history(">").await {
            Ok(mut entries) => loop {
                let entry = tokio::select! {
                    () = shared.stop.cancelled() => return,
                    _ = reconnects.changed() => break,
                    () = tokio::time::sleep_until(resync_at) => break,
                    entry = entries.next() => entry,
                };
                match entry {
                    Some(Ok(entry)) => observe(&shared, &entry),
                    Some(Err(error)) => {
                        tracing::debug!(%error, "shard watch interrupted");
                        break;
                    }
                    None => break,
                }
            },
            Err(error) => tracing::debug!(%error, "cannot watch shards yet"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn observe(shared: &Shared, entry: &kv::Entry) {
    let Some(shard) = subjects::parse_shard_key(&entry.key) else {
        return;
    };
    let owner = match entry.operation {
        Operation::Put => serde_json::from_slice::<ShardOwner>(&entry.value).ok(),
        Operation::Delete | Operation::Purge => None,
    };
    record(shared, shard, owner, entry.revision);
    shared.owners_changed.notify_one();
}

/// Records what a shard key holds, unless a newer revision is already known.
fn record(shared: &Shared, shard: u32, owner: Option<ShardOwner>, revision: u64) {
    let mut slot = shared.owners.entry(shard).or_insert(ShardRecord {
        owner: None,
        revision: 0,
    });
    if revision >= slot.revision {
        *slot = ShardRecord { owner, revision };
    }
}

/// The manager's own state.
struct Manager {
    shared: Arc<Shared>,
    node: NodeHandle,
    workers: HashMap<u32, ShardWorker>,
    /// Since when a shard has been seen without a live owner.
    orphaned_since: HashMap<u32, Instant>,
}

/// Runs the manager until the node stops.
pub(crate) async fn run_manager(
    shared: Arc<Shared>,
    node: NodeHandle,
    mut commands: mpsc::UnboundedReceiver<ManagerCommand>,
) {
    let mut manager = Manager {
        shared: Arc::clone(&shared),
        node,
        workers: HashMap::new(),
        orphaned_since: HashMap::new(),
    };
    let mut ticks = tokio::time::interval(shared.config.heartbeat());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drained: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => break,
            _ = ticks.tick() => {}
            () = shared.owners_changed.notified() => {}
            command = commands.recv() => match command {
                Some(ManagerCommand::Drain(done)) => {
                    shared.membership.start_draining();
                    drained.push(done);
                }
                None => break,
            },
        }
        let started = Instant::now();
        manager.reconcile().await;
        if started.elapsed() > shared.config.lease() {
            tracing::warn!(took = ?started.elapsed(), "reconciling shards was slow");
        }
        shared.ready.store(true, Ordering::Release);
        if shared.membership.is_draining() && manager.workers.is_empty() {
            for done in drained.drain(..) {
                let _ = done.send(());
            }
        }
    }
    let shards: Vec<u32> = manager.workers.keys().copied().collect();
    manager.stop_workers(&shards, true).await;
}

impl Manager {
    fn me(&self) -> &str {
        self.shared.membership.me()
    }

    async fn reconcile(&mut self) {
        let membership = Arc::clone(&self.shared.membership);
        if !membership.lease_valid() {
            self.fence().await;
            return;
        }
        let candidates = membership.stable_active_members();
        let draining = membership.is_draining();
        let epoch = membership.epoch();
        let mut hand_over = Vec::new();
        for shard in 0..self.shared.config.shards {
            let preferred = preferred_owner(shard, candidates.iter().map(String::as_str));
            let prefers_me = preferred == Some(self.me());
            let record = self.shared.owners.get(&shard).map(|record| record.clone());
            let Some(ShardRecord {
                owner: Some(owner),
                revision,
            }) = record
            else {
                if !draining && (prefers_me || self.orphaned_long_enough(shard)) {
                    self.claim(shard, None).await;
                }
                continue;
            };
            if owner.node == self.me() {
                self.orphaned_since.remove(&shard);
                if owner.epoch != epoch {
                    // Ours from an earlier incarnation: take it again under this epoch.
                    self.claim(shard, Some(revision)).await;
                    continue;
                }
                self.ensure_worker(shard).await;
                if draining || (preferred.is_some() && !prefers_me) {
                    hand_over.push((shard, revision));
                }
                continue;
            }
            if self.workers.contains_key(&shard) {
                // Someone else owns it now: stop serving it at once.
                self.stop_workers(&[shard], false).await;
            }
            if draining || membership.is_alive(&owner.node) {
                self.orphaned_since.remove(&shard);
                continue;
            }
            if (prefers_me || self.orphaned_long_enough(shard))
                && membership.confirmed_dead(&owner.node).await
                && self.claim(shard, Some(revision)).await
            {
                metrics::counter!(metric_names::FAILOVERS).increment(1);
                tracing::info!(shard, from = %owner.node, "took over a shard of a lost node");
            }
        }
        if !hand_over.is_empty() {
            self.hand_over(hand_over).await;
        }
        self.publish_load().await;
    }

    /// Whether `shard` has had no live owner for [`ORPHAN_GRACE_LEASES`] leases: its
    /// preferred node should have taken it long ago (views may disagree for a moment), so
    /// any node takes it. Shorter, and a slow preferred node would see its shards grabbed
    /// and handed back over and over.
    fn orphaned_long_enough(&mut self, shard: u32) -> bool {
        let since = *self
            .orphaned_since
            .entry(shard)
            .or_insert_with(Instant::now);
        since.elapsed() >= self.shared.config.lease() * ORPHAN_GRACE_LEASES
    }

    /// Writes this node as the owner (compare-and-set); starts the worker when it won.
    async fn claim(&mut self, shard: u32, expected: Option<u64>) -> bool {
        let key = subjects::shard_key(shard);
        let shared = Arc::clone(&self.shared);
        let written = shared
            .claim_key(&shared.shards_bucket, &key, expected)
            .await;
        let Some((owner, revision)) = written else {
            return false;
        };
        tracing::debug!(shard, revision, "claimed the shard");
        record(&self.shared, shard, Some(owner), revision);
        self.orphaned_since.remove(&shard);
        if self.workers.contains_key(&shard) {
            // A worker from an earlier claim: the shard may have been owned elsewhere since
            // (unseen while this manager waited on NATS), so its sessions here may be stale.
            self.stop_workers(&[shard], false).await;
        }
        self.ensure_worker(shard).await;
        true
    }

    async fn ensure_worker(&mut self, shard: u32) {
        match self.workers.get(&shard) {
            Some(worker) if worker.is_finished() => {
                // It stopped when it saw the shard was not ours; it is again: fresh sessions.
                self.stop_workers(&[shard], false).await;
            }
            Some(_) => return,
            None => {}
        }
        match ShardWorker::start(Arc::clone(&self.shared), self.node.clone(), shard).await {
            Ok(worker) => {
                self.workers.insert(shard, worker);
                self.shared.serving.insert(shard, ());
            }
            Err(error) => tracing::warn!(shard, %error, "cannot serve the shard yet"),
        }
    }

    /// Stops the workers of `shards` (each finishes its in-flight turns), then stops those
    /// shards' sessions, so a later owner loads what they saved: gracefully on a handover
    /// (`graceful`), at once when this node may no longer own them.
    async fn stop_workers(&mut self, shards: &[u32], graceful: bool) {
        let stopping: Vec<ShardWorker> = shards
            .iter()
            .filter_map(|shard| {
                self.shared.serving.remove(shard);
                self.workers.remove(shard)
            })
            .collect();
        // In-flight turns may take as long as a model call; past this they are redelivered.
        // A node that may no longer own the shards does not wait for them at all.
        let limit = if graceful {
            self.shared.config.ack_wait() * 5
        } else {
            Duration::ZERO
        };
        futures_util::future::join_all(stopping.into_iter().map(|worker| worker.stop(limit))).await;
        let evicting = Instant::now();
        let selected: HashSet<u32> = shards.iter().copied().collect();
        let count = self.shared.config.shards;
        let select = Box::new(move |key: &troupe_actors::SessionKey| {
            selected.contains(&shard_of(key, count))
        });
        if let Err(error) = self.node.evict(select, graceful).await {
            tracing::warn!(%error, "could not stop the sessions of released shards");
        }
        if evicting.elapsed() > self.shared.config.lease() {
            tracing::warn!(took = ?evicting.elapsed(), graceful, "stopping the sessions of shards was slow");
        }
    }

    /// Hands shards over: stop serving them, then delete their keys so the preferred owner
    /// takes them.
    async fn hand_over(&mut self, shards: Vec<(u32, u64)>) {
        let ids: Vec<u32> = shards.iter().map(|(shard, _)| *shard).collect();
        self.stop_workers(&ids, true).await;
        let bucket = &self.shared.shards_bucket;
        let limit = self.shared.config.lease();
        let releases = shards.iter().map(|(shard, revision)| async move {
            let key = subjects::shard_key(*shard);
            bounded(limit, bucket.delete_expect_revision(&key, Some(*revision))).await
        });
        let released = futures_util::future::join_all(releases).await;
        let count = released
            .iter()
            .filter(|released| released.is_some())
            .count();
        metrics::counter!(metric_names::HANDOVERS).increment(count as u64);
        if count < ids.len() {
            tracing::warn!(shards = ?ids, released = count, "some shards could not be released; their keys are taken over by CAS");
        }
        tracing::info!(shards = ?ids, "handed shards over");
    }

    /// This node's lease may have expired: stop acting as an owner at once, before the
    /// server lets the lease go. Keys stay; they are taken again or over by CAS.
    async fn fence(&mut self) {
        if self.workers.is_empty() {
            return;
        }
        tracing::warn!("lease not renewed in time; stopping the workers of this node's shards");
        let shards: Vec<u32> = self.workers.keys().copied().collect();
        self.stop_workers(&shards, false).await;
        self.publish_load().await;
    }

    async fn publish_load(&self) {
        let load = &self.shared.membership.load;
        let owned = u32::try_from(self.workers.len()).unwrap_or(u32::MAX);
        load.shards.store(owned, Ordering::Relaxed);
        if let Ok(stats) = self.node.stats().await {
            load.sessions
                .store(stats.active_sessions, Ordering::Relaxed);
        }
        metrics::gauge!(metric_names::SHARDS_OWNED).set(f64::from(owned));
    }
}
