//! `NodeSupervisor`: the root of a node's supervision tree. It starts its children (the
//! session registry, one model worker per provider, the access layer…) from [`ChildSpec`]s
//! and restarts a failed child within a [`RestartBudget`]; a child that fails more often
//! than its budget allows fails the supervisor, which stops the node with an error rather
//! than limping on. Restarts and failures are counted in metrics.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use crate::metrics as metric_names;

/// Starts (or restarts) one child, linked to the supervisor cell it is given.
pub type StartChild = Arc<
    dyn Fn(ActorCell) -> Pin<Box<dyn Future<Output = Result<ActorCell, ActorProcessingErr>> + Send>>
        + Send
        + Sync,
>;

/// How to start one child of the node.
#[derive(Clone)]
pub struct ChildSpec {
    /// Stable name for logs and metrics (`registry`, `model:main`, `access`).
    pub name: String,
    pub start: StartChild,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ChildSpec")
            .field("name", &self.name)
            .finish()
    }
}

/// At most `max_restarts` restarts of one child within `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartBudget {
    pub max_restarts: usize,
    pub window: Duration,
}

impl Default for RestartBudget {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// Start-up arguments of the [`NodeSupervisor`].
#[derive(Debug)]
pub struct NodeSupervisorArgs {
    /// Started in order; later children may rely on earlier ones.
    pub children: Vec<ChildSpec>,
    pub budget: RestartBudget,
}

/// Messages of the [`NodeSupervisor`].
pub enum NodeSupervisorMsg {
    /// Restarts per child since start.
    RestartCounts {
        reply: RpcReplyPort<HashMap<String, u64>>,
    },
    /// Start one more child (children that need the running node, like the access layer).
    AddChild {
        spec: ChildSpec,
        reply: RpcReplyPort<Result<(), ChildStartFailed>>,
    },
}

/// A child added to a running node did not start.
#[derive(Debug, thiserror::Error)]
#[error("could not start {child}: {source}")]
pub struct ChildStartFailed {
    pub child: String,
    #[source]
    pub source: ractor::ActorProcessingErr,
}

struct Child {
    spec: ChildSpec,
    recent_restarts: VecDeque<Instant>,
    total_restarts: u64,
}

/// State of the [`NodeSupervisor`].
pub struct NodeSupervisorState {
    children: Vec<Child>,
    /// Which child index a running actor belongs to.
    running: HashMap<ActorId, usize>,
    budget: RestartBudget,
}

/// The actor.
#[derive(Debug, Default)]
pub struct NodeSupervisor;

impl Actor for NodeSupervisor {
    type Msg = NodeSupervisorMsg;
    type State = NodeSupervisorState;
    type Arguments = NodeSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: NodeSupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = NodeSupervisorState {
            children: Vec::new(),
            running: HashMap::new(),
            budget: args.budget,
        };
        for spec in args.children {
            state.add_child(spec, &myself).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: NodeSupervisorMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            NodeSupervisorMsg::RestartCounts { reply } => {
                let counts = state
                    .children
                    .iter()
                    .map(|child| (child.spec.name.clone(), child.total_restarts))
                    .collect();
                let _ = reply.send(counts);
            }
            NodeSupervisorMsg::AddChild { spec, reply } => {
                let _ = reply.send(state.add_child(spec, &myself).await);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(index) = state.running.remove(&cell.get_id()) else {
                    return Ok(());
                };
                let name = state.children[index].spec.name.clone();
                metrics::counter!(metric_names::ACTOR_FAILURES, "actor" => name.clone())
                    .increment(1);
                tracing::error!(child = %name, %error, "child failed");
                state.restart(index, &myself).await?;
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(index) = state.running.remove(&cell.get_id()) {
                    let name = &state.children[index].spec.name;
                    tracing::info!(child = %name, ?reason, "child stopped");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl NodeSupervisorState {
    async fn add_child(
        &mut self,
        spec: ChildSpec,
        myself: &ActorRef<NodeSupervisorMsg>,
    ) -> Result<(), ChildStartFailed> {
        let cell = (spec.start)(myself.get_cell())
            .await
            .map_err(|source| ChildStartFailed {
                child: spec.name.clone(),
                source,
            })?;
        self.running.insert(cell.get_id(), self.children.len());
        self.children.push(Child {
            spec,
            recent_restarts: VecDeque::new(),
            total_restarts: 0,
        });
        Ok(())
    }

    async fn restart(
        &mut self,
        index: usize,
        myself: &ActorRef<NodeSupervisorMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let budget = self.budget;
        let child = &mut self.children[index];
        let now = Instant::now();
        while child
            .recent_restarts
            .front()
            .is_some_and(|at| now.duration_since(*at) > budget.window)
        {
            child.recent_restarts.pop_front();
        }
        if child.recent_restarts.len() >= budget.max_restarts {
            return Err(format!(
                "{} failed {} times within {:?}; giving up",
                child.spec.name, budget.max_restarts, budget.window
            )
            .into());
        }
        child.recent_restarts.push_back(now);
        child.total_restarts += 1;
        metrics::counter!(metric_names::ACTOR_RESTARTS, "actor" => child.spec.name.clone())
            .increment(1);
        tracing::warn!(child = %child.spec.name, restarts = child.total_restarts, "restarting child");
        let cell = (child.spec.start)(myself.get_cell()).await?;
        self.running.insert(cell.get_id(), index);
        Ok(())
    }
}
