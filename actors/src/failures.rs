//! The last turns that failed on this node, for the operator's dashboard: which session,
//! which message, the error, and the trace it belongs to (when traces are exported).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::turn::{ErrorCode, TurnError};

/// How many failed turns are kept.
pub const KEPT: usize = 50;

/// One failed turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailedTurn {
    /// Unix seconds.
    pub at: u64,
    pub session: String,
    pub message_id: String,
    pub code: ErrorCode,
    pub message: String,
    /// The W3C trace id of the turn (32 hex digits), when an OpenTelemetry layer records it.
    pub trace_id: Option<String>,
}

/// The last [`KEPT`] failed turns, newest last.
#[derive(Debug, Default)]
pub struct FailedTurns {
    recent: Mutex<VecDeque<FailedTurn>>,
}

impl FailedTurns {
    /// Keeps `error` of `message_id` in `session`, as part of the current span's trace.
    pub fn keep(&self, session: String, message_id: String, error: &TurnError) {
        let trace_id = crate::trace::TraceParent::of_span(&tracing::Span::current())
            .map(crate::trace::TraceParent::trace_id_hex);
        let failed = FailedTurn {
            at: crate::message::unix_now(),
            session,
            message_id,
            code: error.code,
            message: error.message.clone(),
            trace_id,
        };
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(failed);
    }

    /// The failed turns kept, newest first.
    pub fn newest_first(&self) -> Vec<FailedTurn> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_failures_newest_first() {
        let failures = FailedTurns::default();
        for index in 0..KEPT + 3 {
            let error = TurnError::new(ErrorCode::ProviderError, format!("failure {index}"));
            failures.keep("web:ada".into(), format!("m{index}"), &error);
        }
        let kept = failures.newest_first();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0].message_id, format!("m{}", KEPT + 2));
        assert_eq!(kept[KEPT - 1].message_id, "m3");
        assert_eq!(kept[0].trace_id, None, "no OpenTelemetry layer here");
    }
}
