//! What flows between the crawler's threads: due addresses from the scheduler to the
//! workers, probe results and the addresses they taught us from the workers to the writer,
//! and the writer's batches to the store.

use std::net::IpAddr;

use crate::addr::{PeerAddr, netgroup};
use crate::reliability::Probe;

/// An address that is due for a probe.
#[derive(Debug, Clone, PartialEq)]
pub struct DuePeer {
    pub addr: PeerAddr,
    pub last_getaddr: Option<i64>,
    /// Its services as last known (from the peer itself, or gossip): P2P_V2 there makes the
    /// probe try v2 first.
    pub services: u64,
}

/// Where a new address came from (the `source` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Seed,
    DnsSeed,
    Gossip,
    Import,
}

impl Source {
    /// The `source` column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Seed => "seed",
            Source::DnsSeed => "dns-seed",
            Source::Gossip => "gossip",
            Source::Import => "import",
        }
    }
}

/// The group an announcing peer counts in as a source of evidence: its netgroup (/16 of
/// IPv4, /32 of IPv6; a Tor, I2P or CJDNS peer alone), so that one operator's many
/// addresses count once. A non-routable peer (a test network under `--allow-private`)
/// counts by its own address: there, every host is a separate operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceGroup(u64);

impl SourceGroup {
    /// The group of the peer at `addr`.
    pub fn of(addr: &PeerAddr) -> SourceGroup {
        let key = match addr.socket_addr() {
            Some(sock) if addr.is_routable() => netgroup(sock.ip()),
            Some(sock) => fnv1a(&match sock.ip() {
                IpAddr::V4(ip) => ip.octets().to_vec(),
                IpAddr::V6(ip) => ip.octets().to_vec(),
            }),
            None => {
                let text = addr.to_string();
                fnv1a(
                    text.rsplit_once(':')
                        .map_or(&text[..], |(host, _)| host)
                        .as_bytes(),
                )
            }
        };
        SourceGroup(key)
    }

    /// The group's bit in the `source_bits` column (one of 64: distinct groups may share
    /// one, so evidence counts at most 64 and may count a little low). Stored, so the same
    /// in every run and build.
    pub fn bit(self) -> u64 {
        // splitmix64's finalizer spreads netgroups that differ in a few low bits.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        1 << ((z ^ (z >> 31)) % 64)
    }
}

/// FNV-1a: a fixed hash of an address's bytes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An address heard of, not yet probed by us.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPeer {
    pub addr: PeerAddr,
    /// Services as gossiped (kept only until the peer tells us its own).
    pub services: u64,
    /// Gossip timestamp, UNIX seconds.
    pub seen: i64,
    pub source: Source,
    /// The first peer that announced it (none for seeds and imports): its group ranks the
    /// new row among that source's addresses.
    pub announcer: Option<SourceGroup>,
    /// The bits ([`SourceGroup::bit`]) of every group that announced it here.
    pub announced_by: u64,
}

impl NewPeer {
    /// An address `announcer` gossiped, with its services and timestamp as gossiped.
    pub fn gossiped(addr: PeerAddr, services: u64, seen: i64, announcer: SourceGroup) -> NewPeer {
        NewPeer {
            addr,
            services,
            seen,
            source: Source::Gossip,
            announcer: Some(announcer),
            announced_by: announcer.bit(),
        }
    }

    /// An address from `source` (a seed or an import), which no peer announced.
    pub fn unannounced(addr: PeerAddr, seen: i64, source: Source) -> NewPeer {
        NewPeer {
            addr,
            services: 0,
            seen,
            source,
            announcer: None,
            announced_by: 0,
        }
    }
}

/// What a probe found out.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handshake completed.
    Success {
        version: i64,
        services: u64,
        user_agent: String,
        start_height: i64,
        /// The transport spoken: `"v1"` or `"v2"` (the `transport` column).
        transport: &'static str,
    },
    /// It did not; `reason` is stored in `last_error` (`refused`, `timeout`, ...).
    /// A protocol `violation` (bad header, wrong magic, oversize) bans the peer for a day.
    Failure {
        reason: &'static str,
        violation: bool,
    },
}

impl Outcome {
    /// The outcome as the reliability model sees it.
    pub fn as_probe(&self) -> Probe {
        match *self {
            Outcome::Success {
                version,
                start_height,
                ..
            } => Probe::Answered {
                version,
                start_height,
            },
            Outcome::Failure { reason, violation } => Probe::Failed {
                violation: violation.then_some(reason),
            },
        }
    }
}

/// One finished probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub addr: PeerAddr,
    /// When the probe ended, UNIX seconds.
    pub time: i64,
    pub outcome: Outcome,
    /// `getaddr` was sent (and the peer answered the handshake).
    pub asked_getaddr: bool,
}

/// A batch for the writer: results and the addresses they taught us, one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub results: Vec<ProbeResult>,
    pub learned: Vec<NewPeer>,
}
