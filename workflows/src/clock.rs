//! Wall-clock time for schedules, waits and journal records. The system clock in a node;
//! in tests a clock that starts at a chosen time and follows tokio's (pausable) time, so
//! `start_paused` and `advance` control it completely.

use std::time::Duration;

use tokio::time::Instant;

/// `duration` in milliseconds, saturating far beyond any time a workflow names.
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Unix milliseconds now, and sleeping until a wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// `None`: the system clock. `Some`: `origin_ms` at `origin`, moving with tokio's time.
    origin: Option<(i64, Instant)>,
}

/// The longest one sleep lasts before the system clock is looked at again (it may jump).
const LOOK_AGAIN: Duration = Duration::from_secs(30);

impl Clock {
    pub fn system() -> Self {
        Self { origin: None }
    }

    /// A clock reading `origin_ms` now and moving with tokio's time.
    pub fn starting_at(origin_ms: i64) -> Self {
        Self {
            origin: Some((origin_ms, Instant::now())),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match self.origin {
            None => jiff::Timestamp::now().as_millisecond(),
            Some((origin_ms, origin)) => {
                let elapsed = i64::try_from(origin.elapsed().as_millis()).unwrap_or(i64::MAX);
                origin_ms.saturating_add(elapsed)
            }
        }
    }

    /// Returns at `due_ms` (at once if it has passed).
    pub async fn sleep_until(&self, due_ms: i64) {
        loop {
            let left = due_ms.saturating_sub(self.now_ms());
            if left <= 0 {
                return;
            }
            let left = Duration::from_millis(left.unsigned_abs());
            match self.origin {
                Some(_) => tokio::time::sleep(left).await,
                None => tokio::time::sleep(left.min(LOOK_AGAIN)).await,
            }
        }
    }
}
