//! ASN diversity (issue 14): the real binary with `--asmap`, on a simulated network whose good
//! nodes sit in 60 autonomous systems (an asmap file built by the test kit's encoder), one
//! of which holds 30% of them. Answers take one address per ASN while unused ones remain,
//! and the big ASN gets less than twice its fair share of the records served.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bitcoin::Network;
use bitcoin::p2p::{Magic, ServiceFlags};
use dnsseeder::sim::{Behaviour, SimConfig, SimNetwork};
use dnsseeder::testkit::asmap::encode;
use dnsseeder::testkit::dns_client::{addresses, client, exchange, query};
use hickory_proto::rr::RecordType;

use crate::util::{DNS_FLAGS, Seeder, arg, crawl_args, heavy, run, run_ok, wait_until_good};

/// Autonomous systems of the good nodes, and the one that holds 30% of them.
const ASNS: u32 = 60;
const BIG_ASN: u32 = 64_500;

/// Each node's ASN: the first 30% of the nodes in the big one, the others in turn over
/// the 59 others.
fn asn_plan(nodes: &[SocketAddr]) -> HashMap<IpAddr, u32> {
    let big = nodes.len() * 3 / 10;
    let plan = nodes.iter().enumerate().map(|(i, node)| {
        let asn = if i < big {
            BIG_ASN
        } else {
            BIG_ASN + 1 + (i % (ASNS as usize - 1)) as u32
        };
        (node.ip(), asn)
    });
    plan.collect()
}

#[test]
fn answers_take_one_address_per_asn_and_the_big_asn_its_share() {
    let _serial = heavy();
    let sim = SimNetwork::start(SimConfig::new(
        Magic::from(Network::Regtest),
        18444,
        &[Behaviour::Good; 600],
    ))
    .unwrap();
    let nodes: Vec<SocketAddr> = sim.nodes().iter().map(|n| n.addr).collect();
    let plan = asn_plan(&nodes);
    let prefixes: Vec<(IpAddr, u8, u32)> = plan.iter().map(|(&ip, &asn)| (ip, 32, asn)).collect();
    let dir = tempfile::tempdir().unwrap();
    let asmap = dir.path().join("asmap.dat");
    std::fs::write(&asmap, encode(&prefixes)).unwrap();
    let db = dir.path().join("asn.db");
    let seed = sim.seed().to_string();
    let mut extra = vec![
        "--threads",
        "32",
        "--retry-scale",
        "0.001",
        "--asmap",
        arg(&asmap),
    ];
    extra.extend(DNS_FLAGS);
    let mut seeder = Seeder::start(&crawl_args(arg(&db), &seed, &extra), "info");
    let text: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    wait_until_good(&db, &text, 95, Duration::from_secs(90));
    // The bare name serves NETWORK peers: their ASNs are the ones an answer can use.
    let eligible: HashSet<u32> = (sim.nodes().iter())
        .filter(|n| n.services.has(ServiceFlags::NETWORK))
        .map(|n| plan[&n.addr.ip()])
        .collect();
    std::thread::sleep(Duration::from_secs(6)); // the DNS cache holds the good set
    let served = answers(&seeder, 200);
    seeder.signal("TERM");
    assert!(seeder.wait_exit(Duration::from_secs(10)).0.success());

    let mut records = 0usize;
    let mut big = 0usize;
    for answer in &served {
        let asns: Vec<u32> = answer.iter().map(|ip| plan[ip]).collect();
        let distinct: HashSet<u32> = asns.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            asns.len().min(eligible.len()),
            "an ASN repeats while unused ones remain: {asns:?}"
        );
        records += asns.len();
        big += asns.iter().filter(|&&a| a == BIG_ASN).count();
    }
    let share = big as f64 / records as f64;
    eprintln!(
        "{} answers, {records} records, {} ASNs eligible; the big ASN (30% of the nodes) \
         had {big} records = {:.2}% (fair share {:.2}%)",
        served.len(),
        eligible.len(),
        100.0 * share,
        100.0 / ASNS as f64
    );
    assert!(share < 2.0 / ASNS as f64, "the big ASN's share {share}");
    peers_lists_exactly_one_asn(&db, &asmap, &plan);
}

/// `count` answers to A queries for the bare name.
fn answers(seeder: &Seeder, count: u16) -> Vec<Vec<IpAddr>> {
    let server = seeder.dns_addr();
    let socket = client("127.0.0.1:0");
    (0..count)
        .map(|id| {
            let packet = query(id, "seed.example.com", RecordType::A, Some(4096));
            addresses(&exchange(&socket, server, &packet).expect("an answer"))
        })
        .collect()
}

/// `peers --asmap F --asn N` lists exactly the rows of ASN N; `--asn` without `--asmap`
/// is refused; a truncated asmap file makes `run` exit 1 with one line.
fn peers_lists_exactly_one_asn(
    db: &std::path::Path,
    asmap: &std::path::Path,
    plan: &HashMap<IpAddr, u32>,
) {
    let asn = (BIG_ASN + 7).to_string();
    let args = [
        "peers",
        "--db",
        arg(db),
        "--asmap",
        arg(asmap),
        "--asn",
        &asn,
        "--format",
        "json",
    ];
    let rows: Vec<serde_json::Value> = serde_json::from_str(&run_ok(&args)).unwrap();
    let listed: HashSet<IpAddr> = (rows.iter())
        .map(|r| {
            r["address"]
                .as_str()
                .unwrap()
                .parse::<SocketAddr>()
                .unwrap()
                .ip()
        })
        .collect();
    let expected: HashSet<IpAddr> = (plan.iter())
        .filter(|(_, a)| **a == BIG_ASN + 7)
        .map(|(ip, _)| *ip)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(listed, expected);
    assert!(rows.iter().all(|r| r["asn"] == BIG_ASN + 7));
    let stats = run_ok(&["stats", "--db", arg(db), "--asmap", arg(asmap)]);
    let top = stats
        .lines()
        .skip_while(|l| !l.starts_with("top ASNs"))
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    assert!(
        top.trim_start().starts_with(&format!("AS{BIG_ASN} ")),
        "{stats}"
    );
    let share: f64 = top
        .rsplit_once('(')
        .unwrap()
        .1
        .trim_end_matches("%)")
        .parse()
        .unwrap();
    assert!(
        (25.0..35.0).contains(&share),
        "the big ASN holds 30% of the good peers: {top}"
    );
    let refused = run(&["peers", "--db", arg(db), "--asn", "1"]);
    assert_eq!(refused.status.code(), Some(2), "--asn needs --asmap");
    let bytes = std::fs::read(asmap).unwrap();
    let truncated = asmap.with_extension("truncated");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&[
        "run",
        "--db",
        arg(db),
        "--no-dns-seed",
        "--asmap",
        arg(&truncated),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("asmap"), "{stderr}");
}
