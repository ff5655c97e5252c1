//! Address ranges in CIDR notation (`192.0.2.0/24`, `2001:db8::/32`, or a bare address),
//! for `--axfr-allow`: who may transfer the zone.
//!
//! IPv4-mapped IPv6 sources (`::ffff:192.0.2.1`, as a dual-stack socket reports IPv4
//! clients) match the IPv4 ranges.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address range: an address and how many of its leading bits a member shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// The range of one address.
    pub fn host(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, len }
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(net.to_bits().into(), ip.to_bits().into(), self.len, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(net.to_bits(), ip.to_bits(), self.len, 128)
            }
            _ => false,
        }
    }
}

/// Whether the first `len` of the `width` low bits of `a` and `b` agree.
fn prefix_eq(a: u128, b: u128, len: u8, width: u32) -> bool {
    let shift = width - u32::from(len);
    shift >= width || (a >> shift) == (b >> shift)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, len) = text.trim().split_once('/').unwrap_or((text.trim(), ""));
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("'{text}' is not an address range: expected IP or IP/LEN, e.g. 192.0.2.0/24")
        })?;
        let addr = addr.to_canonical();
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            "" => width,
            len => len
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= width)
                .ok_or_else(|| format!("'{text}': the prefix length must be 0 to {width}"))?,
        };
        Ok(Self { addr, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_contain_their_members_only() {
        let net = cidr("192.0.2.0/24");
        assert!(net.contains(ip("192.0.2.0")));
        assert!(net.contains(ip("192.0.2.255")));
        assert!(net.contains(ip("::ffff:192.0.2.7")), "mapped IPv4");
        assert!(!net.contains(ip("192.0.3.0")));
        assert!(!net.contains(ip("::1")));
        let one = cidr("127.0.0.2");
        assert!(one.contains(ip("127.0.0.2")));
        assert!(!one.contains(ip("127.0.0.3")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
        let v6 = cidr("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(cidr("::/0").contains(ip("fc00::1")));
        assert!(cidr("::1/128").contains(ip("::1")));
        assert!(cidr("10.1.2.3/9").contains(ip("10.127.0.1")));
        assert!(!cidr("10.1.2.3/9").contains(ip("10.128.0.1")));
    }

    #[test]
    fn bad_ranges_say_what_is_expected() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host.example",
            "10.0.0.0/x",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains(bad) || bad.is_empty(), "{err}");
        }
        assert_eq!(cidr("::ffff:10.0.0.0/8").to_string(), "10.0.0.0/8");
    }
}
