//! BIP324 (issue 13): the real binary against simulated nodes that speak v2 (and v1), v1
//! nodes that advertise P2P_V2 anyway, v1 nodes that do not, and nodes that break the v2
//! handshake. v2 peers end with transport `v2`, `x800`/`x809` answers hold only them, and
//! what a v2 probe sends after the handshake is encrypted.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bitcoin::Network;
use bitcoin::p2p::{Magic, ServiceFlags};
use dnsseeder::sim::{Behaviour, SimConfig, SimNetwork};
use dnsseeder::testkit::dns_client::{addresses, client, exchange, query};
use hickory_proto::rr::RecordType;

use crate::util::{DNS_FLAGS, Seeder, arg, crawl_args, heavy, wait_until_good};

/// 400 nodes: 80 v2, 60 v1 advertising P2P_V2, 30 breaking the v2 handshake, the rest
/// v1 `Good` nodes (with services of their usual mix, some of which carry P2P_V2 too).
fn network() -> SimNetwork {
    let mut behaviours = vec![Behaviour::Good; 400];
    for (i, b) in behaviours.iter_mut().enumerate().skip(1) {
        *b = match i % 20 {
            0..=3 => Behaviour::V2,
            4..=6 => Behaviour::V1AdvertisingV2,
            7 if i % 40 == 7 => Behaviour::V2Garbage,
            8 => Behaviour::V2Garbage,
            _ => Behaviour::Good,
        };
    }
    let mut config = SimConfig::new(Magic::from(Network::Regtest), 18444, &behaviours);
    config.capture_v2 = true;
    SimNetwork::start(config).expect("the simulated network starts")
}

/// The addresses of the nodes of `behaviour`.
fn nodes_of(sim: &SimNetwork, behaviour: Behaviour) -> Vec<SocketAddr> {
    let nodes = sim.nodes().iter().filter(|n| n.behaviour == behaviour);
    nodes.map(|n| n.addr).collect()
}

/// Each row's (good, transport), by address.
fn rows(db: &Path) -> HashMap<String, (bool, Option<String>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT address, good, transport FROM peers")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

#[test]
fn v2_peers_are_probed_over_v2_and_only_they_answer_for_p2p_v2() {
    let _serial = heavy();
    let sim = network();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v2.db");
    let seed = sim.seed().to_string();
    let mut extra = vec!["--threads", "32", "--retry-scale", "0.001"];
    extra.extend(DNS_FLAGS);
    let mut seeder = Seeder::start(&crawl_args(arg(&db), &seed, &extra), "info");
    let v2: Vec<String> = nodes_of(&sim, Behaviour::V2)
        .iter()
        .map(ToString::to_string)
        .collect();
    let took = wait_until_good(&db, &v2, 95, Duration::from_secs(90));
    eprintln!(
        "95% of {} v2 nodes good after {:.1} s",
        v2.len(),
        took.as_secs_f64()
    );
    // Every v1 node advertising P2P_V2 has had its v2 attempt, and its v1 probe after it.
    let liars = nodes_of(&sim, Behaviour::V1AdvertisingV2);
    let liar_text: Vec<String> = liars.iter().map(ToString::to_string).collect();
    wait_until_good(&db, &liar_text, 95, Duration::from_secs(60));
    let answers = x800_answers(&seeder);
    seeder.signal("TERM");
    assert!(seeder.wait_exit(Duration::from_secs(10)).0.success());

    let rows = rows(&db);
    let v2_good: Vec<&String> = v2.iter().filter(|a| rows[*a].0).collect();
    for a in &v2_good {
        assert_eq!(rows[*a].1.as_deref(), Some("v2"), "v2 node {a}");
    }
    for a in &liar_text {
        let (good, transport) = &rows[a];
        assert!(
            !*good || transport.as_deref() == Some("v1"),
            "{a}: {transport:?}"
        );
        assert!(
            sim.sessions(a.parse().unwrap()).v2_attempts > 0,
            "{a} got no v2 attempt"
        );
    }
    for a in nodes_of(&sim, Behaviour::V2Garbage) {
        assert!(
            !rows.get(&a.to_string()).is_some_and(|r| r.0),
            "garbage node {a} good"
        );
    }
    v1_nodes_without_the_bit_never_get_a_v2_attempt(&sim);
    // The v2 peers are the nodes that speak v2 (one good when answered may have dropped out
    // of the good set by the time the seeder stopped).
    let v2_ips: HashSet<IpAddr> = (nodes_of(&sim, Behaviour::V2).iter())
        .map(SocketAddr::ip)
        .collect();
    let liar_ips: HashSet<IpAddr> = liars.iter().map(SocketAddr::ip).collect();
    for (name, ips) in &answers {
        assert!(!ips.is_empty(), "{name}: no answer");
        for ip in ips {
            assert!(v2_ips.contains(ip), "{name}: {ip} is not a v2 peer");
            assert!(!liar_ips.contains(ip));
        }
    }
    encrypted_after_the_handshake(&sim);
}

/// The A records of `x800` and `x809`.
fn x800_answers(seeder: &Seeder) -> Vec<(String, Vec<IpAddr>)> {
    let server = seeder.dns_addr();
    let socket = client("127.0.0.1:0");
    // The DNS cache is rebuilt every few seconds: wait for it to hold the v2 peers.
    std::thread::sleep(Duration::from_secs(6));
    ["x800.seed.example.com", "x809.seed.example.com"]
        .iter()
        .enumerate()
        .map(|(id, name)| {
            let packet = query(id as u16, name, RecordType::A, Some(4096));
            let answer = exchange(&socket, server, &packet).expect("an answer");
            ((*name).to_owned(), addresses(&answer))
        })
        .collect()
}

/// The `Good` nodes whose services lack P2P_V2 were never sent anything but v1.
fn v1_nodes_without_the_bit_never_get_a_v2_attempt(sim: &SimNetwork) {
    let plain = sim
        .nodes()
        .iter()
        .filter(|n| n.behaviour == Behaviour::Good && !n.services.has(ServiceFlags::P2P_V2));
    let mut probed = 0;
    for node in plain {
        let sessions = sim.sessions(node.addr);
        assert_eq!(sessions.v2_attempts, 0, "{} got a v2 attempt", node.addr);
        probed += u64::from(sessions.v1 > 0);
    }
    assert!(probed > 100, "only {probed} plain v1 nodes probed");
}

/// After the handshake, nothing a v2 probe sent shows a plaintext command.
fn encrypted_after_the_handshake(sim: &SimNetwork) {
    let captures = sim.v2_captures();
    assert!(
        captures.len() >= 80,
        "{} v2 sessions captured",
        captures.len()
    );
    for bytes in &captures {
        assert!(
            !bytes.is_empty(),
            "a v2 session sent nothing after the handshake"
        );
        for command in [&b"version"[..], b"verack", b"getaddr", b"sendaddrv2"] {
            assert!(
                !bytes.windows(command.len()).any(|w| w == command),
                "plaintext {:?} after a v2 handshake",
                String::from_utf8_lossy(command)
            );
        }
    }
}
