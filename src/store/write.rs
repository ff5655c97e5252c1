//! The write path: the writer's batches (probe results folded into their rows, learned
//! addresses, eviction under `--max-addresses`), pruning, and `import`. For each result it
//! reads the row, asks [`crate::reliability`] for the verdict, and writes both back.

use std::sync::LazyLock;

use rusqlite::{OptionalExtension, ToSql, Transaction, params};

use super::{SourceRanks, Store, WINDOW_COLUMNS, read_windows, window_assignments, window_values};
use crate::addr::PeerAddr;
use crate::crawler::{Batch, NewPeer, Outcome, Policy, ProbeResult};
use crate::dump::{DumpFigures, ImportedPeer};
use crate::reliability::{self, Record, Verdict};

/// What committing a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub recorded: usize,
    pub inserted: usize,
    pub evicted: usize,
}

impl Store {
    /// Adds addresses heard of; known addresses keep their row (gossip never overwrites
    /// what a peer told us itself), except that a newer gossip timestamp is noted.
    /// Returns how many rows were inserted.
    ///
    /// # Errors
    /// On SQLite errors; nothing is written then.
    pub fn add_peers(&mut self, peers: &[NewPeer], now: i64) -> rusqlite::Result<usize> {
        let tx = self.conn.transaction()?;
        let inserted = insert_peers(&tx, peers, now, &mut self.ranks)?;
        tx.commit()?;
        self.known = self.known.map(|n| n + inserted as u64);
        Ok(inserted)
    }

    /// Commits probe results and learned addresses in one transaction, then keeps the
    /// table under `--max-addresses` by evicting never-reached addresses (see `evict`).
    ///
    /// # Errors
    /// On SQLite errors; the whole batch is rolled back then.
    pub fn commit_batch(
        &mut self,
        batch: &Batch,
        policy: &Policy,
        now: i64,
    ) -> rusqlite::Result<BatchSummary> {
        self.commit_batch_reporting(batch, policy, now, &mut Vec::new())
    }

    /// [`Store::commit_batch`], also appending to `evicted` the addresses it deleted to keep
    /// the table under `--max-addresses` (the writer forgets exactly those).
    ///
    /// # Errors
    /// On SQLite errors; the whole batch is rolled back then (`evicted` may hold addresses
    /// that were not deleted after all).
    pub fn commit_batch_reporting(
        &mut self,
        batch: &Batch,
        policy: &Policy,
        now: i64,
        evicted: &mut Vec<PeerAddr>,
    ) -> rusqlite::Result<BatchSummary> {
        let known = match self.known {
            Some(n) => n,
            None => self.count()?,
        };
        let tx = self.conn.transaction()?;
        // Learned addresses first: a seed queued straight to a worker has its row by the
        // time its result is recorded, even when both arrive in one batch.
        let mut summary = BatchSummary {
            inserted: insert_peers(&tx, &batch.learned, now, &mut self.ranks)?,
            ..BatchSummary::default()
        };
        for result in &batch.results {
            if record_result(&tx, result, policy)? {
                summary.recorded += 1;
            }
        }
        let mut known = known + summary.inserted as u64;
        if known > policy.max_addresses {
            // Another process (import) may have added rows: count exactly before evicting.
            known = tx.query_row("SELECT count(*) FROM peers", [], |r| r.get(0))?;
            summary.evicted = evict(&tx, known.saturating_sub(policy.max_addresses), evicted)?;
            known -= summary.evicted as u64;
        }
        tx.commit()?;
        self.known = Some(known);
        Ok(summary)
    }

    /// Deletes addresses never reached although tried, first heard of more than
    /// `max_age` wall-clock seconds ago. Returns how many went.
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn prune(&mut self, now: i64, max_age: i64) -> rusqlite::Result<usize> {
        let pruned = self.conn.execute(
            "DELETE FROM peers WHERE last_success IS NULL AND tries > 0 AND first_seen < ?1",
            params![now - max_age],
        )?;
        // Recount now and then: other processes (import) change the table too.
        self.known = None;
        Ok(pruned)
    }

    /// Imports peers in one transaction. Dump lines replace the figures of a known
    /// address (an explicit operator action); every imported peer is due at once.
    /// Not capped by `--max-addresses`. Returns how many rows were inserted or updated.
    ///
    /// # Errors
    /// On SQLite errors; nothing is written then.
    pub fn import(&mut self, peers: &[ImportedPeer], now: i64) -> rusqlite::Result<usize> {
        let tx = self.conn.transaction()?;
        let mut changed = 0;
        for peer in peers {
            changed += match &peer.figures {
                Some(figures) => import_figures(&tx, &peer.addr, figures, now)?,
                None => tx.prepare_cached(IMPORT_PLAIN)?.execute(params![
                    peer.addr.to_string(),
                    peer.addr.family() as i64,
                    now,
                    now,
                ])?,
            };
        }
        tx.commit()?;
        self.known = None;
        Ok(changed)
    }
}

/// Adds learned addresses, or notes what is new about known ones: a newer gossip timestamp,
/// another announcing source (gossip never overwrites what a peer told us itself).
const UPSERT_LEARNED: &str = "INSERT INTO peers (address, family, services, source, \
    first_seen, last_seen, next_try, source_bits, evidence, source_rank) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, popcount(?8), ?9) \
    ON CONFLICT (address) DO UPDATE SET last_seen = max(coalesce(last_seen, 0), ?6), \
    source_bits = source_bits | ?8, evidence = popcount(source_bits | ?8) \
    WHERE ?6 > coalesce(last_seen, 0) OR source_bits | ?8 != source_bits";

/// Upserts learned addresses; a new row from an announcer takes that announcer's next rank.
/// Returns how many rows were inserted.
fn insert_peers(
    tx: &Transaction<'_>,
    peers: &[NewPeer],
    now: i64,
    ranks: &mut SourceRanks,
) -> rusqlite::Result<usize> {
    let mut stmt = tx.prepare_cached(UPSERT_LEARNED)?;
    let mut inserted = 0;
    for peer in peers {
        let before = tx.last_insert_rowid();
        let changed = stmt.execute(params![
            peer.addr.to_string(),
            peer.addr.family() as i64,
            peer.services as i64,
            peer.source.as_str(),
            now,
            peer.seen,
            now,
            peer.announced_by as i64,
            ranks.next(peer.announcer),
        ])?;
        if changed > 0 && tx.last_insert_rowid() != before {
            inserted += 1;
            ranks.added(peer.announcer);
        }
    }
    Ok(inserted)
}

/// Deletes up to `n` never-reached addresses: first those that were tried and failed,
/// the longest backed-off first; then never-tried ones, those with the weakest evidence
/// first (fewest announcing sources), and within a level a source's last-ranked addresses
/// first (so one source's flood evicts itself before others' addresses go). Peers that ever
/// answered are never evicted. Appends the deleted addresses to `out`; returns how many
/// rows went.
fn evict(tx: &Transaction<'_>, n: u64, out: &mut Vec<PeerAddr>) -> rusqlite::Result<usize> {
    let mut evicted = 0;
    for (class, order) in [
        ("last_success IS NULL AND tries > 0", "next_try DESC"),
        (
            "last_success IS NULL AND tries = 0",
            "evidence, source_rank DESC, next_try DESC",
        ),
    ] {
        let left = n.saturating_sub(evicted as u64);
        if left == 0 {
            break;
        }
        let sql = format!(
            "DELETE FROM peers WHERE id IN \
             (SELECT id FROM peers WHERE {class} ORDER BY {order}, id DESC LIMIT ?1) \
             RETURNING address"
        );
        let mut stmt = tx.prepare(&sql)?;
        let mut rows = stmt.query(params![left as i64])?;
        while let Some(row) = rows.next()? {
            evicted += 1;
            // Every address in the table was written from a `PeerAddr`; an unparsable one
            // (edited by hand) is counted and otherwise ignored.
            if let Ok(addr) = row.get_ref(0)?.as_str()?.parse() {
                out.push(addr);
            }
        }
    }
    Ok(evicted)
}

/// A plain `IP:PORT` line: a new address, or a known one made due.
const IMPORT_PLAIN: &str = "INSERT INTO peers (address, family, source, first_seen, next_try) \
    VALUES (?1, ?2, 'import', ?3, ?4) \
    ON CONFLICT (address) DO UPDATE SET next_try = min(coalesce(next_try, ?4), ?4)";

/// A dump line: its figures replace those of a known address.
const IMPORT_FIGURES: &str = "INSERT INTO peers (address, family, services, source, \
    first_seen, good, last_success, reliability_2h, reliability_8h, reliability_1d, \
    reliability_1w, reliability_1m, start_height, version, user_agent, next_try) \
    VALUES (?1, ?2, ?3, 'import', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
    ON CONFLICT (address) DO UPDATE SET services = ?3, good = ?5, last_success = ?6, \
    reliability_2h = ?7, reliability_8h = ?8, reliability_1d = ?9, reliability_1w = ?10, \
    reliability_1m = ?11, start_height = ?12, version = ?13, user_agent = ?14, next_try = ?15";

fn import_figures(
    tx: &Transaction<'_>,
    addr: &PeerAddr,
    d: &DumpFigures,
    now: i64,
) -> rusqlite::Result<usize> {
    let [r2h, r8h, r1d, r1w, r1m] = d.reliability;
    tx.prepare_cached(IMPORT_FIGURES)?.execute(params![
        addr.to_string(),
        addr.family() as i64,
        d.services as i64,
        now,
        d.good,
        (d.last_success > 0).then_some(d.last_success),
        r2h,
        r8h,
        r1d,
        r1w,
        r1m,
        d.start_height,
        d.version,
        d.user_agent,
        now,
    ])
}

/// The columns every probe rewrites; the outcome's own columns are set separately.
static UPDATE_AFTER_PROBE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE peers SET tries = ?2, successes = ?3, failures_in_row = ?4, last_try = ?5, \
         good = ?6, banned_until = ?7, ban_reason = ?8, next_try = ?9, {} WHERE id = ?1",
        window_assignments(10)
    )
});

/// The columns of a peer's [`Record`], and its row id.
static READ_RECORD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT id, tries, successes, failures_in_row, last_try, version, start_height, {} \
         FROM peers WHERE address = ?1",
        *WINDOW_COLUMNS
    )
});

/// Folds one probe into its row: reads the peer's record, asks the reliability model for
/// the verdict, writes both. Returns false if the row is gone (evicted meanwhile).
fn record_result(
    tx: &Transaction<'_>,
    result: &ProbeResult,
    policy: &Policy,
) -> rusqlite::Result<bool> {
    let Some((id, mut record)) = read_record(tx, &result.addr.to_string())? else {
        return Ok(false);
    };
    let probe = result.outcome.as_probe();
    record.fold(&probe, result.time, policy.scale);
    let requirements = policy.requirements(&result.addr);
    let verdict =
        reliability::verdict(&record, &probe, &requirements, policy.scale, rand::random());
    write_record(tx, id, &record, &verdict)?;
    write_outcome(tx, id, result)?;
    Ok(true)
}

fn read_record(tx: &Transaction<'_>, address: &str) -> rusqlite::Result<Option<(i64, Record)>> {
    let mut stmt = tx.prepare_cached(&READ_RECORD)?;
    stmt.query_row(params![address], |r| {
        let record = Record {
            tries: r.get(1)?,
            successes: r.get(2)?,
            failures_in_row: r.get(3)?,
            last_try: r.get(4)?,
            version: r.get(5)?,
            start_height: r.get(6)?,
            stats: read_windows(r, 7)?,
        };
        Ok((r.get(0)?, record))
    })
    .optional()
}

fn write_record(
    tx: &Transaction<'_>,
    id: i64,
    record: &Record,
    verdict: &Verdict,
) -> rusqlite::Result<()> {
    let windows = window_values(&record.stats);
    let (banned_until, ban_reason) = verdict.ban.map_or((0, None), |b| (b.until, Some(b.reason)));
    let mut values: Vec<&dyn ToSql> = vec![
        &id,
        &record.tries,
        &record.successes,
        &record.failures_in_row,
        &record.last_try,
        &verdict.good,
        &banned_until,
        &ban_reason,
        &verdict.next_try,
    ];
    values.extend(windows.iter().map(|v| v as &dyn ToSql));
    tx.prepare_cached(&UPDATE_AFTER_PROBE)?
        .execute(values.as_slice())?;
    Ok(())
}

/// Writes what the probe itself said. Only what changed: a failure leaves what the peer
/// said before (and its index entries) alone.
fn write_outcome(tx: &Transaction<'_>, id: i64, result: &ProbeResult) -> rusqlite::Result<()> {
    match &result.outcome {
        Outcome::Success {
            version,
            services,
            user_agent,
            start_height,
            transport,
        } => {
            tx.prepare_cached(
                "UPDATE peers SET last_success = ?2, last_error = NULL, \
                 last_getaddr = CASE WHEN ?3 THEN ?2 ELSE last_getaddr END, version = ?4, \
                 services = ?5, user_agent = ?6, start_height = ?7, transport = ?8 \
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                result.time,
                result.asked_getaddr,
                version,
                *services as i64,
                user_agent,
                start_height,
                transport,
            ])?;
        }
        Outcome::Failure { reason, .. } => {
            tx.prepare_cached("UPDATE peers SET last_error = ?2 WHERE id = ?1")?
                .execute(params![id, reason])?;
        }
    }
    Ok(())
}
