//! Store round trips on a temporary file.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::*;
use crate::addr::{Family, FamilySet, PeerAddr};
use crate::crawler::{Batch, NewPeer, Outcome, Policy, ProbeResult, SourceGroup};
use crate::dump::{DumpFigures, ImportedPeer};

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("peers.db")).unwrap();
    (dir, store)
}

/// Three peers learned at 0; at 5 the first refused and the second answered.
fn three_peers_one_refused_one_answered() -> (tempfile::TempDir, Store) {
    let (dir, mut store) = temp_store();
    store
        .add_peers(
            &[
                gossip("1.1.1.1:8333", 1),
                gossip("2.2.2.2:8333", 1),
                gossip("3.3.3.3:8333", 1),
            ],
            0,
        )
        .unwrap();
    let batch = results_only(vec![
        failure("1.1.1.1:8333", 5, "refused", false),
        success("2.2.2.2:8333", 5, 1),
    ]);
    store.commit_batch(&batch, &POLICY, 5).unwrap();
    (dir, store)
}

/// A batch of probe results that taught us no address.
fn results_only(results: Vec<ProbeResult>) -> Batch {
    Batch {
        results,
        learned: vec![],
    }
}

/// The addresses in the table at `now`.
fn addresses(store: &Store, now: i64) -> BTreeSet<String> {
    let rows = store.peers(&PeerFilter::default(), now).unwrap();
    rows.into_iter().map(|r| r.address).collect()
}

fn set(addrs: &[&str]) -> BTreeSet<String> {
    addrs.iter().map(|a| (*a).to_owned()).collect()
}

fn addr(s: &str) -> PeerAddr {
    s.parse().unwrap()
}

fn gossip(s: &str, services: u64) -> NewPeer {
    gossip_from(s, services, "9.9.9.9:8333")
}

/// `s` as gossiped by the peer at `announcer`.
fn gossip_from(s: &str, services: u64, announcer: &str) -> NewPeer {
    NewPeer::gossiped(
        addr(s),
        services,
        1_700_000_000,
        SourceGroup::of(&addr(announcer)),
    )
}

const POLICY: Policy = Policy {
    scale: 1.0,
    default_port: 8333,
    min_height: 0,
    allow_private: false,
    max_addresses: 1_000_000,
};

fn success(a: &str, time: i64, services: u64) -> ProbeResult {
    ProbeResult {
        addr: addr(a),
        time,
        outcome: Outcome::Success {
            version: 70016,
            services,
            user_agent: "/Satoshi:27.0.0/".into(),
            start_height: 900_000,
            transport: "v1",
        },
        asked_getaddr: true,
    }
}

fn failure(a: &str, time: i64, reason: &'static str, violation: bool) -> ProbeResult {
    ProbeResult {
        addr: addr(a),
        time,
        outcome: Outcome::Failure { reason, violation },
        asked_getaddr: false,
    }
}

fn row(store: &Store, a: &str) -> PeerRow {
    store
        .peers(&PeerFilter::default(), 0)
        .unwrap()
        .into_iter()
        .find(|r| r.address == a)
        .unwrap()
}

#[test]
fn fresh_database_is_migrated_in_wal_mode() {
    let (_dir, store) = temp_store();
    let version: i64 = store
        .connection()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = store
        .connection()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let views: i64 = store
        .connection()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'good_peers'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(views, 1);
}

#[test]
fn reopen_keeps_rows_and_does_not_migrate_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.db");
    {
        let mut store = Store::open(&path).unwrap();
        store.add_peers(&[gossip("1.2.3.4:8333", 9)], 100).unwrap();
    }
    let store = Store::open_existing(&path).unwrap();
    assert_eq!(store.count().unwrap(), 1);
}

#[test]
fn newer_schema_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.db");
    {
        let store = Store::open(&path).unwrap();
        store
            .connection()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        store
            .connection()
            .pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::Newer { .. }), "{err}");
    assert!(err.to_string().contains("upgrade dnsseeder"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn foreign_file_is_refused_and_left_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    for open in [Store::open, Store::open_existing] {
        let err = open(&path).unwrap_err();
        assert!(matches!(err, OpenError::NotADatabase(_)), "{err}");
        assert!(err.to_string().contains("left untouched"), "{err}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert!(!dir.path().join("notes.txt-wal").exists());
}

#[test]
fn missing_file_is_an_error_for_readers() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open_existing(&dir.path().join("nope.db")).unwrap_err();
    assert!(matches!(err, OpenError::Missing(_)), "{err}");
    assert!(!dir.path().join("nope.db").exists());
}

#[test]
fn gossip_never_overwrites_observed_services() {
    let (_dir, mut store) = temp_store();
    assert_eq!(
        store.add_peers(&[gossip("1.2.3.4:8333", 1)], 100).unwrap(),
        1
    );
    let batch = results_only(vec![success("1.2.3.4:8333", 200, 0x409)]);
    store.commit_batch(&batch, &POLICY, 200).unwrap();
    assert_eq!(
        store.add_peers(&[gossip("1.2.3.4:8333", 1)], 300).unwrap(),
        0
    );
    assert_eq!(row(&store, "1.2.3.4:8333").services, 0x409);
}

#[test]
fn success_then_failure_updates_every_column() {
    let (_dir, mut store) = temp_store();
    store.add_peers(&[gossip("1.2.3.4:8333", 1)], 100).unwrap();
    let t0 = 1_000_000;
    store
        .commit_batch(
            &results_only(vec![success("1.2.3.4:8333", t0, 9)]),
            &POLICY,
            t0,
        )
        .unwrap();
    let r = row(&store, "1.2.3.4:8333");
    assert_eq!((r.tries, r.successes, r.good), (1, 1, true));
    assert_eq!(r.status, "good");
    assert_eq!(r.last_success, Some(t0));
    assert_eq!(r.user_agent, "/Satoshi:27.0.0/");
    assert!((r.reliability[0] - 0.129_675_274_2).abs() < 1e-6);

    let t1 = t0 + 600;
    store
        .commit_batch(
            &results_only(vec![failure("1.2.3.4:8333", t1, "timeout", false)]),
            &POLICY,
            t1,
        )
        .unwrap();
    let r = row(&store, "1.2.3.4:8333");
    assert_eq!((r.tries, r.successes), (2, 1));
    assert!(r.good, "1 of 2 is still good by the few-tries rule");
    assert_eq!(r.last_error.as_deref(), Some("timeout"));
    assert_eq!(r.last_success, Some(t0));
    assert_eq!(r.status, "good");
    assert_eq!(
        r.user_agent, "/Satoshi:27.0.0/",
        "a failure keeps what the peer said"
    );
}

#[test]
fn violation_bans_for_a_scaled_day() {
    let (_dir, mut store) = temp_store();
    store.add_peers(&[gossip("1.2.3.4:8333", 1)], 100).unwrap();
    let policy = Policy {
        scale: 0.01,
        ..POLICY
    };
    store
        .commit_batch(
            &results_only(vec![failure("1.2.3.4:8333", 1000, "bad-magic", true)]),
            &policy,
            1000,
        )
        .unwrap();
    let r = row(&store, "1.2.3.4:8333");
    assert_eq!(r.banned_until, 1000 + 864);
    assert_eq!(
        store.peers(&PeerFilter::default(), 1000).unwrap()[0].status,
        "banned"
    );
    assert!(store.due(1000 + 863, 10).unwrap().is_empty());
    assert_eq!(store.due(1000 + 864, 10).unwrap().len(), 1);
}

#[test]
fn old_version_is_banned_and_not_good() {
    let (_dir, mut store) = temp_store();
    store.add_peers(&[gossip("1.2.3.4:8333", 1)], 100).unwrap();
    let mut result = success("1.2.3.4:8333", 1000, 1);
    if let Outcome::Success { version, .. } = &mut result.outcome {
        *version = 31800;
    }
    store
        .commit_batch(&results_only(vec![result]), &POLICY, 1000)
        .unwrap();
    let r = row(&store, "1.2.3.4:8333");
    assert!(!r.good);
    assert_eq!(r.banned_until, 1000 + 7 * 86_400);
}

#[test]
fn due_orders_answered_then_new_then_failing() {
    let (_dir, mut store) = temp_store();
    let peers: Vec<_> = ["1.1.1.1:8333", "2.2.2.2:8333", "3.3.3.3:8333"]
        .iter()
        .map(|a| gossip(a, 1))
        .collect();
    store.add_peers(&peers, 0).unwrap();
    let policy = Policy {
        scale: 0.0001,
        ..POLICY
    };
    let batch = results_only(vec![
        success("1.1.1.1:8333", 10, 1),
        failure("3.3.3.3:8333", 10, "refused", false),
    ]);
    store.commit_batch(&batch, &policy, 10).unwrap();
    let order: Vec<String> = store
        .due(1000, 10)
        .unwrap()
        .iter()
        .map(|d| d.addr.to_string())
        .collect();
    assert_eq!(order, ["1.1.1.1:8333", "2.2.2.2:8333", "3.3.3.3:8333"]);
    assert_eq!(store.due(1000, 2).unwrap().len(), 2);
    assert_eq!(store.due(1000, 10).unwrap()[0].last_getaddr, Some(10));
}

#[test]
fn every_network_is_due_but_only_the_reachable_ones_are_selected() {
    let (_dir, mut store) = temp_store();
    let onion = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion:8333";
    let peers = [
        gossip(onion, 1),
        gossip("[fc00::1]:8333", 1),
        gossip("1.2.3.4:8333", 1),
    ];
    store.add_peers(&peers, 0).unwrap();
    assert_eq!(store.due(100, 10).unwrap().len(), 3);
    let due = |families: FamilySet| -> Vec<String> {
        let due = store.due_in(100, 10, families).unwrap();
        due.iter().map(|d| d.addr.to_string()).collect()
    };
    let clear: FamilySet = [Family::Ipv4, Family::Ipv6].into_iter().collect();
    assert_eq!(due(clear), ["1.2.3.4:8333"]);
    assert_eq!(due(FamilySet::NONE.with(Family::Onion)), [onion]);
    assert_eq!(due(FamilySet::NONE.with(Family::Cjdns)), ["[fc00::1]:8333"]);
    assert!(due(FamilySet::NONE).is_empty());
}

#[test]
fn good_ips_filter_by_family_and_mask() {
    let (_dir, mut store) = temp_store();
    let all = [
        ("1.1.1.1:8333", 1),
        ("2.2.2.2:8333", 9),
        ("3.3.3.3:8333", 0x409),
        ("[2a01::1]:8333", 9),
    ];
    let peers: Vec<_> = all.iter().map(|(a, _)| gossip(a, 0)).collect();
    store.add_peers(&peers, 0).unwrap();
    let results = all.iter().map(|(a, s)| success(a, 10, *s)).collect();
    store
        .commit_batch(
            &Batch {
                results,
                learned: vec![],
            },
            &POLICY,
            10,
        )
        .unwrap();
    let mut v4 = store.good_ips(Family::Ipv4, 9).unwrap();
    v4.sort();
    assert_eq!(
        v4,
        vec![
            "2.2.2.2".parse::<IpAddr>().unwrap(),
            "3.3.3.3".parse().unwrap()
        ]
    );
    assert_eq!(store.good_ips(Family::Ipv4, 1).unwrap().len(), 3);
    assert_eq!(store.good_ips(Family::Ipv4, 0x400).unwrap().len(), 1);
    assert_eq!(
        store.good_ips(Family::Ipv6, 9).unwrap(),
        vec!["2a01::1".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn cap_evicts_failing_then_newest_never_tried_and_never_reached_peers() {
    let (_dir, mut store) = temp_store();
    let old = [
        "1.1.1.1:8333",
        "2.2.2.2:8333",
        "5.5.5.5:8333",
        "6.6.6.6:8333",
    ];
    for (i, a) in old.iter().enumerate() {
        store.add_peers(&[gossip(a, 1)], i as i64).unwrap();
    }
    let policy = Policy {
        max_addresses: 4,
        ..POLICY
    };
    // 1.1.1.1 answers and must survive; 2.2.2.2 fails: it goes first.
    let batch = Batch {
        results: vec![
            success("1.1.1.1:8333", 5, 1),
            failure("2.2.2.2:8333", 5, "refused", false),
        ],
        learned: vec![gossip("3.3.3.3:8333", 1), gossip("4.4.4.4:8333", 1)],
    };
    let summary = store.commit_batch(&batch, &policy, 10).unwrap();
    assert_eq!(
        summary,
        BatchSummary {
            recorded: 2,
            inserted: 2,
            evicted: 2
        }
    );
    let left = addresses(&store, 10);
    // Then the newest never-tried address (3.3.3.3 and 4.4.4.4 arrived together; the
    // later row goes): what was known before the burst stays.
    let expected = set(&[
        "1.1.1.1:8333",
        "5.5.5.5:8333",
        "6.6.6.6:8333",
        "3.3.3.3:8333",
    ]);
    assert_eq!(left, expected);
    // A flood at the cap only replaces itself.
    let flood: Vec<NewPeer> = (0..100)
        .map(|i| gossip(&format!("9.9.{i}.1:8333"), 1))
        .collect();
    let batch = Batch {
        results: vec![],
        learned: flood,
    };
    store.commit_batch(&batch, &policy, 20).unwrap();
    assert_eq!(store.count().unwrap(), 4);
    for a in [
        "1.1.1.1:8333",
        "5.5.5.5:8333",
        "6.6.6.6:8333",
        "3.3.3.3:8333",
    ] {
        assert!(
            store
                .peers(&PeerFilter::default(), 20)
                .unwrap()
                .iter()
                .any(|r| r.address == a),
            "{a}"
        );
    }
}

#[test]
fn prune_removes_long_failing_never_reached_only() {
    let (_dir, mut store) = three_peers_one_refused_one_answered();
    assert_eq!(store.prune(40 * 86_400, 30 * 86_400).unwrap(), 1);
    assert_eq!(
        store.count().unwrap(),
        2,
        "the reached and the never-tried peers stay"
    );
}

#[test]
fn import_keeps_figures_and_plain_lines_are_new() {
    let (_dir, mut store) = temp_store();
    let figures = DumpFigures {
        good: true,
        last_success: 1_700_000_000,
        reliability: [0.995, 0.9, 0.8, 0.7, 0.6],
        start_height: 850_000,
        services: 0x409,
        version: 70016,
        user_agent: "/Satoshi:27.0.0/".into(),
    };
    let peers = vec![
        ImportedPeer {
            addr: addr("1.2.3.4:8333"),
            figures: Some(figures.clone()),
        },
        ImportedPeer {
            addr: addr("5.6.7.8:8333"),
            figures: None,
        },
    ];
    assert_eq!(store.import(&peers, 50).unwrap(), 2);
    let r = row(&store, "1.2.3.4:8333");
    assert_eq!(
        (r.good, r.status.as_str(), r.services),
        (true, "good", 0x409)
    );
    assert_eq!(row(&store, "5.6.7.8:8333").status, "new");
    let mut dumped = Vec::new();
    store
        .for_each_dump_row(|a, f| {
            dumped.push((a.to_string(), f.clone()));
            Ok(())
        })
        .unwrap();
    assert_eq!(dumped, vec![("1.2.3.4:8333".to_owned(), figures)]);
    assert_eq!(
        store.due(50, 10).unwrap().len(),
        2,
        "imported peers are due at once"
    );
}

#[test]
fn summary_counts_statuses_and_errors() {
    let (_dir, store) = three_peers_one_refused_one_answered();
    let s = store.summary(10).unwrap();
    assert_eq!(
        (s.known, s.good, s.new, s.unreachable, s.banned),
        (3, 1, 1, 1, 0)
    );
    assert_eq!(s.tried_last_hour, 2);
    assert_eq!(s.by_error, vec![("refused".to_owned(), 1)]);
    assert_eq!(s.by_family, vec![(Family::Ipv4, 3, 1)]);
}

#[test]
fn truncated_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.db");
    {
        let mut store = Store::open(&path).unwrap();
        let peers: Vec<NewPeer> = (0..3000)
            .map(|i| gossip(&format!("11.{}.{}.1:8333", i / 256, i % 256), 9))
            .collect();
        store.add_peers(&peers, 1).unwrap();
        store
            .connection()
            .pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .unwrap();
    }
    let full = std::fs::read(&path).unwrap();
    let cut = full[..full.len() / 2].to_vec();
    std::fs::write(&path, &cut).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::NotADatabase(_)), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), cut);
}

/// The window helpers agree with the schema and with each other: the 15 named columns
/// exist, and windows written through `window_assignments`/`window_values` read back
/// unchanged through `WINDOW_COLUMNS`/`read_windows`.
#[test]
fn window_columns_round_trip_through_a_row() {
    use crate::reliability::Stats;
    let (_dir, mut store) = temp_store();
    store.add_peers(&[gossip("1.1.1.1:8333", 1)], 0).unwrap();
    let mut stats = Stats::default();
    for (i, w) in stats.windows.iter_mut().enumerate() {
        let i = i as f64;
        (w.reliability, w.count, w.weight) = (0.1 + i, 0.2 + i, 0.3 + i);
    }
    let sql = format!("UPDATE peers SET {} WHERE id = ?16", window_assignments(1));
    let values = window_values(&stats);
    let mut params: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v as _).collect();
    params.push(&1);
    assert_eq!(store.conn.execute(&sql, params.as_slice()).unwrap(), 1);
    let read = store
        .conn
        .query_row(&format!("SELECT {} FROM peers", *WINDOW_COLUMNS), [], |r| {
            read_windows(r, 0)
        })
        .unwrap();
    assert_eq!(read, stats);
    let c1w: f64 = store
        .conn
        .query_row("SELECT count_1w FROM peers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(c1w, 3.2, "the 1w window's count is the 11th column");
}

/// The never-tried queue by evidence: addresses announced by more source groups first
/// (two peers of one /16 count once), and within a level each source in turn, so one
/// source's many addresses do not take every probe.
#[test]
fn due_never_tried_by_evidence_then_each_source_in_turn() {
    let (_dir, mut store) = temp_store();
    let flood: Vec<NewPeer> = (1..=5)
        .map(|i| gossip_from(&format!("8.8.0.{i}:8333"), 1, "6.6.6.6:8333"))
        .collect();
    store.add_peers(&flood, 0).unwrap();
    let fair = [
        gossip_from("7.7.0.1:8333", 1, "5.5.5.5:8333"),
        gossip_from("7.7.0.2:8333", 1, "5.5.5.5:8333"),
        gossip_from("1.2.3.4:8333", 1, "5.5.5.5:8333"),
        gossip_from("1.2.3.4:8333", 1, "4.4.4.4:8333"),
        // The same /16 as 4.4.4.4: no more evidence.
        gossip_from("1.2.3.4:8333", 1, "4.4.9.9:8333"),
    ];
    store.add_peers(&fair, 1).unwrap();
    let evidence: i64 = store
        .conn
        .query_row(
            "SELECT evidence FROM peers WHERE address = '1.2.3.4:8333'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(evidence, 2);
    let order: Vec<String> = store
        .due(10, 10)
        .unwrap()
        .iter()
        .map(|p| p.addr.to_string())
        .collect();
    assert_eq!(
        order,
        [
            "1.2.3.4:8333", // two sources
            "8.8.0.1:8333", // then rank 0 of each source, the older first
            "7.7.0.1:8333",
            "8.8.0.2:8333", // rank 1
            "7.7.0.2:8333",
            "8.8.0.3:8333", // the flood's own ranks 2, 3, 4
            "8.8.0.4:8333",
            "8.8.0.5:8333",
        ]
    );
}

/// At the cap, the never-tried addresses with the weakest evidence go first, and within a
/// level a source's last-ranked ones: a flood evicts itself, not what many peers vouch for.
#[test]
fn cap_evicts_the_weakest_evidence_first() {
    let (_dir, mut store) = temp_store();
    let vouched = ["1.2.3.4:8333", "4.3.2.1:8333"];
    for a in vouched {
        let peers = [
            gossip_from(a, 1, "5.5.5.5:8333"),
            gossip_from(a, 1, "4.4.4.4:8333"),
        ];
        store.add_peers(&peers, 0).unwrap();
    }
    let policy = Policy {
        max_addresses: 4,
        ..POLICY
    };
    let flood: Vec<NewPeer> = (1..=5)
        .map(|i| gossip_from(&format!("8.8.0.{i}:8333"), 1, "6.6.6.6:8333"))
        .collect();
    let summary = store
        .commit_batch(
            &Batch {
                results: vec![],
                learned: flood,
            },
            &policy,
            10,
        )
        .unwrap();
    assert_eq!(summary.evicted, 3);
    let left = addresses(&store, 10);
    let expected = set(&[
        "1.2.3.4:8333",
        "4.3.2.1:8333",
        "8.8.0.1:8333",
        "8.8.0.2:8333",
    ]);
    assert_eq!(left, expected);
}

/// A database written by the previous release (schema version 1) opens, is upgraded in
/// place to version 2 with every row and column kept, and its never-tried rows count no
/// evidence yet (no announcer was recorded for them).
#[test]
fn version_1_database_upgrades_in_place_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../migrations/0001_init.sql"))
            .unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO peers (address, family, services, source, first_seen, next_try)
                 VALUES ('1.2.3.4:8333', 1, 9, 'gossip', 100, 100);
             INSERT INTO peers (address, family, services, source, first_seen, good, tries,
                 successes, last_success, reliability_1m, next_try)
                 VALUES ('5.6.7.8:8333', 1, 1033, 'seed', 50, 1, 7, 7, 90, 0.5, 200);",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let version: i64 = store
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let good = row(&store, "5.6.7.8:8333");
    assert!(good.good);
    assert_eq!(
        (good.services, good.tries, good.last_success),
        (1033, 7, Some(90))
    );
    assert_eq!(good.reliability[4], 0.5);
    let fresh: (i64, i64, i64, i64) = store
        .conn
        .query_row(
            "SELECT services, source_bits, evidence, source_rank FROM peers \
             WHERE address = '1.2.3.4:8333'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(fresh, (9, 0, 0, 0));
    let due: Vec<String> = store
        .due(1000, 10)
        .unwrap()
        .iter()
        .map(|p| p.addr.to_string())
        .collect();
    assert_eq!(due, ["5.6.7.8:8333", "1.2.3.4:8333"]);
    drop(store);
    let again = Store::open(&path).unwrap();
    assert_eq!(
        again.count().unwrap(),
        2,
        "reopening does not migrate again"
    );
}

/// A database written by the previous release (schema version 2), where onion and CJDNS
/// rows had no due time, upgrades in place to version 3: every row is kept, those rows
/// become due, and I2P rows become due only on port 0 (the only port I2P peers use).
#[test]
fn version_2_database_upgrades_and_makes_other_networks_due() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let onion = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion:8333";
    let i2p = format!("{}.b32.i2p", "a".repeat(52));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../migrations/0001_init.sql"))
            .unwrap();
        conn.execute_batch(include_str!("../../migrations/0002_evidence.sql"))
            .unwrap();
        conn.execute_batch(&format!(
            "PRAGMA user_version = 2;
             INSERT INTO peers (address, family, services, source, first_seen, next_try)
                 VALUES ('1.2.3.4:8333', 1, 9, 'gossip', 100, 100),
                        ('{onion}', 3, 9, 'gossip', 110, NULL),
                        ('[fc00::1]:8333', 5, 9, 'gossip', 120, NULL),
                        ('{i2p}:0', 4, 9, 'import', 130, NULL),
                        ('{i2p}:8333', 4, 9, 'import', 140, NULL);
             INSERT INTO peers (address, family, services, source, first_seen, good, tries,
                 successes, last_success, last_try, reliability_1m, evidence, next_try)
                 VALUES ('5.6.7.8:8333', 1, 1033, 'seed', 50, 1, 7, 7, 90, 90, 0.5, 3, 200);"
        ))
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.count().unwrap(), 6, "every row is kept");
    let good = row(&store, "5.6.7.8:8333");
    assert!(good.good && good.reliability[4] == 0.5 && good.tries == 7);
    let mut due: Vec<String> = store
        .due(1000, 10)
        .unwrap()
        .iter()
        .map(|p| p.addr.to_string())
        .collect();
    due.sort();
    let mut expected = vec![
        "1.2.3.4:8333".to_owned(),
        "5.6.7.8:8333".to_owned(),
        onion.to_owned(),
        "[fc00::1]:8333".to_owned(),
        format!("{i2p}:0"),
    ];
    expected.sort();
    assert_eq!(due, expected, "the I2P row on port 8333 is never due");
}

/// The scheduler's queries for one hidden network run on their own partial indexes (on a
/// real file with the schema's indexes, whatever the table holds).
#[test]
fn hidden_network_selections_use_their_own_indexes() {
    let (_dir, store) = temp_store();
    for (sql, index) in crate::store::HIDDEN_DUE_SQL {
        let plan: Vec<String> = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(rusqlite::params![1000, 10, Family::Onion as i64], |r| {
                r.get(3)
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(plan.iter().any(|d| d.contains(index)), "{sql}: {plan:?}");
    }
}

/// One hidden network's selection keeps the classes' order: peers that answered, then
/// never-tried ones by evidence, then failing ones.
#[test]
fn a_hidden_network_is_selected_in_class_order() {
    let (_dir, mut store) = temp_store();
    let onion = |i: u8| PeerAddr {
        host: crate::addr::Host::TorV3([i; 32]),
        port: 8333,
    };
    let text: Vec<String> = (1..=4).map(|i| onion(i).to_string()).collect();
    let peers: Vec<NewPeer> = text.iter().map(|a| gossip(a, 1)).collect();
    store.add_peers(&peers, 0).unwrap();
    let batch = results_only(vec![
        success(&text[2], 10, 1),
        failure(&text[3], 10, "timeout", false),
    ]);
    let policy = Policy {
        scale: 0.0001,
        ..POLICY
    };
    store.commit_batch(&batch, &policy, 10).unwrap();
    let order: Vec<String> = store
        .due_in(1000, 10, FamilySet::NONE.with(Family::Onion))
        .unwrap()
        .iter()
        .map(|d| d.addr.to_string())
        .collect();
    assert_eq!(order[0], text[2], "answered first");
    assert_eq!(order[3], text[3], "failing last");
    assert_eq!(order.len(), 4);
}

/// Masks with P2P_V2 (0x800) are answered only with peers whose last successful probe was
/// v2: a peer that advertises the bit but spoke v1 is left out there, and only there.
#[test]
fn v2_masks_hold_only_peers_that_spoke_v2() {
    let (_dir, mut store) = temp_store();
    let all = ["1.1.1.1:8333", "2.2.2.2:8333", "3.3.3.3:8333"];
    let peers: Vec<_> = all.iter().map(|a| gossip(a, 0)).collect();
    store.add_peers(&peers, 0).unwrap();
    let mut results: Vec<ProbeResult> = all.iter().map(|a| success(a, 10, 0xc09)).collect();
    if let Outcome::Success { transport, .. } = &mut results[0].outcome {
        *transport = "v2";
    }
    results[2] = success(all[2], 10, 0x409);
    let batch = Batch {
        results,
        learned: vec![],
    };
    store.commit_batch(&batch, &POLICY, 10).unwrap();
    let ips = |mask| {
        let mut ips = store.good_ips(Family::Ipv4, mask).unwrap();
        ips.sort();
        ips.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    assert_eq!(ips(0x809), ["1.1.1.1"], "only the peer that spoke v2");
    assert_eq!(ips(0x800), ["1.1.1.1"]);
    assert_eq!(ips(0x9), ["1.1.1.1", "2.2.2.2", "3.3.3.3"]);
    let transport: Option<String> = store
        .conn
        .query_row(
            "SELECT transport FROM peers WHERE address = '2.2.2.2:8333'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(transport.as_deref(), Some("v1"));
}

/// A database written by the previous release (schema version 3) opens and upgrades to
/// version 4 with every row kept; the transport of their last probes is not known (NULL)
/// until a probe succeeds again.
#[test]
fn version_3_database_upgrades_with_an_unknown_transport() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in [
            include_str!("../../migrations/0001_init.sql"),
            include_str!("../../migrations/0002_evidence.sql"),
            include_str!("../../migrations/0003_networks.sql"),
        ] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO peers (address, family, services, source, first_seen, next_try)
                 VALUES ('1.2.3.4:8333', 1, 9, 'gossip', 100, 100);
             INSERT INTO peers (address, family, services, source, first_seen, good, tries,
                 successes, last_success, last_try, reliability_1m, evidence, next_try)
                 VALUES ('5.6.7.8:8333', 1, 3081, 'seed', 50, 1, 7, 7, 90, 90, 0.5, 3, 4000000000);",
        )
        .unwrap();
    }
    let mut store = Store::open(&path).unwrap();
    assert_eq!(SCHEMA_VERSION, 4);
    assert_eq!(store.count().unwrap(), 2, "every row is kept");
    let good = row(&store, "5.6.7.8:8333");
    assert!(good.good && good.reliability[4] == 0.5 && good.services == 3081);
    assert!(store.good_ips(Family::Ipv4, 9).unwrap().len() == 1);
    assert!(
        store.good_ips(Family::Ipv4, 0x809).unwrap().is_empty(),
        "not known to speak v2"
    );
    let due: Vec<String> = (store.due(crate::unix_now(), 10).unwrap().iter())
        .map(|d| d.addr.to_string())
        .collect();
    assert_eq!(
        due[0], "5.6.7.8:8333",
        "a good peer advertising P2P_V2 is due at once"
    );
    let mut result = success("5.6.7.8:8333", 300, 3081);
    if let Outcome::Success { transport, .. } = &mut result.outcome {
        *transport = "v2";
    }
    store
        .commit_batch(&results_only(vec![result]), &POLICY, 300)
        .unwrap();
    let transport: Option<String> = store
        .conn
        .query_row(
            "SELECT transport FROM peers WHERE address = '5.6.7.8:8333'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        transport.as_deref(),
        Some("v2"),
        "a successful probe writes its transport"
    );
}
