//! A token bucket: up to `capacity` tokens, refilled continuously at `per_second`, one
//! taken per admitted event. The bridges' per-sender limit and the canvas's per-connection
//! frame limit both count with it.

use std::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub const fn full(capacity: f64, per_second: f64, now: Instant) -> Self {
        Self {
            capacity,
            per_second,
            tokens: capacity,
            refilled_at: now,
        }
    }

    /// Takes one token at `now`; `false` when there is none.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.tokens = elapsed
            .as_secs_f64()
            .mul_add(self.per_second, self.tokens)
            .min(self.capacity);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When a token was last asked for.
    pub const fn last_asked(&self) -> Instant {
        self.refilled_at
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_passes_at_once_and_then_only_what_time_refills() {
        let mut bucket = TokenBucket::full(10.0, 10.0, now());
        for _ in 0..10 {
            assert!(bucket.take(now()));
        }
        assert!(!bucket.take(now()), "the eleventh at once");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(bucket.take(now()), "a tenth of a second refills one");
        assert!(!bucket.take(now()));
        tokio::time::advance(Duration::from_secs(60)).await;
        let burst = (0..20).filter(|_| bucket.take(now())).count();
        assert_eq!(
            burst, 10,
            "idle time fills the bucket to its capacity, no more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_taker_at_the_rate_is_never_refused() {
        let mut bucket = TokenBucket::full(50.0, 50.0, now());
        for _ in 0..500 {
            assert!(bucket.take(now()));
            tokio::time::advance(Duration::from_millis(20)).await;
        }
    }
}
