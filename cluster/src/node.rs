//! `ClusterNode`: one Troupe node as a member of a cluster. [`ClusterNode::join`] connects
//! to NATS, makes sure the inbox streams and the buckets exist, takes the node's lease and
//! starts the ingress; [`ClusterNode::serve`] then starts owning shards with the local
//! session layer. [`ClusterNode::drain`] hands every shard over (SIGTERM), and
//! [`ClusterNode::leave`] gives the lease up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use dashmap::DashMap;
use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use troupe_actors::Ingress;
use troupe_actors::node::NodeHandle;

use crate::config::{ClusterConfig, StorageKind};
use crate::envelope::{self, RpcRequest};
use crate::inbox::InboxStreams;
use crate::ingress::{ClusterIngress, answer_locally};
use crate::journal_gate;
use crate::kv_store::{BoxError, ClusterError, JetStreamSnapshotStore};
use crate::membership::{MemberView, Membership};
use crate::shards::{ManagerCommand, ShardRecord, run_manager, watch_owners};
use crate::singletons::{SingletonRegistry, SingletonTask, run_singletons};
use crate::subjects;

/// What every part of a cluster node shares.
pub(crate) struct Shared {
    pub(crate) config: ClusterConfig,
    pub(crate) client: async_nats::Client,
    pub(crate) jetstream: jetstream::Context,
    pub(crate) inbox: InboxStreams,
    pub(crate) shards_bucket: kv::Store,
    pub(crate) store: Arc<JetStreamSnapshotStore>,
    pub(crate) membership: Arc<Membership>,
    /// Shard keys as last seen.
    pub(crate) owners: DashMap<u32, ShardRecord>,
    pub(crate) owners_changed: Notify,
    /// Shards this node runs a worker for.
    pub(crate) serving: DashMap<u32, ()>,
    /// The local session layer, once [`ClusterNode::serve`] ran.
    pub(crate) node: OnceLock<NodeHandle>,
    /// Singletons registered on this node.
    pub(crate) singletons: SingletonRegistry,
    /// Set once the shard manager has reconciled once.
    pub(crate) ready: AtomicBool,
    /// Bumped on every (re)connection to NATS: watches start over, so a view that missed
    /// updates while disconnected is replaced by the current state.
    pub(crate) reconnects: watch::Receiver<u64>,
    pub(crate) stop: CancellationToken,
}

/// The cluster as one node sees it ([`ClusterNode::overview`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClusterOverview {
    pub node_id: String,
    /// Holds a valid lease, has reconciled its shards, and is not leaving.
    pub ready: bool,
    /// The NATS connection: `connected`, `pending` (reconnecting) or `disconnected`.
    pub nats: String,
    pub members: Vec<MemberView>,
    /// Shards in all.
    pub shards: u32,
    /// How many shards each node owns.
    pub shards_by_owner: std::collections::BTreeMap<String, u32>,
    /// Shards nobody owns now (between an owner's death and a takeover).
    pub unowned_shards: u32,
    /// Cluster-wide singletons registered here, each with the node that runs it.
    pub singletons: Vec<crate::singletons::SingletonView>,
}

/// Runs a NATS call for at most `limit`: placement must never hang on a lost connection,
/// or a node could not fence itself in time.
pub(crate) async fn bounded<T, E>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Option<T> {
    tokio::time::timeout(limit, call).await.ok()?.ok()
}

impl Shared {
    /// Writes this node's current incarnation into `key` of `bucket` with compare-and-set
    /// (`expected`: the revision being replaced; `None`: the key must not exist), within one
    /// lease so a lost connection never stalls the caller. When it won: the owner written
    /// and the new revision.
    pub(crate) async fn claim_key(
        &self,
        bucket: &kv::Store,
        key: &str,
        expected: Option<u64>,
    ) -> Option<(crate::shards::ShardOwner, u64)> {
        let owner = crate::shards::ShardOwner {
            node: self.membership.me().to_owned(),
            epoch: self.membership.epoch(),
        };
        let value: bytes::Bytes = serde_json::to_vec(&owner)
            .expect("an owner is json-encodable")
            .into();
        let limit = self.config.lease();
        let revision = match expected {
            Some(revision) => bounded(limit, bucket.update(key, value, revision)).await,
            None => bounded(limit, bucket.create(key, value)).await,
        }?;
        Some((owner, revision))
    }

    /// Whether this node may act as `shard`'s owner right now: its lease is valid and the
    /// shard key, as last seen, names this node's current incarnation.
    pub(crate) fn owns(&self, shard: u32) -> bool {
        let membership = &self.membership;
        membership.lease_valid()
            && self.owners.get(&shard).is_some_and(|record| {
                record.owner.as_ref().is_some_and(|owner| {
                    owner.node == membership.me() && owner.epoch == membership.epoch()
                })
            })
    }
}

/// A node's membership of a cluster. Cheap to clone.
#[derive(Clone)]
pub struct ClusterNode {
    shared: Arc<Shared>,
    ingress: Arc<ClusterIngress>,
    manager: Arc<OnceLock<mpsc::UnboundedSender<ManagerCommand>>>,
}

pub(crate) fn storage(kind: StorageKind) -> stream::StorageType {
    match kind {
        StorageKind::File => stream::StorageType::File,
        StorageKind::Memory => stream::StorageType::Memory,
    }
}

pub(crate) fn setup_error(what: &str, error: impl Into<BoxError>) -> ClusterError {
    ClusterError::Setup {
        what: what.to_owned(),
        reason: error.into(),
    }
}

/// Why the connection options could not be made.
#[derive(Debug, thiserror::Error)]
enum ConnectSetupError {
    #[error("environment variable {variable} is not set")]
    Secret {
        variable: String,
        #[source]
        source: std::env::VarError,
    },
    #[error("cannot read {}: {source}", path.display())]
    Credentials {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no connection within 10 s")]
    NoConnection,
}

/// Connects with the configured auth and TLS; reconnects forever, quickly. The receiver is
/// bumped on every (re)connection.
pub async fn connect(
    config: &ClusterConfig,
    node_id: &str,
) -> Result<(async_nats::Client, watch::Receiver<u64>), ClusterError> {
    let (connections, reconnects) = watch::channel(0u64);
    let connect_error = |reason: BoxError| ClusterError::Connect {
        url: config.nats_url.clone(),
        reason,
    };
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("troupe-{node_id}"))
        .max_reconnects(None)
        .retry_on_initial_connect()
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((50 * attempts as u64).min(1_000))
        })
        .event_callback(move |event| {
            if matches!(event, async_nats::Event::Connected) {
                connections.send_modify(|count| *count += 1);
            }
            async move {
                tracing::info!(%event, "nats connection");
            }
        });
    let auth = &config.auth;
    let secret = |variable: &String| {
        std::env::var(variable).map_err(|source| {
            connect_error(
                ConnectSetupError::Secret {
                    variable: variable.clone(),
                    source,
                }
                .into(),
            )
        })
    };
    if let (Some(user), Some(variable)) = (&auth.user, &auth.password_env) {
        options = options.user_and_password(user.clone(), secret(variable)?);
    }
    if let Some(variable) = &auth.token_env {
        options = options.token(secret(variable)?);
    }
    if let Some(variable) = &auth.nkey_seed_env {
        options = options.nkey(secret(variable)?);
    }
    if let Some(path) = &auth.creds_file {
        options = options.credentials_file(path).await.map_err(|source| {
            connect_error(
                ConnectSetupError::Credentials {
                    path: path.clone(),
                    source,
                }
                .into(),
            )
        })?;
    }
    if let Some(tls) = &config.tls {
        options = options.require_tls(true);
        if let Some(ca) = &tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    let urls: Vec<async_nats::ServerAddr> = config
        .nats_url
        .split(',')
        .map(|url| url.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|error| connect_error(error.into()))?;
    let client = options
        .connect(urls)
        .await
        .map_err(|error| connect_error(error.into()))?;
    // `retry_on_initial_connect` returns at once; wait (bounded) for the first connection so
    // that a wrong URL fails start-up with a clear error.
    for _ in 0..100 {
        if client.connection_state() == async_nats::connection::State::Connected {
            return Ok((client, reconnects));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(connect_error(ConnectSetupError::NoConnection.into()))
}

impl ClusterNode {
    /// Connects, prepares JetStream, takes this node's lease and starts the ingress. The
    /// returned store keeps session snapshots in the cluster.
    pub async fn join(
        config: ClusterConfig,
        node_id: String,
    ) -> Result<(Self, Arc<JetStreamSnapshotStore>), ClusterError> {
        let (client, reconnects) = connect(&config, &node_id).await?;
        let jetstream = jetstream::new(client.clone());
        let storage_type = storage(config.storage);
        let inbox = InboxStreams::open(&jetstream, &config).await?;
        let members_bucket = jetstream
            .create_key_value(kv::Config {
                bucket: subjects::MEMBERS_BUCKET.to_owned(),
                history: 1,
                max_age: config.lease(),
                storage: storage_type,
                num_replicas: config.replicas,
                ..kv::Config::default()
            })
            .await
            .map_err(|error| setup_error(subjects::MEMBERS_BUCKET, error))?;
        let shards_bucket = jetstream
            .create_key_value(kv::Config {
                bucket: subjects::SHARDS_BUCKET.to_owned(),
                history: 1,
                storage: storage_type,
                num_replicas: config.replicas,
                ..kv::Config::default()
            })
            .await
            .map_err(|error| setup_error(subjects::SHARDS_BUCKET, error))?;
        let singletons_bucket = jetstream
            .create_key_value(kv::Config {
                bucket: subjects::SINGLETONS_BUCKET.to_owned(),
                history: 1,
                storage: storage_type,
                num_replicas: config.replicas,
                ..kv::Config::default()
            })
            .await
            .map_err(|error| setup_error(subjects::SINGLETONS_BUCKET, error))?;
        let store = Arc::new(
            JetStreamSnapshotStore::open_for_cluster(
                jetstream.clone(),
                subjects::SESSIONS_BUCKET,
                storage_type,
                config.replicas,
            )
            .await?,
        );
        let membership = Arc::new(Membership::new(
            node_id,
            members_bucket,
            config.lease(),
            config.heartbeat(),
        ));
        if let Some(address) = &config.advertise_url {
            membership.set_address(address.clone());
        }
        membership
            .join()
            .await
            .map_err(|error| setup_error(subjects::MEMBERS_BUCKET, error))?;
        let shared = Arc::new(Shared {
            config,
            client,
            jetstream,
            inbox,
            shards_bucket,
            store: Arc::clone(&store),
            membership: Arc::clone(&membership),
            owners: DashMap::new(),
            owners_changed: Notify::new(),
            singletons: SingletonRegistry::default(),
            serving: DashMap::new(),
            node: OnceLock::new(),
            ready: AtomicBool::new(false),
            reconnects: reconnects.clone(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(Arc::clone(&membership).run_heartbeats(shared.stop.clone()));
        tokio::spawn(Arc::clone(&membership).run_watch(reconnects, shared.stop.clone()));
        tokio::spawn(journal_gate::run(
            Arc::clone(&membership),
            Arc::clone(&store),
            shared.config.heartbeat(),
            shared.stop.clone(),
        ));
        tokio::spawn(watch_owners(Arc::clone(&shared)));
        tokio::spawn(run_singletons(Arc::clone(&shared), singletons_bucket));
        let ingress = ClusterIngress::start(Arc::clone(&shared))
            .await
            .map_err(|error| setup_error("replies", error))?;
        tracing::info!(node = %membership.me(), "joined the cluster");
        Ok((
            Self {
                shared,
                ingress,
                manager: Arc::default(),
            },
            store,
        ))
    }

    /// The cluster's store of uploaded pictures (its bucket is created if missing).
    pub async fn uploads(
        &self,
        max_bytes: usize,
    ) -> Result<Arc<crate::uploads::ObjectUploads>, ClusterError> {
        let (replicas, storage) = self.stream_placement();
        crate::uploads::ObjectUploads::open(
            &self.shared.jetstream,
            storage,
            replicas,
            Arc::clone(&self.shared.membership),
            max_bytes,
        )
        .await
    }

    /// The cluster's long-term memory (its stream is created if missing), followed live.
    pub async fn memories(
        &self,
    ) -> Result<crate::memory::JetStreamMemoryStore, troupe_actors::memory::MemoryError> {
        let (replicas, storage) = self.stream_placement();
        crate::memory::JetStreamMemoryStore::open(&self.shared.jetstream, storage, replicas).await
    }

    /// The cluster's usage ledger (its stream is created if missing), for this node.
    pub async fn usage_ledger(
        &self,
    ) -> Result<crate::usage::JetStreamUsageLedger, troupe_actors::usage::UsageError> {
        let (replicas, storage) = self.stream_placement();
        crate::usage::JetStreamUsageLedger::open(
            &self.shared.jetstream,
            storage,
            replicas,
            self.node_id(),
        )
        .await
    }

    /// Starts owning shards with `node` as the local session layer, and answering other
    /// nodes' requests about its sessions.
    pub async fn serve(&self, node: NodeHandle) -> Result<(), ClusterError> {
        let _ = self.shared.node.set(node.clone());
        let requests = self
            .shared
            .client
            .subscribe(subjects::node_rpc(self.shared.membership.me()))
            .await
            .map_err(|error| setup_error("rpc", error))?;
        tokio::spawn(run_rpc_server(Arc::clone(&self.shared), requests));
        let (commands, receiver) = mpsc::unbounded_channel();
        let _ = self.manager.set(commands);
        tokio::spawn(run_manager(Arc::clone(&self.shared), node, receiver));
        Ok(())
    }

    /// Runs `task` on exactly one node of the cluster: every node registers the same
    /// singleton under the same `name`, one of them runs it, and it moves (the token of the
    /// old run is cancelled first) when that node dies, is cut off or drains.
    pub fn run_singleton(&self, name: impl Into<String>, task: SingletonTask) {
        self.shared.singletons.register(name.into(), task);
    }

    /// The door access paths use.
    pub fn ingress(&self) -> Arc<dyn Ingress> {
        Arc::clone(&self.ingress) as Arc<dyn Ingress>
    }

    pub fn node_id(&self) -> &str {
        self.shared.membership.me()
    }

    /// The node's NATS connection, for parts that keep their own streams (the canvas).
    pub fn client(&self) -> &async_nats::Client {
        &self.shared.client
    }

    /// How the cluster's streams are kept: `[cluster] replicas` and `storage`.
    pub fn stream_placement(&self) -> (usize, stream::StorageType) {
        (
            self.shared.config.replicas,
            storage(self.shared.config.storage),
        )
    }

    /// Ready: holds a valid lease, has reconciled its shards once, and is not leaving.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
            && self.shared.membership.lease_valid()
            && !self.shared.membership.is_draining()
    }

    /// The HTTP address announced to the others (unless `advertise_url` is configured).
    pub fn set_address(&self, address: String) {
        if self.shared.config.advertise_url.is_none() {
            self.shared.membership.set_address(address);
        }
    }

    /// What the operator's dashboard shows of the cluster, as this node sees it.
    pub fn overview(&self) -> ClusterOverview {
        let mut shards_by_owner = std::collections::BTreeMap::<String, u32>::new();
        let mut unowned = 0;
        for record in &self.shared.owners {
            match &record.value().owner {
                Some(owner) => *shards_by_owner.entry(owner.node.clone()).or_default() += 1,
                None => unowned += 1,
            }
        }
        let seen = u32::try_from(self.shared.owners.len()).unwrap_or(u32::MAX);
        ClusterOverview {
            node_id: self.node_id().to_owned(),
            ready: self.is_ready(),
            nats: format!("{:?}", self.shared.client.connection_state()).to_lowercase(),
            members: self.members(),
            shards: self.shared.config.shards,
            shards_by_owner,
            unowned_shards: unowned + self.shared.config.shards.saturating_sub(seen),
            singletons: self.shared.singletons.views(),
        }
    }

    /// Members this node sees alive, itself included.
    pub fn members(&self) -> Vec<MemberView> {
        let members = self.shared.membership.members();
        metrics::gauge!(crate::metrics::MEMBERS).set(members.len() as f64);
        members
    }

    /// Hands every shard over to the other nodes (each in-flight turn finishes first, and
    /// its sessions save and stop). Returns when nothing is owned any more, or after `limit`.
    pub async fn drain(&self, limit: Duration) {
        let Some(manager) = self.manager.get() else {
            self.shared.membership.start_draining();
            return;
        };
        let (done, drained) = oneshot::channel();
        if manager.send(ManagerCommand::Drain(done)).is_err() {
            return;
        }
        if tokio::time::timeout(limit, drained).await.is_err() {
            tracing::warn!("shards were not all handed over within {limit:?}");
        }
    }

    /// Gives the lease up and stops every cluster task. Bounded: a node that cannot reach
    /// NATS leaves anyway (its lease then expires by itself).
    pub async fn leave(&self) {
        self.shared.stop.cancel();
        let limit = self.shared.config.lease();
        let _ = tokio::time::timeout(limit, self.shared.membership.leave()).await;
        let _ = tokio::time::timeout(limit, self.shared.client.flush()).await;
    }
}

async fn run_rpc_server(shared: Arc<Shared>, mut requests: async_nats::Subscriber) {
    loop {
        let request = tokio::select! {
            () = shared.stop.cancelled() => return,
            request = requests.next() => request,
        };
        let Some(request) = request else { return };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let Some(reply) = request.reply.clone() else {
                return;
            };
            let answer = match envelope::decode::<RpcRequest>(&request.payload) {
                Ok(rpc) => answer_locally(&shared, &rpc).await,
                Err(error) => crate::envelope::RpcResponse::Failed {
                    code: troupe_actors::ErrorCode::InvalidMessage,
                    message: error.to_string(),
                },
            };
            let _ = shared
                .client
                .publish(reply, envelope::encode(&answer))
                .await;
        });
    }
}
