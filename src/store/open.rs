//! Opening the peer database: the checks that refuse a foreign, truncated or newer file
//! without writing to it, the numbered migrations of `migrations/`, and the connection
//! settings (WAL, the writer's cache).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags};

use super::Store;

/// Schema migrations, applied in order; `PRAGMA user_version` counts the applied ones.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_evidence.sql"),
    include_str!("../../migrations/0003_networks.sql"),
    include_str!("../../migrations/0004_transport.sql"),
];

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
        let found = schema_version(&conn, path)?;
        add_popcount(&conn).map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
            known: None,
            ranks: super::SourceRanks::default(),
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
}

/// `popcount(x)`: the bits set in an integer, for `evidence` (the distinct sources in
/// `source_bits`). Registered on every connection; `sqlite3` need not know it, as only the
/// writer's upserts call it.
fn add_popcount(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function("popcount", 1, FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        Ok(i64::from(ctx.get::<i64>(0)?.count_ones()))
    })
}

/// The schema version of an opened file, refusing a foreign, corrupt or newer one. This
/// first read of the header is what tells a foreign or corrupt file; nothing is written
/// before it succeeds.
fn schema_version(conn: &Connection, path: &Path) -> Result<i64, OpenError> {
    let found: i64 = match conn.query_row("PRAGMA user_version", [], |r| r.get(0)) {
        Ok(v) => v,
        Err(e) if is_not_a_database(&e) => {
            return Err(OpenError::NotADatabase(path.to_owned()));
        }
        Err(source) => {
            return Err(OpenError::Sqlite {
                path: path.to_owned(),
                source,
            });
        }
    };
    if found > SCHEMA_VERSION {
        return Err(OpenError::Newer {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
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
