//! Helpers to consume a turn's events (deltas, then one final event).

use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use troupe_actors::{ErrorCode, OutboundReply, TurnError, TurnEvent};

/// The error when a turn's channel closes without a final event (its session died).
pub(crate) fn session_lost() -> TurnError {
    TurnError::new(
        ErrorCode::SessionFailed,
        "the session stopped before replying; send the message again",
    )
}

/// Waits for the final event, ignoring deltas.
pub(crate) async fn final_reply(
    mut events: UnboundedReceiver<TurnEvent>,
) -> Result<(OutboundReply, Duration), TurnError> {
    while let Some(event) = events.recv().await {
        match event {
            TurnEvent::Delta { .. } => {}
            TurnEvent::Reply {
                reply,
                model_latency,
            } => return Ok((reply, model_latency)),
            TurnEvent::Failed { error, .. } => return Err(error),
        }
    }
    Err(session_lost())
}
