//! The flags of zone transfer (`run --axfr-allow`, `--notify`, `--zone-records`,
//! `--zone-refresh`) and of `dnsseeder zone`, which prints the same zone (SPEC §13).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::{DEFAULT_FILTER_SERVICE, DEFAULT_TTL, DbArg, parse_hex_mask, parse_services};

/// Default `--zone-records`.
pub const DEFAULT_ZONE_RECORDS: usize = 25;
/// Default `--zone-refresh`, seconds.
pub const DEFAULT_ZONE_REFRESH: u64 = 300;

/// Zone transfer to secondaries (SPEC §13).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct TransferArgs {
    /// Sources allowed to transfer the zone (AXFR over TCP): IP or IP/LEN; repeatable.
    #[arg(
        long = "axfr-allow",
        env = "DNSSEEDER_AXFR_ALLOW",
        value_delimiter = ','
    )]
    pub axfr_allow: Vec<crate::dns::Cidr>,
    /// Secondary to send a DNS NOTIFY when the zone's serial grows, IP:PORT; repeatable.
    #[arg(long, env = "DNSSEEDER_NOTIFY", value_delimiter = ',')]
    pub notify: Vec<SocketAddr>,
    #[command(flatten)]
    pub records: ZoneRecordsArg,
    /// Seconds between rebuilds of the transferred zone (its serial grows at most this
    /// often); also the SOA's refresh timer.
    #[arg(long, env = "DNSSEEDER_ZONE_REFRESH", default_value_t = DEFAULT_ZONE_REFRESH)]
    pub zone_refresh: u64,
}

impl Default for TransferArgs {
    fn default() -> Self {
        Self {
            axfr_allow: Vec::new(),
            notify: Vec::new(),
            records: ZoneRecordsArg::default(),
            zone_refresh: DEFAULT_ZONE_REFRESH,
        }
    }
}

/// `--zone-records`, shared by `run` and `zone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct ZoneRecordsArg {
    /// A and AAAA records per name in the transferred zone (each, 1 to 30).
    #[arg(long = "zone-records", env = "DNSSEEDER_ZONE_RECORDS", default_value_t = DEFAULT_ZONE_RECORDS)]
    pub zone_records: usize,
}

impl Default for ZoneRecordsArg {
    fn default() -> Self {
        Self {
            zone_records: DEFAULT_ZONE_RECORDS,
        }
    }
}

/// Flags of `dnsseeder zone`.
#[derive(Debug, Args)]
pub struct ZoneArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The seed's DNS name (the zone's origin).
    #[arg(long, env = "DNSSEEDER_HOST")]
    pub host: String,
    /// The zone's name servers (the first names the SOA's primary); repeatable.
    #[arg(long, env = "DNSSEEDER_NS", value_delimiter = ',', required = true)]
    pub ns: Vec<String>,
    /// The zone's contact mailbox (hostmaster.example.com).
    #[arg(long, env = "DNSSEEDER_MBOX")]
    pub mbox: String,
    /// Service bits every address of the bare host must have.
    #[arg(long, env = "DNSSEEDER_FILTER_SERVICE", value_parser = parse_services, default_value = DEFAULT_FILTER_SERVICE)]
    pub filter_service: u64,
    /// The `x<hex>` names of the zone (comma-separated hex; default: 1,5,9,d,49,409,809,c09).
    #[arg(long, env = "DNSSEEDER_ALLOW_FILTERS", value_delimiter = ',', value_parser = parse_hex_mask)]
    pub allow_filters: Option<Vec<u64>>,
    #[command(flatten)]
    pub records: ZoneRecordsArg,
    /// TTL of the records, seconds.
    #[arg(long, env = "DNSSEEDER_TTL", default_value_t = DEFAULT_TTL)]
    pub ttl: u32,
    /// Bitcoin Core's asmap file: one address per autonomous system first.
    #[arg(long, env = "DNSSEEDER_ASMAP")]
    pub asmap: Option<PathBuf>,
    /// The SOA serial (default: the UNIX time).
    #[arg(long)]
    pub serial: Option<u32>,
}
