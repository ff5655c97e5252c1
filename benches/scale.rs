//! The scale bench: the real `dnsseeder run` on a database of 1M generated peers, 50k of
//! them good (issue 6, item 2).
//!
//! 1. The library's generator (`dnsseeder::testkit::generate`, loopback mode, seed 1) builds the
//!    database (every address in 127.0.0.0/8, checked before anything runs), then, on that
//!    database and before the seeder starts: the scheduler's due-address selection
//!    (`Store::due(now, 1000)`) and the DNS answer-set rebuild (`StoreSource::good_peers`
//!    for masks 0x1, 0x9 and 0x409, both families, as the cache refresher calls it), each
//!    the median of `--reps` calls after one cold call, with `EXPLAIN QUERY PLAN` of their
//!    queries (checked to use the partial indexes).
//! 2. A simulated network in this process (`dnsseeder::sim`, mainnet magic, port 8333 on
//!    127.1.0.0/16): `--sim-nodes` nodes, `--flood-percent` of them `AddrFlood` (each
//!    answer to `getaddr` followed by `--flood-messages` messages of 1000 new addresses in
//!    127.200-254.x.x, where nothing listens), the rest `Good`. They are written into the
//!    database as never-tried peers due before every other never-tried row, so the seeder
//!    probes them in its first seconds and gossip flows into the writer (its gossip filter,
//!    full learned-address batches, the result queue, and eviction at `--max-addresses`
//!    1,000,000 on every batch that inserts rows).
//! 3. The real binary, `dnsseeder run --allow-private --no-dns-seed --dns-listen
//!    127.0.0.1:0 --threads 96 --dns-rate-limit 0` (zone `seed.example.com`), spawned with
//!    a stopwatch: the time until it logs `DNS listening on udp+tcp ADDR`, then a UDP `A`
//!    query for the bare zone every ~1 ms until the first correct answer: NOERROR, at
//!    least one A record, every address a good peer with the NETWORK bit (the default
//!    filter) in the database as generated, or a simulated node with that bit.
//! 4. While it crawls for `--secs` seconds (the generated loopback addresses refuse at
//!    once, so the 96 workers and the writer run flat out, and the simulated nodes answer
//!    and gossip), `VmRSS` of the process every 100 ms, then its `VmHWM`, against the
//!    100 MB limit; then SIGTERM, the crawler's totals from its log (learned addresses
//!    received, written, skipped as known; rows evicted) and the row count after exit.
//!
//! Targets: start → first correct answer ≤ 1 s, peak RSS ≤ 100 MB, each query ≤ 20 ms.
//!
//! ```text
//! cargo bench --bench scale                       # 1M rows, 50k good, 400 sim nodes, 60 s
//! cargo bench --bench scale -- --rows 200000 --good 10000 --secs 20
//! ```
//! Flags: `--rows`, `--good`, `--secs`, `--threads`, `--reps`, `--sim-nodes` (400; 0 for
//! no gossip), `--flood-percent` (50), `--flood-messages` (5). Without `--bench` (as
//! `cargo test --benches` runs it) everything is small and short: a smoke test. Only
//! loopback addresses are ever dialed.

#[path = "common/child.rs"]
mod child;
#[path = "common/explain.rs"]
mod explain;
#[path = "common/flags.rs"]
mod flags;
#[path = "common/load.rs"]
mod load;
#[path = "common/memory.rs"]
mod memory;
#[path = "common/run.rs"]
mod run;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bitcoin::p2p::{Magic, ServiceFlags};
use child::Running;
use dnsseeder::addr::{Family, PeerAddr};
use dnsseeder::crawler::{NewPeer, Source};
use dnsseeder::dns::PeerSource;
use dnsseeder::seeder::StoreSource;
use dnsseeder::sim::{Behaviour, SimConfig, SimNetwork};
use dnsseeder::store::Store;
use dnsseeder::testkit::generate::{self, LOOPBACK_MAX_ROWS};
use explain::explain_queries;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use memory::status_field;

const ZONE: &str = "seed.example.com";
/// `run`'s P2P port on mainnet, the network this bench runs.
const MAINNET_PORT: u16 = 8333;
/// `run`'s default `--max-addresses`.
const MAX_ADDRESSES: u64 = 1_000_000;
const RSS_LIMIT_MB: f64 = 100.0;
const START_LIMIT: Duration = Duration::from_secs(1);
const QUERY_LIMIT: Duration = Duration::from_millis(20);

flags::params! {
    rows: usize = 1_000_000, smoke 5_000;
    good: usize = 50_000, smoke 250;
    secs: f64 = 60, smoke 1;
    threads: usize = 96, smoke 8;
    reps: usize = 21, smoke 3;
    /// Simulated nodes answering the seeder during the RSS sampling (0: none).
    sim_nodes: usize = 400, smoke 20;
    /// Share of them that are `AddrFlood`, in percent (at most 100).
    flood_percent: f64 = 50;
    /// 1000-address messages each `AddrFlood` node sends after its answer.
    flood_messages: usize = 5;
}

impl Params {
    /// Full size under `cargo bench`, a smoke test without `--bench`; then the flags.
    fn parse() -> Result<Params, String> {
        let mut p = Params::from_flags(None)?;
        p.reps = p.reps.max(1);
        p.flood_percent = p.flood_percent.min(100.0);
        if p.good > p.rows || p.good == 0 {
            return Err(format!(
                "--good {} must be in 1..=--rows {}",
                p.good, p.rows
            ));
        }
        Ok(p)
    }
}

fn main() -> ExitCode {
    run::run("scale", Params::parse(), |p| bench(p).map(|()| true))
}

/// One row of the closing table.
struct Figure {
    what: String,
    value: String,
    limit: String,
    met: bool,
}

impl Figure {
    /// A figure checked against `limit`.
    fn new(what: impl Into<String>, value: String, limit: impl Into<String>, met: bool) -> Figure {
        Figure {
            what: what.into(),
            value,
            limit: limit.into(),
            met,
        }
    }

    /// A figure without a limit.
    fn info(what: &str, value: String) -> Figure {
        Figure::new(what, value, "-", true)
    }
}

fn bench(p: &Params) -> anyhow::Result<()> {
    let bin = Path::new(env!("CARGO_BIN_EXE_dnsseeder"));
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build it (cargo bench builds it for this bench)",
        bin.display()
    );
    println!(
        "scale bench: {} rows, {} good, {} s of crawling, {} threads; binary {}",
        p.rows,
        p.good,
        p.secs,
        p.threads,
        bin.display()
    );
    println!("load average at the start: {}", load::load_average());
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("scale.db");
    fill_database(&db, p)?;
    let mut good = good_network_peers(&db, p.rows)?;
    let mut figures = queries(&db, p.reps)?;
    let started_at = dnsseeder::unix_now();
    let sim = start_sim(&db, p, &mut good)?;
    figures.extend(run_seeder(bin, &db, p, &good, started_at)?);
    if let Some(sim) = sim {
        stop_sim(sim);
    }
    println!("\nload average at the end: {}", load::load_average());
    print_figures(&figures);
    Ok(())
}

/// Prints the closing table.
fn print_figures(figures: &[Figure]) {
    println!("\n{:<44} {:>14} {:>10}  met", "figure", "value", "limit");
    for f in figures {
        println!(
            "{:<44} {:>14} {:>10}  {}",
            f.what,
            f.value,
            f.limit,
            if f.met { "yes" } else { "NO" }
        );
    }
}

/// Fills the new database `db` (see [`generate_loopback`]) and prints what it took.
fn fill_database(db: &Path, p: &Params) -> anyhow::Result<()> {
    let start = Instant::now();
    let generated = generate_loopback(db, p)?;
    println!(
        "generate: {generated} ({:.1} s, database {:.0} MB)",
        start.elapsed().as_secs_f64(),
        std::fs::metadata(db)?.len() as f64 / 1e6
    );
    Ok(())
}

/// Fills the new database `db` with `--rows` generated peers, `--good` of them good, every
/// address in 127.0.0.0/8, as the hidden `dnsseeder generate --loopback` did (seed 1,
/// timestamps relative to now); returns the line it printed. The store is closed before
/// the seeder opens the file.
fn generate_loopback(db: &Path, p: &Params) -> anyhow::Result<String> {
    anyhow::ensure!(
        p.rows <= LOOPBACK_MAX_ROWS,
        "--rows {}: 127.0.0.0/8 holds at most {LOOPBACK_MAX_ROWS} generated addresses; \
         ask for fewer rows",
        p.rows
    );
    let store = Store::open(db)?;
    let existing = store.count()?;
    anyhow::ensure!(
        existing == 0,
        "database {} already holds {existing} peers; the bench fills only a new one",
        db.display()
    );
    let start = Instant::now();
    let options = generate::Options {
        rows: p.rows,
        good: p.good,
        seed: 1,
        loopback: true,
        now: dnsseeder::unix_now(),
    };
    generate::generate(store.connection(), &options)?;
    let elapsed = start.elapsed().as_secs_f64();
    drop(store);
    Ok(format!(
        "generated {} peers ({} good, loopback) into {} in {elapsed:.1} s",
        p.rows,
        p.good,
        db.display()
    ))
}

fn path_arg(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", path.display()))
}

/// Checks that every row is a loopback address (the seeder will dial them) and returns
/// the good peers with the NETWORK bit: the only addresses a correct answer may hold.
fn good_network_peers(db: &Path, rows: usize) -> anyhow::Result<HashSet<IpAddr>> {
    let store = Store::open_existing(db)?;
    let conn = store.connection();
    let total: usize = conn.query_row("SELECT count(*) FROM peers", [], |r| r.get(0))?;
    anyhow::ensure!(total == rows, "generated {total} rows, not {rows}");
    let mut stmt = conn.prepare("SELECT address FROM peers")?;
    let mut all = stmt.query([])?;
    while let Some(r) = all.next()? {
        let text: String = r.get(0)?;
        let addr: PeerAddr = text.parse().map_err(|e| anyhow::anyhow!("{text}: {e}"))?;
        let loopback = addr.socket_addr().is_some_and(|s| s.ip().is_loopback());
        anyhow::ensure!(
            loopback,
            "{text} is not a loopback address: refusing to run"
        );
    }
    let good: HashSet<IpAddr> = store
        .good_ips(Family::Ipv4, 1)?
        .into_iter()
        .chain(store.good_ips(Family::Ipv6, 1)?)
        .collect();
    println!(
        "checked: all {total} addresses are loopback; {} good with NETWORK",
        good.len()
    );
    Ok(good)
}

/// Says how many simulated nodes the seeder connected to, and stops them.
fn stop_sim(sim: SimNetwork) {
    let answered = sim
        .nodes()
        .iter()
        .filter(|n| sim.connections(n.addr) > 0)
        .count();
    println!(
        "sim: {answered} of {} nodes were connected to",
        sim.nodes().len()
    );
    sim.shutdown();
}

/// Starts `--sim-nodes` simulated nodes (mainnet magic, port 8333, as `run` uses), a
/// `--flood-percent` share of them `AddrFlood`, the rest `Good`, and writes them into the
/// database as never-tried peers due before every other never-tried row, so the seeder
/// probes them in its first seconds. The nodes answering with the NETWORK bit are added to
/// `good` (once probed they are good peers a correct answer may hold).
///
/// Addresses: the nodes sit in the first /16 the library hands out (127.1.0.0/16), the
/// flood addresses in 127.200.0.0-127.254.255.255, where nothing listens; the generated
/// rows are spread over all of 127.0.0.0/8, so some coincide with either. A generated row on
/// a node's address is deleted first (left, it would keep its class in the scheduler's
/// order, possibly a ban, and the node might not be probed early); gossip about a generated
/// row only refreshes its `last_seen`, which is harmless. Both counts are printed.
fn start_sim(
    db: &Path,
    p: &Params,
    good: &mut HashSet<IpAddr>,
) -> anyhow::Result<Option<SimNetwork>> {
    if p.sim_nodes == 0 {
        println!("no simulated nodes (--sim-nodes 0): no gossip");
        return Ok(None);
    }
    let behaviours = sim_behaviours(p);
    let sim = SimNetwork::start(sim_config(p, &behaviours)?)?;
    let rows = write_sim_nodes(db, &sim, good)?;
    let floods = behaviours
        .iter()
        .filter(|b| **b == Behaviour::AddrFlood)
        .count();
    println!(
        "\nsim: {} nodes ({floods} AddrFlood x {} messages of 1000 addresses, the rest Good), \
         mainnet magic, port {MAINNET_PORT}, in {}; {} generated rows on their \
         addresses deleted, {} inserted; all made due at t=1 (after {} due peers \
         that answered before); {} generated rows lie in the flood range \
         127.200-254.x.x",
        p.sim_nodes,
        p.flood_messages,
        sim_blocks(&sim),
        rows.replaced,
        rows.inserted,
        rows.answered_due,
        rows.flood_range
    );
    good.extend(
        sim.nodes()
            .iter()
            .filter(|node| node.services.has(ServiceFlags::NETWORK))
            .map(|node| node.addr.ip()),
    );
    Ok(Some(sim))
}

/// The nodes' behaviours: a `--flood-percent` share `AddrFlood`, spread evenly, the rest
/// `Good`; node 0 is always `Good` (the library seeds from a good node).
fn sim_behaviours(p: &Params) -> Vec<Behaviour> {
    let n = p.sim_nodes;
    let floods = ((n as f64 * (p.flood_percent / 100.0)).round() as usize).min(n - 1);
    (0..n)
        .map(|i| {
            if (i + 1) * floods / n > i * floods / n && i > 0 {
                Behaviour::AddrFlood
            } else {
                Behaviour::Good
            }
        })
        .collect()
}

/// The simulated network: mainnet magic and port, `--flood-messages`, no poison list;
/// checked to hold only loopback addresses.
fn sim_config(p: &Params, behaviours: &[Behaviour]) -> anyhow::Result<SimConfig> {
    let mut config = SimConfig::new(Magic::BITCOIN, MAINNET_PORT, behaviours);
    config.flood_messages = p.flood_messages;
    // The default poison list holds non-loopback addresses the seeder must never dial; it
    // never does (the crawl test proves it), but this bench offers it none at all.
    config.poison.clear();
    for node in &config.nodes {
        anyhow::ensure!(
            node.addr.ip().is_loopback() && node.addr.port() == MAINNET_PORT,
            "simulated node {} is not on a loopback address with port {MAINNET_PORT}",
            node.addr
        );
    }
    Ok(config)
}

/// The /16 blocks the simulated nodes sit in, as `127.1.0.0/16, ...`.
fn sim_blocks(sim: &SimNetwork) -> String {
    let blocks: HashSet<String> = sim
        .nodes()
        .iter()
        .map(|node| {
            let text = PeerAddr::from_socket(node.addr).to_string();
            text.split('.').take(2).collect::<Vec<_>>().join(".")
        })
        .collect();
    blocks
        .into_iter()
        .map(|b| b + ".0.0/16")
        .collect::<Vec<_>>()
        .join(", ")
}

/// What writing the simulated nodes into the database found and did.
struct SimRows {
    /// Generated rows in the flood addresses' range (counted before any change).
    flood_range: u64,
    /// Generated rows on a node's address, deleted.
    replaced: usize,
    inserted: usize,
    /// Peers that answered before and are due now: probed before the nodes.
    answered_due: u64,
}

/// Replaces the generated rows on the nodes' addresses by the nodes, never tried and due
/// at second 1, ahead of every never-tried generated row; a replaced row leaves `good`
/// (the node's own answers decide).
fn write_sim_nodes(
    db: &Path,
    sim: &SimNetwork,
    good: &mut HashSet<IpAddr>,
) -> anyhow::Result<SimRows> {
    let addrs: Vec<PeerAddr> = sim
        .nodes()
        .iter()
        .map(|node| PeerAddr::from_socket(node.addr))
        .collect();
    let mut store = Store::open_existing(db)?;
    let count = |store: &Store, sql: &str| -> anyhow::Result<u64> {
        Ok(store.connection().query_row(sql, [], |r| r.get(0))?)
    };
    let flood_range = count(&store, FLOOD_RANGE_SQL)?;
    let now = dnsseeder::unix_now();
    let mut replaced = 0;
    for addr in &addrs {
        replaced += store
            .connection()
            .execute("DELETE FROM peers WHERE address = ?1", [addr.to_string()])?;
    }
    for node in sim.nodes() {
        good.remove(&node.addr.ip());
    }
    let inserted = store.add_peers(&seed_peers(&addrs, now), now)?;
    // Due at second 1: ahead of every never-tried generated row (only peers that answered
    // before come first in the scheduler's order).
    for addr in &addrs {
        store.connection().execute(
            "UPDATE peers SET next_try = 1 WHERE address = ?1",
            [addr.to_string()],
        )?;
    }
    let answered_due = count(
        &store,
        &format!("SELECT count(*) FROM peers WHERE last_success IS NOT NULL AND next_try <= {now}"),
    )?;
    Ok(SimRows {
        flood_range,
        replaced,
        inserted,
        answered_due,
    })
}

/// Generated rows in the flood range 127.200.0.0-127.254.255.255.
const FLOOD_RANGE_SQL: &str = "SELECT count(*) FROM peers WHERE address LIKE '127.%' AND \
    CAST(substr(address, 5, instr(substr(address, 5), '.') - 1) AS INTEGER) BETWEEN 200 AND 254";

/// `addrs` as peers first heard of now, from a seed, without services.
fn seed_peers(addrs: &[PeerAddr], now: i64) -> Vec<NewPeer> {
    addrs
        .iter()
        .map(|&addr| NewPeer::unannounced(addr, now, Source::Seed))
        .collect()
}

/// The scheduler's and the DNS cache's queries on the database as generated, with their
/// plans.
fn queries(db: &Path, reps: usize) -> anyhow::Result<Vec<Figure>> {
    let store = Store::open_existing(db)?;
    let now = dnsseeder::unix_now();
    println!();
    explain_queries(store.connection(), 1, now)?;
    println!();
    let mut figures = Vec::new();
    let (cold, median, n) = time(reps, || Ok(store.due(now, 1000)?.len()))?;
    println!("due(now, 1000): {n} addresses; first {cold:.2?}, median of {reps} {median:.2?}");
    figures.push(query_figure("scheduler: due(now, 1000)", median));
    let mut source = StoreSource::new(Store::open_existing(db)?);
    for mask in [0x1u64, 0x9, 0x409] {
        let (cold, median, n) = time(reps, || Ok(source.good_peers(mask)?.len()))?;
        println!(
            "answer-set rebuild, mask {mask:#x}: {n} peers; first {cold:.2?}, median of \
             {reps} {median:.2?}"
        );
        figures.push(query_figure(
            &format!("DNS answer-set rebuild, mask {mask:#x}"),
            median,
        ));
    }
    Ok(figures)
}

fn query_figure(what: &str, t: Duration) -> Figure {
    let value = format!("{:.2} ms", t.as_secs_f64() * 1e3);
    Figure::new(what, value, "20 ms", t <= QUERY_LIMIT)
}

/// The first call's time, the median of `reps` more, and the first call's result.
fn time(
    reps: usize,
    mut f: impl FnMut() -> anyhow::Result<usize>,
) -> anyhow::Result<(Duration, Duration, usize)> {
    let start = Instant::now();
    let n = f()?;
    let cold = start.elapsed();
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        std::hint::black_box(f()?);
        times.push(start.elapsed());
    }
    times.sort();
    Ok((cold, times[times.len() / 2], n))
}

/// What the log reader saw, with the time it saw it.
enum Seen {
    Listening(SocketAddr, Instant),
    Line(String),
}

/// The seeder as a child process (killed if the bench fails half-way), with a thread
/// reading its log.
struct Seeder {
    running: Running,
    /// When it was spawned: the start of the stopwatch.
    spawned: Instant,
    rx: mpsc::Receiver<Seen>,
    reader: Option<thread::JoinHandle<()>>,
    /// The log lines passed on so far.
    log: Vec<String>,
}

impl Seeder {
    /// Spawns `bin` with `args` (info logging, stdout discarded) and a thread that passes on
    /// its log lines, and the DNS address once it is logged.
    fn spawn(bin: &Path, args: &[&str]) -> anyhow::Result<Seeder> {
        let spawned = Instant::now();
        let mut running = Running::spawn(
            Command::new(bin)
                .args(args)
                .env_remove("DNSSEEDER_DB")
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )?;
        let stderr = running.take_stderr()?;
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("DNS listening on udp+tcp ").nth(1) {
                    if let Ok(addr) = addr.trim().parse() {
                        let _ = tx.send(Seen::Listening(addr, Instant::now()));
                    }
                }
                let _ = tx.send(Seen::Line(line));
            }
        });
        Ok(Seeder {
            running,
            spawned,
            rx,
            reader: Some(reader),
            log: Vec::new(),
        })
    }

    /// Waits up to 30 s for the line `DNS listening on udp+tcp ADDR`; returns the address
    /// and when the line was read.
    fn listening(&mut self) -> anyhow::Result<(SocketAddr, Instant)> {
        loop {
            match self.rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Seen::Listening(addr, at)) => return Ok((addr, at)),
                Ok(Seen::Line(line)) => self.log.push(line),
                Err(_) => anyhow::bail!(
                    "no `DNS listening` line within 30 s:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Keeps the log lines read since the last call.
    fn drain(&mut self) {
        self.log.extend(self.rx.try_iter().filter_map(|s| match s {
            Seen::Line(l) => Some(l),
            Seen::Listening(..) => None,
        }));
    }

    /// Stops the seeder with SIGTERM (60 s at most); returns how it exited, and its log.
    fn stop(mut self) -> anyhow::Result<(String, Vec<String>)> {
        let exited = self.running.terminate(Duration::from_secs(60))?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.drain();
        Ok((exited, self.log))
    }
}

/// `dnsseeder run`'s arguments: private (loopback) addresses allowed, no DNS seeds, DNS
/// on an ephemeral port of 127.0.0.1 without rate limiting, `threads` crawler threads.
fn seeder_args<'a>(db: &'a Path, threads: &'a str) -> anyhow::Result<Vec<&'a str>> {
    Ok(vec![
        "run",
        "--db",
        path_arg(db)?,
        "--allow-private",
        "--no-dns-seed",
        "--dns-listen",
        "127.0.0.1:0",
        "--host",
        ZONE,
        "--ns",
        "ns.seed.example.com",
        "--mbox",
        "hostmaster.seed.example.com",
        "--dns-rate-limit",
        "0",
        "--status-interval",
        "10",
        "--connect-timeout",
        "1",
        "--probe-timeout",
        "2",
        "--threads",
        threads,
    ])
}

/// Runs the seeder: times its start, samples its memory while it crawls for `--secs`,
/// stops it and reads its totals; returns the figures.
fn run_seeder(
    bin: &Path,
    db: &Path,
    p: &Params,
    good: &HashSet<IpAddr>,
    started_at: i64,
) -> anyhow::Result<Vec<Figure>> {
    let threads = p.threads.to_string();
    let args = seeder_args(db, &threads)?;
    println!("\ndnsseeder {}", args.join(" "));
    let mut seeder = Seeder::spawn(bin, &args)?;
    let start = time_start(&mut seeder, good)?;
    let memory = sample_rss(&mut seeder, Duration::from_secs_f64(p.secs))?;
    let during = Store::open_existing(db)?.count()?;
    let (exited, log) = seeder.stop()?;
    for line in log.iter().filter(|l| {
        (l.contains("good ") && l.contains("known"))
            || l.contains("pruned")
            || l.contains("crawler stopped")
    }) {
        println!("  log: {line}");
    }
    let gossip = gossip_totals(&log)?;
    let after = report_rows(db, p, during, &exited, started_at)?;
    println!(
        "gossip: the writer received {} learned addresses, wrote {} ({} skipped as known); \
         {} rows evicted over --max-addresses {MAX_ADDRESSES}",
        gossip.written + gossip.skipped,
        gossip.written,
        gossip.skipped,
        gossip.evicted
    );
    Ok(seeder_figures(p, &start, &memory, &gossip, after))
}

/// How long the seeder took, from its spawn, to log its DNS port and to answer correctly.
struct StartTimes {
    to_port: Duration,
    to_answer: Duration,
}

/// Waits for the seeder's DNS port, then queries it until an answer is correct; prints
/// and returns the times.
fn time_start(seeder: &mut Seeder, good: &HashSet<IpAddr>) -> anyhow::Result<StartTimes> {
    let (dns, listening) = seeder.listening()?;
    let (answered, tries, wrong) = first_correct_answer(dns, good)?;
    let to_port = listening - seeder.spawned;
    let to_answer = answered - seeder.spawned;
    println!(
        "start: port logged after {:.1} ms, first correct answer after {:.1} ms \
         ({:.1} ms after the port; {tries} queries, {wrong} answers not yet correct)",
        to_port.as_secs_f64() * 1e3,
        to_answer.as_secs_f64() * 1e3,
        (answered - listening).as_secs_f64() * 1e3
    );
    Ok(StartTimes { to_port, to_answer })
}

/// Prints the rows during the run (`during`) and after the seeder exited, and the rows
/// first heard of from gossip since `started_at` still in the table; returns the count
/// after exit.
fn report_rows(
    db: &Path,
    p: &Params,
    during: u64,
    exited: &str,
    started_at: i64,
) -> anyhow::Result<u64> {
    let store = Store::open_existing(db)?;
    let after = store.count()?;
    let learned_rows: u64 = store.connection().query_row(
        "SELECT count(*) FROM peers WHERE source = 'gossip' AND first_seen >= ?1",
        [started_at],
        |r| r.get(0),
    )?;
    drop(store);
    println!(
        "rows: {during} after {} s of crawling, {after} after exit ({exited}); {learned_rows} \
         rows first heard of from gossip during the run are still in the table",
        p.secs
    );
    Ok(after)
}

/// The rows of the closing table about the seeder's run.
fn seeder_figures(
    p: &Params,
    start: &StartTimes,
    memory: &Memory,
    gossip: &GossipTotals,
    after: u64,
) -> Vec<Figure> {
    let mib = |kb: u64| kb as f64 / 1024.0;
    let within = |kb: u64| mib(kb) * 1.048_576 <= RSS_LIMIT_MB;
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    vec![
        Figure::info("start → DNS port logged", ms(start.to_port)),
        Figure::new(
            "start → first correct answer",
            ms(start.to_answer),
            "1000 ms",
            start.to_answer <= START_LIMIT,
        ),
        Figure::new(
            format!("peak VmRSS (100 ms samples, {} s)", p.secs),
            format!("{:.1} MiB", mib(memory.peak)),
            "100 MB",
            within(memory.peak),
        ),
        Figure::new(
            "VmHWM at the end",
            format!("{:.1} MiB", mib(memory.hwm)),
            "100 MB",
            within(memory.hwm),
        ),
        Figure::info(
            "learned addresses received by the writer",
            (gossip.written + gossip.skipped).to_string(),
        ),
        Figure::info(
            "learned addresses written (after the filter)",
            gossip.written.to_string(),
        ),
        Figure::info(
            "rows evicted over --max-addresses",
            gossip.evicted.to_string(),
        ),
        Figure::new(
            "rows after the run",
            after.to_string(),
            format!("<= {MAX_ADDRESSES}"),
            after <= MAX_ADDRESSES,
        ),
    ]
}

/// The crawler's totals, from the line `run` logs when the crawler has stopped.
#[derive(Debug, Default)]
struct GossipTotals {
    written: u64,
    skipped: u64,
    evicted: u64,
}

fn gossip_totals(log: &[String]) -> anyhow::Result<GossipTotals> {
    let line = log
        .iter()
        .find(|l| l.contains("crawler stopped"))
        .ok_or_else(|| anyhow::anyhow!("no `crawler stopped` line in the seeder's log"))?;
    // "... learned addresses: W written, S skipped as known; E evicted over ..."
    let number_before = |word: &str| -> anyhow::Result<u64> {
        let head = line
            .split(word)
            .next()
            .filter(|h| h.len() < line.len())
            .ok_or_else(|| anyhow::anyhow!("no '{word}' in: {line}"))?;
        head.split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no number before '{word}' in: {line}"))
    };
    Ok(GossipTotals {
        written: number_before(" written")?,
        skipped: number_before(" skipped as known")?,
        evicted: number_before(" evicted over")?,
    })
}

/// Queries `A seed.example.com` about every millisecond until an answer is correct;
/// returns when, how many queries it took and how many answers were not yet correct.
fn first_correct_answer(
    dns: SocketAddr,
    good: &HashSet<IpAddr>,
) -> anyhow::Result<(Instant, u32, u32)> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(dns)?;
    socket.set_read_timeout(Some(Duration::from_millis(1)))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    let (mut tries, mut wrong) = (0u32, 0u32);
    while Instant::now() < deadline {
        tries += 1;
        let id = tries as u16;
        socket.send(&query(id)?)?;
        let sent = Instant::now();
        // Read until this query's answer or ~1 ms of silence.
        while sent.elapsed() < Duration::from_millis(2) {
            let Ok(n) = socket.recv(&mut buf) else { break };
            let at = Instant::now();
            let Ok(m) = Message::from_vec(&buf[..n]) else {
                wrong += 1;
                continue;
            };
            if m.metadata.id != id {
                continue;
            }
            if is_correct(&m, good) {
                return Ok((at, tries, wrong));
            }
            wrong += 1;
            break;
        }
        thread::sleep(Duration::from_millis(1).saturating_sub(sent.elapsed()));
    }
    anyhow::bail!("no correct answer within 30 s ({tries} queries, {wrong} wrong answers)")
}

fn query(id: u16) -> anyhow::Result<Vec<u8>> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(ZONE)?, RecordType::A));
    Ok(m.to_vec()?)
}

/// NOERROR, at least one A record, and only good peers with the NETWORK bit.
fn is_correct(m: &Message, good: &HashSet<IpAddr>) -> bool {
    let ips: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    m.metadata.response_code == ResponseCode::NoError
        && !ips.is_empty()
        && ips.iter().all(|ip| good.contains(ip))
}

/// The seeder's resident memory, in KiB.
struct Memory {
    /// The largest `VmRSS` sampled.
    peak: u64,
    /// `VmHWM` at the end.
    hwm: u64,
}

/// Samples `VmRSS` of the seeder every 100 ms for `span` (printing it every 5 s), keeping
/// its log lines; prints and returns the largest sample and the final `VmHWM`.
fn sample_rss(seeder: &mut Seeder, span: Duration) -> anyhow::Result<Memory> {
    let pid = seeder.running.id();
    let start = Instant::now();
    let mut peak = 0;
    let mut peak_at = (Duration::ZERO, 0);
    let mut next_print = start;
    while start.elapsed() < span {
        let rss = status_field(pid, "VmRSS")?;
        if rss > peak {
            peak = rss;
            peak_at = (start.elapsed(), status_field(pid, "RssAnon")?);
        }
        if Instant::now() >= next_print {
            next_print += Duration::from_secs(5);
            println!(
                "  t+{:>4.1} s: VmRSS {:.1} MiB",
                start.elapsed().as_secs_f64(),
                rss as f64 / 1024.0
            );
        }
        seeder.drain();
        thread::sleep(Duration::from_millis(100));
    }
    let hwm = status_field(pid, "VmHWM")?;
    let mib = |kb: u64| kb as f64 / 1024.0;
    println!(
        "  peak: VmRSS {:.1} MiB at t+{:.1} s (anonymous {:.1})",
        mib(peak),
        peak_at.0.as_secs_f64(),
        mib(peak_at.1)
    );
    println!(
        "  end: VmRSS {:.1} MiB (anonymous {:.1}, files {:.1}), VmHWM {:.1} MiB, {} threads",
        mib(status_field(pid, "VmRSS")?),
        mib(status_field(pid, "RssAnon")?),
        mib(status_field(pid, "RssFile")? + status_field(pid, "RssShmem")?),
        mib(hwm),
        status_field(pid, "Threads")?
    );
    Ok(Memory { peak, hwm })
}
