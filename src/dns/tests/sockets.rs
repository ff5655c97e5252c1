//! The DNS server over real sockets on 127.0.0.1 (and ::1 when available), queried with
//! packets built and decoded by hickory-proto (`testkit::dns_client`). Only the public
//! API of the `dns` module is used, as a program embedding the server would.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::{peers as test_peers, services_of};
use crate::dns::{BindError, DnsConfig, DnsHandle, DnsServer, PeerSource};
use crate::testkit::dns_client::{
    TIMEOUT, addresses, client, exchange, framed, has_soa_authority, query, tcp, tcp_connect,
    tcp_read,
};

/// Peers with their services, shared so a test can change them while the server runs.
#[derive(Clone, Default)]
pub(super) struct VecSource(pub(super) Arc<Mutex<Vec<(IpAddr, u64)>>>);

impl PeerSource for VecSource {
    fn good_peers(&mut self, mask: u64) -> anyhow::Result<Vec<IpAddr>> {
        let peers = self.0.lock().unwrap();
        Ok(peers
            .iter()
            .filter(|(_, s)| s & mask == mask)
            .map(|(ip, _)| *ip)
            .collect())
    }
}

/// The responder tests' zone, served on a free port of 127.0.0.1 without rate limiting
/// (the tests query from one address).
pub(super) fn config() -> DnsConfig {
    let mut c = super::config();
    c.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.rate_limit = None;
    c
}

pub(super) fn start_with(config: DnsConfig, peers: Vec<(IpAddr, u64)>) -> (DnsHandle, SocketAddr) {
    let server = DnsServer::bind(config, VecSource(Arc::new(Mutex::new(peers)))).unwrap();
    let handle = server.spawn().unwrap();
    let addr = handle.local_addrs()[0];
    (handle, addr)
}

/// The server with the responder tests' peers (see `super::peers`).
fn start() -> (DnsHandle, SocketAddr) {
    start_with(config(), test_peers())
}

fn udp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let socket = client("127.0.0.1:0");
    exchange(&socket, server, &query(0x4242, name, rtype, None)).expect("an answer")
}

/// Waits until `stream` is closed by the server; returns how long that took.
pub(super) fn time_to_close(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(_) => {}
        }
        assert!(
            start.elapsed() < limit,
            "connection still open after {limit:?}"
        );
    }
}

#[test]
fn bare_host_a_returns_peers_with_the_default_mask() {
    let (_server, addr) = start();
    let m = udp(addr, "seed.example.com.", RecordType::A);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.id, 0x4242);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    let ips = addresses(&m);
    assert!(ips.len() >= 25, "{}", ips.len());
    assert!(
        ips.iter()
            .all(|ip| ip.is_ipv4() && services_of(*ip) & 1 == 1)
    );
}

#[test]
fn x9_and_x409_use_exactly_their_mask() {
    let (_server, addr) = start();
    let m = udp(addr, "x9.seed.example.com.", RecordType::A);
    let ips = addresses(&m);
    assert!(!ips.is_empty());
    assert!(ips.iter().all(|ip| services_of(*ip) == 9));
    let m = udp(addr, "x408.seed.example.com.", RecordType::A);
    assert!(addresses(&m).iter().all(|ip| services_of(*ip) == 0x408));
    // Nobody has NETWORK|WITNESS|LIMITED: NOERROR with the SOA.
    let m = udp(addr, "x409.seed.example.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(has_soa_authority(&m));
}

#[test]
fn mask_nobody_has_is_noerror_with_soa() {
    let (_server, addr) = start();
    let m = udp(addr, "x1000000.seed.example.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert!(has_soa_authority(&m));
}

#[test]
fn aaaa_answers_ipv6_peers() {
    let (_server, addr) = start();
    let m = udp(addr, "x9.seed.example.com.", RecordType::AAAA);
    let ips = addresses(&m);
    assert!(!ips.is_empty());
    assert!(ips.iter().all(IpAddr::is_ipv6));
}

#[test]
fn ns_and_soa_at_the_apex() {
    let (_server, addr) = start();
    let m = udp(addr, "seed.example.com.", RecordType::NS);
    assert_eq!(m.answers.len(), 1);
    assert!(matches!(&m.answers[0].data, RData::NS(ns) if ns.0.to_ascii() == "ns.example.com."));
    let m = udp(addr, "seed.example.com.", RecordType::SOA);
    assert!(
        matches!(&m.answers[0].data, RData::SOA(soa) if soa.rname.to_ascii() == "hostmaster.example.com.")
    );
    // MX at the apex: known name, no data.
    let m = udp(addr, "seed.example.com.", RecordType::MX);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && has_soa_authority(&m));
}

#[test]
fn names_outside_the_zone_are_refused() {
    let (_server, addr) = start();
    let m = udp(addr, "www.example.org.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.queries[0].name().to_ascii(), "www.example.org.");
}

#[test]
fn unknown_names_inside_the_zone_are_nxdomain() {
    let (_server, addr) = start();
    for label in ["x09", "x0", "xzz", "www"] {
        let m = udp(addr, &format!("{label}.seed.example.com."), RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{label}");
        assert!(m.metadata.authoritative);
        assert!(has_soa_authority(&m), "{label}");
    }
}

#[test]
fn letter_case_is_echoed() {
    let (_server, addr) = start();
    let m = udp(addr, "X9.sEeD.ExAmPlE.cOm.", RecordType::A);
    assert_eq!(m.queries[0].name().to_ascii(), "X9.sEeD.ExAmPlE.cOm.");
    assert!(!m.answers.is_empty());
}

#[test]
fn edns_size_is_honoured_and_opt_echoed() {
    let (_server, addr) = start();
    let socket = client("127.0.0.1:0");
    let m = exchange(
        &socket,
        addr,
        &query(1, "x9.seed.example.com.", RecordType::AAAA, Some(1232)),
    )
    .unwrap();
    assert_eq!(m.edns.as_ref().expect("OPT").max_payload(), 1232);
    assert_eq!(addresses(&m).len(), 30);
    assert!(!m.metadata.truncation);
}

#[test]
fn udp_is_cut_at_512_with_tc_and_tcp_returns_30() {
    let (_server, addr) = start();
    let packet = query(7, "x9.seed.example.com.", RecordType::AAAA, None);
    let socket = client("127.0.0.1:0");
    let m = exchange(&socket, addr, &packet).unwrap();
    assert!(m.metadata.truncation);
    assert!(addresses(&m).len() < 30);
    assert!(m.to_vec().unwrap().len() <= 512);
    let m = tcp(addr, &packet);
    assert!(!m.metadata.truncation);
    assert_eq!(addresses(&m).len(), 30);
    assert_eq!(m.metadata.id, 7);
}

#[test]
fn pipelined_tcp_queries_are_answered_in_order() {
    let (_server, addr) = start();
    let mut stream = tcp_connect(addr);
    let names = [
        "seed.example.com.",
        "x9.seed.example.com.",
        "nope.seed.example.com.",
        "example.net.",
        "x8.seed.example.com.",
    ];
    let mut batch = Vec::new();
    for (i, name) in names.iter().enumerate() {
        batch.extend(framed(&query(100 + i as u16, name, RecordType::A, None)));
    }
    // Split the batch mid-message to exercise reassembly.
    stream.write_all(&batch[..batch.len() / 2 + 3]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    stream.write_all(&batch[batch.len() / 2 + 3..]).unwrap();
    let rcodes: Vec<_> = (0..names.len())
        .map(|i| {
            let m = tcp_read(&mut stream);
            assert_eq!(m.metadata.id, 100 + i as u16);
            m.metadata.response_code
        })
        .collect();
    use ResponseCode::*;
    assert_eq!(rcodes, [NoError, NoError, NXDomain, Refused, NoError]);
    // The connection stays usable.
    stream
        .write_all(&framed(&query(
            9,
            "seed.example.com.",
            RecordType::NS,
            None,
        )))
        .unwrap();
    assert_eq!(tcp_read(&mut stream).answers.len(), 1);
}

#[test]
fn tcp_idle_timeout_closes_stalled_connections() {
    let mut c = config();
    c.tcp_idle_timeout = Duration::from_millis(300);
    let (_server, addr) = start_with(c, test_peers());
    // Silent from the start.
    let mut idle = tcp_connect(addr);
    // Sends a length prefix and part of a message, then stalls.
    let mut stalled = tcp_connect(addr);
    let packet = framed(&query(1, "seed.example.com.", RecordType::A, None));
    stalled.write_all(&packet[..5]).unwrap();
    // Trickles one byte every 50 ms: partial data is not activity.
    let mut trickle = tcp_connect(addr);
    let mut writer = trickle.try_clone().unwrap();
    let slow = packet.clone();
    std::thread::spawn(move || {
        for byte in slow.iter().cycle() {
            if writer.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let waited = time_to_close(&mut idle, Duration::from_secs(3));
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    time_to_close(&mut stalled, Duration::from_secs(3));
    time_to_close(&mut trickle, Duration::from_secs(3));
    // An active connection is kept past the timeout.
    let mut active = tcp_connect(addr);
    for _ in 0..4 {
        active.write_all(&packet).unwrap();
        assert!(!tcp_read(&mut active).answers.is_empty());
        std::thread::sleep(Duration::from_millis(150));
    }
}

#[test]
fn connections_over_the_cap_are_closed_at_once() {
    let mut c = config();
    c.max_tcp_connections = 2;
    let (server, addr) = start_with(c, test_peers());
    let packet = framed(&query(1, "seed.example.com.", RecordType::A, None));
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tcp_connect(addr);
        s.write_all(&packet).unwrap();
        tcp_read(&mut s);
        held.push(s);
    }
    let mut over = tcp_connect(addr);
    let waited = time_to_close(&mut over, Duration::from_secs(1));
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    let stats = server.counters().snapshot();
    assert_eq!(stats.tcp_rejected, 1);
    assert_eq!(stats.tcp_connections, 2);
    // Once one closes, a new connection is served again.
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(300));
    assert!(!tcp(addr, &packet[2..]).answers.is_empty());
}

#[test]
fn rate_limit_truncates_then_drops_while_others_are_answered() {
    let mut c = config();
    c.rate_limit = Some((5, 10));
    let (server, addr) = start_with(c, test_peers());
    let flood = client("127.0.0.1:0");
    flood
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for i in 0..40u16 {
        flood
            .send_to(&query(i, "seed.example.com.", RecordType::A, None), addr)
            .unwrap();
    }
    let (mut full, mut truncated) = (0, 0);
    let mut buf = [0u8; 1024];
    while let Ok((n, _)) = flood.recv_from(&mut buf) {
        let m = Message::from_vec(&buf[..n]).unwrap();
        if m.metadata.truncation && m.answers.is_empty() {
            truncated += 1;
        } else {
            full += 1;
        }
    }
    // A few tokens may refill while the burst is sent (5 per second).
    assert!((10..=15).contains(&full), "answered {full}");
    assert!((10..=15).contains(&truncated), "truncated {truncated}");
    // Another source is still answered.
    let other = client("127.0.0.2:0");
    let m = exchange(
        &other,
        addr,
        &query(1, "seed.example.com.", RecordType::A, None),
    )
    .unwrap();
    assert!(!m.answers.is_empty());
    // TCP is not rate limited per query.
    let packet = query(2, "seed.example.com.", RecordType::A, None);
    assert!(!tcp(addr, &packet).answers.is_empty());
    let stats = server.counters().snapshot();
    assert_eq!(stats.rate_limited, truncated);
    assert!(stats.dropped >= 40 - full - truncated);
}

#[test]
fn garbage_does_not_stop_the_server() {
    let (server, addr) = start();
    let socket = client("127.0.0.1:0");
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let valid = query(3, "x9.seed.example.com.", RecordType::A, Some(1232));
    for i in 0..1000 {
        let packet: Vec<u8> = if i % 2 == 0 {
            (0..rng.random_range(0..100))
                .map(|_| rng.random())
                .collect()
        } else {
            let mut p = valid.clone();
            if rng.random() {
                p.truncate(rng.random_range(0..p.len()));
            }
            for _ in 0..rng.random_range(1..4) {
                if !p.is_empty() {
                    let at = rng.random_range(0..p.len());
                    p[at] ^= rng.random_range(1..=255u8);
                }
            }
            p
        };
        socket.send_to(&packet, addr).unwrap();
    }
    // Drain whatever came back, then a valid query is answered.
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while socket.recv_from(&mut buf).is_ok() {}
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let m = exchange(&socket, addr, &valid).unwrap();
    assert_eq!(m.metadata.id, 3);
    assert!(!m.answers.is_empty());
    let stats = server.counters().snapshot();
    assert_eq!(stats.queries, 1001);
    assert!(stats.formerr > 0 && stats.dropped > 0);
}

#[test]
fn answers_take_every_netgroup_before_repeating() {
    // 8 netgroups (/16s inside 127.0.0.0/8) of unequal sizes, 80 peers in all.
    let mut peers = Vec::new();
    for (group, count) in [
        (1u8, 45u8),
        (2, 10),
        (3, 10),
        (4, 5),
        (5, 5),
        (6, 3),
        (7, 1),
        (8, 1),
    ] {
        peers.extend((0..count).map(|i| (IpAddr::V4(Ipv4Addr::new(127, group, 0, i)), 1)));
    }
    let (_server, addr) = start_with(config(), peers);
    let packet = query(5, "seed.example.com.", RecordType::A, None);
    for _ in 0..20 {
        let ips = addresses(&tcp(addr, &packet));
        assert_eq!(ips.len(), 30);
        assert_eq!(ips.iter().collect::<HashSet<_>>().len(), 30);
        let groups: HashSet<u8> = ips
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(v4) => v4.octets()[1],
                IpAddr::V6(_) => unreachable!(),
            })
            .collect();
        assert_eq!(groups.len(), 8, "every netgroup is represented");
    }
}

#[test]
fn cache_follows_the_source() {
    let mut c = config();
    c.cache_ttl = Duration::from_millis(50);
    let source = VecSource::default();
    source
        .0
        .lock()
        .unwrap()
        .push((IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 1));
    let server = DnsServer::bind(c, source.clone()).unwrap();
    let handle = server.spawn().unwrap();
    let addr = handle.local_addrs()[0];
    assert_eq!(
        addresses(&udp(addr, "seed.example.com.", RecordType::A)).len(),
        1
    );
    source
        .0
        .lock()
        .unwrap()
        .push((IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 1));
    let start = Instant::now();
    while addresses(&udp(addr, "seed.example.com.", RecordType::A)).len() < 2 {
        assert!(start.elapsed() < TIMEOUT, "the cache never refreshed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A new mask is filled on first use.
    source
        .0
        .lock()
        .unwrap()
        .push((IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 0x41));
    assert_eq!(
        addresses(&udp(addr, "x41.seed.example.com.", RecordType::A)).len(),
        1
    );
}

#[test]
fn udp_and_tcp_share_the_port_and_ipv6_is_served() {
    let mut c = config();
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if v6 {
        c.listen.push("[::1]:0".parse().unwrap());
    }
    let (server, addr) = start_with(c, test_peers());
    // TCP answers on the UDP port.
    assert!(
        !tcp(addr, &query(1, "seed.example.com.", RecordType::A, None))
            .answers
            .is_empty()
    );
    if v6 {
        let addr6 = server.local_addrs()[1];
        assert!(addr6.is_ipv6());
        let socket = client("[::1]:0");
        let m = exchange(
            &socket,
            addr6,
            &query(2, "seed.example.com.", RecordType::AAAA, None),
        )
        .unwrap();
        assert!(!m.answers.is_empty());
        assert!(
            !tcp(addr6, &query(3, "seed.example.com.", RecordType::A, None))
                .answers
                .is_empty()
        );
    }
}

#[test]
fn address_in_use_is_a_clear_error() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    let mut c = config();
    c.listen = vec![port];
    let err = DnsServer::bind(c, VecSource::default()).unwrap_err();
    assert!(matches!(err, BindError::AddrInUse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&port.to_string()), "{message}");
    assert!(message.contains("--dns-listen"), "{message}");
}

#[test]
fn privileged_port_without_privilege_names_the_remedies() {
    // Only meaningful without CAP_NET_BIND_SERVICE (the message itself is unit-tested).
    if UdpSocket::bind("127.0.0.1:53").is_ok()
        || std::net::TcpListener::bind("127.0.0.1:53").is_ok()
    {
        eprintln!("skipped: this process may bind port 53");
        return;
    }
    let mut c = config();
    c.listen = vec!["127.0.0.1:53".parse().unwrap()];
    match DnsServer::bind(c, VecSource::default()) {
        Err(err @ BindError::PermissionDenied { .. }) => {
            let message = err.to_string();
            assert!(message.contains("127.0.0.1:53") && message.contains("CAP_NET_BIND_SERVICE"));
        }
        other => eprintln!("skipped: port 53 is in use ({other:?})"),
    }
}

#[test]
fn invalid_config_is_rejected_at_bind() {
    let mut c = config();
    c.host = "not a name".into();
    assert!(matches!(
        DnsServer::bind(c, VecSource::default()),
        Err(BindError::Config(_))
    ));
}

#[test]
fn shutdown_is_prompt_with_open_connections() {
    let (server, addr) = start();
    let _idle = tcp_connect(addr);
    let mut busy = tcp_connect(addr);
    busy.write_all(&framed(&query(1, "seed.example.com.", RecordType::A, None)))
        .unwrap();
    tcp_read(&mut busy);
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    server.shutdown();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    // The port is free again.
    assert!(UdpSocket::bind(addr).is_ok());
}
