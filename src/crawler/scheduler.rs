//! The scheduler thread: keeps the workers' queue filled with due addresses, never one
//! already in flight. Bootstrap seeds (`--seed` and what DNS seeds resolve to) go first,
//! straight to the workers, at start whatever the database holds and again while too few
//! peers have answered lately; then the order of the store's `due` query (peers that
//! answered before, never-tried ones by evidence, failing ones), for each proxy's networks
//! up to the proxy's room, and for the direct networks once half the direct queue is free.

use std::collections::HashSet;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::Sender;

use super::proxies::ProxyGates;
use super::queues::JobSenders;
use super::route::ProxyKind;
use super::{
    BOOTSTRAP_MIN_ANSWERED, CrawlConfig, DuePeer, InFlight, NewPeer, Source, ToWriter, lock,
};
use crate::addr::{FamilySet, PeerAddr};
use crate::ratelog::RateLimitedLog;
use crate::store::Store;
use crate::unix_now;

pub(super) struct Scheduler {
    store: Store,
    jobs: JobSenders,
    /// Bootstrap seeds go to the writer, which adds them and makes them due.
    seeds_out: Sender<ToWriter>,
    in_flight: InFlight,
    /// The proxies' gates: how many probes each may carry now.
    gates: Arc<ProxyGates>,
    config: Arc<CrawlConfig>,
    stop: Arc<AtomicBool>,
    /// Bootstrap rounds so far (the first is logged at info level, the others at debug).
    bootstraps: u64,
    /// Seed addresses to queue before anything the database holds.
    seeds_first: Vec<PeerAddr>,
}

impl Scheduler {
    pub(super) fn new(
        store: Store,
        (jobs, seeds_out): (JobSenders, Sender<ToWriter>),
        (in_flight, gates): (InFlight, Arc<ProxyGates>),
        config: Arc<CrawlConfig>,
        stop: Arc<AtomicBool>,
    ) -> Scheduler {
        Scheduler {
            store,
            jobs,
            seeds_out,
            in_flight,
            gates,
            config,
            stop,
            bootstraps: 0,
            seeds_first: Vec::new(),
        }
    }

    /// Fills the queues every 20 ms while there is work (100 ms otherwise) and bootstraps
    /// every (scaled) minute, until the stop flag is set.
    pub(super) fn run(mut self) -> anyhow::Result<()> {
        let scale = self.config.policy.scale;
        let bootstrap_every = Duration::from_secs_f64((60.0 * scale).clamp(1.0, 60.0));
        let mut next_bootstrap = Instant::now();
        let mut errors = RateLimitedLog::new(Duration::from_secs(10));
        while !self.stop.load(Ordering::SeqCst) {
            if Instant::now() >= next_bootstrap {
                next_bootstrap = Instant::now() + bootstrap_every;
                if let Err(e) = self.bootstrap() {
                    errors.log(&format!("bootstrap: {e:#}"));
                }
            }
            let queued = self.fill_queues().unwrap_or_else(|e| {
                errors.log(&format!("selecting due peers: {e:#}"));
                0
            });
            // A proxy with probes running frees slots soon: top it up at the short tick.
            let busy = queued > 0 || self.gates.any_busy();
            std::thread::sleep(Duration::from_millis(if busy { 20 } else { 100 }));
        }
        Ok(())
    }

    /// Queues seeds first, then due addresses of each proxy that has room, then direct
    /// ones, none in flight; returns how many were queued.
    fn fill_queues(&mut self) -> anyhow::Result<usize> {
        let seeds = self.queue_seeds();
        let mut queued = seeds;
        for kind in ProxyKind::ALL {
            queued += self.fill_proxy(kind)?;
        }
        let direct = &self.jobs.direct;
        let capacity = direct.capacity().unwrap_or(0);
        let room = capacity.saturating_sub(direct.len());
        // Each selection reads the in-flight addresses again (they stay due until their
        // results are committed): topping up a few slots at a time read hundreds of rows per
        // job queued. Wait until half the queue (`threads` jobs) has been taken.
        if room == 0 || room * 2 < capacity {
            return Ok(queued);
        }
        let families = (self.config.networks.reachable()).minus(self.gates.families());
        Ok(queued + self.select_and_queue(families, room)?)
    }

    /// Tops up the queue of the proxy `kind` (if configured) to its room now (none while
    /// it backs off after a failure).
    fn fill_proxy(&self, kind: ProxyKind) -> anyhow::Result<usize> {
        let room = self.gates.get(kind).map_or(0, |g| g.room(Instant::now()));
        if room == 0 {
            return Ok(0);
        }
        self.select_and_queue(kind.families(), room)
    }

    /// Selects up to `room` due addresses of `families` that are not in flight and queues
    /// them; returns how many.
    fn select_and_queue(&self, families: FamilySet, room: usize) -> anyhow::Result<usize> {
        if families.is_empty() {
            return Ok(0);
        }
        // The lock is held across the selection: the writer releases an address only after
        // committing its result, so a release either happens before the query starts (which
        // then sees the new `next_try`) or waits until the selection is over. Released in
        // between, an address still due in the query's snapshot would be probed twice.
        let mut in_flight = lock(&self.in_flight);
        let busy = in_flight
            .iter()
            .filter(|a| families.contains(a.family()))
            .count();
        let due = self.store.due_in(unix_now(), room + busy, families)?;
        Ok(self.queue(due, &mut in_flight, room))
    }

    /// Queues the waiting seeds that fit (their rows are written by the writer, which gets
    /// them before their results); returns how many were queued.
    fn queue_seeds(&mut self) -> usize {
        if self.seeds_first.is_empty() {
            return 0;
        }
        let direct = &self.jobs.direct;
        let room = direct.capacity().unwrap_or(0).saturating_sub(direct.len());
        let take = room.min(self.seeds_first.len());
        let due: Vec<DuePeer> = (self.seeds_first.drain(..take))
            .map(|addr| DuePeer {
                addr,
                last_getaddr: None,
                services: 0,
            })
            .collect();
        self.queue(due, &mut lock(&self.in_flight), take)
    }

    /// Queues up to `room` of `due` that are not in flight, each on its route's queue (one
    /// through a proxy only while the proxy has room), marking them; returns how many.
    fn queue(&self, due: Vec<DuePeer>, in_flight: &mut HashSet<PeerAddr>, room: usize) -> usize {
        let mut queued = 0;
        for peer in due {
            if queued == room {
                break;
            }
            let proxy = self.config.networks.proxy_for(peer.addr.family());
            let gate = proxy.and_then(|kind| self.gates.get(kind));
            if gate.is_some_and(|g| g.room(Instant::now()) == 0) {
                continue;
            }
            if !in_flight.insert(peer.addr) {
                continue;
            }
            if !self.send(peer, in_flight, proxy) {
                break;
            }
            queued += 1;
        }
        queued
    }

    /// Sends `peer`, marked in flight, to its route's queue, holding a slot of its proxy;
    /// unmarks it and returns `false` when the queue is full.
    fn send(
        &self,
        peer: DuePeer,
        in_flight: &mut HashSet<PeerAddr>,
        proxy: Option<ProxyKind>,
    ) -> bool {
        // Reserved before it is sent: a worker may probe it and release the slot at once.
        let gate = proxy.and_then(|kind| self.gates.get(kind));
        gate.inspect(|g| g.reserve());
        let addr = peer.addr;
        if self.jobs.queue(proxy).try_send(peer).is_err() {
            in_flight.remove(&addr);
            gate.inspect(|g| g.release());
            return false;
        }
        true
    }

    /// Probes `--seed` and DNS seeds first: at start, and again while too few peers
    /// answered in the last (scaled) hour.
    fn bootstrap(&mut self) -> anyhow::Result<()> {
        let now = unix_now();
        let hour = (3600.0 * self.config.policy.scale).ceil() as i64;
        let answered = self.store.answered_since(now - hour)?;
        if self.bootstraps > 0 && answered >= BOOTSTRAP_MIN_ANSWERED {
            return Ok(());
        }
        let level = self.bootstrap_level();
        self.bootstraps += 1;
        let mut seeds = self.flag_seeds(now);
        if !seeds.is_empty() {
            if answered < BOOTSTRAP_MIN_ANSWERED {
                log::log!(
                    level,
                    "{answered} peers answered recently: bootstrapping from {} --seed addresses",
                    seeds.len()
                );
            } else {
                log::info!("probing the {} --seed addresses first", seeds.len());
            }
        }
        seeds.extend(self.dns_seeds(now, level));
        if seeds.is_empty() {
            if answered == 0 && self.store.count()? == 0 {
                log::warn!(
                    "the database is empty and there is no --seed or DNS seed to start from"
                );
            }
            return Ok(());
        }
        let addrs = seeds.iter().filter(|s| s.addr.socket_addr().is_some());
        let addrs: Vec<PeerAddr> = addrs.map(|s| s.addr).collect();
        self.seeds_out
            .send(ToWriter::Seeds(seeds))
            .context("the writer stopped")?;
        self.seeds_first = addrs;
        Ok(())
    }

    /// The first bootstrap is news; repeats while the network warms up are not.
    fn bootstrap_level(&self) -> log::Level {
        if self.bootstraps == 0 {
            log::Level::Info
        } else {
            log::Level::Debug
        }
    }

    /// The `--seed` addresses.
    fn flag_seeds(&self, now: i64) -> Vec<NewPeer> {
        let seeds = self.config.seeds.iter();
        seeds
            .map(|s| NewPeer::unannounced(PeerAddr::from_socket(*s), now, Source::Seed))
            .collect()
    }

    /// The addresses the DNS seeds resolve to (with the system resolver), on the network's
    /// port; a seed that does not resolve is logged and skipped.
    fn dns_seeds(&self, now: i64, level: log::Level) -> Vec<NewPeer> {
        let mut seeds = Vec::new();
        for name in &self.config.dns_seeds {
            match (name.as_str(), self.config.policy.default_port).to_socket_addrs() {
                Ok(addrs) => {
                    let before = seeds.len();
                    seeds.extend(addrs.map(|a| {
                        NewPeer::unannounced(PeerAddr::from_socket(a), now, Source::DnsSeed)
                    }));
                    log::log!(level, "DNS seed {name}: {} addresses", seeds.len() - before);
                }
                Err(e) => log::warn!("DNS seed {name}: {e}"),
            }
        }
        seeds
    }
}
