//! The scheduler thread: keeps the workers' queue filled with due addresses, in the order
//! the store's `due` query gives (peers that answered before, then never-tried, then
//! failing ones), never one already in flight; and bootstraps from `--seed` and DNS seeds
//! while too few peers have answered lately.

use std::collections::HashSet;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::Sender;

use super::{
    BOOTSTRAP_MIN_ANSWERED, CrawlConfig, DuePeer, InFlight, NewPeer, Source, ToWriter, lock,
};
use crate::addr::PeerAddr;
use crate::ratelog::RateLimitedLog;
use crate::store::Store;
use crate::unix_now;

pub(super) struct Scheduler {
    store: Store,
    jobs: Sender<DuePeer>,
    /// Bootstrap seeds go to the writer, which adds them and makes them due.
    seeds_out: Sender<ToWriter>,
    in_flight: InFlight,
    config: Arc<CrawlConfig>,
    stop: Arc<AtomicBool>,
    /// Bootstrap rounds so far (the first is logged at info level, the others at debug).
    bootstraps: u64,
}

impl Scheduler {
    pub(super) fn new(
        store: Store,
        (jobs, seeds_out): (Sender<DuePeer>, Sender<ToWriter>),
        in_flight: InFlight,
        config: Arc<CrawlConfig>,
        stop: Arc<AtomicBool>,
    ) -> Scheduler {
        Scheduler {
            store,
            jobs,
            seeds_out,
            in_flight,
            config,
            stop,
            bootstraps: 0,
        }
    }

    /// Fills the queue every 20 ms while there is work (100 ms otherwise) and bootstraps
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
            let queued = self.fill_queue().unwrap_or_else(|e| {
                errors.log(&format!("selecting due peers: {e:#}"));
                0
            });
            let pause = if queued > 0 { 20 } else { 100 };
            std::thread::sleep(Duration::from_millis(pause));
        }
        Ok(())
    }

    /// Queues due addresses that are not in flight; returns how many were queued.
    fn fill_queue(&self) -> anyhow::Result<usize> {
        let capacity = self.jobs.capacity().unwrap_or(0);
        let room = capacity.saturating_sub(self.jobs.len());
        // Each selection reads the in-flight addresses again (they stay due until their
        // results are committed): topping up a few slots at a time read hundreds of rows per
        // job queued. Wait until half the queue (`threads` jobs) has been taken.
        if room == 0 || room * 2 < capacity {
            return Ok(0);
        }
        // The lock is held across the selection: the writer releases an address only after
        // committing its result, so a release either happens before the query starts (which
        // then sees the new `next_try`) or waits until the selection is over. Released in
        // between, an address still due in the query's snapshot would be probed twice.
        let mut in_flight = lock(&self.in_flight);
        let due = self.store.due(unix_now(), room + in_flight.len())?;
        Ok(self.queue(due, &mut in_flight, room))
    }

    /// Queues up to `room` of `due` that are not in flight, marking them; returns how many.
    fn queue(&self, due: Vec<DuePeer>, in_flight: &mut HashSet<PeerAddr>, room: usize) -> usize {
        let mut queued = 0;
        for peer in due {
            if queued == room {
                break;
            }
            if !in_flight.insert(peer.addr) {
                continue;
            }
            let addr = peer.addr;
            if self.jobs.try_send(peer).is_err() {
                in_flight.remove(&addr);
                break;
            }
            queued += 1;
        }
        queued
    }

    /// Uses `--seed` and DNS seeds while too few peers answered in the last (scaled) hour.
    fn bootstrap(&mut self) -> anyhow::Result<()> {
        let now = unix_now();
        let hour = (3600.0 * self.config.policy.scale).ceil() as i64;
        let answered = self.store.answered_since(now - hour)?;
        if answered >= BOOTSTRAP_MIN_ANSWERED {
            return Ok(());
        }
        let level = self.bootstrap_level();
        self.bootstraps += 1;
        let mut seeds = self.flag_seeds(now);
        if !seeds.is_empty() {
            log::log!(
                level,
                "{answered} peers answered recently: bootstrapping from {} --seed addresses",
                seeds.len()
            );
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
        self.seeds_out
            .send(ToWriter::Seeds(seeds))
            .context("the writer stopped")
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
            .map(|s| seed(PeerAddr::from_socket(*s), now, Source::Seed))
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
                    seeds.extend(
                        addrs.map(|a| seed(PeerAddr::from_socket(a), now, Source::DnsSeed)),
                    );
                    log::log!(level, "DNS seed {name}: {} addresses", seeds.len() - before);
                }
                Err(e) => log::warn!("DNS seed {name}: {e}"),
            }
        }
        seeds
    }
}

fn seed(addr: PeerAddr, now: i64, source: Source) -> NewPeer {
    NewPeer {
        addr,
        services: 0,
        seen: now,
        source,
    }
}
