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

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::addr::PeerAddr;
use crate::p2p::{self, Learned, ProbeOptions};
use crate::ratelog::RateLimitedLog;
use crate::store::{Batch, DuePeer, NewPeer, Outcome, Policy, ProbeResult, Source, Store};
use crate::thread::spawn_with_stack;
use crate::unix_now;

/// Results committed per transaction at most.
pub const BATCH_MAX: usize = 1000;
/// Results waiting for the writer at most (each may carry up to 2500 addresses).
pub const RESULT_QUEUE: usize = 256;
/// Learned addresses that make a batch commit at once.
pub const BATCH_MAX_LEARNED: usize = 10_000;
/// Learned addresses waiting in the result queue at most (a result that would go past it
/// waits in its worker until the writer has taken enough off the queue; a result is never
/// split). Without it the queue held up to 256 x 2500 addresses (36 MB) while the writer
/// committed a burst of gossip at the address cap.
pub const QUEUED_LEARNED_MAX: usize = 10_000;
/// Longest a result waits before its batch is committed.
pub const BATCH_DELAY: Duration = Duration::from_millis(250);
/// Bootstrap sources are used while fewer peers than this answered in the last hour.
pub const BOOTSTRAP_MIN_ANSWERED: u64 = 10;
/// Never-reached addresses older than this (wall clock, unscaled) are pruned.
pub const PRUNE_AGE: i64 = 30 * 86_400;
/// Earliest plausible gossip timestamp (2009-01-03, the genesis block).
const GENESIS_TIME: i64 = 1_231_006_505;
/// Stack of the crawler's threads: hundreds of workers, each needing little.
const WORKER_STACK: usize = 512 * 1024;
/// Gossiped addresses the writer remembers per generation: 7/8 of 65,536 hash buckets, so a
/// generation's map never grows past them (65,536 x 49 bytes = 3.2 MB; two are kept).
pub const KNOWN_GOSSIP_GENERATION: usize = 57_344;

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
    /// Gossiped addresses not handed to the store because they would change nothing: the
    /// address is in the table with a timestamp at least as new, or repeats in the batch.
    pub learned_skipped: AtomicU64,
    /// Never-reached addresses deleted to stay under `--max-addresses`.
    pub evicted: AtomicU64,
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

        let budget = Arc::new(LearnedBudget::new(QUEUED_LEARNED_MAX));
        let writer = Writer {
            budget: budget.clone(),
            evicted: Vec::new(),
            store: writer_store,
            policy: config.policy,
            in_flight: in_flight.clone(),
            counters: counters.clone(),
            known: KnownGossip::default(),
        };
        threads.push(spawn_with_stack("writer", WORKER_STACK, move || {
            writer.run(&result_rx)
        })?);
        for i in 0..config.threads.max(1) {
            let worker = Worker {
                jobs: job_rx.clone(),
                results: result_tx.clone(),
                budget: budget.clone(),
                config: config.clone(),
                stop: stop.clone(),
                counters: counters.clone(),
            };
            threads.push(spawn_with_stack(
                &format!("crawl-{i}"),
                WORKER_STACK,
                move || {
                    worker.run();
                    Ok(())
                },
            )?);
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
        threads.push(spawn_with_stack("scheduler", WORKER_STACK, move || {
            scheduler.run()
        })?);
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
    budget: Arc<LearnedBudget>,
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
            if let ToWriter::Result(_, learned) = &message {
                self.budget.acquire(learned.len(), &self.stop);
            }
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
///
/// Sized for what it holds (a set of references, an output of exactly `addrs.len()` at
/// most): it runs on every worker at once under a flood of gossip.
pub fn admit(addrs: &[Learned], allow_private: bool, now: i64) -> Vec<NewPeer> {
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
            NewPeer {
                addr: l.addr,
                services: l.services,
                seen,
                source: Source::Gossip,
            }
        });
    out.extend(admitted);
    out
}

struct Writer {
    budget: Arc<LearnedBudget>,
    /// Addresses the last commit evicted (kept to reuse its buffer).
    evicted: Vec<PeerAddr>,
    store: Store,
    policy: Policy,
    in_flight: InFlight,
    counters: Arc<CrawlCounters>,
    known: KnownGossip,
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
                    self.budget.release(learned.len());
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
                let skipped = self.known.filter(&mut batch.learned);
                self.counters
                    .learned_skipped
                    .fetch_add(skipped as u64, Ordering::Relaxed);
                match self.commit(&batch) {
                    Ok(()) => {
                        if failed_commits > 0 {
                            log::info!(
                                "database writable again: {} results committed after {failed_commits} failed attempts",
                                batch.results.len()
                            );
                            failed_commits = 0;
                        }
                        batch.results.clear();
                        batch.learned.clear();
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
                    Ok(n) => {
                        self.known.forget();
                        log::info!("pruned {n} addresses never reached in 30 days");
                    }
                    Err(e) => errors.log(&format!("pruning: {e:#}")),
                }
            }
        }
    }

    fn commit(&mut self, batch: &Batch) -> anyhow::Result<()> {
        let seeds = batch.results.is_empty();
        let started = Instant::now();
        let mut evicted = std::mem::take(&mut self.evicted);
        evicted.clear();
        let committed =
            self.store
                .commit_batch_reporting(batch, &self.policy, unix_now(), &mut evicted);
        self.evicted = evicted;
        let summary = committed?;
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
        self.counters
            .evicted
            .fetch_add(summary.evicted as u64, Ordering::Relaxed);
        // Then forget what eviction deleted, this batch's own addresses included.
        self.known.remember(&batch.learned);
        self.known.forget_these(&self.evicted);
        if summary.evicted > 0 {
            log::debug!(
                "evicted {} never-reached addresses over --max-addresses",
                summary.evicted
            );
        }
        Ok(())
    }
}

/// A counting bound on the learned addresses in the result queue: workers acquire before
/// sending a result, the writer releases as it takes one off the queue.
#[derive(Debug)]
struct LearnedBudget {
    queued: Mutex<usize>,
    freed: Condvar,
    limit: usize,
}

impl LearnedBudget {
    fn new(limit: usize) -> LearnedBudget {
        LearnedBudget {
            queued: Mutex::new(0),
            freed: Condvar::new(),
            limit,
        }
    }

    /// Waits until `n` more addresses fit (any number fits an empty queue), then counts
    /// them. Stops waiting once `stop` is set: the writer drains the queue at shutdown.
    fn acquire(&self, n: usize, stop: &AtomicBool) {
        if n == 0 {
            return;
        }
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        while *queued > 0 && *queued + n > self.limit && !stop.load(Ordering::SeqCst) {
            queued = self
                .freed
                .wait_timeout(queued, Duration::from_millis(200))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *queued += n;
    }

    /// Uncounts `n` addresses the writer took off the queue.
    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        *queued = queued.saturating_sub(n);
        drop(queued);
        self.freed.notify_all();
    }
}

/// The gossiped addresses the writer knows to be in the table, each with the newest gossip
/// timestamp written for it (a lower bound of its `last_seen`).
///
/// Every answering peer gossips dozens to a thousand addresses, nearly all of them already
/// known; each used to cost an upsert (format the address, seek the unique index, compare)
/// that changed nothing unless the timestamp was newer. Profiling the crawl bench showed these
/// upserts taking three quarters of the writer's time. A mention is now dropped before SQLite
/// when the remembered timestamp is at least as new (the upsert would have been a no-op), and
/// repeated mentions within a batch are merged (first mention's services, newest timestamp),
/// which is what the upserts in a row would have written. Rows leave the table only by
/// eviction and pruning, both in the writer: eviction reports the addresses it deleted and
/// exactly those are forgotten (at `--max-addresses` every batch that inserts rows evicts,
/// so forgetting everything left the filter nearly empty there); pruning, hourly, forgets
/// everything. Bounded: two generations of [`KNOWN_GOSSIP_GENERATION`] addresses, the older
/// dropped when the newer fills.
///
/// Its tables and the filter's scratch space are cleared, never freed, and the writer reuses
/// its batch: each large block freed raises glibc's mmap threshold, after which blocks of that
/// size stay resident in its arenas (peak RSS under gossip: docs/PERFORMANCE.md, Scale).
#[derive(Debug, Default)]
struct KnownGossip {
    current: HashMap<PeerAddr, i64>,
    previous: HashMap<PeerAddr, i64>,
    /// Scratch for [`KnownGossip::filter`]: the first mention of each address in a batch.
    first: HashMap<PeerAddr, usize>,
    /// Scratch for [`KnownGossip::filter`]: the mentions kept.
    kept: Vec<NewPeer>,
}

impl KnownGossip {
    fn seen(&self, addr: &PeerAddr) -> Option<i64> {
        self.current
            .get(addr)
            .or_else(|| self.previous.get(addr))
            .copied()
    }

    /// Drops the gossiped addresses that would change nothing and merges repeats; other
    /// sources (seeds) pass untouched. Returns how many were dropped.
    fn filter(&mut self, learned: &mut Vec<NewPeer>) -> usize {
        let before = learned.len();
        let KnownGossip {
            current,
            previous,
            first,
            kept,
        } = self;
        first.clear();
        kept.clear();
        for peer in learned.drain(..) {
            if peer.source != Source::Gossip {
                kept.push(peer);
                continue;
            }
            let seen = current.get(&peer.addr).or_else(|| previous.get(&peer.addr));
            if seen.is_some_and(|&t| peer.seen <= t) {
                continue;
            }
            match first.entry(peer.addr) {
                Entry::Occupied(e) => {
                    let earlier = &mut kept[*e.get()];
                    earlier.seen = earlier.seen.max(peer.seen);
                }
                Entry::Vacant(e) => {
                    e.insert(kept.len());
                    kept.push(peer);
                }
            }
        }
        // `learned` takes the kept mentions; the scratch keeps the other buffer.
        std::mem::swap(learned, kept);
        before - learned.len()
    }

    /// Remembers the gossiped addresses of a committed batch.
    fn remember(&mut self, learned: &[NewPeer]) {
        for peer in learned.iter().filter(|p| p.source == Source::Gossip) {
            let seen = self
                .seen(&peer.addr)
                .map_or(peer.seen, |t| t.max(peer.seen));
            if self.current.len() >= KNOWN_GOSSIP_GENERATION {
                std::mem::swap(&mut self.previous, &mut self.current);
                self.current.clear();
            }
            self.current.insert(peer.addr, seen);
        }
    }

    /// Forgets the given addresses (their rows were deleted).
    fn forget_these(&mut self, addrs: &[PeerAddr]) {
        for addr in addrs {
            self.current.remove(addr);
            self.previous.remove(addr);
        }
    }

    /// Forgets everything (rows were deleted).
    fn forget(&mut self) {
        self.current.clear();
        self.previous.clear();
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

    fn gossip(addr: &str, services: u64, seen: i64) -> NewPeer {
        NewPeer {
            addr: addr.parse().unwrap(),
            services,
            seen,
            source: Source::Gossip,
        }
    }

    #[test]
    fn known_gossip_drops_what_would_change_nothing() {
        let mut known = KnownGossip::default();
        known.remember(&[gossip("1.1.1.1:8333", 9, 1000)]);
        let mut seed = gossip("1.1.1.1:8333", 0, 5);
        seed.source = Source::Seed;
        let mut learned = vec![
            gossip("1.1.1.1:8333", 9, 1000), // not newer: dropped
            gossip("1.1.1.1:8333", 9, 999),  // older: dropped
            seed,                            // not gossip: kept as is
            gossip("2.2.2.2:8333", 1, 50),   // new: kept, first mention's services
            gossip("2.2.2.2:8333", 8, 70),   // repeat: merged, newest time
            gossip("2.2.2.2:8333", 8, 60),
            gossip("1.1.1.1:8333", 9, 1001), // newer: kept
        ];
        assert_eq!(known.filter(&mut learned), 4);
        let kept: Vec<(String, u64, i64, Source)> = learned
            .iter()
            .map(|p| (p.addr.to_string(), p.services, p.seen, p.source))
            .collect();
        assert_eq!(
            kept,
            [
                ("1.1.1.1:8333".to_owned(), 0, 5, Source::Seed),
                ("2.2.2.2:8333".to_owned(), 1, 70, Source::Gossip),
                ("1.1.1.1:8333".to_owned(), 9, 1001, Source::Gossip),
            ]
        );
        known.forget();
        let mut again = vec![gossip("1.1.1.1:8333", 9, 1000)];
        assert_eq!(
            known.filter(&mut again),
            0,
            "forgotten addresses pass again"
        );
    }

    #[test]
    fn known_gossip_keeps_two_bounded_generations() {
        let mut known = KnownGossip::default();
        let many: Vec<NewPeer> = (0..KNOWN_GOSSIP_GENERATION as u32 * 2 + 10)
            .map(|i| {
                gossip(
                    &format!("{}:8333", std::net::Ipv4Addr::from((i + 1) << 8)),
                    1,
                    7,
                )
            })
            .collect();
        known.remember(&many);
        // Neither map grew past 65,536 buckets (what the memory bound assumes).
        assert!(known.current.capacity() <= KNOWN_GOSSIP_GENERATION);
        assert!(known.previous.capacity() <= KNOWN_GOSSIP_GENERATION);
        assert!(known.previous.len() == KNOWN_GOSSIP_GENERATION);
        // The newest are remembered, the oldest forgotten.
        let mut last = vec![many[many.len() - 1].clone()];
        assert_eq!(known.filter(&mut last), 1);
        let mut first = vec![many[0].clone()];
        assert_eq!(known.filter(&mut first), 0);
    }

    /// The rows the gossip columns end up with.
    fn gossip_rows(store: &Store) -> Vec<(String, i64, String, Option<i64>)> {
        let mut stmt = store
            .connection()
            .prepare("SELECT address, services, source, last_seen FROM peers ORDER BY address")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn filtered_gossip_writes_the_same_rows_as_every_mention() {
        gossip_equivalence(1_000_000, 11);
    }

    /// At the address cap every batch that inserts rows evicts; the filter forgets exactly
    /// the evicted addresses, so an address evicted and gossiped again is written again.
    #[test]
    fn filtered_gossip_writes_the_same_rows_at_the_address_cap() {
        gossip_equivalence(150, 12);
    }

    /// Commits the same random gossip with and without [`KnownGossip`] (as the writer uses
    /// it) into two stores capped at `max_addresses`; the rows must be identical.
    fn gossip_equivalence(max_addresses: u64, seed: u64) {
        use rand::{RngExt, SeedableRng};
        let policy = Policy {
            scale: 1.0,
            default_port: 8333,
            min_height: 0,
            allow_private: false,
            max_addresses,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut plain = Store::open(&dir.path().join("plain.db")).unwrap();
        let mut filtered = Store::open(&dir.path().join("filtered.db")).unwrap();
        let mut known = KnownGossip::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (mut skipped, mut evicted_total) = (0, 0);
        for round in 0..40 {
            // 300 mentions of 200 addresses per batch: repeats within and across batches,
            // timestamps older and newer than what was written.
            let learned: Vec<NewPeer> = (0..300)
                .map(|_| {
                    let host = rng.random_range(1..200u32);
                    gossip(
                        &format!("{}:8333", std::net::Ipv4Addr::from(0x0808_0000 + host)),
                        rng.random_range(0..16u64),
                        1_700_000_000 + rng.random_range(0..10_000i64),
                    )
                })
                .collect();
            let now = 1_700_100_000 + round;
            let batch = Batch {
                results: Vec::new(),
                learned: learned.clone(),
            };
            let expected = plain.commit_batch(&batch, &policy, now).unwrap();
            let mut batch = batch;
            skipped += known.filter(&mut batch.learned);
            let mut evicted = Vec::new();
            let summary = filtered
                .commit_batch_reporting(&batch, &policy, now, &mut evicted)
                .unwrap();
            assert_eq!(summary, expected, "round {round}");
            assert_eq!(evicted.len(), summary.evicted);
            evicted_total += summary.evicted;
            known.remember(&batch.learned);
            known.forget_these(&evicted);
            assert_eq!(gossip_rows(&plain), gossip_rows(&filtered), "round {round}");
        }
        assert!(
            skipped > 40 * 300 / 2,
            "most mentions are skipped ({skipped})"
        );
        if max_addresses < 200 {
            assert!(evicted_total > 40, "the cap evicted ({evicted_total})");
            assert_eq!(plain.count().unwrap(), max_addresses);
        }
    }
}
