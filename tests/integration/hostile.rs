//! Hostile peers at scale: an address flood of a million never-reachable addresses
//! spread over hundreds of peers must not push real nodes out, break the table's cap,
//! or grow the seeder's memory without bound.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::sim::{Behaviour, SimConfig, SimNetwork};

use crate::util::{DNS_FLAGS, Seeder, arg, crawl_args, heavy};

/// Peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn addr_flood_of_a_million_keeps_the_cap_real_nodes_and_memory() {
    let _serial = heavy();
    const GOOD: usize = 60;
    const FLOODERS: usize = 400;
    const CAP: u64 = 50_000;
    let mut behaviours = vec![Behaviour::Good; GOOD];
    behaviours.extend(std::iter::repeat_n(Behaviour::AddrFlood, FLOODERS));
    let mut config = SimConfig::new(Magic::from(Network::Regtest), 18444, &behaviours);
    // 3000 flood entries each; a probe keeps 2500: 400 x 2500 = 1,000,000 addresses.
    config.flood_messages = 3;
    let sim = SimNetwork::start(config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flood.db");
    let seed = sim.seed().to_string();
    let cap = CAP.to_string();
    let args = crawl_args(
        arg(&db),
        &seed,
        &["--threads", "64", "--max-addresses", &cap],
    );
    let mut seeder = Seeder::start(&args, "info");
    let real: Vec<String> = sim.nodes().iter().map(|n| n.addr.to_string()).collect();

    let start = Instant::now();
    let mut max_rows = 0;
    loop {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let rows: rusqlite::Result<(u64, u64)> = conn.query_row(
            "SELECT count(*), count(*) FILTER (WHERE tries > 0 AND address IN \
             (SELECT value FROM json_each(?1))) FROM peers",
            [serde_json::to_string(&real).unwrap()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        );
        if let Ok((count, real_probed)) = rows {
            max_rows = max_rows.max(count);
            assert!(count <= CAP, "{count} rows over the cap of {CAP}");
            if real_probed as usize == real.len() {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "the real nodes were not all probed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every real node, flooder or good, was probed and is still there: the flood went
    // into never-reached rows, which are the ones evicted. Nearly all are good (on a
    // loaded machine a probe may time out, and a failed first probe makes a peer not good).
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: HashMap<String, bool> = conn
        .prepare("SELECT address, good FROM peers")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for address in &real {
        assert!(rows.contains_key(address), "{address} was pushed out");
    }
    let good = real.iter().filter(|a| rows[*a]).count();
    assert!(
        good * 100 >= real.len() * 95,
        "only {good} of {} real nodes good",
        real.len()
    );
    let peak = peak_rss_kib(seeder.pid());
    eprintln!(
        "addr flood: {FLOODERS} flooders x 2500 addresses, cap {CAP}: at most {max_rows} rows, \
         peak RSS {} MiB, {:.0} s",
        peak / 1024,
        start.elapsed().as_secs_f64()
    );
    assert!(peak < 512 * 1024, "peak RSS {peak} KiB");
    seeder.signal("TERM");
    assert!(seeder.wait_exit(Duration::from_secs(10)).0.success());
}

#[test]
fn hundred_thousand_malformed_packets_leave_the_server_answering() {
    use dnsseeder::testkit::dns_client::{client, exchange, query};
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;

    use crate::util::Rng;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dns.db");
    let mut args = vec![
        "run",
        "--db",
        arg(&db),
        "--network",
        "regtest",
        "--no-dns-seed",
        "--threads",
        "1",
    ];
    args.extend(DNS_FLAGS);
    let seeder = Seeder::start(&args, "info");
    let server = seeder.dns_addr();

    let valid = query(1, "x9.seed.example.com", RecordType::A, Some(1232));
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = Rng(0xbad_d05);
    for i in 0..100_000u32 {
        let mut packet = if i % 3 == 0 {
            (0..rng.below(700)).map(|_| rng.next() as u8).collect()
        } else {
            valid.clone()
        };
        if i % 3 != 0 {
            for _ in 0..=rng.below(4) {
                let at = rng.below(packet.len() as u64) as usize;
                match rng.below(3) {
                    0 => packet[at] ^= 1 << rng.below(8),
                    1 => packet.truncate(at.max(1)),
                    _ => packet.insert(at, rng.next() as u8),
                }
            }
        }
        // Fire and forget: the socket buffer may drop some, as a real flood would.
        let _ = sender.send_to(&packet, server);
        if i % 2000 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let socket = client("127.0.0.1:0");
    let answer = (0..20)
        .find_map(|_| {
            exchange(
                &socket,
                server,
                &query(2, "seed.example.com", RecordType::SOA, None),
            )
        })
        .expect("the server still answers");
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer.answers.len(), 1);
    assert!(seeder.log().iter().all(|l| !l.contains("panicked")));
}
