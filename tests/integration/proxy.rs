//! `--proxy` with a real SOCKS5 server nobody here wrote: Debian's `microsocks`
//! (`.ci/run` installs it; elsewhere the test skips, and says so). Every IPv4 probe goes
//! through it, and the simulated nodes see no connection that did not come from it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::sim::{Behaviour, SimConfig, SimNetwork};

use crate::util::{Seeder, arg, crawl_args, heavy, wait_until_good};

/// The address microsocks binds its outgoing connections to: the nodes tell its
/// connections from any the seeder would make itself (from 127.0.0.1).
const PROXY_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A running microsocks, killed on drop.
struct Microsocks {
    child: Child,
    addr: SocketAddr,
}

impl Microsocks {
    /// Starts microsocks on a free port of 127.0.0.1, or says why it cannot.
    fn start() -> Result<Microsocks, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new("microsocks")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-b", &PROXY_SOURCE.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "microsocks does not start ({e}): install it with `apt-get install microsocks`"
                )
            })?;
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let started = Microsocks { child, addr };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                return Err(format!("microsocks does not listen on {addr}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(started)
    }
}

impl Drop for Microsocks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `--proxy`, the crawl of a 300-node network goes wholly through microsocks: at least
/// 95% of the good nodes end good, every dial names the proxy, and every connection a node
/// accepted came from the proxy's address.
#[test]
fn every_ipv4_probe_goes_through_microsocks() {
    let proxy = match Microsocks::start() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: every_ipv4_probe_goes_through_microsocks: {why}");
            return;
        }
    };
    let _serial = heavy();
    let sim =
        SimNetwork::start(SimConfig::mixed(300, Magic::from(Network::Regtest), 18444)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("proxy.db");
    let seed = sim.seed().to_string();
    let proxy_flag = proxy.addr.to_string();
    let extra = [
        "--proxy",
        &proxy_flag,
        "--proxy-probes",
        "24",
        "--threads",
        "24",
        "--retry-scale",
        "0.001",
    ];
    let seeder = Seeder::start(
        &crawl_args(arg(&db), &seed, &extra),
        "info,dnsseeder::p2p=debug",
    );
    let good: Vec<String> = (sim.nodes().iter())
        .filter(|n| n.behaviour == Behaviour::Good)
        .map(|n| n.addr.to_string())
        .collect();
    wait_until_good(&db, &good, 95, Duration::from_secs(90));
    let dials: Vec<String> = (seeder.log().into_iter())
        .filter(|l| l.contains(" dial "))
        .collect();
    assert!(dials.len() >= good.len(), "{} dials", dials.len());
    let direct: Vec<&String> = dials
        .iter()
        .filter(|l| !l.ends_with(&format!(" via {proxy_flag}")))
        .collect();
    assert!(direct.is_empty(), "dialed without the proxy: {direct:?}");
    let sources = sim.connection_sources();
    eprintln!("connections accepted by source: {sources:?}");
    assert!(
        sources
            .get(&IpAddr::V4(PROXY_SOURCE))
            .is_some_and(|&n| n > 0)
    );
    assert_eq!(
        sources.len(),
        1,
        "a node saw a connection from elsewhere: {sources:?}"
    );
}
