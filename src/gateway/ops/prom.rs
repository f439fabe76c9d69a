//! The node's own Prometheus page, read back: the dashboard's counters, gauges and
//! histograms come from the same series `/metrics` exports, so the two never disagree.
//! Rates and percentiles are over the window between two readings.

use std::collections::BTreeMap;
use std::time::Instant;

use prometheus_parse::{Scrape, Value};

/// One series: its labels and value (a histogram's cumulative buckets, `le` ascending).
#[derive(Debug)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: Reading,
}

#[derive(Debug)]
enum Reading {
    Scalar(f64),
    Buckets(Vec<(f64, f64)>),
}

/// Every series of one render of the page, and when it was read.
#[derive(Debug)]
pub(super) struct Readings {
    pub(super) at: Instant,
    series: Vec<Series>,
}

impl Readings {
    /// Reads the Prometheus text `page`, taken at `at`.
    pub(super) fn parse(page: &str, at: Instant) -> Self {
        let lines = page.lines().map(|line| Ok(line.to_owned()));
        let series = Scrape::parse(lines)
            .map(|scrape| scrape.samples)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|sample| {
                let value = match sample.value {
                    Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => {
                        Reading::Scalar(value)
                    }
                    Value::Histogram(buckets) => {
                        let mut buckets: Vec<(f64, f64)> = buckets
                            .iter()
                            .map(|bucket| (bucket.less_than, bucket.count))
                            .collect();
                        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                        Reading::Buckets(buckets)
                    }
                    Value::Summary(_) => return None,
                };
                let labels = sample
                    .labels
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
                Some(Series {
                    name: sample.metric,
                    labels,
                    value,
                })
            })
            .collect();
        Self { at, series }
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |series| {
            series.name == name
                && filter.iter().all(|(label, value)| {
                    series.labels.get(*label).map(String::as_str) == Some(value)
                })
        })
    }

    /// The sum of the scalar series `name` whose labels match `filter`.
    pub(super) fn total(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.matching(name, filter)
            .filter_map(|series| match series.value {
                Reading::Scalar(value) => Some(value),
                Reading::Buckets(_) => None,
            })
            // Not `sum()`: an empty float sum is -0.0, which the page would show.
            .fold(0.0, |sum, value| sum + value)
    }

    /// The scalar series `name` summed by the value of `label`.
    pub(super) fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut sums = BTreeMap::new();
        for series in self.matching(name, &[]) {
            if let (Reading::Scalar(value), Some(key)) = (&series.value, series.labels.get(label)) {
                *sums.entry(key.clone()).or_insert(0.0) += value;
            }
        }
        sums
    }

    /// The histogram `name`'s buckets whose labels match `filter`, summed.
    fn buckets(&self, name: &str, filter: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let mut sums: Vec<(f64, f64)> = Vec::new();
        for series in self.matching(name, filter) {
            let Reading::Buckets(buckets) = &series.value else {
                continue;
            };
            for (bound, count) in buckets {
                match sums.iter_mut().find(|(known, _)| known == bound) {
                    Some((_, sum)) => *sum += count,
                    None => sums.push((*bound, *count)),
                }
            }
        }
        sums.sort_by(|a, b| a.0.total_cmp(&b.0));
        sums
    }
}

/// Per second, how much the counters `name` (matching `filter`) grew from `then` to `now`.
pub(super) fn rate(now: &Readings, then: &Readings, name: &str, filter: &[(&str, &str)]) -> f64 {
    let seconds = now.at.duration_since(then.at).as_secs_f64();
    if seconds <= 0.0 {
        return 0.0;
    }
    (now.total(name, filter) - then.total(name, filter)).max(0.0) / seconds
}

/// The `q` quantile (0–1) of what the histogram `name` (matching `filter`) observed from
/// `then` to `now`, interpolated within its bucket as Prometheus' `histogram_quantile`
/// does; `None` when nothing was observed.
pub(super) fn quantile(
    now: &Readings,
    then: &Readings,
    name: &str,
    filter: &[(&str, &str)],
    q: f64,
) -> Option<f64> {
    let before = then.buckets(name, filter);
    let window: Vec<(f64, f64)> = now
        .buckets(name, filter)
        .into_iter()
        .map(|(bound, count)| {
            let earlier = before
                .iter()
                .find(|(known, _)| *known == bound)
                .map_or(0.0, |(_, count)| *count);
            (bound, (count - earlier).max(0.0))
        })
        .collect();
    let observed = window.last().map(|(_, count)| *count)?;
    if observed <= 0.0 {
        return None;
    }
    let rank = q * observed;
    let mut lower = (0.0, 0.0);
    for (bound, count) in window {
        if count >= rank {
            if bound.is_infinite() {
                // Past the last finite bound: that bound is the most that can be said.
                return Some(lower.0);
            }
            let inside = count - lower.1;
            let share = if inside > 0.0 {
                (rank - lower.1) / inside
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * share);
        }
        lower = (bound, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const THEN: &str = "# TYPE troupe_messages_in_total counter\n\
        troupe_messages_in_total 10\n\
        # TYPE troupe_message_errors_total counter\n\
        troupe_message_errors_total{code=\"busy\"} 1\n\
        # TYPE troupe_turn_stage_seconds histogram\n\
        troupe_turn_stage_seconds_bucket{stage=\"model\",le=\"0.1\"} 0\n\
        troupe_turn_stage_seconds_bucket{stage=\"model\",le=\"1\"} 0\n\
        troupe_turn_stage_seconds_bucket{stage=\"model\",le=\"+Inf\"} 0\n\
        troupe_turn_stage_seconds_sum{stage=\"model\"} 0\n\
        troupe_turn_stage_seconds_count{stage=\"model\"} 0\n";

    const NOW: &str = "# TYPE troupe_messages_in_total counter\n\
        troupe_messages_in_total 30\n\
        # TYPE troupe_message_errors_total counter\n\
        troupe_message_errors_total{code=\"busy\"} 3\n\
        troupe_message_errors_total{code=\"provider_error\"} 4\n\
        # TYPE troupe_turn_stage_seconds histogram\n\
        troupe_turn_stage_seconds_bucket{stage=\"model\",le=\"0.1\"} 50\n\
        troupe_turn_stage_seconds_bucket{stage=\"model\",le=\"1\"} 100\n\
        troupe_turn_stage_seconds_bucket{stage=\"model\",le=\"+Inf\"} 100\n\
        troupe_turn_stage_seconds_sum{stage=\"model\"} 30\n\
        troupe_turn_stage_seconds_count{stage=\"model\"} 100\n";

    fn readings() -> (Readings, Readings) {
        let start = Instant::now();
        let then = Readings::parse(THEN, start);
        let now = Readings::parse(NOW, start + std::time::Duration::from_secs(10));
        (now, then)
    }

    #[test]
    fn counters_become_rates_over_the_window() {
        let (now, then) = readings();
        assert!((rate(&now, &then, "troupe_messages_in_total", &[]) - 2.0).abs() < 1e-9);
        let errors = now.by_label("troupe_message_errors_total", "code");
        assert_eq!(errors.get("provider_error"), Some(&4.0));
        let busy = rate(
            &now,
            &then,
            "troupe_message_errors_total",
            &[("code", "busy")],
        );
        assert!((busy - 0.2).abs() < 1e-9);
    }

    #[test]
    fn percentiles_come_from_the_buckets_filled_in_the_window() {
        let (now, then) = readings();
        let stage = [("stage", "model")];
        let p50 = quantile(&now, &then, "troupe_turn_stage_seconds", &stage, 0.5).unwrap();
        assert!((p50 - 0.1).abs() < 1e-9, "{p50}");
        let p99 = quantile(&now, &then, "troupe_turn_stage_seconds", &stage, 0.99).unwrap();
        assert!((p99 - (0.1 + 0.9 * 0.98)).abs() < 1e-9, "{p99}");
        assert_eq!(
            quantile(&then, &then, "troupe_turn_stage_seconds", &stage, 0.5),
            None,
            "nothing observed"
        );
    }
}
