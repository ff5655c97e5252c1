//! The probe-timing bench: how long simulated nodes take to complete the handshake and to
//! answer `getaddr`, and how far apart the messages of one answer arrive. These are the
//! figures behind the defaults of `--handshake-timeout` and `--addr-grace` (issue 11; see
//! docs/PERFORMANCE.md, "Probe timing").
//!
//! A [`SimNetwork`] of `--nodes` nodes runs on 127.0.0.0/8: every `1 / --slow`-th node is
//! `Slow` (it waits `--slow-delay` ms before each reply), the others `Good`; each answers
//! `getaddr` with `--answer` addresses, split in two messages on every third connection (as
//! simulated nodes do). `--threads` threads probe every node once, all at once, with a
//! handshake timeout and deadline of 20 s and a grace of `--grace` s (1 s by default, the old
//! linger, so that every straggler is seen). Each probe runs over a socket that notes when
//! each read returned; its bytes are split into messages afterwards, so every message has the
//! time its last byte was read. Per behaviour, the bench prints percentiles of: the
//! handshake (connected to the peer's `version` and `verack` both in), `getaddr` sent to the
//! first multi-entry `addr`/`addrv2`, the first multi-entry message to the last one (what
//! the grace must cover), and the whole probe.
//!
//! ```text
//! cargo bench --bench probe_timing
//! cargo bench --bench probe_timing -- --nodes 4000 --threads 256 --answer 1000
//! ```
//! Flags (each also an environment variable `TIMING_<NAME>`): `--nodes`, `--threads`,
//! `--slow` (fraction), `--slow-delay` (ms), `--answer` (addresses), `--grace` (s).

#[path = "common/flags.rs"]
mod flags;
#[path = "common/run.rs"]
mod run;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;

use dnsseeder::p2p::{Conn, Message, ProbeOptions, converse, decode_payload, parse_header};
use dnsseeder::sim::{Behaviour, SimConfig, SimNetwork};

/// Regtest's default P2P port.
const PORT: u16 = 18444;
/// Length of a message header.
const HEADER_LEN: usize = 24;

flags::params! {
    nodes: usize = 2000, smoke 200;
    threads: usize = 128, smoke 32;
    slow: f64 = 0.1;
    slow_delay: u64 = 300;
    answer: usize = 1000, smoke 100;
    grace: f64 = 1.0, smoke 0.1;
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let params = Params::from_flags(Some("TIMING")).and_then(|p| {
        if p.nodes < 2 || p.threads == 0 || p.slow > 1.0 {
            Err("need --nodes >= 2, --threads >= 1, --slow <= 1".to_owned())
        } else {
            Ok(p)
        }
    });
    run::run("probe_timing", params, |p| {
        bench(p).map_err(anyhow::Error::msg)
    })
}

/// What one probe saw, in seconds from the moment the connection opened.
#[derive(Debug, Clone)]
struct Timing {
    behaviour: Behaviour,
    /// The peer's `version` and `verack` both in.
    handshake: Option<f64>,
    /// `getaddr` sent.
    getaddr: Option<f64>,
    /// Arrival of each multi-entry `addr`/`addrv2`.
    answers: Vec<f64>,
    /// The probe's end, and the addresses it kept.
    end: f64,
    kept: usize,
}

/// Runs the bench; returns whether every node answered.
fn bench(p: &Params) -> Result<bool, String> {
    let magic = Magic::from(Network::Regtest);
    let sim = SimNetwork::start(network(p, magic))
        .map_err(|e| format!("cannot start the simulated network: {e}"))?;
    let nodes: Vec<(SocketAddr, Behaviour)> =
        sim.nodes().iter().map(|n| (n.addr, n.behaviour)).collect();
    let mut opts = ProbeOptions::new(magic);
    opts.handshake_timeout = opts.deadline;
    opts.addr_grace = Duration::from_secs_f64(p.grace);
    let started = Instant::now();
    let timings = probe_all(&nodes, &opts, p.threads);
    let wall = started.elapsed().as_secs_f64();
    sim.shutdown();
    report(p, &timings, wall);
    Ok(timings.iter().all(|t| t.handshake.is_some()))
}

/// `--nodes` nodes, every `1 / --slow`-th one `Slow`, with answers of `--answer` addresses.
fn network(p: &Params, magic: Magic) -> SimConfig {
    let every = if p.slow > 0.0 {
        (1.0 / p.slow).round() as usize
    } else {
        usize::MAX
    };
    let behaviours: Vec<Behaviour> = (0..p.nodes)
        .map(|i| {
            if i % every == every - 1 {
                Behaviour::Slow
            } else {
                Behaviour::Good
            }
        })
        .collect();
    let mut config = SimConfig::new(magic, PORT, &behaviours);
    config.addrs_per_answer = p.answer;
    config.slow_delay = Duration::from_millis(p.slow_delay);
    config
}

/// Probes every node once from `threads` threads; returns what each probe saw.
fn probe_all(
    nodes: &[(SocketAddr, Behaviour)],
    opts: &ProbeOptions,
    threads: usize,
) -> Vec<Timing> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(nodes.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(&(addr, behaviour)) = nodes.get(next.fetch_add(1, Ordering::Relaxed))
                {
                    if let Some(t) = probe_timed(addr, behaviour, opts) {
                        out.lock().expect("no prober panicked").push(t);
                    }
                }
            });
        }
    });
    out.into_inner().expect("no prober panicked")
}

/// One probe over a [`Recorder`]; `None` when the connection failed.
fn probe_timed(addr: SocketAddr, behaviour: Behaviour, opts: &ProbeOptions) -> Option<Timing> {
    let stream = TcpStream::connect_timeout(&addr, opts.connect_timeout).ok()?;
    stream.set_nodelay(true).ok()?;
    let mut rec = Recorder::new(stream);
    let deadline = rec.opened + opts.deadline;
    let kept = converse(&mut rec, addr, opts, deadline).map_or(0, |info| info.addrs.len());
    let end = rec.since_open(Instant::now());
    let mut timing = rec.timing(opts.magic, behaviour);
    timing.end = end;
    timing.kept = kept;
    Some(timing)
}

/// A socket that notes when each read returned and when `getaddr` was written.
struct Recorder {
    stream: TcpStream,
    opened: Instant,
    /// Every byte read, and for each read the time it returned and the total read then.
    bytes: Vec<u8>,
    reads: Vec<(Instant, usize)>,
    getaddr: Option<Instant>,
}

impl Recorder {
    fn new(stream: TcpStream) -> Recorder {
        Recorder {
            stream,
            opened: Instant::now(),
            bytes: Vec::new(),
            reads: Vec::new(),
            getaddr: None,
        }
    }

    fn since_open(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.opened).as_secs_f64()
    }

    /// When the byte at `offset` was read.
    fn read_at(&self, offset: usize) -> Option<Instant> {
        let i = self.reads.partition_point(|&(_, total)| total <= offset);
        self.reads.get(i).map(|&(at, _)| at)
    }

    /// Splits what was read into messages and times the handshake and the answers.
    fn timing(&self, magic: Magic, behaviour: Behaviour) -> Timing {
        let mut t = Timing {
            behaviour,
            handshake: None,
            getaddr: self.getaddr.map(|at| self.since_open(at)),
            answers: Vec::new(),
            end: 0.0,
            kept: 0,
        };
        let (mut version, mut verack, mut at) = (None, None, 0);
        while let Some((message, end)) = self.message(at, magic) {
            let arrived = self
                .read_at(end - 1)
                .map_or(f64::NAN, |i| self.since_open(i));
            match message {
                Message::Version(_) => version = version.or(Some(arrived)),
                Message::Verack => verack = verack.or(Some(arrived)),
                Message::Addr(entries) if entries.len() > 1 => t.answers.push(arrived),
                _ => {}
            }
            at = end;
        }
        t.handshake = version.zip(verack).map(|(a, b)| a.max(b));
        t
    }

    /// The message starting at `at`, and where it ends.
    fn message(&self, at: usize, magic: Magic) -> Option<(Message, usize)> {
        let header: &[u8; HEADER_LEN] = self.bytes.get(at..at + HEADER_LEN)?.try_into().ok()?;
        let header = parse_header(header, magic).ok()?;
        let end = at + HEADER_LEN + header.length as usize;
        let message = decode_payload(&header, self.bytes.get(at + HEADER_LEN..end)?).ok()?;
        Some((message, end))
    }
}

impl Read for Recorder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.bytes.extend_from_slice(&buf[..n]);
        self.reads.push((Instant::now(), self.bytes.len()));
        Ok(n)
    }
}

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.get(4..11) == Some(&b"getaddr"[..]) {
            self.getaddr = Some(Instant::now());
        }
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Conn for Recorder {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.stream.set_timeout(timeout)
    }

    fn set_read_timeout_only(&mut self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout_only(timeout)
    }

    fn set_write_timeout_only(&mut self, timeout: Duration) -> io::Result<()> {
        self.stream.set_write_timeout_only(timeout)
    }
}

/// Prints the setup, then the percentiles of each figure per behaviour.
fn report(p: &Params, timings: &[Timing], wall: f64) {
    println!("probe timing bench");
    println!(
        "  network    {} simulated nodes on 127.0.0.0/8, {:.0}% Slow ({} ms before each \
         reply), answers of {} addresses (split in two on every third connection)",
        p.nodes,
        p.slow * 100.0,
        p.slow_delay,
        p.answer
    );
    println!(
        "  probes     {} from {} threads in {wall:.2} s; handshake timeout and deadline 20 s, \
         grace {} s",
        timings.len(),
        p.threads,
        p.grace
    );
    println!("  figures in ms: p50 / p90 / p99 / max (count)");
    for behaviour in [Behaviour::Good, Behaviour::Slow] {
        let of: Vec<&Timing> = timings
            .iter()
            .filter(|t| t.behaviour == behaviour)
            .collect();
        if !of.is_empty() {
            report_behaviour(behaviour, &of);
        }
    }
}

/// Prints the four figures of the probes of one behaviour.
fn report_behaviour(behaviour: Behaviour, of: &[&Timing]) {
    let split = of.iter().filter(|t| t.answers.len() > 1).count();
    let kept: usize = of.iter().map(|t| t.kept).sum();
    println!(
        "  {behaviour:?}: {} probes, {split} answers in more than one message, {:.1} addresses kept \
         per probe",
        of.len(),
        kept as f64 / of.len() as f64
    );
    let figure = |name: &str, values: Vec<f64>| println!("    {name:<34} {}", percentiles(values));
    figure("handshake", of.iter().filter_map(|t| t.handshake).collect());
    figure(
        "getaddr to first multi-entry addr",
        of.iter()
            .filter_map(|t| Some(t.answers.first()? - t.getaddr?))
            .collect(),
    );
    figure(
        "first to last multi-entry addr",
        of.iter()
            .filter(|t| t.answers.len() > 1)
            .filter_map(|t| Some(t.answers.last()? - t.answers.first()?))
            .collect(),
    );
    figure("whole probe", of.iter().map(|t| t.end).collect());
}

/// `p50 / p90 / p99 / max (count)` of `values` (seconds), in milliseconds.
fn percentiles(mut values: Vec<f64>) -> String {
    if values.is_empty() {
        return "none".to_owned();
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize] * 1e3;
    format!(
        "{:.1} / {:.1} / {:.1} / {:.1} ({})",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        values.len()
    )
}
