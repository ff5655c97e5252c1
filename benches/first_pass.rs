//! The first-pass bench of issue 11: how soon a new seeder lists the good nodes of a
//! network with silent, slow and flooding peers, crawling with its default schedules.
//!
//! A [`SimNetwork`] of `--nodes` nodes runs on 127.0.0.0/8: `--silent` of them accept TCP and
//! never send a byte, `--slow` answer every message 300 ms late, `--flooders` answer
//! `getaddr` and then send `--flood-messages` messages of 1,000 addresses where nothing
//! listens; the rest are good. A [`Crawler`] with `--threads` workers and the seeder's
//! default probe settings (`ProbeOptions::new`: connect timeout 5 s, handshake timeout 5 s,
//! deadline 20 s, address grace 250 ms) and schedules (`--retry-scale 1`) starts from the
//! seed node alone. The bench polls the database and reports:
//! - when 99% of the reachable good nodes with NODE_NETWORK (good, slow and flooding nodes
//!   advertising bit 0) are *listed*: good in the database, as DNS would serve them
//!   (target: within 60 s);
//! - the share of connections up to that moment that went to addresses where nothing
//!   listens (the flood's), from the rows' `tries` (target: at most 20%);
//! - the first full pass (every node probed once) against the pool's ideal, the sum of the
//!   probe durations divided by the threads (target: at most 1.5).
//!
//! ```text
//! cargo bench --bench first_pass          # 2000 nodes: 80 silent, 80 slow, 20 flooding 5000
//! ```
//! Flags (also `FIRST_PASS_<NAME>`): `--nodes`, `--silent`, `--slow`, `--flooders` (counts),
//! `--flood-messages`, `--threads`, `--max-secs`.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/run.rs"]
mod run;

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::crawler::{CrawlConfig, CrawlCounters, Crawler, Networks, Policy};
use dnsseeder::p2p::ProbeOptions;
use dnsseeder::sim::{Behaviour, SimConfig, SimNetwork};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rusqlite::{Connection, params};

/// Regtest's default P2P port.
const PORT: u16 = 18444;
/// How often the database is polled.
const POLL: Duration = Duration::from_millis(100);

flags::params! {
    nodes: usize = 2000, smoke 200;
    silent: usize = 80, smoke 8;
    slow: usize = 80, smoke 8;
    flooders: usize = 20, smoke 2;
    flood_messages: usize = 5, smoke 1;
    threads: usize = 32;
    max_secs: f64 = 300.0, smoke 60.0;
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    run::run("first_pass", parse(), |p| {
        bench(p).map_err(anyhow::Error::msg)
    })
}

fn parse() -> Result<Params, String> {
    let p = Params::from_flags(Some("FIRST_PASS"))?;
    if p.silent + p.slow + p.flooders >= p.nodes || p.threads == 0 {
        return Err("need --silent + --slow + --flooders < --nodes and --threads >= 1".into());
    }
    Ok(p)
}

/// The network: node 0 good (the seed), the others shuffled with a fixed seed.
fn network(p: &Params) -> SimConfig {
    let mut kinds = vec![Behaviour::Silent; p.silent];
    kinds.extend(std::iter::repeat_n(Behaviour::Slow, p.slow));
    kinds.extend(std::iter::repeat_n(Behaviour::AddrFlood, p.flooders));
    kinds.resize(p.nodes - 1, Behaviour::Good);
    kinds.shuffle(&mut rand::rngs::StdRng::seed_from_u64(11));
    kinds.insert(0, Behaviour::Good);
    let mut config = SimConfig::new(Magic::from(Network::Regtest), PORT, &kinds);
    config.flood_messages = p.flood_messages;
    config
}

fn crawl_config(p: &Params, db: &Path, sim: &SimNetwork) -> CrawlConfig {
    CrawlConfig {
        db: db.to_owned(),
        threads: p.threads,
        probe: ProbeOptions::new(Magic::from(Network::Regtest)),
        policy: Policy {
            scale: 1.0,
            default_port: PORT,
            min_height: 0,
            allow_private: true,
            max_addresses: 1_000_000,
        },
        seeds: vec![sim.seed()],
        dns_seeds: Vec::new(),
        networks: Networks::default(),
        proxy_probes: 32,
        v2_first: true,
    }
}

/// The moments the bench watches for.
#[derive(Debug, Default)]
struct Moments {
    /// 99% listed: when, and (connections to nothing, all connections) by then.
    listed: Option<(Duration, u64, u64)>,
    /// Every node probed once: when, and the probe time summed by then (microseconds).
    pass: Option<(Duration, u64)>,
}

fn bench(p: &Params) -> Result<bool, String> {
    let sim = SimNetwork::start(network(p)).map_err(|e| format!("simulated network: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let db = dir.path().join("first_pass.db");
    let started = Instant::now();
    let crawler =
        Crawler::start(crawl_config(p, &db, &sim)).map_err(|e| format!("crawler: {e:#}"))?;
    let conn = watch(&db, &sim).map_err(|e| format!("watching the database: {e}"))?;
    let targets = conn
        .query_row("SELECT count(*) FROM temp.target", [], |r| {
            r.get::<_, u64>(0)
        })
        .map_err(|e| e.to_string())?;
    let moments = poll(&conn, &crawler.counters, targets, p, started).map_err(|e| e.to_string())?;
    crawler.stop();
    sim.shutdown();
    report(p, targets, &moments);
    Ok(moments.listed.is_some() && moments.pass.is_some())
}

/// A read connection with the nodes (`temp.sim`) and the listing targets (`temp.target`).
fn watch(db: &Path, sim: &SimNetwork) -> rusqlite::Result<Connection> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !db.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let conn = Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(
        "CREATE TEMP TABLE sim (address TEXT PRIMARY KEY);
         CREATE TEMP TABLE target (address TEXT PRIMARY KEY);",
    )?;
    for node in sim.nodes() {
        let address = node.addr.to_string();
        conn.execute("INSERT INTO temp.sim VALUES (?1)", params![address])?;
        let reachable = matches!(
            node.behaviour,
            Behaviour::Good | Behaviour::Slow | Behaviour::AddrFlood
        );
        if reachable && node.services.to_u64() & 1 == 1 {
            conn.execute("INSERT INTO temp.target VALUES (?1)", params![address])?;
        }
    }
    Ok(conn)
}

/// Polls until both moments are seen or `--max-secs` passes.
fn poll(
    conn: &Connection,
    counters: &CrawlCounters,
    targets: u64,
    p: &Params,
    started: Instant,
) -> rusqlite::Result<Moments> {
    let nodes = p.nodes as u64;
    let mut m = Moments::default();
    while started.elapsed().as_secs_f64() < p.max_secs {
        std::thread::sleep(POLL);
        let at = started.elapsed();
        if m.listed.is_none() && count(conn, LISTED_SQL)? * 100 >= targets * 99 {
            let (nothing, all) = connections(conn)?;
            m.listed = Some((at, nothing, all));
        }
        if m.pass.is_none() && count(conn, PROBED_SQL)? >= nodes {
            m.pass = Some((at, counters.probe_micros.load(Ordering::Relaxed)));
        }
        if m.listed.is_some() && m.pass.is_some() {
            break;
        }
    }
    Ok(m)
}

const LISTED_SQL: &str =
    "SELECT count(*) FROM peers JOIN temp.target USING (address) WHERE good = 1";
const PROBED_SQL: &str = "SELECT count(*) FROM peers JOIN temp.sim USING (address) WHERE tries > 0";

fn count(conn: &Connection, sql: &str) -> rusqlite::Result<u64> {
    conn.query_row(sql, [], |r| r.get(0))
}

/// Connections (committed probes) so far: to addresses no node holds, and in all.
fn connections(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    conn.query_row(
        "SELECT coalesce(sum(tries) FILTER (WHERE address NOT IN (SELECT address FROM temp.sim)), 0), \
         coalesce(sum(tries), 0) FROM peers",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

fn report(p: &Params, targets: u64, m: &Moments) {
    println!("first-pass bench");
    println!(
        "  network            {} nodes: {} silent, {} slow, {} flooding {} addresses each, the rest good",
        p.nodes,
        p.silent,
        p.slow,
        p.flooders,
        p.flood_messages * 1000
    );
    println!(
        "  crawler            {} threads, the seeder's default probe settings and schedules",
        p.threads
    );
    match m.listed {
        Some((at, nothing, all)) => {
            let share = nothing as f64 * 100.0 / all.max(1) as f64;
            println!(
                "  99% listed         {:.1} s ({targets} reachable good NODE_NETWORK nodes; target <= 60 s: {})",
                at.as_secs_f64(),
                verdict(at.as_secs_f64() <= 60.0)
            );
            println!(
                "  to nothing         {nothing} of {all} connections by then ({share:.1}%; target <= 20%: {})",
                verdict(share <= 20.0)
            );
        }
        None => println!("  99% listed         not within {} s", p.max_secs),
    }
    match m.pass {
        Some((at, micros)) => {
            let ideal = micros as f64 / 1e6 / p.threads as f64;
            let ratio = at.as_secs_f64() / ideal;
            println!(
                "  first full pass    {:.1} s, ideal {ideal:.1} s (probe time / threads): ratio {ratio:.2} (target <= 1.5: {})",
                at.as_secs_f64(),
                verdict(ratio <= 1.5)
            );
        }
        None => println!("  first full pass    not within {} s", p.max_secs),
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}
