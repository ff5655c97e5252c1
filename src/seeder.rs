//! `dnsseeder run` and `dnsseeder demo`: turn flags into a validated configuration,
//! start the crawler (and the DNS server), and run the main loop that prints the status
//! line, writes the dump, and stops everything on SIGINT/SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, select, tick};

use crate::addr::Family;
use crate::config::{DemoArgs, NetworkArg, RunArgs, UsageError};
use crate::crawler::{CrawlConfig, CrawlCounters, Crawler, Policy};
use crate::dns::{DnsConfig, DnsServer, PeerSource};
use crate::p2p::ProbeOptions;
use crate::sim::{SimConfig, SimNetwork};
use crate::store::Store;
use crate::{dump, unix_now};

/// Everything `run` needs, validated.
#[derive(Debug, Clone)]
pub struct SeederConfig {
    pub crawl: CrawlConfig,
    pub status_interval: Duration,
    pub dump: Option<PathBuf>,
    pub dump_interval: Duration,
    /// The DNS server, when `--host` is given.
    pub dns: Option<DnsConfig>,
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

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if value.is_finite() && value > 0.0 && value < 1e6 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(usage(format!(
            "{flag} must be a positive number of seconds, got {value}"
        )))
    }
}

impl SeederConfig {
    /// Validates the flags of `run`.
    ///
    /// # Errors
    /// [`UsageError`] naming the flag at fault.
    pub fn from_args(args: &RunArgs) -> anyhow::Result<SeederConfig> {
        if args.threads == 0 || args.threads > 4096 {
            return Err(usage(format!(
                "--threads must be between 1 and 4096, got {}",
                args.threads
            )));
        }
        if !(args.retry_scale.is_finite() && args.retry_scale > 0.0 && args.retry_scale <= 1000.0) {
            return Err(usage(format!(
                "--retry-scale must be a positive factor, got {}",
                args.retry_scale
            )));
        }
        if args.max_addresses == 0 {
            return Err(usage("--max-addresses must be at least 1"));
        }
        if args.host.is_some() && (args.ns.is_none() || args.mbox.is_none()) {
            return Err(usage(
                "--host needs --ns (this server's name) and --mbox (the zone's contact)",
            ));
        }
        if args.dump_interval == 0 || args.status_interval == 0 {
            return Err(usage(
                "--dump-interval and --status-interval must be at least 1 second",
            ));
        }
        let mut probe =
            ProbeOptions::new(args.magic.unwrap_or_else(|| args.network.network().into()));
        probe.connect_timeout = seconds("--connect-timeout", args.connect_timeout)?;
        probe.deadline = seconds("--probe-timeout", args.probe_timeout)?;
        let default_port = args.port.unwrap_or_else(|| args.network.default_port());
        if default_port == 0 {
            return Err(usage("--port must not be 0"));
        }
        let dns_seeds = if args.no_dns_seed {
            Vec::new()
        } else if args.dns_seeds.is_empty() {
            args.network
                .dns_seeds()
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        } else {
            args.dns_seeds.clone()
        };
        let dns = match &args.host {
            None => None,
            Some(host) => {
                let mut dns = DnsConfig::new(
                    host.clone(),
                    args.ns.clone().unwrap_or_default(),
                    args.mbox.clone().unwrap_or_default(),
                );
                dns.listen = args.dns_listen.clone();
                dns.ttl = args.ttl;
                dns.default_mask = args.filter_service;
                dns.allow_filters = args.allow_filters.clone();
                dns.rate_limit = args.dns_rate_limit.0;
                dns.tcp_idle_timeout = Duration::from_secs(args.tcp_idle_timeout.max(1));
                dns.validate().map_err(|e| usage(e.to_string()))?;
                Some(dns)
            }
        };
        Ok(SeederConfig {
            dns,
            crawl: CrawlConfig {
                db: args.db.db.clone(),
                threads: args.threads,
                probe,
                policy: Policy {
                    scale: args.retry_scale,
                    default_port,
                    min_height: args.min_height.unwrap_or_else(|| args.network.min_height()),
                    allow_private: args.allow_private,
                    max_addresses: args.max_addresses,
                },
                seeds: args.seeds.clone(),
                dns_seeds,
            },
            status_interval: Duration::from_secs(args.status_interval),
            dump: args.dump.clone(),
            dump_interval: Duration::from_secs(args.dump_interval),
        })
    }
}

/// `dnsseeder run`.
///
/// # Errors
/// Unusable flags ([`UsageError`]), an unusable database, or a failure to start.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let config = SeederConfig::from_args(args)?;
    let signals = signal_channel()?;
    serve(&config, &signals)
}

/// Runs the seeder until a message arrives on `stop` (a signal, or the demo's timer).
///
/// # Errors
/// When the database cannot be opened or a thread cannot start.
pub fn serve(config: &SeederConfig, stop: &Receiver<&'static str>) -> anyhow::Result<()> {
    raise_fd_limit();
    if let Some(path) = &config.dump {
        check_dump_path(path)?;
    }
    let status_store = Store::open(&config.crawl.db)?;
    log::info!(
        "dnsseeder {} starting: database {}, {} crawler threads",
        env!("CARGO_PKG_VERSION"),
        config.crawl.db.display(),
        config.crawl.threads
    );
    // Bind DNS before crawling: a port that cannot be had is a startup error.
    let dns = match &config.dns {
        Some(dns) => {
            let source = StoreSource::new(Store::open(&config.crawl.db)?);
            let server = DnsServer::bind(dns.clone(), source)?;
            Some(server.spawn()?)
        }
        None => {
            log::info!("no --host: crawling only, no DNS server");
            None
        }
    };
    let dns_queries = || {
        dns.as_ref()
            .map_or(0, |d| d.counters().queries.load(Ordering::Relaxed))
    };
    let crawler = Crawler::start(config.crawl.clone())?;
    let status_tick = tick(config.status_interval);
    let dump_tick = tick(config.dump_interval);
    let why = loop {
        select! {
            recv(stop) -> why => break why.unwrap_or("stop channel closed"),
            recv(status_tick) -> _ => log_status(&status_store, crawler.counters.in_flight.load(Ordering::Relaxed), dns_queries()),
            recv(dump_tick) -> _ => write_dump(&status_store, config.dump.as_deref()),
        }
    };
    log::info!(
        "{why}: stopping; in-flight probes finish within {:?}",
        config.crawl.probe.deadline
    );
    let started = Instant::now();
    let counters = Arc::clone(&crawler.counters);
    crawler.stop();
    log::info!(
        "crawler stopped in {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        crawl_totals(&counters)
    );
    write_dump(&status_store, config.dump.as_deref());
    log_status(&status_store, 0, dns_queries());
    if let Some(dns) = dns {
        dns.shutdown();
    }
    Ok(())
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

fn log_status(store: &Store, in_flight: usize, dns_queries: u64) {
    match store.counts(unix_now()) {
        Ok(s) => log::info!(
            "good {}/{} known (tried {} in last 1h, {} new, {} in flight), {} banned; {} DNS queries",
            s.good,
            s.known,
            s.tried_last_hour,
            s.new,
            in_flight,
            s.banned,
            dns_queries
        ),
        Err(e) => log::error!("status: cannot read the database: {e}"),
    }
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

fn demo_dns(listen: SocketAddr) -> DnsConfig {
    let mut dns = DnsConfig::new(
        DEMO_ZONE,
        format!("ns.{DEMO_ZONE}"),
        format!("hostmaster.{DEMO_ZONE}"),
    );
    dns.listen = vec![listen];
    dns.rate_limit = None;
    dns.cache_ttl = Duration::from_secs(2);
    dns
}

/// `dnsseeder demo`: a simulated network on 127.0.0.0/8 and the seeder crawling it.
///
/// # Errors
/// When the simulated network or the seeder cannot start.
pub fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    raise_fd_limit();
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| temp.path().join("demo.db"));
    let network = NetworkArg::Regtest;
    let magic = network.network().into();
    let sim = SimNetwork::start(SimConfig::mixed(
        args.nodes.max(32),
        magic,
        network.default_port(),
    ))
    .context("cannot start the simulated network")?;
    log::info!(
        "demo: {} simulated nodes on 127.0.0.0/8 (seed {}), database {}",
        sim.nodes().len(),
        sim.seed(),
        db.display()
    );
    let mut probe = ProbeOptions::new(magic);
    probe.connect_timeout = Duration::from_secs(2);
    probe.deadline = Duration::from_secs(3);
    probe.addr_linger = Duration::from_millis(300);
    let config = SeederConfig {
        crawl: CrawlConfig {
            db: db.clone(),
            threads: args.threads.max(1),
            probe,
            policy: Policy {
                scale: 0.01,
                default_port: network.default_port(),
                min_height: 0,
                allow_private: true,
                max_addresses: 1_000_000,
            },
            seeds: vec![sim.seed()],
            dns_seeds: Vec::new(),
        },
        status_interval: Duration::from_secs(5),
        dump: None,
        dump_interval: Duration::from_secs(3600),
        dns: Some(demo_dns(args.dns_listen)),
    };
    let signals = signal_channel()?;
    let stop = match args.duration {
        Some(secs) => {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let timer = crossbeam_channel::after(Duration::from_secs(secs));
            crate::thread::spawn("demo-timer", move || {
                select! {
                    recv(signals) -> s => { let _ = tx.send(s.unwrap_or("signal")); }
                    recv(timer) -> _ => { let _ = tx.send("demo duration over"); }
                }
                Ok(())
            })?;
            rx
        }
        None => signals,
    };
    serve(&config, &stop)?;
    log::info!(
        "demo: look inside with `dnsseeder peers --db {}` (kept only with --db)",
        db.display()
    );
    Ok(())
}
