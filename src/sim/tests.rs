//! Tests of the simulated network with a minimal hand-written client.

#![allow(clippy::unwrap_used)]

use std::collections::{HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bitcoin::consensus::encode;
use bitcoin::p2p::address::{AddrV2, Address};
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};

use super::wire::encode_message;
use super::{Behaviour, SimConfig, SimNetwork};

mod networks;
mod v2;

const PORT: u16 = 28333;
const MAGIC: Magic = Magic::REGTEST;

/// The small network of the socket tests: every behaviour, then good nodes up to 20.
fn small_config() -> SimConfig {
    let mut behaviours = Behaviour::ALL.to_vec();
    behaviours.extend([Behaviour::Good; 8]);
    let mut config = SimConfig::new(MAGIC, PORT, &behaviours);
    config.slow_delay = Duration::from_millis(200);
    config.flood_messages = 3;
    config.idle_timeout = Duration::from_secs(5);
    config
}

fn start() -> SimNetwork {
    SimNetwork::start(small_config()).unwrap()
}

fn node_of(net: &SimNetwork, behaviour: Behaviour) -> SocketAddr {
    net.nodes()
        .iter()
        .find(|n| n.behaviour == behaviour)
        .unwrap()
        .addr
}

/// A bare P2P client: blocking socket, whole messages, no checks beyond decoding.
struct Client {
    stream: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        Client { stream }
    }

    fn send(&mut self, magic: Magic, msg: NetworkMessage) {
        self.stream.write_all(&encode_message(magic, msg)).unwrap();
    }

    /// Next message, or `None` on EOF or timeout.
    fn recv(&mut self) -> Option<RawNetworkMessage> {
        let mut header = [0u8; 24];
        self.stream.read_exact(&mut header).ok()?;
        let len = u32::from_le_bytes(header[16..20].try_into().unwrap()) as usize;
        let mut bytes = header.to_vec();
        bytes.resize(24 + len, 0);
        self.stream.read_exact(&mut bytes[24..]).ok()?;
        Some(encode::deserialize(&bytes).unwrap())
    }

    /// Next message if it is well-formed, has our magic and a sane length; else `None`.
    fn try_recv(&mut self) -> Option<NetworkMessage> {
        let mut header = [0u8; 24];
        self.stream.read_exact(&mut header).ok()?;
        let len = u32::from_le_bytes(header[16..20].try_into().unwrap()) as usize;
        if header[..4] != MAGIC.to_bytes() || len > 1_000_000 {
            return None;
        }
        let mut bytes = header.to_vec();
        bytes.resize(24 + len, 0);
        self.stream.read_exact(&mut bytes[24..]).ok()?;
        let msg: RawNetworkMessage = encode::deserialize(&bytes).ok()?;
        Some(msg.into_payload())
    }

    fn version() -> NetworkMessage {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut v = VersionMessage::new(
            ServiceFlags::NONE,
            0,
            Address::new(&any, ServiceFlags::NONE),
            Address::new(&any, ServiceFlags::NONE),
            7,
            "/test:0.1/".to_owned(),
            0,
        );
        v.version = 70016;
        NetworkMessage::Version(v)
    }

    /// Handshakes; returns the node's version and the other messages seen before `verack`.
    fn handshake(&mut self, magic: Magic, addrv2: bool) -> VersionMessage {
        self.send(magic, Client::version());
        if addrv2 {
            self.send(magic, NetworkMessage::SendAddrV2);
        }
        let mut version = None;
        loop {
            let msg = self.recv().expect("handshake message");
            match msg.into_payload() {
                NetworkMessage::Version(v) => version = Some(v),
                NetworkMessage::Verack => break,
                _ => {}
            }
        }
        self.send(magic, NetworkMessage::Verack);
        version.expect("version before verack")
    }

    /// Sends `getaddr` and collects every message until the node is quiet for `quiet`.
    fn getaddr(&mut self, magic: Magic, quiet: Duration) -> Vec<NetworkMessage> {
        self.send(magic, NetworkMessage::GetAddr);
        self.stream.set_read_timeout(Some(quiet)).unwrap();
        std::iter::from_fn(|| self.recv().map(RawNetworkMessage::into_payload)).collect()
    }
}

/// IP entries of all `addr`/`addrv2` messages with more than one entry.
fn answered(msgs: &[NetworkMessage]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for msg in msgs {
        match msg {
            NetworkMessage::Addr(list) if list.len() > 1 => {
                out.extend(list.iter().filter_map(|(_, a)| a.socket_addr().ok()));
            }
            NetworkMessage::AddrV2(list) if list.len() > 1 => {
                out.extend(list.iter().filter_map(|a| a.socket_addr().ok()));
            }
            _ => {}
        }
    }
    out.into_iter()
        .map(|sa| match sa.ip() {
            IpAddr::V6(ip) => SocketAddr::new(ip.to_canonical(), sa.port()),
            IpAddr::V4(_) => sa,
        })
        .collect()
}

#[test]
fn good_node_answers_getaddr_with_addrv2_after_sendaddrv2() {
    let net = start();
    let seed = net.seed();
    let mut client = Client::connect(seed);
    let version = client.handshake(MAGIC, true);
    assert_eq!(version.version, 70016);
    assert!(version.user_agent.starts_with("/Satoshi:"));
    assert_eq!(version.services, net.nodes()[0].services);
    let msgs = client.getaddr(MAGIC, Duration::from_millis(500));
    assert!(msgs.iter().any(|m| matches!(m, NetworkMessage::Ping(_))));
    assert!(
        msgs.iter()
            .any(|m| matches!(m, NetworkMessage::SendHeaders))
    );
    assert!(!msgs.iter().any(|m| matches!(m, NetworkMessage::Addr(_))));
    let v2: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            NetworkMessage::AddrV2(list) if list.len() > 1 => Some(list),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(v2.iter().any(|a| matches!(a.addr, AddrV2::Unknown(42, _))));
    assert!(v2.iter().any(|a| matches!(a.addr, AddrV2::TorV3(_))));
    let got: HashSet<SocketAddr> = answered(&msgs).into_iter().collect();
    let listed = &net.config().answer_lists()[0];
    assert!(
        listed.iter().all(|a| got.contains(a)),
        "{got:?} vs {listed:?}"
    );
    assert!(net.config().poison.iter().all(|p| got.contains(p)));
}

#[test]
fn good_node_answers_getaddr_with_addr_without_sendaddrv2() {
    let net = start();
    let mut client = Client::connect(net.seed());
    client.handshake(MAGIC, false);
    let msgs = client.getaddr(MAGIC, Duration::from_millis(500));
    assert!(!msgs.iter().any(|m| matches!(m, NetworkMessage::AddrV2(_))));
    let got: HashSet<SocketAddr> = answered(&msgs).into_iter().collect();
    let listed = &net.config().answer_lists()[0];
    assert!(listed.iter().all(|a| got.contains(a)));
    assert!(net.config().poison.iter().all(|p| got.contains(p)));
    assert_eq!(net.connections(net.seed()), 1);
}

#[test]
fn dead_node_refuses() {
    let net = start();
    let dead = node_of(&net, Behaviour::Dead);
    let err = TcpStream::connect_timeout(&dead, Duration::from_secs(2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert_eq!(net.connections(dead), 0);
}

#[test]
fn wrong_magic_node_replies_with_other_magic() {
    let net = start();
    let mut client = Client::connect(node_of(&net, Behaviour::WrongMagic));
    client.send(MAGIC, Client::version());
    let reply = client.recv().unwrap();
    assert_eq!(*reply.magic(), net.config().wrong_magic);
    assert_ne!(*reply.magic(), MAGIC);
    assert!(matches!(reply.payload(), NetworkMessage::Version(_)));
}

#[test]
fn oversize_header_node_sends_huge_length() {
    let net = start();
    let mut client = Client::connect(node_of(&net, Behaviour::OversizeHeader));
    client.send(MAGIC, Client::version());
    let mut header = [0u8; 24];
    client.stream.read_exact(&mut header).unwrap();
    assert_eq!(header[..4], MAGIC.to_bytes());
    assert_eq!(
        u32::from_le_bytes(header[16..20].try_into().unwrap()),
        0xFFFF_FFF0
    );
}

#[test]
fn old_version_node_handshakes_with_31800() {
    let net = start();
    let mut client = Client::connect(node_of(&net, Behaviour::OldVersion));
    assert_eq!(client.handshake(MAGIC, true).version, 31800);
}

#[test]
fn no_services_node_advertises_zero() {
    let net = start();
    let mut client = Client::connect(node_of(&net, Behaviour::NoServices));
    assert_eq!(client.handshake(MAGIC, true).services, ServiceFlags::NONE);
}

#[test]
fn silent_and_garbage_nodes_never_handshake() {
    let net = start();
    let mut silent = Client::connect(node_of(&net, Behaviour::Silent));
    silent.send(MAGIC, Client::version());
    silent
        .stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1];
    let err = silent.stream.read(&mut buf).unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));

    let mut garbage = Client::connect(node_of(&net, Behaviour::Garbage));
    let mut bytes = [0u8; 512];
    garbage.stream.read_exact(&mut bytes).unwrap();
    assert_ne!(bytes[..4], MAGIC.to_bytes());
}

#[test]
fn flaky_node_answers_every_other_connection() {
    let net = start();
    let flaky = node_of(&net, Behaviour::Flaky);
    for round in 0..4 {
        let mut client = Client::connect(flaky);
        client.send(MAGIC, Client::version());
        let reply = client.recv();
        assert_eq!(reply.is_some(), round % 2 == 0, "connection {round}");
    }
    assert_eq!(net.connections(flaky), 4);
}

#[test]
fn slow_node_waits_before_replying() {
    let net = start();
    let mut client = Client::connect(node_of(&net, Behaviour::Slow));
    let started = Instant::now();
    client.handshake(MAGIC, false);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn addr_flood_node_sends_full_messages_of_unreachable_addresses() {
    let net = start();
    let mut client = Client::connect(node_of(&net, Behaviour::AddrFlood));
    client.handshake(MAGIC, true);
    let msgs = client.getaddr(MAGIC, Duration::from_millis(500));
    let full: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            NetworkMessage::AddrV2(list) if list.len() == 1000 => Some(list),
            _ => None,
        })
        .collect();
    assert_eq!(full.len(), 3);
    let flood = full[0][0].socket_addr().unwrap();
    assert!(matches!(flood.ip(), IpAddr::V4(ip) if ip.octets()[1] >= 200));
    assert_eq!(flood.port(), PORT);
    assert!(answered(&msgs).len() > 3000, "its real list comes too");
}

#[test]
fn alt_port_node_listens_on_the_next_port() {
    let net = start();
    let alt = node_of(&net, Behaviour::AltPort);
    assert_eq!(alt.port(), PORT + 1);
    let mut client = Client::connect(alt);
    assert_eq!(client.handshake(MAGIC, false).version, 70016);
    let lists = net.config().answer_lists();
    assert!(lists.iter().flatten().any(|&a| a == alt));
}

#[test]
fn shutdown_is_prompt_and_closes_listeners() {
    let net = start();
    let seed = net.seed();
    let silent = node_of(&net, Behaviour::Silent);
    let _held = Client::connect(silent);
    let started = Instant::now();
    net.shutdown();
    assert!(started.elapsed() < Duration::from_secs(2));
    let err = TcpStream::connect_timeout(&seed, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

/// Breadth-first search over the answer lists from the seed.
fn reachable(config: &SimConfig, lists: &[Vec<SocketAddr>], from: usize) -> HashSet<SocketAddr> {
    let index: std::collections::HashMap<SocketAddr, usize> = config
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.addr, i))
        .collect();
    let mut seen = HashSet::from([config.nodes[from].addr]);
    let mut queue = VecDeque::from([from]);
    while let Some(i) = queue.pop_front() {
        for addr in &lists[i] {
            if seen.insert(*addr) {
                queue.push_back(index[addr]);
            }
        }
    }
    seen
}

#[test]
fn gossip_reaches_every_node_in_mixed_500() {
    let config = SimConfig::mixed(500, MAGIC, PORT);
    let lists = config.answer_lists();
    assert_eq!(lists.len(), 500);
    for (node, list) in config.nodes.iter().zip(&lists) {
        assert_eq!(list.is_empty(), !node.behaviour.answers_getaddr());
        assert!(!list.contains(&node.addr), "a node never lists itself");
        assert!(list.iter().all(|a| !config.poison.contains(a)));
    }
    let listed: HashSet<SocketAddr> = lists.iter().flatten().copied().collect();
    assert!(config.nodes.iter().all(|n| listed.contains(&n.addr)));
    assert_eq!(reachable(&config, &lists, 0).len(), 500);
    // The ring alone (no random top-up) keeps everything reachable too.
    let mut ring_only = config.clone();
    ring_only.addrs_per_answer = 0;
    let lists = ring_only.answer_lists();
    assert_eq!(reachable(&ring_only, &lists, 0).len(), 500);
}

#[test]
fn mixed_holds_every_behaviour_with_distinct_addresses() {
    let config = SimConfig::mixed(500, MAGIC, PORT);
    for behaviour in Behaviour::MIXED {
        let count = config
            .nodes
            .iter()
            .filter(|n| n.behaviour == behaviour)
            .count();
        assert!(count >= 15, "{behaviour:?}: {count}");
    }
    let good = config
        .nodes
        .iter()
        .filter(|n| n.behaviour == Behaviour::Good);
    assert!(good.count() > 280);
    let addrs: HashSet<SocketAddr> = config.nodes.iter().map(|n| n.addr).collect();
    assert_eq!(addrs.len(), 500);
    assert!(
        config
            .nodes
            .iter()
            .all(|n| n.addr.ip() != Ipv4Addr::LOCALHOST)
    );
    assert!(config.nodes.iter().all(|n| n.addr.ip().is_loopback()));
}

#[test]
fn with_fractions_counts_and_good_seed() {
    let config = SimConfig::with_fractions(1000, 0.3, 0.2, MAGIC, PORT);
    let count = |b| config.nodes.iter().filter(|n| n.behaviour == b).count();
    assert_eq!(count(Behaviour::Silent), 300);
    assert_eq!(count(Behaviour::Dead), 200);
    assert_eq!(count(Behaviour::Good), 500);
    assert_eq!(config.nodes[0].behaviour, Behaviour::Good);
}

#[test]
fn good_node_splits_its_answer_on_every_third_connection() {
    let net = start();
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let mut client = Client::connect(net.seed());
        client.handshake(MAGIC, true);
        let msgs = client.getaddr(MAGIC, Duration::from_millis(300));
        let multi = msgs
            .iter()
            .filter(|m| matches!(m, NetworkMessage::AddrV2(l) if l.len() > 1))
            .count();
        sizes.push(multi);
    }
    // The seed is node 0: connection n splits when (n + 0) % 3 == 0.
    assert_eq!(sizes, [1, 1, 2]);
}

/// Scale check, run by hand: `cargo test --lib sim::tests::scale -- --ignored --nocapture`.
/// 20,000 nodes start, the first and the last good one answer, and shutdown closes every
/// listener promptly (about 0.3 s here).
#[test]
#[ignore = "binds 20,000 listeners; run by hand"]
fn scale_20000_nodes_start_answer_and_stop() {
    let started = Instant::now();
    let net = SimNetwork::start(SimConfig::mixed(20_000, MAGIC, PORT)).unwrap();
    println!("started in {:?}", started.elapsed());
    let last_good = net
        .nodes()
        .iter()
        .rev()
        .find(|n| n.behaviour == Behaviour::Good)
        .unwrap()
        .addr;
    let seed = net.seed();
    for addr in [seed, last_good] {
        let mut client = Client::connect(addr);
        client.handshake(MAGIC, true);
        assert!(!answered(&client.getaddr(MAGIC, Duration::from_millis(300))).is_empty());
    }
    let stopping = Instant::now();
    net.shutdown();
    let stopped = stopping.elapsed();
    println!("stopped in {stopped:?}");
    // The module promises a stop "within a fraction of a second". 5 s is ten times that
    // and above the 3 s shutdown gives connection threads to drain, so a loaded machine
    // closing 20,000 listeners passes and only a hang or an endless drain fails.
    assert!(stopped < Duration::from_secs(5), "stopped in {stopped:?}");
    // Every listener is closed, the first and the last good node's alike.
    for addr in [seed, last_good] {
        let err = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{addr}");
    }
}

/// One crawler probe that survives every behaviour: the addresses in the node's answer, or
/// nothing if it misbehaved.
fn probe(addr: SocketAddr) -> Vec<SocketAddr> {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return Vec::new();
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut client = Client { stream };
    for msg in [Client::version(), NetworkMessage::SendAddrV2] {
        let _ = client.stream.write_all(&encode_message(MAGIC, msg));
    }
    // A deadline, as the seeder's probe has: some nodes never finish the handshake, and
    // a slowloris defeats per-read timeouts, so the socket is shut down after 3 s.
    let killer = client.stream.try_clone().unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        let _ = killer.shutdown(std::net::Shutdown::Both);
    });
    loop {
        match client.try_recv() {
            Some(NetworkMessage::Version(v)) if v.version < 70001 => return Vec::new(),
            Some(NetworkMessage::Verack) => break,
            Some(_) => {}
            None => return Vec::new(),
        }
    }
    client.send(MAGIC, NetworkMessage::Verack);
    client.send(MAGIC, NetworkMessage::GetAddr);
    client
        .stream
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    answered(&std::iter::from_fn(|| client.try_recv()).collect::<Vec<_>>())
}

#[test]
fn crawl_over_sockets_finds_every_node() {
    let mut config = SimConfig::mixed(64, MAGIC, PORT);
    config.slow_delay = Duration::from_millis(100);
    config.idle_timeout = Duration::from_secs(5);
    let net = SimNetwork::start(config).unwrap();
    let nodes: HashSet<SocketAddr> = net.nodes().iter().map(|n| n.addr).collect();
    let mut seen = HashSet::from([net.seed()]);
    let mut frontier = vec![net.seed()];
    while !frontier.is_empty() {
        let answers: Vec<Vec<SocketAddr>> = std::thread::scope(|s| {
            let handles: Vec<_> = frontier
                .iter()
                .map(|&a| s.spawn(move || probe(a)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        frontier = answers
            .into_iter()
            .flatten()
            .filter(|a| nodes.contains(a) && seen.insert(*a))
            .collect();
    }
    assert_eq!(seen, nodes);
}
