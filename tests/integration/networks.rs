//! Tor v3, I2P and CJDNS (issue 12): the real binary crawls a simulated network whose
//! onion and I2P nodes are reachable only through the SOCKS5 proxies the simulation runs
//! (an emulated Tor and an emulated I2P router), and whose CJDNS nodes listen on fc00::/8
//! (routed to `lo`, which needs root; without it that part is skipped, and says so).

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bitcoin::Network as Chain;
use bitcoin::p2p::Magic;
use dnsseeder::sim::{Behaviour, Network, NodeSpec, SimConfig, SimNetwork};
use dnsseeder::testkit::dns_client::{addresses, client, exchange, query};
use hickory_proto::rr::RecordType;

use crate::util::{DNS_FLAGS, Seeder, arg, crawl_args, heavy, run_ok, wait_until_good};

/// Probes in flight through each proxy at most (`--proxy-probes`).
const CAP: u64 = 8;

/// Rows of `db` among `addrs` that are good (0 while the file cannot be read).
fn good_among(db: &Path, addrs: &[String]) -> HashSet<String> {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return HashSet::new();
    };
    let rows = conn
        .prepare(
            "SELECT address FROM peers WHERE good = 1 AND address IN \
             (SELECT value FROM json_each(?1))",
        )
        .and_then(|mut stmt| {
            let json = serde_json::to_string(addrs).expect("addresses as JSON");
            stmt.query_map([json], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<HashSet<String>>>()
        });
    rows.unwrap_or_default()
}

/// The public addresses of the good nodes of `network`.
fn good_of(sim: &SimNetwork, network: Network) -> Vec<String> {
    let nodes = sim
        .nodes()
        .iter()
        .filter(|n: &&NodeSpec| n.network == network && n.behaviour == Behaviour::Good);
    nodes.map(|n| n.public.to_string()).collect()
}

/// 700 nodes of every behaviour: 20% onion, 10% I2P, 10% CJDNS when fc00::/8 can be routed
/// to `lo` (else none, and the reason is printed).
fn hidden_network() -> (SimNetwork, bool) {
    let mut config = SimConfig::mixed(700, Magic::from(Chain::Regtest), 18444);
    config.place(Network::Onion, 0.2);
    config.place(Network::I2p, 0.1);
    let cjdns = match dnsseeder::testkit::ensure_cjdns_route() {
        Ok(()) => {
            config.place(Network::Cjdns, 0.1);
            true
        }
        Err(why) => {
            eprintln!("skipped: the CJDNS part of this test: {why}");
            false
        }
    };
    (
        SimNetwork::start(config).expect("the simulated network starts"),
        cjdns,
    )
}

/// The flags for the proxies the simulation runs, and CJDNS if routed.
fn network_flags(sim: &SimNetwork, cjdns: bool) -> Vec<String> {
    let mut flags = vec![
        "--onion-proxy".to_owned(),
        sim.onion_proxy().expect("an emulated Tor").to_string(),
        "--i2p-proxy".to_owned(),
        sim.i2p_proxy().expect("an emulated I2P router").to_string(),
        "--proxy-probes".to_owned(),
        CAP.to_string(),
        "--threads".to_owned(),
        "64".to_owned(),
        "--retry-scale".to_owned(),
        "0.005".to_owned(),
    ];
    if cjdns {
        flags.push("--cjdns-reachable".to_owned());
    }
    flags.extend(DNS_FLAGS.iter().map(|f| (*f).to_owned()));
    flags
}

/// Every onion, I2P and CJDNS node that should be good ends good through its route; no
/// onion or I2P address is dialed directly or sent to a proxy as an IP; the proxies never
/// carry more than `--proxy-probes` at once; a Tor proxy stopped mid-run costs the onion
/// peers nothing (reason `proxy`, counted), IPv4 crawling goes on, onion probes resume; DNS
/// never serves these addresses; their dump lines are makeseeds.py's.
#[test]
fn hidden_networks_are_crawled_through_their_routes() {
    let _serial = heavy();
    let (sim, cjdns) = hidden_network();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("networks.db");
    let seed = sim.seed().to_string();
    let flags = network_flags(&sim, cjdns);
    let extra: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut seeder = Seeder::start(
        &crawl_args(arg(&db), &seed, &extra),
        "info,dnsseeder::p2p=debug",
    );
    let mut hidden = good_of(&sim, Network::Onion);
    hidden.extend(good_of(&sim, Network::I2p));
    hidden.extend(good_of(&sim, Network::Cjdns));
    let took = wait_until_good(&db, &hidden, 95, Duration::from_secs(120));
    eprintln!(
        "95% of {} good onion, I2P and CJDNS nodes good after {:.1} s",
        hidden.len(),
        took.as_secs_f64()
    );

    tor_stopped_mid_run(&sim, &db, &seeder);
    no_hidden_address_in_dns(&sim, &seeder);
    for network in [Network::Onion, Network::I2p] {
        let stats = sim.proxy(network).expect("its proxy runs").stats();
        eprintln!("{network:?} proxy: {stats:?}");
        assert!(stats.requests > 0, "{network:?}: no request");
        assert_eq!(stats.ip_requests, 0, "{network:?}: a request named an IP");
        assert_eq!(stats.domain_requests, stats.requests, "{network:?}");
        assert!(
            stats.max_in_flight <= CAP,
            "{network:?}: {stats:?} over the cap {CAP}"
        );
    }
    assert_eq!(
        sim.hidden_direct_connections(),
        0,
        "a hidden node was dialed directly"
    );
    for line in seeder.log().iter().filter(|l| l.contains(" dial ")) {
        if line.contains(".onion:") || line.contains(".b32.i2p:") {
            assert!(line.contains(" via "), "dialed directly: {line}");
        }
    }
    // The rest reads a database that no longer changes.
    seeder.signal("TERM");
    assert!(seeder.wait_exit(Duration::from_secs(10)).0.success());
    dump_lines_are_makeseeds_lines(&db, &sim);
    cli_shows_each_network(&db, cjdns);
}

/// `peers --network NAME --good` lists exactly the good rows of that network (from the
/// seeder's own database, read with SQL), and `stats` has a line per network.
fn cli_shows_each_network(db: &Path, cjdns: bool) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let networks: &[(&str, i64)] = if cjdns {
        &[("onion", 3), ("i2p", 4), ("cjdns", 5)]
    } else {
        &[("onion", 3), ("i2p", 4)]
    };
    let stats = run_ok(&["stats", "--db", arg(db)]);
    for &(name, family) in networks {
        let args = [
            "peers",
            "--db",
            arg(db),
            "--network",
            name,
            "--good",
            "--format",
            "json",
        ];
        let rows: Vec<serde_json::Value> = serde_json::from_str(&run_ok(&args)).unwrap();
        let listed: HashSet<String> = (rows.iter())
            .map(|r| r["address"].as_str().unwrap().to_owned())
            .collect();
        let mut stmt = conn
            .prepare("SELECT address FROM peers WHERE good = 1 AND family = ?1")
            .unwrap();
        let expected: HashSet<String> = (stmt.query_map([family], |r| r.get(0)).unwrap())
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(!expected.is_empty(), "no good {name} peer");
        assert_eq!(listed, expected, "peers --network {name} --good");
        assert!(rows.iter().all(|r| r["network"] == name));
        let line = format!(
            "  {name:<13}{} / {}",
            count(&conn, family, false),
            expected.len()
        );
        assert!(
            stats.contains(&line),
            "stats has no line {line:?}:\n{stats}"
        );
    }
}

/// Rows of `family` (good ones only if `good`).
fn count(conn: &rusqlite::Connection, family: i64, good: bool) -> usize {
    conn.query_row(
        "SELECT count(*) FROM peers WHERE family = ?1 AND (good = 1 OR NOT ?2)",
        rusqlite::params![family, good],
        |r| r.get(0),
    )
    .unwrap()
}

/// Stops the emulated Tor for a while: the good onion peers stay good, the failures are
/// counted as reason `proxy`, IPv4 peers are still probed, and onion probes resume once
/// the proxy is back.
fn tor_stopped_mid_run(sim: &SimNetwork, db: &Path, seeder: &Seeder) {
    let tor = sim.proxy(Network::Onion).expect("an emulated Tor");
    let onion = good_of(sim, Network::Onion);
    let good_before = good_among(db, &onion);
    tor.pause();
    let paused_at = dnsseeder::unix_now();
    seeder.wait_for_log("the proxy of --onion-proxy", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(6));
    let ipv4_tried = tried_since(db, 1, paused_at);
    assert!(ipv4_tried > 0, "no IPv4 probe while Tor was down");
    let good_after = good_among(db, &onion);
    let lost: Vec<&String> = good_before.difference(&good_after).collect();
    assert!(lost.is_empty(), "onion peers lost their standing: {lost:?}");
    let counted = seeder.log().iter().rev().find_map(|l| {
        let (_, rest) = l.split_once("; by network: ")?;
        let (_, failures) = rest.split_once("; ")?;
        failures
            .split_once(" proxy failures")
            .map(|(n, _)| n.to_owned())
    });
    let counted: u64 = counted.and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(counted > 0, "the status line counts no proxy failure");
    let requests = tor.stats().requests;
    tor.resume().expect("the emulated Tor listens again");
    seeder.wait_for_log("answers again", Duration::from_secs(30));
    let start = Instant::now();
    while tor.stats().requests <= requests {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "onion probes did not resume"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("Tor down: {ipv4_tried} IPv4 peers probed meanwhile, {counted} proxy failures");
}

/// Rows of `family` tried at or after `since`.
fn tried_since(db: &Path, family: i64, since: i64) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT count(*) FROM peers WHERE family = ?1 AND last_try >= ?2",
        [family, since],
        |r| r.get(0),
    )
    .unwrap()
}

/// A and AAAA answers for several masks hold only clear-net node addresses.
fn no_hidden_address_in_dns(sim: &SimNetwork, seeder: &Seeder) {
    let server = seeder.dns_addr();
    let socket = client("127.0.0.1:0");
    let clear: HashSet<IpAddr> = (sim.nodes().iter())
        .filter(|n| n.network == Network::Clear)
        .map(|n| n.addr.ip())
        .collect();
    let mut served = 0;
    for (id, name) in [
        "seed.example.com",
        "x1.seed.example.com",
        "x9.seed.example.com",
    ]
    .iter()
    .enumerate()
    {
        for rtype in [RecordType::A, RecordType::AAAA] {
            let packet = query(id as u16, name, rtype, Some(4096));
            let answer = exchange(&socket, server, &packet).expect("an answer");
            for ip in addresses(&answer) {
                assert!(
                    clear.contains(&ip),
                    "{name} {rtype}: {ip} is not a clear-net node"
                );
                served += 1;
            }
        }
    }
    assert!(served > 0, "DNS served nothing");
}

/// Every dump line of an onion, I2P or CJDNS peer matches makeseeds.py's patterns for its
/// network (run by Python 3 with Bitcoin Core's regular expressions), good ones flagged 1.
fn dump_lines_are_makeseeds_lines(db: &Path, sim: &SimNetwork) {
    let dump = db.with_extension("dump");
    run_ok(&["dump", "--db", arg(db), "-o", arg(&dump)]);
    let script = r#"
import re, sys, collections
V4 = re.compile(r"^(([0-2]?\d{1,2})\.([0-2]?\d{1,2})\.([0-2]?\d{1,2})\.([0-2]?\d{1,2})):(\d{1,5})$")
V6 = re.compile(r"^\[([\da-f:]+)]:(\d{1,5})$", re.IGNORECASE)
ONION = re.compile(r"^([a-z2-7]{56}\.onion):(\d+)$")
I2P = re.compile(r"^([a-z2-7]{52}\.b32\.i2p):(\d{1,5})$")
counts = collections.Counter()
for line in open(sys.argv[1]):
    if line.startswith('#'):
        continue
    tokens = line.split()
    assert len(tokens) >= 12, line
    address, good = tokens[0], int(tokens[1])
    if V4.match(address):
        net = 'ipv4'
    elif V6.match(address):
        net = 'cjdns' if V6.match(address).group(1).startswith('fc') else 'ipv6'
    elif ONION.match(address):
        net = 'onion'
    elif I2P.match(address):
        net = 'i2p'
    else:
        raise SystemExit('no makeseeds pattern matches ' + address)
    float(tokens[7][:-1]); int(tokens[2]); int(tokens[10]); int(tokens[9], 16); int(tokens[8])
    counts[(net, good)] += 1
for (net, good), n in sorted(counts.items()):
    print(net, good, n)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&dump)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good_in = |net: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{net} 1 ")))
            .map_or(0, |n| n.trim().parse::<usize>().unwrap())
    };
    eprintln!("dump by network and good flag:\n{text}");
    for (net, network) in [
        ("onion", Network::Onion),
        ("i2p", Network::I2p),
        ("cjdns", Network::Cjdns),
    ] {
        let expected = good_of(sim, network).len();
        assert!(
            good_in(net) * 100 >= expected * 95,
            "{net}: {} good lines of {expected}",
            good_in(net)
        );
    }
}
