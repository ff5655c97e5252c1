//! Faults: bad databases and flags at startup, a full disk while running, and SIGKILL at
//! random moments. Each must end in one clear line or a clean recovery, never lost data.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::sim::{SimConfig, SimNetwork};
use dnsseeder::testkit::dns_client::{addresses, client, exchange, query};
use hickory_proto::rr::RecordType;

use crate::metrics::{get, wait_healthy};
use crate::util::{
    DNS_FLAGS, Rng, Seeder, arg, assert_integrity, crawl_args, free_port, heavy, run, run_ok,
};

fn regtest() -> Magic {
    Magic::from(Network::Regtest)
}

/// A small real database (imported), checkpointed so the file alone holds it.
fn small_db(dir: &Path) -> PathBuf {
    let db = dir.join("peers.db");
    let list = dir.join("list.txt");
    let lines: String = (0..2000)
        .map(|i| format!("127.{}.{}.1:18444\n", 1 + i / 250, i % 250))
        .collect();
    std::fs::write(&list, lines).unwrap();
    run_ok(&["import", "--db", arg(&db), arg(&list)]);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    db
}

/// Runs `run` with `extra` flags on `db`; requires exit 1 with one `error:` line
/// containing `needle`, and `db` unchanged.
fn refuses(db: &Path, extra: &[&str], needle: &str) {
    let before = std::fs::read(db).ok();
    let mut args = vec![
        "run",
        "--db",
        arg(db),
        "--no-dns-seed",
        "--network",
        "regtest",
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{args:?}: {err}"
    );
    assert_eq!(
        std::fs::read(db).ok(),
        before,
        "{args:?} touched the database"
    );
}

#[test]
fn corrupt_truncated_and_newer_databases_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 10_000]).unwrap();
    refuses(&garbage, &[], "is not a dnsseeder database");

    let db = small_db(dir.path());
    let full = std::fs::read(&db).unwrap();
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &full[..full.len() / 3]).unwrap();
    refuses(&truncated, &[], "truncated or corrupt");

    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    drop(conn);
    refuses(&db, &[], "upgrade dnsseeder");
}

#[test]
fn unwritable_dump_path_and_busy_port_are_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_db(dir.path());
    refuses(
        &db,
        &["--dump", "/nonexistent-dir/dnsseed.dump"],
        "--dump /nonexistent-dir/dnsseed.dump",
    );

    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let dns = [
        "--host",
        "seed.example.com",
        "--ns",
        "ns.example.com",
        "--mbox",
        "hostmaster.example.com",
        "--dns-listen",
        &port,
    ];
    refuses(&db, &dns, &port);
}

#[test]
fn sigkill_at_random_moments_loses_no_committed_row() {
    let _serial = heavy();
    let sim = SimNetwork::start(SimConfig::mixed(200, regtest(), 18444)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let seed = sim.seed().to_string();
    let mut rng = Rng(0xdead_beef);
    let mut kills_with_rows = 0;
    for round in 0..20 {
        let seed = if round == 0 { seed.as_str() } else { "" };
        let args = crawl_args(
            arg(&db),
            seed,
            &["--threads", "32", "--retry-scale", "0.001"],
        );
        let seeder = Seeder::start(&args, "warn");
        std::thread::sleep(Duration::from_millis(300 + rng.below(2200)));
        let before = committed_rows(&db);
        seeder.signal("KILL");
        drop(seeder);
        assert_integrity(&db);
        let after = committed_rows(&db);
        let lost: Vec<_> = before.difference(&after).collect();
        assert!(lost.is_empty(), "round {round}: lost {lost:?}");
        kills_with_rows += usize::from(!before.is_empty());
    }
    assert!(kills_with_rows >= 15, "the kills hit a database with rows");
}

/// The address of every row, read by a separate connection; empty while the database
/// is still being created.
fn committed_rows(db: &Path) -> HashSet<String> {
    let read = || -> rusqlite::Result<HashSet<String>> {
        let conn = rusqlite::Connection::open(db)?;
        let mut stmt = conn.prepare("SELECT address FROM peers")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    };
    if db.exists() {
        read().unwrap_or_default()
    } else {
        HashSet::new()
    }
}

/// A tmpfs mounted for the test (needs root; CI runs as root); unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        let path = dir.join("disk");
        std::fs::create_dir(&path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(path))
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn full_disk_keeps_dns_serving_and_recovers() {
    let _serial = heavy();
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(dir.path(), "64m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let mut config = SimConfig::mixed(160, regtest(), 18444);
    config.flood_messages = 0;
    let sim = SimNetwork::start(config).unwrap();
    let db = disk.0.join("peers.db");
    let seed = sim.seed().to_string();
    let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listen = health.to_string();
    let mut args = crawl_args(
        arg(&db),
        &seed,
        &[
            "--threads",
            "16",
            "--retry-scale",
            "0.001",
            "--metrics-listen",
            &listen,
        ],
    );
    args.extend(DNS_FLAGS);
    let mut seeder = Seeder::start(&args, "info");
    let server = seeder.dns_addr();
    let ask = || {
        let socket = client("127.0.0.1:0");
        exchange(
            &socket,
            server,
            &query(1, "seed.example.com", RecordType::A, Some(1232)),
        )
        .map(|m| addresses(&m).len())
        .unwrap_or(0)
    };
    let start = Instant::now();
    while ask() < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "no DNS answers before the disk filled"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    wait_healthy(health, Duration::from_secs(30));
    let filler = disk.fill();
    seeder.wait_for_log("cannot write to the database", Duration::from_secs(30));
    let start = Instant::now();
    let unhealthy = loop {
        let (status, body) = get(health, "/health");
        if status == 503 {
            break body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "/health stayed {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(unhealthy.lines().count(), 1, "one line: {unhealthy}");
    assert!(
        unhealthy.contains("commit"),
        "/health names the failing commits: {unhealthy}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(ask() >= 10, "DNS keeps answering from what it has");
    let errors = seeder
        .log()
        .iter()
        .filter(|l| l.contains("cannot write to the database"))
        .count();
    assert!(
        errors <= 2,
        "the error is logged once per interval, not per attempt ({errors})"
    );

    std::fs::remove_file(filler).unwrap();
    seeder.wait_for_log("database writable again", Duration::from_secs(30));
    wait_healthy(health, Duration::from_secs(30));
    seeder.signal("TERM");
    let (status, _) = seeder.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    assert_integrity(&db);
}
