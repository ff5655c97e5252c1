//! The server's counters: what it has done since it started, updated by every serving
//! thread without locks and read as a [`DnsStats`] snapshot.
//!
//! They exist apart from the serving loops so that what is counted, and which counter
//! each response [`Outcome`] goes to, is read in one place.

use std::sync::atomic::{AtomicU64, Ordering};

use super::respond::Outcome;

/// What the server has done since it started; every field only grows.
#[derive(Debug, Default)]
pub struct DnsCounters {
    /// Requests received (UDP datagrams and TCP messages), whatever became of them.
    pub queries: AtomicU64,
    /// Requests received over UDP.
    pub udp_queries: AtomicU64,
    /// Requests received over TCP.
    pub tcp_queries: AtomicU64,
    /// NOERROR responses, with or without records (zone transfers included).
    pub answered: AtomicU64,
    /// Zone transfers sent (AXFR, or IXFR answered with the whole zone).
    pub transfers: AtomicU64,
    /// REFUSED responses.
    pub refused: AtomicU64,
    /// NXDOMAIN responses.
    pub nxdomain: AtomicU64,
    /// FORMERR (and BADVERS) responses.
    pub formerr: AtomicU64,
    /// NOTIMP responses.
    pub notimp: AtomicU64,
    /// Empty truncated replies sent to rate-limited sources.
    pub rate_limited: AtomicU64,
    /// Requests that got no response (malformed, responses, over the rate limit).
    pub dropped: AtomicU64,
    /// TCP connections served.
    pub tcp_connections: AtomicU64,
    /// TCP connections closed at once: their source held `max_tcp_per_source`, or the
    /// server held `max_tcp_connections` and their source one of them already.
    pub tcp_rejected: AtomicU64,
    /// TCP connections closed to make room for a new one (the least recently active, at
    /// `max_tcp_connections` or when out of file descriptors).
    pub tcp_evicted: AtomicU64,
}

/// A copy of [`DnsCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// See [`DnsCounters::queries`].
    pub queries: u64,
    /// See [`DnsCounters::udp_queries`].
    pub udp_queries: u64,
    /// See [`DnsCounters::tcp_queries`].
    pub tcp_queries: u64,
    /// See [`DnsCounters::answered`].
    pub answered: u64,
    /// See [`DnsCounters::transfers`].
    pub transfers: u64,
    /// See [`DnsCounters::refused`].
    pub refused: u64,
    /// See [`DnsCounters::nxdomain`].
    pub nxdomain: u64,
    /// See [`DnsCounters::formerr`].
    pub formerr: u64,
    /// See [`DnsCounters::notimp`].
    pub notimp: u64,
    /// See [`DnsCounters::rate_limited`].
    pub rate_limited: u64,
    /// See [`DnsCounters::dropped`].
    pub dropped: u64,
    /// See [`DnsCounters::tcp_connections`].
    pub tcp_connections: u64,
    /// See [`DnsCounters::tcp_rejected`].
    pub tcp_rejected: u64,
    /// See [`DnsCounters::tcp_evicted`].
    pub tcp_evicted: u64,
}

impl DnsCounters {
    /// Returns the current values.
    pub fn snapshot(&self) -> DnsStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DnsStats {
            queries: get(&self.queries),
            udp_queries: get(&self.udp_queries),
            tcp_queries: get(&self.tcp_queries),
            answered: get(&self.answered),
            transfers: get(&self.transfers),
            refused: get(&self.refused),
            nxdomain: get(&self.nxdomain),
            formerr: get(&self.formerr),
            notimp: get(&self.notimp),
            rate_limited: get(&self.rate_limited),
            dropped: get(&self.dropped),
            tcp_connections: get(&self.tcp_connections),
            tcp_rejected: get(&self.tcp_rejected),
            tcp_evicted: get(&self.tcp_evicted),
        }
    }

    /// Counts one UDP request and what its response said.
    #[inline]
    pub(super) fn record_udp(&self, outcome: Outcome) {
        bump(&self.udp_queries);
        self.record(outcome);
    }

    /// Counts one TCP request and what its response said.
    #[inline]
    pub(super) fn record_tcp(&self, outcome: Outcome) {
        bump(&self.tcp_queries);
        self.record(outcome);
    }

    /// Counts one request and what its response said.
    #[inline]
    fn record(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Answered => &self.answered,
            Outcome::Transferred => {
                bump(&self.transfers);
                &self.answered
            }
            Outcome::NxDomain => &self.nxdomain,
            Outcome::Refused => &self.refused,
            Outcome::FormErr => &self.formerr,
            Outcome::NotImp => &self.notimp,
            Outcome::Truncated => &self.rate_limited,
            Outcome::Dropped => &self.dropped,
        };
        bump(&self.queries);
        bump(counter);
    }
}

/// Adds one to `counter`.
#[inline]
pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
