//! Membership: every node holds a lease, its key in the `troupe_members` KV bucket, which
//! expires `lease` after its last renewal (the bucket's max age). A node renews it every
//! `heartbeat` with a compare-and-set on its revision, and watches the bucket to know the
//! others. A node is lost when its key expired on the server; a node whose own renewals
//! stop succeeding fences itself ([`Membership::lease_valid`]) before the server lets the
//! lease go, so two nodes never own the same shard at once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use dashmap::DashMap;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::metrics as metric_names;

/// Why this node could not take its lease.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LeaseError {
    #[error("taking the lease timed out")]
    TimedOut,
    #[error("cannot write the lease: {0}")]
    Put(#[from] async_nats::jetstream::kv::PutError),
}

/// Watches start over this often even without a reconnection: a watch that silently
/// stopped delivering cannot leave a view stale for longer.
pub(crate) const RESYNC_PERIOD: Duration = Duration::from_secs(5);

/// A member's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Owns shards and takes new ones.
    Active,
    /// Handing its shards over before it exits.
    Draining,
}

/// What a node announces in its lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub node_id: String,
    /// Its HTTP address, for people and load balancers.
    pub address: Option<String>,
    pub state: MemberState,
    /// A new number each time the node (re)joins: tells its incarnations apart.
    pub epoch: u64,
    /// Sessions running in its memory.
    pub sessions: u64,
    pub shards: u32,
    /// Turns in progress.
    pub in_flight: u64,
    /// Unix seconds.
    pub started_at: u64,
    pub version: String,
    /// Reads turn-journal records in the sessions bucket. Leases from builds before the
    /// journal lack the field, and read as `false` (see [`crate::journal_gate`]).
    #[serde(default)]
    pub journal: bool,
    /// Reads snapshots and records that keep pictures, and keeps uploads in the cluster's
    /// object store. Leases from builds before pictures read as `false`, and no member
    /// takes uploads while one of those is alive.
    #[serde(default)]
    pub pictures: bool,
}

/// What the node reports about itself, updated by the shard manager.
#[derive(Debug, Default)]
pub struct NodeLoad {
    pub sessions: AtomicU64,
    pub shards: AtomicU32,
    pub in_flight: AtomicU64,
}

struct Seen {
    info: MemberInfo,
    /// When this node last saw a renewal.
    at: Instant,
    /// When this node first saw this incarnation.
    since: Instant,
}

/// A member as `/api/v1/cluster` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct MemberView {
    #[serde(flatten)]
    pub info: MemberInfo,
    /// Milliseconds since its last heartbeat was seen.
    pub last_seen_ms: u64,
}

/// This node's lease and its view of the others.
pub struct Membership {
    me: String,
    bucket: kv::Store,
    lease: Duration,
    heartbeat: Duration,
    view: DashMap<String, Seen>,
    epoch: AtomicU64,
    revision: AtomicU64,
    /// When the last successful renewal was sent (`None`: no valid lease).
    renewed_at: Mutex<Option<Instant>>,
    address: Mutex<Option<String>>,
    draining: std::sync::atomic::AtomicBool,
    started_at: u64,
    /// When this node began watching the others.
    watching_since: Instant,
    pub(crate) load: Arc<NodeLoad>,
}

impl Membership {
    pub(crate) fn new(me: String, bucket: kv::Store, lease: Duration, heartbeat: Duration) -> Self {
        Self {
            me,
            bucket,
            lease,
            heartbeat,
            view: DashMap::new(),
            epoch: AtomicU64::new(0),
            revision: AtomicU64::new(0),
            renewed_at: Mutex::new(None),
            address: Mutex::new(None),
            draining: std::sync::atomic::AtomicBool::new(false),
            started_at: troupe_actors::message::unix_now(),
            watching_since: Instant::now(),
            load: Arc::default(),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn set_address(&self, address: String) {
        *self.address.lock().unwrap_or_else(PoisonError::into_inner) = Some(address);
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Whether this node may act as the owner of its shards: its last renewal was sent less
    /// than `lease − heartbeat` ago, so the server cannot have let its lease expire yet.
    pub fn lease_valid(&self) -> bool {
        let renewed_at = *self
            .renewed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        renewed_at.is_some_and(|at| at.elapsed() + self.heartbeat < self.lease)
    }

    fn info(&self) -> MemberInfo {
        let load = &self.load;
        MemberInfo {
            node_id: self.me.clone(),
            address: self
                .address
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            state: if self.is_draining() {
                MemberState::Draining
            } else {
                MemberState::Active
            },
            epoch: self.epoch(),
            sessions: load.sessions.load(Ordering::Relaxed),
            shards: load.shards.load(Ordering::Relaxed),
            in_flight: load.in_flight.load(Ordering::Relaxed),
            started_at: self.started_at,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            journal: true,
            pictures: true,
        }
    }

    fn encoded_info(&self) -> bytes::Bytes {
        serde_json::to_vec(&self.info())
            .expect("member info is json-encodable")
            .into()
    }

    /// Takes a lease under a new epoch (joining, or after losing the previous one).
    pub(crate) async fn join(&self) -> Result<(), LeaseError> {
        self.epoch.store(rand_epoch(), Ordering::Release);
        let sent_at = Instant::now();
        let put = tokio::time::timeout(self.lease, self.bucket.put(&self.me, self.encoded_info()));
        let revision = put.await.map_err(|_| LeaseError::TimedOut)??;
        self.revision.store(revision, Ordering::Release);
        *self
            .renewed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sent_at);
        Ok(())
    }

    /// One renewal; on a lost lease, joins again under a new epoch.
    async fn renew(&self) {
        let was_valid = self.lease_valid();
        self.try_renew().await;
        if was_valid && !self.lease_valid() {
            // Workers check the lease before each message, so this takes effect at once.
            tracing::warn!(node = %self.me, "lease not renewed in time; this node stops serving its shards until it holds a lease again");
        }
    }

    async fn try_renew(&self) {
        let sent_at = Instant::now();
        let revision = self.revision.load(Ordering::Acquire);
        let renewal = tokio::time::timeout(
            self.lease,
            self.bucket.update(&self.me, self.encoded_info(), revision),
        )
        .await;
        match renewal {
            Ok(Ok(revision)) => {
                self.revision.store(revision, Ordering::Release);
                *self
                    .renewed_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(sent_at);
            }
            Ok(Err(error)) if error.kind() == UpdateErrorKind::WrongLastRevision => {
                metrics::counter!(metric_names::LEASES_LOST).increment(1);
                tracing::warn!(node = %self.me, "this node's lease expired; it joins again");
                *self
                    .renewed_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                if let Err(error) = self.join().await {
                    tracing::warn!(%error, "could not join again; retrying");
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "lease renewal failed; retrying"),
            Err(_) => tracing::warn!("lease renewal timed out; retrying"),
        }
    }

    /// Renews the lease every heartbeat until `stop`.
    pub(crate) async fn run_heartbeats(self: Arc<Self>, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => self.renew().await,
            }
        }
    }

    /// Keeps the view of the other members current until `stop`.
    pub(crate) async fn run_watch(
        self: Arc<Self>,
        mut reconnects: tokio::sync::watch::Receiver<u64>,
        stop: CancellationToken,
    ) {
        while !stop.is_cancelled() {
            reconnects.mark_unchanged();
            let resync_at = tokio::time::Instant::now() + RESYNC_PERIOD;
            match self.bucket.watch_all().await {
                Ok(mut entries) => loop {
                    let entry = tokio::select! {
                        () = stop.cancelled() => return,
                        _ = reconnects.changed() => break,
                        () = tokio::time::sleep_until(resync_at) => break,
                        entry = entries.next() => entry,
                    };
                    match entry {
                        Some(Ok(entry)) => self.observe(&entry),
                        Some(Err(error)) => {
                            tracing::debug!(%error, "member watch interrupted");
                            break;
                        }
                        None => break,
                    }
                },
                Err(error) => tracing::debug!(%error, "cannot watch members yet"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn observe(&self, entry: &kv::Entry) {
        match entry.operation {
            Operation::Put => {
                let Ok(info) = serde_json::from_slice::<MemberInfo>(&entry.value) else {
                    tracing::warn!(key = %entry.key, "unreadable member entry ignored");
                    return;
                };
                let now = Instant::now();
                let since = self
                    .view
                    .get(&entry.key)
                    .filter(|seen| seen.info.epoch == info.epoch)
                    .map_or(now, |seen| seen.since);
                self.view.insert(
                    entry.key.clone(),
                    Seen {
                        info,
                        at: now,
                        since,
                    },
                );
            }
            Operation::Delete | Operation::Purge => {
                self.view.remove(&entry.key);
            }
        }
    }

    fn looks_alive(&self, seen: &Seen) -> bool {
        seen.at.elapsed() < self.lease + self.heartbeat
    }

    /// Whether `node` renewed recently, as far as this node has seen.
    pub fn is_alive(&self, node: &str) -> bool {
        if node == self.me {
            return self.lease_valid();
        }
        self.view
            .get(node)
            .is_some_and(|seen| self.looks_alive(&seen))
    }

    /// Active members seen alive for at least one lease (a node that just appeared does not
    /// pull shards yet), plus this node while its lease is valid and it is not draining.
    pub fn stable_active_members(&self) -> Vec<String> {
        let mut members: Vec<String> = self
            .view
            .iter()
            .filter(|seen| {
                seen.key() != &self.me
                    && seen.info.state == MemberState::Active
                    && self.looks_alive(seen)
                    && seen.since.elapsed() >= self.lease
            })
            .map(|seen| seen.key().clone())
            .collect();
        if self.lease_valid() && !self.is_draining() {
            members.push(self.me.clone());
        }
        members.sort();
        members
    }

    /// The live members whose build cannot read turn-journal records, by node id; `None`
    /// until this node has watched the members for a whole lease and a heartbeat (every
    /// live member renewed in that time, so none can be missing from the view) or while
    /// its own lease is not valid.
    pub(crate) fn older_members(&self) -> Option<Vec<String>> {
        self.live_members_lacking(|info| info.journal)
    }

    /// Live members whose build keeps no pictures (their leases lack the flag); `None`
    /// until this node has watched the leases for a whole lease (it may not have seen
    /// every member yet), or while its own lease is not valid.
    pub(crate) fn members_without_pictures(&self) -> Option<Vec<String>> {
        self.live_members_lacking(|info| info.pictures)
    }

    /// The live members whose lease lacks what `has` reads; `None` until the view can be
    /// trusted to hold every live member (see [`Self::older_members`]).
    fn live_members_lacking(&self, has: impl Fn(&MemberInfo) -> bool) -> Option<Vec<String>> {
        if self.watching_since.elapsed() < self.lease + self.heartbeat || !self.lease_valid() {
            return None;
        }
        let lacking = self
            .view
            .iter()
            .filter(|seen| self.looks_alive(seen) && !has(&seen.info))
            .map(|seen| seen.key().clone())
            .collect();
        Some(lacking)
    }

    /// Asks the server: is `node`'s lease gone (expired or deleted)?
    pub(crate) async fn confirmed_dead(&self, node: &str) -> bool {
        match tokio::time::timeout(self.lease, self.bucket.entry(node)).await {
            Ok(Ok(None)) => true,
            Ok(Ok(Some(entry))) => entry.operation != Operation::Put,
            _ => false,
        }
    }

    /// Members this node sees alive, itself included.
    pub fn members(&self) -> Vec<MemberView> {
        let mut members: Vec<MemberView> = self
            .view
            .iter()
            .filter(|seen| seen.key() != &self.me && self.looks_alive(seen))
            .map(|seen| MemberView {
                info: seen.info.clone(),
                last_seen_ms: u64::try_from(seen.at.elapsed().as_millis()).unwrap_or(u64::MAX),
            })
            .collect();
        if self.lease_valid() {
            let renewed_at = *self
                .renewed_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            members.push(MemberView {
                info: self.info(),
                last_seen_ms: renewed_at.map_or(0, |at| {
                    u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)
                }),
            });
        }
        members.sort_by(|left, right| left.info.node_id.cmp(&right.info.node_id));
        members
    }

    /// Gives the lease up (the node leaves); others see it at once.
    pub(crate) async fn leave(&self) {
        *self
            .renewed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let revision = self.revision.load(Ordering::Acquire);
        if let Err(error) = self
            .bucket
            .delete_expect_revision(&self.me, Some(revision))
            .await
        {
            tracing::debug!(%error, "could not delete this node's lease; it expires by itself");
        }
    }
}

fn rand_epoch() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) | 1
}

/// A members bucket whose leases last 1.5 s, for tests that watch members come and go.
#[cfg(test)]
pub(crate) async fn short_lease_bucket(jetstream: &async_nats::jetstream::Context) -> kv::Store {
    jetstream
        .create_key_value(kv::Config {
            bucket: "members".into(),
            max_age: Duration::from_millis(1_500),
            ..kv::Config::default()
        })
        .await
        .expect("the members bucket is created")
}

/// Member `node` of a [`short_lease_bucket`], its lease taken (heartbeats every 250 ms).
#[cfg(test)]
pub(crate) async fn joined_with_short_lease(members: &kv::Store, node: &str) -> Arc<Membership> {
    let membership = Arc::new(Membership::new(
        node.to_owned(),
        members.clone(),
        Duration::from_millis(1_500),
        Duration::from_millis(250),
    ));
    membership.join().await.expect("the lease is taken");
    membership
}
