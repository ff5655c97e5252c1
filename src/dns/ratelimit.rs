//! Per-source rate limiting of UDP queries with two token buckets.
//!
//! Each source (an IPv4 address, or an IPv6 /64) has a bucket of `burst` tokens refilled
//! at `qps` per second; a query that finds a token is answered. When it is empty, a
//! second bucket of the same size and rate grants an empty truncated reply (TC=1), which
//! sends a real resolver to TCP; when both are empty the query is dropped. So a source
//! gets at most its limit in answers, as much again in truncations, and silence beyond.
//!
//! Memory is bounded: entries whose buckets have refilled completely are forgotten (every
//! [`SWEEP_INTERVAL`], or when the table is full), and at most `max_sources` are tracked;
//! sources arriving while it is full share one overflow bucket ([`OVERFLOW_FACTOR`] times
//! larger), so spoofed floods cannot grow the table nor get more than a bounded rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often fully refilled entries are removed.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Default bound on tracked sources (about 5 MB).
pub const DEFAULT_MAX_SOURCES: usize = 65_536;
/// Size of the shared bucket for sources that find the table full, in per-source limits.
pub const OVERFLOW_FACTOR: f64 = 8.0;

/// What to do with one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it.
    Answer,
    /// Send an empty reply with TC set.
    Truncate,
    /// Send nothing.
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Buckets {
    answer: f64,
    truncate: f64,
    last: Instant,
}

impl Buckets {
    fn full(capacity: f64, now: Instant) -> Self {
        Self {
            answer: capacity,
            truncate: capacity,
            last: now,
        }
    }

    fn take(&mut self, rate: f64, capacity: f64, now: Instant) -> Verdict {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * rate;
        self.last = now;
        self.answer = (self.answer + refill).min(capacity);
        self.truncate = (self.truncate + refill).min(capacity);
        if self.answer >= 1.0 {
            self.answer -= 1.0;
            Verdict::Answer
        } else if self.truncate >= 1.0 {
            self.truncate -= 1.0;
            Verdict::Truncate
        } else {
            Verdict::Drop
        }
    }
}

/// Token buckets per source; one per UDP serving thread, so no locking.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    capacity: f64,
    /// Time for an empty bucket to refill completely.
    refill_time: Duration,
    sources: HashMap<IpAddr, Buckets>,
    max_sources: usize,
    overflow: Buckets,
    last_sweep: Instant,
}

impl RateLimiter {
    /// Creates a limiter of `qps` queries per second with bursts of `burst` (at least 1)
    /// per source, tracking at most `max_sources` sources.
    pub fn new(qps: u32, burst: u32, max_sources: usize, now: Instant) -> Self {
        let rate = f64::from(qps.max(1));
        let capacity = f64::from(burst.max(1));
        Self {
            rate,
            capacity,
            refill_time: Duration::from_secs_f64(capacity / rate),
            sources: HashMap::new(),
            max_sources,
            overflow: Buckets::full(capacity * OVERFLOW_FACTOR, now),
            last_sweep: now,
        }
    }

    /// Takes a token for a query from `ip` at `now` and says what to do with it.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if now.saturating_duration_since(self.last_sweep) >= SWEEP_INTERVAL {
            self.sweep(now);
        }
        let key = source_key(ip);
        if !self.sources.contains_key(&key) && self.sources.len() >= self.max_sources {
            self.sweep(now);
            if self.sources.len() >= self.max_sources {
                let capacity = self.capacity * OVERFLOW_FACTOR;
                return self
                    .overflow
                    .take(self.rate * OVERFLOW_FACTOR, capacity, now);
            }
        }
        let capacity = self.capacity;
        let buckets = self
            .sources
            .entry(key)
            .or_insert_with(|| Buckets::full(capacity, now));
        buckets.take(self.rate, capacity, now)
    }

    /// Returns the number of sources tracked.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Forgets sources whose buckets would be full again by now.
    fn sweep(&mut self, now: Instant) {
        let refill_time = self.refill_time;
        self.sources
            .retain(|_, b| now.saturating_duration_since(b.last) < refill_time);
        self.last_sweep = now;
    }
}

/// IPv4 addresses stand alone (IPv4-mapped IPv6 ones too); IPv6 addresses are grouped
/// by /64. Shared with the TCP per-source cap.
pub(super) fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((v6.to_bits() & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn verdicts(l: &mut RateLimiter, src: IpAddr, n: usize, now: Instant) -> [usize; 3] {
        let mut counts = [0; 3];
        for _ in 0..n {
            counts[l.check(src, now) as usize] += 1;
        }
        counts
    }

    #[test]
    fn burst_then_truncation_then_silence() {
        let now = Instant::now();
        let mut l = RateLimiter::new(50, 100, 16, now);
        assert_eq!(verdicts(&mut l, ip("192.0.2.1"), 300, now), [100, 100, 100]);
        // Another source is untouched.
        assert_eq!(verdicts(&mut l, ip("192.0.2.2"), 10, now), [10, 0, 0]);
        // One second later, 50 more of each.
        let later = now + Duration::from_secs(1);
        assert_eq!(verdicts(&mut l, ip("192.0.2.1"), 200, later), [50, 50, 100]);
    }

    #[test]
    fn ipv6_sources_are_grouped_by_64() {
        let now = Instant::now();
        let mut l = RateLimiter::new(1, 2, 16, now);
        assert_eq!(l.check(ip("2001:db8::1"), now), Verdict::Answer);
        assert_eq!(l.check(ip("2001:db8::ffff:1"), now), Verdict::Answer);
        assert_eq!(l.check(ip("2001:db8::2"), now), Verdict::Truncate);
        assert_eq!(l.check(ip("2001:db8:0:1::1"), now), Verdict::Answer);
        assert_eq!(l.check(ip("::ffff:192.0.2.1"), now), Verdict::Answer);
        assert_eq!(l.tracked(), 3);
    }

    #[test]
    fn memory_is_bounded_and_idle_sources_forgotten() {
        let now = Instant::now();
        let mut l = RateLimiter::new(10, 20, 100, now);
        for i in 0..1000u32 {
            l.check(IpAddr::V4(i.into()), now);
        }
        assert_eq!(l.tracked(), 100);
        // The 900 sources beyond the cap shared the overflow bucket (8 x 20 answers and
        // as many truncations), which is now empty for any other newcomer.
        assert_eq!(verdicts(&mut l, ip("198.51.100.1"), 10, now), [0, 0, 10]);
        assert_eq!(l.tracked(), 100);
        // After the refill time the table empties at the next sweep.
        let later = now + SWEEP_INTERVAL;
        l.check(ip("198.51.100.2"), later);
        assert_eq!(l.tracked(), 1);
    }
}
