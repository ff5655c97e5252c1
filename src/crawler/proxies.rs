//! The proxies' gates: how many probes each SOCKS5 proxy may carry at once (`--proxy-probes`;
//! Tor and I2P circuits are slow and the routers have their own limits), and whether it
//! answers at all. A proxy that fails (refuses the connection, breaks SOCKS, reports a
//! general failure) is closed to new probes for a back-off that doubles up to a minute
//! (scaled like every crawl clock), then gets one trial probe; the first probe it carries
//! again opens it. Its networks wait meanwhile, due, and the peers' records are untouched;
//! the scheduler keeps the other networks going.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::route::{Networks, ProxyKind};
use crate::addr::FamilySet;
use crate::ratelog::RateLimitedLog;

/// First back-off after a proxy failure, before scaling.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off, before scaling (and never under [`FIRST_BACKOFF`]).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One proxy's gate.
#[derive(Debug)]
pub struct ProxyGate {
    kind: ProxyKind,
    /// Probes in flight at most while it is healthy.
    cap: usize,
    max_backoff: Duration,
    health: Mutex<Health>,
    /// Probes queued for it or running through it now.
    busy: AtomicUsize,
    /// Probes that failed because of the proxy itself (reason `proxy`).
    pub failures: AtomicU64,
    /// Probes it carried (whatever the peer did), and their time in all, microseconds.
    pub carried: AtomicU64,
    pub carried_micros: AtomicU64,
}

#[derive(Debug)]
struct Health {
    /// Closed to probes until then (`None`: healthy).
    down_until: Option<Instant>,
    backoff: Duration,
    log: RateLimitedLog,
}

impl ProxyGate {
    fn new(kind: ProxyKind, cap: usize, scale: f64) -> ProxyGate {
        let max_backoff = MAX_BACKOFF
            .mul_f64(scale.clamp(0.0, 1.0))
            .max(FIRST_BACKOFF);
        ProxyGate {
            kind,
            cap: cap.max(1),
            max_backoff,
            health: Mutex::new(Health {
                down_until: None,
                backoff: FIRST_BACKOFF,
                log: RateLimitedLog::new(Duration::from_secs(10)),
            }),
            busy: AtomicUsize::new(0),
            failures: AtomicU64::new(0),
            carried: AtomicU64::new(0),
            carried_micros: AtomicU64::new(0),
        }
    }

    /// How many probes may be in flight through it now: its cap while healthy, none
    /// while it backs off, one trial probe after that.
    pub fn allowance(&self, now: Instant) -> usize {
        match self.lock().down_until {
            None => self.cap,
            Some(until) if now < until => 0,
            Some(_) => 1,
        }
    }

    /// How many more probes may be queued for it now: its [`allowance`](Self::allowance)
    /// less the probes queued or running.
    pub fn room(&self, now: Instant) -> usize {
        self.allowance(now)
            .saturating_sub(self.busy.load(Ordering::Acquire))
    }

    /// A probe was queued for it (the scheduler).
    pub fn reserve(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
    }

    /// A probe through it ended, its socket closed (a worker).
    pub fn release(&self) {
        let _ = (self.busy).fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Whether it is closed to probes now (failed, backing off, or on trial).
    pub fn is_down(&self) -> bool {
        self.lock().down_until.is_some()
    }

    /// A probe through it failed because of the proxy itself: close it for the back-off
    /// (doubled for the next time) and say so, once per interval.
    pub fn failed(&self, why: &str, at: std::net::SocketAddr) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut h = self.lock();
        let wait = h.backoff;
        h.down_until = Some(Instant::now() + wait);
        h.backoff = (wait * 2).min(self.max_backoff);
        h.log.log(&format!(
            "the proxy of {} at {at} failed: {why}; its probes wait {:.1} s and the peers' \
             records are untouched (is the proxy running? see docs/OPERATIONS.md, \"Tor, I2P \
             and CJDNS\")",
            self.kind.flag(),
            wait.as_secs_f64()
        ));
    }

    /// A probe through it got past the proxy (whatever the peer did) and took `took`: open
    /// it again.
    pub fn carried(&self, at: std::net::SocketAddr, took: Duration) {
        self.carried.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.carried_micros.fetch_add(micros, Ordering::Relaxed);
        let mut h = self.lock();
        if h.down_until.take().is_some() {
            log::info!("the proxy of {} at {at} answers again", self.kind.flag());
        }
        h.backoff = FIRST_BACKOFF;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The gates of the configured proxies, by kind.
#[derive(Debug)]
pub struct ProxyGates {
    gates: [Option<ProxyGate>; 3],
}

impl ProxyGates {
    /// A gate for each proxy in `networks`, each letting `cap` probes through at once.
    pub fn new(networks: &Networks, cap: usize, scale: f64) -> ProxyGates {
        let gate = |kind| {
            networks
                .proxy(kind)
                .map(|_| ProxyGate::new(kind, cap, scale))
        };
        ProxyGates {
            gates: ProxyKind::ALL.map(gate),
        }
    }

    /// The gate of `kind`, if that proxy is configured.
    pub fn get(&self, kind: ProxyKind) -> Option<&ProxyGate> {
        self.gates[kind.index()].as_ref()
    }

    /// The families whose probes go through a configured proxy.
    pub fn families(&self) -> FamilySet {
        let kinds = ProxyKind::ALL.into_iter();
        kinds
            .filter(|&k| self.get(k).is_some())
            .fold(FamilySet::NONE, |set, k| set.union(k.families()))
    }

    /// Whether any proxy has probes queued or running.
    pub fn any_busy(&self) -> bool {
        let gates = self.gates.iter().flatten();
        gates
            .into_iter()
            .any(|g| g.busy.load(Ordering::Acquire) > 0)
    }

    /// Probes failed because of a proxy, all proxies together.
    pub fn failures(&self) -> u64 {
        self.gates
            .iter()
            .flatten()
            .map(|g| g.failures.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(scale: f64) -> ProxyGate {
        ProxyGate::new(ProxyKind::Onion, 8, scale)
    }

    #[test]
    fn a_healthy_proxy_carries_its_cap() {
        let g = gate(1.0);
        assert_eq!(g.allowance(Instant::now()), 8);
        assert!(!g.is_down());
        for _ in 0..3 {
            g.reserve();
        }
        assert_eq!(g.room(Instant::now()), 5);
        g.release();
        assert_eq!(g.room(Instant::now()), 6);
        for _ in 0..10 {
            g.release();
        }
        assert_eq!(g.room(Instant::now()), 8, "never below none busy");
    }

    #[test]
    fn a_failed_proxy_backs_off_then_gets_one_trial() {
        let g = gate(1.0);
        let at = "127.0.0.1:9050".parse().unwrap();
        g.failed("refused", at);
        assert!(g.is_down());
        assert_eq!(g.allowance(Instant::now()), 0);
        assert_eq!(
            g.allowance(Instant::now() + FIRST_BACKOFF),
            1,
            "one trial probe"
        );
        g.failed("refused", at);
        let later = Instant::now() + FIRST_BACKOFF;
        assert_eq!(g.allowance(later), 0, "the back-off doubled");
        assert_eq!(g.allowance(later + FIRST_BACKOFF), 1);
        g.carried(at, Duration::from_millis(3));
        assert_eq!(g.allowance(Instant::now()), 8);
        assert_eq!(g.carried.load(Ordering::Relaxed), 1);
        assert_eq!(g.carried_micros.load(Ordering::Relaxed), 3000);
        assert_eq!(g.failures.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_back_off_is_capped_by_the_scaled_minute() {
        let g = gate(0.001);
        let at = "127.0.0.1:9050".parse().unwrap();
        for _ in 0..10 {
            g.failed("refused", at);
        }
        assert_eq!(
            g.lock().backoff,
            FIRST_BACKOFF,
            "a scaled minute is under a second"
        );
        let g = gate(1.0);
        for _ in 0..10 {
            g.failed("refused", at);
        }
        assert_eq!(g.lock().backoff, MAX_BACKOFF);
    }

    #[test]
    fn only_configured_proxies_have_gates() {
        let nets = Networks {
            onion_proxy: Some("127.0.0.1:9050".parse().unwrap()),
            ..Networks::default()
        };
        let gates = ProxyGates::new(&nets, 4, 1.0);
        assert!(gates.get(ProxyKind::Onion).is_some());
        assert!(gates.get(ProxyKind::Clear).is_none() && gates.get(ProxyKind::I2p).is_none());
        assert_eq!(gates.failures(), 0);
        assert_eq!(gates.families(), ProxyKind::Onion.families());
        assert!(!gates.any_busy());
        gates.get(ProxyKind::Onion).unwrap().reserve();
        assert!(gates.any_busy());
    }
}
