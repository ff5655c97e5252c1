//! What the crawler counts beyond plain totals, for `/metrics` and `/health`: probe
//! failures by reason, the commit durations as a histogram, and the wall-clock times
//! health is judged by. Lock-free, except the short lock of a failure's reason.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Upper bounds of the commit-duration buckets, seconds (the last bucket is `+Inf`).
pub const COMMIT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Commit durations: observations per bucket (not cumulative), their count and sum.
#[derive(Debug, Default)]
pub struct CommitHistogram {
    buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A copy of a [`CommitHistogram`]: sum (seconds), count, and (upper bound, observations)
/// per bucket, `+Inf` last.
pub type HistogramSnapshot = (f64, u64, Vec<(f64, u64)>);

impl CommitHistogram {
    /// Records one commit that took `micros`.
    pub fn observe(&self, micros: u64) {
        let secs = micros as f64 / 1e6;
        let i = COMMIT_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(COMMIT_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Returns the current values.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let bounds = COMMIT_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets = bounds
            .zip(&self.buckets)
            .map(|(bound, n)| (bound, n.load(Ordering::Relaxed)))
            .collect();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, self.count.load(Ordering::Relaxed), buckets)
    }
}

/// Failed probes by [`ProbeError::reason`](crate::p2p::ProbeError::reason).
#[derive(Debug, Default)]
pub struct ReasonCounts(Mutex<Vec<(&'static str, u64)>>);

impl ReasonCounts {
    /// Counts one failure for `reason`.
    pub fn add(&self, reason: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match counts.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => counts.push((reason, 1)),
        }
    }

    /// Returns the counts, by reason in the order first seen.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The writer's and the probes' recent history, in Unix seconds (0: never).
#[derive(Debug, Default)]
pub struct HealthTimes {
    /// The last successful probe.
    pub last_success: AtomicI64,
    /// The last successful commit.
    pub last_commit: AtomicI64,
    /// Since when results have been waiting for a commit (0: none waiting).
    pub pending_since: AtomicI64,
    /// Whether the last commit attempt failed.
    pub last_commit_failed: AtomicBool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_count_and_sum() {
        let h = CommitHistogram::default();
        h.observe(500);
        h.observe(2_000);
        h.observe(60_000_000);
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 60.0025).abs() < 1e-9);
        assert_eq!(buckets[0], (0.001, 1));
        assert_eq!(buckets[1], (0.0025, 1));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
    }

    #[test]
    fn reasons_are_counted_apart() {
        let r = ReasonCounts::default();
        r.add("timeout");
        r.add("refused");
        r.add("timeout");
        assert_eq!(r.snapshot(), vec![("timeout", 2), ("refused", 1)]);
    }
}
