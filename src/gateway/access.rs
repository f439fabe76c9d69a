//! `AccessLayer`: the supervised actor that owns the listening socket and runs the HTTP
//! server. If the server stops with an error, the actor fails and the node supervisor
//! starts a new one (which binds again); on shutdown it finishes in-flight requests.

use std::net::SocketAddr;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;

use super::admission::ConnectionGate;
use super::{AppState, router, server};

/// Messages of the [`AccessLayer`].
pub(crate) enum AccessMsg {
    /// The server task ended.
    ServerExited,
}

/// Start-up arguments.
pub(crate) struct AccessArgs {
    pub(crate) listen: SocketAddr,
    pub(crate) state: AppState,
    /// Set to `true` once the server has stopped after a shutdown.
    pub(crate) stopped: watch::Sender<bool>,
}

pub(crate) struct AccessState {
    listener: Option<tokio::net::TcpListener>,
    bound: SocketAddr,
    state: AppState,
    stopped: watch::Sender<bool>,
}

/// The actor.
pub(crate) struct AccessLayer;

impl Actor for AccessLayer {
    type Msg = AccessMsg;
    type State = AccessState;
    type Arguments = AccessArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: AccessArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
        // The bound address, not the configured one: with port 0 the system picks it.
        let bound = listener.local_addr()?;
        tracing::info!("listening on http://{bound}/");
        if let Some(cluster) = &args.state.cluster {
            cluster.set_address(format!("http://{bound}"));
        }
        Ok(AccessState {
            listener: Some(listener),
            bound,
            state: args.state,
            stopped: args.stopped,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let listener = state
            .listener
            .take()
            .ok_or("the listener was already taken")?;
        let app = router(state.state.clone(), state.bound);
        let shutdown = state.state.shutdown.clone();
        let settings = &state.state.settings;
        let gate = ConnectionGate::new(settings.connections);
        let timeouts = settings.timeouts;
        tokio::spawn(async move {
            server::serve(listener, app, gate, timeouts, shutdown).await;
            let _ = myself.cast(AccessMsg::ServerExited);
        });
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: AccessMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let AccessMsg::ServerExited = message;
        if state.state.shutdown.is_cancelled() {
            let _ = state.stopped.send(true);
            myself.stop(Some("shut down".into()));
            return Ok(());
        }
        Err("the HTTP server stopped unexpectedly".into())
    }
}
