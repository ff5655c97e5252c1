//! `dnsseeder run` against a simulated network on 127.0.0.0/8: what it finds, where it
//! dials, and how it survives SIGKILL and stops on SIGTERM.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::sim::{Behaviour, SimConfig, SimNetwork};

use crate::util::{Seeder, arg, assert_integrity, crawl_args, heavy};

const PORT: u16 = 18444;

fn regtest() -> Magic {
    Magic::from(Network::Regtest)
}

/// Rows of `peers` by address: (good, last_error, ban_reason, tries).
type Rows = HashMap<String, (bool, Option<String>, Option<String>, i64)>;

fn read_rows(db: &Path) -> Rows {
    try_read_rows(db).unwrap()
}

/// The rows, or the error while the seeder is still creating the database.
fn try_read_rows(db: &Path) -> rusqlite::Result<Rows> {
    let conn = rusqlite::Connection::open(db)?;
    let mut stmt =
        conn.prepare("SELECT address, good, last_error, ban_reason, tries FROM peers")?;
    stmt.query_map([], |r| {
        Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
    })?
    .collect()
}

/// Polls the database until `done` holds; panics after `timeout`.
fn wait_for_rows(db: &Path, timeout: Duration, what: &str, done: impl Fn(&Rows) -> bool) -> Rows {
    let start = Instant::now();
    loop {
        if db.exists()
            && let Ok(rows) = try_read_rows(db)
            && done(&rows)
        {
            return rows;
        }
        assert!(
            start.elapsed() < timeout,
            "not reached within {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Nodes that complete the handshake on the default port every time.
fn must_be_good(b: Behaviour) -> bool {
    matches!(
        b,
        Behaviour::Good
            | Behaviour::Slow
            | Behaviour::NoServices
            | Behaviour::AddrFlood
            | Behaviour::V2
            | Behaviour::V1AdvertisingV2
    )
}

/// Nodes that must never be good.
fn never_good(b: Behaviour) -> bool {
    matches!(
        b,
        Behaviour::Dead
            | Behaviour::Silent
            | Behaviour::Garbage
            | Behaviour::OversizeHeader
            | Behaviour::WrongMagic
            | Behaviour::OldVersion
            | Behaviour::AltPort
            | Behaviour::Slowloris
            | Behaviour::EndlessStream
            | Behaviour::V2Garbage
    )
}

fn dialed(log: &[String]) -> Vec<SocketAddr> {
    log.iter()
        .filter_map(|l| {
            l.split_once(" dial ")
                .map(|(_, a)| a.trim().parse().expect("dial lines name an address"))
        })
        .collect()
}

#[test]
fn crawl_finds_every_good_node_and_dials_only_loopback() {
    let _serial = heavy();
    let sim = SimNetwork::start(SimConfig::mixed(544, regtest(), PORT)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crawl.db");
    let seed = sim.seed().to_string();
    // 0.0005: a good peer's first-three-tries credit runs out, and its 2h window passes
    // 0.85, within a few seconds (SPEC §5).
    let args = crawl_args(
        arg(&db),
        &seed,
        &["--threads", "64", "--retry-scale", "0.0005"],
    );
    let mut seeder = Seeder::start(&args, "info,dnsseeder::p2p=debug");

    let nodes = sim.nodes().to_vec();
    let behaviours: HashSet<Behaviour> = nodes.iter().map(|n| n.behaviour).collect();
    assert_eq!(
        behaviours.len(),
        Behaviour::MIXED.len(),
        "every behaviour of the mix is in the network"
    );
    let good: Vec<String> = nodes
        .iter()
        .filter(|n| must_be_good(n.behaviour))
        .map(|n| n.addr.to_string())
        .collect();
    let rows = wait_for_rows(
        &db,
        Duration::from_secs(120),
        "every good node good",
        |rows| good.iter().all(|a| rows.get(a).is_some_and(|r| r.0)),
    );

    // No misbehaving node is good, and each has its failure on record.
    let mut reasons: HashMap<Behaviour, HashSet<String>> = HashMap::new();
    for node in nodes.iter().filter(|n| never_good(n.behaviour)) {
        let row = rows.get(&node.addr.to_string());
        let Some((good, error, ban, _)) = row else {
            continue;
        };
        assert!(!good, "{:?} node {} is good", node.behaviour, node.addr);
        let reason = error.clone().or(ban.clone()).unwrap_or_default();
        reasons.entry(node.behaviour).or_default().insert(reason);
    }
    let has = |b: Behaviour, r: &str| reasons.get(&b).is_some_and(|set| set.contains(r));
    assert!(has(Behaviour::Dead, "refused"), "{reasons:?}");
    assert!(has(Behaviour::Silent, "timeout"), "{reasons:?}");
    assert!(has(Behaviour::WrongMagic, "bad-magic"), "{reasons:?}");
    assert!(has(Behaviour::OversizeHeader, "oversize"), "{reasons:?}");
    assert!(has(Behaviour::OldVersion, "old-version"), "{reasons:?}");
    assert!(has(Behaviour::Slowloris, "timeout"), "{reasons:?}");
    assert!(has(Behaviour::EndlessStream, "timeout"), "{reasons:?}");
    assert!(
        reasons
            .get(&Behaviour::Garbage)
            .is_some_and(|s| !s.is_empty() && !s.contains("")),
        "{reasons:?}"
    );

    // It stops within the probe deadline even with silent nodes holding threads.
    seeder.signal("TERM");
    let (status, took) = seeder.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(2 + 3), "stopping took {took:?}");

    // Every dial went to 127.0.0.0/8, none to the poison the network advertised.
    let dials = dialed(&seeder.log());
    assert!(dials.len() > good.len(), "{} dials", dials.len());
    let poison: HashSet<SocketAddr> = sim.config().poison.iter().copied().collect();
    assert!(!poison.is_empty());
    for d in &dials {
        assert!(
            matches!(d.ip(), std::net::IpAddr::V4(v4) if v4.octets()[0] == 127),
            "dialed {d}"
        );
        assert_ne!(d.port(), 0, "dialed {d}");
        assert!(!poison.contains(d), "dialed poison {d}");
    }
    let stored = read_rows(&db);
    for p in &poison {
        assert!(!stored.contains_key(&p.to_string()), "stored poison {p}");
    }
}

#[test]
fn kill_9_loses_nothing_committed_and_crawl_resumes() {
    let _serial = heavy();
    let sim = SimNetwork::start(SimConfig::mixed(256, regtest(), PORT)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let seed = sim.seed().to_string();
    // Real-time scale: a peer that turned good stays good for its first three tries,
    // and the next try is 15 minutes away, so nothing legitimately flips back.
    let args = crawl_args(arg(&db), &seed, &["--threads", "32"]);
    let seeder = Seeder::start(&args, "info");
    wait_for_rows(&db, Duration::from_secs(60), "50 good peers", |rows| {
        rows.values().filter(|r| r.0).count() >= 50
    });
    let before = read_rows(&db);
    seeder.signal("KILL");
    drop(seeder);

    assert_integrity(&db);
    let after = read_rows(&db);
    for address in before.iter().filter(|(_, r)| r.0).map(|(a, _)| a) {
        assert!(
            after.get(address).is_some_and(|r| r.0),
            "good peer {address} lost"
        );
    }

    // Restart without --seed: crawling resumes from what the database knows.
    let tried_before: i64 = after.values().map(|r| r.3).sum();
    let restart = crawl_args(arg(&db), "", &["--threads", "32"]);
    let mut seeder = Seeder::start(&restart, "info,dnsseeder::p2p=debug");
    seeder.wait_for_log(" dial 127.", Duration::from_secs(20));
    wait_for_rows(
        &db,
        Duration::from_secs(30),
        "more probes recorded",
        |rows| rows.values().map(|r| r.3).sum::<i64>() > tried_before,
    );
    seeder.signal("TERM");
    assert!(seeder.wait_exit(Duration::from_secs(10)).0.success());
    assert!(
        !seeder
            .log()
            .iter()
            .any(|l| l.contains("bootstrapping from")),
        "no seed was given"
    );
}

#[test]
fn sigterm_exits_zero_within_the_probe_timeout_and_writes_the_dump() {
    let _serial = heavy();
    let sim = SimNetwork::start(SimConfig::with_fractions(300, 0.3, 0.1, regtest(), PORT)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("term.db");
    let dump = dir.path().join("dnsseed.dump");
    let seed = sim.seed().to_string();
    let args = crawl_args(
        arg(&db),
        &seed,
        &[
            "--threads",
            "16",
            "--dump",
            arg(&dump),
            "--dump-interval",
            "3600",
        ],
    );
    let mut seeder = Seeder::start(&args, "info");
    wait_for_rows(&db, Duration::from_secs(60), "20 good peers", |rows| {
        rows.values().filter(|r| r.0).count() >= 20
    });
    // Silent nodes (30%) hold probes open: the stop must not wait longer than their deadline.
    seeder.signal("TERM");
    let (status, took) = seeder.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(2 + 2), "stopping took {took:?}");
    let text = std::fs::read_to_string(&dump).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(lines.len() >= 20, "{text}");
    assert!(lines.iter().all(|l| l.split_whitespace().count() == 12));
    assert!(seeder.log().iter().any(|l| l.contains("SIGTERM: stopping")));
}

#[test]
fn unusable_flags_exit_2_with_the_flag_named() {
    for (args, needle) in [
        (vec!["run", "--threads", "0", "--no-dns-seed"], "--threads"),
        (
            vec!["run", "--retry-scale", "0", "--no-dns-seed"],
            "--retry-scale",
        ),
        (
            vec!["run", "--host", "seed.example.com", "--no-dns-seed"],
            "--ns",
        ),
        (vec!["run", "--magic", "xyz", "--no-dns-seed"], "--magic"),
        (
            vec![
                "run",
                "--probe-timeout",
                "2",
                "--handshake-timeout",
                "3",
                "--no-dns-seed",
            ],
            "--handshake-timeout must not exceed --probe-timeout (2 s)",
        ),
        (
            vec!["run", "--addr-grace", "0", "--no-dns-seed"],
            "--addr-grace must be a positive",
        ),
        (
            vec!["run", "--network", "moon", "--no-dns-seed"],
            "--network",
        ),
    ] {
        let out = crate::util::run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
