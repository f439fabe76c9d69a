//! The node's memory, as `/metrics` shows it and as the log warns about it.
//!
//! - [`MemorySample`] reads the process's resident memory (`/proc/self/status`) and
//!   jemalloc's statistics (the binary's allocator): what is allocated, and what the
//!   allocator keeps resident beyond that (freed memory not yet handed back).
//! - [`RetainedWatch`] decides when retained memory has stayed high long enough to say so:
//!   jemalloc's background thread hands freed pages back within seconds, so memory that
//!   stays retained for minutes means something keeps it (fragmentation, a decay setting).
//! - [`spawn_watch`] samples on a period, keeps the gauges current between scrapes, and
//!   logs a warning once per episode (and a line when it ends).

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use troupe_actors::metrics as metric_names;

/// How often the watch samples.
pub(crate) const SAMPLE_PERIOD: Duration = Duration::from_secs(30);

/// Retained memory counts as high from this size, and only while it also exceeds what is
/// allocated…
const RETAINED_HIGH_FLOOR: u64 = 64 * 1024 * 1024;
/// …for this long without a break.
const RETAINED_HIGH_FOR: Duration = Duration::from_secs(300);

/// One reading of the node's memory, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemorySample {
    /// Resident set size of the process; `None` where `/proc` cannot tell.
    pub(crate) resident: Option<u64>,
    /// Allocated and not freed.
    pub(crate) allocated: u64,
    /// Resident pages the allocator holds beyond `allocated`.
    pub(crate) retained: u64,
}

impl MemorySample {
    /// Reads the process and the allocator now (a few microseconds: two small reads of
    /// in-memory statistics).
    pub(crate) fn take() -> Self {
        // jemalloc caches its statistics until the epoch advances.
        let _ = tikv_jemalloc_ctl::epoch::advance();
        let allocated = tikv_jemalloc_ctl::stats::allocated::read().unwrap_or(0) as u64;
        let heap_resident = tikv_jemalloc_ctl::stats::resident::read().unwrap_or(0) as u64;
        Self {
            resident: resident_bytes(),
            allocated,
            retained: heap_resident.saturating_sub(allocated),
        }
    }

    /// Sets the memory gauges.
    pub(crate) fn publish(&self) {
        if let Some(resident) = self.resident {
            metrics::gauge!(metric_names::PROCESS_RESIDENT_BYTES).set(resident as f64);
        }
        metrics::gauge!(metric_names::HEAP_ALLOCATED_BYTES).set(self.allocated as f64);
        metrics::gauge!(metric_names::HEAP_RETAINED_BYTES).set(self.retained as f64);
    }

    fn retained_is_high(&self) -> bool {
        self.retained >= RETAINED_HIGH_FLOOR && self.retained > self.allocated
    }
}

/// `VmRSS` from `/proc/self/status` (in KiB there).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What a sample changed about retained memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetainedChange {
    Nothing,
    /// High for [`RETAINED_HIGH_FOR`]: warn (once until it ends).
    BecameHigh,
    /// It was reported high and is not any more.
    Ended,
}

/// Whether retained memory has stayed high, across samples.
#[derive(Debug, Default)]
pub(crate) struct RetainedWatch {
    /// Since when every sample was high.
    high_since: Option<Instant>,
    reported: bool,
}

impl RetainedWatch {
    pub(crate) fn observe(&mut self, sample: &MemorySample, now: Instant) -> RetainedChange {
        if !sample.retained_is_high() {
            self.high_since = None;
            return if std::mem::take(&mut self.reported) {
                RetainedChange::Ended
            } else {
                RetainedChange::Nothing
            };
        }
        let since = *self.high_since.get_or_insert(now);
        if !self.reported && now.duration_since(since) >= RETAINED_HIGH_FOR {
            self.reported = true;
            return RetainedChange::BecameHigh;
        }
        RetainedChange::Nothing
    }

    pub(crate) const fn is_reported(&self) -> bool {
        self.reported
    }
}

/// Samples every `period`, keeps the gauges current and logs when retained memory stays
/// high. Ends when the task is aborted.
pub(crate) fn spawn_watch(period: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut watch = RetainedWatch::default();
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let sample = MemorySample::take();
            sample.publish();
            match watch.observe(&sample, Instant::now()) {
                RetainedChange::BecameHigh => tracing::warn!(
                    retained_mib = sample.retained / (1024 * 1024),
                    allocated_mib = sample.allocated / (1024 * 1024),
                    minutes = RETAINED_HIGH_FOR.as_secs() / 60,
                    "the allocator has kept more freed memory than is in use for minutes"
                ),
                RetainedChange::Ended => tracing::info!(
                    retained_mib = sample.retained / (1024 * 1024),
                    "retained memory is back to normal"
                ),
                RetainedChange::Nothing => {}
            }
            metrics::gauge!(metric_names::HEAP_RETAINED_HIGH).set(if watch.is_reported() {
                1.0
            } else {
                0.0
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn sample(allocated_mib: u64, retained_mib: u64) -> MemorySample {
        MemorySample {
            resident: None,
            allocated: allocated_mib * MIB,
            retained: retained_mib * MIB,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retained_memory_is_reported_once_after_staying_high_and_again_when_it_ends() {
        let mut watch = RetainedWatch::default();
        let high = sample(20, 100);
        let start = Instant::now();
        let mut changes = Vec::new();
        for step in 0..=12 {
            let now = start + SAMPLE_PERIOD * step;
            changes.push(watch.observe(&high, now));
        }
        let warned_at: Vec<usize> = changes
            .iter()
            .enumerate()
            .filter(|(_, change)| **change == RetainedChange::BecameHigh)
            .map(|(step, _)| step)
            .collect();
        assert_eq!(warned_at, [10], "after five minutes, once");
        assert!(watch.is_reported());
        let later = start + SAMPLE_PERIOD * 13;
        assert_eq!(watch.observe(&sample(20, 10), later), RetainedChange::Ended);
        assert_eq!(
            watch.observe(&sample(20, 10), later),
            RetainedChange::Nothing
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_break_in_the_high_samples_starts_the_wait_again() {
        let mut watch = RetainedWatch::default();
        let start = Instant::now();
        watch.observe(&sample(20, 100), start);
        watch.observe(&sample(20, 100), start + Duration::from_secs(240));
        watch.observe(&sample(20, 1), start + Duration::from_secs(270));
        assert_eq!(
            watch.observe(&sample(20, 100), start + Duration::from_secs(301)),
            RetainedChange::Nothing
        );
        assert!(!watch.is_reported());
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_heap_in_use_is_not_retained_memory() {
        let mut watch = RetainedWatch::default();
        let start = Instant::now();
        let busy = sample(500, 100);
        for step in 0..20 {
            assert_eq!(
                watch.observe(&busy, start + SAMPLE_PERIOD * step),
                RetainedChange::Nothing
            );
        }
    }

    #[test]
    fn a_sample_reads_this_process() {
        let sample = MemorySample::take();
        assert!(sample.resident.is_some_and(|bytes| bytes > 0));
    }
}
