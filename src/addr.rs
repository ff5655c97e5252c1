//! Peer addresses: the text form stored in the `peers` table, the families Bitcoin
//! gossips about (BIP155), and the routability rules that decide which of them may be
//! stored, dialed and served.
//!
//! The text form is what an operator reads in `sqlite3` and what Bitcoin Core's
//! `makeseeds.py` parses: `1.2.3.4:8333`, `[2001:db8::1]:8333` (lowercase, never
//! IPv4-mapped), `<56 base32>.onion:8333`, `<52 base32>.b32.i2p:0`; CJDNS addresses
//! (`fc00::/8`) are written like IPv6.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use sha3::{Digest, Sha3_256};

/// The host part of a peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address that is not IPv4-mapped and not in the CJDNS range.
    V6(Ipv6Addr),
    /// A Tor v3 hidden service, by its ed25519 public key.
    TorV3([u8; 32]),
    /// An I2P destination, by its SHA-256 hash.
    I2p([u8; 32]),
    /// A CJDNS address (always in `fc00::/8`).
    Cjdns(Ipv6Addr),
}

/// Address family, as stored in the `family` column and chosen with `peers --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4 = 1,
    Ipv6 = 2,
    Onion = 3,
    I2p = 4,
    Cjdns = 5,
}

impl Family {
    /// Every family, in column order.
    pub const ALL: [Family; 5] = [
        Family::Ipv4,
        Family::Ipv6,
        Family::Onion,
        Family::I2p,
        Family::Cjdns,
    ];

    /// Tor, I2P and CJDNS: the networks DNS never serves, and whose rows the scheduler
    /// reads from their own indexes (family codes 3 and up).
    pub fn is_hidden(self) -> bool {
        self as i64 >= 3
    }

    /// The lower-case name used on the command line and in output.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
            Family::Onion => "onion",
            Family::I2p => "i2p",
            Family::Cjdns => "cjdns",
        }
    }

    /// The family stored as `code` in the database, if it is one.
    pub fn from_code(code: i64) -> Option<Family> {
        Family::ALL.into_iter().find(|f| *f as i64 == code)
    }
}

/// A set of families: the networks the crawler can reach now (the scheduler's filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FamilySet(u8);

impl FamilySet {
    /// Every family.
    pub const ALL: FamilySet = FamilySet(0b11_1110);
    /// No family.
    pub const NONE: FamilySet = FamilySet(0);

    /// This set with `family` added.
    pub fn with(self, family: Family) -> FamilySet {
        FamilySet(self.0 | 1 << family as u8)
    }

    /// This set without `family`.
    pub fn without(self, family: Family) -> FamilySet {
        FamilySet(self.0 & !(1 << family as u8))
    }

    /// The families of both sets.
    pub fn union(self, other: FamilySet) -> FamilySet {
        FamilySet(self.0 | other.0)
    }

    /// This set without the families of `other`.
    pub fn minus(self, other: FamilySet) -> FamilySet {
        FamilySet(self.0 & !other.0)
    }

    pub fn contains(self, family: Family) -> bool {
        self.0 & 1 << family as u8 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The one family in the set, if it holds exactly one.
    pub fn only(self) -> Option<Family> {
        let mut families = Family::ALL.into_iter().filter(|&f| self.contains(f));
        let first = families.next()?;
        families.next().is_none().then_some(first)
    }

    /// The set as SQL tests it: bit `family` of the integer (`(?n >> family) & 1`).
    pub fn bits(self) -> i64 {
        i64::from(self.0)
    }
}

impl FromIterator<Family> for FamilySet {
    fn from_iter<I: IntoIterator<Item = Family>>(iter: I) -> FamilySet {
        iter.into_iter().fold(FamilySet::NONE, FamilySet::with)
    }
}

impl FromStr for Family {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Family::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown network '{s}' (expected ipv4, ipv6, onion, i2p or cjdns)")
            })
    }
}

/// A peer address: host and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    pub host: Host,
    pub port: u16,
}

impl PeerAddr {
    /// Builds a peer address from an IP socket address, unmapping IPv4-mapped IPv6 and
    /// recognising the CJDNS range.
    pub fn from_socket(addr: SocketAddr) -> PeerAddr {
        PeerAddr {
            host: Host::from_ip(addr.ip()),
            port: addr.port(),
        }
    }

    /// The family of this address.
    pub fn family(&self) -> Family {
        match self.host {
            Host::V4(_) => Family::Ipv4,
            Host::V6(_) => Family::Ipv6,
            Host::TorV3(_) => Family::Onion,
            Host::I2p(_) => Family::I2p,
            Host::Cjdns(_) => Family::Cjdns,
        }
    }

    /// The socket address of an IP host (IPv4, IPv6 and CJDNS, which is IPv6 on the
    /// wire); `None` for the names only a proxy can reach (Tor, I2P).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::V4(ip) => Some(SocketAddr::new(IpAddr::V4(ip), self.port)),
            Host::V6(ip) | Host::Cjdns(ip) => Some(SocketAddr::new(IpAddr::V6(ip), self.port)),
            Host::TorV3(_) | Host::I2p(_) => None,
        }
    }

    /// The name a SOCKS5 proxy is asked to connect to (`<56>.onion`, `<52>.b32.i2p`); `None`
    /// for IP hosts.
    pub fn proxy_name(&self) -> Option<String> {
        match self.host {
            Host::TorV3(_) | Host::I2p(_) => Some(self.host.to_string()),
            _ => None,
        }
    }

    /// Whether the address could be a peer on the public network (Bitcoin Core's
    /// `IsRoutable`, plus multicast and reserved ranges, and the port rule: I2P peers have
    /// port 0, as in Bitcoin Core, and every other peer a nonzero one).
    pub fn is_routable(&self) -> bool {
        match self.host {
            Host::V4(ip) => self.port != 0 && ipv4_routable(ip),
            Host::V6(ip) => self.port != 0 && ipv6_routable(ip),
            Host::TorV3(_) | Host::Cjdns(_) => self.port != 0,
            Host::I2p(_) => self.port == 0,
        }
    }

    /// Whether the crawler may ever dial this address, whatever the flags: never
    /// 0.0.0.0/8, multicast, broadcast, 240.0.0.0/4, the unspecified address or port 0 (an
    /// I2P address only with port 0; a Tor one with a nonzero port).
    pub fn is_dialable(&self) -> bool {
        match self.socket_addr() {
            Some(sock) => is_dialable(sock),
            None => self.is_routable(),
        }
    }
}

/// Whether `addr` may be dialed at all (see [`PeerAddr::is_dialable`]).
pub fn is_dialable(addr: SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    match Host::from_ip(addr.ip()) {
        Host::V4(ip) => {
            let o = ip.octets();
            o[0] != 0 && !ip.is_multicast() && o[0] < 240
        }
        Host::V6(ip) => !ip.is_unspecified() && !ip.is_multicast(),
        Host::Cjdns(_) => true,
        Host::TorV3(_) | Host::I2p(_) => false,
    }
}

impl Host {
    /// Classifies an IP address: IPv4-mapped IPv6 becomes IPv4, `fc00::/8` is CJDNS.
    pub fn from_ip(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(v4) => Host::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Host::V4(v4),
                None if v6.octets()[0] == 0xfc => Host::Cjdns(v6),
                None => Host::V6(v6),
            },
        }
    }
}

fn ipv4_routable(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let unroutable = a == 0                                    // "this network", INADDR_ANY
        || a == 127                                            // loopback
        || a == 10                                             // RFC1918
        || (a == 172 && (16..32).contains(&b))                 // RFC1918
        || (a == 192 && b == 168)                              // RFC1918
        || (a == 198 && (b == 18 || b == 19))                  // RFC2544 benchmarking
        || (a == 169 && b == 254)                              // RFC3927 link-local
        || (a == 100 && (64..128).contains(&b))                // RFC6598 shared space
        || (a == 192 && b == 0 && c == 2)                      // RFC5737 documentation
        || (a == 198 && b == 51 && c == 100)                   // RFC5737
        || (a == 203 && b == 0 && c == 113)                    // RFC5737
        || a >= 224; // multicast, 240/4 reserved, broadcast
    !unroutable
}

fn ipv6_routable(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let unroutable = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] == 0x2001 && s[1] == 0x0db8)                  // RFC3849 documentation
        || (s[0] & 0xfe00) == 0xfc00                           // RFC4193 unique local
        || (s[0] == 0xfe80 && s[1] == 0 && s[2] == 0 && s[3] == 0) // RFC4862 link-local
        || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0010)       // RFC4843 ORCHID
        || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0020)       // RFC7343 ORCHIDv2
        || (s[0] == 0xfd87 && s[1] == 0xd87e && s[2] == 0xeb43); // Core's internal range
    !unroutable
}

/// The netgroup used for answer diversity: the /16 of an IPv4 address, the /32 of an
/// IPv6 address (other families are their own group).
pub fn netgroup(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (4 << 32) | u64::from(o[0]) << 8 | u64::from(o[1])
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            (6 << 32) | u64::from(u32::from_be_bytes([o[0], o[1], o[2], o[3]]))
        }
    }
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = BASE32.iter().position(|&b| b == c.to_ascii_lowercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    // Leftover bits must be zero padding.
    (buffer & ((1 << bits) - 1) == 0).then_some(out)
}

const TORV3_VERSION: u8 = 3;

fn torv3_checksum(pubkey: &[u8; 32]) -> [u8; 2] {
    let mut hasher = Sha3_256::new();
    hasher.update(b".onion checksum");
    hasher.update(pubkey);
    hasher.update([TORV3_VERSION]);
    let digest = hasher.finalize();
    [digest[0], digest[1]]
}

fn parse_onion(label: &str) -> Option<[u8; 32]> {
    if label.len() != 56 {
        return None;
    }
    let bytes = base32_decode(label)?;
    let pubkey: [u8; 32] = bytes.get(..32)?.try_into().ok()?;
    (bytes.len() == 35 && bytes[32..34] == torv3_checksum(&pubkey) && bytes[34] == TORV3_VERSION)
        .then_some(pubkey)
}

fn parse_i2p(label: &str) -> Option<[u8; 32]> {
    if label.len() != 52 {
        return None;
    }
    base32_decode(label)?.try_into().ok()
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::V4(ip) => write!(f, "{ip}"),
            Host::V6(ip) | Host::Cjdns(ip) => write!(f, "[{ip}]"),
            Host::TorV3(key) => {
                let mut bytes = key.to_vec();
                bytes.extend_from_slice(&torv3_checksum(key));
                bytes.push(TORV3_VERSION);
                write!(f, "{}.onion", base32_encode(&bytes))
            }
            Host::I2p(hash) => write!(f, "{}.b32.i2p", base32_encode(hash)),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why a text could not be read as a peer address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid peer address '{0}' (expected IP:PORT, [IPv6]:PORT, NAME.onion:PORT or NAME.b32.i2p:PORT)"
)]
pub struct AddrParseError(pub String);

impl FromStr for PeerAddr {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AddrParseError(s.chars().take(80).collect());
        if let Ok(sock) = s.parse::<SocketAddr>() {
            return Ok(PeerAddr::from_socket(sock));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(err)?;
        let port: u16 = port.parse().map_err(|_| err())?;
        let host = if let Some(label) = host.strip_suffix(".onion") {
            Host::TorV3(parse_onion(label).ok_or_else(err)?)
        } else if let Some(label) = host.strip_suffix(".b32.i2p") {
            Host::I2p(parse_i2p(label).ok_or_else(err)?)
        } else {
            return Err(err());
        };
        Ok(PeerAddr { host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> PeerAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_text_round_trips() {
        for s in [
            "1.2.3.4:8333",
            "[2001:db8::1]:8333",
            "[fc00::1]:8333",
            "127.0.0.1:18444",
        ] {
            assert_eq!(parse(s).to_string(), s);
        }
        assert_eq!(
            parse("[2001:DB8::1]:8333").to_string(),
            "[2001:db8::1]:8333"
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_becomes_ipv4() {
        let a = parse("[::ffff:1.2.3.4]:8333");
        assert_eq!(a.family(), Family::Ipv4);
        assert_eq!(a.to_string(), "1.2.3.4:8333");
    }

    #[test]
    fn cjdns_range_is_its_own_family() {
        assert_eq!(parse("[fc32::1]:8333").family(), Family::Cjdns);
        assert_eq!(parse("[fd00::1]:8333").family(), Family::Ipv6);
    }

    #[test]
    fn onion_v3_round_trips_with_checksum() {
        let addr = PeerAddr {
            host: Host::TorV3([7; 32]),
            port: 8333,
        };
        let text = addr.to_string();
        assert_eq!(text.len(), 56 + ".onion:8333".len());
        assert_eq!(parse(&text), addr);
        // One changed character breaks the checksum.
        let mut broken = text.into_bytes();
        broken[10] = if broken[10] == b'a' { b'b' } else { b'a' };
        assert!(
            String::from_utf8(broken)
                .unwrap()
                .parse::<PeerAddr>()
                .is_err()
        );
    }

    #[test]
    fn known_onion_address_parses() {
        // The Tor Project's own v3 address.
        let a = parse("2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion:8333");
        assert_eq!(a.family(), Family::Onion);
        assert_eq!(
            a.to_string(),
            "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion:8333"
        );
    }

    #[test]
    fn i2p_round_trips() {
        let addr = PeerAddr {
            host: Host::I2p([0xab; 32]),
            port: 0,
        };
        let text = addr.to_string();
        assert!(text.ends_with(".b32.i2p:0"));
        assert_eq!(parse(&text), addr);
    }

    #[test]
    fn garbage_is_rejected() {
        for s in [
            "",
            "1.2.3.4",
            "1.2.3.4:99999",
            "x.onion:1",
            "[::1]",
            "nonsense:1",
            "1.2.3:4",
        ] {
            assert!(s.parse::<PeerAddr>().is_err(), "{s}");
        }
    }

    #[test]
    fn routability_follows_bitcoin_core() {
        for s in ["1.2.3.4:8333", "[2a01:4f8::1]:8333", "8.8.8.8:1"] {
            assert!(parse(s).is_routable(), "{s}");
        }
        for s in [
            "127.0.0.1:8333",
            "10.1.2.3:8333",
            "172.16.0.1:8333",
            "172.31.255.1:8333",
            "192.168.1.1:8333",
            "169.254.1.1:8333",
            "100.64.0.1:8333",
            "198.18.0.1:8333",
            "192.0.2.1:8333",
            "198.51.100.1:8333",
            "203.0.113.1:8333",
            "0.0.0.0:8333",
            "224.0.0.1:8333",
            "240.0.0.1:8333",
            "255.255.255.255:8333",
            "1.2.3.4:0",
            "[::1]:8333",
            "[::]:8333",
            "[2001:db8::1]:8333",
            "[fe80::1]:8333",
            "[fd00::1]:8333",
            "[ff02::1]:8333",
            "[2001:10::1]:8333",
        ] {
            assert!(!parse(s).is_routable(), "{s}");
        }
        assert!(parse("172.32.0.1:8333").is_routable());
    }

    #[test]
    fn never_dial_guards_hold_whatever_the_flags() {
        for s in [
            "0.0.0.0:8333",
            "0.1.2.3:8333",
            "224.0.0.1:8333",
            "255.255.255.255:8333",
        ] {
            assert!(!parse(s).is_dialable(), "{s}");
        }
        for s in [
            "240.0.0.1:8333",
            "127.0.0.1:0",
            "[::]:8333",
            "[ff02::1]:8333",
        ] {
            assert!(!parse(s).is_dialable(), "{s}");
        }
        assert!(parse("127.0.0.1:8333").is_dialable());
        assert!(parse("[::1]:8333").is_dialable());
        assert!(parse("[fc00::1]:8333").is_dialable());
        assert!(!parse("[fc00::1]:0").is_dialable());
        let tor = |port| PeerAddr {
            host: Host::TorV3([1; 32]),
            port,
        };
        let i2p = |port| PeerAddr {
            host: Host::I2p([1; 32]),
            port,
        };
        assert!(tor(8333).is_dialable() && !tor(0).is_dialable());
        assert!(
            i2p(0).is_dialable() && !i2p(8333).is_dialable(),
            "I2P is port 0 only"
        );
        assert_eq!(
            tor(8333).proxy_name(),
            Some(Host::TorV3([1; 32]).to_string())
        );
        assert_eq!(parse("[fc00::1]:8333").proxy_name(), None);
    }

    #[test]
    fn family_sets_hold_what_was_put_in() {
        let set: FamilySet = [Family::Ipv4, Family::Onion].into_iter().collect();
        assert!(set.contains(Family::Ipv4) && set.contains(Family::Onion));
        assert!(!set.contains(Family::I2p) && !set.without(Family::Onion).contains(Family::Onion));
        assert_eq!(
            Family::ALL.into_iter().collect::<FamilySet>(),
            FamilySet::ALL
        );
        assert!(FamilySet::NONE.is_empty() && !set.is_empty());
        assert_eq!(
            FamilySet::NONE
                .with(Family::Ipv4)
                .union(FamilySet::NONE.with(Family::Onion)),
            set
        );
        assert_eq!(
            set.minus(FamilySet::NONE.with(Family::Onion)),
            FamilySet::NONE.with(Family::Ipv4)
        );
        assert_eq!(set.bits(), 1 << 1 | 1 << 3, "bit n is family code n");
        assert_eq!(set.only(), None);
        assert_eq!(FamilySet::NONE.with(Family::I2p).only(), Some(Family::I2p));
        assert_eq!(FamilySet::NONE.only(), None);
        let hidden: Vec<Family> = Family::ALL.into_iter().filter(|f| f.is_hidden()).collect();
        assert_eq!(hidden, [Family::Onion, Family::I2p, Family::Cjdns]);
    }

    #[test]
    fn netgroups_are_slash16_and_slash32() {
        let g = |s: &str| netgroup(s.parse::<SocketAddr>().unwrap().ip());
        assert_eq!(g("1.2.3.4:1"), g("1.2.200.9:1"));
        assert_ne!(g("1.2.3.4:1"), g("1.3.3.4:1"));
        assert_eq!(g("[2001:db8:1::1]:1"), g("[2001:db8:ffff::2]:1"));
        assert_ne!(g("[2001:db8::1]:1"), g("[2001:db9::1]:1"));
        assert_ne!(g("0.0.0.1:1"), g("[::1]:1"));
    }
}
