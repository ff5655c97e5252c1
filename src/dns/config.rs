//! Configuration of the DNS server and validation of the names it serves.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::acl::Cidr;

/// Longest DNS name in presentation form, without the trailing dot (RFC 1035 §2.3.4).
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Settings of the authoritative DNS server.
///
/// Build one with [`DnsConfig::new`], which fills in sipa-like defaults, then adjust fields.
/// [`DnsServer::bind`](crate::dns::DnsServer::bind) validates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The zone served, e.g. `seed.example.com` (`--host`).
    pub host: String,
    /// The name server of the zone, used in NS and SOA records (`--ns`).
    pub ns: String,
    /// The responsible mailbox in DNS form, e.g. `hostmaster.example.com` (`--mbox`);
    /// `hostmaster@example.com` is accepted and converted.
    pub mbox: String,
    /// Addresses to serve UDP and TCP on (`--dns-listen`); port 0 picks a free port.
    pub listen: Vec<SocketAddr>,
    /// TTL of positive answers in seconds (`--ttl`, default 60).
    pub ttl: u32,
    /// SOA minimum and TTL of negative answers in seconds (default 40).
    pub negative_ttl: u32,
    /// Service bits every peer in an answer for the bare `host` must have
    /// (`--filter-service`, default 1 = NETWORK).
    pub default_mask: u64,
    /// When set, the only `x<hex>` masks served (`--allow-filters`); others are NXDOMAIN.
    pub allow_filters: Option<Vec<u64>>,
    /// Per-source UDP limit as (queries per second, burst) (`--dns-rate-limit`);
    /// `None` (or a rate of 0) turns it off.
    pub rate_limit: Option<(u32, u32)>,
    /// A TCP connection without a complete query for this long is closed
    /// (`--tcp-idle-timeout`, default 10 s).
    pub tcp_idle_timeout: Duration,
    /// Concurrent TCP connections served (default 4096). At the cap, a new connection from
    /// a source that holds none is served in place of the least recently active one
    /// (RFC 7766 §6.2.3); one from a source that holds some is closed at once. Each costs a
    /// file descriptor and a few hundred bytes (docs/PERFORMANCE.md, "TCP connections").
    pub max_tcp_connections: usize,
    /// Concurrent TCP connections from one source, an IPv4 address or an IPv6 /64
    /// (default 32); more are closed at once.
    pub max_tcp_per_source: usize,
    /// Age after which a cached answer set is rebuilt from the peer source (default 5 s).
    pub cache_ttl: Duration,
    /// Most service masks cached at once (default 64, raised to fit `allow_filters`).
    pub max_cached_masks: usize,
    /// SOA serial; `None` uses the UNIX time at start.
    pub serial: Option<u32>,
    /// `--asmap`: answers take one address per ASN first (SPEC §11).
    pub asmap: Option<std::sync::Arc<crate::asmap::Asmap>>,
    /// More name servers after `ns` (`--ns` repeated): the zone's NS records are `ns` and
    /// these, e.g. the secondaries that carry it.
    pub extra_ns: Vec<String>,
    /// Sources that may transfer the zone by AXFR over TCP (`--axfr-allow`, SPEC §13);
    /// empty: nobody.
    pub axfr_allow: Vec<Cidr>,
    /// Secondaries sent a DNS NOTIFY when the zone's serial grows (`--notify`).
    pub notify: Vec<SocketAddr>,
    /// A and AAAA records per name of the transferred zone (`--zone-records`, default
    /// 25, at most [`MAX_ANSWERS`](super::MAX_ANSWERS)).
    pub zone_records: usize,
    /// The transferred zone is rebuilt, and its serial may grow, this often
    /// (`--zone-refresh`, default 300 s); also the SOA's refresh timer.
    pub zone_refresh: Duration,
}

impl DnsConfig {
    /// Returns a configuration for zone `host` with the defaults of the command line:
    /// listening on `0.0.0.0:53` and `[::]:53`, TTL 60, negative TTL 40, mask 1,
    /// 50 queries per second with a burst of 100, 10 s TCP idle timeout, 4096 TCP
    /// connections (32 per source) and a 5 s answer cache.
    pub fn new(host: impl Into<String>, ns: impl Into<String>, mbox: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            ns: ns.into(),
            mbox: mbox.into(),
            listen: vec![
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 53)),
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, 53)),
            ],
            ttl: 60,
            negative_ttl: 40,
            default_mask: 1,
            allow_filters: None,
            rate_limit: Some((50, 100)),
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_connections: 4096,
            max_tcp_per_source: 32,
            cache_ttl: Duration::from_secs(5),
            max_cached_masks: 64,
            serial: None,
            asmap: None,
            extra_ns: Vec::new(),
            axfr_allow: Vec::new(),
            notify: Vec::new(),
            zone_records: 25,
            zone_refresh: Duration::from_secs(300),
        }
    }

    /// Whether the zone is kept for secondaries: transfers allowed or NOTIFY targets set.
    pub fn transfers(&self) -> bool {
        !self.axfr_allow.is_empty() || !self.notify.is_empty()
    }

    /// Checks the names and limits.
    ///
    /// # Errors
    ///
    /// Returns a [`ConfigError`] naming the first field that is unusable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        normalize_name("host", &self.host)?;
        normalize_name("ns", &self.ns)?;
        for ns in &self.extra_ns {
            normalize_name("ns", ns)?;
        }
        normalize_mbox(&self.mbox)?;
        if !(1..=super::MAX_ANSWERS).contains(&self.zone_records) {
            return Err(ConfigError::ZoneRecords(self.zone_records));
        }
        if self.zone_refresh.is_zero() {
            return Err(ConfigError::ZeroDuration("--zone-refresh"));
        }
        if self.listen.is_empty() {
            return Err(ConfigError::NoListenAddress);
        }
        if self.tcp_idle_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("tcp_idle_timeout"));
        }
        if self.cache_ttl.is_zero() {
            return Err(ConfigError::ZeroDuration("cache_ttl"));
        }
        Ok(())
    }
}

/// Why a [`DnsConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A name is not a valid DNS name.
    #[error("invalid {field} name {name:?}: {reason}")]
    InvalidName {
        /// The configuration field (`host`, `ns`, `mbox`).
        field: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No address to listen on.
    #[error("no DNS listen address given")]
    NoListenAddress,
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// `--zone-records` out of range.
    #[error("--zone-records {0}: give 1 to {max} records per name", max = super::MAX_ANSWERS)]
    ZoneRecords(usize),
}

/// Returns `name` lower-cased without a trailing dot, or why it is not a valid DNS name
/// (labels of 1 to 63 letters, digits, `-` or `_`, not starting or ending with `-`).
pub(crate) fn normalize_name(field: &'static str, name: &str) -> Result<String, ConfigError> {
    let invalid = |reason| ConfigError::InvalidName {
        field,
        name: name.to_owned(),
        reason,
    };
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(invalid("empty name"));
    }
    if trimmed.len() > MAX_NAME_LEN {
        return Err(invalid("longer than 253 characters"));
    }
    for label in trimmed.split('.') {
        check_label(label).map_err(invalid)?;
    }
    Ok(trimmed.to_ascii_lowercase())
}

fn check_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("empty label");
    }
    if label.len() > MAX_LABEL_LEN {
        return Err("label longer than 63 characters");
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("only letters, digits, '-' and '_' are allowed");
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("label starts or ends with '-'");
    }
    Ok(())
}

/// Returns the SOA mailbox in DNS form: `hostmaster.example.com` as is (lower-cased),
/// `hostmaster@example.com` converted to it.
pub(crate) fn normalize_mbox(mbox: &str) -> Result<String, ConfigError> {
    match mbox.split_once('@') {
        None => normalize_name("mbox", mbox),
        Some((local, domain)) => {
            let invalid = |reason| ConfigError::InvalidName {
                field: "mbox",
                name: mbox.to_owned(),
                reason,
            };
            check_label(local).map_err(invalid)?;
            let domain = normalize_name("mbox", domain)?;
            let joined = format!("{}.{domain}", local.to_ascii_lowercase());
            if joined.len() > MAX_NAME_LEN {
                return Err(invalid("longer than 253 characters"));
            }
            Ok(joined)
        }
    }
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized() {
        assert_eq!(
            normalize_name("host", "Seed.Example.COM.").unwrap(),
            "seed.example.com"
        );
        assert_eq!(
            normalize_mbox("hostmaster@example.com").unwrap(),
            "hostmaster.example.com"
        );
        assert_eq!(normalize_mbox("hm.example.com").unwrap(), "hm.example.com");
    }

    #[test]
    fn bad_names_are_rejected() {
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a b.c",
            "é.com",
            &"a".repeat(64),
        ] {
            assert!(normalize_name("host", bad).is_err(), "{bad:?}");
        }
        let long = ["abcdefghi"; 26].join(".");
        assert!(normalize_name("host", &long).is_err());
        assert!(normalize_mbox("a.b@example.com").is_err());
        assert!(normalize_mbox("@example.com").is_err());
    }

    #[test]
    fn validate_checks_every_field() {
        let good = DnsConfig::new("seed.example.com", "ns.example.com", "hm.example.com");
        assert_eq!(good.validate(), Ok(()));
        let mut bad = good.clone();
        bad.ns = "ns..example".into();
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::InvalidName { field: "ns", .. })
        ));
        let mut bad = good.clone();
        bad.listen.clear();
        assert_eq!(bad.validate(), Err(ConfigError::NoListenAddress));
        let mut bad = good;
        bad.cache_ttl = Duration::ZERO;
        assert!(bad.validate().is_err());
    }
}
