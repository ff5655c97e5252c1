//! Monitoring (issue 15) with a real Prometheus (Debian's `prometheus`, which `.ci/run`
//! installs; elsewhere the test skips and says so) scraping the real binary every second:
//! the target is up, the peers gauge is the database's count, the UDP query counter grows by
//! exactly the queries sent, REFUSED answers are counted, and the probes' rate is positive
//! while the seeder crawls.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::sim::{Behaviour, SimConfig, SimNetwork};
use dnsseeder::testkit::dns_client::{client, exchange, query};
use hickory_proto::rr::RecordType;

use crate::util::{
    DNS_FLAGS, Seeder, arg, crawl_args, free_port, heavy, promtool_check_metrics, wait_until_good,
};

/// A running Prometheus, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, or says why it cannot.
    fn start(dir: &Path, target: SocketAddr) -> Result<Prometheus, String> {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
                 - job_name: dnsseeder\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("prometheus does not start ({e}): apt-get install prometheus"))?;
        Ok(Prometheus { child, addr })
    }

    /// The value of the instant query `promql` (the first series), if it has one.
    fn value(&self, promql: &str) -> Option<f64> {
        let body = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        )?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `promql` has a value for which `ok` holds; fails the test after `limit`.
    fn wait_for(&self, promql: &str, limit: Duration, ok: impl Fn(f64) -> bool) -> f64 {
        let start = Instant::now();
        loop {
            if let Some(v) = self.value(promql).filter(|&v| ok(v)) {
                return v;
            }
            assert!(
                start.elapsed() < limit,
                "{promql} never held within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Percent-encoding of a PromQL query for a URL.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The body of `GET path` from `addr` (HTTP/1.0), if it answered 200.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
}

#[test]
fn a_real_prometheus_scrapes_the_seeder() {
    let _serial = heavy();
    let sim = SimNetwork::start(SimConfig::new(
        Magic::from(Network::Regtest),
        18444,
        &[Behaviour::Good; 600],
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let prometheus = match Prometheus::start(dir.path(), metrics) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: a_real_prometheus_scrapes_the_seeder: {why}");
            return;
        }
    };
    let seed = sim.seed().to_string();
    let listen = metrics.to_string();
    // The real clock: good peers are probed again only after 15 minutes, so once every node
    // answered the database stands still and the gauge can be compared with it.
    let mut extra = vec!["--threads", "8", "--metrics-listen", &listen];
    extra.extend(DNS_FLAGS);
    let seeder = Seeder::start(&crawl_args(arg(&db), &seed, &extra), "info");
    let up = prometheus.wait_for("up{job=\"dnsseeder\"}", Duration::from_secs(30), |v| {
        v == 1.0
    });
    assert_eq!(up, 1.0);
    // 600 nodes at 8 threads: the first pass takes tens of seconds.
    let rate = "sum(rate(dnsseeder_probes_total[5s]))";
    prometheus.wait_for(rate, Duration::from_secs(30), |v| v > 0.0);

    let nodes: Vec<String> = sim.nodes().iter().map(|n| n.addr.to_string()).collect();
    wait_until_good(&db, &nodes, 100, Duration::from_secs(120));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let good: f64 = conn
        .query_row("SELECT count(*) FROM peers WHERE good", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap() as f64;
    let gauge = "sum(dnsseeder_peers{status=\"good\"})";
    prometheus.wait_for(gauge, Duration::from_secs(20), |v| v == good);

    let counted = "dnsseeder_dns_queries_total{transport=\"udp\"}";
    let before = prometheus.wait_for(counted, Duration::from_secs(10), |_| true);
    let socket = client("127.0.0.1:0");
    let server = seeder.dns_addr();
    for id in 0..25u16 {
        let packet = query(id, "seed.example.com", RecordType::A, None);
        exchange(&socket, server, &packet).expect("an answer");
    }
    for id in 0..5u16 {
        let packet = query(100 + id, "example.org", RecordType::A, None);
        exchange(&socket, server, &packet).expect("a REFUSED answer");
    }
    prometheus.wait_for(counted, Duration::from_secs(10), |v| v == before + 30.0);
    let refused = "dnsseeder_dns_responses_total{rcode=\"refused\"}";
    prometheus.wait_for(refused, Duration::from_secs(10), |v| v >= 5.0);
    let page = http_get(metrics, "/metrics").expect("the seeder serves /metrics");
    promtool_check_metrics(&page);
}
