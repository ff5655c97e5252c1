//! The crawler: a scheduler thread, a fixed pool of probing threads and one writer.
//!
//! ```text
//! scheduler --(bounded queue of due addresses)--> N workers --(results)--> writer --> SQLite
//!     ^---------------- next_try index (its own read connection) <---------------'
//! ```
//! The scheduler never hands out an address that is already in flight: it is marked when
//! queued and unmarked by the writer once the result is committed, so the next
//! selection sees the new `next_try`. Shutdown is by flag and channel disconnection:
//! the scheduler stops and drops the queue's sender, workers finish their probe (bounded
//! by its deadline) and drop their result senders, and the writer commits what is left.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::addr::PeerAddr;
use crate::p2p::{self, Learned, ProbeOptions};
use crate::store::{Batch, DuePeer, NewPeer, Outcome, Policy, ProbeResult, Source, Store};
use crate::unix_now;

/// Results committed per transaction at most.
pub const BATCH_MAX: usize = 1000;
/// Results waiting for the writer at most (each may carry up to 2500 addresses).
pub const RESULT_QUEUE: usize = 256;
/// Learned addresses that make a batch commit at once.
pub const BATCH_MAX_LEARNED: usize = 50_000;
/// Longest a result waits before its batch is committed.
pub const BATCH_DELAY: Duration = Duration::from_millis(250);
/// Bootstrap sources are used while fewer peers than this answered in the last hour.
pub const BOOTSTRAP_MIN_ANSWERED: u64 = 10;
/// Never-reached addresses older than this (wall clock, unscaled) are pruned.
pub const PRUNE_AGE: i64 = 30 * 86_400;
/// Earliest plausible gossip timestamp (2009-01-03, the genesis block).
const GENESIS_TIME: i64 = 1_231_006_505;

/// How to crawl.
#[derive(Debug, Clone)]
pub struct CrawlConfig {
    pub db: PathBuf,
    pub threads: usize,
    pub probe: ProbeOptions,
    pub policy: Policy,
    /// `--seed` addresses.
    pub seeds: Vec<SocketAddr>,
    /// DNS seed names, resolved with the system resolver (port: the network's).
    pub dns_seeds: Vec<String>,
}

/// Counters shared with the status line.
#[derive(Debug, Default)]
pub struct CrawlCounters {
    /// Probes running now.
    pub in_flight: AtomicUsize,
    /// Probes finished.
    pub probes: AtomicU64,
    /// Probes that completed the handshake.
    pub successes: AtomicU64,
    /// Sum of probe durations, microseconds (the ideal pass time is this / threads).
    pub probe_micros: AtomicU64,
    /// Results committed.
    pub committed: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Results in the largest committed transaction.
    pub largest_batch: AtomicU64,
    /// Learned addresses (gossip and seeds) handed to the store in committed transactions.
    pub learned_written: AtomicU64,
    /// Time spent committing transactions, microseconds.
    pub commit_micros: AtomicU64,
    /// Commit failures (e.g. disk full).
    pub write_errors: AtomicU64,
}

/// A running crawler. Dropping it stops it (see [`Crawler::stop`]).
#[derive(Debug)]
pub struct Crawler {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub counters: Arc<CrawlCounters>,
}

/// Messages to the writer.
enum ToWriter {
    Result(ProbeResult, Vec<NewPeer>),
    Seeds(Vec<NewPeer>),
}

type InFlight = Arc<Mutex<HashSet<PeerAddr>>>;

fn lock(set: &InFlight) -> std::sync::MutexGuard<'_, HashSet<PeerAddr>> {
    set.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Spawns a named thread that logs how it ended.
///
/// # Errors
/// When the OS refuses a thread.
pub fn spawn(
    name: &str,
    f: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    let owned = name.to_owned();
    std::thread::Builder::new()
        .name(owned.clone())
        .stack_size(512 * 1024)
        .spawn(move || match f() {
            Ok(()) => log::trace!("thread {owned} stopped"),
            Err(e) => log::error!("thread {owned} failed: {e:#}"),
        })
        .with_context(|| format!("cannot start thread {name}"))
}

impl Crawler {
    /// Opens the database connections and starts the threads.
    ///
    /// # Errors
    /// When the database cannot be opened or a thread cannot start.
    pub fn start(config: CrawlConfig) -> anyhow::Result<Crawler> {
        let writer_store = Store::open(&config.db)?;
        writer_store
            .tune_for_writer()
            .context("tuning the writer connection")?;
        let reader_store = Store::open(&config.db)?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(CrawlCounters::default());
        let in_flight: InFlight = Arc::default();
        let queue_cap = config.threads.max(1) * 2;
        let (job_tx, job_rx) = bounded::<DuePeer>(queue_cap);
        // Small: each result may carry 2500 learned addresses, and a slow writer should
        // slow the workers down rather than let memory grow.
        let (result_tx, result_rx) = bounded::<ToWriter>(RESULT_QUEUE);
        let config = Arc::new(config);
        let mut threads = Vec::with_capacity(config.threads + 2);

        let writer = Writer {
            store: writer_store,
            policy: config.policy,
            in_flight: in_flight.clone(),
            counters: counters.clone(),
        };
        threads.push(spawn("writer", move || writer.run(&result_rx))?);
        for i in 0..config.threads.max(1) {
            let worker = Worker {
                jobs: job_rx.clone(),
                results: result_tx.clone(),
                config: config.clone(),
                stop: stop.clone(),
                counters: counters.clone(),
            };
            threads.push(spawn(&format!("crawl-{i}"), move || {
                worker.run();
                Ok(())
            })?);
        }
        let scheduler = Scheduler {
            store: reader_store,
            jobs: job_tx,
            seeds_out: result_tx,
            in_flight,
            config,
            stop: stop.clone(),
            bootstraps: std::cell::Cell::new(0),
        };
        threads.push(spawn("scheduler", move || scheduler.run())?);
        Ok(Crawler {
            stop,
            threads,
            counters,
        })
    }

    /// Stops taking work, lets in-flight probes finish within their deadline, commits
    /// what they found, and joins every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Crawler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Scheduler {
    store: Store,
    jobs: Sender<DuePeer>,
    seeds_out: Sender<ToWriter>,
    in_flight: InFlight,
    config: Arc<CrawlConfig>,
    stop: Arc<AtomicBool>,
    bootstraps: std::cell::Cell<u64>,
}

impl Scheduler {
    fn run(self) -> anyhow::Result<()> {
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
            let queued = match self.fill_queue() {
                Ok(n) => n,
                Err(e) => {
                    errors.log(&format!("selecting due peers: {e:#}"));
                    0
                }
            };
            // Poll faster while there is work to hand out.
            let pause = if queued > 0 { 20 } else { 100 };
            std::thread::sleep(Duration::from_millis(pause));
        }
        Ok(())
    }

    /// Queues due addresses that are not in flight; returns how many were queued.
    fn fill_queue(&self) -> anyhow::Result<usize> {
        let room = self
            .jobs
            .capacity()
            .unwrap_or(0)
            .saturating_sub(self.jobs.len());
        if room == 0 {
            return Ok(0);
        }
        // The lock is held across the selection: the writer releases an address only after
        // committing its result, so a release either happens before the query starts (which
        // then sees the new `next_try`) or waits until the selection is over. Released in
        // between, an address still due in the query's snapshot would be probed twice.
        let mut in_flight = lock(&self.in_flight);
        let due = self.store.due(unix_now(), room + in_flight.len())?;
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
        Ok(queued)
    }

    /// Uses `--seed` and DNS seeds while too few peers answered in the last (scaled) hour.
    fn bootstrap(&self) -> anyhow::Result<()> {
        let now = unix_now();
        let hour = (3600.0 * self.config.policy.scale).ceil() as i64;
        let answered = self.store.answered_since(now - hour)?;
        if answered >= BOOTSTRAP_MIN_ANSWERED {
            return Ok(());
        }
        let mut seeds: Vec<NewPeer> = self
            .config
            .seeds
            .iter()
            .map(|s| new_peer(PeerAddr::from_socket(*s), now, Source::Seed))
            .collect();
        if !seeds.is_empty() {
            log::log!(
                self.bootstrap_level(),
                "{answered} peers answered recently: bootstrapping from {} --seed addresses",
                seeds.len()
            );
        }
        for name in &self.config.dns_seeds {
            match (name.as_str(), self.config.policy.default_port).to_socket_addrs() {
                Ok(addrs) => {
                    let before = seeds.len();
                    seeds.extend(
                        addrs.map(|a| new_peer(PeerAddr::from_socket(a), now, Source::DnsSeed)),
                    );
                    log::log!(
                        self.bootstrap_level(),
                        "DNS seed {name}: {} addresses",
                        seeds.len() - before
                    );
                }
                Err(e) => log::warn!("DNS seed {name}: {e}"),
            }
        }
        self.bootstraps.set(self.bootstraps.get() + 1);
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
}

impl Scheduler {
    /// The first bootstrap is news; repeats while the network warms up are not.
    fn bootstrap_level(&self) -> log::Level {
        if self.bootstraps.get() == 0 {
            log::Level::Info
        } else {
            log::Level::Debug
        }
    }
}

fn new_peer(addr: PeerAddr, now: i64, source: Source) -> NewPeer {
    NewPeer {
        addr,
        services: 0,
        seen: now,
        source,
    }
}

struct Worker {
    jobs: Receiver<DuePeer>,
    results: Sender<ToWriter>,
    config: Arc<CrawlConfig>,
    stop: Arc<AtomicBool>,
    counters: Arc<CrawlCounters>,
}

impl Worker {
    fn run(self) {
        loop {
            let job = match self.jobs.recv_timeout(Duration::from_millis(200)) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) if !self.stop.load(Ordering::SeqCst) => continue,
                Err(_) => return,
            };
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let message = self.probe(&job);
            if self.results.send(message).is_err() {
                return;
            }
        }
    }

    fn probe(&self, job: &DuePeer) -> ToWriter {
        let now = unix_now();
        let mut opts = self.config.probe.clone();
        let day = (86_400.0 * self.config.policy.scale) as i64;
        opts.getaddr = job.last_getaddr.is_none_or(|t| now - t >= day);
        self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = match job.addr.socket_addr() {
            Some(sock) => p2p::probe(sock, &opts),
            None => Err(p2p::ProbeError::Protocol("not an IP address".into())),
        };
        let micros = started.elapsed().as_micros() as u64;
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.counters
            .probe_micros
            .fetch_add(micros, Ordering::Relaxed);
        self.counters.probes.fetch_add(1, Ordering::Relaxed);
        let time = unix_now();
        let (outcome, asked_getaddr, learned) = match outcome {
            Ok(info) => {
                self.counters.successes.fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "{} ok: version {} services {:x} {:?}, {} addresses",
                    job.addr,
                    info.version,
                    info.services,
                    info.user_agent,
                    info.addrs.len()
                );
                let learned = admit(&info.addrs, self.config.policy.allow_private, time);
                let outcome = Outcome::Success {
                    version: i64::from(info.version),
                    services: info.services,
                    user_agent: info.user_agent,
                    start_height: i64::from(info.start_height),
                };
                (outcome, info.asked_getaddr, learned)
            }
            Err(e) => {
                log::debug!("{} failed: {e}", job.addr);
                let outcome = Outcome::Failure {
                    reason: e.reason(),
                    violation: e.is_violation(),
                };
                (outcome, false, Vec::new())
            }
        };
        let result = ProbeResult {
            addr: job.addr,
            time,
            outcome,
            asked_getaddr,
        };
        ToWriter::Result(result, learned)
    }
}

/// Admission of gossiped addresses: never a forbidden address; routable unless
/// `allow_private`; timestamps clamped to [genesis, now]; no duplicates.
pub fn admit(addrs: &[Learned], allow_private: bool, now: i64) -> Vec<NewPeer> {
    let mut seen = HashSet::with_capacity(addrs.len());
    addrs
        .iter()
        .filter(|l| match l.addr.socket_addr() {
            Some(_) => l.addr.is_dialable() && (allow_private || l.addr.is_routable()),
            None => l.addr.is_routable(),
        })
        .filter(|l| seen.insert(l.addr))
        .map(|l| {
            let time = i64::from(l.time);
            let seen = if time > now + 600 {
                now
            } else if time < GENESIS_TIME {
                now - 5 * 86_400
            } else {
                time
            };
            NewPeer {
                addr: l.addr,
                services: l.services,
                seen,
                source: Source::Gossip,
            }
        })
        .collect()
}

struct Writer {
    store: Store,
    policy: Policy,
    in_flight: InFlight,
    counters: Arc<CrawlCounters>,
}

impl Writer {
    fn run(mut self, results: &Receiver<ToWriter>) -> anyhow::Result<()> {
        let mut batch = Batch::default();
        let mut first_pending: Option<Instant> = None;
        let mut errors = RateLimitedLog::new(Duration::from_secs(10));
        let mut next_prune = Instant::now();
        let mut failed_commits = 0u64;
        loop {
            let timeout =
                first_pending.map_or(BATCH_DELAY, |t| BATCH_DELAY.saturating_sub(t.elapsed()));
            let disconnected = match results.recv_timeout(timeout) {
                Ok(ToWriter::Result(result, learned)) => {
                    batch.results.push(result);
                    batch.learned.extend(learned);
                    false
                }
                Ok(ToWriter::Seeds(seeds)) => {
                    batch.learned.extend(seeds);
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let pending = !batch.results.is_empty() || !batch.learned.is_empty();
            if pending && first_pending.is_none() {
                first_pending = Some(Instant::now());
            }
            let due = first_pending.is_some_and(|t| t.elapsed() >= BATCH_DELAY);
            let full = batch.results.len() >= BATCH_MAX || batch.learned.len() >= BATCH_MAX_LEARNED;
            if pending && (disconnected || due || full) {
                match self.commit(&batch) {
                    Ok(()) => {
                        if failed_commits > 0 {
                            log::info!(
                                "database writable again: {} results committed after {failed_commits} failed attempts",
                                batch.results.len()
                            );
                            failed_commits = 0;
                        }
                        batch = Batch::default();
                        first_pending = None;
                    }
                    Err(e) => {
                        failed_commits += 1;
                        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                        errors.log(&format!(
                            "cannot write to the database ({} results waiting, will retry; DNS keeps serving): {e:#}",
                            batch.results.len()
                        ));
                        // A full disk may be the WAL's doing: fold it back and truncate it.
                        let _ = self.store.checkpoint();
                        trim_pending(&mut batch, &self.in_flight);
                        first_pending = Some(Instant::now());
                        if disconnected {
                            anyhow::bail!(
                                "stopping with {} uncommitted results: {e:#}",
                                batch.results.len()
                            );
                        }
                    }
                }
            }
            if disconnected {
                return Ok(());
            }
            if Instant::now() >= next_prune {
                next_prune = Instant::now() + Duration::from_secs(3600);
                match self.store.prune(unix_now(), PRUNE_AGE) {
                    Ok(0) => {}
                    Ok(n) => log::info!("pruned {n} addresses never reached in 30 days"),
                    Err(e) => errors.log(&format!("pruning: {e:#}")),
                }
            }
        }
    }

    fn commit(&mut self, batch: &Batch) -> anyhow::Result<()> {
        let seeds = batch.results.is_empty();
        let started = Instant::now();
        let summary = self.store.commit_batch(batch, &self.policy, unix_now())?;
        let micros = started.elapsed().as_micros() as u64;
        // Only now may the scheduler hand these addresses out again.
        let mut in_flight = lock(&self.in_flight);
        for r in &batch.results {
            in_flight.remove(&r.addr);
        }
        drop(in_flight);
        if seeds {
            // Bootstrap addresses already known must be due now, too.
            let addrs: Vec<PeerAddr> = batch
                .learned
                .iter()
                .filter(|p| p.source != Source::Gossip)
                .map(|p| p.addr)
                .collect();
            self.store.make_due(&addrs, unix_now())?;
        }
        self.counters
            .committed
            .fetch_add(summary.recorded as u64, Ordering::Relaxed);
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters
            .largest_batch
            .fetch_max(batch.results.len() as u64, Ordering::Relaxed);
        self.counters
            .learned_written
            .fetch_add(batch.learned.len() as u64, Ordering::Relaxed);
        self.counters
            .commit_micros
            .fetch_add(micros, Ordering::Relaxed);
        if summary.evicted > 0 {
            log::debug!(
                "evicted {} never-reached addresses over --max-addresses",
                summary.evicted
            );
        }
        Ok(())
    }
}

/// Most learned addresses kept while the database cannot be written.
const MAX_PENDING_LEARNED: usize = 100_000;
/// Most results kept while the database cannot be written.
const MAX_PENDING_RESULTS: usize = 50_000;

/// Bounds what waits for a failing database: learned addresses go first, then the
/// oldest results (their addresses are released so they are probed again later).
fn trim_pending(batch: &mut Batch, in_flight: &InFlight) {
    if batch.learned.len() > MAX_PENDING_LEARNED {
        batch.learned.truncate(MAX_PENDING_LEARNED);
    }
    if batch.results.len() > MAX_PENDING_RESULTS {
        let dropped: Vec<ProbeResult> = batch
            .results
            .drain(..batch.results.len() - MAX_PENDING_RESULTS)
            .collect();
        let mut set = lock(in_flight);
        for r in dropped {
            set.remove(&r.addr);
        }
    }
}

/// Logs a recurring error at most once per interval, with the number suppressed.
#[derive(Debug)]
pub struct RateLimitedLog {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    pub fn new(every: Duration) -> RateLimitedLog {
        RateLimitedLog {
            every,
            last: None,
            suppressed: 0,
        }
    }

    pub fn log(&mut self, message: &str) {
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            log::error!("{message} ({} more since the last report)", self.suppressed);
        } else {
            log::error!("{message}");
        }
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
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
        let strict: Vec<String> = admit(&input, false, now)
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
        let private = admit(&input, true, now);
        let addrs: Vec<String> = private.iter().map(|p| p.addr.to_string()).collect();
        assert!(addrs.contains(&"127.0.0.5:8333".to_owned()));
        assert!(!addrs.iter().any(|a| a.starts_with("0.0.0.0")
            || a.starts_with("224.")
            || a.starts_with("255.")
            || a.ends_with(":0")));
        assert_eq!(private[1].seen, now, "future timestamps are clamped to now");
        assert_eq!(
            private[2].seen,
            now - 5 * 86_400,
            "pre-2009 timestamps are clamped"
        );
    }
}
