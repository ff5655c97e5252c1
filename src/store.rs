//! The peer database: one SQLite file with a `peers` table that operators can read with
//! `sqlite3`, and the typed queries the crawler, the DNS server and the CLI run on it.
//!
//! Each thread opens its own [`Store`] (a rusqlite `Connection` is `Send`, not `Sync`).
//! The crawler's writer thread is the only one that writes while the seeder runs; it
//! commits probe results and learned addresses in batched transactions. The database
//! is in WAL mode, so readers (DNS, status, CLI) never wait for the writer.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Transaction, params};

use crate::addr::{Family, PeerAddr};
use crate::reliability::{self, Requirements, Standing, Stats, Window};

/// The scheduler's queries ([`Store::due`]), one per class in the order they are asked:
/// peers that answered before, never-tried ones, failing ones; each with the partial
/// index it uses (the benches check the query plans name them).
pub const DUE_SQL: [(&str, &str); 3] = [
    (
        "SELECT address, last_getaddr FROM peers WHERE last_success IS NOT NULL \
         AND next_try <= ?1 ORDER BY next_try LIMIT ?2",
        "peers_due_answered",
    ),
    (
        "SELECT address, last_getaddr FROM peers WHERE last_success IS NULL AND tries = 0 \
         AND next_try <= ?1 ORDER BY next_try LIMIT ?2",
        "peers_due_new",
    ),
    (
        "SELECT address, last_getaddr FROM peers WHERE last_success IS NULL AND tries > 0 \
         AND next_try <= ?1 ORDER BY next_try LIMIT ?2",
        "peers_due_failing",
    ),
];

/// The DNS answer-set query ([`Store::good_ips`]): good peers of family `?1` whose
/// services include mask `?2`, read from the covering index `peers_good`.
pub const GOOD_SQL: &str =
    "SELECT address FROM peers WHERE good = 1 AND family = ?1 AND services & ?2 = ?2";

/// Schema migrations, applied in order; `PRAGMA user_version` counts the applied ones.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_init.sql")];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Why a database could not be opened. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("database {0} does not exist (create it with `dnsseeder run` or `dnsseeder import`)")]
    Missing(PathBuf),
    #[error(
        "{0} is not a dnsseeder database (not SQLite, truncated or corrupt); it was left \
         untouched: check --db, or move the file away to start afresh"
    )]
    NotADatabase(PathBuf),
    #[error(
        "database {path} has schema version {found}, newer than this dnsseeder supports \
         ({supported}); upgrade dnsseeder (the file was left untouched)"
    )]
    Newer {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot open database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// Where a new address came from (the `source` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Seed,
    DnsSeed,
    Gossip,
    Import,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Seed => "seed",
            Source::DnsSeed => "dns-seed",
            Source::Gossip => "gossip",
            Source::Import => "import",
        }
    }
}

/// An address heard of, not yet probed by us.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPeer {
    pub addr: PeerAddr,
    /// Services as gossiped (kept only until the peer tells us its own).
    pub services: u64,
    /// Gossip timestamp, UNIX seconds.
    pub seen: i64,
    pub source: Source,
}

/// What a probe found out.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handshake completed.
    Success {
        version: i64,
        services: u64,
        user_agent: String,
        start_height: i64,
    },
    /// It did not; `reason` is stored in `last_error` (`refused`, `timeout`, ...).
    /// A protocol `violation` (bad header, wrong magic, oversize) bans the peer for a day.
    Failure {
        reason: &'static str,
        violation: bool,
    },
}

/// One finished probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub addr: PeerAddr,
    /// When the probe ended, UNIX seconds.
    pub time: i64,
    pub outcome: Outcome,
    /// `getaddr` was sent (and the peer answered the handshake).
    pub asked_getaddr: bool,
}

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

/// A batch for the writer: results and the addresses they taught us, one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub results: Vec<ProbeResult>,
    pub learned: Vec<NewPeer>,
}

/// What committing a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub recorded: usize,
    pub inserted: usize,
    pub evicted: usize,
}

/// An address that is due for a probe.
#[derive(Debug, Clone, PartialEq)]
pub struct DuePeer {
    pub addr: PeerAddr,
    pub last_getaddr: Option<i64>,
}

/// A peer's status, derived from its columns (see [`STATUS_SQL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    New,
    Good,
    Reachable,
    Unreachable,
    Banned,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::New,
        Status::Good,
        Status::Reachable,
        Status::Unreachable,
        Status::Banned,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Good => "good",
            Status::Reachable => "reachable",
            Status::Unreachable => "unreachable",
            Status::Banned => "banned",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown status '{s}' (expected new, good, reachable, unreachable or banned)"
                )
            })
    }
}

/// The status of a row as an SQL expression over its columns; `?1` is now.
pub const STATUS_SQL: &str = "CASE \
    WHEN banned_until > ?1 THEN 'banned' \
    WHEN good = 1 THEN 'good' \
    WHEN last_success IS NULL AND tries = 0 THEN 'new' \
    WHEN last_error IS NULL THEN 'reachable' \
    ELSE 'unreachable' END";

/// A row as the CLI shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRow {
    pub address: String,
    pub family: Family,
    pub status: String,
    pub good: bool,
    pub services: u64,
    pub tries: i64,
    pub successes: i64,
    pub last_try: Option<i64>,
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    /// 2h, 8h, 1d, 1w, 1m reliabilities, 0..1.
    pub reliability: [f64; 5],
    pub version: i64,
    pub user_agent: String,
    pub start_height: i64,
    pub banned_until: i64,
}

/// Which rows `peers` lists.
#[derive(Debug, Clone, Default)]
pub struct PeerFilter {
    pub status: Option<Status>,
    /// Only peers having all these service bits.
    pub services: Option<u64>,
    pub family: Option<Family>,
    pub limit: Option<u64>,
}

/// A peer as imported from a dump line (figures absent for a plain `IP:PORT` line).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedPeer {
    pub addr: PeerAddr,
    pub figures: Option<DumpFigures>,
}

/// The recorded figures of a dump line.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpFigures {
    pub good: bool,
    pub last_success: i64,
    /// 2h, 8h, 1d, 1w, 1m reliabilities, 0..1.
    pub reliability: [f64; 5],
    pub start_height: i64,
    pub services: u64,
    pub version: i64,
    pub user_agent: String,
}

/// Counts for `stats` and the status line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub known: u64,
    pub good: u64,
    pub new: u64,
    pub reachable: u64,
    pub unreachable: u64,
    pub banned: u64,
    pub tried_last_hour: u64,
    /// (family, known, good)
    pub by_family: Vec<(Family, u64, u64)>,
    /// (last_error, count) over rows whose last probe failed.
    pub by_error: Vec<(String, u64)>,
}

/// Column list read into [`PeerRow`], in order.
const ROW_COLUMNS: &str = "address, family, good, services, tries, successes, last_try, \
    last_success, last_error, reliability_2h, reliability_8h, reliability_1d, reliability_1w, \
    reliability_1m, version, user_agent, start_height, banned_until";

/// A connection to the peer database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Rows in `peers` as this connection last knew them (for the address cap, so a
    /// batch does not count a million rows); `None` until first needed.
    known: Option<u64>,
}

impl Store {
    /// Opens the database at `path`, creating it if missing, and migrates it.
    ///
    /// # Errors
    /// Refuses files that are not SQLite databases and databases from a newer version,
    /// without writing to them.
    pub fn open(path: &Path) -> Result<Store, OpenError> {
        Store::open_with(path, true)
    }

    /// Opens an existing database and migrates it; a missing file is an error.
    ///
    /// # Errors
    /// As [`Store::open`], and [`OpenError::Missing`].
    pub fn open_existing(path: &Path) -> Result<Store, OpenError> {
        if !path.exists() {
            return Err(OpenError::Missing(path.to_owned()));
        }
        Store::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> Result<Store, OpenError> {
        let sqlite = |source| OpenError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        if !header_is_plausible(path) {
            return Err(OpenError::NotADatabase(path.to_owned()));
        }
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
        // The first read of the header tells a foreign or corrupt file; nothing is
        // written before it succeeds.
        let found: i64 = match conn.query_row("PRAGMA user_version", [], |r| r.get(0)) {
            Ok(v) => v,
            Err(e) if is_not_a_database(&e) => {
                return Err(OpenError::NotADatabase(path.to_owned()));
            }
            Err(e) => return Err(sqlite(e)),
        };
        if found > SCHEMA_VERSION {
            return Err(OpenError::Newer {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
            known: None,
        };
        store.migrate(found).map_err(sqlite)?;
        Ok(store)
    }

    fn migrate(&mut self, from: i64) -> rusqlite::Result<()> {
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            let tx = self.conn.transaction()?;
            // Re-check inside the write lock: another process may have migrated meanwhile.
            let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if now <= index as i64 {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", index as i64 + 1)?;
            }
            tx.commit()?;
        }
        Ok(())
    }

    /// Settings for the one connection that writes while the seeder runs: a 16 MiB page
    /// cache and a larger WAL between checkpoints, so a batch commit is not followed by a
    /// checkpoint and its sync (measured: 1.5-2.7x the commit rate, docs/PERFORMANCE.md).
    /// The cache was 64 MiB; 16 MiB commits within a few percent of it in the store bench
    /// and keeps `dnsseeder run` under its 100 MB under a flood of gossip (scale bench).
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn tune_for_writer(&self) -> rusqlite::Result<()> {
        self.conn.pragma_update(None, "cache_size", -16_384)?;
        self.conn
            .pragma_update(None, "wal_autocheckpoint", 16_384)?;
        // After a checkpoint, give back WAL space beyond 64 MiB.
        self.conn
            .pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
    }

    /// Copies the WAL into the database and truncates it: frees disk space after a
    /// write failed for want of it. Returns whether the checkpoint completed.
    ///
    /// # Errors
    /// On SQLite errors (it may fail again while the disk is full).
    pub fn checkpoint(&self) -> rusqlite::Result<bool> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|busy| busy == 0)
    }

    /// The file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for ad-hoc reads (tests, `EXPLAIN QUERY PLAN`).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// SQLite's `PRAGMA data_version`: it changes when another connection commits.
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn data_version(&self) -> rusqlite::Result<i64> {
        self.conn.query_row("PRAGMA data_version", [], |r| r.get(0))
    }

    /// Number of rows in `peers`.
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn count(&self) -> rusqlite::Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM peers", [], |r| r.get(0))
    }

    /// Adds addresses heard of; known addresses keep their row (gossip never overwrites
    /// what a peer told us itself), except that a newer gossip timestamp is noted.
    /// Returns how many rows were inserted.
    ///
    /// # Errors
    /// On SQLite errors; nothing is written then.
    pub fn add_peers(&mut self, peers: &[NewPeer], now: i64) -> rusqlite::Result<usize> {
        let tx = self.conn.transaction()?;
        let inserted = insert_peers(&tx, peers, now)?;
        tx.commit()?;
        self.known = self.known.map(|n| n + inserted as u64);
        Ok(inserted)
    }

    /// Makes the given known addresses due at once (bootstrap seeds).
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn make_due(&mut self, addrs: &[PeerAddr], now: i64) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE peers SET next_try = ?2 WHERE address = ?1 AND banned_until <= ?2",
            )?;
            for addr in addrs {
                stmt.execute(params![addr.to_string(), now])?;
            }
        }
        tx.commit()
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
        let mut summary = BatchSummary::default();
        for result in &batch.results {
            if record_result(&tx, result, policy)? {
                summary.recorded += 1;
            }
        }
        summary.inserted = insert_peers(&tx, &batch.learned, now)?;
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

    /// Up to `limit` addresses due at `now`: peers that answered before first, then
    /// never-tried ones, then failing ones; each class by due time.
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn due(&self, now: i64, limit: usize) -> rusqlite::Result<Vec<DuePeer>> {
        let mut due = Vec::with_capacity(limit);
        for (sql, _index) in DUE_SQL {
            if due.len() >= limit {
                break;
            }
            let mut stmt = self.conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params![now, (limit - due.len()) as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
            })?;
            for row in rows {
                let (text, last_getaddr) = row?;
                if let Ok(addr) = text.parse() {
                    due.push(DuePeer { addr, last_getaddr });
                }
            }
        }
        Ok(due)
    }

    /// Every good peer of `family` whose services include all bits of `mask`: the full
    /// answer set the DNS cache is rebuilt from (indexed by `peers_good`).
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn good_ips(&self, family: Family, mask: u64) -> rusqlite::Result<Vec<IpAddr>> {
        let mut stmt = self.conn.prepare_cached(GOOD_SQL)?;
        let rows = stmt.query_map(params![family as i64, mask as i64], |r| {
            r.get::<_, String>(0)
        })?;
        let mut ips = Vec::new();
        for text in rows {
            if let Some(sock) = text?.parse::<PeerAddr>().ok().and_then(|a| a.socket_addr()) {
                ips.push(sock.ip());
            }
        }
        Ok(ips)
    }

    /// Rows for `peers`, sorted by 30-day reliability, best first.
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn peers(&self, filter: &PeerFilter, now: i64) -> rusqlite::Result<Vec<PeerRow>> {
        let sql = format!(
            "SELECT {ROW_COLUMNS}, {STATUS_SQL} AS status FROM peers \
             WHERE (?2 IS NULL OR status = ?2) \
               AND (?3 IS NULL OR services & ?3 = ?3) \
               AND (?4 IS NULL OR family = ?4) \
             ORDER BY reliability_1m DESC, address LIMIT ?5"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(
            params![
                now,
                filter.status.map(Status::name),
                filter.services.map(|m| m as i64),
                filter.family.map(|f| f as i64),
                filter.limit.map_or(-1, |l| l as i64),
            ],
            peer_row,
        )?;
        rows.collect()
    }

    /// Calls `f` for every peer with a recorded success, by 30-day reliability, best
    /// first (the rows of a `dnsseed.dump`).
    ///
    /// # Errors
    /// On SQLite errors or when `f` fails.
    pub fn for_each_dump_row(
        &self,
        mut f: impl FnMut(&PeerAddr, &DumpFigures) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut stmt = self.conn.prepare(
            "SELECT address, good, last_success, reliability_2h, reliability_8h, \
             reliability_1d, reliability_1w, reliability_1m, start_height, services, version, \
             user_agent FROM peers WHERE last_success > 0 ORDER BY reliability_1m DESC, address",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let text: String = r.get(0)?;
            let Ok(addr) = text.parse::<PeerAddr>() else {
                continue;
            };
            let figures = DumpFigures {
                good: r.get(1)?,
                last_success: r.get(2)?,
                reliability: [r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?],
                start_height: r.get(8)?,
                services: r.get::<_, i64>(9)? as u64,
                version: r.get(10)?,
                user_agent: r.get(11)?,
            };
            f(&addr, &figures)?;
        }
        Ok(())
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
        {
            let mut with_figures = tx.prepare_cached(
                "INSERT INTO peers (address, family, services, source, first_seen, good, \
                 last_success, reliability_2h, reliability_8h, reliability_1d, reliability_1w, \
                 reliability_1m, start_height, version, user_agent, next_try) \
                 VALUES (?1, ?2, ?3, 'import', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
                 ON CONFLICT (address) DO UPDATE SET services = ?3, good = ?5, last_success = ?6, \
                 reliability_2h = ?7, reliability_8h = ?8, reliability_1d = ?9, \
                 reliability_1w = ?10, reliability_1m = ?11, start_height = ?12, version = ?13, \
                 user_agent = ?14, next_try = ?15",
            )?;
            let mut plain = tx.prepare_cached(
                "INSERT INTO peers (address, family, source, first_seen, next_try) \
                 VALUES (?1, ?2, 'import', ?3, ?4) \
                 ON CONFLICT (address) DO UPDATE SET next_try = min(coalesce(next_try, ?4), ?4)",
            )?;
            for peer in peers {
                let next_try = peer.addr.socket_addr().map(|_| now);
                let address = peer.addr.to_string();
                let family = peer.addr.family() as i64;
                changed += match &peer.figures {
                    Some(d) => with_figures.execute(params![
                        address,
                        family,
                        d.services as i64,
                        now,
                        d.good,
                        (d.last_success > 0).then_some(d.last_success),
                        d.reliability[0],
                        d.reliability[1],
                        d.reliability[2],
                        d.reliability[3],
                        d.reliability[4],
                        d.start_height,
                        d.version,
                        d.user_agent,
                        next_try,
                    ])?,
                    None => plain.execute(params![address, family, now, next_try])?,
                };
            }
        }
        tx.commit()?;
        self.known = None;
        Ok(changed)
    }

    /// Counts by status and probes in the last hour, in one pass over the table (the
    /// status line); `by_family` and `by_error` are left empty.
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn counts(&self, now: i64) -> rusqlite::Result<Summary> {
        let mut s = Summary::default();
        let sql = format!(
            "SELECT status, count(*), total(last_try >= ?2) FROM \
             (SELECT {STATUS_SQL} AS status, last_try FROM peers) GROUP BY status"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![now, now - 3600])?;
        while let Some(r) = rows.next()? {
            let (status, n, tried): (String, u64, f64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            s.known += n;
            s.tried_last_hour += tried as u64;
            match status.as_str() {
                "good" => s.good = n,
                "new" => s.new = n,
                "reachable" => s.reachable = n,
                "unreachable" => s.unreachable = n,
                _ => s.banned = n,
            }
        }
        Ok(s)
    }

    /// Counts by status, family and failure reason.
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn summary(&self, now: i64) -> rusqlite::Result<Summary> {
        let mut s = self.counts(now)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT family, count(*), sum(good) FROM peers GROUP BY family ORDER BY family",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            if let Some(family) = Family::from_code(r.get(0)?) {
                s.by_family.push((family, r.get(1)?, r.get(2)?));
            }
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT last_error, count(*) FROM peers WHERE last_error IS NOT NULL \
             GROUP BY last_error ORDER BY count(*) DESC, last_error",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            s.by_error.push((r.get(0)?, r.get(1)?));
        }
        Ok(s)
    }

    /// Number of peers whose last success is at or after `since`.
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn answered_since(&self, since: i64) -> rusqlite::Result<u64> {
        self.conn.query_row(
            "SELECT count(*) FROM peers WHERE last_success >= ?1 AND last_error IS NULL",
            params![since],
            |r| r.get(0),
        )
    }
}

/// Reads the 100-byte SQLite header without SQLite: a file that is not empty must start
/// with the SQLite magic, and must hold as many pages as its header says it has (a
/// truncated copy would otherwise open and fail later, in the middle of a crawl).
fn header_is_plausible(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return true; // missing: SQLite creates it, or reports why it cannot
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return true;
    };
    if len == 0 {
        return true;
    }
    let mut header = [0u8; 100];
    if len < 100 || file.read_exact(&mut header).is_err() || &header[..16] != b"SQLite format 3\0" {
        return false;
    }
    let be32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    let (change_counter, pages, valid_for) = (be32(24), u64::from(be32(28)), be32(92));
    // The page count is only meaningful when written by the same change as the counter,
    // and only when no WAL is left to replay (a crash during a checkpoint may leave page
    // 1 written before the file grew; SQLite recovers that from the WAL).
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_pending = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    wal_pending || valid_for != change_counter || len >= pages * page_size
}

fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

fn peer_row(r: &Row<'_>) -> rusqlite::Result<PeerRow> {
    Ok(PeerRow {
        address: r.get(0)?,
        family: Family::from_code(r.get(1)?).unwrap_or(Family::Ipv4),
        good: r.get(2)?,
        services: r.get::<_, i64>(3)? as u64,
        tries: r.get(4)?,
        successes: r.get(5)?,
        last_try: r.get(6)?,
        last_success: r.get(7)?,
        last_error: r.get(8)?,
        reliability: [r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?, r.get(13)?],
        version: r.get(14)?,
        user_agent: r.get(15)?,
        start_height: r.get(16)?,
        banned_until: r.get(17)?,
        status: r.get(18)?,
    })
}

fn insert_peers(tx: &Transaction<'_>, peers: &[NewPeer], now: i64) -> rusqlite::Result<usize> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO peers (address, family, services, source, first_seen, last_seen, next_try) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (address) DO UPDATE SET last_seen = max(coalesce(last_seen, 0), ?6) \
         WHERE ?6 > coalesce(last_seen, 0)",
    )?;
    let mut inserted = 0;
    for peer in peers {
        let address = peer.addr.to_string();
        let next_try = peer.addr.socket_addr().map(|_| now);
        let before = tx.last_insert_rowid();
        let changed = stmt.execute(params![
            address,
            peer.addr.family() as i64,
            peer.services as i64,
            peer.source.as_str(),
            now,
            peer.seen,
            next_try,
        ])?;
        if changed > 0 && tx.last_insert_rowid() != before {
            inserted += 1;
        }
    }
    Ok(inserted)
}

/// Deletes up to `n` never-reached addresses: first those that were tried and failed,
/// the longest backed-off first; then never-tried ones, the most recently learned first,
/// so a burst of gossip evicts itself rather than what was learned before it. Peers that
/// ever answered are never evicted. Appends the deleted addresses to `out`; returns how
/// many rows went.
fn evict(tx: &Transaction<'_>, n: u64, out: &mut Vec<PeerAddr>) -> rusqlite::Result<usize> {
    let mut evicted = 0;
    for (class, order) in [
        ("last_success IS NULL AND tries > 0", "next_try DESC"),
        ("last_success IS NULL AND tries = 0", "next_try DESC"),
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

/// The columns every probe rewrites; the outcome's own columns are set separately.
const UPDATE_AFTER_PROBE: &str = "UPDATE peers SET tries = ?2, successes = ?3, \
    failures_in_row = ?4, last_try = ?5, \
    reliability_2h = ?6, count_2h = ?7, weight_2h = ?8, \
    reliability_8h = ?9, count_8h = ?10, weight_8h = ?11, \
    reliability_1d = ?12, count_1d = ?13, weight_1d = ?14, \
    reliability_1w = ?15, count_1w = ?16, weight_1w = ?17, \
    reliability_1m = ?18, count_1m = ?19, weight_1m = ?20, \
    good = ?21, banned_until = ?22, ban_reason = ?23, next_try = ?24 WHERE id = ?1";

/// The columns `record_result` reads before folding a probe in.
struct Previous {
    id: i64,
    tries: i64,
    successes: i64,
    failures_in_row: i64,
    last_try: Option<i64>,
    stats: Stats,
    version: i64,
    start_height: i64,
}

fn read_previous(tx: &Transaction<'_>, address: &str) -> rusqlite::Result<Option<Previous>> {
    let mut stmt = tx.prepare_cached(
        "SELECT tries, successes, failures_in_row, last_try, version, start_height, id, \
         reliability_2h, count_2h, weight_2h, reliability_8h, count_8h, weight_8h, \
         reliability_1d, count_1d, weight_1d, reliability_1w, count_1w, weight_1w, \
         reliability_1m, count_1m, weight_1m FROM peers WHERE address = ?1",
    )?;
    stmt.query_row(params![address], |r| {
        let mut stats = Stats::default();
        for (i, w) in stats.windows.iter_mut().enumerate() {
            *w = Window {
                reliability: r.get(7 + 3 * i)?,
                count: r.get(8 + 3 * i)?,
                weight: r.get(9 + 3 * i)?,
            };
        }
        Ok(Previous {
            id: r.get(6)?,
            tries: r.get(0)?,
            successes: r.get(1)?,
            failures_in_row: r.get(2)?,
            last_try: r.get(3)?,
            version: r.get(4)?,
            start_height: r.get(5)?,
            stats,
        })
    })
    .optional()
}

/// Folds one probe into its row. Returns false if the row is gone (evicted meanwhile).
fn record_result(
    tx: &Transaction<'_>,
    result: &ProbeResult,
    policy: &Policy,
) -> rusqlite::Result<bool> {
    let address = result.addr.to_string();
    let Some(prev) = read_previous(tx, &address)? else {
        return Ok(false);
    };
    let success = matches!(result.outcome, Outcome::Success { .. });
    let mut standing = Standing {
        stats: prev.stats,
        tries: prev.tries + 1,
        successes: prev.successes + i64::from(success),
        version: prev.version,
        start_height: prev.start_height,
    };
    let age = prev.last_try.map(|t| (result.time - t) as f64);
    standing.stats.update(success, age, policy.scale);
    if let Outcome::Success {
        version,
        start_height,
        ..
    } = &result.outcome
    {
        standing.version = *version;
        standing.start_height = *start_height;
    }
    let requirements = Requirements {
        default_port: result.addr.port == policy.default_port,
        routable: policy.allow_private || result.addr.is_routable(),
        min_height: policy.min_height,
    };
    let good = reliability::is_good(&standing, &requirements);
    let (ban, ban_reason) = match &result.outcome {
        Outcome::Failure {
            violation: true,
            reason,
        } => (reliability::VIOLATION_BAN, Some(*reason)),
        _ => {
            let ban = reliability::ban_seconds(&standing, good);
            let why = if standing.version > 0 && standing.version < reliability::MIN_VERSION {
                "old-version"
            } else {
                "unreliable"
            };
            (ban, (ban > 0.0).then_some(why))
        }
    };
    let failures_in_row = if success { 0 } else { prev.failures_in_row + 1 };
    let jitter: f64 = rand::random();
    let retry = reliability::retry_seconds(failures_in_row.min(64) as u32, jitter);
    let banned_until = if ban > 0.0 {
        result.time + (ban * policy.scale).ceil() as i64
    } else {
        0
    };
    let next_try = (result.time + (retry * policy.scale).ceil() as i64).max(banned_until);
    let w = &standing.stats.windows;
    let common = params![
        prev.id,
        standing.tries,
        standing.successes,
        failures_in_row,
        result.time,
        w[0].reliability,
        w[0].count,
        w[0].weight,
        w[1].reliability,
        w[1].count,
        w[1].weight,
        w[2].reliability,
        w[2].count,
        w[2].weight,
        w[3].reliability,
        w[3].count,
        w[3].weight,
        w[4].reliability,
        w[4].count,
        w[4].weight,
        good && ban == 0.0,
        banned_until,
        ban_reason,
        next_try,
    ];
    tx.prepare_cached(UPDATE_AFTER_PROBE)?.execute(common)?;
    // Only what changed: a failure leaves what the peer said (and its index entries) alone.
    match &result.outcome {
        Outcome::Success {
            version,
            services,
            user_agent,
            start_height,
        } => {
            tx.prepare_cached(
                "UPDATE peers SET last_success = ?2, last_error = NULL, \
                 last_getaddr = CASE WHEN ?3 THEN ?2 ELSE last_getaddr END, version = ?4, \
                 services = ?5, user_agent = ?6, start_height = ?7 WHERE id = ?1",
            )?
            .execute(params![
                prev.id,
                result.time,
                result.asked_getaddr,
                version,
                *services as i64,
                user_agent,
                start_height,
            ])?;
        }
        Outcome::Failure { reason, .. } => {
            tx.prepare_cached("UPDATE peers SET last_error = ?2 WHERE id = ?1")?
                .execute(params![prev.id, reason])?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
