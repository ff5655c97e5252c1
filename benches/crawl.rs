//! The crawl bench: how close the crawler's first full pass over a simulated network comes to
//! the ideal set by its own probes.
//!
//! A [`SimNetwork`] of `--nodes` fake nodes (a `--silent` fraction accepting TCP and never
//! answering, a `--dead` fraction refusing) runs on 127.0.0.0/8, and a [`Crawler`] with
//! `--threads` workers starts from its seed node alone. The bench polls the database through
//! its own connection until every node has been probed once, and prints the wall time of that
//! pass next to the ideal: the sum of the individual probe durations divided by the number of
//! threads (silent nodes cost the handshake timeout, answering nodes their handshake plus the
//! `addr_grace` wait after their `getaddr` answer). The target is a ratio of at most 1.5.
//!
//! The probe's settings are the bench's own short ones (deadline 2 s, connect timeout 1 s)
//! and the seeder's defaults for the rest: `--addr-grace` 0.25 s, `--handshake-timeout` 5 s,
//! lowered to the deadline as `run` lowers its default (so 2 s unless `--probe-timeout` is
//! raised). Before issue 11 a probe had no handshake timeout and a 1 s grace:
//! `--handshake-timeout 2 --addr-grace 1` measures that.
//!
//! With `--onion F`, that share of each kind of node (silent ones included) lives on Tor: it
//! is gossiped by its `.onion` name and reachable only through the emulated Tor proxy the
//! simulated network runs (each CONNECT waits `--circuit-delay`, a circuit being built),
//! which the crawler gets as its `--onion-proxy`, with at most `--proxy-probes` probes in
//! flight through it. The pass then has a second bound: the proxy's own share, the onion
//! probes' time divided by `--proxy-probes`. The bench prints it next to the pool's ideal,
//! the pass's ratio to the larger of the two, the proxy's requests and most sessions open
//! at once (which must stay within the cap), how many of the gate's slots were held on
//! average (by probes queued or running) against the probes running, and the mean onion
//! probe against the mean of all. Every other `Good` node also gossips an onion name no
//! node has (the simulated network's poison): with a proxy those are dialed too, through
//! the same slots, and the emulated Tor refuses them at once.
//!
//! `--v2 F` makes that share of the good nodes speak BIP324 v2 and advertise it, so the
//! crawler probes them over v2 (an elliptic-curve key exchange and encrypted packets per
//! probe): compare the CPU per probe with `--v2 0`.
//!
//! It also reports the CPU per probe (the process, and split by thread role: crawler
//! workers, writer, scheduler, the simulated network, the bench's own polling), the writer's
//! batch sizes (from the crawler's counters) and the peak of open file descriptors (each
//! listening node holds one).
//!
//! ```text
//! cargo bench --bench crawl                                   # 5000 nodes, 10% silent, 256 threads
//! cargo bench --bench crawl -- --nodes 20000 --threads 512 --silent 0.1 --dead 0.1
//! cargo bench --bench crawl -- --probe-timeout 20              # the seeder's own timeouts
//! cargo bench --bench crawl -- --onion 0.2                     # 20% on Tor, 32 probes through it
//! cargo bench --bench crawl -- --v2 1 --threads 512            # every good node probed over v2
//! cargo bench --bench crawl -- --onion 0.2 --proxy-probes 8    # the proxy's cap sets the pass
//! ```
//! Flags (each also an environment variable `CRAWL_<NAME>`): `--nodes`, `--threads`,
//! `--silent`, `--dead`, `--probe-timeout` (s), `--connect-timeout` (s),
//! `--handshake-timeout` (s), `--addr-grace` (s), `--max-secs` (give up after this long),
//! `--onion` (fraction on Tor, default 0), `--proxy-probes` (default 32), `--circuit-delay`
//! (s, default 0.02).

#[path = "common/flags.rs"]
mod flags;
#[path = "common/process.rs"]
mod process;
#[path = "common/run.rs"]
mod run;
#[path = "common/threads.rs"]
mod threads;

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;

use dnsseeder::crawler::{
    CrawlConfig, CrawlCounters, Crawler, Networks, Policy, ProxyGate, ProxyGates, ProxyKind,
};
use dnsseeder::p2p::ProbeOptions;
use dnsseeder::sim::{Network as SimNet, ProxyStats, SimConfig, SimNetwork, SimProxy};
use rusqlite::{Connection, OpenFlags, Statement, params};

/// Regtest's default P2P port.
const PORT: u16 = 18444;
/// How often the database is polled.
const POLL: Duration = Duration::from_millis(50);
/// Open file descriptors are counted every this many polls (each count lists `/proc/self/fd`).
const FD_SAMPLE_EVERY: u64 = 40;

flags::params! {
    nodes: usize = 5000;
    threads: usize = 256;
    silent: f64 = 0.10;
    dead: f64 = 0.0;
    probe_timeout: f64 = 2.0;
    connect_timeout: f64 = 1.0;
    /// The seeder's default (`DEFAULT_HANDSHAKE_TIMEOUT`), lowered to `probe_timeout`.
    handshake_timeout: f64 = 5.0;
    /// The seeder's default (`DEFAULT_ADDR_GRACE`).
    addr_grace: f64 = 0.25;
    max_secs: f64 = 600.0;
    /// The share of the nodes on Tor (0: none, no proxy).
    onion: f64 = 0.0;
    /// The seeder's default (`--proxy-probes`).
    proxy_probes: usize = 32;
    /// The emulated Tor's wait before each CONNECT reply (`SimConfig`'s default).
    circuit_delay: f64 = 0.02;
    /// The share of the good nodes that speak BIP324 v2 (and advertise it: probed over v2).
    v2: f64 = 0.0;
}

impl Params {
    /// Defaults (the same with or without `--bench`), then `CRAWL_*` environment
    /// variables, then flags.
    fn parse() -> Result<Params, String> {
        let p = Params::from_flags(Some("CRAWL"))?;
        if p.nodes < 2
            || p.threads == 0
            || p.silent + p.dead >= 1.0
            || p.probe_timeout <= 0.0
            || p.handshake_timeout <= 0.0
            || p.onion > 1.0
            || p.proxy_probes == 0
        {
            return Err("need --nodes >= 2, --threads >= 1, --silent + --dead < 1, \
                        --probe-timeout > 0, --handshake-timeout > 0, --onion <= 1, \
                        --proxy-probes >= 1"
                .to_owned());
        }
        Ok(Params {
            handshake_timeout: p.handshake_timeout.min(p.probe_timeout),
            ..p
        })
    }
}

/// One look at the database and the counters.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    known: u64,
    probed: u64,
    /// Probes in flight, probes finished, and results committed, by the crawler's counters.
    in_flight: usize,
    probes: u64,
    committed: u64,
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
    /// Most open file descriptors seen (sampled every 2 s and at the end).
    peak_fds: u64,
    /// The onion probes' side of the pass (with `--onion`).
    onion: OnionTimeline,
}

/// How the onion probes went through the pass, sampled with the database.
#[derive(Debug, Default)]
struct OnionTimeline {
    /// The proxy's use from the first onion job queued while the other probes ran, then
    /// after they were done.
    during: Occupancy,
    after: Occupancy,
    /// When the gate first held a slot.
    first_job: Option<Duration>,
    /// When the counters first showed as many other probes as other nodes, and the onion
    /// probes carried by then.
    clear_done: Option<Duration>,
    carried_at_clear: u64,
    /// Onion probes carried at the last sample, and when that count last grew.
    carried: u64,
    last_carried: Option<Duration>,
}

/// Sums over samples of the gate's slots held (probes queued or running through the
/// proxy) and of the sessions open at the emulated Tor.
#[derive(Debug, Default, Clone, Copy)]
struct Occupancy {
    held: f64,
    sessions: f64,
    samples: u64,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    run::run("crawl", Params::parse(), |p| {
        bench(p).map_err(anyhow::Error::msg)
    })
}

/// Runs the bench; returns whether the pass completed.
fn bench(p: &Params) -> Result<bool, String> {
    let magic = Magic::from(Network::Regtest);
    let sim = SimNetwork::start(sim_config(p, magic))
        .map_err(|e| format!("cannot start the simulated network: {e}"))?;
    // Onion nodes are stored by their `.onion` name.
    let nodes: Vec<String> = sim.nodes().iter().map(|n| n.public.to_string()).collect();
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let db = dir.path().join("crawl.db");
    let config = crawl_config(p, magic, &db, &sim);
    let cpu_before = Cpu::now();
    let started = Instant::now();
    let crawler = Crawler::start(config).map_err(|e| format!("cannot start the crawler: {e:#}"))?;
    let conn = watch_connection(&db, &nodes)?;
    let (counters, gates) = (crawler.counters.clone(), crawler.gates.clone());
    let onion = OnionWatch::new(&gates, &sim, p.proxy_probes);
    let timeline = poll(&conn, &counters, p, &nodes, started, onion.as_ref())?;
    // Snapshot everything at the end of the pass, before stopping anything.
    let snapshot = Snapshot::take(&counters, &cpu_before, &timeline);
    let tor = onion.as_ref().map(OnionWatch::snapshot);
    let listeners = sim_listeners(&sim);
    crawler.stop();
    sim.shutdown();
    report(p, &timeline, &snapshot, nodes.len(), listeners);
    if let Some(tor) = &tor {
        report_onion(p, &timeline, &snapshot, tor);
    }
    Ok(timeline.all_probed.is_some())
}

/// The simulated network: `--nodes` with the `--silent` and `--dead` shares, and the
/// `--onion` share of each kind on Tor behind a proxy waiting `--circuit-delay`.
fn sim_config(p: &Params, magic: Magic) -> SimConfig {
    let mut config = SimConfig::with_fractions(p.nodes, p.silent, p.dead, magic, PORT);
    config.circuit_delay = Duration::from_secs_f64(p.circuit_delay);
    if p.onion > 0.0 {
        config.place(SimNet::Onion, p.onion);
    }
    config.speak_v2(p.v2);
    config
}

/// The crawler's settings: `--threads` workers with the bench's timeouts, on regtest,
/// private addresses allowed, starting from the seed of `sim` alone, its Tor proxy (if any
/// node is an onion) as `--onion-proxy` with `--proxy-probes`.
fn crawl_config(p: &Params, magic: Magic, db: &Path, sim: &SimNetwork) -> CrawlConfig {
    let mut probe = ProbeOptions::new(magic);
    probe.connect_timeout = Duration::from_secs_f64(p.connect_timeout);
    probe.deadline = Duration::from_secs_f64(p.probe_timeout);
    probe.handshake_timeout = Duration::from_secs_f64(p.handshake_timeout);
    probe.addr_grace = Duration::from_secs_f64(p.addr_grace);
    CrawlConfig {
        db: db.to_owned(),
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
        networks: Networks {
            onion_proxy: sim.onion_proxy(),
            ..Networks::default()
        },
        proxy_probes: p.proxy_probes,
        v2_first: true,
    }
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
///
/// The poll must cost the 2-core machine next to nothing: a join of every node against
/// the table, 20 times a second, took about a third of the process's CPU at 20,000 nodes.
/// Each poll therefore reads only the rows added since the previous one (a rowid range) to
/// follow discovery, and runs the exact count of probed nodes (the join) only once the
/// crawler's own counter of committed results says the pass may be over: every committed
/// probe of a node is a committed result, so the counter reaches the number of nodes no
/// later than the pass ends.
fn poll(
    conn: &Connection,
    counters: &CrawlCounters,
    p: &Params,
    nodes: &[String],
    started: Instant,
    onion: Option<&OnionWatch>,
) -> Result<Timeline, String> {
    let n = nodes.len() as u64;
    let mut watch = Watch::new(conn, nodes)?;
    let mut t = Timeline::default();
    let limit = Duration::from_secs_f64(p.max_secs);
    let mut round = 0u64;
    loop {
        round += 1;
        std::thread::sleep(POLL);
        if round % FD_SAMPLE_EVERY == 1 {
            t.peak_fds = t.peak_fds.max(process::open_fds());
        }
        let s = watch.sample(counters, n, started)?;
        t.record(s, p.threads, n, watch.last_sim_id);
        if let Some(o) = onion {
            t.onion.record(o, &s, n);
        }
        if let (Some(id), None) = (t.last_learned, t.last_learned_probed) {
            if watch.tries(id)? > 0 {
                t.last_learned_probed = Some(s.at);
            }
        }
        if s.probed >= n {
            t.all_probed = Some(s);
            (t.tries, t.reprobed) = watch.totals()?;
            t.peak_fds = t.peak_fds.max(process::open_fds());
            return Ok(t);
        }
        if s.at > limit {
            eprintln!(
                "crawl bench: gave up after {:.1} s: {} results committed, {} of {n} \
                 nodes known",
                s.at.as_secs_f64(),
                s.committed,
                s.known
            );
            return Ok(t);
        }
    }
}

impl Timeline {
    /// Notes the pool's occupancy in `s`, and the first sample where all `n` nodes are known
    /// (`last_sim_id` then being the last node learned).
    fn record(&mut self, s: Sample, threads: usize, n: u64, last_sim_id: Option<i64>) {
        self.occupancy_sum += s.in_flight as f64;
        self.samples += 1;
        if s.in_flight * 100 >= threads * 95 {
            self.pool_full.get_or_insert(s.at);
            self.pool_last_full = Some(s.at);
        }
        if self.all_known.is_none() && s.known >= n {
            // Probed-so-far at that moment, from the counter (the exact count would cost a join).
            self.all_known = Some(Sample {
                probed: s.committed,
                ..s
            });
            self.last_learned = last_sim_id;
        }
    }
}

impl OnionTimeline {
    /// Notes the gate's and the proxy's occupancy now, in the phase the counters in `s`
    /// say (the other probes of `n` nodes in all running or done), and whether an onion
    /// probe ended since the last sample.
    fn record(&mut self, o: &OnionWatch, s: &Sample, n: u64) {
        let (held, sessions) = o.occupancy();
        let carried = o.gate.carried.load(Ordering::Relaxed);
        if self.clear_done.is_none()
            && s.probes.saturating_sub(carried) >= n.saturating_sub(o.nodes)
        {
            self.clear_done = Some(s.at);
            self.carried_at_clear = carried;
        }
        if self.clear_done.is_some() {
            self.after.add(held, sessions);
        } else if held > 0 || self.first_job.is_some() {
            self.first_job.get_or_insert(s.at);
            self.during.add(held, sessions);
        }
        if carried > self.carried {
            self.carried = carried;
            self.last_carried = Some(s.at);
        }
    }
}

impl Occupancy {
    fn add(&mut self, held: usize, sessions: u64) {
        self.held += held as f64;
        self.sessions += sessions as f64;
        self.samples += 1;
    }

    /// `mean H held, S open` over the samples.
    fn means(&self) -> String {
        let n = self.samples.max(1) as f64;
        format!("{:.1} held, {:.1} open", self.held / n, self.sessions / n)
    }
}

/// The onion side of the run: the crawler's gate of the Tor proxy and the emulated Tor.
struct OnionWatch<'a> {
    gate: &'a ProxyGate,
    proxy: &'a SimProxy,
    /// `--proxy-probes`.
    cap: usize,
    /// Nodes on Tor.
    nodes: u64,
}

/// What the gate and the emulated Tor counted by the end of the pass.
#[derive(Debug)]
struct OnionSnapshot {
    nodes: u64,
    carried: u64,
    carried_secs: f64,
    failures: u64,
    proxy: ProxyStats,
}

impl<'a> OnionWatch<'a> {
    /// The watch of the onion probes, if `sim` has onion nodes (and so a Tor proxy the
    /// crawler has a gate for).
    fn new(gates: &'a ProxyGates, sim: &'a SimNetwork, cap: usize) -> Option<OnionWatch<'a>> {
        let nodes = sim.nodes().iter();
        let nodes = nodes.filter(|n| n.network == SimNet::Onion).count() as u64;
        Some(OnionWatch {
            gate: gates.get(ProxyKind::Onion)?,
            proxy: sim.proxy(SimNet::Onion)?,
            cap,
            nodes,
        })
    }

    /// The gate's slots held now (probes queued or running through it: its cap less its
    /// room, all of them while it backs off) and the sessions open at the proxy.
    fn occupancy(&self) -> (usize, u64) {
        let held = self.cap.saturating_sub(self.gate.room(Instant::now()));
        (held, self.proxy.stats().in_flight)
    }

    fn snapshot(&self) -> OnionSnapshot {
        let g = self.gate;
        OnionSnapshot {
            nodes: self.nodes,
            carried: g.carried.load(Ordering::Relaxed),
            carried_secs: g.carried_micros.load(Ordering::Relaxed) as f64 / 1e6,
            failures: g.failures.load(Ordering::Relaxed),
            proxy: self.proxy.stats(),
        }
    }
}

/// The polling queries on the bench's own connection, and what they have seen so far.
struct Watch<'a> {
    conn: &'a Connection,
    new_rows: Statement<'a>,
    probed_count: Statement<'a>,
    tries_of: Statement<'a>,
    /// The simulated nodes' addresses.
    sim: HashSet<&'a str>,
    /// The largest row id read.
    last_id: i64,
    /// Simulated nodes in the table.
    known: u64,
    /// The row id of the last simulated node learned.
    last_sim_id: Option<i64>,
}

impl<'a> Watch<'a> {
    fn new(conn: &'a Connection, nodes: &'a [String]) -> Result<Watch<'a>, String> {
        Ok(Watch {
            conn,
            new_rows: conn
                .prepare("SELECT id, address FROM peers WHERE id > ?1 ORDER BY id")
                .map_err(polling)?,
            probed_count: conn
                .prepare(
                    "SELECT coalesce(sum(tries > 0), 0) FROM peers JOIN temp.sim USING (address)",
                )
                .map_err(polling)?,
            tries_of: conn
                .prepare("SELECT tries FROM peers WHERE id = ?1")
                .map_err(polling)?,
            sim: nodes.iter().map(String::as_str).collect(),
            last_id: 0,
            known: 0,
            last_sim_id: None,
        })
    }

    /// Reads the crawler's counters, then the rows added since the last sample; counts the
    /// nodes probed (the join) only once `n` results are committed.
    fn sample(
        &mut self,
        counters: &CrawlCounters,
        n: u64,
        started: Instant,
    ) -> Result<Sample, String> {
        let in_flight = counters.in_flight.load(Ordering::Relaxed);
        let probes = counters.probes.load(Ordering::Relaxed);
        let committed = counters.committed.load(Ordering::Relaxed);
        self.read_new_rows()?;
        let probed: u64 = if committed >= n {
            self.probed_count
                .query_row([], |r| r.get(0))
                .map_err(polling)?
        } else {
            0
        };
        Ok(Sample {
            at: started.elapsed(),
            known: self.known,
            probed,
            in_flight,
            probes,
            committed,
        })
    }

    /// Reads the rows added since the last call and counts the simulated nodes among them.
    fn read_new_rows(&mut self) -> Result<(), String> {
        let rows = self
            .new_rows
            .query_map([self.last_id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(polling)?;
        for row in rows {
            let (id, address) = row.map_err(polling)?;
            self.last_id = id;
            if self.sim.contains(address.as_str()) {
                self.known += 1;
                self.last_sim_id = Some(id);
            }
        }
        Ok(())
    }

    /// The committed probes of the row `id`.
    fn tries(&mut self, id: i64) -> Result<i64, String> {
        self.tries_of.query_row([id], |r| r.get(0)).map_err(polling)
    }

    /// Committed probes of the nodes, and nodes probed more than once.
    fn totals(&self) -> Result<(u64, u64), String> {
        self.conn
            .query_row(
                "SELECT sum(tries), sum(tries > 1) FROM peers JOIN temp.sim USING (address)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(polling)
    }
}

/// The error of a polling query.
fn polling(e: rusqlite::Error) -> String {
    format!("polling the database: {e}")
}

/// How many listening sockets the simulated network holds (one per node that is not dead).
fn sim_listeners(sim: &SimNetwork) -> usize {
    sim.nodes()
        .iter()
        .filter(|n| n.behaviour != dnsseeder::sim::Behaviour::Dead)
        .count()
}

/// Counters and CPU time at the end of the pass.
#[derive(Debug)]
struct Snapshot {
    probes: u64,
    successes: u64,
    probe_secs: f64,
    committed: u64,
    batches: u64,
    largest_batch: u64,
    learned_written: u64,
    learned_skipped: u64,
    commit_secs: f64,
    /// CPU seconds used during the pass.
    cpu: Cpu,
    wall: f64,
}

impl Snapshot {
    fn take(c: &CrawlCounters, cpu_before: &Cpu, t: &Timeline) -> Snapshot {
        Snapshot {
            probes: c.probes.load(Ordering::Relaxed),
            successes: c.successes.load(Ordering::Relaxed),
            probe_secs: c.probe_micros.load(Ordering::Relaxed) as f64 / 1e6,
            committed: c.committed.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            largest_batch: c.largest_batch.load(Ordering::Relaxed),
            learned_written: c.learned_written.load(Ordering::Relaxed),
            learned_skipped: c.learned_skipped.load(Ordering::Relaxed),
            commit_secs: c.commit_micros.load(Ordering::Relaxed) as f64 / 1e6,
            cpu: Cpu::now().since(cpu_before),
            wall: t.all_probed.map_or(f64::NAN, |s| s.at.as_secs_f64()),
        }
    }
}

/// Prints the setup, the pass against its ideal, how it unfolded, and what it cost.
fn report(p: &Params, t: &Timeline, s: &Snapshot, n: usize, listeners: usize) {
    println!("crawl bench");
    println!(
        "  network            {n} simulated nodes ({:.0}% silent, {:.0}% dead, {:.0}% of the good \
         ones speaking v2), regtest, 127.0.0.0/8",
        p.silent * 100.0,
        p.dead * 100.0,
        p.v2 * 100.0
    );
    println!(
        "  crawler            {} threads, probe deadline {} s, connect timeout {} s, \
         handshake timeout {} s, addr grace {} s",
        p.threads, p.probe_timeout, p.connect_timeout, p.handshake_timeout, p.addr_grace
    );
    report_pass(p, t, s, n);
    report_timeline(t, s, n);
    report_costs(p, t, s, listeners);
}

/// Prints the pass's wall time against the ideal (probe time / threads).
fn report_pass(p: &Params, t: &Timeline, s: &Snapshot, n: usize) {
    let ideal = s.probe_secs / p.threads as f64;
    let ratio = s.wall / ideal;
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
}

/// Prints the onion probes against the proxy's bound (their time / `--proxy-probes`), the
/// pass against the larger of that bound and the pool's ideal, and how the proxy was used.
fn report_onion(p: &Params, t: &Timeline, s: &Snapshot, o: &OnionSnapshot) {
    let ideal = s.probe_secs / p.threads as f64;
    let bound = o.carried_secs / p.proxy_probes as f64;
    let (larger, which) = if bound > ideal {
        (bound, "the proxy's bound")
    } else {
        (ideal, "the pool's ideal")
    };
    let others = s.probes.saturating_sub(o.carried).max(1) as f64;
    println!(
        "  onion              {} nodes on Tor ({:.0}%), circuit delay {} s, --proxy-probes {}",
        o.nodes,
        p.onion * 100.0,
        p.circuit_delay,
        p.proxy_probes
    );
    println!(
        "  onion probes       {} carried ({} beyond the onion nodes: names no node has), {:.1} s \
         in all, {:.3} s per probe (all probes {:.3} s, the others {:.3} s); {} proxy failures",
        o.carried,
        o.carried.saturating_sub(o.nodes),
        o.carried_secs,
        o.carried_secs / o.carried.max(1) as f64,
        s.probe_secs / s.probes.max(1) as f64,
        (s.probe_secs - o.carried_secs) / others,
        o.failures
    );
    println!(
        "  proxy bound        {bound:.2} s (onion probe time / {} proxy probes); pool ideal {ideal:.2} s",
        p.proxy_probes
    );
    println!(
        "  ratio to larger    {:.3} (pass / {which}; target <= 1.5: {})",
        s.wall / larger,
        if s.wall / larger <= 1.5 {
            "met"
        } else {
            "NOT met"
        }
    );
    report_proxy_use(p, t, s, o);
}

/// Prints the proxy's requests and sessions, the gate's occupancy against the probes
/// running, and when each side of the pass was done.
fn report_proxy_use(p: &Params, t: &Timeline, s: &Snapshot, o: &OnionSnapshot) {
    let secs =
        |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
    println!(
        "  proxy              {} requests ({} by name), at most {} sessions at once (cap {}: {})",
        o.proxy.requests,
        o.proxy.domain_requests,
        o.proxy.max_in_flight,
        p.proxy_probes,
        if o.proxy.max_in_flight <= p.proxy_probes as u64 {
            "kept"
        } else {
            "EXCEEDED"
        }
    );
    report_slots(p, &t.onion, s, o);
    println!(
        "  done               the other probes by {}, the last onion probe by {} (by the counters)",
        secs(t.onion.clear_done),
        secs(t.onion.last_carried)
    );
}

/// Prints the proxy's slots held and open, and the onion probes carried per second, while
/// the other probes ran and after.
fn report_slots(p: &Params, t: &OnionTimeline, s: &Snapshot, o: &OnionSnapshot) {
    let at = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    let (first, clear) = (at(t.first_job), at(t.clear_done));
    let during = t.carried_at_clear as f64 / (clear - first);
    let after = o.carried.saturating_sub(t.carried_at_clear) as f64 / (s.wall - clear);
    println!(
        "  proxy slots        of {} (held: queued or running; open: sessions at the proxy), \
         mean from the first onion job to the others' end ({first:.2}-{clear:.2} s): {}, \
         {during:.1} onion probes/s; after: {}, {after:.1}/s; {:.1} running over the pass \
         (onion probe time / pass)",
        p.proxy_probes,
        t.during.means(),
        t.after.means(),
        o.carried_secs / s.wall
    );
}

/// Prints when every node was known, when the pool was full, and when the last node
/// learned was first probed.
fn report_timeline(t: &Timeline, s: &Snapshot, n: usize) {
    let secs =
        |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
    println!(
        "  discovery          all {n} known at {}, when about {} were still unprobed",
        secs(t.all_known.map(|k| k.at)),
        t.all_known.map_or(0, |k| k.known.saturating_sub(k.probed)),
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
}

/// Prints the writer's batches, the descriptors and the CPU per probe.
fn report_costs(p: &Params, t: &Timeline, s: &Snapshot, listeners: usize) {
    let per_probe = |x: f64| x / s.probes.max(1) as f64 * 1e3;
    println!(
        "  writer             {} batches committed, results per batch: mean {:.1}, max {}; \
         {} learned addresses written ({:.1} per result), {} skipped as known; {:.2} s committing \
         ({:.0}% of the pass)",
        s.batches,
        s.committed as f64 / s.batches.max(1) as f64,
        s.largest_batch,
        s.learned_written,
        s.learned_written as f64 / s.committed.max(1) as f64,
        s.learned_skipped,
        s.commit_secs,
        s.commit_secs / s.wall * 100.0
    );
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
    println!(
        "  file descriptors   peak {} open (sampled every 2 s) of a limit of {limit}: \
         {listeners} listeners + up to {} probe sockets + as many accepted by the nodes",
        t.peak_fds, p.threads
    );
    let c = &s.cpu;
    println!(
        "  CPU per probe      {:.3} ms process ({:.2} s): crawler {:.3} ms ({:.2} s: workers {:.3} ms, \
         writer {:.3} ms, scheduler {:.3} ms), simulated network {:.3} ms, bench polling {:.3} ms",
        per_probe(c.process),
        c.process,
        per_probe(c.crawler()),
        c.crawler(),
        per_probe(c.workers),
        per_probe(c.writer),
        per_probe(c.scheduler),
        per_probe(c.rest()),
        per_probe(c.bench),
    );
}

/// CPU seconds of the process and of its threads by role.
///
/// The process total is user + system time from `/proc/self/stat` (it keeps the time of
/// threads that exited: the simulated network's connection threads). The threads' shares
/// come from `/proc/self/task/*/schedstat` (nanoseconds on the CPU, exact): their
/// `stat` user + system times are charged by the timer tick, and the crawler's workers,
/// which run in bursts of a few microseconds between blocking reads, showed a quarter of
/// their real time there (0.68 s against 2.45 s in one run).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    /// The whole process, exited threads included.
    process: f64,
    /// Crawler threads `crawl-N`.
    workers: f64,
    writer: f64,
    scheduler: f64,
    /// The bench's main thread (it polls the database).
    bench: f64,
}

impl Cpu {
    /// Reads the process's CPU time and its threads' (see [`threads::threads`]).
    fn now() -> Cpu {
        let mut cpu = Cpu {
            process: process::cpu_secs(),
            ..Cpu::default()
        };
        let main = std::process::id() as i32;
        for thread in threads::threads() {
            let name = thread.name.as_str();
            // The main thread is named after the bench binary (`crawl-<hash>`): tell it by id.
            let slot = if thread.tid == main {
                &mut cpu.bench
            } else if name == "writer" {
                &mut cpu.writer
            } else if name == "scheduler" {
                &mut cpu.scheduler
            } else if name
                .strip_prefix("crawl-")
                .is_some_and(|i| i.bytes().all(|b| b.is_ascii_digit()))
            {
                &mut cpu.workers
            } else {
                continue;
            };
            *slot += thread.cpu_ns as f64 / 1e9;
        }
        cpu
    }

    /// What was used between `before` and `self`.
    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            process: self.process - before.process,
            workers: self.workers - before.workers,
            writer: self.writer - before.writer,
            scheduler: self.scheduler - before.scheduler,
            bench: self.bench - before.bench,
        }
    }

    fn crawler(&self) -> f64 {
        self.workers + self.writer + self.scheduler
    }

    /// The simulated network's threads (the accept thread and the short-lived connection
    /// threads, whose time only the process total keeps) and anything else.
    fn rest(&self) -> f64 {
        self.process - self.crawler() - self.bench
    }
}
