//! The command line as typed: clap structures for every subcommand, the parsers of the
//! values operators type (service flags, address families, rate limits), and the defaults
//! of `run` as named constants. Flags are only parsed here; what clap cannot check is
//! validated once, into [`crate::config::Config`], and ends in a [`UsageError`], which
//! the binary maps to exit code 2.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::addr::Family;
use crate::store::Status;

mod zone;
pub use zone::{
    DEFAULT_ZONE_RECORDS, DEFAULT_ZONE_REFRESH, TransferArgs, ZoneArgs, ZoneRecordsArg,
};

/// A Bitcoin DNS seeder whose memory lives in SQLite.
#[derive(Debug, Parser)]
#[command(name = "dnsseeder", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Crawl the Bitcoin network and serve good peers over DNS.
    Run(Box<RunArgs>),
    /// Try the seeder offline: a simulated network on 127.0.0.0/8 and the seeder against it.
    Demo(DemoArgs),
    /// List peers from the database, best first.
    Peers(PeersArgs),
    /// Show counts by status, address family and failure reason.
    Stats(StatsArgs),
    /// Write the database as a sipa-format dnsseed.dump.
    Dump(DumpArgs),
    /// Import a dnsseed.dump (or one IP:PORT per line) into the database.
    Import(ImportArgs),
    /// Copy the database to OUT, consistently, even while `run` writes it.
    Backup(BackupArgs),
    /// Print the seed zone as an RFC 1035 master file (what secondaries transfer).
    Zone(ZoneArgs),
}

/// Default `--db`.
pub const DEFAULT_DB: &str = "dnsseeder.db";

/// The database flag shared by every subcommand.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct DbArg {
    /// SQLite database file.
    #[arg(long, env = "DNSSEEDER_DB", default_value = DEFAULT_DB)]
    pub db: PathBuf,
}

impl Default for DbArg {
    fn default() -> Self {
        Self {
            db: PathBuf::from(DEFAULT_DB),
        }
    }
}

/// Output formats of `peers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Output formats of `stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct PeersArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Only good peers (short for --status good).
    #[arg(long, conflicts_with = "status")]
    pub good: bool,
    /// Only peers with this status: new, good, reachable, unreachable, banned.
    #[arg(long, value_parser = parse_status)]
    pub status: Option<Status>,
    /// Only peers having all these service bits: names (NETWORK,WITNESS), 0x-hex or decimal.
    #[arg(long, value_parser = parse_services)]
    pub filter_service: Option<u64>,
    /// Only this address family: ipv4, ipv6, onion, i2p, cjdns.
    #[arg(long, value_parser = parse_family)]
    pub network: Option<Family>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// At most this many rows.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Bitcoin Core's asmap file: show each peer's autonomous system (ASN).
    #[arg(long, env = "DNSSEEDER_ASMAP")]
    pub asmap: Option<PathBuf>,
    /// Only peers in this autonomous system (needs --asmap).
    #[arg(long, requires = "asmap")]
    pub asn: Option<u32>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StatsFormat::Table)]
    pub format: StatsFormat,
    /// Bitcoin Core's asmap file: list the ASNs with the most good peers.
    #[arg(long, env = "DNSSEEDER_ASMAP")]
    pub asmap: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Write to this file (atomically) instead of standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// A dnsseed.dump, or a file with one IP:PORT per line.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Write the copy here (atomically: a failed backup leaves OUT as it was).
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
}

/// `--v2-transport`: whether probes try BIP324 v2 first with peers that advertise P2P_V2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum V2Transport {
    /// v2 first when the peer's known services include P2P_V2, v1 after a failed v2
    /// handshake (as Bitcoin Core does).
    Auto,
    /// v1 only.
    Off,
}

/// The networks with presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    Mainnet,
    Testnet,
    Testnet4,
    Signet,
    Regtest,
}

impl NetworkArg {
    /// The `bitcoin` crate's network.
    pub fn network(self) -> bitcoin::Network {
        match self {
            NetworkArg::Mainnet => bitcoin::Network::Bitcoin,
            NetworkArg::Testnet => bitcoin::Network::Testnet,
            NetworkArg::Testnet4 => bitcoin::Network::Testnet4,
            NetworkArg::Signet => bitcoin::Network::Signet,
            NetworkArg::Regtest => bitcoin::Network::Regtest,
        }
    }

    /// Default P2P port (the `bitcoin` crate has no table of its own).
    pub fn default_port(self) -> u16 {
        match self {
            NetworkArg::Mainnet => 8333,
            NetworkArg::Testnet => 18333,
            NetworkArg::Testnet4 => 48333,
            NetworkArg::Signet => 38333,
            NetworkArg::Regtest => 18444,
        }
    }

    /// The well-known DNS seeds of the network, as Bitcoin Core lists them.
    pub fn dns_seeds(self) -> &'static [&'static str] {
        match self {
            NetworkArg::Mainnet => &[
                "seed.bitcoin.sipa.be",
                "dnsseed.bluematt.me",
                "seed.bitcoin.jonasschnelli.ch",
                "seed.btc.petertodd.net",
                "seed.bitcoin.sprovoost.nl",
                "dnsseed.emzy.de",
                "seed.bitcoin.wiz.biz",
                "seed.mainnet.achownodes.xyz",
            ],
            NetworkArg::Testnet => &[
                "testnet-seed.bitcoin.jonasschnelli.ch",
                "seed.tbtc.petertodd.net",
                "seed.testnet.bitcoin.sprovoost.nl",
                "testnet-seed.bluematt.me",
                "seed.testnet.achownodes.xyz",
            ],
            NetworkArg::Testnet4 => &[
                "seed.testnet4.bitcoin.sprovoost.nl",
                "seed.testnet4.wiz.biz",
            ],
            NetworkArg::Signet => &[
                "seed.signet.bitcoin.sprovoost.nl",
                "seed.signet.achownodes.xyz",
            ],
            NetworkArg::Regtest => &[],
        }
    }

    /// Default `--min-height`.
    pub fn min_height(self) -> i64 {
        if self == NetworkArg::Mainnet {
            800_000
        } else {
            0
        }
    }
}

/// Default `--network`.
pub const DEFAULT_NETWORK: NetworkArg = NetworkArg::Mainnet;
/// Default `--dns-listen`: port 53 on every IPv4 and IPv6 address.
pub const DEFAULT_DNS_LISTEN: [SocketAddr; 2] = [
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53)),
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 53, 0, 0)),
];
/// Default `--threads`.
pub const DEFAULT_THREADS: usize = 96;
/// Default `--filter-service`, as typed (clap parses it with [`parse_services`]).
pub const DEFAULT_FILTER_SERVICE: &str = "NETWORK";
/// Default `--retry-scale`.
pub const DEFAULT_RETRY_SCALE: f64 = 1.0;
/// Default `--dump-interval`, seconds.
pub const DEFAULT_DUMP_INTERVAL: u64 = 3600;
/// Default `--max-addresses`.
pub const DEFAULT_MAX_ADDRESSES: u64 = 1_000_000;
/// Default `--status-interval`, seconds.
pub const DEFAULT_STATUS_INTERVAL: u64 = 10;
/// `--health-probe-age`, seconds.
pub const DEFAULT_HEALTH_PROBE_AGE: u64 = 600;
/// Default `--ttl`, seconds.
pub const DEFAULT_TTL: u32 = 60;
/// Default `--dns-rate-limit`: 50 queries per second, bursts of 100.
pub const DEFAULT_DNS_RATE_LIMIT: RateLimit = RateLimit(Some((50, 100)));
/// Default `--tcp-idle-timeout`, seconds.
pub const DEFAULT_TCP_IDLE_TIMEOUT: u64 = 10;
/// Default `--connect-timeout`, seconds.
pub const DEFAULT_CONNECT_TIMEOUT: f64 = 5.0;
/// Default `--probe-timeout`, seconds.
pub const DEFAULT_PROBE_TIMEOUT: f64 = 20.0;
/// Default `--handshake-timeout`, seconds (or `--probe-timeout` if lower): 10 times the
/// slowest clearnet round trip, so a slow but real node is never cut off
/// (docs/OPERATIONS.md, "Probe timeouts").
pub const DEFAULT_HANDSHAKE_TIMEOUT: f64 = 5.0;
/// Default `--addr-grace`, seconds: about one transcontinental round trip
/// (docs/OPERATIONS.md, "Probe timeouts").
pub const DEFAULT_ADDR_GRACE: f64 = 0.25;

/// Default `--proxy-probes`: probes in flight through each SOCKS5 proxy at most (Tor and
/// I2P routers build a circuit per connection; docs/OPERATIONS.md, "Tor, I2P and CJDNS").
pub const DEFAULT_PROXY_PROBES: usize = 32;
/// Default `--circuit-timeout`, seconds: Tor takes several seconds to reach an onion
/// service, sometimes tens.
pub const DEFAULT_CIRCUIT_TIMEOUT: f64 = 30.0;

/// Flags of `dnsseeder run`; each can also come from the environment (`DNSSEEDER_*`).
///
/// [`RunArgs::default`] is what clap gives for `dnsseeder run` without flags or
/// environment, so that `demo` can fill one in code.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Which Bitcoin network to crawl.
    #[arg(long, value_enum, env = "DNSSEEDER_NETWORK", default_value_t = DEFAULT_NETWORK)]
    pub network: NetworkArg,
    /// The seed's DNS name (the zone served); without it, only crawl.
    #[arg(long, env = "DNSSEEDER_HOST")]
    pub host: Option<String>,
    /// The zone's name servers, for the NS records (the first also names the SOA's
    /// primary); repeatable, e.g. the secondaries that carry the zone.
    #[arg(long, env = "DNSSEEDER_NS", value_delimiter = ',')]
    pub ns: Vec<String>,
    /// The zone's contact mailbox as a name (hostmaster.example.com), for the SOA record.
    #[arg(long, env = "DNSSEEDER_MBOX")]
    pub mbox: Option<String>,
    /// Where to serve DNS (UDP and TCP); repeatable; port 0 picks a free port.
    #[arg(long = "dns-listen", env = "DNSSEEDER_DNS_LISTEN", value_delimiter = ',',
          default_values_t = DEFAULT_DNS_LISTEN)]
    pub dns_listen: Vec<SocketAddr>,
    /// Bootstrap peer IP:PORT; repeatable.
    #[arg(long = "seed", env = "DNSSEEDER_SEED", value_delimiter = ',')]
    pub seeds: Vec<SocketAddr>,
    /// DNS seed to resolve for bootstrap peers; repeatable (default: the network's seeds).
    #[arg(long = "dns-seed", env = "DNSSEEDER_DNS_SEED", value_delimiter = ',')]
    pub dns_seeds: Vec<String>,
    /// Never resolve DNS seeds.
    #[arg(long, env = "DNSSEEDER_NO_DNS_SEED", conflicts_with = "dns_seeds")]
    pub no_dns_seed: bool,
    /// Crawler threads.
    #[arg(long, env = "DNSSEEDER_THREADS", default_value_t = DEFAULT_THREADS)]
    pub threads: usize,
    /// Service bits every answer for the bare host must have.
    #[arg(long, env = "DNSSEEDER_FILTER_SERVICE", value_parser = parse_services, default_value = DEFAULT_FILTER_SERVICE)]
    pub filter_service: u64,
    /// Crawl, keep and serve loopback and private addresses (test networks).
    #[arg(long, env = "DNSSEEDER_ALLOW_PRIVATE")]
    pub allow_private: bool,
    /// Run the scheduling and statistics clock 1/F times faster (tests use 0.001).
    #[arg(long, env = "DNSSEEDER_RETRY_SCALE", default_value_t = DEFAULT_RETRY_SCALE)]
    pub retry_scale: f64,
    /// Lowest start height of a good peer (default: 800000 on mainnet, else 0).
    #[arg(long, env = "DNSSEEDER_MIN_HEIGHT")]
    pub min_height: Option<i64>,
    /// Write a dnsseed.dump here every --dump-interval and at exit.
    #[arg(long, env = "DNSSEEDER_DUMP")]
    pub dump: Option<PathBuf>,
    /// Seconds between dumps.
    #[arg(long, env = "DNSSEEDER_DUMP_INTERVAL", default_value_t = DEFAULT_DUMP_INTERVAL)]
    pub dump_interval: u64,
    /// Network magic as 8 hex digits, for other chains (overrides --network's).
    #[arg(long, env = "DNSSEEDER_MAGIC", value_parser = parse_magic)]
    pub magic: Option<bitcoin::p2p::Magic>,
    /// Default P2P port (overrides --network's).
    #[arg(long, env = "DNSSEEDER_PORT")]
    pub port: Option<u16>,
    /// Hard cap on rows in the peers table.
    #[arg(long, env = "DNSSEEDER_MAX_ADDRESSES", default_value_t = DEFAULT_MAX_ADDRESSES)]
    pub max_addresses: u64,
    /// Only these `x<hex>` filter masks are served (comma-separated hex).
    #[arg(long, env = "DNSSEEDER_ALLOW_FILTERS", value_delimiter = ',', value_parser = parse_hex_mask)]
    pub allow_filters: Option<Vec<u64>>,
    /// Seconds between status lines.
    #[arg(long, env = "DNSSEEDER_STATUS_INTERVAL", default_value_t = DEFAULT_STATUS_INTERVAL)]
    pub status_interval: u64,
    /// TTL of address records, seconds.
    #[arg(long, env = "DNSSEEDER_TTL", default_value_t = DEFAULT_TTL)]
    pub ttl: u32,
    /// Per-source DNS rate limit QPS,BURST; 0 turns it off.
    #[arg(long, env = "DNSSEEDER_DNS_RATE_LIMIT", default_value_t = DEFAULT_DNS_RATE_LIMIT, value_parser = parse_rate_limit)]
    pub dns_rate_limit: RateLimit,
    /// Seconds before an idle DNS TCP connection is closed.
    #[arg(long, env = "DNSSEEDER_TCP_IDLE_TIMEOUT", default_value_t = DEFAULT_TCP_IDLE_TIMEOUT)]
    pub tcp_idle_timeout: u64,
    /// Seconds to wait for a TCP connection to a peer.
    #[arg(long, env = "DNSSEEDER_CONNECT_TIMEOUT", default_value_t = DEFAULT_CONNECT_TIMEOUT)]
    pub connect_timeout: f64,
    /// Overall deadline of one probe, seconds.
    #[arg(long, env = "DNSSEEDER_PROBE_TIMEOUT", default_value_t = DEFAULT_PROBE_TIMEOUT)]
    pub probe_timeout: f64,
    /// Seconds from the open connection to the peer's `version` and `verack`
    /// (default: 5, or --probe-timeout if lower).
    #[arg(long, env = "DNSSEEDER_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<f64>,
    /// Seconds to keep collecting addresses after the peer's answer to `getaddr`.
    #[arg(long, env = "DNSSEEDER_ADDR_GRACE", default_value_t = DEFAULT_ADDR_GRACE)]
    pub addr_grace: f64,
    /// Probe Tor v3 (.onion) peers through this SOCKS5 proxy, IP:PORT (Tor's SocksPort).
    #[arg(long, env = "DNSSEEDER_ONION_PROXY")]
    pub onion_proxy: Option<SocketAddr>,
    /// Probe I2P (.b32.i2p) peers through this SOCKS5 proxy, IP:PORT (i2pd: port 4447).
    #[arg(long, env = "DNSSEEDER_I2P_PROXY")]
    pub i2p_proxy: Option<SocketAddr>,
    /// Probe CJDNS (fc00::/8) peers directly (this host runs cjdroute).
    #[arg(long, env = "DNSSEEDER_CJDNS_REACHABLE")]
    pub cjdns_reachable: bool,
    /// Probe IPv4 and IPv6 peers through this SOCKS5 proxy too, IP:PORT.
    #[arg(long, env = "DNSSEEDER_PROXY")]
    pub proxy: Option<SocketAddr>,
    /// Probes in flight through each proxy at most.
    #[arg(long, env = "DNSSEEDER_PROXY_PROBES", default_value_t = DEFAULT_PROXY_PROBES)]
    pub proxy_probes: usize,
    /// Seconds a proxy may take to open the connection to a peer (a Tor or I2P circuit).
    #[arg(long, env = "DNSSEEDER_CIRCUIT_TIMEOUT", default_value_t = DEFAULT_CIRCUIT_TIMEOUT)]
    pub circuit_timeout: f64,
    /// Bitcoin Core's asmap file: DNS answers take one address per autonomous system first.
    #[arg(long, env = "DNSSEEDER_ASMAP")]
    pub asmap: Option<PathBuf>,
    /// BIP324: try the encrypted v2 transport first with peers that advertise P2P_V2.
    #[arg(long, value_enum, env = "DNSSEEDER_V2_TRANSPORT", default_value_t = V2Transport::Auto)]
    pub v2_transport: V2Transport,
    /// Serve `GET /metrics` (Prometheus) and `GET /health` over HTTP on this IP:PORT.
    #[arg(long, env = "DNSSEEDER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// `/health` fails when no probe has succeeded for this many seconds (wall clock).
    #[arg(long, env = "DNSSEEDER_HEALTH_PROBE_AGE", default_value_t = DEFAULT_HEALTH_PROBE_AGE)]
    pub health_probe_age: u64,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

impl Default for RunArgs {
    /// The defaults of the clap attributes above, from the same constants
    /// (`run_args_default_is_what_clap_parses` keeps the two equal); `filter_service`
    /// is what [`parse_services`] makes of [`DEFAULT_FILTER_SERVICE`].
    fn default() -> Self {
        Self {
            db: DbArg::default(),
            network: DEFAULT_NETWORK,
            host: None,
            ns: Vec::new(),
            mbox: None,
            dns_listen: DEFAULT_DNS_LISTEN.to_vec(),
            seeds: Vec::new(),
            dns_seeds: Vec::new(),
            no_dns_seed: false,
            threads: DEFAULT_THREADS,
            filter_service: bitcoin::p2p::ServiceFlags::NETWORK.to_u64(),
            allow_private: false,
            retry_scale: DEFAULT_RETRY_SCALE,
            min_height: None,
            dump: None,
            dump_interval: DEFAULT_DUMP_INTERVAL,
            magic: None,
            port: None,
            max_addresses: DEFAULT_MAX_ADDRESSES,
            allow_filters: None,
            status_interval: DEFAULT_STATUS_INTERVAL,
            ttl: DEFAULT_TTL,
            dns_rate_limit: DEFAULT_DNS_RATE_LIMIT,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            handshake_timeout: None,
            addr_grace: DEFAULT_ADDR_GRACE,
            onion_proxy: None,
            i2p_proxy: None,
            cjdns_reachable: false,
            proxy: None,
            proxy_probes: DEFAULT_PROXY_PROBES,
            circuit_timeout: DEFAULT_CIRCUIT_TIMEOUT,
            v2_transport: V2Transport::Auto,
            asmap: None,
            metrics_listen: None,
            health_probe_age: DEFAULT_HEALTH_PROBE_AGE,
            transfer: TransferArgs::default(),
        }
    }
}

/// `--dns-rate-limit`: queries per second and burst per source; `None` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit(pub Option<(u32, u32)>);

/// The flag's syntax (`QPS,BURST`, or `0` when off), as clap shows the default.
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((qps, burst)) => write!(f, "{qps},{burst}"),
            None => f.write_str("0"),
        }
    }
}

fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
    if text.trim() == "0" {
        return Ok(RateLimit(None));
    }
    let (qps, burst) = text
        .split_once(',')
        .ok_or_else(|| format!("expected QPS,BURST (e.g. 50,100) or 0, got '{text}'"))?;
    let num = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("'{s}' is not a count"))
    };
    match (num(qps)?, num(burst)?) {
        (0, _) | (_, 0) => Ok(RateLimit(None)),
        (q, b) => Ok(RateLimit(Some((q, b.max(q))))),
    }
}

fn parse_magic(text: &str) -> Result<bitcoin::p2p::Magic, String> {
    let hex = text.trim_start_matches("0x");
    let value = u32::from_str_radix(hex, 16)
        .ok()
        .filter(|_| hex.len() == 8)
        .ok_or_else(|| {
            format!("expected 8 hex digits as the network magic (f9beb4d9), got '{text}'")
        })?;
    Ok(bitcoin::p2p::Magic::from_bytes(value.to_be_bytes()))
}

fn parse_hex_mask(text: &str) -> Result<u64, String> {
    let hex = text.trim().trim_start_matches("0x").trim_start_matches('x');
    u64::from_str_radix(hex, 16).map_err(|_| format!("'{text}' is not a hex service mask"))
}

/// Flags of `dnsseeder demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the database here (default: a temporary file). DNSSEEDER_DB is ignored.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Simulated nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Crawler threads.
    #[arg(long, default_value_t = 64)]
    pub threads: usize,
    /// Where to serve DNS.
    #[arg(long, default_value = "127.0.0.1:5353")]
    pub dns_listen: SocketAddr,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
}

/// A problem with the arguments that clap could not see; exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses `--filter-service` (see [`crate::services::parse`]).
///
/// # Errors
/// A one-line message naming the known flags.
pub fn parse_services(text: &str) -> Result<u64, String> {
    crate::services::parse(text)
}

fn parse_family(text: &str) -> Result<Family, String> {
    text.parse()
}

fn parse_status(text: &str) -> Result<Status, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_parsers() {
        assert_eq!(parse_rate_limit("50,100"), Ok(RateLimit(Some((50, 100)))));
        assert_eq!(parse_rate_limit("0"), Ok(RateLimit(None)));
        assert!(parse_rate_limit("fast").is_err());
        assert_eq!(parse_magic("f9beb4d9"), Ok(bitcoin::p2p::Magic::BITCOIN));
        assert!(parse_magic("f9beb4").is_err());
        assert_eq!(parse_hex_mask("409"), Ok(0x409));
        assert_eq!(parse_hex_mask("x9"), Ok(9));
    }

    #[test]
    fn rate_limit_displays_as_typed() {
        for text in ["50,100", "0", "1,1"] {
            let limit = parse_rate_limit(text).unwrap();
            assert_eq!(limit.to_string(), text);
            assert_eq!(parse_rate_limit(&limit.to_string()), Ok(limit));
        }
    }

    /// `RunArgs::default()` is what clap parses from `dnsseeder run`. The command is
    /// parsed with every `env` source removed, so `DNSSEEDER_*` variables set around
    /// the test cannot make it pass or fail.
    #[test]
    fn run_args_default_is_what_clap_parses() {
        use clap::{CommandFactory, FromArgMatches};
        let command = Cli::command().mut_subcommand("run", |run| {
            run.mut_args(|arg| arg.env(None::<&'static str>))
        });
        let matches = command.try_get_matches_from(["dnsseeder", "run"]).unwrap();
        let Command::Run(parsed) = Cli::from_arg_matches(&matches).unwrap().command else {
            panic!("not parsed as run");
        };
        assert_eq!(*parsed, RunArgs::default());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
