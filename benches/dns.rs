//! The DNS bench: queries per second of the real server over loopback, against a minimal
//! responder sending a fixed answer of the same size, and latency at half the server's
//! maximum.
//!
//! A temporary database of `--rows` generated peers (`--good` of them good; see
//! `common::fill`) backs a real [`DnsServer`] on 127.0.0.1 through
//! [`StoreSource`], as `dnsseeder run` serves it: one UDP thread, the answer cache
//! rebuilt from the database every 5 s, rate limiting off (the load comes from one
//! address). The minimal responder is one thread on its own UDP socket answering every
//! datagram with the server's own answer to the same query, captured once, with the
//! request's ID copied in: the floor of what any UDP server costs on this machine.
//!
//! The load is `x9.seed.example.com A` with EDNS0 (payload 1232), as a resolver asks it:
//! 30 A records, 528 bytes.
//!
//! 1. Maximum rate, closed loop: one client thread and one connected socket keep
//!    `--window` queries outstanding (each response received sends the next query; a
//!    100 ms silence refills the window) for `--secs` seconds. After a warm-up, each of
//!    `--rounds` rounds measures the server and the responder back to back (server first
//!    in odd rounds, responder first in even ones), so both see the same load from the
//!    rest of the machine: the ratio is the median of the rounds' ratios, and each rate
//!    the median of its rounds. The CPU time of the serving thread per answer
//!    (`/proc/self/task/*/schedstat`) is printed too: it depends far less on what else
//!    runs on the machine.
//!
//! Phase 1b, while the crawler churns: a real crawler (`common/churn.rs`) of `--churn-threads`
//!    workers (256) runs flat out on its own database of `--churn-rows` loopback addresses
//!    where nothing listens, so every probe fails at once (`refused`); meanwhile the same
//!    rounds as in 1 measure the server and the responder. The server's median is compared
//!    with its idle one from 1 (target >= 0.9), and the crawler's probes per second and
//!    the CPU of its threads are printed. `--churn-threads 0` leaves this phase out.
//!
//! Phase 1c, while `/metrics` is scraped (`benches/dns/scrape.rs`): a real
//!    `MetricsServer` reads the server's counters; each of `--scrape-rounds` rounds (6)
//!    measures the server's maximum rate for `--scrape-secs` (5) with a thread scraping
//!    `/metrics` every `--scrape-interval` seconds (1) and as long without it, in
//!    alternating order. Printed: the median ratio of the rates (with / without), and the
//!    metrics server's CPU per scrape and per second, as queries of the serving thread and
//!    as a share of the qps (target < 1%: the verdict). `--scrape-rounds 0` leaves it out.
//!
//! 2. Latency, open loop: one thread sends on a fixed schedule at half the server's
//!    maximum (or `--rate`) for `--latency-secs` seconds and reads the responses in
//!    between, sleeping when the next send is far enough away; responses are matched by
//!    ID and timed from the send to their arrival as the kernel stamps it
//!    (`SO_TIMESTAMPNS`), so the client's own delays in reading do not count (a response
//!    later than 300 ms after the last send counts as lost). The same offered load then
//!    goes to the responder, for comparison.
//! 3. At scale: the same open loop at a moderate `--moderate` qps (5,000), first idle,
//!    then while a writer thread commits probe results to the served database at full
//!    speed (the crawler writer's settings and `Store::commit_batch`, batches of 500);
//!    and the maximum rate (closed loop) while the writer runs.
//!
//! The pure part of the server, [`respond_into`], is also timed alone in-process on the
//! same query and answer set.
//!
//! A mode of its own, `--idle-tcp N` (`benches/dns/idle_tcp.rs`): the server's memory
//! with N idle TCP connections, held by a child process from many loopback addresses.
//!
//! Targets: server rate >= 0.9 x the responder's; p99 < 2 ms at half the maximum; server
//! rate while the crawler churns >= 0.9 x the idle one; a scrape a second costs the
//! metrics server less CPU than 1% of the server's queries.
//!
//! ```text
//! cargo bench --bench dns                       # 1M rows, 50k good, about 3 min
//! cargo bench --bench dns -- --rounds 5 --secs 3 --window 64
//! cargo bench --bench dns -- --churn-threads 0 --scrape-rounds 10   # more scrape rounds
//! cargo bench --bench dns -- --idle-tcp 10000   # memory of idle TCP connections, seconds
//! ```
//! Flags: `--rows`, `--good`, `--secs`, `--rounds`, `--window`, `--latency-secs`, `--rate`
//! (offered load of the latency run; 0: half the measured maximum), `--moderate`,
//! `--idle-tcp`, `--churn-threads`, `--churn-rows`, `--scrape-rounds`, `--scrape-secs`,
//! `--scrape-interval`. Without `--bench` (as
//! `cargo test --benches` runs it) everything is small and short: a smoke test.

#[allow(dead_code)] // the DNS bench needs only its kill on drop
#[path = "common/child.rs"]
mod child;
#[path = "common/churn.rs"]
mod churn;
mod common;
#[path = "common/flags.rs"]
mod flags;
#[path = "dns/idle_tcp.rs"]
mod idle_tcp;
#[path = "common/load.rs"]
mod load;
#[path = "common/memory.rs"]
mod memory;
#[path = "common/run.rs"]
mod run;
#[path = "dns/scrape.rs"]
mod scrape;
#[path = "common/threads.rs"]
mod threads;
#[path = "common/workload.rs"]
mod workload;

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dnsseeder::dns::{
    AnswerSet, DnsConfig, DnsServer, DnsStats, PeerSource, Transport, ZoneContext, respond_into,
};
use dnsseeder::seeder::StoreSource;
use dnsseeder::store::Store;
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use load::load_average;
use nix::errno::Errno;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeSpec;
use nix::unistd::Pid;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use socket2::{Domain, Protocol, Socket, Type};
use threads::Thread;
use workload::{POLICY, Workload};

const QNAME: &str = "x9.seed.example.com.";
const EDNS_PAYLOAD: u16 = 1232;
/// The server's UDP thread and the responder's, as `/proc/self/task/*/comm` names them.
const SERVER_THREAD: &str = "dns-udp";
const RESPONDER_THREAD: &str = "fixed-responder";
/// The core of the load generator's thread, and of the serving threads.
const CLIENT_CPU: usize = 0;
const SERVER_CPU: usize = 1;
/// Silence after which the closed loop assumes its window lost and refills it.
const REFILL_AFTER: Duration = Duration::from_millis(100);
/// The open loop sleeps until its next send when that is further away than this, and
/// spins otherwise (a sleep overshoots by about the timer slack, 50 us).
const SPIN_BELOW: Duration = Duration::from_micros(120);
/// How long the latency run waits for the last responses.
const STRAGGLERS: Duration = Duration::from_millis(300);
/// Most addresses the churning crawler's database holds: 127.1.0.0 to 127.254.255.255.
const CHURN_MAX_ROWS: usize = 254 * 256 * 254;

flags::params! {
    rows: usize = 1_000_000, smoke 20_000;
    good: usize = 50_000, smoke 1_000;
    secs: f64 = 1.5, smoke 0.2;
    rounds: usize = 10, smoke 1;
    window: usize = 32, smoke 8;
    latency_secs: f64 = 10.0, smoke 0.3;
    /// Offered load of the latency run; 0: half the measured maximum.
    rate: f64 = 0.0;
    moderate: f64 = 5000.0, smoke 2000.0;
    /// A mode of its own: the memory of this many idle TCP connections; 0: off.
    idle_tcp: usize = 0;
    /// Workers of the crawler that churns in phase 1b; 0: no such phase.
    churn_threads: usize = 256, smoke 16;
    /// Addresses in the churning crawler's database.
    churn_rows: usize = 50_000, smoke 2_000;
    /// Rounds of phase 1c, with and without a scraper of `/metrics`; 0: no such phase.
    scrape_rounds: usize = 6, smoke 1;
    /// Seconds of each of phase 1c's closed loops.
    scrape_secs: f64 = 5.0, smoke 0.6;
    /// Seconds between two scrapes in phase 1c.
    scrape_interval: f64 = 1.0;
}

impl Params {
    /// Full size under `cargo bench`, a smoke test without `--bench`; then the flags.
    fn parse() -> Result<Params, String> {
        let p = Params::from_flags(None)?;
        if p.good == 0 || p.good > p.rows || p.rounds == 0 || p.window == 0 || p.secs <= 0.0 {
            return Err(
                "need 0 < --good <= --rows, --rounds >= 1, --window >= 1, --secs > 0".into(),
            );
        }
        if p.churn_rows == 0 || p.churn_rows > CHURN_MAX_ROWS {
            return Err(format!("need 0 < --churn-rows <= {CHURN_MAX_ROWS}"));
        }
        if p.scrape_secs <= 0.0 || p.scrape_interval <= 0.0 {
            return Err("need --scrape-secs > 0 and --scrape-interval > 0".into());
        }
        Ok(p)
    }
}

fn main() -> ExitCode {
    if let Some(code) = idle_tcp::client_role() {
        return code;
    }
    run::run("dns", Params::parse(), |p| {
        if p.idle_tcp > 0 {
            idle_tcp::measure(p.idle_tcp)?;
        } else {
            bench(p)?;
        }
        Ok(true)
    })
}

/// A target of the load: its address and the name of its serving thread in `/proc`.
type Target = (SocketAddr, &'static str);

fn bench(p: &Params) -> anyhow::Result<()> {
    println!("load average at start: {}", load_average());
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("peers.db");
    fill_database(&path, p)?;
    let config = dns_config()?;
    let default_mask = config.default_mask;
    let per_answer = respond_cost(&config, &path, &build_query())?;
    let server = DnsServer::bind(config, StoreSource::new(Store::open(&path)?))?;
    let handle = server.spawn()?;
    let server_addr = handle.local_addrs()[0];
    let query = build_query();
    let responder = start_responder(server_addr, &query)?;
    let server_pin = pin_serving_threads();
    let server_target = (server_addr, SERVER_THREAD);
    let responder_target = (responder.addr, RESPONDER_THREAD);
    let max = max_rates(p, &query, server_target, responder_target)?;
    let churn = churn_rates(p, &query, server_target, responder_target)?;
    let served = scrape::Served {
        handle: &handle,
        default_mask,
        db: &path,
    };
    let scrapes = scrape::scrape_rates(p, &served, &query, server_target)?;
    let rate = if p.rate > 0.0 {
        p.rate
    } else {
        max.server() / 2.0
    };
    let latency_for = Duration::from_secs_f64(p.latency_secs);
    let lat_server = open_loop(server_addr, &query, rate, latency_for)?;
    let lat_fixed = open_loop(responder.addr, &query, rate, latency_for)?;
    responder.stop();
    // At scale: a moderate load, idle and while the crawler's writer commits at full speed,
    // the serving thread free to run on any core, as in production.
    if let Some((tid, before)) = &server_pin {
        sched_setaffinity(Pid::from_raw(*tid), before)?;
    }
    let scale = at_scale(p, &path, server_target, &query)?;
    let stats = handle.counters().snapshot();
    handle.shutdown();
    max.print(p);
    if let Some(churn) = &churn {
        churn.print(p, &max);
    }
    scrape::print(scrapes.as_ref(), p);
    print_latency_run(p, rate, &lat_server, &lat_fixed);
    scale.print(p, max.server());
    print_closing(&stats, per_answer);
    Ok(())
}

/// Prints the server's counters, the in-process cost of an answer (seconds) and the load.
fn print_closing(stats: &DnsStats, per_answer: f64) {
    println!();
    println!(
        "server counters: {} queries, {} answered, {} dropped",
        stats.queries, stats.answered, stats.dropped
    );
    println!(
        "respond_into alone (in-process, no sockets): {:.0} ns per answer",
        per_answer * 1e9
    );
    println!("load average at end: {}", load_average());
}

/// Fills a new database with `--rows` generated peers, `--good` of them good.
fn fill_database(path: &Path, p: &Params) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = Store::open(path)?;
    common::fill(store.connection(), p.rows, p.good, 7)?;
    drop(store);
    println!(
        "generated {} peers ({} good) in {:.1?}",
        p.rows,
        p.good,
        started.elapsed()
    );
    Ok(())
}

/// The server's settings: the zone `seed.example.com` on an ephemeral port of 127.0.0.1,
/// rate limiting off (the load comes from one address).
fn dns_config() -> anyhow::Result<DnsConfig> {
    let mut config = DnsConfig::new(
        "seed.example.com",
        "ns.example.com",
        "hostmaster.example.com",
    );
    config.listen = vec!["127.0.0.1:0".parse()?];
    config.rate_limit = None;
    Ok(config)
}

/// Captures the server's answer to `query` and starts the responder sending it.
fn start_responder(server: SocketAddr, query: &[u8]) -> anyhow::Result<FixedResponder> {
    let answer = capture_answer(server, query)?;
    println!(
        "query: {QNAME} A, EDNS0 {EDNS_PAYLOAD}, {} bytes; answer: {} A records, {} bytes",
        query.len(),
        answer.records,
        answer.bytes.len()
    );
    Ok(FixedResponder::start(answer.bytes)?)
}

/// Pins the server's and the responder's serving threads to [`SERVER_CPU`] and says
/// whether it did; returns the server thread's id and former CPU set, to free it for the
/// run at scale.
fn pin_serving_threads() -> Option<(i32, CpuSet)> {
    let server_pin = pin_server(SERVER_THREAD);
    let pinned = server_pin.is_some() && pin_server(RESPONDER_THREAD).is_some();
    if pinned {
        println!(
            "client on CPU {CLIENT_CPU}, serving threads ({SERVER_THREAD}, {RESPONDER_THREAD}) on CPU {SERVER_CPU}"
        );
    } else {
        println!("threads not pinned to cores");
    }
    server_pin
}

/// How long each target is warmed up (caches, page faults, CPU frequency) before it is
/// measured, and the writer before the run at scale.
fn warm_up(p: &Params) -> Duration {
    Duration::from_secs_f64((p.secs / 3.0).min(1.0))
}

/// The closed-loop rounds of the server and of the responder.
struct MaxRates {
    ours: Vec<Throughput>,
    theirs: Vec<Throughput>,
}

/// After a warm-up of each, measures the server and the responder back to back in each of
/// `--rounds` rounds, the server first in odd rounds, so both see the same load from the
/// rest of the machine.
fn max_rates(
    p: &Params,
    query: &[u8],
    server: Target,
    responder: Target,
) -> anyhow::Result<MaxRates> {
    let warm = warm_up(p);
    closed_loop(server, query, p.window, warm)?;
    closed_loop(responder, query, p.window, warm)?;
    let duration = Duration::from_secs_f64(p.secs);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..p.rounds {
        let targets = if round % 2 == 0 {
            [(server, true), (responder, false)]
        } else {
            [(responder, false), (server, true)]
        };
        for (target, is_server) in targets {
            let r = closed_loop(target, query, p.window, duration)?;
            if is_server && r.wrong_size > 0 {
                anyhow::bail!("{} responses of an unexpected size", r.wrong_size);
            }
            if is_server { &mut ours } else { &mut theirs }.push(r);
        }
    }
    Ok(MaxRates { ours, theirs })
}

impl MaxRates {
    /// The server's rate: the median of its rounds.
    fn server(&self) -> f64 {
        median(self.ours.iter().map(|r| r.rate))
    }

    /// The responder's rate: the median of its rounds.
    fn fixed(&self) -> f64 {
        median(self.theirs.iter().map(|r| r.rate))
    }

    /// The median of the rounds' ratios, server / responder.
    fn ratio(&self) -> f64 {
        median(
            self.ours
                .iter()
                .zip(&self.theirs)
                .map(|(a, b)| a.rate / b.rate),
        )
    }

    /// Prints both rates, their CPU per answer and the ratio of the rates.
    fn print(&self, p: &Params) {
        println!();
        println!(
            "max rate, closed loop: 1 client thread, {} outstanding, {} x {:.1} s per target",
            p.window, p.rounds, p.secs
        );
        print_rates_header();
        let server_cpu = median(self.ours.iter().map(|r| r.cpu_per_query));
        let fixed_cpu = median(self.theirs.iter().map(|r| r.cpu_per_query));
        print_rounds("dnsseeder", &self.ours, self.server(), server_cpu);
        print_rounds("fixed responder", &self.theirs, self.fixed(), fixed_cpu);
        self.print_ratio();
        println!(
            "CPU per answer of the serving thread, responder / server: {:.3}",
            fixed_cpu / server_cpu
        );
    }

    /// Prints the ratio of the rates: the median of the rounds' ratios (each round
    /// measures both under the same load from the rest of the machine), and each round's.
    fn print_ratio(&self) {
        let ratio = self.ratio();
        let per_round: Vec<String> = self
            .ours
            .iter()
            .zip(&self.theirs)
            .map(|(a, b)| format!("{:.2}", a.rate / b.rate))
            .collect();
        println!(
            "ratio (median of the rounds) {ratio:.3}; ratio of the medians {:.3}; target >= 0.90: {}",
            self.server() / self.fixed(),
            verdict(ratio >= 0.9)
        );
        println!("ratio per round: {}", per_round.join(", "));
    }
}

/// The rounds of phase 1b: the server idle, then the server and the responder while a
/// crawler churns on instant failures, and what the crawler did meanwhile.
#[derive(Default)]
struct ChurnRates {
    idle: Vec<Throughput>,
    ours: Vec<Throughput>,
    theirs: Vec<Throughput>,
    /// Probes the crawler finished while measured, and how many completed a handshake.
    probes: u64,
    successes: u64,
    /// CPU of the crawler's threads while measured.
    cpu: CrawlerCpu,
    /// Seconds measured with the crawler running.
    secs: f64,
}

/// Phase 1b; `None` with `--churn-threads 0`. Each of `--rounds` rounds measures the
/// server idle and, with a crawler started for the round, the server and the responder
/// (idle first in even rounds, last in odd ones), so that the idle and the busy rate of
/// a round see the same load from the rest of the machine.
fn churn_rates(
    p: &Params,
    query: &[u8],
    server: Target,
    responder: Target,
) -> anyhow::Result<Option<ChurnRates>> {
    if p.churn_threads == 0 {
        return Ok(None);
    }
    let db = churn::Database::create(p.churn_rows)?;
    let duration = Duration::from_secs_f64(p.secs);
    let mut rates = ChurnRates::default();
    for round in 0..p.rounds {
        if round % 2 == 0 {
            rates
                .idle
                .push(closed_loop(server, query, p.window, duration)?);
        }
        rates.churning(p, &db, query, [server, responder])?;
        if round % 2 == 1 {
            rates
                .idle
                .push(closed_loop(server, query, p.window, duration)?);
        }
    }
    Ok(Some(rates))
}

impl ChurnRates {
    /// Starts a crawler on `db`, lets it warm up, measures the server and the responder,
    /// and stops it.
    fn churning(
        &mut self,
        p: &Params,
        db: &churn::Database,
        query: &[u8],
        [server, responder]: [Target; 2],
    ) -> anyhow::Result<()> {
        let churn = db.crawl(p.churn_threads)?;
        thread::sleep(warm_up(p));
        let (probes, cpu) = (churn.probes().0, CrawlerCpu::now());
        let started = Instant::now();
        let duration = Duration::from_secs_f64(p.secs);
        let ours = closed_loop(server, query, p.window, duration);
        let theirs = closed_loop(responder, query, p.window, duration);
        self.secs += started.elapsed().as_secs_f64();
        self.cpu.add(&CrawlerCpu::now().since(&cpu));
        let (probes_after, successes) = churn.probes();
        (self.probes, self.successes) = (self.probes + probes_after - probes, successes);
        churn.stop();
        self.ours.push(ours?);
        self.theirs.push(theirs?);
        Ok(())
    }

    /// Prints the rounds, what the crawler did, and the ratios: busy / idle in each round
    /// (the target), and against phase 1's medians.
    fn print(&self, p: &Params, phase1: &MaxRates) {
        println!();
        println!(
            "max rate while the crawler churns: {} workers on {} loopback addresses where \
             nothing listens (port {}), {} x {:.1} s per target, idle server alternating",
            p.churn_threads,
            p.churn_rows,
            churn::PORT,
            p.rounds,
            p.secs
        );
        print_rates_header();
        let cpu = |runs: &[Throughput]| median(runs.iter().map(|r| r.cpu_per_query));
        for (name, runs) in [
            ("dnsseeder idle", &self.idle),
            ("dnsseeder busy", &self.ours),
            ("responder busy", &self.theirs),
        ] {
            print_rounds(name, runs, median(runs.iter().map(|r| r.rate)), cpu(runs));
        }
        self.print_crawler();
        self.print_ratios(phase1);
    }

    /// Prints the ratios of the rates.
    fn print_ratios(&self, phase1: &MaxRates) {
        let per_round = |a: &[Throughput], b: &[Throughput]| {
            let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a.rate / b.rate).collect();
            (median(ratios.iter().copied()), ratios)
        };
        let (ratio, ratios) = per_round(&self.ours, &self.idle);
        let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "server busy / idle (median of the rounds) {ratio:.3}; target >= 0.90: {}",
            verdict(ratio >= 0.9)
        );
        println!("ratio per round: {}", shown.join(", "));
        let busy = median(self.ours.iter().map(|r| r.rate));
        println!(
            "server busy / phase 1's server {:.3}, / phase 1's responder {:.3}; server / \
             responder both busy (median of the rounds) {:.3}",
            busy / phase1.server(),
            busy / phase1.fixed(),
            per_round(&self.ours, &self.theirs).0
        );
    }

    /// Prints the crawler's probe rate and its threads' CPU while measured.
    fn print_crawler(&self) {
        let per_sec = |ns: u64| ns as f64 / 1e9 / self.secs;
        println!(
            "crawler while measured: {} probes in {:.1} s ({:.0}/s; {} answered); CPU s \
             per s: workers {:.2}, writer {:.2}, scheduler {:.2}",
            self.probes,
            self.secs,
            self.probes as f64 / self.secs,
            self.successes,
            per_sec(self.cpu.workers),
            per_sec(self.cpu.writer),
            per_sec(self.cpu.scheduler)
        );
    }
}

/// CPU time of the crawler's threads by role, nanoseconds.
#[derive(Debug, Default)]
struct CrawlerCpu {
    workers: u64,
    writer: u64,
    scheduler: u64,
}

impl CrawlerCpu {
    /// The CPU time so far of this process's crawler threads (named `crawl-N`, `writer`
    /// and `scheduler` by `dnsseeder::crawler`).
    fn now() -> CrawlerCpu {
        let mut cpu = CrawlerCpu::default();
        for t in threads::threads() {
            match t.name.as_str() {
                "writer" => cpu.writer += t.cpu_ns,
                "scheduler" => cpu.scheduler += t.cpu_ns,
                name if name.starts_with("crawl-") => cpu.workers += t.cpu_ns,
                _ => {}
            }
        }
        cpu
    }

    fn add(&mut self, other: &CrawlerCpu) {
        self.workers += other.workers;
        self.writer += other.writer;
        self.scheduler += other.scheduler;
    }

    fn since(&self, before: &CrawlerCpu) -> CrawlerCpu {
        CrawlerCpu {
            workers: self.workers.saturating_sub(before.workers),
            writer: self.writer.saturating_sub(before.writer),
            scheduler: self.scheduler.saturating_sub(before.scheduler),
        }
    }
}

/// Prints the header of the closed-loop table.
fn print_rates_header() {
    println!(
        "{:<18} {:>10} {:>12} {:>9}  qps per round",
        "", "qps", "CPU/answer", "timeouts"
    );
}

/// Prints one target's line of the closed-loop table.
fn print_rounds(name: &str, runs: &[Throughput], max: f64, cpu: f64) {
    let rounds: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.rate)).collect();
    let timeouts: u64 = runs.iter().map(|r| r.timeouts).sum();
    println!(
        "{name:<18} {max:>10.0} {:>9.2} us {timeouts:>9}  {}",
        cpu * 1e6,
        rounds.join(", ")
    );
}

/// Prints the latencies of the server and the responder under the same offered load.
fn print_latency_run(p: &Params, rate: f64, server: &Latency, fixed: &Latency) {
    println!();
    println!(
        "latency, open loop at {rate:.0} qps offered for {:.1} s (send -> receive, ms):",
        p.latency_secs
    );
    print_latency_header();
    print_latency("dnsseeder", server);
    print_latency("fixed responder", fixed);
    println!(
        "achieved send rate {:.0} qps; target p99 < 2 ms: {}",
        server.sent as f64 / server.send_secs,
        verdict(server.percentile(0.99) < 2.0)
    );
}

/// The server at scale, idle and while a writer commits at full speed.
struct AtScale {
    idle: Latency,
    busy: Latency,
    busy_rounds: Vec<Throughput>,
    written: Written,
}

/// Measures the server's latency at `--moderate` qps, idle, then with a [`BusyWriter`]
/// running, and its maximum rate (closed loop) while the writer runs.
fn at_scale(p: &Params, path: &Path, server: Target, query: &[u8]) -> anyhow::Result<AtScale> {
    let latency_for = Duration::from_secs_f64(p.latency_secs);
    let idle = open_loop(server.0, query, p.moderate, latency_for)?;
    let writer = BusyWriter::start(path)?;
    thread::sleep(warm_up(p));
    let duration = Duration::from_secs_f64(p.secs);
    let busy_rounds = (0..p.rounds.div_ceil(2))
        .map(|_| closed_loop(server, query, p.window, duration))
        .collect::<io::Result<Vec<_>>>()?;
    let busy = open_loop(server.0, query, p.moderate, latency_for)?;
    let written = writer.stop()?;
    Ok(AtScale {
        idle,
        busy,
        busy_rounds,
        written,
    })
}

impl AtScale {
    /// Prints the latencies, the maximum rate against `server_max` (idle), and what the
    /// writer committed.
    fn print(&self, p: &Params, server_max: f64) {
        println!();
        println!(
            "at scale: {} rows, {} good; {:.0} qps offered for {:.1} s, idle and while a writer \
             commits probe results at full speed (ms):",
            p.rows, p.good, p.moderate, p.latency_secs
        );
        print_latency_header();
        print_latency("idle", &self.idle);
        print_latency("writer busy", &self.busy);
        println!(
            "target p99 < 2 ms while the writer is busy: {}",
            verdict(self.busy.percentile(0.99) < 2.0)
        );
        let busy_max = median(self.busy_rounds.iter().map(|r| r.rate));
        let rounds: Vec<String> = self
            .busy_rounds
            .iter()
            .map(|r| format!("{:.0}", r.rate))
            .collect();
        println!(
            "max rate idle {server_max:.0} qps, writer busy {busy_max:.0} qps (ratio {:.3}; rounds {})",
            busy_max / server_max,
            rounds.join(", ")
        );
        let w = &self.written;
        println!(
            "writer: {} results in {} batches of {WRITER_BATCH} in {:.1} s: {:.0} results/s",
            w.results,
            w.batches,
            w.secs,
            w.results as f64 / w.secs
        );
    }
}

/// Nanoseconds since the UNIX epoch (`CLOCK_REALTIME`, the clock of kernel receive
/// timestamps).
fn realtime_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn print_latency_header() {
    println!(
        "{:<18} {:>8} {:>8} {:>6} {:>7} {:>7} {:>7} {:>7}",
        "", "sent", "answered", "lost", "p50", "p99", "p99.9", "max"
    );
}

fn print_latency(name: &str, l: &Latency) {
    println!(
        "{name:<18} {:>8} {:>8} {:>6} {:>7.3} {:>7.3} {:>7.3} {:>7.3}",
        l.sent,
        l.samples.len(),
        l.sent - l.samples.len() as u64,
        l.percentile(0.50),
        l.percentile(0.99),
        l.percentile(0.999),
        l.percentile(1.0)
    );
}

/// A UDP socket on 127.0.0.1 with the receive buffer the server asks for (1 MiB), so
/// that a client or responder descheduled for a while does not drop what it is sent.
fn udp_socket() -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_recv_buffer_size(1 << 20)?;
    let any: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
    socket.bind(&any.into())?;
    Ok(socket.into())
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Seconds per call of the server's pure part, [`respond_into`], on the same query and
/// the answer set of mask 9 from the same database.
fn respond_cost(config: &DnsConfig, path: &Path, query: &[u8]) -> anyhow::Result<f64> {
    let ctx = ZoneContext::new(config)?;
    let set = Arc::new(AnswerSet::new(
        StoreSource::new(Store::open(path)?).good_peers(9)?,
    ));
    println!(
        "answer set of x9: {} IPv4 peers in {} netgroups, {} IPv6 in {}",
        set.ipv4_len(),
        set.ipv4_netgroups(),
        set.ipv6_len(),
        set.ipv6_netgroups()
    );
    let answers = |_| Some(Arc::clone(&set));
    let mut rng = SmallRng::seed_from_u64(1);
    let mut out = Vec::with_capacity(1232);
    let calls = 200_000;
    let start = Instant::now();
    for _ in 0..calls {
        respond_into(
            std::hint::black_box(query),
            Transport::Udp,
            &ctx,
            &answers,
            &mut rng,
            &mut out,
        );
    }
    Ok(start.elapsed().as_secs_f64() / f64::from(calls))
}

fn build_query() -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0;
    m.metadata.recursion_desired = true;
    let name = Name::from_ascii(QNAME).expect("a valid name");
    m.add_query(Query::query(name, RecordType::A));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    m.set_edns(edns);
    m.to_vec().expect("the query encodes")
}

struct Answer {
    bytes: Vec<u8>,
    records: usize,
}

/// Asks the server once and checks its answer is the full one.
fn capture_answer(server: SocketAddr, query: &[u8]) -> anyhow::Result<Answer> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    socket.connect(server)?;
    socket.send(query)?;
    let mut buf = [0u8; 2048];
    let n = socket.recv(&mut buf)?;
    let bytes = buf[..n].to_vec();
    let m = Message::from_vec(&bytes)?;
    anyhow::ensure!(
        m.metadata.response_code == ResponseCode::NoError && !m.metadata.truncation,
        "unexpected answer: {m:?}"
    );
    let records = m.answers.len();
    anyhow::ensure!(records == 30, "{records} records instead of 30");
    Ok(Answer { bytes, records })
}

/// Probe results per committed batch of the busy writer.
const WRITER_BATCH: usize = 500;

/// What the busy writer committed.
#[derive(Debug, Default)]
struct Written {
    results: u64,
    batches: u64,
    secs: f64,
}

/// The crawler's writer at full speed: a thread with the writer's connection settings
/// (`Store::tune_for_writer`) committing probe results for the served database's peers
/// in batches of [`WRITER_BATCH`] (`Store::commit_batch`, as the crawler's writer thread
/// does), back to back, until stopped. Far more than a crawl produces: a worst case.
struct BusyWriter {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<anyhow::Result<Written>>,
}

impl BusyWriter {
    fn start(path: &Path) -> anyhow::Result<BusyWriter> {
        let mut store = Store::open(path)?;
        store.tune_for_writer()?;
        let mut work = Workload::new(&store, 11);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("busy-writer".into())
            .spawn(move || {
                let start = Instant::now();
                let mut written = Written::default();
                while !flag.load(Ordering::Relaxed) {
                    let (batch, now) = work.next_batch(WRITER_BATCH);
                    store.commit_batch(&batch, &POLICY, now)?;
                    written.results += batch.results.len() as u64;
                    written.batches += 1;
                }
                written.secs = start.elapsed().as_secs_f64();
                Ok(written)
            })?;
        Ok(BusyWriter { stop, thread })
    }

    fn stop(self) -> anyhow::Result<Written> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?
    }
}

/// Answers every datagram with `answer`, the request's ID copied in.
struct FixedResponder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl FixedResponder {
    fn start(answer: Vec<u8>) -> io::Result<FixedResponder> {
        let socket = udp_socket()?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name(RESPONDER_THREAD.into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                let mut out = answer;
                while !flag.load(Ordering::Relaxed) {
                    if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                        if n >= 12 {
                            out[..2].copy_from_slice(&buf[..2]);
                            let _ = socket.send_to(&out, peer);
                        }
                    }
                }
            })?;
        Ok(FixedResponder { addr, stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

struct Throughput {
    rate: f64,
    timeouts: u64,
    wrong_size: u64,
    /// CPU time of the serving thread per response, in seconds (NaN if unknown).
    cpu_per_query: f64,
}

/// Returns this process's thread named `name`.
fn thread_named(name: &str) -> Option<Thread> {
    threads::threads().into_iter().find(|t| t.name == name)
}

/// Returns the CPU time so far of this process's thread named `name`, in nanoseconds.
fn thread_cpu(name: &str) -> Option<u64> {
    thread_named(name).map(|t| t.cpu_ns)
}

/// Pins the thread `tid` (0: the calling thread) to `cpu`; returns its former CPU set.
fn pin(tid: i32, cpu: usize) -> Option<CpuSet> {
    let tid = Pid::from_raw(tid);
    let before = sched_getaffinity(tid).ok()?;
    let mut set = CpuSet::new();
    set.set(cpu).ok()?;
    sched_setaffinity(tid, &set).ok()?;
    Some(before)
}

/// Pins this process's thread named `name` to [`SERVER_CPU`] (on a machine with at
/// least two cores); returns its thread ID and former CPU set if it did. A thread names
/// itself once it runs, so a thread just spawned is waited for (up to a second).
fn pin_server(name: &str) -> Option<(i32, CpuSet)> {
    let deadline = Instant::now() + Duration::from_secs(1);
    let tid = loop {
        match thread_named(name) {
            Some(t) => break t.tid,
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
            None => return None,
        }
    };
    if tid <= 0 || !two_cores() {
        return None;
    }
    Some((tid, pin(tid, SERVER_CPU)?))
}

fn two_cores() -> bool {
    thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// The calling thread pinned to [`CLIENT_CPU`] until dropped (on a machine with at least
/// two cores), so that the client and the serving thread each have a core.
struct PinnedClient(Option<CpuSet>);

impl PinnedClient {
    fn new() -> PinnedClient {
        PinnedClient(two_cores().then(|| pin(0, CLIENT_CPU)).flatten())
    }
}

impl Drop for PinnedClient {
    fn drop(&mut self) {
        if let Some(before) = &self.0 {
            let _ = sched_setaffinity(Pid::from_raw(0), before);
        }
    }
}

/// Keeps `window` queries outstanding for `duration` and counts the responses.
fn closed_loop(
    (target, thread): Target,
    query: &[u8],
    window: usize,
    duration: Duration,
) -> io::Result<Throughput> {
    let _pinned = PinnedClient::new();
    let socket = udp_socket()?;
    socket.connect(target)?;
    socket.set_read_timeout(Some(REFILL_AFTER))?;
    let mut packet = query.to_vec();
    let mut id: u16 = 0;
    let mut send = |socket: &UdpSocket| {
        id = id.wrapping_add(1);
        packet[..2].copy_from_slice(&id.to_be_bytes());
        socket.send(&packet)
    };
    let mut buf = [0u8; 2048];
    let mut expected = 0;
    let (mut answered, mut timeouts, mut wrong_size) = (0u64, 0u64, 0u64);
    let cpu_before = thread_cpu(thread);
    let start = Instant::now();
    for _ in 0..window {
        send(&socket)?;
    }
    while start.elapsed() < duration {
        match socket.recv(&mut buf) {
            Ok(n) => {
                if expected == 0 {
                    expected = n;
                }
                answered += 1;
                wrong_size += u64::from(n != expected);
                send(&socket)?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                timeouts += 1;
                for _ in 0..window {
                    send(&socket)?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_before
        .zip(thread_cpu(thread))
        .map_or(f64::NAN, |(a, b)| (b - a) as f64 / 1e9);
    Ok(Throughput {
        rate: answered as f64 / elapsed,
        timeouts,
        wrong_size,
        cpu_per_query: cpu / answered as f64,
    })
}

struct Latency {
    sent: u64,
    send_secs: f64,
    /// Round-trip times in nanoseconds, sorted.
    samples: Vec<u64>,
}

impl Latency {
    /// Returns the `q` quantile in milliseconds (NaN without samples).
    fn percentile(&self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let i = ((self.samples.len() - 1) as f64 * q).round() as usize;
        self.samples[i] as f64 / 1e6
    }
}

/// Sends at `rate` queries per second on a fixed schedule for `duration` and times each
/// response (matched by ID) from its query's send to its arrival, as the kernel stamps it
/// on the socket (`SO_TIMESTAMPNS`, `CLOCK_REALTIME` like the send times): when the
/// client reads a response does not count. One thread does both: it sleeps until the
/// next send when that is more than [`SPIN_BELOW`] away (spins otherwise), then reads
/// what has arrived. A client that spun between all its sends would hold a core at any
/// rate, and at a moderate rate the server, the writer and the rest of the machine would
/// share the other one.
fn open_loop(
    target: SocketAddr,
    query: &[u8],
    rate: f64,
    duration: Duration,
) -> io::Result<Latency> {
    let _pinned = PinnedClient::new();
    let mut client = StampedClient::connect(target)?;
    let mut packet = query.to_vec();
    let interval = 1.0 / rate;
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        let due = start + Duration::from_secs_f64(sent as f64 * interval);
        if due.duration_since(start) >= duration {
            break;
        }
        client.receive()?;
        let now = Instant::now();
        if now < due {
            let wait = due - now;
            if wait > SPIN_BELOW {
                thread::sleep(wait - SPIN_BELOW / 2);
            } else {
                std::hint::spin_loop();
            }
            continue;
        }
        client.send(&mut packet, sent as u16)?;
        sent += 1;
    }
    let send_secs = start.elapsed().as_secs_f64();
    let stragglers = Instant::now() + STRAGGLERS;
    while Instant::now() < stragglers {
        client.receive()?;
        thread::sleep(Duration::from_micros(200));
    }
    let mut samples = client.samples;
    samples.sort_unstable();
    Ok(Latency {
        sent,
        send_secs,
        samples,
    })
}

/// The open loop's socket, with the send time of each query in flight and the round trips
/// measured so far.
struct StampedClient {
    socket: UdpSocket,
    /// Send time per ID, in nanoseconds since the UNIX epoch plus one (0: nothing outstanding).
    sent_at: Vec<u64>,
    /// Round trips in nanoseconds, in the order the responses were read.
    samples: Vec<u64>,
    buf: [u8; 2048],
    /// Room for the receive timestamp.
    control: Vec<u8>,
}

impl StampedClient {
    /// Opens a non-blocking socket to `target` on which the kernel stamps every datagram
    /// received (`SO_TIMESTAMPNS`).
    fn connect(target: SocketAddr) -> io::Result<StampedClient> {
        let socket = udp_socket()?;
        socket.connect(target)?;
        socket.set_nonblocking(true)?;
        setsockopt(&socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        Ok(StampedClient {
            socket,
            sent_at: vec![0u64; usize::from(u16::MAX) + 1],
            samples: Vec::new(),
            buf: [0u8; 2048],
            control: nix::cmsg_space!(TimeSpec),
        })
    }

    /// Sends `packet` as query `id`, noting when; a full send buffer loses the query, as
    /// it would be lost on a real network.
    fn send(&mut self, packet: &mut [u8], id: u16) -> io::Result<()> {
        packet[..2].copy_from_slice(&id.to_be_bytes());
        self.sent_at[usize::from(id)] = realtime_nanos() + 1;
        match self.socket.send(packet) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.sent_at[usize::from(id)] = 0;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Reads every response that has arrived and times those of queries in flight.
    fn receive(&mut self) -> io::Result<()> {
        while let Some((bytes, arrived)) = self.recv_stamped()? {
            if bytes < 12 {
                continue;
            }
            let arrived = arrived.unwrap_or_else(realtime_nanos);
            let id = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
            let sent = std::mem::take(&mut self.sent_at[id]);
            if sent != 0 {
                self.samples.push(arrived.saturating_sub(sent - 1));
            }
        }
        Ok(())
    }

    /// Reads one datagram without waiting: its size and the kernel's receive timestamp in
    /// nanoseconds since the UNIX epoch; `None` when nothing has arrived.
    fn recv_stamped(&mut self) -> io::Result<Option<(usize, Option<u64>)>> {
        let mut iov = [IoSliceMut::new(&mut self.buf)];
        match recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut self.control),
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(message) => {
                let stamp = message
                    .cmsgs()
                    .map_err(io::Error::from)?
                    .find_map(|c| match c {
                        ControlMessageOwned::ScmTimestampns(ts) => {
                            Some(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
                        }
                        _ => None,
                    });
                Ok(Some((message.bytes, stamp)))
            }
            Err(Errno::EAGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
