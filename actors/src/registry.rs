//! `SessionRegistry`: the supervisor of all [`Session`] actors on a node.
//!
//! Every inbound message passes through it: it finds the session for the message's
//! (platform, conversation), starting it (from its snapshot) when it is not running, and
//! forwards the message. Because it is the only sender of inbound messages, it can passivate
//! an idle session safely: only when the session has handled everything routed to it.
//! A session that fails is counted and simply restarted from its snapshot by the next
//! message for it.

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::Serialize;

use crate::backlog::BacklogTicket;
use crate::ids::SessionKey;
use crate::message::InboundMessage;
use crate::metrics as metric_names;
use crate::session::{Session, SessionArgs, SessionContext, SessionMsg, SessionView};
use crate::turn::{ErrorCode, TurnError, TurnEvent, TurnEvents};

/// How long a graceful drain waits for sessions to finish what they hold.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages of the [`SessionRegistry`].
pub enum RegistryMsg {
    /// Deliver an inbound message to its session.
    Route {
        /// Boxed as the session takes it: the message is moved, never copied, on its way.
        message: Box<InboundMessage>,
        events: TurnEvents,
        /// The span the message arrived under (the turn's trace continues from it).
        span: tracing::Span,
        /// The message's place in the backlog, held until its session handled it.
        ticket: BacklogTicket,
    },
    /// A session's history (`None`: no such session).
    GetHistory {
        key: SessionKey,
        reply: RpcReplyPort<Option<SessionView>>,
    },
    /// Reset a session (the sessions API's DELETE).
    Reset {
        key: SessionKey,
        reply: RpcReplyPort<Result<bool, TurnError>>,
    },
    /// Sent by an idle session with how many messages it has handled.
    SessionIdle { key: SessionKey, handled: u64 },
    /// Counts for `/metrics` and `/readyz`.
    Stats { reply: RpcReplyPort<RegistryStats> },
    /// The keys of running sessions, in order.
    ListActive {
        reply: RpcReplyPort<Vec<SessionKey>>,
    },
    /// Graceful shutdown: refuse new messages, let every session finish, stop them all.
    Drain { reply: RpcReplyPort<()> },
    /// Stop the sessions `select`ed: a cluster node does this for the sessions of a shard it
    /// hands over (`drain`: each first finishes what it holds and saves) or may no longer
    /// own (not `drain`: stop after the current message; what was queued is dropped, and
    /// the cluster delivers it again to the owner). A later message for one of them starts
    /// it again from its snapshot.
    Evict {
        select: SessionFilter,
        drain: bool,
        reply: RpcReplyPort<usize>,
    },
}

/// Picks sessions by key.
pub type SessionFilter = Box<dyn Fn(&SessionKey) -> bool + Send>;

/// Counts the registry reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RegistryStats {
    pub active_sessions: u64,
    pub session_failures: u64,
}

struct LiveSession {
    actor: ActorRef<SessionMsg>,
    /// Inbound messages routed to it; compared with what it reports as handled.
    routed: u64,
}

/// State of the [`SessionRegistry`].
pub struct RegistryState {
    context: SessionContext,
    sessions: HashMap<SessionKey, LiveSession>,
    /// Reverse index for supervision events.
    keys_by_actor: HashMap<ActorId, SessionKey>,
    session_failures: u64,
    draining: bool,
}

/// The actor.
#[derive(Debug, Default)]
pub struct SessionRegistry;

impl Actor for SessionRegistry {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = SessionContext;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        context: SessionContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RegistryState {
            context,
            sessions: HashMap::new(),
            keys_by_actor: HashMap::new(),
            session_failures: 0,
            draining: false,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Sessions must never outlive their registry: a new registry would start twins.
        for session in state.sessions.values() {
            session.actor.stop(Some("registry stopped".into()));
        }
        metrics::gauge!(metric_names::SESSIONS_ACTIVE).set(0.0);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: RegistryMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RegistryMsg::Route {
                message,
                events,
                span,
                ticket,
            } => state.route(&myself, message, events, span, ticket).await,
            RegistryMsg::GetHistory { key, reply } => match state.session(&myself, &key).await {
                Ok(session) => {
                    let _ = session.cast(SessionMsg::GetHistory { reply });
                }
                Err(_) => {
                    let _ = reply.send(None);
                }
            },
            RegistryMsg::Reset { key, reply } => match state.session(&myself, &key).await {
                Ok(session) => {
                    let _ = session.cast(SessionMsg::Reset { reply });
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            },
            RegistryMsg::SessionIdle { key, handled } => state.passivate_if_idle(&key, handled),
            RegistryMsg::Stats { reply } => {
                let _ = reply.send(RegistryStats {
                    active_sessions: state.sessions.len() as u64,
                    session_failures: state.session_failures,
                });
            }
            RegistryMsg::ListActive { reply } => {
                let mut keys: Vec<SessionKey> = state.sessions.keys().cloned().collect();
                keys.sort();
                let _ = reply.send(keys);
            }
            RegistryMsg::Drain { reply } => state.drain(reply),
            RegistryMsg::Evict {
                select,
                drain,
                reply,
            } => state.evict(&select, drain, reply),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(key) = state.forget(cell.get_id()) {
                    state.session_failures += 1;
                    metrics::counter!(metric_names::ACTOR_FAILURES, "actor" => "session")
                        .increment(1);
                    metrics::counter!(metric_names::ACTOR_RESTARTS, "actor" => "session")
                        .increment(1);
                    tracing::error!(%key, %error, "session failed; it restarts from its snapshot on its next message");
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.forget(cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

impl RegistryState {
    /// The running session for `key`, started if needed.
    async fn session(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        key: &SessionKey,
    ) -> Result<ActorRef<SessionMsg>, TurnError> {
        if self.draining {
            return Err(TurnError::new(
                ErrorCode::ShuttingDown,
                "the node is shutting down",
            ));
        }
        if let Some(live) = self.sessions.get(key) {
            return Ok(live.actor.clone());
        }
        let args = SessionArgs {
            key: key.clone(),
            context: self.context.clone(),
            registry: myself.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, Session, args, myself.get_cell())
            .await
            .map_err(|error| {
                TurnError::new(
                    ErrorCode::SessionFailed,
                    format!("could not start the session: {error}"),
                )
            })?;
        metrics::counter!(metric_names::SESSION_ACTIVATIONS).increment(1);
        self.keys_by_actor.insert(actor.get_id(), key.clone());
        self.sessions.insert(
            key.clone(),
            LiveSession {
                actor: actor.clone(),
                routed: 0,
            },
        );
        self.publish_gauges();
        Ok(actor)
    }

    async fn route(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        message: Box<InboundMessage>,
        events: TurnEvents,
        span: tracing::Span,
        ticket: BacklogTicket,
    ) {
        let key = message.session_key();
        let in_reply_to = message.id().to_owned();
        let session = match self.session(myself, &key).await {
            Ok(session) => session,
            Err(error) => {
                let _ = events.send(TurnEvent::Failed { in_reply_to, error });
                return;
            }
        };
        metrics::counter!(metric_names::MESSAGES_IN).increment(1);
        if let Some(live) = self.sessions.get_mut(&key) {
            live.routed += 1;
        }
        if session
            .cast(SessionMsg::HandleInbound {
                message,
                events: events.clone(),
                span,
                ticket,
            })
            .is_err()
        {
            let error = TurnError::new(ErrorCode::SessionFailed, "the session stopped; send again");
            let _ = events.send(TurnEvent::Failed { in_reply_to, error });
        }
    }

    fn passivate_if_idle(&mut self, key: &SessionKey, handled: u64) {
        let Some(live) = self.sessions.get(key) else {
            return;
        };
        if live.routed != handled {
            return; // a message is on its way to it: not idle after all
        }
        let Some(live) = self.sessions.remove(key) else {
            return;
        };
        self.keys_by_actor.remove(&live.actor.get_id());
        live.actor.stop(Some("passivated".into()));
        metrics::counter!(metric_names::SESSION_PASSIVATIONS).increment(1);
        self.publish_gauges();
        tracing::debug!(%key, "session passivated");
    }

    fn forget(&mut self, actor: ActorId) -> Option<SessionKey> {
        let key = self.keys_by_actor.remove(&actor)?;
        self.sessions.remove(&key);
        self.publish_gauges();
        Some(key)
    }

    fn publish_gauges(&self) {
        let active = self.sessions.len() as f64;
        let stored = self.context.store.count() as f64;
        metrics::gauge!(metric_names::SESSIONS_ACTIVE).set(active);
        metrics::gauge!(metric_names::SESSIONS_PASSIVATED).set((stored - active).max(0.0));
    }

    fn evict(&mut self, select: &SessionFilter, drain: bool, reply: RpcReplyPort<usize>) {
        let keys: Vec<SessionKey> = self
            .sessions
            .keys()
            .filter(|key| select(key))
            .cloned()
            .collect();
        let mut evicted = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(live) = self.sessions.remove(&key) {
                self.keys_by_actor.remove(&live.actor.get_id());
                evicted.push(live.actor);
            }
        }
        self.publish_gauges();
        if !drain {
            for session in &evicted {
                session.stop(Some("evicted".into()));
            }
            let _ = reply.send(evicted.len());
            return;
        }
        tokio::spawn(async move {
            let count = evicted.len();
            let drains = evicted
                .iter()
                .map(|session| session.drain_and_wait(Some(DRAIN_TIMEOUT)));
            futures_util::future::join_all(drains).await;
            let _ = reply.send(count);
        });
    }

    fn drain(&mut self, reply: RpcReplyPort<()>) {
        self.draining = true;
        let sessions: Vec<ActorRef<SessionMsg>> = self
            .sessions
            .values()
            .map(|live| live.actor.clone())
            .collect();
        tokio::spawn(async move {
            let drains = sessions
                .iter()
                .map(|session| session.drain_and_wait(Some(DRAIN_TIMEOUT)));
            futures_util::future::join_all(drains).await;
            let _ = reply.send(());
        });
    }
}
