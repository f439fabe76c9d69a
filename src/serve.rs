//! `troupe serve`: the composition root. Reads the config, builds the providers and the
//! snapshot store (embedded, or JetStream KV when `[cluster]` joins a cluster), starts the
//! node's supervision tree with the access layer under it, and shuts down gracefully on
//! SIGINT/SIGTERM: stop accepting, hand cluster shards over, finish in-flight replies,
//! drain sessions (each has saved its snapshot), leave the cluster, exit 0.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use troupe_actors::bridge::actor::{Backoff, BridgeActor, BridgeArgs, receive_forever};
use troupe_actors::bridge::dispatch::Dispatcher;
use troupe_actors::bridge::store::BridgeStore;
use troupe_actors::inbox::Inbox;
use troupe_actors::node::{NodeHandle, NodeSetup, ProviderSetup, start_node};
use troupe_actors::session::SessionConfig;
use troupe_actors::snapshot::{LocalSnapshotStore, SnapshotStore};
use troupe_actors::storage::Storage;
use troupe_actors::supervisor::{ChildSpec, RestartBudget};
use troupe_actors::uploads::{LocalUploads, UploadStore};
use troupe_actors::usage::{LocalUsageLedger, UsageBook, UsageLedger};
use troupe_actors::{Ingress, MessageLimits};
use troupe_canvas::context::BoardContext;
use troupe_canvas::jetstream::{JetStreamCanvasStore, StreamSettings};
use troupe_canvas::skill::CanvasSkill;
use troupe_canvas::{Canvas, LocalCanvasStore, RoomSettings, SharedCanvasStore};
use troupe_cluster::{ClusterConfig, ClusterNode};
use troupe_inference::{ProviderConfig, ProviderKind, build_provider};
use troupe_skills::builtin::{BuiltinContext, Reminders};

use crate::config::autodetect::{ProviderEnvironment, echo_notice};
use crate::config::{
    ConfigSource, TroupeConfig, build_bridges, build_skills, detect_provider, effective_skills,
    with_offline_fallback,
};
use crate::gateway::access::{AccessArgs, AccessLayer};
use crate::gateway::body::BodyBudget;
use crate::gateway::setup::SetupTarget;
use crate::gateway::{AppState, Clients, GatewaySettings};
use crate::local_models::LocalModels;

/// How long shutdown waits for in-flight requests and replies.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The providers to run and the notice to show (when answering with `echo`), with the
/// local model as the last fallback when `assistant.offline_fallback` asks for it.
pub(crate) async fn resolve_providers(
    config: &TroupeConfig,
) -> (Vec<ProviderConfig>, Option<String>) {
    let (mut providers, notice) = if config.providers.is_empty() {
        let environment = ProviderEnvironment::probe().await;
        let (provider, notice) = detect_provider(&config.assistant.provider, &environment);
        (vec![provider], notice)
    } else {
        let answering = config
            .providers
            .iter()
            .find(|provider| provider.name == config.assistant.provider);
        let notice = answering
            .is_some_and(|provider| provider.kind == ProviderKind::Echo)
            .then(echo_notice);
        (config.providers.clone(), notice)
    };
    if config.assistant.offline_fallback && with_offline_fallback(&mut providers) {
        return (providers, None);
    }
    (providers, notice)
}

/// Where the first-run set-up may write: offered while the node answers with `echo` for
/// want of a model, and never in a cluster (whose nodes share one configuration).
fn first_run_setup(
    config: &TroupeConfig,
    source: &ConfigSource,
    no_model: bool,
) -> Option<Arc<SetupTarget>> {
    if !no_model || config.cluster.is_some() {
        return None;
    }
    let config_path = match source {
        ConfigSource::File(path) => path.clone(),
        ConfigSource::Defaults => PathBuf::from("troupe.toml"),
    };
    Some(Arc::new(SetupTarget::new(
        config_path,
        config.storage.data_dir.clone(),
        config.assistant.provider.clone(),
    )))
}

pub(crate) async fn serve(
    config: TroupeConfig,
    source: ConfigSource,
    process_start: Instant,
) -> anyhow::Result<()> {
    let node_id = config
        .cluster
        .as_ref()
        .map(|cluster| resolve_node_id(cluster, &config.storage.data_dir))
        .transpose()?;
    let telemetry = crate::telemetry::init_tracing(&config.telemetry, node_id.as_deref())?;
    let metrics = crate::telemetry::install_metrics()?;
    let log_level = telemetry.log_level();
    let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not raise the open-file limit; many connections may fail");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let (provider_configs, notice) = resolve_providers(&config).await;
    let models_dir = config.models.dir(&config.storage.data_dir);
    let mut providers = Vec::with_capacity(provider_configs.len());
    let mut provider_children = Vec::new();
    for provider_config in &provider_configs {
        let built =
            build_provider(provider_config, &models_dir).context("provider configuration")?;
        providers.push(ProviderSetup {
            provider: built.provider,
            policy: provider_config.policy(),
        });
        provider_children.extend(built.child);
    }
    let (cluster, store, inbox) = open_store(&config, node_id).await?;
    let reminders =
        Arc::new(Reminders::open(&config.storage.data_dir).context("storage.data_dir")?);
    let (canvas_store, canvas_disk, canvas_settings) =
        open_canvas_store(&config, cluster.as_ref()).await?;
    let canvas = Canvas::new(canvas_store, canvas_settings);
    let (models, model_children) = LocalModels::new(&config.models, &config.storage.data_dir);
    let mut models = models.with_chat_models(&provider_configs);
    if let Some(cluster) = &cluster {
        models.join_cluster(cluster).await?;
        models.share_chat_models(cluster, &mut providers).await?;
    }
    let memory = models
        .memories(&config.memory, &config.storage.data_dir, cluster.as_ref())
        .await?;
    let (memories, memory_disk) = memory.unzip();
    let models = Arc::new(models);
    let workflow_effects = Arc::new(crate::workflows::effects::NodeEffects::new(
        config.assistant.turn_timeout(),
    ));
    let prepared_workflows = crate::workflows::prepare(&config, cluster.as_ref()).await?;
    let workflows = prepared_workflows
        .as_ref()
        .map(|parts| parts.engine(&config, Arc::clone(&workflow_effects) as _));
    if let Some((claims, node)) = prepared_workflows
        .as_ref()
        .and_then(crate::workflows::Prepared::send_claims)
    {
        workflow_effects.claim_sends(claims, &node);
    }
    let workflow_disk = prepared_workflows
        .as_ref()
        .and_then(|parts| parts.disk.clone());
    let builtin_context = BuiltinContext {
        store: Arc::clone(&store),
        reminders: Arc::clone(&reminders),
        canvas: Some(Arc::new(CanvasSkill::new(canvas.clone()))),
        memories: memories.clone(),
        workflows: workflows.clone().map(|engine| {
            Arc::new(troupe_workflows::skill::WorkflowsSkill::new(engine))
                as Arc<dyn troupe_actors::skill::Skill>
        }),
    };
    let skills = build_skills(
        &effective_skills(
            config.skills.as_deref(),
            memories.is_some(),
            workflows.is_some(),
        ),
        &builtin_context,
    )?;
    // A cluster's sessions move between nodes: its pictures are in its object store.
    let uploads: Arc<dyn UploadStore> = match &cluster {
        Some(cluster) => cluster
            .uploads(config.uploads.max_image_bytes)
            .await
            .context("the cluster's uploads bucket")?,
        None => LocalUploads::new(&config.storage.data_dir, config.uploads.max_image_bytes),
    };
    let usage = open_usage(&config, cluster.as_ref()).await?;
    let setup = NodeSetup {
        session: SessionConfig {
            system_prompt: config.assistant.system_prompt.as_str().into(),
            history_window: config.assistant.history_window,
            idle_passivate: config.assistant.idle_passivate(),
            provider: config.assistant.provider.clone(),
            turn_timeout: config.assistant.turn_timeout(),
            tools: config.tools.policy(),
        },
        store,
        providers,
        skills,
        budget: RestartBudget::default(),
        backlog: config.assistant.backlog(),
        turn_context: Some(Arc::new(BoardContext::new(canvas.clone()))),
        inbox,
        uploads: Some(uploads),
        memories: memories.clone(),
        usage: Some(Arc::clone(&usage.0)),
    };
    let settings = Arc::new(GatewaySettings {
        token: config.server.token.clone(),
        senders: config.server.sender_tokens()?,
        ops_token: config.server.ops_token.clone(),
        trace_url: config.telemetry.trace_url.clone(),
        allowed_origins: config.server.allowed_origins.clone(),
        allowed_hosts: config.server.allowed_hosts.clone(),
        limits: MessageLimits {
            max_payload_bytes: config.server.max_payload_bytes,
            max_images: config.uploads.max_images_per_message,
        },
        connections: config.server.connection_limits(open_files),
        timeouts: config.server.timeouts(),
        notice: notice.clone(),
        setup: first_run_setup(&config, &source, notice.is_some()),
    });
    let shutdown = CancellationToken::new();
    let connections = TaskTracker::new();
    let (stopped, mut server_stopped) = watch::channel(false);
    let listen = config.server.listen;
    let access_shutdown = shutdown.clone();
    let access_connections = connections.clone();
    let access_cluster = cluster.clone();
    let access_memories = memories.clone();
    let mut bridge_entries = build_bridges(&config.bridges)?;
    let voice = crate::voice::build(&config.voice, &models)?;
    bridge_entries.extend(voice.satellites);
    let voice_summary = Arc::new(voice.summary);
    let voice_children = voice.children;
    let voice_notes = voice.voice_notes;
    let voice_replies = voice.voice_replies;
    let web_voice = voice.web;
    let bridge_store = BridgeStore::open(&config.storage.data_dir).context("storage.data_dir")?;
    let stores: Arc<[Storage]> = [bridge_store.storage().clone(), reminders.storage().clone()]
        .into_iter()
        .chain(canvas_disk)
        .chain(memory_disk.flatten())
        .chain(usage.1)
        .chain(workflow_disk)
        .collect();
    let usage = usage.0;
    let limits = settings.limits;
    let webhook_body_bytes = config.server.max_webhook_bytes_in_flight;
    let dispatcher_slot = Arc::new(OnceLock::new());
    let clients = Clients::default();
    if let Some(cluster) = &cluster {
        clients.join_cluster(cluster.client().clone(), shutdown.clone());
    }
    let access_clients = clients.clone();
    let dispatcher_out = Arc::clone(&dispatcher_slot);
    let access_workflows = workflows.clone();
    let (node, mut supervisor) = start_node(setup, move |node| {
        let ingress: Arc<dyn Ingress> = match &access_cluster {
            Some(cluster) => cluster.ingress(),
            None => Arc::new(node.clone()),
        };
        let ingress: Arc<dyn Ingress> = match &access_workflows {
            Some(workflows) => Arc::new(crate::workflows::watch::WatchingIngress {
                inner: ingress,
                workflows: workflows.clone(),
            }),
            None => ingress,
        };
        let dispatcher = Dispatcher::new(
            Arc::clone(&ingress),
            bridge_store,
            limits,
            access_shutdown.clone(),
        );
        if let Some(reader) = voice_notes {
            dispatcher.hear_voice_notes_with(reader);
        }
        if let Some(writer) = voice_replies {
            dispatcher.speak_replies_with(writer);
        }
        let mut children = Vec::with_capacity(1 + bridge_entries.len());
        for entry in bridge_entries {
            let context = dispatcher.register(&entry.name, Arc::clone(&entry.bridge), entry.policy);
            dispatcher.set_voice_replies(&entry.name, entry.voice_replies);
            match &access_cluster {
                // One receiving loop per bridge in the whole cluster (one Telegram poller,
                // one Discord gateway session): a singleton that moves when its node dies.
                Some(cluster) => {
                    context.status.standby();
                    cluster.run_singleton(
                        format!("bridge-{}", entry.name),
                        bridge_singleton(&entry.name, dispatcher.clone()),
                    );
                }
                None => children.push(bridge_spec(&entry.name, dispatcher.clone())),
            }
        }
        workflow_effects.attach(crate::workflows::effects::EffectParts {
            ingress: Arc::clone(&ingress),
            skills: Arc::clone(node.skills()),
            dispatcher: dispatcher.clone(),
            clients: access_clients.clone(),
        });
        if let Some(workflows) = &access_workflows {
            children.push(workflows.child_spec());
        }
        let state = AppState {
            node,
            ingress,
            cluster: access_cluster,
            settings,
            metrics,
            shutdown: access_shutdown,
            connections: access_connections,
            bridges: dispatcher.clone(),
            clients: access_clients,
            auth_failures: Arc::default(),
            webhook_bodies: Arc::new(BodyBudget::new(webhook_body_bytes)),
            stores,
            canvas: canvas.clone(),
            room_tokens: troupe_canvas::RoomTokens::default(),
            models,
            memories: access_memories,
            voice: voice_summary,
            web_voice,
            log_level,
            usage,
            workflows: access_workflows,
        };
        let _ = dispatcher_out.set(dispatcher);
        children.extend(model_children);
        children.extend(voice_children);
        children.extend(provider_children);
        children.insert(0, canvas.child_spec());
        children.insert(1, access_spec(listen, state, stopped));
        children
    })
    .await
    .context("starting the node")?;
    // What was accepted before a restart and not answered yet is answered first.
    node.answer_waiting()
        .await
        .context("reading the inbox of accepted messages")?;
    let dispatcher = dispatcher_slot
        .get()
        .cloned()
        .context("the node started without its bridges")?;
    for identity in &config.identities {
        dispatcher
            .store()
            .link(Some(&identity.person), &identity.members)
            .await
            .with_context(|| format!("linking the identities of {}", identity.person))?;
    }
    dispatcher
        .resume()
        .await
        .context("resuming the bridges' journal")?;
    // A web chat that connects may be the one a waiting reminder is for.
    let (mut arrived, woken) = (clients.arrivals(), Arc::clone(&reminders));
    tokio::spawn(async move {
        while arrived.changed().await.is_ok() {
            woken.wake();
        }
    });
    tokio::spawn(Arc::clone(&reminders).run(
        Arc::new(crate::reminders::ReminderDelivery::new(
            dispatcher.clone(),
            clients.clone(),
        )),
        shutdown.clone().cancelled_owned(),
    ));
    if let Some(cluster) = &cluster {
        cluster
            .serve(node.clone())
            .await
            .context("serving the cluster's shards")?;
    }
    if let (Some(workflows), Some(prepared)) = (&workflows, &prepared_workflows) {
        crate::workflows::run_schedules(&config, prepared, workflows, cluster.as_ref(), &shutdown);
    }
    let memory_watch = crate::memory::spawn_watch(crate::memory::SAMPLE_PERIOD);
    announce(&config, &source, &node, notice.as_deref(), process_start);
    tokio::task::spawn_blocking(troupe_inference::warm_up);
    tokio::select! {
        signal = shutdown_signal() => tracing::info!(%signal, "shutting down"),
        ended = &mut supervisor => {
            anyhow::bail!("the node supervisor stopped unexpectedly ({ended:?}); see the errors above");
        }
    }
    shutdown.cancel();
    memory_watch.abort();
    connections.close();
    let handed_over = async {
        if let Some(cluster) = &cluster {
            cluster.drain(SHUTDOWN_GRACE).await;
        }
    };
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let _ = server_stopped.wait_for(|stopped| *stopped).await;
        connections.wait().await;
    });
    let bridges_done = dispatcher.close(SHUTDOWN_GRACE);
    let ((), drained, ()) = tokio::join!(handed_over, drained, bridges_done);
    if drained.is_err() {
        tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}");
    }
    if let Some(cluster) = &cluster {
        cluster.leave().await;
    }
    node.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), supervisor).await;
    tracing::info!("stopped");
    // Flushing waits for the collector: never on the async runtime's threads.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    Ok(())
}

/// The session store, and the inbox that keeps accepted messages until they are answered:
/// on one node, the embedded store is both; with `[cluster]`, the cluster's store after
/// joining it, and no inbox (the cluster's is its JetStream stream).
async fn open_store(
    config: &TroupeConfig,
    node_id: Option<String>,
) -> anyhow::Result<(
    Option<ClusterNode>,
    Arc<dyn SnapshotStore>,
    Option<Arc<dyn Inbox>>,
)> {
    let (Some(cluster_config), Some(node_id)) = (&config.cluster, node_id) else {
        let store = Arc::new(
            LocalSnapshotStore::open_with_cache(
                &config.storage.data_dir,
                config.storage.session_cache_mib * 1024 * 1024,
            )
            .context("storage.data_dir")?,
        );
        let inbox: Arc<dyn Inbox> = store.clone();
        return Ok((None, store, Some(inbox)));
    };
    let (cluster, store) = ClusterNode::join(cluster_config.clone(), node_id)
        .await
        .context("joining the cluster")?;
    Ok((Some(cluster), store, None))
}

/// The canvas's rooms: kept in the data dir on one node (whose disk is watched with the
/// other stores'), in the cluster's JetStream in a cluster, where an update must also fit
/// in one NATS message.
async fn open_canvas_store(
    config: &TroupeConfig,
    cluster: Option<&ClusterNode>,
) -> anyhow::Result<(SharedCanvasStore, Option<Storage>, RoomSettings)> {
    let mut settings = config.canvas.settings();
    let Some(cluster) = cluster else {
        let store = LocalCanvasStore::open(&config.storage.data_dir)
            .context("starting the canvas store's writer")?;
        let disk = store.storage().clone();
        return Ok((Arc::new(store), Some(disk), settings));
    };
    let (replicas, storage) = cluster.stream_placement();
    let store = JetStreamCanvasStore::open(
        cluster.client().clone(),
        cluster.node_id(),
        StreamSettings { replicas, storage },
    )
    .await
    .context("preparing the canvas in the cluster")?;
    let carried = store.max_update_bytes();
    if settings.limits.max_update_bytes > carried {
        tracing::warn!(
            configured = settings.limits.max_update_bytes,
            carried,
            "canvas.max_update_bytes is more than NATS carries in one message (its max_payload); larger updates are refused"
        );
        settings.limits.max_update_bytes = carried;
    }
    Ok((Arc::new(store), None, settings))
}

/// Token accounting: the usage ledger (`usage.redb` in the data dir on one node, whose
/// disk is watched with the other stores'; the cluster's stream in a cluster), read into
/// the book, priced and limited as configured.
async fn open_usage(
    config: &TroupeConfig,
    cluster: Option<&ClusterNode>,
) -> anyhow::Result<(Arc<UsageBook>, Option<Storage>)> {
    let (ledger, disk): (Arc<dyn UsageLedger>, _) = match cluster {
        Some(cluster) => {
            let ledger = cluster
                .usage_ledger()
                .await
                .context("preparing the cluster's usage stream")?;
            (Arc::new(ledger), None)
        }
        None => {
            let ledger = LocalUsageLedger::open(&config.storage.data_dir)
                .context("starting the usage ledger's writer")?;
            let disk = ledger.storage().clone();
            (Arc::new(ledger), Some(disk))
        }
    };
    let prices = crate::config::price_table(&config.prices)?;
    let budgets = config.budgets.budgets()?;
    let book = UsageBook::open(ledger, prices, budgets)
        .await
        .context("reading the usage ledger")?;
    Ok((Arc::new(book), disk))
}

/// The configured node id, else the one kept in the data dir, else a new one kept there so
/// that a restarted node is the same member.
fn resolve_node_id(cluster: &ClusterConfig, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(node_id) = &cluster.node_id {
        return Ok(node_id.clone());
    }
    let path = data_dir.join("node_id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let node_id = text.trim().to_owned();
        troupe_cluster::validate_node_id(&node_id)
            .with_context(|| format!("{} does not hold a node id", path.display()))?;
        return Ok(node_id);
    }
    let node_id = format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    std::fs::write(&path, format!("{node_id}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(node_id)
}

/// A bridge's receiving loop as a cluster singleton: it runs until the singleton moves
/// away (its token is cancelled), then shows `standby` here.
fn bridge_singleton(name: &str, dispatcher: Dispatcher) -> troupe_cluster::SingletonTask {
    let bridge_name = name.to_owned();
    Arc::new(move |token| {
        let registered = dispatcher.bridge(&bridge_name);
        Box::pin(async move {
            let Some((bridge, mut context)) = registered else {
                return;
            };
            context.shutdown = token;
            receive_forever(bridge, &context, Backoff::default()).await;
            context.status.standby();
        })
    })
}

/// The supervised actor of one bridge; a restart gets a fresh context.
fn bridge_spec(name: &str, dispatcher: Dispatcher) -> ChildSpec {
    let bridge_name = name.to_owned();
    ChildSpec {
        name: format!("bridge:{name}"),
        start: Arc::new(move |supervisor| {
            let registered = dispatcher.bridge(&bridge_name);
            Box::pin(async move {
                let (bridge, context) =
                    registered.ok_or("the bridge is not registered with the dispatcher")?;
                let args = BridgeArgs {
                    bridge,
                    context,
                    backoff: Backoff::default(),
                };
                let (actor, _) =
                    ractor::Actor::spawn_linked(None, BridgeActor, args, supervisor).await?;
                Ok(actor.get_cell())
            })
        }),
    }
}

fn access_spec(
    listen: std::net::SocketAddr,
    state: AppState,
    stopped: watch::Sender<bool>,
) -> ChildSpec {
    ChildSpec {
        name: "access".into(),
        start: Arc::new(move |supervisor| {
            let args = AccessArgs {
                listen,
                state: state.clone(),
                stopped: stopped.clone(),
            };
            Box::pin(async move {
                let (actor, _) =
                    ractor::Actor::spawn_linked(None, AccessLayer, args, supervisor).await?;
                Ok(actor.get_cell())
            })
        }),
    }
}

fn announce(
    config: &TroupeConfig,
    source: &ConfigSource,
    node: &NodeHandle,
    notice: Option<&str>,
    started: Instant,
) {
    let source = match source {
        ConfigSource::File(path) => path.display().to_string(),
        ConfigSource::Defaults => "built-in defaults".into(),
    };
    let provider = node
        .default_provider()
        .map(|info| format!("{} ({}, model {})", info.name, info.kind, info.model));
    tracing::info!(
        listen = %config.server.listen,
        data_dir = %config.storage.data_dir.display(),
        config = %source,
        provider = provider.as_deref().unwrap_or("none"),
        auth = if config.server.token.is_some() { "token" } else { "none (loopback only)" },
        ready_in_ms = started.elapsed().as_secs_f64() * 1000.0,
        "troupe is ready: open http://{}/",
        config.server.listen,
    );
    if let Some(notice) = notice {
        tracing::warn!("{notice}");
    }
}

async fn shutdown_signal() -> &'static str {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return "SIGINT";
                }
            };
        tokio::select! {
            _ = interrupt => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        "ctrl-c"
    }
}
