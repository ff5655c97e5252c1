//! The TCP event loop against clients that hold connections without asking (SPEC §6):
//! many sources on 127.0.0.0/8 (each client binds its own loopback address before it
//! connects), the per-source cap, the eviction of the least recently active connection at
//! the global cap, clients that do not read, and requests too long to be DNS queries.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::peers as test_peers;
use super::sockets::{config, start_with, time_to_close};
use crate::dns::DnsCounters;
use crate::testkit::dns_client::{framed, query, tcp_connect_from, tcp_read};

/// The loopback address 127.0.`group`.`host`, one client source.
fn source(group: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, group, host))
}

fn connect(from: IpAddr, server: SocketAddr) -> TcpStream {
    tcp_connect_from(from, server).unwrap()
}

/// Asks `seed.example.com A` on `stream` and checks that it is answered.
fn ask(stream: &mut TcpStream, id: u16) {
    let packet = framed(&query(id, "seed.example.com.", RecordType::A, None));
    stream.write_all(&packet).unwrap();
    let m = tcp_read(stream);
    assert_eq!(m.metadata.id, id);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.answers.is_empty());
}

/// A new client from `from` asks one query; returns how long it took to be answered.
fn fresh_query(from: IpAddr, server: SocketAddr, id: u16) -> Duration {
    let start = Instant::now();
    let mut stream = connect(from, server);
    ask(&mut stream, id);
    start.elapsed()
}

/// Raises the open file limit; whether this process may now hold `needed` descriptors
/// (the test is skipped, with the reason printed, when not).
fn descriptors_for(needed: u64) -> bool {
    crate::seeder::raise_fd_limit();
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if soft < needed {
        eprintln!("skipped: needs {needed} open files, the limit is {soft} (hard {hard})");
    }
    soft >= needed
}

/// Waits until the server has accepted (and served or refused) `count` connections.
fn wait_for_accepts(counters: &DnsCounters, count: u64) {
    let start = Instant::now();
    loop {
        let s = counters.snapshot();
        if s.tcp_connections + s.tcp_rejected >= count {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn fresh_source_is_answered_among_thousands_of_idle_and_stalled_connections() {
    if !descriptors_for(4096) {
        return;
    }
    let mut c = config();
    // Nothing expires while the connections are opened, however slow the machine.
    c.tcp_idle_timeout = Duration::from_secs(120);
    let per_source = c.max_tcp_per_source;
    let (server, addr) = start_with(c, test_peers());
    let mut held = Vec::new();
    for host in 1..=20 {
        held.extend((0..100).map(|_| connect(source(10, host), addr)));
    }
    let partial = &framed(&query(1, "seed.example.com.", RecordType::A, None))[..5];
    for i in 0..50 {
        let mut stalled = connect(source(11, 1 + i % 2), addr);
        stalled.write_all(partial).unwrap();
        held.push(stalled);
    }
    let counters = server.counters();
    wait_for_accepts(&counters, 2050);
    let stats = counters.snapshot();
    assert_eq!(stats.tcp_connections, 20 * per_source as u64 + 50);
    assert_eq!(stats.tcp_rejected, 20 * (100 - per_source as u64));
    for i in 0..10u8 {
        let took = fresh_query(source(12, 1 + i), addr, u16::from(i));
        assert!(took < Duration::from_millis(100), "query {i} took {took:?}");
    }
    // The idle connections the server kept are still served.
    ask(&mut held[0], 99);
}

#[test]
fn a_source_over_its_cap_is_refused_while_another_is_answered() {
    let mut c = config();
    c.max_tcp_per_source = 4;
    let (server, addr) = start_with(c, test_peers());
    let crowded = source(0, 21);
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(crowded, addr)).collect();
    for (i, stream) in held.iter_mut().enumerate() {
        ask(stream, i as u16);
    }
    let mut over = connect(crowded, addr);
    let waited = time_to_close(&mut over, Duration::from_secs(1));
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    fresh_query(source(0, 22), addr, 7);
    ask(&mut held[0], 8);
    let stats = server.counters().snapshot();
    assert_eq!((stats.tcp_connections, stats.tcp_rejected), (5, 1));
}

#[test]
fn at_the_global_cap_the_least_recently_active_connection_makes_room() {
    let mut c = config();
    c.max_tcp_connections = 4;
    let (server, addr) = start_with(c, test_peers());
    let (a, b) = (source(0, 31), source(0, 32));
    let mut open: Vec<TcpStream> = [a, a, b, b].iter().map(|&s| connect(s, addr)).collect();
    for (i, stream) in open.iter_mut().enumerate() {
        ask(stream, i as u16);
    }
    // The first connection asks again: the second is now the least recently active.
    ask(&mut open[0], 10);
    // A newcomer from another source (kept open, so that the table stays full).
    let mut third = connect(source(0, 33), addr);
    ask(&mut third, 11);
    let waited = time_to_close(&mut open[1], Duration::from_secs(1));
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    ask(&mut open[2], 12);
    // A source that holds a connection is refused at the cap; it has one to reuse.
    let mut refused = connect(a, addr);
    time_to_close(&mut refused, Duration::from_secs(1));
    // Another newcomer takes the place of the next least recently active.
    fresh_query(source(0, 34), addr, 13);
    time_to_close(&mut open[3], Duration::from_secs(1));
    ask(&mut open[0], 14);
    ask(&mut third, 15);
    let stats = server.counters().snapshot();
    assert_eq!(stats.tcp_evicted, 2, "{stats:?}");
    assert_eq!(stats.tcp_rejected, 1, "{stats:?}");
}

#[test]
fn a_client_that_does_not_read_its_answers_is_closed() {
    let mut c = config();
    c.max_tcp_per_source = 1;
    let (_server, addr) = start_with(c, test_peers());
    let greedy = source(0, 41);
    let mut flood = connect(greedy, addr);
    flood
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // 30 AAAA records per answer: about 23 bytes out for each byte in.
    let packet = framed(&query(1, "x9.seed.example.com.", RecordType::AAAA, None));
    let batch: Vec<u8> = packet
        .iter()
        .copied()
        .cycle()
        .take(packet.len() * 1000)
        .collect();
    let mut sent = 0;
    while sent < 64 << 20 && flood.write_all(&batch).is_ok() {
        sent += batch.len();
    }
    // Its answers waited more than the write timeout: its one slot is free again.
    std::thread::sleep(Duration::from_millis(600));
    let took = fresh_query(greedy, addr, 2);
    assert!(took < Duration::from_millis(500), "{took:?}");
}

#[test]
fn a_request_longer_than_a_udp_one_closes_the_connection() {
    let (server, addr) = start_with(config(), test_peers());
    let mut stream = connect(source(0, 51), addr);
    stream.write_all(&[0xff, 0xff, 0, 0]).unwrap();
    time_to_close(&mut stream, Duration::from_secs(1));
    // 4096 bytes, the longest accepted, get a response.
    let mut stream = connect(source(0, 51), addr);
    let mut request = framed(&query(3, "seed.example.com.", RecordType::A, None));
    request.resize(2 + 4096, 0);
    request[..2].copy_from_slice(&4096u16.to_be_bytes());
    stream.write_all(&request).unwrap();
    let m = tcp_read(&mut stream);
    assert_eq!(m.metadata.id, 3);
    assert!(server.counters().snapshot().dropped >= 1);
}
