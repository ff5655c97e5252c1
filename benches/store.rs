//! Benchmarks of the peer store on generated databases (see `common::fill`):
//!
//! - `commit_batch/*`: the crawler's writer folding probe results into a database of
//!   100k known peers, in batches of 100, 500 and 2000 (target: 50,000 results/s);
//!   `commit_batch_tuned/500` the same with the connection settings proposed in
//!   docs/PERFORMANCE.md;
//! - `good_ips_1m/*`: the DNS cache rebuild, every good IPv4 peer having a service mask,
//!   from 1M rows of which 50k are good (target: 20 ms per call);
//! - `due_1m`: the scheduler taking 1000 due addresses from the same 1M rows;
//!   `due_1m_without_onion` the same with the onion rows skipped (the Tor proxy full or down);
//!   `due_1m_onion/32` a Tor proxy's top-up, onion rows only;
//! - `answer_set_1m_asmap/0x9`: the DNS cache's rebuild with `--asmap` (the query, each
//!   address's ASN, the set grouped by ASN; target 20 ms), next to `answer_set_1m_netgroups`.
//!
//! Each database is built once per process in a temporary directory. Before measuring,
//! the query plans of the DNS and scheduler queries are printed (and checked to use their
//! partial indexes), with one-off timings: 100k results in batches of 500, `summary`,
//! the row count, and the writer on the 1M rows below and at the address cap (last, as
//! it writes). `cargo bench --bench store` runs it all in a few minutes; without
//! `--bench` (as `cargo test --benches` runs it) the databases are small, so that the
//! smoke run stays quick.

mod common;
#[path = "common/explain.rs"]
mod explain;
#[path = "common/workload.rs"]
mod workload;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{NOW, Rng};
use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use dnsseeder::addr::{Family, FamilySet, Host, PeerAddr};
use dnsseeder::asmap::Asmap;
use dnsseeder::crawler::{NewPeer, Policy, SourceGroup};
use dnsseeder::dns::AnswerSet;
use dnsseeder::store::Store;
use dnsseeder::testkit::asmap::encode;
use explain::explain_queries;
use tempfile::TempDir;
use workload::{POLICY, Workload};

/// `cargo bench` passes `--bench`; test runs get small databases.
fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn sized(full: usize, test: usize) -> usize {
    if full_run() { full } else { test }
}

/// A store on a temporary file holding `rows` generated peers, `good` of them good.
fn temp_db(rows: usize, good: usize, seed: u64) -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let store = Store::open(&dir.path().join("peers.db")).expect("a new database opens");
    let start = Instant::now();
    common::fill(store.connection(), rows, good, seed).expect("the generator fills the db");
    println!(
        "generated {rows} peers ({good} good) in {:.2?}",
        start.elapsed()
    );
    (dir, store)
}

/// Bench A: probe results folded into a database of 100k known peers, with the store
/// as it opens, then (`commit_batch_tuned`) with the crawler writer's settings
/// (`Store::tune_for_writer`).
fn commit(c: &mut Criterion) {
    let rows = sized(100_000, 2_000);
    if full_run() {
        commit_100k_once(rows, false);
        commit_100k_once(rows, true);
    }
    let mut group = c.benchmark_group("commit_batch");
    for size in [100, 500, 2000] {
        bench_commit(&mut group, rows, size, false);
    }
    group.finish();
    let mut group = c.benchmark_group("commit_batch_tuned");
    bench_commit(&mut group, rows, 500, true);
    group.finish();
}

fn bench_commit(group: &mut BenchmarkGroup<'_, WallTime>, rows: usize, size: usize, writer: bool) {
    let (_dir, mut store) = temp_db(rows, rows / 20, 1);
    if writer {
        store.tune_for_writer().expect("the writer settings apply");
    }
    let mut work = Workload::new(&store, 2);
    group.throughput(Throughput::Elements(size as u64));
    group.bench_function(BenchmarkId::from_parameter(size), |b| {
        b.iter_batched(
            || work.next_batch(size),
            |(batch, now)| {
                store
                    .commit_batch(&batch, &POLICY, now)
                    .expect("the batch commits")
            },
            BatchSize::SmallInput,
        );
    });
}

/// The task as stated: 100,000 results in batches of 500, timed once.
fn commit_100k_once(rows: usize, writer: bool) {
    let (_dir, mut store) = temp_db(rows, rows / 20, 1);
    if writer {
        store.tune_for_writer().expect("the writer settings apply");
    }
    let mut work = Workload::new(&store, 2);
    let batches: Vec<_> = (0..200).map(|_| work.next_batch(500)).collect();
    let start = Instant::now();
    for (batch, now) in &batches {
        store
            .commit_batch(batch, &POLICY, *now)
            .expect("the batch commits");
    }
    let elapsed = start.elapsed();
    println!(
        "one-off: 100000 results in 200 batches of 500 into {rows} peers{}: {elapsed:.2?} \
         = {:.0} results/s",
        if writer { ", writer settings" } else { "" },
        100_000.0 / elapsed.as_secs_f64()
    );
}

/// Bench B: the DNS and scheduler queries on 1M rows, 50k of them good. The database is
/// built on first use, so that a run filtered to other benchmarks skips it.
fn queries(c: &mut Criterion) {
    let mut db = None;
    let mut group = c.benchmark_group("good_ips_1m");
    for mask in [0x1, 0x9, 0x409] {
        group.bench_function(BenchmarkId::new("ipv4", format!("{mask:#x}")), |b| {
            let store = big_db(&mut db);
            b.iter(|| {
                store
                    .good_ips(Family::Ipv4, black_box(mask))
                    .expect("good_ips runs")
            });
        });
    }
    group.finish();
    // The DNS cache's rebuild with --asmap: the query, then every address looked up and
    // the set grouped by ASN (target: 20 ms, as without).
    let asmap = bench_asmap();
    c.bench_function("answer_set_1m_asmap/0x9", |b| {
        let store = big_db(&mut db);
        b.iter(|| {
            let ips = store
                .good_ips(Family::Ipv4, black_box(9))
                .expect("good_ips runs");
            AnswerSet::grouped(ips, Some(&asmap))
        });
    });
    c.bench_function("answer_set_1m_netgroups/0x9", |b| {
        let store = big_db(&mut db);
        b.iter(|| {
            let ips = store
                .good_ips(Family::Ipv4, black_box(9))
                .expect("good_ips runs");
            AnswerSet::grouped(ips, None)
        });
    });
    c.bench_function("due_1m/1000", |b| {
        let store = big_db(&mut db);
        b.iter(|| store.due(black_box(NOW), 1000).expect("due runs"));
    });
    // As the scheduler tops up the Tor proxy's queue: onion rows only, on their indexes.
    c.bench_function("due_1m_onion/32", |b| {
        let store = big_db(&mut db);
        let onion = FamilySet::NONE.with(Family::Onion);
        b.iter(|| store.due_in(black_box(NOW), 32, onion).expect("due runs"));
    });
    // As the scheduler asks while the Tor proxy is full or down: onion rows skipped.
    c.bench_function("due_1m_without_onion/1000", |b| {
        let store = big_db(&mut db);
        let clear = FamilySet::ALL.without(Family::Onion);
        b.iter(|| store.due_in(black_box(NOW), 1000, clear).expect("due runs"));
    });
    if let Some((_, store)) = &mut db {
        writer_at_1m(store);
    }
}

/// An asmap of the shape of Bitcoin Core's: 20,000 IPv4 prefixes of /12 to /24 over 5,000
/// ASNs, and 2,000 IPv6 /32s, from a fixed seed (the test kit's encoder).
fn bench_asmap() -> Asmap {
    let mut rng = Rng::new(0xa5a5);
    let mut prefixes = Vec::new();
    for _ in 0..20_000 {
        let len = 12 + (rng.next_u64() % 13) as u8;
        let bits = (rng.next_u64() as u32) & (u32::MAX << (32 - len));
        let asn = 1 + (rng.next_u64() % 5000) as u32;
        prefixes.push((IpAddr::V4(Ipv4Addr::from(bits)), len, asn));
    }
    for _ in 0..2000 {
        let top = (0x2000_u128 | u128::from(rng.next_u64() as u16 & 0x0fff)) << 112;
        let bits = top | (u128::from(rng.next_u64() as u16) << 96);
        let asn = 1 + (rng.next_u64() % 5000) as u32;
        prefixes.push((IpAddr::V6(std::net::Ipv6Addr::from(bits)), 32, asn));
    }
    let started = Instant::now();
    let bytes = encode(&prefixes);
    let asmap = Asmap::from_bytes(bytes.clone()).expect("the encoder's asmap loads");
    println!(
        "asmap: {} prefixes, {} bytes, encoded and checked in {:.2?}",
        prefixes.len(),
        bytes.len(),
        started.elapsed()
    );
    asmap
}

/// The 1M-row database, built and described on first use.
fn big_db(db: &mut Option<(TempDir, Store)>) -> &mut Store {
    &mut db
        .get_or_insert_with(|| {
            let rows = sized(1_000_000, 10_000);
            let (dir, store) = temp_db(rows, rows / 20, 3);
            describe(&store);
            (dir, store)
        })
        .1
}

/// Prints what the 1M database holds, the query plans (checking their indexes) and a
/// few one-off timings.
fn describe(store: &Store) {
    let version: String = store
        .connection()
        .query_row("SELECT sqlite_version()", [], |r| r.get(0))
        .expect("the version reads");
    println!("SQLite {version}");
    let start = Instant::now();
    let s = store.summary(NOW).expect("summary runs");
    println!(
        "summary() in {:.2?}: known {} good {} new {} reachable {} unreachable {} banned {}",
        start.elapsed(),
        s.known,
        s.good,
        s.new,
        s.reachable,
        s.unreachable,
        s.banned
    );
    for (family, known, good) in &s.by_family {
        println!("  {:<6} known {known:>7} good {good:>6}", family.name());
    }
    for mask in [0x1u64, 0x9, 0x409] {
        let v4 = store.good_ips(Family::Ipv4, mask).expect("good_ips runs");
        let v6 = store.good_ips(Family::Ipv6, mask).expect("good_ips runs");
        println!("good_ips({mask:#x}): {} IPv4, {} IPv6", v4.len(), v6.len());
    }
    let due = store.due(NOW, 1000).expect("due runs");
    println!("due(now, 1000): {} addresses", due.len());
    explain_queries(store.connection(), 9, NOW).expect("the queries use their indexes");
    let start = Instant::now();
    let count = store.count().expect("count runs");
    println!(
        "SELECT count(*) FROM peers ({count} rows, as evict_over_cap runs it): {:.2?}",
        start.elapsed()
    );
}

/// One-offs: the writer on the 1M-row database, 20 batches of 500 results each, without
/// learned addresses, with 10 new ones per batch (below the cap: `commit_batch` then
/// counts the rows), and at the cap with 1000 new ones per batch (it evicts as many);
/// then the first two again with the writer's settings (`Store::tune_for_writer`).
/// Runs last: it writes.
fn writer_at_1m(store: &mut Store) {
    let rows = store.count().expect("count runs");
    let mut work = Workload::new(store, 4);
    let mut rng = Rng::new(5);
    let cases = [
        ("no new addresses", 0, 2 * rows, false),
        ("10 new addresses, below the cap", 10, 2 * rows, false),
        ("1000 new addresses, at the cap", 1000, rows, false),
        ("no new addresses, tuned", 0, 2 * rows, true),
        ("10 new addresses, below the cap, tuned", 10, 2 * rows, true),
    ];
    for (what, learned, max_addresses, tuned) in cases {
        if tuned {
            store.tune_for_writer().expect("the writer settings apply");
        }
        let policy = Policy {
            max_addresses,
            ..POLICY
        };
        let batches: Vec<_> = (0..20)
            .map(|_| {
                let (mut batch, now) = work.next_batch(500);
                batch.learned = (0..learned).map(|_| new_peer(&mut rng, now)).collect();
                (batch, now)
            })
            .collect();
        let start = Instant::now();
        let mut evicted = 0;
        for (batch, now) in &batches {
            evicted += store
                .commit_batch(batch, &policy, *now)
                .expect("the batch commits")
                .evicted;
        }
        let elapsed = start.elapsed();
        println!(
            "one-off, {rows} rows, batches of 500 results + {what}: {:.2?} per batch \
             = {:.0} results/s ({evicted} evicted)",
            elapsed / 20,
            10_000.0 / elapsed.as_secs_f64()
        );
    }
}

/// A gossiped address, most likely unknown.
fn new_peer(rng: &mut Rng, now: i64) -> NewPeer {
    let host = loop {
        let host = Host::V4(Ipv4Addr::from(rng.next_u64() as u32));
        let addr = PeerAddr { host, port: 8333 };
        if addr.is_routable() {
            break host;
        }
    };
    // Announced by one of 1000 sources.
    let announcer = PeerAddr {
        host: Host::V4(Ipv4Addr::from(
            0x0800_0000 + rng.below(1000) as u32 * 65_536,
        )),
        port: 8333,
    };
    NewPeer::gossiped(
        PeerAddr { host, port: 8333 },
        common::services(rng),
        now - rng.range(0, 3 * 86_400),
        SourceGroup::of(&announcer),
    )
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = commit, queries
}
criterion_main!(benches);
