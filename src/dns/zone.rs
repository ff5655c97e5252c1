//! The zone's fixed data, prepared once when the server starts: its name in wire form,
//! TTLs, served masks, and the SOA and NS RDATA encoded with hickory-proto.
//!
//! It exists apart from the responder so that what a query costs stays in `respond`
//! and `response`, while everything that can be computed from the configuration alone
//! is computed here, once. It also says which names belong to the zone and which
//! service mask a name inside it asks for.
//!
//! The one thing that changes is the SOA serial: the zone keeper (`transfer::keeper`)
//! raises it when the transferred zone changes, and every SOA written after that,
//! live or transferred, carries the new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use super::config::{ConfigError, DnsConfig, normalize_mbox, normalize_name};
use super::request::Request;

/// The SOA's retry timer at most: a secondary that failed to refresh tries again after
/// this many seconds (or `--zone-refresh`, when shorter).
const SOA_RETRY: u32 = 60;
/// The SOA's expire timer: a secondary that cannot reach the seeder for a week stops
/// answering rather than serve week-old peers.
const SOA_EXPIRE: u32 = 604_800;
/// Bytes from the serial to the end of SOA RDATA: serial, refresh, retry, expire, minimum.
pub(super) const SOA_SERIAL_FROM_END: usize = 20;

/// The zone's fixed data, prepared once: names, TTLs, masks and pre-encoded RDATA.
#[derive(Debug, Clone)]
pub struct ZoneContext {
    /// The zone's name in wire form (lower case, with the root label).
    zone_wire: Vec<u8>,
    /// The number of labels of the zone's name.
    zone_labels: usize,
    pub(super) ttl: u32,
    pub(super) negative_ttl: u32,
    default_mask: u64,
    allow_filters: Option<Vec<u64>>,
    /// The SOA RDATA with the serial at start; [`ZoneContext::serial`] is the current one.
    pub(super) soa_rdata: Vec<u8>,
    /// One NS RDATA per name server, `--ns` order.
    pub(super) ns_rdatas: Vec<Vec<u8>>,
    serial: Arc<AtomicU32>,
    /// The zone's names in presentation form (lower case, no trailing dot), for the
    /// master file.
    pub(super) text: ZoneText,
}

/// The zone's names and SOA timers as text and numbers, for the master file.
#[derive(Debug, Clone)]
pub(super) struct ZoneText {
    pub(super) host: String,
    pub(super) ns: Vec<String>,
    pub(super) mbox: String,
    /// Refresh, retry, expire and minimum, in seconds.
    pub(super) timers: [u32; 4],
}

impl ZoneContext {
    /// Prepares the zone of `config`; the SOA serial is `config.serial` or the UNIX time.
    ///
    /// # Errors
    ///
    /// Returns a [`ConfigError`] when `host`, `ns` or `mbox` is not a valid name.
    pub fn new(config: &DnsConfig) -> Result<Self, ConfigError> {
        let host = normalize_name("host", &config.host)?;
        let ns_names = std::iter::once(&config.ns)
            .chain(&config.extra_ns)
            .map(|ns| normalize_name("ns", ns))
            .collect::<Result<Vec<_>, _>>()?;
        let ns = ns_names
            .iter()
            .map(|ns| to_name("ns", ns))
            .collect::<Result<Vec<_>, _>>()?;
        let serial = config.serial.unwrap_or_else(unix_time_serial);
        let text = ZoneText {
            mbox: normalize_mbox(&config.mbox)?,
            timers: timers(config),
            host,
            ns: ns_names,
        };
        Ok(Self {
            zone_wire: wire_name(&text.host),
            zone_labels: text.host.split('.').count(),
            ttl: config.ttl,
            negative_ttl: config.negative_ttl,
            default_mask: config.default_mask,
            allow_filters: sorted_filters(config.allow_filters.as_deref()),
            soa_rdata: encode_rdata("mbox", &soa(&text, ns[0].clone(), serial)?)?,
            ns_rdatas: (ns.into_iter().map(|n| encode_rdata("ns", &NS(n))))
                .collect::<Result<_, _>>()?,
            serial: Arc::new(AtomicU32::new(serial)),
            text,
        })
    }

    /// The current SOA serial.
    #[inline]
    pub fn serial(&self) -> u32 {
        self.serial.load(Ordering::Relaxed)
    }

    /// Sets the SOA serial every response carries from now on.
    pub(super) fn set_serial(&self, serial: u32) {
        self.serial.store(serial, Ordering::Relaxed);
    }

    /// The SOA RDATA with `serial`.
    pub(super) fn soa_rdata_with(&self, serial: u32) -> Vec<u8> {
        let mut rdata = self.soa_rdata.clone();
        let at = rdata.len() - SOA_SERIAL_FROM_END;
        rdata[at..at + 4].copy_from_slice(&serial.to_be_bytes());
        rdata
    }

    /// The zone's name in wire form (lower case).
    pub(super) fn zone_wire(&self) -> &[u8] {
        &self.zone_wire
    }

    /// The masks served under `x<hex>` names, when `--allow-filters` lists them.
    pub(super) fn allow_filters(&self) -> Option<&[u64]> {
        self.allow_filters.as_deref()
    }

    /// Returns the service mask of a name inside the zone, given the index of the zone's
    /// first label in it: the default mask for the apex, the hex mask of an allowed
    /// `x<hex>` label, `None` for unknown names.
    #[inline]
    pub(super) fn mask_of(&self, req: &Request<'_>, zone_start: usize) -> Option<u64> {
        match zone_start {
            0 => Some(self.default_mask),
            1 => parse_mask_label(req.label(0)).filter(|m| self.is_allowed(*m)),
            _ => None,
        }
    }

    /// Returns the index of the first label of the zone in the question name, or `None`
    /// when the name is outside the zone.
    #[inline]
    pub(super) fn zone_start(&self, req: &Request<'_>) -> Option<usize> {
        let start = req.label_count.checked_sub(self.zone_labels)?;
        let name_end = req.question.len() - 4;
        let suffix = &req.question[usize::from(req.labels[start])..name_end];
        // Length bytes (0 to 63) are no letters, so folding case compares them exactly.
        suffix
            .eq_ignore_ascii_case(&self.zone_wire)
            .then_some(start)
    }

    /// Returns whether `x<mask>` is served (always, unless `allow_filters` is set).
    pub fn is_allowed(&self, mask: u64) -> bool {
        self.allow_filters
            .as_ref()
            .is_none_or(|masks| masks.binary_search(&mask).is_ok())
    }

    /// Returns the mask of the bare zone name.
    pub fn default_mask(&self) -> u64 {
        self.default_mask
    }
}

/// Parses an `x<hex>` label: `x` or `X`, 1 to 16 hex digits without a leading zero.
pub fn parse_mask_label(label: &[u8]) -> Option<u64> {
    let (first, hex) = label.split_first()?;
    if !matches!(first, b'x' | b'X') || hex.is_empty() || hex.len() > 16 || hex[0] == b'0' {
        return None;
    }
    hex.iter().try_fold(0u64, |acc, &c| {
        let digit = char::from(c).to_digit(16)?;
        Some(acc << 4 | u64::from(digit))
    })
}

/// The SOA timers: refresh every `--zone-refresh` (when a secondary missed a NOTIFY, it
/// is at most that late), retry after a minute at most, expire after a week, and the
/// negative TTL as minimum.
fn timers(config: &DnsConfig) -> [u32; 4] {
    let refresh = u32::try_from(config.zone_refresh.as_secs()).unwrap_or(u32::MAX);
    let refresh = refresh.clamp(1, SOA_EXPIRE / 2);
    [
        refresh,
        SOA_RETRY.min(refresh),
        SOA_EXPIRE,
        config.negative_ttl,
    ]
}

/// The zone's SOA record, naming `ns` and the configured mailbox.
fn soa(text: &ZoneText, ns: Name, serial: u32) -> Result<SOA, ConfigError> {
    let mbox = to_name("mbox", &text.mbox)?;
    let [refresh, retry, expire, minimum] = text.timers;
    // The timers fit in i32: refresh and retry are capped by expire, a week.
    Ok(SOA::new(
        ns,
        mbox,
        serial,
        refresh as i32,
        retry as i32,
        expire as i32,
        minimum,
    ))
}

/// The current UNIX time, the serial of a zone that names none.
fn unix_time_serial() -> u32 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    now.map_or(1, |d| d.as_secs() as u32)
}

/// A normalized name (lower case, no trailing dot) in wire form, root label included.
fn wire_name(name: &str) -> Vec<u8> {
    name.split('.')
        .flat_map(|l| std::iter::once(l.len() as u8).chain(l.bytes()))
        .chain([0])
        .collect()
}

/// The allowed masks sorted and deduplicated, for binary search.
fn sorted_filters(filters: Option<&[u64]>) -> Option<Vec<u64>> {
    let mut masks = filters?.to_vec();
    masks.sort_unstable();
    masks.dedup();
    Some(masks)
}

fn to_name(field: &'static str, name: &str) -> Result<Name, ConfigError> {
    Name::from_ascii(format!("{name}.")).map_err(|_| ConfigError::InvalidName {
        field,
        name: name.to_owned(),
        reason: "rejected by the DNS encoder",
    })
}

fn encode_rdata(field: &'static str, rdata: &impl BinEncodable) -> Result<Vec<u8>, ConfigError> {
    let mut buf = Vec::new();
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    rdata
        .emit(&mut encoder)
        .map_err(|_| ConfigError::InvalidName {
            field,
            name: String::new(),
            reason: "rejected by the DNS encoder",
        })?;
    Ok(buf)
}
