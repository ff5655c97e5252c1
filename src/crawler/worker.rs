//! A crawler worker: one of `--threads` OS threads that take due addresses off the queue,
//! probe each over a blocking socket ([`crate::p2p::probe`]), admit the addresses the peer
//! gossiped, and hand the result to the writer. A worker never waits longer than a probe's
//! deadline, except for room in the writer's queue of learned addresses and, in a streak of
//! instant failures, for a slot of the pool's budget of them (`pace.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bitcoin::p2p::ServiceFlags;
use crossbeam_channel::{RecvTimeoutError, Sender};

use super::budget::LearnedBudget;
use super::pace::{InstantPace, Streak, failed_locally};
use super::proxies::ProxyGates;
use super::queues::JobReceivers;
use super::route::Route;
use super::{
    CrawlConfig, CrawlCounters, DuePeer, InFlight, NewPeer, Outcome, ProbeResult, SourceGroup,
    ToWriter, lock,
};
use crate::addr::PeerAddr;
use crate::p2p::{self, Learned, PeerInfo, ProbeError, ProbeOptions, Transport};
use crate::unix_now;

/// Earliest plausible gossip timestamp (2009-01-03, the genesis block).
const GENESIS_TIME: i64 = 1_231_006_505;
pub(super) struct Worker {
    pub(super) jobs: JobReceivers,
    pub(super) results: Sender<ToWriter>,
    pub(super) budget: Arc<LearnedBudget>,
    pub(super) config: Arc<CrawlConfig>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) counters: Arc<CrawlCounters>,
    /// The pool's budget of instant failures.
    pub(super) pace: Arc<InstantPace>,
    /// The proxies' gates, told how each probe through them went.
    pub(super) gates: Arc<ProxyGates>,
    /// Addresses queued or in flight: released here when a probe counts for nothing.
    pub(super) in_flight: InFlight,
}

impl Worker {
    /// Probes jobs until the queue is closed or the stop flag is set.
    pub(super) fn run(self) -> anyhow::Result<()> {
        let mut streak = Streak::default();
        loop {
            let job = match self.jobs.recv_timeout(Duration::from_millis(200)) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) if !self.stop.load(Ordering::SeqCst) => continue,
                Err(_) => return Ok(()),
            };
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let started = Instant::now();
            let Some((result, learned)) = self.probe(&job) else {
                // Not probed, or the proxy failed: the row stays as it was, due again.
                lock(&self.in_flight).remove(&job.addr);
                continue;
            };
            let paced = streak.after(failed_locally(&result.outcome), started.elapsed());
            self.budget.acquire(learned.len(), &self.stop);
            if self
                .results
                .send(ToWriter::Result(result, learned))
                .is_err()
            {
                return Ok(());
            }
            if paced {
                self.pace.wait();
            }
        }
    }

    /// Probes one peer; returns its result and the addresses it taught us, or `None` when
    /// its network has no route or its proxy failed (which says nothing about the peer).
    fn probe(&self, job: &DuePeer) -> Option<(ProbeResult, Vec<NewPeer>)> {
        let mut opts = self.config.probe.clone();
        let day = (86_400.0 * self.config.policy.scale) as i64;
        opts.getaddr = job.last_getaddr.is_none_or(|t| unix_now() - t >= day);
        opts.transport = self.transport_for(job);
        let Some(route) = self.config.networks.route(&job.addr) else {
            log::debug!("{}: no route to its network", job.addr);
            return None;
        };
        let started = Instant::now();
        let outcome = self.timed(|| dial(&route, &opts));
        if let Some(gate) = route.proxy().and_then(|kind| self.gates.get(kind)) {
            gate.release();
        }
        if !self.proxy_passed(&route, &outcome, started.elapsed()) {
            return None;
        }
        Some(self.result(&job.addr, outcome))
    }

    /// v2 first when the peer's known services include P2P_V2 and `--v2-transport auto`.
    fn transport_for(&self, job: &DuePeer) -> Transport {
        let advertised = job.services & ServiceFlags::P2P_V2.to_u64() != 0;
        if self.config.v2_first && advertised {
            Transport::V2
        } else {
            Transport::V1
        }
    }

    /// The result of a probe of `addr` that ended now, and the gossip it admits.
    fn result(
        &self,
        addr: &PeerAddr,
        outcome: Result<PeerInfo, ProbeError>,
    ) -> (ProbeResult, Vec<NewPeer>) {
        let time = unix_now();
        let (outcome, asked_getaddr, learned) = match outcome {
            Ok(info) => self.answered(addr, info, time),
            Err(e) => {
                log::debug!("{addr} failed: {e}");
                let outcome = Outcome::Failure {
                    reason: e.reason(),
                    violation: e.is_violation(),
                };
                (outcome, false, Vec::new())
            }
        };
        let result = ProbeResult {
            addr: *addr,
            time,
            outcome,
            asked_getaddr,
        };
        (result, learned)
    }

    /// Tells the proxy's gate how a probe through it went (and how long it took); `false`
    /// when the proxy itself failed (the probe counts for nothing).
    fn proxy_passed(
        &self,
        route: &Route,
        outcome: &Result<PeerInfo, ProbeError>,
        took: Duration,
    ) -> bool {
        let Route::Socks { kind, at, .. } = route else {
            return true;
        };
        let Some(gate) = self.gates.get(*kind) else {
            return true;
        };
        match outcome {
            Err(e) if e.is_proxy_failure() => {
                gate.failed(&e.to_string(), *at);
                false
            }
            _ => {
                gate.carried(*at, took);
                true
            }
        }
    }

    /// Runs a probe, counted in the in-flight gauge and the probe counters.
    fn timed(
        &self,
        probe: impl FnOnce() -> Result<PeerInfo, ProbeError>,
    ) -> Result<PeerInfo, ProbeError> {
        let c = &self.counters;
        c.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = probe();
        let micros = started.elapsed().as_micros() as u64;
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        c.probe_micros.fetch_add(micros, Ordering::Relaxed);
        c.probes.fetch_add(1, Ordering::Relaxed);
        match &outcome {
            Ok(_) => {
                c.successes.fetch_add(1, Ordering::Relaxed);
                (c.health.last_success).store(crate::unix_now(), Ordering::Relaxed);
            }
            Err(e) => c.failures.add(e.reason()),
        }
        outcome
    }

    /// The outcome of a completed handshake, and the gossip it admits.
    fn answered(
        &self,
        addr: &PeerAddr,
        info: PeerInfo,
        time: i64,
    ) -> (Outcome, bool, Vec<NewPeer>) {
        log::debug!(
            "{addr} ok: version {} services {:x} {:?}, {} addresses",
            info.version,
            info.services,
            info.user_agent,
            info.addrs.len()
        );
        let learned = admit(&info.addrs, addr, self.config.policy.allow_private, time);
        let outcome = Outcome::Success {
            transport: info.transport.as_str(),
            version: i64::from(info.version),
            services: info.services,
            user_agent: info.user_agent,
            start_height: i64::from(info.start_height),
        };
        (outcome, info.asked_getaddr, learned)
    }
}

/// One probe along `route` over `opts.transport`; after a v2 handshake that failed before
/// the version exchange (a v1-only peer closes on our key), a v1 probe on a new connection,
/// as Bitcoin Core does.
fn dial(route: &Route, opts: &ProbeOptions) -> Result<PeerInfo, ProbeError> {
    let once = |opts: &ProbeOptions| match route {
        Route::Direct(sock) => p2p::probe(*sock, opts),
        Route::Socks { at, target, .. } => p2p::probe_through(*at, target, opts),
    };
    match once(opts) {
        Err(ProbeError::V2Handshake(why)) => {
            log::debug!("{route}: no v2 ({why}); v1 on a new connection");
            let v1 = ProbeOptions {
                transport: Transport::V1,
                ..opts.clone()
            };
            once(&v1)
        }
        other => other,
    }
}

/// Admission of the addresses the peer at `from` gossiped: never a forbidden address; routable unless
/// `allow_private`; timestamps clamped to [genesis, now]; no duplicates.
///
/// Sized for what it holds (a set of references, an output of exactly `addrs.len()` at
/// most): it runs on every worker at once under a flood of gossip.
pub fn admit(addrs: &[Learned], from: &PeerAddr, allow_private: bool, now: i64) -> Vec<NewPeer> {
    let announcer = SourceGroup::of(from);
    let mut seen: HashSet<&PeerAddr> = HashSet::with_capacity(addrs.len());
    let mut out = Vec::with_capacity(addrs.len());
    let admitted = addrs
        .iter()
        .filter(|l| match l.addr.socket_addr() {
            Some(_) => l.addr.is_dialable() && (allow_private || l.addr.is_routable()),
            None => l.addr.is_routable(),
        })
        .filter(|l| seen.insert(&l.addr))
        .map(|l| {
            let time = i64::from(l.time);
            let seen = if time > now + 600 {
                now
            } else if time < GENESIS_TIME {
                now - 5 * 86_400
            } else {
                time
            };
            NewPeer::gossiped(l.addr, l.services, seen, announcer)
        });
    out.extend(admitted);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::addr::Host;

    fn learned(s: &str, time: u32) -> Learned {
        Learned {
            addr: s.parse().unwrap(),
            services: 9,
            time,
        }
    }

    #[test]
    fn admission_filters_clamps_and_dedupes() {
        let now = 1_800_000_000;
        let announcer: PeerAddr = "5.6.7.8:8333".parse().unwrap();
        let onion = PeerAddr {
            host: Host::TorV3([3; 32]),
            port: 8333,
        };
        let input = vec![
            learned("8.8.8.8:8333", 1_700_000_000),
            learned("8.8.8.8:8333", 1_700_000_001),
            learned("9.9.9.9:8333", 1_900_000_000),
            learned("9.9.4.4:8333", 1_000),
            learned("127.0.0.5:8333", 1_700_000_000),
            learned("0.0.0.0:8333", 1_700_000_000),
            learned("224.0.0.1:8333", 1_700_000_000),
            learned("255.255.255.255:8333", 1_700_000_000),
            learned("127.0.0.6:0", 1_700_000_000),
            Learned {
                addr: onion,
                services: 9,
                time: 1_700_000_000,
            },
        ];
        let strict: Vec<String> = admit(&input, &announcer, false, now)
            .iter()
            .map(|p| p.addr.to_string())
            .collect();
        assert_eq!(
            strict,
            [
                "8.8.8.8:8333",
                "9.9.9.9:8333",
                "9.9.4.4:8333",
                &onion.to_string()
            ]
        );
        let private = admit(&input, &announcer, true, now);
        let addrs: Vec<String> = private.iter().map(|p| p.addr.to_string()).collect();
        assert!(addrs.contains(&"127.0.0.5:8333".to_owned()));
        assert!(!addrs.iter().any(|a| a.starts_with("0.0.0.0")
            || a.starts_with("224.")
            || a.starts_with("255.")
            || a.ends_with(":0")));
        assert!(
            private
                .iter()
                .all(|p| p.announcer == Some(SourceGroup::of(&announcer)))
        );
        assert!(
            private
                .iter()
                .all(|p| p.announced_by == SourceGroup::of(&announcer).bit())
        );
        assert_eq!(private[1].seen, now, "future timestamps are clamped to now");
        assert_eq!(
            private[2].seen,
            now - 5 * 86_400,
            "pre-2009 timestamps are clamped"
        );
    }
}
