//! Tests of the nodes on Tor, I2P and CJDNS and of the emulated proxies, with a hand-rolled
//! SOCKS5 client.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bitcoin::p2p::address::AddrV2;
use bitcoin::p2p::message::NetworkMessage;

use super::{Client, MAGIC, PORT, answered};
use crate::addr::{Host, PeerAddr};
use crate::sim::{Behaviour, Network, NodeSpec, SimConfig, SimNetwork};

/// 12 good nodes (the first is the seed), 4 dead, 4 silent; half of the others on Tor, then
/// half of what is left on I2P: 6 good, 2 dead and 2 silent onions; 3 good, 1 dead and 1
/// silent I2P nodes.
fn hidden_config() -> SimConfig {
    let mut behaviours = vec![Behaviour::Good; 12];
    behaviours.extend([Behaviour::Dead; 4]);
    behaviours.extend([Behaviour::Silent; 4]);
    let mut config = SimConfig::new(MAGIC, PORT, &behaviours);
    config.idle_timeout = Duration::from_secs(5);
    config.place(Network::Onion, 0.5);
    config.place(Network::I2p, 0.5);
    config
}

fn on(net: &SimNetwork, network: Network, behaviour: Behaviour) -> Vec<NodeSpec> {
    net.nodes()
        .iter()
        .filter(|n| n.network == network && n.behaviour == behaviour)
        .cloned()
        .collect()
}

/// Greets the proxy and asks it to CONNECT to `host:port` (ATYP 3); returns the reply code
/// and the stream.
fn socks_connect(proxy: SocketAddr, host: &str, port: u16) -> (u8, TcpStream) {
    let mut request = vec![5, 1, 0, 3, u8::try_from(host.len()).unwrap()];
    request.extend(host.as_bytes());
    request.extend(port.to_be_bytes());
    socks_request(proxy, &request)
}

/// Greets the proxy, sends `request` and reads the 10-byte reply.
fn socks_request(proxy: SocketAddr, request: &[u8]) -> (u8, TcpStream) {
    let mut stream = greeted(proxy);
    stream.write_all(request).unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply[0], 5);
    (reply[1], stream)
}

/// A connection to the proxy past the greeting.
fn greeted(proxy: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect_timeout(&proxy, Duration::from_secs(2)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream.write_all(&[5, 1, 0]).unwrap();
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).unwrap();
    assert_eq!(choice, [5, 0]);
    stream
}

/// The host name and port a node is known by.
fn name(node: &NodeSpec) -> (String, u16) {
    (node.public.host.to_string(), node.public.port)
}

#[test]
fn good_hidden_nodes_handshake_through_their_proxy_by_name() {
    let net = SimNetwork::start(hidden_config()).unwrap();
    for network in [Network::Onion, Network::I2p] {
        let proxy = net.proxy(network).unwrap().addr();
        let good = on(&net, network, Behaviour::Good);
        assert_eq!(good.len(), if network == Network::Onion { 6 } else { 3 });
        for node in &good {
            let (host, port) = name(node);
            let started = Instant::now();
            let (code, stream) = socks_connect(proxy, &host, port);
            assert_eq!(code, 0, "{host}");
            assert!(started.elapsed() >= net.config().circuit_delay);
            let mut client = Client { stream };
            assert_eq!(client.handshake(MAGIC, true).version, 70016);
            assert_eq!(net.connections_to(&node.public), 1);
        }
        let stats = net.proxy(network).unwrap().stats();
        assert_eq!(stats.requests, good.len() as u64);
        assert_eq!(stats.domain_requests, good.len() as u64);
        assert_eq!(stats.ip_requests, 0);
    }
    assert_eq!(
        net.onion_proxy(),
        net.proxy(Network::Onion).map(|p| p.addr())
    );
    assert_eq!(net.i2p_proxy(), net.proxy(Network::I2p).map(|p| p.addr()));
    assert_eq!(net.hidden_direct_connections(), 0);
}

#[test]
fn proxies_fail_like_tor_and_i2p() {
    let net = SimNetwork::start(hidden_config()).unwrap();
    let tor = net.onion_proxy().unwrap();
    let i2p = net.i2p_proxy().unwrap();
    let unknown_onion = Host::TorV3([0x77; 32]).to_string();
    assert_eq!(socks_connect(tor, &unknown_onion, PORT).0, 0xF0);
    let unknown_i2p = Host::I2p([0x77; 32]).to_string();
    assert_eq!(socks_connect(i2p, &unknown_i2p, 0).0, 0x04);
    let (host, port) = name(&on(&net, Network::Onion, Behaviour::Dead)[0]);
    assert_eq!(socks_connect(tor, &host, port).0, 0xF2);
    let (host, port) = name(&on(&net, Network::I2p, Behaviour::Dead)[0]);
    assert_eq!(socks_connect(i2p, &host, port).0, 0x05);
    // An onion node answers only on its own port.
    let (host, port) = name(&on(&net, Network::Onion, Behaviour::Good)[0]);
    assert_eq!(socks_connect(tor, &host, port + 7).0, 0xF2);
    // IP requests are refused and counted; the hidden listener itself is an IP.
    let hidden = on(&net, Network::Onion, Behaviour::Good)[0].addr;
    let SocketAddr::V4(v4) = hidden else {
        panic!("a hidden listener is on 127.0.0.0/8")
    };
    let mut request = vec![5, 1, 0, 1];
    request.extend(v4.ip().octets());
    request.extend(v4.port().to_be_bytes());
    assert_eq!(socks_request(tor, &request).0, 0x02);
    let stats = net.proxy(Network::Onion).unwrap().stats();
    assert_eq!((stats.requests, stats.domain_requests), (4, 3));
    assert_eq!(stats.ip_requests, 1);
    assert_eq!(net.hidden_direct_connections(), 0);
    // Dialing the hidden listener directly is what the seeder must never do.
    drop(TcpStream::connect_timeout(&hidden, Duration::from_secs(2)).unwrap());
    wait_for(|| net.hidden_direct_connections() == 1);
}

/// Polls `done` for up to 3 s.
fn wait_for(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn proxy_counts_sessions_in_flight() {
    let net = SimNetwork::start(hidden_config()).unwrap();
    let proxy = net.proxy(Network::Onion).unwrap();
    let open: Vec<TcpStream> = (0..5).map(|_| greeted(proxy.addr())).collect();
    let stats = proxy.stats();
    assert_eq!(stats.in_flight, 5);
    assert_eq!(stats.max_in_flight, 5);
    assert_eq!(stats.requests, 0);
    drop(open);
    wait_for(|| proxy.stats().in_flight == 0);
    assert_eq!(proxy.stats().max_in_flight, 5);
}

#[test]
fn paused_proxy_refuses_and_resumed_proxy_serves() {
    let net = SimNetwork::start(hidden_config()).unwrap();
    let proxy = net.proxy(Network::I2p).unwrap();
    let addr = proxy.addr();
    proxy.pause();
    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    proxy.resume().unwrap();
    assert_eq!(proxy.addr(), addr);
    let (host, port) = name(&on(&net, Network::I2p, Behaviour::Good)[0]);
    let (code, stream) = socks_connect(addr, &host, port);
    assert_eq!(code, 0);
    assert_eq!(Client { stream }.handshake(MAGIC, true).version, 70016);
}

#[test]
fn shutdown_stops_the_proxies() {
    let net = SimNetwork::start(hidden_config()).unwrap();
    let tor = net.onion_proxy().unwrap();
    let (host, port) = name(&on(&net, Network::Onion, Behaviour::Silent)[0]);
    let (code, _held) = socks_connect(tor, &host, port);
    assert_eq!(code, 0);
    let started = Instant::now();
    net.shutdown();
    assert!(started.elapsed() < Duration::from_secs(2));
    let err = TcpStream::connect_timeout(&tor, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

/// The peer addresses of every `addrv2` message with more than one entry.
fn answered_v2(msgs: &[NetworkMessage]) -> HashSet<PeerAddr> {
    let mut out = HashSet::new();
    for msg in msgs {
        let NetworkMessage::AddrV2(list) = msg else {
            continue;
        };
        for entry in list.iter().filter(|_| list.len() > 1) {
            let host = match &entry.addr {
                AddrV2::Ipv4(ip) => Host::V4(*ip),
                AddrV2::Ipv6(ip) => Host::V6(*ip),
                AddrV2::TorV3(key) => Host::TorV3(*key),
                AddrV2::I2p(hash) => Host::I2p(*hash),
                AddrV2::Cjdns(ip) => Host::Cjdns(*ip),
                _ => continue,
            };
            out.insert(PeerAddr {
                host,
                port: entry.port,
            });
        }
    }
    out
}

#[test]
fn clear_node_gossips_hidden_nodes_by_name_in_addrv2_only() {
    let mut config = hidden_config();
    config.addrs_per_answer = 100;
    let net = SimNetwork::start(config).unwrap();
    let listed = &net.config().public_answer_lists()[0];
    let mut client = Client::connect(net.seed());
    client.handshake(MAGIC, true);
    let got = answered_v2(&client.getaddr(MAGIC, Duration::from_millis(500)));
    assert!(
        listed.iter().all(|a| got.contains(a)),
        "{got:?} vs {listed:?}"
    );
    let family = |host: fn(&Host) -> bool| got.iter().filter(|a| host(&a.host)).count();
    assert!(family(|h| matches!(h, Host::TorV3(_))) > 5);
    assert!(family(|h| matches!(h, Host::I2p(_))) >= 5);
    let hidden: HashSet<SocketAddr> = net
        .nodes()
        .iter()
        .filter(|n| n.network != Network::Clear)
        .map(|n| n.addr)
        .collect();
    assert!(
        got.iter()
            .all(|a| !a.socket_addr().is_some_and(|s| hidden.contains(&s)))
    );
    // In v1 `addr`, onion and I2P entries are dropped, so only clear addresses remain.
    let mut v1 = Client::connect(net.seed());
    v1.handshake(MAGIC, false);
    let got = answered(&v1.getaddr(MAGIC, Duration::from_millis(500)));
    assert!(got.iter().all(|a| !hidden.contains(a)));
    let clear = &net.config().answer_lists()[0];
    assert!(clear.iter().all(|a| got.contains(a)));
    assert!(clear.len() < listed.len());
}

/// Breadth-first search over the public answer lists from node `from`, following only the
/// nodes `follow` accepts.
fn reachable(config: &SimConfig, from: usize, follow: impl Fn(&NodeSpec) -> bool) -> usize {
    let lists = config.public_answer_lists();
    let index: HashMap<PeerAddr, usize> = (0..config.nodes.len())
        .map(|i| (config.nodes[i].public, i))
        .collect();
    let mut seen = HashSet::from([from]);
    let mut queue = VecDeque::from([from]);
    while let Some(i) = queue.pop_front() {
        for addr in &lists[i] {
            let j = index[addr];
            if follow(&config.nodes[j]) && seen.insert(j) {
                queue.push_back(j);
            }
        }
    }
    seen.len()
}

#[test]
fn gossip_reaches_every_node_on_every_network() {
    let mut config = SimConfig::mixed(500, MAGIC, PORT);
    config.place(Network::Onion, 0.2);
    config.place(Network::I2p, 0.15);
    config.place(Network::Cjdns, 0.1);
    let count = |net| config.nodes.iter().filter(|n| n.network == net).count();
    let clear = count(Network::Clear);
    assert_eq!(
        clear + count(Network::Onion) + count(Network::I2p) + count(Network::Cjdns),
        500
    );
    for ring_only in [false, true] {
        let mut config = config.clone();
        if ring_only {
            config.addrs_per_answer = 0;
        }
        assert_eq!(reachable(&config, 0, |_| true), 500);
        // A crawler without proxies or CJDNS still finds every clear node.
        assert_eq!(
            reachable(&config, 0, |n| n.network == Network::Clear),
            clear
        );
    }
}

#[test]
fn place_spreads_over_behaviours_and_keeps_the_seed_clear() {
    let mut config = SimConfig::mixed(500, MAGIC, PORT);
    config.place(Network::Onion, 0.2);
    config.place(Network::I2p, 0.25);
    config.place(Network::Cjdns, 0.1);
    assert_eq!(config.nodes[0].network, Network::Clear);
    for behaviour in Behaviour::MIXED {
        let of = |net| {
            let nodes = config.nodes.iter();
            nodes
                .filter(|n| n.behaviour == behaviour && n.network == net)
                .count()
        };
        assert!(of(Network::Onion) >= 3, "{behaviour:?}");
        assert!(of(Network::I2p) >= 3, "{behaviour:?}");
        assert!(of(Network::Cjdns) >= 1, "{behaviour:?}");
    }
    let publics: HashSet<PeerAddr> = config.nodes.iter().map(|n| n.public).collect();
    assert_eq!(publics.len(), 500);
    for node in &config.nodes {
        match (node.network, node.public.host) {
            (Network::Clear, Host::V4(_)) | (Network::Cjdns, Host::Cjdns(_)) => {
                assert_eq!(node.public, PeerAddr::from_socket(node.addr));
            }
            (Network::Onion, Host::TorV3(key)) => {
                assert_eq!(node.public.port, node.addr.port());
                assert_ne!(key[8..], [0; 24], "never the poison onion");
            }
            (Network::I2p, Host::I2p(_)) => assert_eq!(node.public.port, 0),
            other => panic!("{other:?}"),
        }
    }
    // The same configuration places the same nodes.
    let mut again = SimConfig::mixed(500, MAGIC, PORT);
    again.place(Network::Onion, 0.2);
    let onions = |c: &SimConfig| -> Vec<usize> {
        (0..500)
            .filter(|&i| c.nodes[i].network == Network::Onion)
            .collect()
    };
    assert_eq!(onions(&again), onions(&config));
}

#[test]
fn cjdns_node_handshakes_on_its_fc00_address() {
    if let Err(reason) = crate::testkit::ensure_cjdns_route() {
        println!("skipped: {reason}");
        return;
    }
    let mut behaviours = vec![Behaviour::Good; 10];
    behaviours.push(Behaviour::Dead);
    let mut config = SimConfig::new(MAGIC, PORT, &behaviours);
    config.place(Network::Cjdns, 0.5);
    let net = SimNetwork::start(config).unwrap();
    let cjdns = on(&net, Network::Cjdns, Behaviour::Good);
    assert!(matches!(cjdns[0].public.host, Host::Cjdns(_)));
    assert_eq!(cjdns[0].addr.ip().to_string()[..4], *"fc00");
    let mut client = Client::connect(cjdns[0].addr);
    assert_eq!(client.handshake(MAGIC, true).version, 70016);
    assert_eq!(net.connections_to(&cjdns[0].public), 1);
    assert!(net.onion_proxy().is_none() && net.i2p_proxy().is_none());
    // The seed gossips CJDNS nodes in addrv2, and as IPv6 in addr.
    let listed = &net.config().public_answer_lists()[0];
    let mut v2 = Client::connect(net.seed());
    v2.handshake(MAGIC, true);
    let got = answered_v2(&v2.getaddr(MAGIC, Duration::from_millis(500)));
    assert!(listed.iter().all(|a| got.contains(a)));
    assert!(got.iter().any(|a| matches!(a.host, Host::Cjdns(_))));
    let mut v1 = Client::connect(net.seed());
    v1.handshake(MAGIC, false);
    let got = answered(&v1.getaddr(MAGIC, Duration::from_millis(500)));
    assert!(got.iter().any(|a| a.ip().to_string().starts_with("fc00:")));
}

#[test]
fn cjdns_nodes_without_a_route_name_the_command_to_add_it() {
    let mut config = SimConfig::new(MAGIC, PORT, &[Behaviour::Good; 4]);
    config.place(Network::Cjdns, 0.5);
    match SimNetwork::start(config) {
        // Another test may have added the route meanwhile.
        Ok(_) => assert!(crate::sim::cjdns_bindable().is_ok()),
        Err(e) => assert!(
            e.to_string().contains(crate::sim::CJDNS_ROUTE_COMMAND),
            "{e}"
        ),
    }
}
