//! The configuration of `dnsseeder run`, validated: [`Config::from_args`] is the one
//! place where flags become settings, so `run` and `demo` (which fills a
//! [`RunArgs`] in code) go through the same checks. Each concern — crawl limits, the DNS
//! zone, intervals, timeouts — is checked by a short function of its own, and every
//! problem ends in a [`UsageError`] that names the flag (exit code 2).

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{DEFAULT_HANDSHAKE_TIMEOUT, RunArgs, UsageError, V2Transport};
use crate::crawler::{CrawlConfig, Networks, Policy};
use crate::dns::DnsConfig;
use crate::p2p::ProbeOptions;

/// Most crawler threads `--threads` accepts.
const MAX_THREADS: usize = 4096;
/// Largest `--retry-scale`.
const MAX_RETRY_SCALE: f64 = 1000.0;
/// Timeouts in seconds must be below this.
const MAX_TIMEOUT_SECS: f64 = 1e6;

/// Everything `run` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The crawler: database, threads, probe options, policy and bootstrap sources.
    pub crawl: CrawlConfig,
    /// Time between status lines (`--status-interval`).
    pub status_interval: Duration,
    /// Where to write the dump (`--dump`), if anywhere.
    pub dump: Option<PathBuf>,
    /// Time between dumps (`--dump-interval`).
    pub dump_interval: Duration,
    /// The DNS server, when `--host` is given.
    pub dns: Option<DnsConfig>,
    /// The HTTP metrics and health endpoint, when `--metrics-listen` is given.
    pub metrics: Option<MetricsConfig>,
}

/// `--metrics-listen` and `--health-probe-age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where to serve `/metrics` and `/health`.
    pub listen: std::net::SocketAddr,
    /// `/health` fails after this long without a successful probe.
    pub probe_age: Duration,
}

impl Config {
    /// Validates the flags of `run` and builds the configuration from them.
    ///
    /// # Errors
    /// A [`UsageError`] naming the flag at fault, for the first problem found.
    pub fn from_args(args: &RunArgs) -> Result<Config, UsageError> {
        check_crawl_limits(args)?;
        check_zone_flags(args)?;
        check_intervals(args)?;
        let probe = probe_options(args)?;
        let policy = policy(args)?;
        let dns = dns_config(args)?;
        Ok(Config {
            crawl: CrawlConfig {
                db: args.db.db.clone(),
                threads: args.threads,
                probe,
                policy,
                seeds: args.seeds.clone(),
                dns_seeds: dns_seeds(args),
                networks: networks(args),
                proxy_probes: args.proxy_probes,
                v2_first: args.v2_transport == V2Transport::Auto,
            },
            status_interval: Duration::from_secs(args.status_interval),
            dump: args.dump.clone(),
            dump_interval: Duration::from_secs(args.dump_interval),
            dns,
            metrics: args.metrics_listen.map(|listen| MetricsConfig {
                listen,
                probe_age: Duration::from_secs(args.health_probe_age),
            }),
        })
    }
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// `--threads`, `--retry-scale` and `--max-addresses`.
fn check_crawl_limits(args: &RunArgs) -> Result<(), UsageError> {
    if args.threads == 0 || args.threads > MAX_THREADS {
        return Err(usage(format!(
            "--threads must be between 1 and {MAX_THREADS}, got {}",
            args.threads
        )));
    }
    let scale = args.retry_scale;
    if !(scale.is_finite() && scale > 0.0 && scale <= MAX_RETRY_SCALE) {
        return Err(usage(format!(
            "--retry-scale must be a positive factor, got {scale}"
        )));
    }
    if args.max_addresses == 0 {
        return Err(usage("--max-addresses must be at least 1"));
    }
    if args.proxy_probes == 0 || args.proxy_probes > MAX_THREADS {
        return Err(usage(format!(
            "--proxy-probes must be between 1 and {MAX_THREADS}, got {}",
            args.proxy_probes
        )));
    }
    Ok(())
}

/// The proxies and `--cjdns-reachable`.
fn networks(args: &RunArgs) -> Networks {
    Networks {
        proxy: args.proxy,
        onion_proxy: args.onion_proxy,
        i2p_proxy: args.i2p_proxy,
        cjdns: args.cjdns_reachable,
    }
}

/// `--host` needs the names that its NS and SOA records carry; zone transfers need a
/// zone, and the secondaries notified must be allowed to transfer it.
fn check_zone_flags(args: &RunArgs) -> Result<(), UsageError> {
    if args.host.is_some() && (args.ns.is_empty() || args.mbox.is_none()) {
        return Err(usage(
            "--host needs --ns (this server's name) and --mbox (the zone's contact)",
        ));
    }
    let t = &args.transfer;
    if args.host.is_none() && (!t.axfr_allow.is_empty() || !t.notify.is_empty()) {
        return Err(usage(
            "--axfr-allow and --notify need --host: without a zone there is nothing to transfer",
        ));
    }
    if !t.notify.is_empty() && t.axfr_allow.is_empty() {
        return Err(usage(
            "--notify needs --axfr-allow: list the notified secondaries' addresses there, \
             or their transfers are refused",
        ));
    }
    Ok(())
}

/// `--dump-interval` and `--status-interval`.
fn check_intervals(args: &RunArgs) -> Result<(), UsageError> {
    if args.dump_interval == 0 || args.status_interval == 0 {
        return Err(usage(
            "--dump-interval and --status-interval must be at least 1 second",
        ));
    }
    Ok(())
}

/// A timeout flag in seconds as a duration.
fn seconds(flag: &str, value: f64) -> Result<Duration, UsageError> {
    if value.is_finite() && value > 0.0 && value < MAX_TIMEOUT_SECS {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(usage(format!(
            "{flag} must be a positive number of seconds, got {value}"
        )))
    }
}

/// The network's magic (or `--magic`), `--connect-timeout`, `--probe-timeout`,
/// `--handshake-timeout`, `--addr-grace` and `--circuit-timeout`.
fn probe_options(args: &RunArgs) -> Result<ProbeOptions, UsageError> {
    let mut probe = ProbeOptions::new(args.magic.unwrap_or_else(|| args.network.network().into()));
    probe.connect_timeout = seconds("--connect-timeout", args.connect_timeout)?;
    probe.deadline = seconds("--probe-timeout", args.probe_timeout)?;
    probe.handshake_timeout = handshake_timeout(args, probe.deadline)?;
    probe.addr_grace = seconds("--addr-grace", args.addr_grace)?;
    probe.circuit_timeout = seconds("--circuit-timeout", args.circuit_timeout)?;
    Ok(probe)
}

/// `--handshake-timeout`, which the probe's `deadline` (`--probe-timeout`) caps: its
/// default is lowered to it, a value typed above it is refused.
fn handshake_timeout(args: &RunArgs, deadline: Duration) -> Result<Duration, UsageError> {
    let Some(value) = args.handshake_timeout else {
        return Ok(deadline.min(Duration::from_secs_f64(DEFAULT_HANDSHAKE_TIMEOUT)));
    };
    let timeout = seconds("--handshake-timeout", value)?;
    if timeout > deadline {
        return Err(usage(format!(
            "--handshake-timeout must not exceed --probe-timeout ({} s), got {value}; \
             lower it or raise --probe-timeout",
            args.probe_timeout
        )));
    }
    Ok(timeout)
}

/// What the store's model needs: the network's port (or `--port`) and height, and the
/// crawl flags checked by [`check_crawl_limits`].
fn policy(args: &RunArgs) -> Result<Policy, UsageError> {
    let default_port = args.port.unwrap_or_else(|| args.network.default_port());
    if default_port == 0 {
        return Err(usage("--port must not be 0"));
    }
    Ok(Policy {
        scale: args.retry_scale,
        default_port,
        min_height: args.min_height.unwrap_or_else(|| args.network.min_height()),
        allow_private: args.allow_private,
        max_addresses: args.max_addresses,
    })
}

/// `--dns-seed`, else the network's seeds; none with `--no-dns-seed`.
fn dns_seeds(args: &RunArgs) -> Vec<String> {
    if args.no_dns_seed {
        Vec::new()
    } else if args.dns_seeds.is_empty() {
        args.network
            .dns_seeds()
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        args.dns_seeds.clone()
    }
}

/// The DNS server's settings when `--host` is given, with its names checked.
fn dns_config(args: &RunArgs) -> Result<Option<DnsConfig>, UsageError> {
    let Some(host) = &args.host else {
        return Ok(None);
    };
    let mut names = args.ns.iter().cloned();
    let ns = names.next().unwrap_or_default();
    let mut dns = DnsConfig::new(host.clone(), ns, args.mbox.clone().unwrap_or_default());
    dns.extra_ns = names.collect();
    let t = &args.transfer;
    dns.axfr_allow = t.axfr_allow.clone();
    dns.notify = t.notify.clone();
    dns.zone_records = t.records.zone_records;
    dns.zone_refresh = Duration::from_secs(t.zone_refresh);
    dns.listen = args.dns_listen.clone();
    dns.ttl = args.ttl;
    dns.default_mask = args.filter_service;
    dns.allow_filters = args.allow_filters.clone();
    dns.rate_limit = args.dns_rate_limit.0;
    dns.tcp_idle_timeout = Duration::from_secs(args.tcp_idle_timeout.max(1));
    dns.validate().map_err(|e| usage(e.to_string()))?;
    Ok(Some(dns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::NetworkArg;

    /// `args` serving `host`, with the `--ns` and `--mbox` it needs.
    fn zone(host: &str, args: RunArgs) -> RunArgs {
        RunArgs {
            host: Some(host.into()),
            ns: vec!["ns.example.com".into()],
            mbox: Some("hostmaster@example.com".into()),
            ..args
        }
    }

    fn error(args: &RunArgs) -> String {
        Config::from_args(args).unwrap_err().to_string()
    }

    #[test]
    fn defaults_give_a_mainnet_crawler_without_dns() {
        let config = Config::from_args(&RunArgs::default()).unwrap();
        assert!(config.dns.is_none());
        assert_eq!(config.crawl.threads, 96);
        assert_eq!(config.crawl.policy.default_port, 8333);
        assert_eq!(config.crawl.policy.min_height, 800_000);
        assert_eq!(config.crawl.probe.magic, bitcoin::p2p::Magic::BITCOIN);
        assert_eq!(config.crawl.probe.deadline, Duration::from_secs(20));
        assert_eq!(config.crawl.probe.handshake_timeout, Duration::from_secs(5));
        assert_eq!(config.crawl.probe.addr_grace, Duration::from_millis(250));
        // The flags' defaults are the probe's own.
        let own = ProbeOptions::new(bitcoin::p2p::Magic::BITCOIN);
        assert_eq!(
            format!("{:?}", config.crawl.probe),
            format!("{own:?}"),
            "RunArgs::default() and ProbeOptions::new disagree"
        );
        assert_eq!(
            config.crawl.dns_seeds.len(),
            NetworkArg::Mainnet.dns_seeds().len()
        );
        assert_eq!(config.status_interval, Duration::from_secs(10));
        assert_eq!(config.dump_interval, Duration::from_secs(3600));
    }

    #[test]
    fn the_zone_flags_make_a_dns_config() {
        let args = zone(
            "seed.example.com",
            RunArgs {
                network: NetworkArg::Regtest,
                no_dns_seed: true,
                tcp_idle_timeout: 0,
                ..RunArgs::default()
            },
        );
        let config = Config::from_args(&args).unwrap();
        let dns = config.dns.unwrap();
        assert_eq!(dns.host, "seed.example.com");
        assert_eq!(dns.rate_limit, Some((50, 100)));
        assert_eq!(dns.default_mask, 1);
        assert_eq!(dns.tcp_idle_timeout, Duration::from_secs(1));
        assert!(config.crawl.dns_seeds.is_empty());
        assert_eq!(config.crawl.policy.default_port, 18444);
    }

    /// The default flags changed by `change`.
    fn with(change: impl FnOnce(&mut RunArgs)) -> RunArgs {
        let mut args = RunArgs::default();
        change(&mut args);
        args
    }

    #[test]
    fn each_unusable_flag_is_named() {
        for (args, message) in [
            (
                with(|a| a.threads = 0),
                "--threads must be between 1 and 4096, got 0",
            ),
            (
                with(|a| a.threads = 4097),
                "--threads must be between 1 and 4096",
            ),
            (
                with(|a| a.retry_scale = f64::NAN),
                "--retry-scale must be a positive factor",
            ),
            (
                with(|a| a.max_addresses = 0),
                "--max-addresses must be at least 1",
            ),
            (
                with(|a| a.host = Some("seed.example.com".into())),
                "--host needs --ns",
            ),
            (
                with(|a| a.status_interval = 0),
                "--status-interval must be at least 1",
            ),
            (
                with(|a| a.connect_timeout = 0.0),
                "--connect-timeout must be a positive",
            ),
            (
                with(|a| a.probe_timeout = 1e6),
                "--probe-timeout must be a positive",
            ),
            (
                with(|a| a.handshake_timeout = Some(0.0)),
                "--handshake-timeout must be a positive",
            ),
            (
                with(|a| a.handshake_timeout = Some(20.5)),
                "--handshake-timeout must not exceed --probe-timeout (20 s), got 20.5; \
                 lower it or raise --probe-timeout",
            ),
            (
                with(|a| {
                    a.probe_timeout = 2.0;
                    a.handshake_timeout = Some(5.0);
                }),
                "--handshake-timeout must not exceed --probe-timeout (2 s), got 5",
            ),
            (
                with(|a| a.addr_grace = f64::NAN),
                "--addr-grace must be a positive number of seconds, got NaN",
            ),
            (
                with(|a| a.addr_grace = -1.0),
                "--addr-grace must be a positive",
            ),
            (with(|a| a.port = Some(0)), "--port must not be 0"),
            (
                zone("a..b", RunArgs::default()),
                "invalid host name \"a..b\"",
            ),
            (
                with(|a| a.transfer.axfr_allow = vec!["10.0.0.1".parse().unwrap()]),
                "--axfr-allow and --notify need --host",
            ),
            (
                zone(
                    "seed.example.com",
                    with(|a| {
                        a.transfer.notify = vec!["10.0.0.1:53".parse().unwrap()];
                    }),
                ),
                "--notify needs --axfr-allow",
            ),
            (
                zone("seed.example.com", with(|a| a.transfer.zone_refresh = 0)),
                "--zone-refresh must be greater than zero",
            ),
            (
                zone(
                    "seed.example.com",
                    with(|a| a.transfer.records.zone_records = 31),
                ),
                "--zone-records 31: give 1 to 30",
            ),
        ] {
            let got = error(&args);
            assert!(got.contains(message), "{got:?} lacks {message:?}");
        }
    }

    /// The handshake timeout's default follows a `--probe-timeout` below it (the
    /// integration tests run with `--probe-timeout 2` and no `--handshake-timeout`); a
    /// value typed up to the probe timeout is kept.
    #[test]
    fn handshake_timeout_is_capped_by_the_probe_timeout() {
        let probe =
            |change: fn(&mut RunArgs)| Config::from_args(&with(change)).unwrap().crawl.probe;
        let lowered = probe(|a| a.probe_timeout = 2.0);
        assert_eq!(lowered.handshake_timeout, Duration::from_secs(2));
        assert_eq!(lowered.deadline, Duration::from_secs(2));
        let typed = probe(|a| a.handshake_timeout = Some(1.5));
        assert_eq!(typed.handshake_timeout, Duration::from_millis(1500));
        let equal = probe(|a| a.handshake_timeout = Some(20.0));
        assert_eq!(equal.handshake_timeout, equal.deadline);
        let grace = probe(|a| a.addr_grace = 0.1);
        assert_eq!(grace.addr_grace, Duration::from_millis(100));
    }

    #[test]
    fn the_first_problem_is_reported() {
        let args = RunArgs {
            port: Some(0),
            connect_timeout: 0.0,
            dump_interval: 0,
            ..RunArgs::default()
        };
        assert!(error(&args).starts_with("--dump-interval"));
    }
}
