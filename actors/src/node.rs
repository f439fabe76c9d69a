//! Assembles one node's supervision tree and offers the [`NodeHandle`] that access paths
//! use to talk to it, without knowing about actors.
//!
//! ```text
//! NodeSupervisor
//! ├── model:<name>   one ModelWorker per configured provider
//! ├── skill:<name>   one SkillActor per configured skill
//! ├── registry       SessionRegistry → one Session per (platform, conversation)
//! └── <extra>        children supplied by the binary (the access layer)
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tokio::task::JoinHandle;

use futures_util::FutureExt;

use crate::backlog::{Backlog, BacklogLimits, BacklogTicket};
use crate::ids::SessionKey;
use crate::inbox::Inbox;
use crate::ingress::Submission;
use crate::message::InboundMessage;
use crate::model_worker::{ModelDirectory, ModelWorker, ModelWorkerArgs, ProviderPolicy};
use crate::provider::{ChatRequest, Completion, DeltaSink, ModelProvider, ProviderInfo};
use crate::registry::{RegistryMsg, RegistryStats, SessionFilter, SessionRegistry};
use crate::session::{SessionConfig, SessionContext, SessionView};
use crate::skill::{SkillActor, SkillActorArgs, SkillDirectory, SkillSetup};
use crate::snapshot::{SnapshotStore, StoreError};
use crate::stop::{RunningTurns, StopOutcome};
use crate::supervisor::{
    ChildSpec, NodeSupervisor, NodeSupervisorArgs, NodeSupervisorMsg, RestartBudget,
};
use crate::turn::{ErrorCode, TurnError, TurnEventReceiver, turn_channel};
use crate::turn_context::TurnContext;
use crate::uploads::UploadStore;

/// Longest wait for the registry to answer a query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A provider and how to call it.
pub struct ProviderSetup {
    pub provider: Arc<dyn ModelProvider>,
    pub policy: ProviderPolicy,
}

/// Everything a node is built from.
pub struct NodeSetup {
    pub session: SessionConfig,
    pub store: Arc<dyn SnapshotStore>,
    pub providers: Vec<ProviderSetup>,
    /// The skills whose tools models may call.
    pub skills: Vec<SkillSetup>,
    pub budget: RestartBudget,
    /// How many messages may wait, per session and in all.
    pub backlog: BacklogLimits,
    /// What turns see besides their history (the canvas's board), if anything.
    pub turn_context: Option<Arc<dyn TurnContext>>,
    /// Where a single node keeps accepted messages until they are answered, so that an
    /// `ack` means stored ([`crate::inbox`]); `None` in a cluster, whose inbox is JetStream.
    pub inbox: Option<Arc<dyn Inbox>>,
    /// Where pictures uploaded into conversations are kept; `None` where they are not
    /// taken (a cluster, for now).
    pub uploads: Option<Arc<dyn UploadStore>>,
    /// Long-term memory: recalled before each turn, kept after it; `None`: none.
    pub memories: Option<Arc<crate::memory::Memories>>,
    /// Token accounting and budgets; `None`: nothing is counted or limited.
    pub usage: Option<Arc<crate::usage::UsageBook>>,
}

/// Where the current registry lives; replaced when the supervisor restarts it.
#[derive(Default)]
struct RegistrySlot {
    registry: RwLock<Option<ActorRef<RegistryMsg>>>,
}

impl RegistrySlot {
    fn get(&self) -> Option<ActorRef<RegistryMsg>> {
        self.registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, registry: ActorRef<RegistryMsg>) {
        *self
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(registry);
    }
}

/// A running node, as access paths see it. Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    registry: Arc<RegistrySlot>,
    supervisor: ActorRef<NodeSupervisorMsg>,
    store: Arc<dyn SnapshotStore>,
    providers: Arc<Vec<ProviderInfo>>,
    default_provider: String,
    /// Set by [`NodeHandle::shutdown`]: from then on nothing new is accepted.
    shutting_down: Arc<AtomicBool>,
    models: Arc<ModelDirectory>,
    skills: Arc<SkillDirectory>,
    turn_timeout: Duration,
    /// Messages admitted and not yet handled.
    backlog: Arc<Backlog>,
    inbox: Option<Arc<dyn Inbox>>,
    /// The turns this node's sessions run, for the person to stop.
    running: Arc<RunningTurns>,
    uploads: Option<Arc<dyn UploadStore>>,
    usage: Option<Arc<crate::usage::UsageBook>>,
    failures: Arc<crate::failures::FailedTurns>,
}

/// Starts a node. `extra_children` (e.g. the access layer) start last, under the same
/// supervisor, built from the handle of the running node.
pub async fn start_node(
    setup: NodeSetup,
    extra_children: impl FnOnce(NodeHandle) -> Vec<ChildSpec>,
) -> Result<(NodeHandle, JoinHandle<()>), ractor::SpawnErr> {
    let models = Arc::new(ModelDirectory::default());
    let registry_slot = Arc::new(RegistrySlot::default());
    let provider_infos = setup
        .providers
        .iter()
        .map(|entry| entry.provider.info().clone())
        .collect();
    let mut children: Vec<ChildSpec> = setup
        .providers
        .into_iter()
        .map(|entry| model_worker_spec(entry, &models))
        .collect();
    let skills = Arc::new(SkillDirectory::default());
    children.extend(
        setup
            .skills
            .into_iter()
            .map(|entry| skill_actor_spec(entry, &skills)),
    );
    let context = SessionContext {
        config: Arc::new(setup.session.clone()),
        store: Arc::clone(&setup.store),
        models: Arc::clone(&models),
        skills: Arc::clone(&skills),
        turn_context: setup.turn_context.clone(),
        inbox: setup.inbox.clone(),
        running: Arc::default(),
        uploads: setup.uploads.clone(),
        memories: setup.memories.clone(),
        usage: setup.usage.clone(),
        failures: Arc::default(),
        stages: Arc::new(crate::session::TurnStages::registered()),
    };
    let running = Arc::clone(&context.running);
    let failures = Arc::clone(&context.failures);
    children.push(registry_spec(context, &registry_slot));
    let args = NodeSupervisorArgs {
        children,
        budget: setup.budget,
    };
    let (supervisor, join) = Actor::spawn(None, NodeSupervisor, args).await?;
    let handle = NodeHandle {
        registry: registry_slot,
        supervisor,
        store: setup.store,
        providers: Arc::new(provider_infos),
        default_provider: setup.session.provider,
        shutting_down: Arc::default(),
        models,
        skills,
        turn_timeout: setup.session.turn_timeout,
        backlog: Backlog::new(setup.backlog),
        inbox: setup.inbox,
        running,
        uploads: setup.uploads,
        usage: setup.usage,
        failures,
    };
    for spec in extra_children(handle.clone()) {
        handle.supervisor_add_child(spec).await?;
    }
    Ok((handle, join))
}

fn model_worker_spec(entry: ProviderSetup, models: &Arc<ModelDirectory>) -> ChildSpec {
    let name = entry.provider.info().name.clone();
    let models = Arc::clone(models);
    let provider = entry.provider;
    let policy = entry.policy;
    ChildSpec {
        name: format!("model:{name}"),
        start: Arc::new(move |supervisor| {
            let args = ModelWorkerArgs {
                provider: Arc::clone(&provider),
                policy: policy.clone(),
                directory: Arc::clone(&models),
            };
            let models = Arc::clone(&models);
            let provider = Arc::clone(&provider);
            Box::pin(async move {
                let (worker, _) = Actor::spawn_linked(None, ModelWorker, args, supervisor).await?;
                models.register(provider.info(), worker.clone());
                Ok(worker.get_cell())
            })
        }),
    }
}

fn skill_actor_spec(entry: SkillSetup, skills: &Arc<SkillDirectory>) -> ChildSpec {
    skills.declare(&entry.name, entry.skill.kind(), entry.grant, entry.timeout);
    let skills = Arc::clone(skills);
    let (name, skill) = (entry.name, entry.skill);
    ChildSpec {
        name: format!("skill:{name}"),
        start: Arc::new(move |supervisor| {
            let args = SkillActorArgs {
                name: name.clone(),
                skill: Arc::clone(&skill),
                directory: Arc::clone(&skills),
            };
            Box::pin(async move {
                let (actor, _) = Actor::spawn_linked(None, SkillActor, args, supervisor).await?;
                Ok(actor.get_cell())
            })
        }),
    }
}

fn registry_spec(context: SessionContext, slot: &Arc<RegistrySlot>) -> ChildSpec {
    let slot = Arc::clone(slot);
    ChildSpec {
        name: "registry".into(),
        start: Arc::new(move |supervisor| {
            let context = context.clone();
            let slot = Arc::clone(&slot);
            Box::pin(async move {
                let (registry, _) =
                    Actor::spawn_linked(None, SessionRegistry, context, supervisor).await?;
                slot.set(registry.clone());
                Ok(registry.get_cell())
            })
        }),
    }
}

/// A message the inbox could not keep is not accepted.
fn not_stored(error: &StoreError) -> TurnError {
    TurnError::new(
        ErrorCode::StorageError,
        format!("the message could not be stored: {error}"),
    )
}

fn unavailable() -> TurnError {
    TurnError::new(
        ErrorCode::ShuttingDown,
        "the node is not accepting messages",
    )
}

impl NodeHandle {
    async fn supervisor_add_child(&self, spec: ChildSpec) -> Result<(), ractor::SpawnErr> {
        let answer = self
            .supervisor
            .call(
                |reply| NodeSupervisorMsg::AddChild { spec, reply },
                Some(QUERY_TIMEOUT),
            )
            .await;
        match answer {
            Ok(CallResult::Success(Ok(()))) => Ok(()),
            Ok(CallResult::Success(Err(failed))) => {
                Err(ractor::SpawnErr::StartupFailed(Box::new(failed)))
            }
            _ => Err(ractor::SpawnErr::StartupFailed(
                "the node supervisor did not answer".into(),
            )),
        }
    }

    fn registry(&self) -> Result<ActorRef<RegistryMsg>, TurnError> {
        if self.is_shutting_down() {
            return Err(unavailable());
        }
        self.registry.get().ok_or_else(unavailable)
    }

    /// Hands a message to its session; the turn's events arrive on the returned channel,
    /// which always ends with a final event or closes (the session died). The turn's spans
    /// are children of the caller's current span, so one trace covers the whole turn.
    /// A session that holds as many waiting messages as it may, or a node that does, is
    /// `busy`: the message is refused at once.
    pub fn route(&self, message: InboundMessage) -> Result<TurnEventReceiver, TurnError> {
        let ticket = self.backlog.admit(&message.session_key())?;
        self.deliver(message, ticket)
    }

    /// Like [`NodeHandle::route`], and keeps the message in the node's inbox (when it has
    /// one) until it is answered: the submission is accepted once it is stored there.
    pub fn submit(&self, message: InboundMessage) -> Result<Submission, TurnError> {
        let ticket = self.backlog.admit(&message.session_key())?;
        let Some(inbox) = &self.inbox else {
            return self.deliver(message, ticket).map(Submission::accepted);
        };
        // Put before delivering: the put is queued ahead of the snapshot that answers it.
        let stored = inbox.put(&message);
        let events = self.deliver(message, ticket)?;
        Ok(Submission {
            accepted: stored
                .map(|stored| stored.map_err(|error| not_stored(&error)))
                .boxed(),
            events,
        })
    }

    fn deliver(
        &self,
        message: InboundMessage,
        ticket: BacklogTicket,
    ) -> Result<TurnEventReceiver, TurnError> {
        let registry = self.registry()?;
        let (events, receiver) = turn_channel();
        registry
            .cast(RegistryMsg::Route {
                message: Box::new(message),
                events,
                span: tracing::Span::current(),
                ticket,
            })
            .map_err(|_| unavailable())?;
        Ok(receiver)
    }

    /// Answers every message the inbox kept from before the node started (accepted, and
    /// not answered when the node stopped), in the order they arrived; nobody waits for
    /// these answers, they go to the histories. Returns how many there were.
    pub async fn answer_waiting(&self) -> Result<usize, StoreError> {
        let Some(inbox) = &self.inbox else {
            return Ok(0);
        };
        let waiting = inbox.waiting().await?;
        let count = waiting.len();
        for message in waiting {
            // Admitted whatever the limits: these were accepted before.
            let ticket = self.backlog.admit_accepted(&message.session_key());
            if let Err(error) = self.deliver(message, ticket) {
                tracing::warn!(%error, "the node stopped while answering its inbox");
                break;
            }
        }
        if count > 0 {
            tracing::info!(count, "answering the messages accepted before the restart");
        }
        Ok(count)
    }

    /// Messages admitted and not yet handled, node-wide.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// A session's history; `Ok(None)` when it does not exist.
    pub async fn history(&self, key: SessionKey) -> Result<Option<SessionView>, TurnError> {
        let registry = self.registry()?;
        let answer = registry
            .call(
                |reply| RegistryMsg::GetHistory { key, reply },
                Some(QUERY_TIMEOUT),
            )
            .await;
        match answer {
            Ok(CallResult::Success(view)) => Ok(view),
            _ => Err(TurnError::new(
                ErrorCode::SessionFailed,
                "the session did not answer",
            )),
        }
    }

    /// Stops the turn of `message_id` in `key`'s session, if this node runs it now. The
    /// turn's own events say how it ended.
    pub fn stop(&self, key: &SessionKey, message_id: &str) -> StopOutcome {
        self.running.stop(key, message_id)
    }

    /// Where this node keeps uploaded pictures, if it takes them.
    pub fn uploads(&self) -> Option<&Arc<dyn UploadStore>> {
        self.uploads.as_ref()
    }

    /// The turns running now (for tests and metrics).
    pub fn running_turns(&self) -> usize {
        self.running.len()
    }

    /// Resets a session; answers whether there was anything to reset.
    pub async fn reset(&self, key: SessionKey) -> Result<bool, TurnError> {
        let registry = self.registry()?;
        let answer = registry
            .call(
                |reply| RegistryMsg::Reset { key, reply },
                Some(QUERY_TIMEOUT),
            )
            .await;
        match answer {
            Ok(CallResult::Success(result)) => result,
            _ => Err(TurnError::new(
                ErrorCode::SessionFailed,
                "the session did not answer",
            )),
        }
    }

    pub async fn stats(&self) -> Result<RegistryStats, TurnError> {
        let registry = self.registry()?;
        match registry
            .call(|reply| RegistryMsg::Stats { reply }, Some(QUERY_TIMEOUT))
            .await
        {
            Ok(CallResult::Success(stats)) => Ok(stats),
            _ => Err(unavailable()),
        }
    }

    pub async fn active_sessions(&self) -> Result<Vec<SessionKey>, TurnError> {
        let registry = self.registry()?;
        match registry
            .call(
                |reply| RegistryMsg::ListActive { reply },
                Some(QUERY_TIMEOUT),
            )
            .await
        {
            Ok(CallResult::Success(keys)) => Ok(keys),
            _ => Err(unavailable()),
        }
    }

    /// Stops the running sessions `select` picks: with `drain`, once they have handled what
    /// they hold; without, after their current message. Answers how many there were. Their
    /// next message starts them from their snapshot.
    pub async fn evict(&self, select: SessionFilter, drain: bool) -> Result<usize, TurnError> {
        let registry = self.registry.get().ok_or_else(unavailable)?;
        match registry
            .call(
                |reply| RegistryMsg::Evict {
                    select,
                    drain,
                    reply,
                },
                Some(Duration::from_secs(60)),
            )
            .await
        {
            Ok(CallResult::Success(count)) => Ok(count),
            _ => Err(unavailable()),
        }
    }

    /// Restarts per supervised child since the node started.
    pub async fn restart_counts(&self) -> HashMap<String, u64> {
        let answer = self
            .supervisor
            .call(
                |reply| NodeSupervisorMsg::RestartCounts { reply },
                Some(QUERY_TIMEOUT),
            )
            .await;
        match answer {
            Ok(CallResult::Success(counts)) => counts,
            _ => HashMap::new(),
        }
    }

    /// One completion outside any session (a stateless request that brings its own
    /// history), through the default provider's model worker and its policy, for
    /// `requester` (`platform:sender`: whom the provider's slots are shared between, and
    /// whose usage and budget it counts against).
    pub async fn complete(
        &self,
        request: ChatRequest,
        deltas: DeltaSink,
        requester: Arc<str>,
    ) -> Result<Completion, TurnError> {
        if self.is_shutting_down() {
            return Err(unavailable());
        }
        if let Some(book) = &self.usage {
            book.admit(&requester, crate::message::unix_now())
                .map_err(|exceeded| {
                    TurnError::new(ErrorCode::BudgetExceeded, exceeded.to_string())
                })?;
        }
        let served = self
            .models
            .complete(
                &self.default_provider,
                request,
                deltas,
                self.turn_timeout,
                Arc::clone(&requester),
            )
            .await?;
        if let Some(book) = &self.usage {
            book.record_call(&served, &requester);
        }
        Ok(served.completion)
    }

    /// The last turns that failed on this node, newest first.
    pub fn failed_turns(&self) -> Vec<crate::failures::FailedTurn> {
        self.failures.newest_first()
    }

    /// Whether [`NodeHandle::shutdown`] has begun (`/readyz` turns unready).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// The snapshot store (for listing passivated sessions).
    /// The node's skills (for `GET /api/v1/skills` and the reminders scheduler).
    pub fn skills(&self) -> &Arc<SkillDirectory> {
        &self.skills
    }

    pub fn store(&self) -> &Arc<dyn SnapshotStore> {
        &self.store
    }

    /// Configured providers.
    pub fn providers(&self) -> &[ProviderInfo] {
        &self.providers
    }

    /// The provider sessions ask.
    pub fn default_provider(&self) -> Option<&ProviderInfo> {
        self.providers
            .iter()
            .find(|info| info.name == self.default_provider)
    }

    /// Graceful shutdown of the session layer: refuse new messages, let sessions finish
    /// their queued turns (each saves its snapshot), then stop the supervision tree.
    pub async fn shutdown(&self) {
        let registry = self.registry();
        self.shutting_down.store(true, Ordering::Release);
        if let Ok(registry) = registry {
            let drained = registry
                .call(
                    |reply| RegistryMsg::Drain { reply },
                    Some(Duration::from_secs(60)),
                )
                .await;
            if !matches!(drained, Ok(CallResult::Success(()))) {
                tracing::warn!("sessions did not drain in time");
            }
        }
        self.supervisor.stop(Some("shutdown".into()));
    }
}
