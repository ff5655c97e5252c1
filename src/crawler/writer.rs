//! The writer thread: the only connection that writes while the seeder runs. It gathers
//! results and learned addresses into batches (up to [`BATCH_MAX`] results,
//! [`BATCH_MAX_LEARNED`] addresses or [`BATCH_DELAY`]), drops gossip that would change
//! nothing, commits each batch in one transaction, releases the committed addresses to the
//! scheduler, and prunes what never answered. When the disk fails it keeps a bounded backlog
//! and retries, so DNS keeps serving from what is committed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::budget::LearnedBudget;
use super::known_gossip::KnownGossip;
use super::{
    BATCH_DELAY, BATCH_MAX, BATCH_MAX_LEARNED, Batch, CrawlCounters, InFlight, Policy, ProbeResult,
    ToWriter, lock,
};
use crate::addr::PeerAddr;
use crate::ratelog::RateLimitedLog;
use crate::store::{BatchSummary, Store};
use crate::unix_now;

/// Never-reached addresses older than this (wall clock, unscaled) are pruned.
pub const PRUNE_AGE: i64 = 30 * 86_400;
/// How often the writer prunes.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Most learned addresses kept while the database cannot be written.
const MAX_PENDING_LEARNED: usize = 100_000;
/// Most results kept while the database cannot be written.
const MAX_PENDING_RESULTS: usize = 50_000;

pub(super) struct Writer {
    store: Store,
    policy: Policy,
    in_flight: InFlight,
    budget: Arc<LearnedBudget>,
    counters: Arc<CrawlCounters>,
    known: KnownGossip,
    /// What waits to be committed.
    batch: Batch,
    /// When the oldest waiting item arrived.
    first_pending: Option<Instant>,
    /// Addresses the last commit evicted (kept to reuse its buffer).
    evicted: Vec<PeerAddr>,
    /// Commits failed in a row.
    failed_commits: u64,
    errors: RateLimitedLog,
    next_prune: Instant,
}

impl Writer {
    pub(super) fn new(
        store: Store,
        policy: Policy,
        in_flight: InFlight,
        budget: Arc<LearnedBudget>,
        counters: Arc<CrawlCounters>,
    ) -> Writer {
        Writer {
            store,
            policy,
            in_flight,
            budget,
            counters,
            known: KnownGossip::default(),
            batch: Batch::default(),
            first_pending: None,
            evicted: Vec::new(),
            failed_commits: 0,
            errors: RateLimitedLog::new(Duration::from_secs(10)),
            next_prune: Instant::now(),
        }
    }

    /// Commits what arrives until every sender is gone, then commits what is left.
    ///
    /// # Errors
    /// When results are still uncommitted at the end (the database cannot be written).
    pub(super) fn run(mut self, results: &Receiver<ToWriter>) -> anyhow::Result<()> {
        loop {
            let disconnected = self.receive(results);
            if self.batch_is_ready(disconnected) {
                self.commit_batch(disconnected)?;
            }
            if disconnected {
                return Ok(());
            }
            if Instant::now() >= self.next_prune {
                self.next_prune = Instant::now() + PRUNE_EVERY;
                self.prune();
            }
        }
    }

    /// Takes one message into the batch, waiting at most until the batch is due; returns
    /// whether every sender is gone.
    fn receive(&mut self, results: &Receiver<ToWriter>) -> bool {
        let timeout = self
            .first_pending
            .map_or(BATCH_DELAY, |t| BATCH_DELAY.saturating_sub(t.elapsed()));
        match results.recv_timeout(timeout) {
            Ok(ToWriter::Result(result, learned)) => {
                self.budget.release(learned.len());
                self.batch.results.push(result);
                self.batch.learned.extend(learned);
                let since = &self.counters.health.pending_since;
                let _ = since.compare_exchange(0, unix_now(), Ordering::Relaxed, Ordering::Relaxed);
            }
            Ok(ToWriter::Seeds(seeds)) => self.batch.learned.extend(seeds),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return true,
        }
        if self.first_pending.is_none() && self.pending() {
            self.first_pending = Some(Instant::now());
        }
        false
    }

    fn pending(&self) -> bool {
        !self.batch.results.is_empty() || !self.batch.learned.is_empty()
    }

    fn batch_is_ready(&self, disconnected: bool) -> bool {
        let due = self
            .first_pending
            .is_some_and(|t| t.elapsed() >= BATCH_DELAY);
        let full =
            self.batch.results.len() >= BATCH_MAX || self.batch.learned.len() >= BATCH_MAX_LEARNED;
        self.pending() && (disconnected || due || full)
    }

    /// Commits the batch; on failure keeps a bounded backlog for the next attempt.
    fn commit_batch(&mut self, disconnected: bool) -> anyhow::Result<()> {
        let skipped = self.known.filter(&mut self.batch.learned);
        self.counters
            .learned_skipped
            .fetch_add(skipped as u64, Ordering::Relaxed);
        match self.commit() {
            Ok(()) => {
                if self.failed_commits > 0 {
                    log::info!(
                        "database writable again: {} results committed after {} failed attempts",
                        self.batch.results.len(),
                        self.failed_commits
                    );
                    self.failed_commits = 0;
                }
                self.batch.results.clear();
                self.batch.learned.clear();
                self.first_pending = None;
                self.record_health(true);
                Ok(())
            }
            Err(e) => self.commit_failed(&e, disconnected),
        }
    }

    fn commit_failed(&mut self, e: &anyhow::Error, disconnected: bool) -> anyhow::Result<()> {
        self.failed_commits += 1;
        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
        self.record_health(false);
        self.errors.log(&format!(
            "cannot write to the database ({} results waiting, will retry; DNS keeps serving): {e:#}",
            self.batch.results.len()
        ));
        // A full disk may be the WAL's doing: fold it back and truncate it.
        let _ = self.store.checkpoint();
        trim_pending(&mut self.batch, &self.in_flight);
        self.first_pending = Some(Instant::now());
        if disconnected {
            anyhow::bail!(
                "stopping with {} uncommitted results: {e:#}",
                self.batch.results.len()
            );
        }
        Ok(())
    }

    /// One transaction; then the committed addresses go back to the scheduler and the
    /// gossip filter learns what was written and forgets what was evicted.
    fn commit(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut evicted = std::mem::take(&mut self.evicted);
        evicted.clear();
        let committed =
            self.store
                .commit_batch_reporting(&self.batch, &self.policy, unix_now(), &mut evicted);
        self.evicted = evicted;
        let summary = committed?;
        let micros = started.elapsed().as_micros() as u64;
        self.release_committed();
        self.count(&summary, micros);
        // Then forget what eviction deleted, this batch's own addresses included.
        self.known.remember(&self.batch.learned);
        self.known.forget_these(&self.evicted);
        if summary.evicted > 0 {
            log::debug!(
                "evicted {} never-reached addresses over --max-addresses",
                summary.evicted
            );
        }
        Ok(())
    }

    /// Tells `/health` whether the last commit succeeded; after a success no result waits.
    fn record_health(&self, ok: bool) {
        let h = &self.counters.health;
        h.last_commit_failed.store(!ok, Ordering::Relaxed);
        if ok {
            h.last_commit.store(unix_now(), Ordering::Relaxed);
            h.pending_since.store(0, Ordering::Relaxed);
        }
    }

    /// Only now may the scheduler hand the batch's addresses out again.
    fn release_committed(&self) {
        let mut in_flight = lock(&self.in_flight);
        for r in &self.batch.results {
            in_flight.remove(&r.addr);
        }
    }

    fn count(&self, summary: &BatchSummary, micros: u64) {
        let c = &self.counters;
        let add = |counter: &std::sync::atomic::AtomicU64, n: usize| {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        };
        add(&c.committed, summary.recorded);
        add(&c.batches, 1);
        add(&c.learned_written, self.batch.learned.len());
        add(&c.evicted, summary.evicted);
        c.commit_micros.fetch_add(micros, Ordering::Relaxed);
        c.commit_seconds.observe(micros);
        c.largest_batch
            .fetch_max(self.batch.results.len() as u64, Ordering::Relaxed);
    }

    fn prune(&mut self) {
        match self.store.prune(unix_now(), PRUNE_AGE) {
            Ok(0) => {}
            Ok(n) => {
                self.known.forget();
                log::info!("pruned {n} addresses never reached in 30 days");
            }
            Err(e) => self.errors.log(&format!("pruning: {e:#}")),
        }
    }
}

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
