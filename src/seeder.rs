//! Running the seeder: `dnsseeder run` and `dnsseeder demo` start, from a validated
//! [`Config`], the DNS server (bound first, so a taken port fails at startup) and the
//! crawler, then run the main loop that logs the status line and writes the dump, and
//! stop everything in order on SIGINT/SIGTERM (or the demo's timer).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, select, tick};

use crate::addr::Family;
use crate::asmap::Asmap;
use crate::cli::{DbArg, DemoArgs, NetworkArg, RateLimit, RunArgs, TransferArgs};
use crate::config::Config;
use crate::crawler::Networks;
use crate::crawler::{CrawlCounters, Crawler, ProxyKind};
use crate::dns::{Cidr, DnsHandle, DnsServer, PeerSource};
use crate::metrics::{DnsSources, MetricsServer, PeerSnapshot, Sources};
use crate::sim::{self, Network, SimConfig, SimNetwork};
use crate::store::{Store, Summary};
use crate::{dump, unix_now};

/// `dnsseeder run`.
///
/// # Errors
/// Unusable flags ([`UsageError`](crate::cli::UsageError)), an unusable database, or a
/// failure to start.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let mut config = Config::from_args(args)?;
    if let Some(path) = &args.asmap {
        // Checked before anything starts, with or without DNS.
        let asmap = Arc::new(Asmap::from_file(path)?);
        if let Some(dns) = &mut config.dns {
            log::info!(
                "--asmap {}: answers take one address per ASN first",
                path.display()
            );
            dns.asmap = Some(asmap);
        }
    }
    let signals = signal_channel()?;
    serve(&config, &signals)
}

/// Runs the seeder until a message arrives on `stop` (a signal, or the demo's timer):
/// opens the database, binds DNS, starts the crawler, then logs the status line and
/// writes the dump on their intervals.
///
/// # Errors
/// When the dump's directory is unusable, the database cannot be opened, the DNS
/// address cannot be bound or a thread cannot start.
pub fn serve(config: &Config, stop: &Receiver<&'static str>) -> anyhow::Result<()> {
    raise_fd_limit();
    if let Some(path) = &config.dump {
        check_dump_path(path)?;
    }
    let store = Store::open(&config.crawl.db)?;
    log::info!(
        "dnsseeder {} starting: database {}, {} crawler threads",
        env!("CARGO_PKG_VERSION"),
        config.crawl.db.display(),
        config.crawl.threads
    );
    // Bind DNS before crawling: a port that cannot be had is a startup error.
    let dns = start_dns(config)?;
    let crawler = Crawler::start(config.crawl.clone())?;
    let peers = PeerSnapshot::default();
    let metrics = start_metrics(config, dns.as_ref(), &crawler, &peers)?;
    let running = Running {
        config,
        store,
        dns,
        crawler,
        peers,
        metrics,
    };
    running.log_status(running.crawl_figures());
    let why = running.main_loop(stop);
    running.stop(why);
    Ok(())
}

/// Binds and starts the DNS server on a connection of its own, when `--host` is given.
fn start_dns(config: &Config) -> anyhow::Result<Option<DnsHandle>> {
    let Some(dns) = &config.dns else {
        log::info!("no --host: crawling only, no DNS server");
        return Ok(None);
    };
    let source = StoreSource::new(Store::open(&config.crawl.db)?);
    let server = DnsServer::bind(dns.clone(), source)?;
    Ok(Some(server.spawn()?))
}

/// Starts `/metrics` and `/health` when `--metrics-listen` is given.
fn start_metrics(
    config: &Config,
    dns: Option<&DnsHandle>,
    crawler: &Crawler,
    peers: &PeerSnapshot,
) -> anyhow::Result<Option<MetricsServer>> {
    let Some(metrics) = config.metrics else {
        return Ok(None);
    };
    let dns = dns
        .zip(config.dns.as_ref())
        .map(|(handle, dns)| DnsSources {
            counters: handle.counters(),
            answers: handle.answer_sizes(),
            default_mask: dns.default_mask,
        });
    let sources = Sources {
        crawl: Arc::clone(&crawler.counters),
        dns,
        peers: peers.clone(),
        probe_age: metrics.probe_age,
    };
    MetricsServer::start(metrics.listen, sources).map(Some)
}

/// A started seeder: what the main loop reads and what stopping takes down.
struct Running<'a> {
    config: &'a Config,
    /// The status line's and the dump's own connection.
    store: Store,
    dns: Option<DnsHandle>,
    crawler: Crawler,
    /// The peer counts of the last status line, for `/metrics` and `/health`.
    peers: PeerSnapshot,
    metrics: Option<MetricsServer>,
}

impl Running<'_> {
    /// Logs the status line and writes the dump on their ticks until `stop` says why.
    fn main_loop(&self, stop: &Receiver<&'static str>) -> &'static str {
        let status_tick = tick(self.config.status_interval);
        let dump_tick = tick(self.config.dump_interval);
        loop {
            select! {
                recv(stop) -> why => return why.unwrap_or("stop channel closed"),
                recv(status_tick) -> _ => self.log_status(self.crawl_figures()),
                recv(dump_tick) -> _ => write_dump(&self.store, self.config.dump.as_deref()),
            }
        }
    }

    /// Probes in flight, and failures of the proxies if any is configured.
    fn crawl_figures(&self) -> (usize, Option<u64>) {
        let in_flight = self.crawler.counters.in_flight.load(Ordering::Relaxed);
        let networks = &self.config.crawl.networks;
        let proxied = ProxyKind::ALL.iter().any(|&k| networks.proxy(k).is_some());
        (in_flight, proxied.then(|| self.crawler.gates.failures()))
    }

    /// Stops the crawler (in-flight probes finish), writes the last dump and status
    /// line, then stops DNS.
    fn stop(self, why: &str) {
        log::info!(
            "{why}: stopping; in-flight probes finish within {:?}",
            self.config.crawl.probe.deadline
        );
        let started = Instant::now();
        let counters = Arc::clone(&self.crawler.counters);
        let (_, proxy_failures) = self.crawl_figures();
        self.crawler.stop();
        log::info!(
            "crawler stopped in {:.1} s; {}",
            started.elapsed().as_secs_f64(),
            crawl_totals(&counters)
        );
        write_dump(&self.store, self.config.dump.as_deref());
        status(
            &self.store,
            &self.peers,
            (0, proxy_failures),
            self.dns.as_ref(),
        );
        if let Some(metrics) = self.metrics {
            metrics.stop();
        }
        if let Some(dns) = self.dns {
            dns.shutdown();
        }
    }

    /// Counts the peers, keeps the counts for `/metrics`, and logs the status line.
    fn log_status(&self, crawl: (usize, Option<u64>)) {
        status(&self.store, &self.peers, crawl, self.dns.as_ref());
    }
}

/// Counts the peers in `store`, keeps the counts in `peers`, and logs the status line.
fn status(
    store: &Store,
    peers: &PeerSnapshot,
    crawl: (usize, Option<u64>),
    dns: Option<&DnsHandle>,
) {
    match store.counts(unix_now()) {
        Ok(summary) => {
            log_status(&summary, crawl, dns_queries(dns));
            peers.set(summary);
        }
        Err(e) => log::error!("status: cannot read the database: {e}"),
    }
}

/// Queries the DNS server has answered so far (0 without one).
fn dns_queries(dns: Option<&DnsHandle>) -> u64 {
    dns.map_or(0, |d| d.counters().queries.load(Ordering::Relaxed))
}

/// Fails early, with the path in the message, when the dump's directory is unusable.
fn check_dump_path(path: &Path) -> anyhow::Result<()> {
    let dir = dump::directory_of(path);
    tempfile::tempfile_in(dir).map(drop).with_context(|| {
        format!(
            "--dump {}: cannot write in {}",
            path.display(),
            dir.display()
        )
    })
}

fn write_dump(store: &Store, path: Option<&Path>) {
    let Some(path) = path else { return };
    match dump::write_file(store, path) {
        Ok(lines) => log::info!("dump: {lines} peers written to {}", path.display()),
        Err(e) => log::error!("dump to {} failed: {e:#}", path.display()),
    }
}

/// What the crawler did over the whole run, for the line logged when it stops (the scale
/// bench reads the gossip figures from it).
fn crawl_totals(c: &CrawlCounters) -> String {
    let n = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    format!(
        "{} probes ({} answered), {} results committed in {} batches; learned addresses: \
         {} written, {} skipped as known; {} evicted over --max-addresses",
        n(&c.probes),
        n(&c.successes),
        n(&c.committed),
        n(&c.batches),
        n(&c.learned_written),
        n(&c.learned_skipped),
        n(&c.evicted)
    )
}

/// The status line: peers by status and network, the crawl's pace, proxy failures (with a
/// proxy configured) and DNS queries.
fn log_status(s: &Summary, crawl: (usize, Option<u64>), dns_queries: u64) {
    let (in_flight, proxy_failures) = crawl;
    let proxies = proxy_failures.map_or(String::new(), |n| format!("; {n} proxy failures"));
    log::info!(
        "good {}/{} known (tried {} in last 1h, {} new, {} in flight), {} banned; by \
         network: {}{proxies}; {} DNS queries",
        s.good,
        s.known,
        s.tried_last_hour,
        s.new,
        in_flight,
        s.banned,
        s.by_network(),
        dns_queries
    );
}

/// SIGINT and SIGTERM, as messages.
fn signal_channel() -> anyhow::Result<Receiver<&'static str>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let (tx, rx) = crossbeam_channel::bounded(4);
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install signal handlers")?;
    crate::thread::spawn("signals", move || {
        for signal in signals.forever() {
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            if tx.send(name).is_err() {
                break;
            }
        }
        Ok(())
    })?;
    Ok(rx)
}

/// Raises the soft open-file limit to the hard one: every probe and DNS TCP client is
/// a descriptor, and the usual soft limit of 1024 is below `--threads` plus clients.
pub fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => log::debug!("open file limit: {n}"),
        Err(e) => log::warn!("cannot raise the open file limit: {e}"),
    }
}

/// The zone the demo serves.
pub const DEMO_ZONE: &str = "seed.example.com";
/// The network the demo's simulated nodes speak.
const DEMO_NETWORK: NetworkArg = NetworkArg::Regtest;

/// The flags `demo` runs with, as if typed after `dnsseeder run`: regtest against the
/// simulated seed on loopback, a fast clock and short timeouts, the demo zone served
/// without a rate limit, and no DNS seeds.
fn demo_run_args(args: &DemoArgs, db: &Path, seed: SocketAddr, networks: Networks) -> RunArgs {
    RunArgs {
        onion_proxy: networks.onion_proxy,
        i2p_proxy: networks.i2p_proxy,
        cjdns_reachable: networks.cjdns,
        db: DbArg {
            db: db.to_path_buf(),
        },
        network: DEMO_NETWORK,
        allow_private: true,
        retry_scale: 0.01,
        host: Some(DEMO_ZONE.to_owned()),
        ns: vec![format!("ns.{DEMO_ZONE}")],
        mbox: Some(format!("hostmaster.{DEMO_ZONE}")),
        dns_listen: vec![args.dns_listen],
        dns_rate_limit: RateLimit(None),
        no_dns_seed: true,
        seeds: vec![seed],
        min_height: Some(0),
        connect_timeout: 2.0,
        probe_timeout: 3.0,
        // Over three times the 300 ms a `Slow` node takes to answer; the silent, slowloris
        // and endless-stream nodes fail after 1 s instead of the 3 s deadline.
        handshake_timeout: Some(1.0),
        status_interval: 5,
        threads: args.threads.max(1),
        // 127.0.0.1 may transfer the zone, redrawn every 5 s: `dig ... AXFR` shows it.
        transfer: TransferArgs {
            axfr_allow: vec![Cidr::host(IpAddr::V4(Ipv4Addr::LOCALHOST))],
            zone_refresh: 5,
            ..TransferArgs::default()
        },
        ..RunArgs::default()
    }
}

/// The demo's configuration: its flags through the same validation as `run`'s.
///
/// # Errors
/// A [`UsageError`](crate::cli::UsageError) when `--threads` is over the limit.
fn demo_config(
    args: &DemoArgs,
    db: &Path,
    seed: SocketAddr,
    networks: Networks,
) -> anyhow::Result<Config> {
    let mut config = Config::from_args(&demo_run_args(args, db, seed, networks))?;
    // A setting that has no flag, shortened to the demo's pace: DNS answer sets are
    // rebuilt after 2 s (not 5 s).
    if let Some(dns) = &mut config.dns {
        dns.cache_ttl = Duration::from_secs(2);
    }
    Ok(config)
}

/// What stops the demo: SIGINT or SIGTERM, or the end of `--duration`.
fn demo_stop(duration: Option<u64>) -> anyhow::Result<Receiver<&'static str>> {
    let signals = signal_channel()?;
    let Some(secs) = duration else {
        return Ok(signals);
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    let timer = crossbeam_channel::after(Duration::from_secs(secs));
    crate::thread::spawn("demo-timer", move || {
        select! {
            recv(signals) -> s => { let _ = tx.send(s.unwrap_or("signal")); }
            recv(timer) -> _ => { let _ = tx.send("demo duration over"); }
        }
        Ok(())
    })?;
    Ok(rx)
}

/// `dnsseeder demo`: a simulated network on 127.0.0.0/8 and the seeder crawling it.
///
/// # Errors
/// A [`UsageError`](crate::cli::UsageError) for `--threads` over 4096; a runtime error
/// when the simulated network or the seeder cannot start.
pub fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    raise_fd_limit();
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| temp.path().join("demo.db"));
    let sim = SimNetwork::start(demo_network(args.nodes.max(32)))
        .context("cannot start the simulated network")?;
    let networks = demo_networks(&sim);
    log::info!("demo: {}, database {}", describe(&sim), db.display());
    let config = demo_config(args, &db, sim.seed(), networks)?;
    serve(&config, &demo_stop(args.duration)?)?;
    log::info!(
        "demo: look inside with `dnsseeder peers --db {}` (kept only with --db)",
        db.display()
    );
    Ok(())
}

/// The demo's simulated network: every behaviour, 30% of the good nodes speaking BIP324 v2,
/// 15% of the nodes onion and 5% I2P (behind the proxies it runs), and 5% CJDNS when
/// `fc00::/8` is routed to `lo`.
fn demo_network(nodes: usize) -> SimConfig {
    let mut config = SimConfig::mixed(
        nodes,
        DEMO_NETWORK.network().into(),
        DEMO_NETWORK.default_port(),
    );
    config.speak_v2(0.3);
    config.place(Network::Onion, 0.15);
    config.place(Network::I2p, 0.05);
    match sim::cjdns_bindable() {
        Ok(()) => config.place(Network::Cjdns, 0.05),
        // The error names the route command.
        Err(e) => log::info!("demo: no CJDNS nodes: {e}"),
    }
    config
}

/// The routes to the demo's networks: its emulated Tor and I2P proxies, and CJDNS if it
/// has such nodes.
fn demo_networks(sim: &SimNetwork) -> Networks {
    Networks {
        proxy: None,
        onion_proxy: sim.onion_proxy(),
        i2p_proxy: sim.i2p_proxy(),
        cjdns: sim.nodes().iter().any(|n| n.network == Network::Cjdns),
    }
}

/// The demo's network in one line: nodes per network and the proxies' addresses.
fn describe(sim: &SimNetwork) -> String {
    let count = |network| sim.nodes().iter().filter(|n| n.network == network).count();
    let at = |proxy: Option<SocketAddr>| proxy.map_or("-".to_owned(), |a| a.to_string());
    format!(
        "{} simulated nodes: {} on 127.0.0.0/8 (seed {}), {} onion behind the emulated Tor \
         at {}, {} I2P behind the emulated I2P router at {}, {} CJDNS on fc00::/8",
        sim.nodes().len(),
        count(Network::Clear),
        sim.seed(),
        count(Network::Onion),
        at(sim.onion_proxy()),
        count(Network::I2p),
        at(sim.i2p_proxy()),
        count(Network::Cjdns)
    )
}

/// The peer store as the DNS server's source of answer sets: one indexed query per
/// family (the `peers_good` index), on the DNS side's own read connection.
///
/// Public so that benchmarks serve DNS from a real database as `run` does.
#[derive(Debug)]
pub struct StoreSource {
    store: Store,
    /// `PRAGMA data_version` at the last refresh round.
    version: Option<i64>,
}

impl StoreSource {
    /// Serves the good peers of `store`; give it a connection of its own (the cache
    /// refresher queries it from its own thread).
    pub fn new(store: Store) -> Self {
        Self {
            store,
            version: None,
        }
    }
}

impl PeerSource for StoreSource {
    fn good_peers(&mut self, mask: u64) -> anyhow::Result<Vec<IpAddr>> {
        let mut ips = self.store.good_ips(Family::Ipv4, mask)?;
        ips.extend(self.store.good_ips(Family::Ipv6, mask)?);
        Ok(ips)
    }

    fn unchanged(&mut self) -> bool {
        let version = self.store.data_version().ok();
        let unchanged = version.is_some() && version == self.version;
        self.version = version;
        unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crawler::{CrawlConfig, Networks, Policy};
    use crate::dns::DnsConfig;
    use crate::p2p::ProbeOptions;

    /// `demo` once built its configuration by hand; through `Config::from_args` it must
    /// come out the same (with the handshake timeout it has had since issue 11).
    #[test]
    fn demo_config_is_the_one_demo_always_ran_with() {
        let args = DemoArgs {
            db: None,
            nodes: 1000,
            threads: 0,
            dns_listen: "127.0.0.1:5353".parse().unwrap(),
            duration: None,
        };
        let db = Path::new("/tmp/demo.db");
        let seed: SocketAddr = "127.0.0.2:18444".parse().unwrap();
        let mut probe = ProbeOptions::new(bitcoin::p2p::Magic::REGTEST);
        probe.connect_timeout = Duration::from_secs(2);
        probe.deadline = Duration::from_secs(3);
        probe.handshake_timeout = Duration::from_secs(1);
        // The default grace (250 ms), where demo set 300 ms before it had a flag.
        probe.addr_grace = Duration::from_millis(250);
        let mut dns = DnsConfig::new(
            DEMO_ZONE,
            "ns.seed.example.com",
            "hostmaster.seed.example.com",
        );
        dns.listen = vec![args.dns_listen];
        dns.rate_limit = None;
        dns.cache_ttl = Duration::from_secs(2);
        dns.axfr_allow = vec!["127.0.0.1/32".parse().unwrap()];
        dns.zone_refresh = Duration::from_secs(5);
        let expected = Config {
            crawl: CrawlConfig {
                db: db.to_path_buf(),
                threads: 1,
                probe,
                policy: Policy {
                    scale: 0.01,
                    default_port: 18444,
                    min_height: 0,
                    allow_private: true,
                    max_addresses: 1_000_000,
                },
                seeds: vec![seed],
                dns_seeds: Vec::new(),
                networks: Networks::default(),
                proxy_probes: 32,
                v2_first: true,
            },
            status_interval: Duration::from_secs(5),
            dump: None,
            dump_interval: Duration::from_secs(3600),
            dns: Some(dns),
            metrics: None,
        };
        let config = demo_config(&args, db, seed, Networks::default()).unwrap();
        assert_eq!(format!("{config:?}"), format!("{expected:?}"));
    }
}
