//! Zone transfers from the real binary under odd and heavy use (SPEC §13): strangers,
//! UDP, odd classes, several questions and cut-off frames get a clear DNS error or a
//! closed connection, and hundreds of transfers held open at once from allowed sources
//! cost the seeder bounded memory while it keeps answering UDP.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::sim::{SimConfig, SimNetwork};
use dnsseeder::testkit::dns_client::{client, exchange, framed, query, tcp_connect_from, tcp_read};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use crate::util::{DNS_FLAGS, Seeder, arg, crawl_args, heavy};

const ZONE: &str = "seed.example.com.";

/// An AXFR (or other `qtype`) request for the zone in `class`.
fn transfer_request(id: u16, qtype: RecordType, class: DNSClass) -> Vec<u8> {
    let mut packet = query(id, ZONE, qtype, None);
    let at = packet.len() - 2;
    packet[at..].copy_from_slice(&u16::from(class).to_be_bytes());
    packet
}

/// Reads the messages of a transfer until its closing SOA; the RCODE of the first
/// message when it is an error.
fn read_transfer(stream: &mut TcpStream) -> Result<Vec<Record>, ResponseCode> {
    let mut records: Vec<Record> = Vec::new();
    loop {
        let m = tcp_read(stream);
        if m.metadata.response_code != ResponseCode::NoError {
            return Err(m.metadata.response_code);
        }
        records.extend(m.answers.iter().cloned());
        let soas = records
            .iter()
            .filter(|r| matches!(r.data, RData::SOA(_)))
            .count();
        if soas == 2 {
            return Ok(records);
        }
    }
}

/// One AXFR from `source`.
fn axfr_from(source: IpAddr, dns: SocketAddr) -> Result<Vec<Record>, ResponseCode> {
    let mut stream = tcp_connect_from(source, dns).unwrap();
    stream
        .write_all(&framed(&transfer_request(
            1,
            RecordType::AXFR,
            DNSClass::IN,
        )))
        .unwrap();
    read_transfer(&mut stream)
}

fn address_records(records: &[Record]) -> usize {
    records
        .iter()
        .filter(|r| matches!(r.data, RData::A(_) | RData::AAAA(_)))
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn transfers_refuse_strangers_and_odd_requests_and_stay_bounded() {
    let _serial = heavy();
    let dir = tempfile::tempdir().unwrap();
    let sim =
        SimNetwork::start(SimConfig::mixed(300, Magic::from(Network::Regtest), 18444)).unwrap();
    let db = dir.path().join("peers.db");
    let seed = sim.seed().to_string();
    let extra = [
        "--threads",
        "16",
        "--retry-scale",
        "0.001",
        "--axfr-allow",
        "127.0.0.0/26",
        "--zone-refresh",
        "1",
        "--tcp-idle-timeout",
        "2",
    ];
    let mut args = crawl_args(arg(&db), &seed, &extra);
    args.extend(DNS_FLAGS);
    let seeder = Seeder::start(&args, "info");
    let dns = seeder.dns_addr();
    let allowed: IpAddr = "127.0.0.1".parse().unwrap();

    let start = Instant::now();
    let records = loop {
        let records = axfr_from(allowed, dns).expect("127.0.0.1 may transfer");
        if address_records(&records) >= 100 {
            break records;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no full zone: {records:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(matches!(records[0].data, RData::SOA(_)));

    strangers_and_udp_are_refused(dns);
    odd_requests_get_errors(dns, allowed);
    a_cut_off_frame_is_closed(dns, allowed);
    held_transfers_cost_bounded_memory(&seeder, dns);
    assert!(axfr_from(allowed, dns).is_ok(), "still transferring");
}

/// A source outside `--axfr-allow` and any UDP AXFR get REFUSED.
fn strangers_and_udp_are_refused(dns: SocketAddr) {
    let stranger: IpAddr = "127.0.0.200".parse().unwrap();
    assert_eq!(axfr_from(stranger, dns).unwrap_err(), ResponseCode::Refused);
    let socket = client("127.0.0.1:0");
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        let reply = exchange(&socket, dns, &transfer_request(2, qtype, DNSClass::IN)).unwrap();
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{qtype} over UDP"
        );
    }
}

/// Odd classes are REFUSED, two questions FORMERR, an IXFR gets the whole zone; all on
/// one connection from an allowed source, which stays usable.
fn odd_requests_get_errors(dns: SocketAddr, allowed: IpAddr) {
    let mut stream = tcp_connect_from(allowed, dns).unwrap();
    for class in [DNSClass::CH, DNSClass::HS, DNSClass::ANY, DNSClass::NONE] {
        stream
            .write_all(&framed(&transfer_request(3, RecordType::AXFR, class)))
            .unwrap();
        assert_eq!(
            read_transfer(&mut stream).unwrap_err(),
            ResponseCode::Refused,
            "{class}"
        );
    }
    let mut two = transfer_request(4, RecordType::AXFR, DNSClass::IN);
    two[5] = 2;
    stream.write_all(&framed(&two)).unwrap();
    assert_eq!(
        read_transfer(&mut stream).unwrap_err(),
        ResponseCode::FormErr
    );
    let mut x9 = query(5, "x9.seed.example.com.", RecordType::AXFR, None);
    stream.write_all(&framed(&x9)).unwrap();
    assert_eq!(
        read_transfer(&mut stream).unwrap_err(),
        ResponseCode::Refused,
        "not the apex"
    );
    x9 = transfer_request(6, RecordType::IXFR, DNSClass::IN);
    stream.write_all(&framed(&x9)).unwrap();
    assert!(
        read_transfer(&mut stream).is_ok(),
        "IXFR answered with the whole zone"
    );
}

/// A frame announcing more bytes than come: no answer, and the connection is closed once
/// idle (`--tcp-idle-timeout 2`).
fn a_cut_off_frame_is_closed(dns: SocketAddr, allowed: IpAddr) {
    let mut stream = tcp_connect_from(allowed, dns).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = transfer_request(7, RecordType::AXFR, DNSClass::IN);
    let mut cut = framed(&request);
    cut[1] += 40;
    stream.write_all(&cut).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "no answer to a partial request");
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "closed at the idle timeout"
    );
}

/// 800 transfers requested from 20 allowed sources at once and not read: the per-source
/// cap (32) closes the rest, each admitted one holds one zone; the seeder's memory grows
/// by at most 800 zones' worth plus 16 MiB, and UDP answers meanwhile.
fn held_transfers_cost_bounded_memory(seeder: &Seeder, dns: SocketAddr) {
    let zone_bytes = {
        let m = axfr_messages_bytes(dns);
        m.max(1)
    };
    let before = rss_kib(seeder.pid());
    let mut held = Vec::new();
    for i in 0..800u32 {
        let source: IpAddr = format!("127.0.0.{}", 2 + i % 20).parse().unwrap();
        let Ok(mut stream) = tcp_connect_from(source, dns) else {
            continue;
        };
        let request = framed(&transfer_request(8, RecordType::AXFR, DNSClass::IN));
        if stream.write_all(&request).is_ok() {
            held.push(stream);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let socket = client("127.0.0.1:0");
    let reply = exchange(&socket, dns, &query(9, ZONE, RecordType::A, None)).unwrap();
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "UDP still answers"
    );
    let grown = rss_kib(seeder.pid()).saturating_sub(before);
    let bound = (800 * zone_bytes as u64) / 1024 + 16 * 1024;
    println!(
        "held 800 transfers ({} written): RSS +{grown} KiB, bound {bound} KiB",
        held.len()
    );
    assert!(grown < bound, "RSS grew {grown} KiB");
    let served = held
        .iter_mut()
        .map(read_first_message)
        .filter(|&ok| ok)
        .count();
    assert_eq!(
        served,
        20 * 32,
        "32 per source (the per-source cap) were served"
    );
}

/// The bytes of one whole transfer, framing included.
fn axfr_messages_bytes(dns: SocketAddr) -> usize {
    let mut stream = tcp_connect_from("127.0.0.1".parse().unwrap(), dns).unwrap();
    stream
        .write_all(&framed(&transfer_request(
            10,
            RecordType::AXFR,
            DNSClass::IN,
        )))
        .unwrap();
    let records = read_transfer(&mut stream).unwrap();
    records
        .iter()
        .map(|r| 12 + r.data.to_string().len())
        .sum::<usize>()
        + 512
}

/// Whether a transfer's first message can be read from `stream` (a connection the
/// server closed at once reads nothing).
fn read_first_message(stream: &mut TcpStream) -> bool {
    let mut len = [0u8; 2];
    if stream.read_exact(&mut len).is_err() {
        return false;
    }
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).is_ok() && Message::from_vec(&buf).is_ok()
}
