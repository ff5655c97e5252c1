//! The crawl bench: how close the crawler's first full pass over a simulated network comes to
//! the ideal set by its own probes.
//!
//! A [`SimNetwork`] of `--nodes` fake nodes (a `--silent` fraction accepting TCP and never
//! answering, a `--dead` fraction refusing) runs on 127.0.0.0/8, and a [`Crawler`] with
//! `--threads` workers starts from its seed node alone. The bench polls the database through
//! its own connection until every node has been probed once, and prints the wall time of that
//! pass next to the ideal: the sum of the individual probe durations divided by the number of
//! threads (silent nodes cost the whole probe deadline, answering nodes their handshake plus
//! the `addr_linger` wait after their `getaddr` answer). The target is a ratio of at most 1.5.
//!
//! ```text
//! cargo bench --bench crawl                                   # 5000 nodes, 10% silent, 256 threads
//! cargo bench --bench crawl -- --nodes 20000 --threads 512    # or CRAWL_NODES=20000 CRAWL_THREADS=512
//! ```
//! Flags (each also an environment variable `CRAWL_<NAME>`): `--nodes`, `--threads`,
//! `--silent`, `--dead`, `--probe-timeout` (s), `--connect-timeout` (s), `--linger` (s),
//! `--max-secs` (give up after this long).

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::crawler::{CrawlConfig, CrawlCounters, Crawler};
use dnsseeder::p2p::ProbeOptions;
use dnsseeder::sim::{SimConfig, SimNetwork};
use dnsseeder::store::Policy;
use rusqlite::{Connection, OpenFlags, params};

/// Regtest's default P2P port.
const PORT: u16 = 18444;
/// How often the database is polled.
const POLL: Duration = Duration::from_millis(50);

/// The bench's knobs.
#[derive(Debug, Clone)]
struct Params {
    nodes: usize,
    threads: usize,
    silent: f64,
    dead: f64,
    probe_timeout: f64,
    connect_timeout: f64,
    linger: f64,
    max_secs: f64,
}

impl Params {
    /// Defaults, then `CRAWL_*` environment variables, then flags.
    fn parse() -> Result<Params, String> {
        let mut values: HashMap<String, String> = HashMap::new();
        for name in Params::NAMES {
            let var = format!("CRAWL_{}", name.replace('-', "_").to_uppercase());
            if let Ok(v) = std::env::var(&var) {
                values.insert((*name).to_owned(), v);
            }
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            // `cargo bench` passes `--bench` to every bench binary.
            if arg == "--bench" {
                continue;
            }
            let flag = arg.strip_prefix("--").unwrap_or("");
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (flag, None),
            };
            if !Params::NAMES.contains(&name) {
                return Err(format!(
                    "unknown argument '{arg}' (flags: --{})",
                    Params::NAMES.join(", --")
                ));
            }
            let value = match inline.or_else(|| args.next()) {
                Some(v) => v,
                None => return Err(format!("--{name} needs a value")),
            };
            values.insert(name.to_owned(), value);
        }
        let get = |name: &str, default: f64| -> Result<f64, String> {
            values.get(name).map_or(Ok(default), |v| {
                v.parse::<f64>()
                    .map_err(|e| format!("--{name} {v}: {e}"))
                    .and_then(|x| {
                        if x.is_finite() && x >= 0.0 {
                            Ok(x)
                        } else {
                            Err(format!("--{name} {v}: must be a non-negative number"))
                        }
                    })
            })
        };
        let p = Params {
            nodes: get("nodes", 5000.0)? as usize,
            threads: get("threads", 256.0)? as usize,
            silent: get("silent", 0.10)?,
            dead: get("dead", 0.0)?,
            probe_timeout: get("probe-timeout", 2.0)?,
            connect_timeout: get("connect-timeout", 1.0)?,
            linger: get("linger", 1.0)?,
            max_secs: get("max-secs", 600.0)?,
        };
        if p.nodes < 2 || p.threads == 0 || p.silent + p.dead >= 1.0 || p.probe_timeout <= 0.0 {
            return Err("need --nodes >= 2, --threads >= 1, --silent + --dead < 1, \
                        --probe-timeout > 0"
                .to_owned());
        }
        Ok(p)
    }

    const NAMES: &'static [&'static str] = &[
        "nodes",
        "threads",
        "silent",
        "dead",
        "probe-timeout",
        "connect-timeout",
        "linger",
        "max-secs",
    ];
}

/// One look at the database and the counters.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    known: u64,
    probed: u64,
}

/// What the polling loop saw.
#[derive(Debug, Default)]
struct Timeline {
    /// Every node known (in the database) for the first time.
    all_known: Option<Sample>,
    /// Every node probed once (committed with `tries > 0`).
    all_probed: Option<Sample>,
    /// The pool was at least 95% busy for the first and for the last time.
    pool_full: Option<Duration>,
    pool_last_full: Option<Duration>,
    /// At the end of the pass: committed probes of the nodes, and nodes probed more than once.
    tries: u64,
    reprobed: u64,
    /// The last node to be learned: its row id and when its first probe was committed.
    last_learned: Option<i64>,
    last_learned_probed: Option<Duration>,
    /// Mean of `in_flight` over the samples of the pass.
    occupancy_sum: f64,
    samples: u64,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let params = match Params::parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("crawl bench: {e}");
            return ExitCode::from(2);
        }
    };
    match bench(&params) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("crawl bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the bench; returns whether the pass completed.
fn bench(p: &Params) -> Result<bool, String> {
    let magic = Magic::from(Network::Regtest);
    let sim = SimNetwork::start(SimConfig::with_fractions(
        p.nodes, p.silent, p.dead, magic, PORT,
    ))
    .map_err(|e| format!("cannot start the simulated network: {e}"))?;
    let nodes: Vec<String> = sim.nodes().iter().map(|n| n.addr.to_string()).collect();
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let db = dir.path().join("crawl.db");
    let mut probe = ProbeOptions::new(magic);
    probe.connect_timeout = Duration::from_secs_f64(p.connect_timeout);
    probe.deadline = Duration::from_secs_f64(p.probe_timeout);
    probe.addr_linger = Duration::from_secs_f64(p.linger);
    let config = CrawlConfig {
        db: db.clone(),
        threads: p.threads,
        probe,
        policy: Policy {
            scale: 1.0,
            default_port: PORT,
            min_height: 0,
            allow_private: true,
            max_addresses: 1_000_000,
        },
        seeds: vec![sim.seed()],
        dns_seeds: Vec::new(),
    };
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let crawler = Crawler::start(config).map_err(|e| format!("cannot start the crawler: {e:#}"))?;
    let conn = watch_connection(&db, &nodes)?;
    let counters = crawler.counters.clone();
    let timeline = poll(&conn, &counters, p, nodes.len() as u64, started)?;
    // Snapshot everything at the end of the pass, before stopping anything.
    let snapshot = Snapshot::take(&counters, cpu_before, &timeline);
    crawler.stop();
    sim.shutdown();
    report(p, &timeline, &snapshot, nodes.len());
    Ok(timeline.all_probed.is_some())
}

/// Opens a read connection with the simulated nodes' addresses in a temporary table.
fn watch_connection(db: &Path, nodes: &[String]) -> Result<Connection, String> {
    let sql = |e: rusqlite::Error| format!("watching the database: {e}");
    // The crawler creates the file; wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let conn = loop {
        match Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE) {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => return Err(sql(e)),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
    conn.execute_batch("CREATE TEMP TABLE sim (address TEXT PRIMARY KEY)")
        .map_err(sql)?;
    {
        let mut insert = conn
            .prepare("INSERT OR IGNORE INTO temp.sim (address) VALUES (?1)")
            .map_err(sql)?;
        for address in nodes {
            insert.execute(params![address]).map_err(sql)?;
        }
    }
    Ok(conn)
}

/// Polls until every node was probed once (or `--max-secs` passed).
fn poll(
    conn: &Connection,
    counters: &CrawlCounters,
    p: &Params,
    n: u64,
    started: Instant,
) -> Result<Timeline, String> {
    let sql = |e: rusqlite::Error| format!("polling the database: {e}");
    let mut counts = conn
        .prepare(
            "SELECT count(*), coalesce(sum(tries > 0), 0), max(peers.id) \
             FROM peers JOIN temp.sim USING (address)",
        )
        .map_err(sql)?;
    let mut tries_of = conn
        .prepare("SELECT tries FROM peers WHERE id = ?1")
        .map_err(sql)?;
    let mut t = Timeline::default();
    let limit = Duration::from_secs_f64(p.max_secs);
    loop {
        std::thread::sleep(POLL);
        let in_flight = counters.in_flight.load(Ordering::Relaxed);
        let (known, probed, max_id): (u64, u64, Option<i64>) = counts
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql)?;
        let s = Sample {
            at: started.elapsed(),
            known,
            probed,
        };
        t.occupancy_sum += in_flight as f64;
        t.samples += 1;
        if in_flight * 100 >= p.threads * 95 {
            t.pool_full.get_or_insert(s.at);
            t.pool_last_full = Some(s.at);
        }
        if t.all_known.is_none() && known >= n {
            t.all_known = Some(s);
            t.last_learned = max_id;
        }
        if let (Some(id), None) = (t.last_learned, t.last_learned_probed) {
            let tries: i64 = tries_of.query_row([id], |r| r.get(0)).map_err(sql)?;
            if tries > 0 {
                t.last_learned_probed = Some(s.at);
            }
        }
        if probed >= n {
            t.all_probed = Some(s);
            (t.tries, t.reprobed) = conn
                .query_row(
                    "SELECT sum(tries), sum(tries > 1) FROM peers JOIN temp.sim USING (address)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sql)?;
            return Ok(t);
        }
        if s.at > limit {
            eprintln!(
                "crawl bench: gave up after {:.1} s: {probed} of {n} nodes probed, {known} known",
                s.at.as_secs_f64()
            );
            return Ok(t);
        }
    }
}

/// Counters and CPU time at the end of the pass.
#[derive(Debug)]
struct Snapshot {
    probes: u64,
    successes: u64,
    probe_secs: f64,
    committed: u64,
    batches: u64,
    cpu_process: f64,
    cpu_crawler: f64,
    wall: f64,
}

impl Snapshot {
    fn take(c: &CrawlCounters, cpu_before: f64, t: &Timeline) -> Snapshot {
        Snapshot {
            probes: c.probes.load(Ordering::Relaxed),
            successes: c.successes.load(Ordering::Relaxed),
            probe_secs: c.probe_micros.load(Ordering::Relaxed) as f64 / 1e6,
            committed: c.committed.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            cpu_process: cpu_seconds() - cpu_before,
            cpu_crawler: crawler_cpu_seconds(),
            wall: t.all_probed.map_or(f64::NAN, |s| s.at.as_secs_f64()),
        }
    }
}

fn report(p: &Params, t: &Timeline, s: &Snapshot, n: usize) {
    let ideal = s.probe_secs / p.threads as f64;
    let ratio = s.wall / ideal;
    let secs =
        |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
    let per_probe = |x: f64| x / s.probes.max(1) as f64 * 1e3;
    println!("crawl bench");
    println!(
        "  network            {n} simulated nodes ({:.0}% silent, {:.0}% dead), regtest, 127.0.0.0/8",
        p.silent * 100.0,
        p.dead * 100.0
    );
    println!(
        "  crawler            {} threads, probe deadline {} s, connect timeout {} s, addr linger {} s",
        p.threads, p.probe_timeout, p.connect_timeout, p.linger
    );
    println!(
        "  first full pass    {:.2} s (every node probed once, as committed)",
        s.wall
    );
    println!(
        "  probes             {} ({} answered), {:.1} probes/s",
        s.probes,
        s.successes,
        s.probes as f64 / s.wall
    );
    println!(
        "  probe time         {:.1} s in all, {:.3} s per probe on average",
        s.probe_secs,
        s.probe_secs / s.probes.max(1) as f64
    );
    println!(
        "  ideal              {ideal:.2} s (probe time / {} threads)",
        p.threads
    );
    println!(
        "  ratio              {ratio:.3} (target <= 1.5: {}); mean pool occupancy {:.1}%",
        if ratio <= 1.5 { "met" } else { "NOT met" },
        t.occupancy_sum / t.samples.max(1) as f64 / p.threads as f64 * 100.0
    );
    println!(
        "  duplicates         {} nodes probed more than once ({} committed probes of {n} nodes)",
        t.reprobed, t.tries
    );
    println!(
        "  discovery          all {n} known at {}, when {} were still unprobed",
        secs(t.all_known.map(|k| k.at)),
        t.all_known.map_or(0, |k| k.known - k.probed),
    );
    println!(
        "  pool               >= 95% busy from {} to {} (ramp-up, then the tail of the pass)",
        secs(t.pool_full),
        secs(t.pool_last_full)
    );
    println!(
        "  last node learned  first probe committed at {} (pass ended at {:.2} s)",
        secs(t.last_learned_probed),
        s.wall
    );
    println!(
        "  writer             {} batches, {:.1} results per batch",
        s.batches,
        s.committed as f64 / s.batches.max(1) as f64
    );
    println!(
        "  CPU                {:.2} s process ({:.3} ms per probe), of which crawler threads \
         {:.2} s ({:.3} ms per probe); the rest is mostly the simulated network",
        s.cpu_process,
        per_probe(s.cpu_process),
        s.cpu_crawler,
        per_probe(s.cpu_crawler)
    );
}

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// User + system time from a `/proc/.../stat` line, in ticks. Fields 14 and 15 follow the
/// parenthesised command name, which may itself contain spaces.
fn stat_ticks(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (1-based over the whole line).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// CPU time of the whole process so far (threads that exited included).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_ticks(&s))
        .map_or(f64::NAN, |(_, ticks)| ticks / clock_ticks())
}

/// CPU time of the crawler's threads (workers, scheduler, writer), which live for the whole
/// pass; the simulated network's connection threads are short-lived and not counted.
fn crawler_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let ticks: f64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|s| stat_ticks(&s))
        .filter(|(name, _)| name.starts_with("crawl-") || name == "scheduler" || name == "writer")
        .map(|(_, ticks)| ticks)
        .sum();
    ticks / clock_ticks()
}
