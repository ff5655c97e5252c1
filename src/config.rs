//! The command line: clap structures for every subcommand, and the parsers of the
//! values operators type (service flags, address families). Validation that clap cannot
//! express ends in a [`UsageError`], which the binary maps to exit code 2.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::addr::Family;
use crate::store::Status;

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
}

/// The database flag shared by every subcommand.
#[derive(Debug, Args)]
pub struct DbArg {
    /// SQLite database file.
    #[arg(long, env = "DNSSEEDER_DB", default_value = "dnsseeder.db")]
    pub db: PathBuf,
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
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StatsFormat::Table)]
    pub format: StatsFormat,
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

/// Flags of `dnsseeder run`; each can also come from the environment (`DNSSEEDER_*`).
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Which Bitcoin network to crawl.
    #[arg(long, value_enum, env = "DNSSEEDER_NETWORK", default_value_t = NetworkArg::Mainnet)]
    pub network: NetworkArg,
    /// The seed's DNS name (the zone served); without it, only crawl.
    #[arg(long, env = "DNSSEEDER_HOST")]
    pub host: Option<String>,
    /// The name server's own name, for the NS and SOA records.
    #[arg(long, env = "DNSSEEDER_NS")]
    pub ns: Option<String>,
    /// The zone's contact mailbox as a name (hostmaster.example.com), for the SOA record.
    #[arg(long, env = "DNSSEEDER_MBOX")]
    pub mbox: Option<String>,
    /// Where to serve DNS (UDP and TCP); repeatable; port 0 picks a free port.
    #[arg(long = "dns-listen", env = "DNSSEEDER_DNS_LISTEN", value_delimiter = ',',
          default_values_t = ["0.0.0.0:53".parse::<SocketAddr>().expect("a valid literal"),
                              "[::]:53".parse::<SocketAddr>().expect("a valid literal")])]
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
    #[arg(long, env = "DNSSEEDER_THREADS", default_value_t = 96)]
    pub threads: usize,
    /// Service bits every answer for the bare host must have.
    #[arg(long, env = "DNSSEEDER_FILTER_SERVICE", value_parser = parse_services, default_value = "NETWORK")]
    pub filter_service: u64,
    /// Crawl, keep and serve loopback and private addresses (test networks).
    #[arg(long, env = "DNSSEEDER_ALLOW_PRIVATE")]
    pub allow_private: bool,
    /// Run the scheduling and statistics clock 1/F times faster (tests use 0.001).
    #[arg(long, env = "DNSSEEDER_RETRY_SCALE", default_value_t = 1.0)]
    pub retry_scale: f64,
    /// Lowest start height of a good peer (default: 800000 on mainnet, else 0).
    #[arg(long, env = "DNSSEEDER_MIN_HEIGHT")]
    pub min_height: Option<i64>,
    /// Write a dnsseed.dump here every --dump-interval and at exit.
    #[arg(long, env = "DNSSEEDER_DUMP")]
    pub dump: Option<PathBuf>,
    /// Seconds between dumps.
    #[arg(long, env = "DNSSEEDER_DUMP_INTERVAL", default_value_t = 3600)]
    pub dump_interval: u64,
    /// Network magic as 8 hex digits, for other chains (overrides --network's).
    #[arg(long, env = "DNSSEEDER_MAGIC", value_parser = parse_magic)]
    pub magic: Option<bitcoin::p2p::Magic>,
    /// Default P2P port (overrides --network's).
    #[arg(long, env = "DNSSEEDER_PORT")]
    pub port: Option<u16>,
    /// Hard cap on rows in the peers table.
    #[arg(long, env = "DNSSEEDER_MAX_ADDRESSES", default_value_t = 1_000_000)]
    pub max_addresses: u64,
    /// Only these `x<hex>` filter masks are served (comma-separated hex).
    #[arg(long, env = "DNSSEEDER_ALLOW_FILTERS", value_delimiter = ',', value_parser = parse_hex_mask)]
    pub allow_filters: Option<Vec<u64>>,
    /// Seconds between status lines.
    #[arg(long, env = "DNSSEEDER_STATUS_INTERVAL", default_value_t = 10)]
    pub status_interval: u64,
    /// TTL of address records, seconds.
    #[arg(long, env = "DNSSEEDER_TTL", default_value_t = 60)]
    pub ttl: u32,
    /// Per-source DNS rate limit QPS,BURST; 0 turns it off.
    #[arg(long, env = "DNSSEEDER_DNS_RATE_LIMIT", default_value = "50,100", value_parser = parse_rate_limit)]
    pub dns_rate_limit: RateLimit,
    /// Seconds before an idle DNS TCP connection is closed.
    #[arg(long, env = "DNSSEEDER_TCP_IDLE_TIMEOUT", default_value_t = 10)]
    pub tcp_idle_timeout: u64,
    /// Seconds to wait for a TCP connection to a peer.
    #[arg(long, env = "DNSSEEDER_CONNECT_TIMEOUT", default_value_t = 5.0)]
    pub connect_timeout: f64,
    /// Overall deadline of one probe, seconds.
    #[arg(long, env = "DNSSEEDER_PROBE_TIMEOUT", default_value_t = 20.0)]
    pub probe_timeout: f64,
}

/// `--dns-rate-limit`: queries per second and burst per source; `None` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit(pub Option<(u32, u32)>);

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
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
