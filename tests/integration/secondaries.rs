//! The seeder as a hidden primary (SPEC §13), with real secondaries: Knot and NSD
//! transfer its zone and serve it with AA, follow each new serial by NOTIFY, a Knot
//! secondary signs it (validated by `delv`), strangers are refused, and `dnsseeder zone`
//! writes a master file that kzonecheck, named-checkzone and NSD accept.
//!
//! The crawl starts only after the secondaries hold the first, empty zone, so the test
//! sees the good set change and the serial grow; the fast clock of the test
//! (`--retry-scale 0.001`) keeps changing it, and each secondary must catch up with a
//! transfer taken from the primary, records and serial.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::addr::PeerAddr;
use dnsseeder::sim::{Behaviour, SimConfig, SimNetwork};
use dnsseeder::testkit::dns_client::addresses;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::dnsd::{
    Axfr, Secondary, axfr_with, delv_validated, dnskey_anchor, kdig_dnssec, kzonecheck,
    missing_tools, named_checkzone, query, soa_serial, wait_serial,
};
use crate::util::{Seeder, arg, crawl_args, free_port, heavy, run_ok};

const ZONE: &str = "seed.example.com";
/// The zone's names, as `run` and `zone` take them: two name servers.
const ZONE_FLAGS: [&str; 6] = [
    "--host",
    ZONE,
    "--ns",
    "ns1.example.net,ns2.example.net",
    "--mbox",
    "hostmaster.example.com",
];
const SEEDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 20);
const KNOT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 21);
const NSD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 22);
const SIGNER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 23);
const NSD_FILE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 24);
/// Outside `--axfr-allow`.
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 99);
/// How long a new serial may take to reach a secondary.
const NOTIFY_LIMIT: Duration = Duration::from_secs(10);
const GOOD_NODES: usize = 21;

fn at(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), free_port())
}

/// 21 good nodes, one of them on `[::1]` so the zone has AAAA too.
fn network() -> SimConfig {
    let mut config = SimConfig::new(
        Magic::from(Network::Regtest),
        18444,
        &[Behaviour::Good; GOOD_NODES],
    );
    // The default port: a good peer must be on it.
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 18444);
    config.nodes[1].addr = v6;
    config.nodes[1].public = PeerAddr::from_socket(v6);
    config
}

/// The address records of `name` in a transfer, sorted.
fn records_of(axfr: &Axfr, name: &str, rtype: RecordType) -> Vec<IpAddr> {
    let want = format!("{name}.");
    let mut ips: Vec<IpAddr> = (axfr.records.iter())
        .filter(|r| r.record_type() == rtype && r.name.to_ascii().eq_ignore_ascii_case(&want))
        .filter_map(|r| match r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

/// What `server` answers for `name` `rtype`, which must be authoritative, sorted. A name
/// without any record at the moment is not in the transferred zone: a secondary answers
/// NXDOMAIN for it, which counts as no records.
fn served(server: SocketAddr, name: &str, rtype: RecordType) -> Vec<IpAddr> {
    let m = query(server, name, rtype);
    assert!(
        m.metadata.authoritative,
        "{server}: no AA for {name} {rtype}"
    );
    let rcode = m.metadata.response_code;
    assert!(
        [ResponseCode::NoError, ResponseCode::NXDomain].contains(&rcode),
        "{server} {name}: {rcode}"
    );
    let mut ips = addresses(&m);
    ips.sort();
    ips
}

/// An AXFR from an allowed address and the serial of its SOA.
fn transfer(dns: SocketAddr) -> (u32, Axfr) {
    let axfr = axfr_with(IpAddr::V4(KNOT), dns, ZONE).unwrap();
    assert_eq!(axfr.rcode, ResponseCode::NoError);
    let serial = axfr.records.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    });
    (serial.expect("a transfer starts with the SOA"), axfr)
}

/// Transfers until the apex and x9 have IPv4 peers and the IPv6 one.
fn wait_zone(dns: SocketAddr) -> (u32, Axfr) {
    let start = Instant::now();
    loop {
        let (serial, axfr) = transfer(dns);
        let count = |name: &str, rtype| records_of(&axfr, name, rtype).len();
        let x9 = format!("x9.{ZONE}");
        let v4 = count(ZONE, RecordType::A).min(count(&x9, RecordType::A));
        let v6 = count(ZONE, RecordType::AAAA).min(count(&x9, RecordType::AAAA));
        if v4 >= 5 && v6 == 1 {
            return (serial, axfr);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "zone has {v4} A, {v6} AAAA"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits for the primary's next serial, then until `s` serves it with the same A and
/// AAAA records for the apex and x9 as a transfer of it (the crawl keeps changing the
/// good set, so a newer serial may overtake: then it tries again); returns the time from
/// the new serial at the primary to the same at `s`.
fn follows_the_primary(s: &Secondary, dns: SocketAddr) -> Duration {
    for _ in 0..10 {
        let changed = next_serial_at(dns);
        let (serial, axfr) = transfer(dns);
        if wait_serial(s.addr, ZONE, serial, NOTIFY_LIMIT) != serial {
            continue;
        }
        let took = changed.elapsed();
        let same = [ZONE.to_owned(), format!("x9.{ZONE}")].iter().all(|name| {
            [RecordType::A, RecordType::AAAA]
                .into_iter()
                .all(|t| served(s.addr, name, t) == records_of(&axfr, name, t))
        });
        if same && soa_serial(s.addr, ZONE) == Some(serial) {
            return took;
        }
    }
    panic!("{:?} never served the primary's zone: {}", s.kind, s.log());
}

/// When the primary's serial next changed (now, if it has not within 10 s).
fn next_serial_at(dns: SocketAddr) -> Instant {
    let before = soa_serial(dns, ZONE);
    let start = Instant::now();
    while soa_serial(dns, ZONE) == before && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    Instant::now()
}

#[test]
fn knot_and_nsd_carry_the_seeders_zone() {
    let tools = [
        "knotd",
        "knotc",
        "kdig",
        "kzonecheck",
        "nsd",
        "named-checkzone",
        "delv",
    ];
    if let Some(why) = missing_tools(&tools) {
        eprintln!("skipped: knot_and_nsd_carry_the_seeders_zone: {why}");
        return;
    }
    let _serial = heavy();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("peers.db");
    let config = network();
    let seed = config.nodes[0].addr.to_string();
    let (dns, knot_at, nsd_at, signer_at) = (at(SEEDER), at(KNOT), at(NSD), at(SIGNER));
    let (dns_s, knot_s, nsd_s, signer_s) = (
        dns.to_string(),
        knot_at.to_string(),
        nsd_at.to_string(),
        signer_at.to_string(),
    );
    let extra = [
        "--threads",
        "16",
        "--retry-scale",
        "0.001",
        "--dns-listen",
        &dns_s,
        "--dns-rate-limit",
        "0",
        "--axfr-allow",
        "127.0.0.21,127.0.0.22,127.0.0.23",
        "--notify",
        &knot_s,
        "--notify",
        &nsd_s,
        "--notify",
        &signer_s,
        "--zone-refresh",
        "1",
    ];
    let mut args = crawl_args(arg(&db), &seed, &extra);
    args.extend(ZONE_FLAGS);
    let seeder = Seeder::start(&args, "info");
    seeder.wait_for_log("zone: first serial", Duration::from_secs(20));
    // NOTIFY leaves from the address the kernel picks towards 127.0.0.x: 127.0.0.1.
    let from = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let knot = Secondary::knot(ZONE, dns, knot_at, from, false);
    let nsd = Secondary::nsd(ZONE, dns, nsd_at, from);
    let signer = Secondary::knot(ZONE, dns, signer_at, from, true);
    let first = soa_serial(dns, ZONE).expect("the seeder serves its SOA");
    for s in [&knot, &nsd] {
        assert_eq!(
            wait_serial(s.addr, ZONE, first, NOTIFY_LIMIT),
            first,
            "{}",
            s.log()
        );
        assert!(
            served(s.addr, ZONE, RecordType::A).is_empty(),
            "no good peer yet"
        );
    }

    let _sim = SimNetwork::start(config).unwrap();
    let (serial, _) = wait_zone(dns);
    assert!(
        serial > first,
        "the serial grew with the good set: {first} -> {serial}"
    );
    for s in [&knot, &nsd] {
        let took = follows_the_primary(s, dns);
        println!(
            "{:?} served a new serial {took:?} after the primary",
            s.kind
        );
    }
    assert!(
        !served(dns, ZONE, RecordType::A).is_empty(),
        "the seeder still answers"
    );
    let refused = axfr_with(IpAddr::V4(STRANGER), dns, ZONE).unwrap();
    assert_eq!(refused.rcode, ResponseCode::Refused, "{refused:?}");
    assert!(refused.records.is_empty());

    signed_by_knot(&signer, dir.path());
    master_file(&db, dir.path());
}

/// The signing Knot serves RRSIGs, and delv validates the bare host's A records with the
/// zone's own key as trust anchor.
fn signed_by_knot(signer: &Secondary, dir: &std::path::Path) {
    let start = Instant::now();
    while served(signer.addr, ZONE, RecordType::A).is_empty() {
        assert!(start.elapsed() < NOTIFY_LIMIT, "{}", signer.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let dig = kdig_dnssec(signer.addr, ZONE, RecordType::A);
    assert!(dig.contains("RRSIG"), "{dig}");
    let anchor = dir.join("anchor.conf");
    std::fs::write(&anchor, dnskey_anchor(signer.addr, ZONE)).unwrap();
    let delv = delv_validated(signer.addr, ZONE, ZONE, RecordType::A, &anchor);
    assert!(delv.contains("; fully validated"), "{delv}");
}

/// `dnsseeder zone` passes kzonecheck and named-checkzone, and NSD serves it.
fn master_file(db: &std::path::Path, dir: &std::path::Path) {
    let mut args = vec!["zone", "--db", arg(db), "--serial", "2026120601"];
    args.extend(ZONE_FLAGS);
    let text = run_ok(&args);
    let path = dir.join("seed.zone");
    std::fs::write(&path, &text).unwrap();
    kzonecheck(&path, ZONE).unwrap();
    named_checkzone(ZONE, &path).unwrap();
    let nsd = Secondary::nsd_from_file(ZONE, &path, at(NSD_FILE));
    assert_eq!(
        soa_serial(nsd.addr, ZONE),
        Some(2_026_120_601),
        "{}",
        nsd.log()
    );
    let in_file = text.lines().filter(|l| l.starts_with("@ IN A ")).count();
    assert_eq!(served(nsd.addr, ZONE, RecordType::A).len(), in_file);
    assert!(in_file > 0);
}
