//! The seeder's product end to end: `dnsseeder run --host` crawls a simulated network on
//! 127.0.0.0/8 and answers real DNS packets over UDP and TCP from what it found.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::sim::{SimConfig, SimNetwork};
use dnsseeder::testkit::dns_client::{addresses, client, exchange, has_soa_authority, query, tcp};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::util::{DNS_FLAGS, Rng, Seeder, arg, crawl_args, heavy};

const ZONE: &str = "seed.example.com";

/// Good peers in the database: IP -> services.
fn good_peers(db: &Path) -> HashMap<IpAddr, u64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT address, services FROM peers WHERE good = 1")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
        .map(|row| {
            let (address, services) = row.unwrap();
            let sock: SocketAddr = address.parse().unwrap();
            (sock.ip(), services as u64)
        })
        .collect()
}

fn ask(server: SocketAddr, name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let socket = client("127.0.0.1:0");
    exchange(&socket, server, &query(0x5151, name, rtype, edns)).expect("the seeder answers")
}

/// Checks that every address answered is a good peer having all bits of `mask`.
fn assert_good_with(m: &Message, db: &Path, mask: u64) -> usize {
    let good = good_peers(db);
    let ips = addresses(m);
    for ip in &ips {
        let services = good
            .get(ip)
            .unwrap_or_else(|| panic!("{ip} is not a good peer"));
        assert_eq!(
            services & mask,
            mask,
            "{ip} has services {services:x}, not {mask:x}"
        );
    }
    ips.len()
}

/// A running seeder with DNS on a free loopback port, after a crawl found enough peers.
fn start_seeder(db: &Path, sim: &SimNetwork) -> (Seeder, SocketAddr) {
    let seed = sim.seed().to_string();
    let mut args = crawl_args(arg(db), &seed, &["--threads", "32"]);
    args.extend(DNS_FLAGS);
    let seeder = Seeder::start(&args, "info");
    let server = seeder.dns_addr();
    let start = Instant::now();
    // Enough good peers with bit 9 to fill a 30-record answer, and a cache refresh since.
    while good_peers(db).values().filter(|s| *s & 9 == 9).count() < 60 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the crawl found too few good peers"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(6));
    (seeder, server)
}

#[test]
fn seeder_serves_good_peers_filtered_by_service_bits() {
    let _serial = heavy();
    let sim =
        SimNetwork::start(SimConfig::mixed(320, Magic::from(Network::Regtest), 18444)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dns.db");
    let (_seeder, server) = start_seeder(&db, &sim);

    // The bare host uses --filter-service (NETWORK); x9 and x409 exactly their bits.
    for (name, mask) in [
        (ZONE.to_owned(), 1),
        (format!("x9.{ZONE}"), 9),
        (format!("x409.{ZONE}"), 0x409),
    ] {
        let m = ask(server, &name, RecordType::A, Some(1232));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.metadata.authoritative, "{name}");
        let n = assert_good_with(&m, &db, mask);
        assert!(n > 0, "{name}: no answers");
    }

    // EDNS size honoured: 30 records fit 1232 bytes; 512 bytes without EDNS cut them, with
    // TC; the same question over TCP gets all 30.
    let full = ask(server, &format!("x9.{ZONE}"), RecordType::A, Some(1232));
    assert_eq!(addresses(&full).len(), 30);
    assert!(!full.metadata.truncation);
    assert!(full.edns.is_some(), "OPT echoed");
    let cut = ask(server, &format!("x9.{ZONE}"), RecordType::A, None);
    assert!(cut.metadata.truncation);
    assert!(addresses(&cut).len() < 30 && !addresses(&cut).is_empty());
    let over_tcp = tcp(
        server,
        &query(7, &format!("x9.{ZONE}"), RecordType::A, None),
    );
    assert_eq!(addresses(&over_tcp).len(), 30);
    assert!(!over_tcp.metadata.truncation);
    assert_good_with(&over_tcp, &db, 9);

    // A mask nobody has: NOERROR with the SOA, no records.
    let none = ask(server, &format!("x100000.{ZONE}"), RecordType::A, None);
    assert_eq!(none.metadata.response_code, ResponseCode::NoError);
    assert!(none.answers.is_empty() && has_soa_authority(&none));

    // NS and SOA at the apex.
    let ns = ask(server, ZONE, RecordType::NS, None);
    assert!(
        matches!(&ns.answers[0].data, RData::NS(n) if n.0.to_ascii() == "ns.seed.example.com.")
    );
    let soa = ask(server, ZONE, RecordType::SOA, None);
    assert!(matches!(&soa.answers[0].data, RData::SOA(_)));

    // Outside the zone: REFUSED with QR set and the question echoed.
    let out = ask(server, "example.org", RecordType::A, None);
    assert_eq!(out.metadata.response_code, ResponseCode::Refused);
    assert_eq!(out.metadata.message_type, MessageType::Response);
    assert_eq!(out.queries.len(), 1);

    // Inside the zone, unknown: NXDOMAIN with the SOA.
    let nx = ask(server, &format!("www.{ZONE}"), RecordType::A, None);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(has_soa_authority(&nx));

    // 1000 random and mutated packets, then a valid query is still answered.
    let socket = client("127.0.0.1:0");
    socket
        .set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let valid = query(9, &format!("x9.{ZONE}"), RecordType::A, Some(1232));
    let mut rng = Rng(0x5eed);
    for i in 0..1000 {
        let mut packet = if i % 2 == 0 {
            valid.clone()
        } else {
            (0..rng.below(600)).map(|_| rng.next() as u8).collect()
        };
        for _ in 0..=rng.below(6) {
            if packet.is_empty() {
                break;
            }
            let at = rng.below(packet.len() as u64) as usize;
            match rng.below(3) {
                0 => packet[at] ^= 1 << rng.below(8),
                1 => packet.truncate(at),
                _ => packet.insert(at, rng.next() as u8),
            }
        }
        socket.send_to(&packet, server).unwrap();
        let mut buf = [0u8; 2048];
        let _ = socket.recv_from(&mut buf);
    }
    let after = ask(server, &format!("x9.{ZONE}"), RecordType::A, Some(1232));
    assert_eq!(addresses(&after).len(), 30);
}
