//! Phase 1c of the DNS bench, `--scrape-rounds N` (issue 15): what scraping `/metrics`
//! once a second costs the DNS server.
//!
//! A real [`MetricsServer`] runs in the bench process on 127.0.0.1, reading the bench
//! server's counters and answer-set sizes, default crawl counters and the peer counts of
//! the bench's database (as the status line takes them), as `dnsseeder run` wires it. Each
//! round measures the server's maximum rate (phase 1's closed loop) for `--scrape-secs`
//! with a scraper thread sending `GET /metrics` every `--scrape-interval` seconds and for
//! as long without it, in alternating order. Printed: the median of the rounds' qps
//! ratios (with / without), and the CPU time the metrics server took per scrape and per
//! second, as queries of the serving thread (its CPU per answer in the rounds without
//! scrapes) and as a share of the qps: the verdict, since it hardly depends on what else
//! the machine does, while the ratio's noise is larger than the effect.
//!
//! The metrics server's CPU is the process's (`CLOCK_PROCESS_CPUTIME_ID`, which keeps the
//! time of exited threads) less the threads that ran before it started and the scraper's
//! own (`CLOCK_THREAD_CPUTIME_ID`): every thread it starts counts, whatever its internals.
//!
//! Cores: the metrics server is started from a thread pinned to the serving threads' core,
//! so all its threads inherit that core and every microsecond it spends is taken from the
//! DNS thread (the worst case; with a spare core it would cost the server nothing). The
//! scraper plays Prometheus, which runs elsewhere in production: it is pinned to the
//! client's core. On loopback each side's TCP sends also do part of the other's receive
//! work, so the two CPU figures split the kernel's share roughly, not exactly.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;
use dnsseeder::crawler::CrawlCounters;
use dnsseeder::dns::DnsHandle;
use dnsseeder::metrics::{DnsSources, MetricsServer, PeerSnapshot, Sources};
use dnsseeder::store::Store;
use dnsseeder::unix_now;
use nix::time::{ClockId, clock_gettime};
use nix::unistd::gettid;

use crate::{
    Params, PinnedClient, SERVER_CPU, Target, Throughput, closed_loop, median, pin,
    print_rates_header, print_rounds, threads, two_cores, verdict,
};

/// The scraper thread, as `/proc/self/task/*/comm` names it.
const SCRAPER_THREAD: &str = "scraper";
/// The metrics server's thread that renders the page (`dnsseeder::metrics`).
const METRICS_THREAD: &str = "metrics";
/// The series every page must hold.
const EXPECTED_SERIES: &str = "dnsseeder_dns_queries_total";
/// Connect and read timeout of a scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait after a closed loop before reading CPU times, so that the server has answered
/// the queries still in flight.
const SETTLE: Duration = Duration::from_millis(10);
/// The target: at one scrape a second, its cost under 1% of the qps.
const TARGET_SHARE: f64 = 0.01;

/// The bench server's side of the metrics: its handle, its zone's bare-host mask and its
/// database.
pub struct Served<'a> {
    pub handle: &'a DnsHandle,
    pub default_mask: u64,
    pub db: &'a Path,
}

/// What the rounds measured.
#[derive(Default)]
pub struct ScrapeRates {
    with: Vec<Throughput>,
    without: Vec<Throughput>,
    /// CPU of the metrics server's threads, nanoseconds: in the rounds with the scraper
    /// and in those without.
    cpu_with: u64,
    cpu_without: u64,
    /// CPU of the thread named [`METRICS_THREAD`] alone in the rounds with the scraper.
    metrics_thread: u64,
    scraped: Scraped,
    secs_with: f64,
    secs_without: f64,
    /// The interval between scrapes, the page's size and whether the threads were pinned.
    interval: Duration,
    page_bytes: usize,
    pinned: bool,
}

/// Phase 1c; `None` with `--scrape-rounds 0`. Starts the metrics server, scrapes once to
/// check the page, then runs the rounds (with the scraper first in even rounds).
pub fn scrape_rates(
    p: &Params,
    served: &Served,
    query: &[u8],
    server: Target,
) -> anyhow::Result<Option<ScrapeRates>> {
    if p.scrape_rounds == 0 {
        return Ok(None);
    }
    let sources = sources(served)?;
    let ledger = CpuLedger::new();
    let (metrics, pinned) = start_on_server_cpu(sources)?;
    let addr = metrics.local_addr();
    let mut rates = ScrapeRates {
        interval: Duration::from_secs_f64(p.scrape_interval),
        page_bytes: scrape(addr)?,
        pinned,
        ..ScrapeRates::default()
    };
    let rounds = (0..p.scrape_rounds).try_for_each(|round| {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        order
            .into_iter()
            .try_for_each(|with| rates.measure(p, &ledger, addr, with, query, server))
    });
    metrics.stop();
    rounds?;
    Ok(Some(rates))
}

/// What the metrics server reads: the DNS server's counters and answer sets, fresh crawl
/// counters, and the peer counts of `served.db` as the status line takes them.
fn sources(served: &Served) -> anyhow::Result<Sources> {
    let peers = PeerSnapshot::default();
    peers.set(Store::open(served.db)?.counts(unix_now())?);
    Ok(Sources {
        crawl: Arc::new(CrawlCounters::default()),
        dns: Some(DnsSources {
            counters: served.handle.counters(),
            answers: served.handle.answer_sizes(),
            default_mask: served.default_mask,
        }),
        peers,
        probe_age: Duration::from_secs(600),
    })
}

/// Starts the metrics server on 127.0.0.1:0 from a thread pinned to [`SERVER_CPU`], whose
/// affinity every thread it starts inherits; says whether it pinned.
fn start_on_server_cpu(sources: Sources) -> anyhow::Result<(MetricsServer, bool)> {
    thread::scope(|s| {
        s.spawn(|| {
            let pinned = two_cores() && pin(0, SERVER_CPU).is_some();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            Ok((MetricsServer::start(addr, sources)?, pinned))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread starting the metrics server panicked"))?
    })
}

impl ScrapeRates {
    /// Measures the server's maximum rate for `--scrape-secs`, `with` the scraper or
    /// without, and the metrics server's CPU meanwhile.
    fn measure(
        &mut self,
        p: &Params,
        ledger: &CpuLedger,
        addr: SocketAddr,
        with: bool,
        query: &[u8],
        server: Target,
    ) -> anyhow::Result<()> {
        let duration = Duration::from_secs_f64(p.scrape_secs);
        let (before, metrics_before) = (ledger.others()?, thread_cpu(METRICS_THREAD));
        let scraper = with
            .then(|| Scraper::start(addr, self.interval))
            .transpose()?;
        let run = closed_loop(server, query, p.window, duration);
        let scraped = scraper.map(Scraper::stop).transpose()?.unwrap_or_default();
        thread::sleep(SETTLE);
        let cpu = (ledger.others()?.saturating_sub(before)).saturating_sub(scraped.cpu_ns);
        let run = run?;
        anyhow::ensure!(run.wrong_size == 0, "responses of an unexpected size");
        if with {
            self.metrics_thread += thread_cpu(METRICS_THREAD).saturating_sub(metrics_before);
            self.cpu_with += cpu;
            self.secs_with += duration.as_secs_f64();
            self.scraped.add(&scraped);
            self.with.push(run);
        } else {
            self.cpu_without += cpu;
            self.secs_without += duration.as_secs_f64();
            self.without.push(run);
        }
        Ok(())
    }

    /// Prints the rounds, the scrapes, the metrics server's CPU and the verdict.
    fn print(&self, p: &Params) {
        println!();
        println!(
            "metrics scrapes: GET /metrics ({} bytes) every {:.2} s during the closed loop, {} \
             rounds x {:.1} s with the scraper and without (alternating which goes first)",
            self.page_bytes,
            self.interval.as_secs_f64(),
            p.scrape_rounds,
            p.scrape_secs
        );
        if self.pinned {
            println!(
                "metrics server's threads on the serving threads' core, scraper on the client's"
            );
        } else {
            println!("metrics server and scraper not pinned to cores");
        }
        print_rates_header();
        let cpu = |runs: &[Throughput]| median(runs.iter().map(|r| r.cpu_per_query));
        let rate = |runs: &[Throughput]| median(runs.iter().map(|r| r.rate));
        print_rounds(
            "with scraper",
            &self.with,
            rate(&self.with),
            cpu(&self.with),
        );
        print_rounds(
            "without",
            &self.without,
            rate(&self.without),
            cpu(&self.without),
        );
        self.print_cost(rate(&self.without), cpu(&self.without));
    }

    /// Prints the scrapes, the metrics server's CPU as queries of the serving thread
    /// (`per_answer` seconds each) and as a share of `qps`, and the verdict.
    fn print_cost(&self, qps: f64, per_answer: f64) {
        let s = &self.scraped;
        let n = s.scrapes.max(1) as f64;
        println!(
            "scrapes: {} in {:.1} s ({:.2}/s), {:.2} ms each as the scraper saw it; the \
             scraper's own CPU {:.0} us per scrape",
            s.scrapes,
            self.secs_with,
            s.scrapes as f64 / self.secs_with,
            s.wait.as_secs_f64() * 1e3 / n,
            s.cpu_ns as f64 / 1e3 / n
        );
        let per_scrape = self.cpu_with as f64 / 1e9 / n;
        let per_sec = self.cpu_with as f64 / 1e9 / self.secs_with;
        let idle = self.cpu_without as f64 / 1e9 / self.secs_without;
        println!(
            "metrics server CPU: {:.0} us per scrape ({:.0} us net of its idle polling; the \
             {METRICS_THREAD} thread alone {:.0} us); {:.0} us per s with the scraper, {:.0} us \
             per s without",
            per_scrape * 1e6,
            (per_sec - idle) * self.secs_with / n * 1e6,
            self.metrics_thread as f64 / 1e3 / n,
            per_sec * 1e6,
            idle * 1e6
        );
        let share = per_sec / per_answer / qps;
        println!(
            "= {:.0} queries of the serving thread per scrape ({:.2} us per answer), {:.0} per \
             s: {:.4}% of the {qps:.0} qps without scrapes ({:.4}% of one core)",
            per_scrape / per_answer,
            per_answer * 1e6,
            per_sec / per_answer,
            share * 100.0,
            per_sec * 100.0
        );
        println!(
            "scrape cost < 1% of qps: {} (CPU-equivalent {:.4}%; qps with / without, median \
             of the rounds, {:.4}; per round {})",
            verdict(share < TARGET_SHARE),
            share * 100.0,
            self.ratio(),
            self.ratios().join(", ")
        );
    }

    /// The median of the rounds' ratios, with / without.
    fn ratio(&self) -> f64 {
        median(
            self.with
                .iter()
                .zip(&self.without)
                .map(|(a, b)| a.rate / b.rate),
        )
    }

    fn ratios(&self) -> Vec<String> {
        (self.with.iter().zip(&self.without))
            .map(|(a, b)| format!("{:.3}", a.rate / b.rate))
            .collect()
    }
}

/// Prints phase 1c's results, if it ran.
pub fn print(rates: Option<&ScrapeRates>, p: &Params) {
    if let Some(rates) = rates {
        rates.print(p);
    }
}

/// The CPU time of the threads the bench started before the metrics server (the calling
/// thread, the DNS server's, the responder's), to tell them from all the others.
struct CpuLedger {
    /// The thread that made the ledger and reads it.
    me: i32,
    /// The bench's other threads.
    bench: HashSet<i32>,
}

impl CpuLedger {
    /// Notes the threads running now as the bench's.
    fn new() -> CpuLedger {
        let me = gettid().as_raw();
        let bench = (threads::threads().into_iter())
            .map(|t| t.tid)
            .filter(|tid| *tid != me)
            .collect();
        CpuLedger { me, bench }
    }

    /// The CPU time so far of every thread of the process, exited ones included, but the
    /// bench's, in nanoseconds; called by the thread that made the ledger. The calling
    /// thread's own clock and the process's are read last, back to back, so that its time
    /// spent reading `/proc` counts as the bench's (the other bench threads are idle then).
    fn others(&self) -> io::Result<u64> {
        debug_assert_eq!(
            gettid().as_raw(),
            self.me,
            "read by the thread that made it"
        );
        let rest: u64 = (threads::threads().into_iter())
            .filter(|t| self.bench.contains(&t.tid))
            .map(|t| t.cpu_ns)
            .sum();
        let mine = clock_ns(ClockId::CLOCK_THREAD_CPUTIME_ID)?;
        let process = clock_ns(ClockId::CLOCK_PROCESS_CPUTIME_ID)?;
        Ok(process.saturating_sub(rest + mine))
    }
}

/// Reads `clock` in nanoseconds.
fn clock_ns(clock: ClockId) -> io::Result<u64> {
    let t = clock_gettime(clock).map_err(io::Error::from)?;
    Ok(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// The CPU time so far of this process's thread named `name` (0 if there is none).
fn thread_cpu(name: &str) -> u64 {
    crate::thread_cpu(name).unwrap_or(0)
}

/// What a scraper did.
#[derive(Debug, Default)]
struct Scraped {
    scrapes: u64,
    /// Time spent in scrapes, as the scraper saw it.
    wait: Duration,
    /// The scraper thread's own CPU time, nanoseconds.
    cpu_ns: u64,
}

impl Scraped {
    fn add(&mut self, other: &Scraped) {
        self.scrapes += other.scrapes;
        self.wait += other.wait;
        self.cpu_ns += other.cpu_ns;
    }
}

/// A thread on the client's core scraping `/metrics` at a fixed interval, the first
/// scrape half an interval after it starts, until stopped.
struct Scraper {
    stop: Sender<()>,
    thread: JoinHandle<anyhow::Result<Scraped>>,
}

impl Scraper {
    fn start(addr: SocketAddr, interval: Duration) -> io::Result<Scraper> {
        let (stop, stopped) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(SCRAPER_THREAD.into())
            .spawn(move || {
                let _pinned = PinnedClient::new();
                scrape_until(addr, interval, &stopped)
            })?;
        Ok(Scraper { stop, thread })
    }

    /// Stops the scraper (by dropping its channel) once its scrape in progress ends.
    fn stop(self) -> anyhow::Result<Scraped> {
        drop(self.stop);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the scraper thread panicked"))?
    }
}

/// Scrapes `addr` every `interval` until `stopped` disconnects; returns what it did and
/// its own CPU time.
fn scrape_until(
    addr: SocketAddr,
    interval: Duration,
    stopped: &Receiver<()>,
) -> anyhow::Result<Scraped> {
    let start = Instant::now();
    let mut done = Scraped::default();
    loop {
        let due = start + interval.mul_f64(done.scrapes as f64 + 0.5);
        match stopped.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
        let began = Instant::now();
        scrape(addr)?;
        done.wait += began.elapsed();
        done.scrapes += 1;
    }
    done.cpu_ns = clock_ns(ClockId::CLOCK_THREAD_CPUTIME_ID)?;
    Ok(done)
}

/// One `GET /metrics` over a new connection, read to its end; returns the body's size.
///
/// # Errors
/// On I/O errors, a status other than 200, or a page without [`EXPECTED_SERIES`].
fn scrape(addr: SocketAddr) -> anyhow::Result<usize> {
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::with_capacity(16 * 1024);
    stream.read_to_end(&mut response)?;
    let text = std::str::from_utf8(&response).context("a response that is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("a response without the end of its headers")?;
    let status = head.split_whitespace().nth(1);
    anyhow::ensure!(status == Some("200"), "GET /metrics: {head}");
    anyhow::ensure!(
        body.contains(EXPECTED_SERIES),
        "no {EXPECTED_SERIES} on the page"
    );
    Ok(body.len())
}
