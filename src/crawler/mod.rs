//! The crawler: a scheduler thread, a fixed pool of probing threads and one writer.
//!
//! ```text
//!            due addresses                 results + learned addresses
//! scheduler ---------------> N workers ----------------------------------> writer --> SQLite
//!  (scheduler.rs)  bounded    (worker.rs)   bounded, and at most 10,000      (writer.rs)
//!     ^            queue                    learned addresses queued            |
//!     '-------- next_try indexes (its own read connection) <--------------------'
//! ```
//! The scheduler takes due addresses from the database and queues them; a worker takes one,
//! probes it over a blocking socket (`p2p`), admits the addresses the peer gossiped, and
//! hands the result to the writer; the writer commits results and learned addresses in
//! batched transactions, where the store folds each result into the peer's record by the
//! verdict of `reliability`. The scheduler also queues bootstrap seeds for the writer.
//! Probes through a SOCKS5 proxy (Tor, I2P, `--proxy`) have a queue of their own per proxy,
//! as long as its cap (`queues.rs`), topped up at every tick, so they never wait behind the
//! direct ones while holding a proxy slot (`proxies.rs`); `route.rs` says which way each
//! address goes.
//! An address is marked in flight when queued and unmarked by the writer once its result
//! is committed, so no address is probed twice at once and the next selection sees its
//! new `next_try`. Shutdown is by flag and channel disconnection: the scheduler stops and
//! drops the queue's sender, workers finish their probe (bounded by its deadline) and drop
//! their result senders, and the writer commits what is left.
//!
//! Serving comes first: the workers run at a lower priority (`WORKER_NICE`, Linux), and
//! instant failures (addresses refused at once) are paced by one budget for the pool
//! (`pace.rs`), so a pool churning through dead addresses cannot take the CPU from DNS.

mod budget;
mod known_gossip;
mod messages;
mod pace;
mod proxies;
mod queues;
mod route;
mod scheduler;
mod stats;
mod worker;
mod writer;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{Sender, bounded};

use crate::addr::{Family, PeerAddr};
use crate::p2p::ProbeOptions;
use crate::reliability::Requirements;
use crate::store::Store;
use crate::thread::spawn_lowered;

pub use known_gossip::KNOWN_GOSSIP_GENERATION;
pub use messages::{Batch, DuePeer, NewPeer, Outcome, ProbeResult, Source, SourceGroup};
pub use pace::INSTANT_FAILURES_PER_SEC;
pub use proxies::{ProxyGate, ProxyGates};
pub use route::{Networks, ProxyKind, Route};
pub use stats::{COMMIT_BUCKETS, CommitHistogram, HealthTimes, HistogramSnapshot, ReasonCounts};
pub use worker::admit;
pub use writer::PRUNE_AGE;

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
/// Stack of the crawler's threads: hundreds of workers, each needing little.
const WORKER_STACK: usize = 512 * 1024;
/// Nice levels by which the workers lower their priority (Linux; see
/// `thread::spawn_lowered`): hundreds of them failing at once must not starve the DNS
/// threads of the CPU.
pub const WORKER_NICE: i32 = 10;
/// The writer and the scheduler keep the process's priority: lowering them too (by 5 or
/// 10) changed nothing measurable for DNS (`docs/PERFORMANCE.md`), and a starved writer
/// would hold the workers' results back.
pub const WRITER_NICE: i32 = 0;

/// What the network and flags require, and how fast the model's clock runs.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// `--retry-scale`.
    pub scale: f64,
    /// The network's default P2P port.
    pub default_port: u16,
    /// `--min-height`.
    pub min_height: i64,
    /// `--allow-private`.
    pub allow_private: bool,
    /// `--max-addresses`.
    pub max_addresses: u64,
}

impl Policy {
    /// What this policy demands of `addr` to be good. I2P peers are exempt from the
    /// default-port rule: they all have port 0, as in Bitcoin Core.
    pub fn requirements(&self, addr: &PeerAddr) -> Requirements {
        Requirements {
            default_port: addr.port == self.default_port || addr.family() == Family::I2p,
            routable: self.allow_private || addr.is_routable(),
            min_height: self.min_height,
        }
    }
}

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
    /// How each network is reached (`--proxy`, `--onion-proxy`, `--i2p-proxy`,
    /// `--cjdns-reachable`).
    pub networks: Networks,
    /// `--proxy-probes`: probes in flight through each proxy at most.
    pub proxy_probes: usize,
    /// `--v2-transport auto`: v2 first with peers that advertise P2P_V2.
    pub v2_first: bool,
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
    /// Failed probes by reason.
    pub failures: ReasonCounts,
    /// Commit durations.
    pub commit_seconds: CommitHistogram,
    /// When probes last succeeded and commits last happened, for `/health`.
    pub health: HealthTimes,
}

/// Messages to the writer.
enum ToWriter {
    /// A probe's result and the addresses it admitted.
    Result(ProbeResult, Vec<NewPeer>),
    /// Bootstrap addresses from `--seed` and DNS seeds.
    Seeds(Vec<NewPeer>),
}

/// The addresses queued or being probed, shared by the scheduler (which marks them) and
/// the writer (which unmarks them once their results are committed).
type InFlight = Arc<Mutex<HashSet<PeerAddr>>>;

fn lock(set: &InFlight) -> MutexGuard<'_, HashSet<PeerAddr>> {
    set.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running crawler. Dropping it stops it (see [`Crawler::stop`]).
#[derive(Debug)]
pub struct Crawler {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub counters: Arc<CrawlCounters>,
    /// The workers' shared budget of instant failures.
    pace: Arc<pace::InstantPace>,
    /// The proxies' gates (shared by the scheduler and the workers).
    pub gates: Arc<ProxyGates>,
    /// Addresses queued or being probed.
    in_flight: InFlight,
}

impl Crawler {
    /// Opens the database connections and starts the writer, the workers and the
    /// scheduler, wired as the module documentation shows.
    ///
    /// # Errors
    /// When the database cannot be opened or a thread cannot start.
    pub fn start(config: CrawlConfig) -> anyhow::Result<Crawler> {
        let (writer_store, scheduler_store) = open_stores(&config)?;
        let threads = config.threads.max(1);
        let mut crawler = Crawler::new(&config);
        let (job_tx, job_rx) = queues::job_queues(threads, &config.networks, config.proxy_probes);
        // Small: each result may carry 2500 learned addresses, and a slow writer should
        // slow the workers down rather than let memory grow.
        let (result_tx, result_rx) = bounded::<ToWriter>(RESULT_QUEUE);
        let budget = Arc::new(budget::LearnedBudget::new(QUEUED_LEARNED_MAX));
        let config = Arc::new(config);
        let writer = writer::Writer::new(
            writer_store,
            config.policy,
            Arc::clone(&crawler.in_flight),
            Arc::clone(&budget),
            Arc::clone(&crawler.counters),
        );
        crawler.spawn("writer", WRITER_NICE, move || writer.run(&result_rx))?;
        for i in 0..threads {
            let worker = crawler.worker(&job_rx, &result_tx, &budget, &config);
            crawler.spawn(&format!("crawl-{i}"), WORKER_NICE, move || worker.run())?;
        }
        let scheduler = scheduler::Scheduler::new(
            scheduler_store,
            (job_tx, result_tx),
            (Arc::clone(&crawler.in_flight), Arc::clone(&crawler.gates)),
            config,
            Arc::clone(&crawler.stop),
        );
        crawler.spawn("scheduler", WRITER_NICE, move || scheduler.run())?;
        Ok(crawler)
    }

    /// The shared state, before any thread runs.
    fn new(config: &CrawlConfig) -> Crawler {
        let scale = config.policy.scale;
        Crawler {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::with_capacity(config.threads + 2),
            counters: Arc::new(CrawlCounters::default()),
            pace: Arc::new(pace::InstantPace::new(INSTANT_FAILURES_PER_SEC)),
            gates: Arc::new(ProxyGates::new(
                &config.networks,
                config.proxy_probes,
                scale,
            )),
            in_flight: InFlight::default(),
        }
    }

    fn worker(
        &self,
        jobs: &queues::JobReceivers,
        results: &Sender<ToWriter>,
        budget: &Arc<budget::LearnedBudget>,
        config: &Arc<CrawlConfig>,
    ) -> worker::Worker {
        worker::Worker {
            jobs: jobs.clone(),
            results: results.clone(),
            budget: Arc::clone(budget),
            config: Arc::clone(config),
            stop: Arc::clone(&self.stop),
            counters: Arc::clone(&self.counters),
            pace: Arc::clone(&self.pace),
            gates: Arc::clone(&self.gates),
            in_flight: Arc::clone(&self.in_flight),
        }
    }

    fn spawn(
        &mut self,
        name: &str,
        nice: i32,
        f: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.threads
            .push(spawn_lowered(name, WORKER_STACK, nice, f)?);
        Ok(())
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

/// The writer's connection (tuned for writing) and the scheduler's.
fn open_stores(config: &CrawlConfig) -> anyhow::Result<(Store, Store)> {
    let writer = Store::open(&config.db)?;
    writer
        .tune_for_writer()
        .context("tuning the writer connection")?;
    Ok((writer, Store::open(&config.db)?))
}

impl Drop for Crawler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thread::nice_of;
    use bitcoin::p2p::Magic;
    use std::time::Instant;

    /// A crawler with `threads` workers on an empty database in `dir`.
    fn idle_crawler(dir: &std::path::Path, threads: usize) -> Crawler {
        let config = CrawlConfig {
            db: dir.join("peers.db"),
            threads,
            probe: ProbeOptions::new(Magic::REGTEST),
            policy: Policy {
                scale: 1.0,
                default_port: 18444,
                min_height: 0,
                allow_private: true,
                max_addresses: 1000,
            },
            seeds: Vec::new(),
            dns_seeds: Vec::new(),
            networks: Networks::default(),
            proxy_probes: 32,
            v2_first: true,
        };
        Crawler::start(config).expect("the crawler starts")
    }

    /// The nice value of every thread of this process named `crawl-N` (every crawler
    /// worker, of this test or another one running at the same time).
    fn worker_nice_values() -> Vec<Option<i64>> {
        let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
        tasks
            .filter_map(Result::ok)
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|name| name.starts_with("crawl-"))
            })
            .map(|t| nice_of(&format!("self/task/{}", t.file_name().to_string_lossy())))
            .collect()
    }

    #[test]
    fn workers_run_at_the_lowered_priority() {
        let Some(base) = nice_of("thread-self") else {
            eprintln!("skipped: no per-thread nice value in /proc (Linux only)");
            return;
        };
        let expected = (base + i64::from(WORKER_NICE)).min(19);
        let dir = tempfile::tempdir().expect("a temp dir");
        let crawler = idle_crawler(dir.path(), 3);
        // Each worker lowers its own priority once it runs: wait for all of them.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = worker_nice_values();
        while seen.len() < 3 || seen.iter().any(|n| n.is_some_and(|n| n != expected)) {
            assert!(
                Instant::now() < deadline,
                "worker nice values {seen:?}, want {expected}"
            );
            std::thread::sleep(Duration::from_millis(10));
            seen = worker_nice_values();
        }
        crawler.stop();
        assert!(
            seen.iter().flatten().all(|&n| n == expected),
            "worker nice values {seen:?}, want {expected} (the test thread's {base} + {WORKER_NICE})"
        );
    }
}
