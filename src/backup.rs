//! `dnsseeder backup`: a consistent copy of the peer database while `dnsseeder run` keeps
//! committing to it, through SQLite's online backup API.
//!
//! The copy reads one snapshot: a read transaction is held on the source for the whole
//! backup, so the writer's commits (in WAL mode they never wait for readers) neither
//! restart the copy nor leak into it. Pages are copied a few hundred at a time with a
//! short pause between steps, so the copy never hogs the disk the writer needs. The copy
//! goes to a temporary file next to OUT, is switched out of WAL mode (a self-contained
//! file, no `-wal` needed), synced, and renamed over OUT: a failed backup leaves OUT as
//! it was.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rusqlite::backup::Backup;
use rusqlite::{Connection, OpenFlags};
use tempfile::NamedTempFile;

use crate::cli::BackupArgs;
use crate::dump::directory_of;
use crate::store::Store;

/// Pages copied per step: 1 MiB of 4 KiB pages.
pub const PAGES_PER_STEP: i32 = 256;
/// Pause between steps, for the writer's I/O.
pub const STEP_PAUSE: Duration = Duration::from_millis(5);

/// What a finished backup copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Rows in `peers` in the snapshot copied.
    pub rows: u64,
    /// Size of the copy, bytes.
    pub bytes: u64,
}

/// `dnsseeder backup`: copies `--db` to OUT and prints one line (rows, bytes, seconds).
///
/// # Errors
/// When OUT is the database itself or is in use, when the database cannot be opened or
/// read, or when the copy cannot be written; each message says what to do.
pub fn backup(args: &BackupArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let start = Instant::now();
    let copied = copy(&args.db.db, &args.out)?;
    writeln!(
        out,
        "backed up {} rows ({} bytes) from {} to {} in {:.2} s",
        copied.rows,
        copied.bytes,
        args.db.db.display(),
        args.out.display(),
        start.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// Copies the database at `db` to `out`, atomically.
///
/// # Errors
/// As [`backup`].
pub fn copy(db: &Path, out: &Path) -> anyhow::Result<Copied> {
    let store = Store::open_existing(db)?;
    check_target(db, out)?;
    let dir = directory_of(out);
    let tmp = tempfile::Builder::new()
        .prefix(".dnsseeder-backup.")
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "cannot create a temporary file in {}; check that the directory exists \
                 and is writable",
                dir.display()
            )
        })?;
    let rows = copy_snapshot(store.connection(), tmp.path()).with_context(|| {
        format!(
            "copying {} failed; check the free space in {} and try again",
            db.display(),
            dir.display()
        )
    })?;
    let bytes = persist(tmp, out)?;
    Ok(Copied { rows, bytes })
}

/// Refuses an OUT that is the database, or a database in use (it has a `-wal` file,
/// which SQLite would replay onto the copy).
fn check_target(db: &Path, out: &Path) -> anyhow::Result<()> {
    if same_file(db, out) {
        bail!(
            "{} is the database itself; name another file as OUT",
            out.display()
        );
    }
    let wal = with_suffix(out, "-wal");
    if wal.exists() {
        bail!(
            "{} exists: {} looks like a database in use; stop what uses it and remove \
             the -wal file, or name another file as OUT",
            wal.display(),
            out.display()
        );
    }
    Ok(())
}

/// Whether `out` names the same file as the existing `db` (through links too).
fn same_file(db: &Path, out: &Path) -> bool {
    let Ok(db) = db.canonicalize() else {
        return false;
    };
    if let Ok(out) = out.canonicalize() {
        return out == db || same_inode(&db, &out);
    }
    // OUT does not exist yet: compare where it would be.
    let parent = directory_of(out).canonicalize();
    match (parent, out.file_name()) {
        (Ok(parent), Some(name)) => parent.join(name) == db,
        _ => false,
    }
}

#[cfg(unix)]
fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

/// `path` with `suffix` appended to its file name (`db` + `-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Copies one snapshot of `source` into the empty file at `dest` and takes the copy out
/// of WAL mode. Returns the rows of `peers` in that snapshot.
fn copy_snapshot(source: &Connection, dest: &Path) -> rusqlite::Result<u64> {
    // The snapshot: a read transaction that the backup's steps share.
    let snapshot = source.unchecked_transaction()?;
    let rows: u64 = snapshot.query_row("SELECT count(*) FROM peers", [], |r| r.get(0))?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut copy = Connection::open_with_flags(dest, flags)?;
    Backup::new(source, &mut copy)?.run_to_completion(PAGES_PER_STEP, STEP_PAUSE, None)?;
    snapshot.rollback()?;
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    copy.close().map_err(|(_, e)| e)?;
    Ok(rows)
}

/// Syncs the finished copy, renames it over `out` and syncs the directory. Returns its
/// size.
fn persist(tmp: NamedTempFile, out: &Path) -> anyhow::Result<u64> {
    let sync = |e| anyhow::Error::new(e).context("cannot sync the copy; check the disk");
    tmp.as_file().sync_all().map_err(sync)?;
    let bytes = tmp.as_file().metadata().map_err(sync)?.len();
    tmp.persist(out).map_err(|e| {
        anyhow::Error::new(e.error).context(format!(
            "cannot rename the copy to {}; check that it is writable",
            out.display()
        ))
    })?;
    // The rename is durable once the directory is synced (best effort: not every
    // platform can open a directory).
    if let Ok(dir) = File::open(directory_of(out)) {
        let _ = dir.sync_all();
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_out_in_the_database_directory_is_the_database_only_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        std::fs::write(&db, b"").unwrap();
        assert!(same_file(&db, &db));
        assert!(same_file(&db, &dir.path().join(".").join("a.db")));
        assert!(!same_file(&db, &dir.path().join("b.db")));
        std::fs::hard_link(&db, dir.path().join("link.db")).unwrap();
        assert!(same_file(&db, &dir.path().join("link.db")));
    }

    #[test]
    fn the_copy_is_the_snapshot_out_of_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (db, out) = (dir.path().join("a.db"), dir.path().join("copy.db"));
        let store = Store::open(&db).unwrap();
        crate::testkit::generate::fill(store.connection(), 300, 100, 7).unwrap();
        let copied = copy(&db, &out).unwrap();
        assert_eq!(copied.rows, 300);
        assert_eq!(copied.bytes, std::fs::metadata(&out).unwrap().len());
        let conn = Connection::open(&out).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
        assert!(!with_suffix(&out, "-wal").exists());
        let err = copy(&db, &db).unwrap_err();
        assert!(
            format!("{err:#}").contains("is the database itself"),
            "{err:#}"
        );
    }
}
