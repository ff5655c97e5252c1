//! The store's queries: what the scheduler takes next, the DNS answer sets, the rows and
//! counts of the `peers` and `stats` commands, the rows of a dump. Each names the index it
//! runs on, and none writes.

use std::net::IpAddr;

use rusqlite::{Row, params};

use super::Store;
use crate::addr::{Family, FamilySet, PeerAddr};
use crate::crawler::DuePeer;
use crate::dump::DumpFigures;

/// The scheduler's queries ([`Store::due`]), one per class in the order they are asked:
/// peers that answered before, never-tried ones, failing ones; each with the partial
/// index it uses (the benches check the query plans name them). `?3` is the set of
/// families the crawler can reach ([`FamilySet::bits`]): rows of the others are skipped.
pub const DUE_SQL: [(&str, &str); 3] = [
    (
        "SELECT address, last_getaddr, services FROM peers WHERE last_success IS NOT NULL \
         AND next_try <= ?1 AND (?3 >> family) & 1 ORDER BY next_try LIMIT ?2",
        "peers_due_answered",
    ),
    (
        "SELECT address, last_getaddr, services FROM peers WHERE last_success IS NULL AND tries = 0 \
         AND next_try <= ?1 AND (?3 >> family) & 1 \
         ORDER BY evidence DESC, source_rank, next_try LIMIT ?2",
        "peers_due_new",
    ),
    (
        "SELECT address, last_getaddr, services FROM peers WHERE last_success IS NULL AND tries > 0 \
         AND next_try <= ?1 AND (?3 >> family) & 1 ORDER BY next_try LIMIT ?2",
        "peers_due_failing",
    ),
];

/// The scheduler's queries for one network of Tor, I2P and CJDNS (`?3`, its family code),
/// in the same classes and orders as [`DUE_SQL`], on partial indexes that hold only those
/// networks' rows: in the general ones they are a few among many.
pub const HIDDEN_DUE_SQL: [(&str, &str); 3] = [
    (
        "SELECT address, last_getaddr, services FROM peers WHERE last_success IS NOT NULL \
         AND family >= 3 AND family = ?3 AND next_try <= ?1 ORDER BY next_try LIMIT ?2",
        "peers_hidden_due_answered",
    ),
    (
        "SELECT address, last_getaddr, services FROM peers WHERE last_success IS NULL AND tries = 0 \
         AND family >= 3 AND family = ?3 AND next_try <= ?1 \
         ORDER BY evidence DESC, source_rank, next_try LIMIT ?2",
        "peers_hidden_due_new",
    ),
    (
        "SELECT address, last_getaddr, services FROM peers WHERE last_success IS NULL AND tries > 0 \
         AND family >= 3 AND family = ?3 AND next_try <= ?1 ORDER BY next_try LIMIT ?2",
        "peers_hidden_due_failing",
    ),
];

/// The DNS answer-set query ([`Store::good_ips`]): good peers of family `?1` whose
/// services include mask `?2`, read from the covering index `peers_good`; for a mask with
/// P2P_V2 (bit 11, 2048), only peers whose last successful probe was v2 (SPEC §10).
pub const GOOD_SQL: &str = "SELECT address FROM peers WHERE good = 1 AND family = ?1 \
    AND services & ?2 = ?2 AND (?2 & 2048 = 0 OR transport = 'v2')";

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
    /// `v1` or `v2`: the transport of the last successful probe (`None` before one).
    pub transport: Option<String>,
    /// Its autonomous system by `--asmap` (0: not mapped); `None` without an asmap. Not a
    /// column: the `peers` command fills it in.
    pub asn: Option<u32>,
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
    /// (family, status, count), as `peers` names the status.
    pub by_status: Vec<(Family, String, u64)>,
    /// (last_error, count) over rows whose last probe failed.
    pub by_error: Vec<(String, u64)>,
    /// (family, v1, v2): rows by the transport of their last successful probe.
    pub by_transport: Vec<(Family, u64, u64)>,
}

impl Summary {
    /// Counts `n` rows of `family` with `status`, `tried` of them in the last hour.
    fn add(&mut self, family: Option<Family>, status: &str, n: u64, tried: u64) {
        self.known += n;
        self.tried_last_hour += tried;
        match status {
            "good" => self.good += n,
            "new" => self.new += n,
            "reachable" => self.reachable += n,
            "unreachable" => self.unreachable += n,
            _ => self.banned += n,
        }
        let Some(family) = family else { return };
        self.by_status.push((family, status.to_owned(), n));
        let good = if status == "good" { n } else { 0 };
        match self.by_family.iter_mut().find(|(f, ..)| *f == family) {
            Some((_, known, g)) => (*known, *g) = (*known + n, *g + good),
            None => self.by_family.push((family, n, good)),
        }
    }

    /// Good and known peers per network, as the status line shows them
    /// (`ipv4 120/900, onion 12/300`).
    pub fn by_network(&self) -> String {
        let parts: Vec<String> = (self.by_family.iter())
            .map(|(family, known, good)| format!("{} {good}/{known}", family.name()))
            .collect();
        parts.join(", ")
    }
}

/// Column list read into [`PeerRow`], in order.
const ROW_COLUMNS: &str = "address, family, good, services, tries, successes, last_try, \
    last_success, last_error, reliability_2h, reliability_8h, reliability_1d, reliability_1w, \
    reliability_1m, version, user_agent, start_height, banned_until, transport";

impl Store {
    /// Up to `limit` addresses due at `now`: peers that answered before first, then
    /// never-tried ones (the most evidence first, each source in turn), then failing ones;
    /// the others by due time. Every family; see [`Store::due_in`].
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn due(&self, now: i64, limit: usize) -> rusqlite::Result<Vec<DuePeer>> {
        self.due_in(now, limit, FamilySet::ALL)
    }

    /// As [`Store::due`], of the families in `families` only (those the crawler can reach
    /// now: a network without its flag, or whose proxy is down or full, waits). One of Tor,
    /// I2P or CJDNS alone is read from its own indexes ([`HIDDEN_DUE_SQL`]).
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn due_in(
        &self,
        now: i64,
        limit: usize,
        families: FamilySet,
    ) -> rusqlite::Result<Vec<DuePeer>> {
        let (queries, filter) = match families.only() {
            Some(family) if family.is_hidden() => (HIDDEN_DUE_SQL, family as i64),
            _ => (DUE_SQL, families.bits()),
        };
        let mut due = Vec::with_capacity(limit);
        for (sql, _index) in queries {
            if due.len() >= limit {
                break;
            }
            let mut stmt = self.conn.prepare_cached(sql)?;
            let left = (limit - due.len()) as i64;
            let rows = stmt.query_map(params![now, left, filter], due_peer)?;
            for row in rows {
                due.extend(row?);
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

    /// Counts by status and by network, and probes in the last hour, in one pass over the
    /// table (the status line); `by_error` is left empty.
    ///
    /// # Errors
    /// On SQLite errors.
    pub fn counts(&self, now: i64) -> rusqlite::Result<Summary> {
        let mut s = Summary::default();
        let sql = format!(
            "SELECT family, status, count(*), total(last_try >= ?2) FROM \
             (SELECT family, {STATUS_SQL} AS status, last_try FROM peers) \
             GROUP BY family, status ORDER BY family"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![now, now - 3600])?;
        while let Some(r) = rows.next()? {
            let (family, status): (i64, String) = (r.get(0)?, r.get(1)?);
            let (n, tried): (u64, f64) = (r.get(2)?, r.get(3)?);
            s.add(Family::from_code(family), &status, n, tried as u64);
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
            "SELECT last_error, count(*) FROM peers WHERE last_error IS NOT NULL \
             GROUP BY last_error ORDER BY count(*) DESC, last_error",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            s.by_error.push((r.get(0)?, r.get(1)?));
        }
        s.by_transport = self.by_transport()?;
        Ok(s)
    }

    /// Rows by family and the transport of their last successful probe.
    fn by_transport(&self) -> rusqlite::Result<Vec<(Family, u64, u64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT family, total(transport = 'v1'), total(transport = 'v2') FROM peers \
             WHERE transport IS NOT NULL GROUP BY family ORDER BY family",
        )?;
        let rows = stmt.query_map([], |r| {
            let (v1, v2): (f64, f64) = (r.get(1)?, r.get(2)?);
            Ok((Family::from_code(r.get(0)?), v1 as u64, v2 as u64))
        })?;
        let mut out = Vec::new();
        for row in rows {
            if let (Some(family), v1, v2) = row? {
                out.push((family, v1, v2));
            }
        }
        Ok(out)
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

/// A row of a due query (address, last `getaddr`, services); `None` for an address that
/// no longer parses.
fn due_peer(r: &Row<'_>) -> rusqlite::Result<Option<DuePeer>> {
    let addr = r.get::<_, String>(0)?.parse().ok();
    let (last_getaddr, services) = (r.get(1)?, r.get::<_, i64>(2)? as u64);
    Ok(addr.map(|addr| DuePeer {
        addr,
        last_getaddr,
        services,
    }))
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
        transport: r.get(18)?,
        status: r.get(19)?,
        asn: None,
    })
}
