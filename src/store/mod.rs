//! The peer database: one SQLite file with a `peers` table that operators can read with
//! `sqlite3`, and the typed queries the crawler, the DNS server and the CLI run on it.
//!
//! Each thread opens its own [`Store`] (a rusqlite `Connection` is `Send`, not `Sync`).
//! The crawler's writer thread is the only one that writes while the seeder runs; it
//! commits probe results and learned addresses in batched transactions. The database
//! is in WAL mode, so readers (DNS, status, CLI) never wait for the writer.
//!
//! The store decides nothing about peers: who is good, banned or due again is the verdict
//! of [`crate::reliability`], which the write path asks for each probe result. Its files
//! follow its seams: `open.rs` (opening, checking and migrating the file), `read.rs` (the
//! queries of the scheduler, DNS and CLI) and `write.rs` (the writer's batches and imports).

mod open;
mod read;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use rusqlite::{Connection, Row};

use crate::crawler::SourceGroup;
use crate::reliability::{Stats, WINDOW_NAMES};

pub use open::{OpenError, SCHEMA_VERSION};
pub use read::{
    DUE_SQL, GOOD_SQL, HIDDEN_DUE_SQL, PeerFilter, PeerRow, STATUS_SQL, Status, Summary,
};
pub use write::BatchSummary;

/// A connection to the peer database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Rows in `peers` as this connection last knew them (for the address cap, so a
    /// batch does not count a million rows); `None` until first needed.
    known: Option<u64>,
    /// How many rows each announcing source group has added through this connection (the
    /// writer's): the `source_rank` of its next new row.
    ranks: SourceRanks,
}

/// Addresses added per announcing source group, for `source_rank`. Bounded: past
/// [`SourceRanks::MAX_GROUPS`] groups it starts over, which only lets the sources heard of
/// since then begin again at rank 0 (as after a restart).
#[derive(Debug, Default)]
struct SourceRanks(HashMap<SourceGroup, i64>);

impl SourceRanks {
    const MAX_GROUPS: usize = 100_000;

    /// The rank the next new row from `group` gets.
    fn next(&self, group: Option<SourceGroup>) -> i64 {
        group.and_then(|g| self.0.get(&g).copied()).unwrap_or(0)
    }

    /// Counts a new row from `group`.
    fn added(&mut self, group: Option<SourceGroup>) {
        let Some(group) = group else { return };
        if self.0.len() >= Self::MAX_GROUPS && !self.0.contains_key(&group) {
            self.0.clear();
        }
        *self.0.entry(group).or_default() += 1;
    }
}

impl Store {
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
}

/// The 15 columns of the five reliability windows, in the order of [`Stats::windows`]:
/// `reliability_2h, count_2h, weight_2h, reliability_8h, ...`. Every query that reads or
/// writes the windows names them through this list (and [`read_windows`],
/// [`window_values`]), so the order cannot differ between a query and its values.
pub static WINDOW_COLUMNS: LazyLock<String> = LazyLock::new(|| window_column_names().join(", "));

fn window_column_names() -> Vec<String> {
    WINDOW_NAMES
        .iter()
        .flat_map(|w| ["reliability", "count", "weight"].map(|c| format!("{c}_{w}")))
        .collect()
}

/// `reliability_2h = ?N, count_2h = ?N+1, ...`: assignments of the 15 window columns to
/// the parameters from `first` on, for an `UPDATE`.
pub fn window_assignments(first: usize) -> String {
    let assignments: Vec<String> = window_column_names()
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", first + i))
        .collect();
    assignments.join(", ")
}

/// The five windows read from 15 consecutive columns of `row`, starting at `first`, in
/// the order of [`WINDOW_COLUMNS`].
///
/// # Errors
/// When a column is missing or not a number.
pub fn read_windows(row: &Row<'_>, first: usize) -> rusqlite::Result<Stats> {
    let mut stats = Stats::default();
    for (i, w) in stats.windows.iter_mut().enumerate() {
        let at = first + 3 * i;
        w.reliability = row.get(at)?;
        w.count = row.get(at + 1)?;
        w.weight = row.get(at + 2)?;
    }
    Ok(stats)
}

/// The 15 values of the windows, in the order of [`WINDOW_COLUMNS`].
pub fn window_values(stats: &Stats) -> [f64; 15] {
    let mut values = [0.0; 15];
    for (chunk, w) in values.chunks_exact_mut(3).zip(&stats.windows) {
        chunk.copy_from_slice(&[w.reliability, w.count, w.weight]);
    }
    values
}

#[cfg(test)]
mod tests;
