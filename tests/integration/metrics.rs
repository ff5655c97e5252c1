//! `--metrics-listen`: the real binary crawling a simulated network serves every SPEC §12
//! metric, counts DNS queries exactly, and turns `/health` from 503 to 200 once peers
//! are good.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::sim::{SimConfig, SimNetwork};
use dnsseeder::testkit::dns_client::{client, exchange, query};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::util::{DNS_FLAGS, Seeder, arg, crawl_args, free_port, heavy, promtool_check_metrics};

/// Every name SPEC §12 requires.
const NAMES: [&str; 14] = [
    "dnsseeder_peers{",
    "dnsseeder_probes_total{",
    "dnsseeder_probes_in_flight ",
    "dnsseeder_learned_addresses_total ",
    "dnsseeder_dns_queries_total{",
    "dnsseeder_dns_responses_total{",
    "dnsseeder_dns_rate_limited_total ",
    "dnsseeder_answer_set_size{",
    "dnsseeder_db_commit_seconds_bucket{",
    "dnsseeder_db_commit_seconds_sum ",
    "process_resident_memory_bytes ",
    "process_cpu_seconds_total ",
    "process_open_fds ",
    "process_start_time_seconds ",
];

/// `GET path` over HTTP/1.0: the status code and the body.
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// The value of the sample line starting with `series` (name and labels).
fn value(page: &str, series: &str) -> f64 {
    let line = page
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{page}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Polls `/health` until it says 200; panics after `limit`.
pub(crate) fn wait_healthy(addr: SocketAddr, limit: Duration) {
    let start = Instant::now();
    loop {
        let (status, body) = get(addr, "/health");
        if status == 200 {
            assert_eq!(body, "ok\n");
            return;
        }
        assert!(
            start.elapsed() < limit,
            "still {status} after {limit:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn metrics_and_health_follow_the_crawl_and_dns() {
    let _serial = heavy();
    let dir = tempfile::tempdir().unwrap();
    let sim =
        SimNetwork::start(SimConfig::mixed(200, Magic::from(Network::Regtest), 18444)).unwrap();
    let db = dir.path().join("peers.db");
    let seed = sim.seed().to_string();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = http.to_string();
    let extra = [
        "--threads",
        "16",
        "--retry-scale",
        "0.001",
        "--metrics-listen",
        &listen,
    ];
    let mut args = crawl_args(arg(&db), &seed, &extra);
    args.extend(DNS_FLAGS);
    let seeder = Seeder::start(&args, "info");
    let dns = seeder.dns_addr();
    seeder.wait_for_log("metrics: GET /metrics", Duration::from_secs(20));

    let (status, body) = get(http, "/health");
    assert_eq!(status, 503, "healthy before any peer is good: {body}");
    assert_eq!(body.lines().count(), 1, "{body}");
    assert_eq!(get(http, "/nope").0, 404);

    wait_healthy(http, Duration::from_secs(60));
    let page = get(http, "/metrics").1;
    for name in NAMES {
        assert!(page.contains(name), "{name} missing from\n{page}");
    }
    assert!(value(&page, "dnsseeder_probes_total{result=\"ok\"}") > 0.0);
    promtool_check_metrics(&page);
    dns_queries_are_counted(http, dns);
}

/// N UDP queries add exactly N to the UDP count; a foreign zone's query is REFUSED.
fn dns_queries_are_counted(http: SocketAddr, dns: SocketAddr) {
    const UDP: &str = "dnsseeder_dns_queries_total{transport=\"udp\"}";
    const REFUSED: &str = "dnsseeder_dns_responses_total{rcode=\"refused\"}";
    let before = get(http, "/metrics").1;
    let socket = client("127.0.0.1:0");
    for id in 0..7 {
        let packet = query(id, "seed.example.com", RecordType::A, Some(1232));
        exchange(&socket, dns, &packet).expect("an answer");
    }
    let after = get(http, "/metrics").1;
    assert_eq!(value(&after, UDP) - value(&before, UDP), 7.0);
    let packet = query(8, "example.org", RecordType::A, None);
    let reply = exchange(&socket, dns, &packet).expect("an answer");
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    let last = get(http, "/metrics").1;
    assert_eq!(value(&last, REFUSED) - value(&after, REFUSED), 1.0);
    assert_eq!(value(&last, UDP) - value(&after, UDP), 1.0);
}

/// A taken `--metrics-listen` port is a startup error naming the flag.
#[test]
fn a_taken_metrics_port_fails_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("peers.db");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let args = crawl_args(arg(&db), "", &["--metrics-listen", &listen]);
    let out = crate::util::run(&args);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--metrics-listen"), "{stderr}");
}

/// The `Threads:` count of a process.
fn thread_count(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads: in /proc/PID/status")
}

/// Hostile clients of the metrics port, from two threads of the test: `slow` connections
/// that send a partial request a byte at a time, and `huge` ones that send an endless
/// header. Each reconnects when the server closes it, so all of them stay open or opening.
struct Hammer {
    stop: Arc<AtomicBool>,
    connects: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hammer {
    fn start(addr: SocketAddr, slow: usize, huge: usize) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let connects = Arc::new(AtomicUsize::new(0));
        let threads = [(slow, &b"a"[..]), (huge, &[b'h'; 16 * 1024][..])]
            .into_iter()
            .map(|(n, piece)| {
                let (stop, connects) = (Arc::clone(&stop), Arc::clone(&connects));
                let piece = piece.to_vec();
                std::thread::spawn(move || hammer(addr, n, &piece, &stop, &connects))
            })
            .collect();
        Hammer {
            stop,
            connects,
            threads,
        }
    }

    fn connects(&self) -> usize {
        self.connects.load(Ordering::Relaxed)
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
    }
}

/// Holds `n` connections to `addr`, each sending a request line and then `piece` every
/// 20 ms for ever, reconnecting those the server closes, until `stop`.
fn hammer(addr: SocketAddr, n: usize, piece: &[u8], stop: &AtomicBool, connects: &AtomicUsize) {
    let open = || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        s.set_nonblocking(true).ok()?;
        let _ = s.write(b"GET /metrics HTTP/1.1\r\nX-Hostile: ");
        connects.fetch_add(1, Ordering::Relaxed);
        Some(s)
    };
    let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| open()).collect();
    let mut sink = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        for conn in &mut conns {
            let alive = conn.as_mut().is_some_and(|s| {
                let wrote = match s.write(piece) {
                    Ok(_) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                };
                let closed = matches!(s.read(&mut sink), Ok(0))
                    || matches!(s.read(&mut sink), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
                wrote && !closed
            });
            if !alive {
                *conn = open();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// GET `path`, timed.
fn timed_get(addr: SocketAddr, path: &str) -> (u16, Duration) {
    let start = Instant::now();
    let (status, _) = get(addr, path);
    (status, start.elapsed())
}

/// Regression for the tiny_http server: a thread per connection and no bound on a
/// request's head. 250 slow clients and 50 sending endless headers hold the metrics port
/// while DNS queries and scrapes come: every query is answered, every scrape too, and the
/// seeder's thread count stays where it was.
#[test]
fn hostile_metrics_clients_cost_no_threads_and_never_dns() {
    let _serial = heavy();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("peers.db");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = http.to_string();
    let mut args = crawl_args(arg(&db), "", &["--metrics-listen", &listen]);
    args.extend(DNS_FLAGS);
    let seeder = Seeder::start(&args, "info");
    let dns = seeder.dns_addr();
    seeder.wait_for_log("metrics: GET /metrics", Duration::from_secs(20));
    assert_eq!(get(http, "/metrics").0, 200);
    std::thread::sleep(Duration::from_millis(500));
    let before = thread_count(seeder.pid());

    let hammer = Hammer::start(http, 250, 50);
    let start = Instant::now();
    while hammer.connects() < 300 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} connected",
            hammer.connects()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let socket = client("127.0.0.1:0");
    let (mut peak, mut slowest) = (before, Duration::ZERO);
    for round in 0..10u16 {
        for i in 0..20 {
            let packet = query(round * 20 + i, "seed.example.com", RecordType::A, None);
            let reply = exchange(&socket, dns, &packet);
            assert!(
                reply.is_some(),
                "query {round}/{i} unanswered under the metrics flood"
            );
        }
        let (status, took) = timed_get(http, "/metrics");
        assert_eq!(status, 200);
        slowest = slowest.max(took);
        peak = peak.max(thread_count(seeder.pid()));
        std::thread::sleep(Duration::from_millis(200));
    }
    let connects = hammer.connects();
    hammer.stop();
    eprintln!(
        "threads {before} before, {peak} at most under {connects} hostile connections; \
         slowest scrape {slowest:?}"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a scrape took {slowest:?}"
    );
    assert!(peak <= before + 1, "threads grew from {before} to {peak}");
}
