//! Crawl order under pressure (issue 11): seeds go first whatever the database holds, and
//! addresses many peers vouch for go before one source's flood.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::sim::{Behaviour, SimConfig, SimNetwork};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::util::{Seeder, arg, crawl_args, heavy, wait_until_good};

fn good_nodes(sim: &SimNetwork) -> Vec<String> {
    let nodes = sim
        .nodes()
        .iter()
        .filter(|n| n.behaviour == Behaviour::Good);
    nodes.map(|n| n.addr.to_string()).collect()
}

/// The hostile network of issue 11: 1,500 nodes, 15% of them flooding addresses where
/// nothing listens (2,500 kept per probe, over 550,000 in all, against a cap of 50,000).
/// Real nodes are announced by many peers, flood addresses by one each: the real ones are
/// probed first and stay, and at least 95% of the good nodes are good within 90 s.
#[test]
fn a_flood_does_not_starve_the_nodes_many_peers_vouch_for() {
    let _serial = heavy();
    let mut behaviours = vec![Behaviour::Good; 1275];
    behaviours.extend(std::iter::repeat_n(Behaviour::AddrFlood, 225));
    behaviours[1..].shuffle(&mut rand::rngs::StdRng::seed_from_u64(11));
    let mut config = SimConfig::new(Magic::from(Network::Regtest), 18444, &behaviours);
    config.flood_messages = 5;
    let sim = SimNetwork::start(config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flood.db");
    let seed = sim.seed().to_string();
    let extra = [
        "--threads",
        "64",
        "--max-addresses",
        "50000",
        "--retry-scale",
        "0.001",
    ];
    let mut seeder = Seeder::start(&crawl_args(arg(&db), &seed, &extra), "info");
    let good = good_nodes(&sim);
    let took = wait_until_good(&db, &good, 95, Duration::from_secs(90));
    eprintln!(
        "95% of {} good nodes good after {:.1} s",
        good.len(),
        took.as_secs_f64()
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (rows, flood_good): (u64, u64) = conn
        .query_row(
            "SELECT count(*), count(*) FILTER (WHERE good = 1 AND address NOT IN \
             (SELECT value FROM json_each(?1))) FROM peers",
            [serde_json::to_string(
                &sim.nodes()
                    .iter()
                    .map(|n| n.addr.to_string())
                    .collect::<Vec<_>>(),
            )
            .unwrap()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(rows <= 50_000, "{rows} rows over the cap");
    assert_eq!(flood_good, 0, "an address no node holds is good");
    seeder.signal("TERM");
    assert!(seeder.wait_exit(Duration::from_secs(10)).0.success());
}

/// After a million generated rows of addresses nothing answers (as after `import` of a big
/// dump), `--seed` is dialed within 2 s of start, and at least 90% of the good nodes of the
/// 2,000-node network behind it are good within 120 s at 256 threads.
#[test]
fn seeds_go_first_after_a_million_unreachable_rows() {
    use dnsseeder::testkit::generate::{Options, generate};
    let _serial = heavy();
    let sim =
        SimNetwork::start(SimConfig::mixed(2000, Magic::from(Network::Regtest), 18444)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("import.db");
    let store = dnsseeder::store::Store::open(&db).unwrap();
    let options = Options {
        rows: 1_000_000,
        good: 50_000,
        seed: 3,
        loopback: true,
        now: dnsseeder::unix_now(),
    };
    generate(store.connection(), &options).unwrap();
    let nodes: HashSet<String> = sim.nodes().iter().map(|n| n.addr.to_string()).collect();
    let mut delete = store
        .connection()
        .prepare("DELETE FROM peers WHERE address = ?1")
        .unwrap();
    for node in &nodes {
        delete.execute([node]).unwrap();
    }
    drop(delete);
    drop(store);
    let seed = sim.seed().to_string();
    let started = Instant::now();
    let args = crawl_args(arg(&db), &seed, &["--threads", "256"]);
    let mut seeder = Seeder::start(&args, "info,dnsseeder::p2p=debug");
    seeder.wait_for_log(&format!(" dial {seed}"), Duration::from_secs(10));
    let dialed = started.elapsed();
    assert!(
        dialed < Duration::from_secs(2),
        "--seed dialed {dialed:?} after start"
    );
    let good = good_nodes(&sim);
    let took = wait_until_good(&db, &good, 90, Duration::from_secs(120));
    eprintln!(
        "seed dialed after {:.2} s; 90% of {} good nodes good after {:.1} s",
        dialed.as_secs_f64(),
        good.len(),
        took.as_secs_f64()
    );
    // The writer commits what is queued, evicting at the 1M cap; in a debug build that
    // and SQLite's checkpoint at close take several seconds.
    seeder.signal("TERM");
    let (status, stopping) = seeder.wait_exit(Duration::from_secs(60));
    eprintln!("stopped {:.1} s after SIGTERM", stopping.as_secs_f64());
    assert!(status.success());
}
