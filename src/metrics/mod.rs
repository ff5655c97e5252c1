//! `--metrics-listen`: `GET /metrics` in the Prometheus text format and `GET /health`
//! (SPEC §12), served by one thread of its own that never blocks DNS or the writer.
//!
//! Each request reads atomics and the peer counts the main loop computes for its status
//! line ([`PeerSnapshot`]): no database query per scrape. `collect.rs` builds the page
//! from a fresh registry, `health.rs` judges health from plain facts, `process.rs` reads
//! `/proc/self`, `server.rs` is the HTTP thread (a `mio` loop, bounded in connections,
//! bytes and time), `conn.rs` one of its connections and `http.rs` the pure HTTP/1.x
//! request parser and response writer.

mod collect;
mod conn;
mod health;
pub mod http;
mod process;
mod server;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::crawler::CrawlCounters;
use crate::dns::{AnswerSizes, DnsCounters};
use crate::store::Summary;

pub use collect::render;
pub use health::{COMMIT_STALL_SECS, Facts, verdict};
pub use process::ProcessStats;
pub use server::MetricsServer;

/// The latest peer counts, set by the main loop at start and at each status tick.
#[derive(Debug, Clone, Default)]
pub struct PeerSnapshot(Arc<Mutex<Option<Summary>>>);

impl PeerSnapshot {
    /// Replaces the counts.
    pub fn set(&self, summary: Summary) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(summary);
    }

    /// The latest counts, if any were taken yet.
    pub fn get(&self) -> Option<Summary> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The DNS server's side of the metrics.
#[derive(Debug, Clone)]
pub struct DnsSources {
    pub counters: Arc<DnsCounters>,
    pub answers: AnswerSizes,
    /// The bare host's service mask (`--filter-service`).
    pub default_mask: u64,
}

/// Everything a scrape reads.
#[derive(Debug, Clone)]
pub struct Sources {
    pub crawl: Arc<CrawlCounters>,
    /// `None` without `--host`.
    pub dns: Option<DnsSources>,
    pub peers: PeerSnapshot,
    /// `--health-probe-age`.
    pub probe_age: Duration,
}

impl Sources {
    /// The facts `/health` judges, as of `now` (Unix seconds).
    pub fn facts(&self, now: i64) -> Facts {
        use std::sync::atomic::Ordering::Relaxed;
        let h = &self.crawl.health;
        Facts {
            now,
            last_commit_failed: h.last_commit_failed.load(Relaxed),
            last_commit: h.last_commit.load(Relaxed),
            pending_since: h.pending_since.load(Relaxed),
            last_success: h.last_success.load(Relaxed),
            probe_age: i64::try_from(self.probe_age.as_secs()).unwrap_or(i64::MAX),
            bare_host_good: self.bare_host_good(),
        }
    }

    /// Addresses in the bare host's answer set; `None` without DNS.
    fn bare_host_good(&self) -> Option<u64> {
        let dns = self.dns.as_ref()?;
        let sizes = dns.answers.get();
        let set = sizes.iter().find(|(mask, ..)| *mask == dns.default_mask);
        Some(set.map_or(0, |(_, v4, v6)| (v4 + v6) as u64))
    }
}
