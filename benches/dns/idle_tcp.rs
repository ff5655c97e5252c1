//! The DNS bench's mode `--idle-tcp N`: what N idle TCP connections cost the server.
//!
//! The server runs in this process (a fixed answer set, no database); a child process
//! (this bench binary again, told so by [`CLIENT_ENV`]) opens N connections, 16 from each
//! of N/16 loopback addresses (127.1.0.0/16, below the per-source cap), and holds them
//! without a word. Two processes, because each end of a connection is a descriptor and
//! one process may not hold 2N of them; and the server's resident set is then its own.
//! Printed: the server process's `VmRSS` and `RssAnon` before and with the connections,
//! per connection; the machine's kernel slab memory before and with them (both ends of
//! every connection, plus whatever else the machine does meanwhile: a rough figure); a
//! fresh client's query answered while they are open; and how long the server took to
//! close them all once the child exited.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use dnsseeder::dns::{DnsHandle, DnsServer, DnsStats, PeerSource};
use dnsseeder::seeder::raise_fd_limit;
use dnsseeder::testkit::dns_client::{framed, query, tcp_connect_from, tcp_read};
use hickory_proto::rr::RecordType;

use crate::child::Running;
use crate::memory::status_field;

/// Set in the child's environment to `SERVER_ADDR COUNT`: it then holds the connections.
const CLIENT_ENV: &str = "DNS_BENCH_IDLE_CLIENT";
/// Connections per source address, below the server's per-source cap (32).
const PER_SOURCE: usize = 16;
/// How long the child may take to open its connections, and the server to close them.
const PATIENCE: Duration = Duration::from_secs(120);
/// Descriptors the bench needs besides the server's end of each connection.
const SPARE_FDS: u64 = 256;

/// The answer set: 1000 addresses of 127.3.0.0/16.
struct FixedPeers;

impl PeerSource for FixedPeers {
    fn good_peers(&mut self, _mask: u64) -> anyhow::Result<Vec<IpAddr>> {
        Ok((0..1000u16)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 3, (i >> 8) as u8, i as u8)))
            .collect())
    }
}

/// In the child process (when [`CLIENT_ENV`] is set): opens the connections and holds
/// them until the parent exits, then returns the exit code; `None` in the bench itself.
pub fn client_role() -> Option<ExitCode> {
    let spec = std::env::var(CLIENT_ENV).ok()?;
    Some(match hold_connections(&spec) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle TCP client failed: {e:#}");
            ExitCode::FAILURE
        }
    })
}

/// The `n`-th source address: 127.1.0.1 to 127.1.0.250, then 127.1.1.1, ...
fn loopback_source(n: usize) -> IpAddr {
    let (high, low) = (n / 250, n % 250);
    IpAddr::V4(Ipv4Addr::new(127, 1, high as u8, 1 + low as u8))
}

/// Opens `COUNT` connections to `SERVER_ADDR` (as `spec` says, [`PER_SOURCE`] from each
/// source) and sleeps while the parent lives.
fn hold_connections(spec: &str) -> anyhow::Result<()> {
    let (addr, count) = spec
        .split_once(' ')
        .context("DNS_BENCH_IDLE_CLIENT must be \"SERVER_ADDR COUNT\"")?;
    let server: SocketAddr = addr.parse()?;
    let count: usize = count.parse()?;
    raise_fd_limit();
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let from = loopback_source(i / PER_SOURCE);
        let stream = tcp_connect_from(from, server)
            .with_context(|| format!("connection {i} from {from} (open files: ulimit -n)"))?;
        held.push(stream);
    }
    let parent = std::os::unix::process::parent_id();
    while std::os::unix::process::parent_id() == parent {
        thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The memory figures read at one moment, in KiB.
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss: u64,
    anon: u64,
    slab: u64,
}

impl Memory {
    fn now() -> anyhow::Result<Memory> {
        let pid = std::process::id();
        Ok(Memory {
            rss: status_field(pid, "VmRSS")?,
            anon: status_field(pid, "RssAnon")?,
            slab: slab_kib()?,
        })
    }
}

/// Returns how many file descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// The kernel's slab memory (`Slab` of `/proc/meminfo`), in KiB.
fn slab_kib() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no Slab in /proc/meminfo")
}

/// Measures what `count` idle TCP connections cost the server; see the module.
pub fn measure(count: usize) -> anyhow::Result<()> {
    check_descriptors(count)?;
    let server = start_server(count)?;
    let addr = server.local_addrs()[0];
    // The loop's buffers are allocated by a first query.
    fresh_query(addr, loopback_source(100_000))?;
    thread::sleep(Duration::from_millis(200));
    let fds = open_fds();
    let before = Memory::now()?;
    let mut client = Running::spawn(
        Command::new(std::env::current_exe()?).env(CLIENT_ENV, format!("{addr} {count}")),
    )?;
    let opened = Instant::now();
    wait_until(
        || Ok(stats(&server).tcp_connections > count as u64),
        "connections",
    )?;
    let open_secs = opened.elapsed().as_secs_f64();
    thread::sleep(Duration::from_millis(500));
    let with = Memory::now()?;
    let answered_in = fresh_query(addr, loopback_source(100_001))?;
    client.terminate(Duration::from_secs(10))?;
    let closing = Instant::now();
    wait_until(|| Ok(open_fds() <= fds), "closes")?;
    let close_secs = closing.elapsed().as_secs_f64();
    let after = Memory::now()?;
    let s = stats(&server);
    server.shutdown();
    print_idle(count, open_secs, (before, with, after), answered_in);
    println!(
        "the server had closed all {count} {close_secs:.2} s after the child was seen to \
         exit; counters: {} connections, {} refused, {} evicted",
        s.tcp_connections, s.tcp_rejected, s.tcp_evicted
    );
    Ok(())
}

/// Raises the open file limit and checks it leaves room for the server's `count` ends.
fn check_descriptors(count: usize) -> anyhow::Result<()> {
    raise_fd_limit();
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let needed = count as u64 + SPARE_FDS;
    anyhow::ensure!(
        soft >= needed,
        "--idle-tcp {count} needs {needed} open files in each process, the limit is {soft} \
         (hard {hard}): lower --idle-tcp or raise the hard limit (ulimit -Hn, as root)"
    );
    Ok(())
}

/// The server on 127.0.0.1, with room for `count` connections (and a few more) that
/// do not expire while they are measured.
fn start_server(count: usize) -> anyhow::Result<DnsHandle> {
    let mut config = super::dns_config()?;
    config.max_tcp_connections = count + 16;
    config.tcp_idle_timeout = Duration::from_secs(3600);
    DnsServer::bind(config, FixedPeers)?.spawn()
}

fn stats(server: &DnsHandle) -> DnsStats {
    server.counters().snapshot()
}

/// Waits until `done` says so, at most [`PATIENCE`]; `what` names what was awaited.
fn wait_until(mut done: impl FnMut() -> anyhow::Result<bool>, what: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    while !done()? {
        anyhow::ensure!(
            start.elapsed() < PATIENCE,
            "the {what} did not all happen within {PATIENCE:?} (see the client's error above)"
        );
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Asks one query over a new connection from `from`; returns how long it took.
fn fresh_query(server: SocketAddr, from: IpAddr) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut stream = tcp_connect_from(from, server)?;
    stream.write_all(&framed(&query(1, "seed.example.com.", RecordType::A, None)))?;
    let answer = tcp_read(&mut stream);
    anyhow::ensure!(!answer.answers.is_empty(), "an empty answer: {answer:?}");
    Ok(start.elapsed())
}

/// Prints the memory before, with and after the connections.
fn print_idle(count: usize, open_secs: f64, memory: (Memory, Memory, Memory), answered: Duration) {
    let (before, with, after) = memory;
    let per = |a: u64, b: u64| (b as f64 - a as f64) * 1024.0 / count as f64;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "idle TCP: {count} connections from {} loopback addresses ({PER_SOURCE} each), held \
         by a child process, opened in {open_secs:.1} s",
        count.div_ceil(PER_SOURCE)
    );
    println!(
        "server process VmRSS: {:.1} MiB before, {:.1} MiB with them: {:.0} bytes per \
         connection (RssAnon {:.0} bytes per connection); {:.1} MiB after they closed",
        mib(before.rss),
        mib(with.rss),
        per(before.rss, with.rss),
        per(before.anon, with.anon),
        mib(after.rss)
    );
    println!(
        "kernel slab, machine-wide (both ends of each connection, and anything else \
         running): {:+.1} MiB, {:.0} bytes per connection",
        mib(with.slab) - mib(before.slab),
        per(before.slab, with.slab)
    );
    println!(
        "a fresh client's query with them open: answered in {:.2} ms",
        answered.as_secs_f64() * 1e3
    );
}
