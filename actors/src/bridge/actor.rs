//! `BridgeActor`: the supervised actor that runs one bridge's receiving loop. When the loop
//! fails it waits (exponential backoff with jitter, reset once the bridge had connected)
//! and runs it again; refused credentials count as `failed` and wait the longest. A panic
//! in the bridge is caught and treated like a failure. The real state is kept in the
//! bridge's [`StatusHandle`].

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;

use super::{Bridge, BridgeContext, BridgeErrorKind, BridgeState};

/// Waits between attempts of the receiving loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The wait before attempt `failures` (1-based), with jitter in [50 %, 100 %].
    pub fn wait(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(16);
        let full = self.first.saturating_mul(1 << exponent).min(self.max);
        full.mul_f64(rand::random_range(0.5..=1.0))
    }
}

/// Messages of the [`BridgeActor`].
pub enum BridgeMsg {
    /// The receiving loop ended (the node is shutting down).
    LoopEnded,
}

/// Start-up arguments.
pub struct BridgeArgs {
    pub bridge: Arc<dyn Bridge>,
    pub context: BridgeContext,
    pub backoff: Backoff,
}

/// The actor.
pub struct BridgeActor;

pub struct BridgeActorState {
    receiving: JoinHandle<()>,
    context: BridgeContext,
}

impl Actor for BridgeActor {
    type Msg = BridgeMsg;
    type State = BridgeActorState;
    type Arguments = BridgeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: BridgeArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let context = args.context.clone();
        let receiving = tokio::spawn(async move {
            receive_forever(args.bridge, &args.context, args.backoff).await;
            let _ = myself.cast(BridgeMsg::LoopEnded);
        });
        Ok(BridgeActorState { receiving, context })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: BridgeMsg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            BridgeMsg::LoopEnded => myself.stop(Some("shutting down".into())),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.context.shutdown.cancel();
        if tokio::time::timeout(Duration::from_secs(5), &mut state.receiving)
            .await
            .is_err()
        {
            state.receiving.abort();
        }
        state.context.status.stopped();
        Ok(())
    }
}

/// Runs the bridge until `context.shutdown`, restarting it after failures (also what a
/// cluster runs as the bridge's singleton).
pub async fn receive_forever(bridge: Arc<dyn Bridge>, context: &BridgeContext, backoff: Backoff) {
    let mut failures = 0_u32;
    while !context.shutdown.is_cancelled() {
        context.status.starting();
        let outcome = tokio::select! {
            () = context.shutdown.cancelled() => break,
            outcome = AssertUnwindSafe(bridge.run(context)).catch_unwind() => outcome,
        };
        if context.shutdown.is_cancelled() {
            break;
        }
        // A bridge that connected before failing starts its backoff over.
        if context.status.snapshot().connected_since.is_some()
            || context.status.state() == BridgeState::Connected
        {
            failures = 0;
        }
        failures += 1;
        let (message, fatal) = match outcome {
            Ok(Ok(())) => ("the receiving loop ended by itself".to_owned(), false),
            Ok(Err(error)) => (
                error.message.clone(),
                error.kind == BridgeErrorKind::Unauthorized,
            ),
            Err(_) => ("the bridge panicked".to_owned(), false),
        };
        let wait = if fatal {
            backoff.max
        } else {
            backoff.wait(failures)
        };
        tracing::warn!(bridge = %context.name, error = %message, ?wait, "bridge disconnected; reconnecting after a pause");
        context
            .status
            .backing_off(&message, wait.as_secs().max(1), fatal);
        tokio::select! {
            () = context.shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
