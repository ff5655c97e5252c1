//! `dnsseeder backup` while `dnsseeder run` commits continuously: every copy is a sound
//! database, and a seeder started on a copy serves DNS from it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::sim::{SimConfig, SimNetwork};
use dnsseeder::testkit::dns_client::{addresses, client, exchange, query};
use hickory_proto::rr::RecordType;

use crate::util::{DNS_FLAGS, Seeder, arg, assert_integrity, crawl_args, heavy, run_ok};

const PORT: u16 = 18444;

/// `SELECT count(*) FROM peers [WHERE ...]` (0 while the database cannot be read).
fn count(db: &Path, filter: &str) -> u64 {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return 0;
    };
    conn.query_row(&format!("SELECT count(*) FROM peers {filter}"), [], |r| {
        r.get(0)
    })
    .unwrap_or(0)
}

/// Polls until `db` has a good peer; panics after `limit`.
fn wait_for_good(db: &Path, limit: Duration) {
    let start = Instant::now();
    while count(db, "WHERE good = 1") == 0 {
        assert!(start.elapsed() < limit, "no good peer within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Asks `server` for A records of the zone until it answers with addresses.
fn wait_for_addresses(server: SocketAddr, limit: Duration) -> usize {
    let socket = client("127.0.0.1:0");
    let packet = query(0xb4c6, "seed.example.com.", RecordType::A, None);
    let start = Instant::now();
    loop {
        let answer = exchange(&socket, server, &packet);
        let found = answer.as_ref().map_or(0, |m| addresses(m).len());
        if found > 0 {
            return found;
        }
        assert!(start.elapsed() < limit, "no addresses within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn backups_under_load_are_sound_and_serve_dns() {
    let _serial = heavy();
    let sim =
        SimNetwork::start(SimConfig::mixed(2000, Magic::from(Network::Regtest), PORT)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let seed = sim.seed().to_string();
    let args = crawl_args(
        arg(&db),
        &seed,
        &["--threads", "64", "--retry-scale", "0.001"],
    );
    let writer = Seeder::start(&args, "info");
    wait_for_good(&db, Duration::from_secs(60));

    let copies: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("copy{i}.db")))
        .collect();
    let mut rows = Vec::new();
    for copy in &copies {
        let started = Instant::now();
        let report = run_ok(&["backup", "--db", arg(&db), arg(copy)]);
        eprintln!("{report}");
        assert!(report.starts_with("backed up "), "{report}");
        // The rows reported are those of the snapshot copied.
        let reported = report.split(' ').nth(2).and_then(|n| n.parse().ok());
        rows.push(count(copy, ""));
        assert_eq!(reported, rows.last().copied(), "{report}");
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    }
    let source = count(&db, "");
    eprintln!("rows in the copies {rows:?}, in the source {source}");
    drop(writer);
    for (copy, &n) in copies.iter().zip(&rows) {
        assert_integrity(copy);
        assert!(
            n > 0 && n <= source,
            "{n} rows in {copy:?}, {source} in the source"
        );
    }

    let last = copies.last().unwrap();
    let args = crawl_args(arg(last), "", &DNS_FLAGS);
    let restored = Seeder::start(&args, "info");
    let found = wait_for_addresses(restored.dns_addr(), Duration::from_secs(20));
    assert!(found > 0);
}
