//! How each network is reached (SPEC §9): IPv4 and IPv6 directly or through `--proxy`,
//! Tor v3 through `--onion-proxy`, I2P through `--i2p-proxy`, CJDNS directly with
//! `--cjdns-reachable`. A network without its flag is stored but never dialed. Pure: the
//! flags in, a [`Route`] per address out.

use std::net::SocketAddr;

use crate::addr::{Family, FamilySet, PeerAddr};
use crate::socks5::Target;

/// The proxies the crawler may use, each with its own cap and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// `--proxy`, for IPv4 and IPv6.
    Clear,
    /// `--onion-proxy` (Tor's SocksPort).
    Onion,
    /// `--i2p-proxy` (an I2P router's SOCKS port).
    I2p,
}

impl ProxyKind {
    pub const ALL: [ProxyKind; 3] = [ProxyKind::Clear, ProxyKind::Onion, ProxyKind::I2p];

    /// The flag that sets this proxy, for logs and errors.
    pub fn flag(self) -> &'static str {
        match self {
            ProxyKind::Clear => "--proxy",
            ProxyKind::Onion => "--onion-proxy",
            ProxyKind::I2p => "--i2p-proxy",
        }
    }

    /// The families whose probes go through this proxy.
    pub fn families(self) -> FamilySet {
        let families: &[Family] = match self {
            ProxyKind::Clear => &[Family::Ipv4, Family::Ipv6],
            ProxyKind::Onion => &[Family::Onion],
            ProxyKind::I2p => &[Family::I2p],
        };
        families.iter().copied().collect()
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// The networks flags: which proxies to use and whether CJDNS is reachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Networks {
    /// `--proxy`: IPv4 and IPv6 probes go through it.
    pub proxy: Option<SocketAddr>,
    /// `--onion-proxy`.
    pub onion_proxy: Option<SocketAddr>,
    /// `--i2p-proxy`.
    pub i2p_proxy: Option<SocketAddr>,
    /// `--cjdns-reachable`: CJDNS peers are dialed directly.
    pub cjdns: bool,
}

/// How to reach one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Connect to the peer itself.
    Direct(SocketAddr),
    /// Connect to the proxy `at` and ask it for `target`.
    Socks {
        kind: ProxyKind,
        at: SocketAddr,
        target: Target,
    },
}

impl std::fmt::Display for Route {
    /// The peer, and the proxy if any: `1.2.3.4:8333`, `<name>.onion:8333 via 127.0.0.1:9050`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Direct(sock) => write!(f, "{sock}"),
            Route::Socks { at, target, .. } => write!(f, "{target} via {at}"),
        }
    }
}

impl Route {
    /// The proxy this route goes through, if any.
    pub fn proxy(&self) -> Option<ProxyKind> {
        match self {
            Route::Direct(_) => None,
            Route::Socks { kind, .. } => Some(*kind),
        }
    }
}

impl Networks {
    /// The proxy of `kind`, if configured.
    pub fn proxy(&self, kind: ProxyKind) -> Option<SocketAddr> {
        match kind {
            ProxyKind::Clear => self.proxy,
            ProxyKind::Onion => self.onion_proxy,
            ProxyKind::I2p => self.i2p_proxy,
        }
    }

    /// The proxy that carries `family`'s probes, if one is configured.
    pub fn proxy_for(&self, family: Family) -> Option<ProxyKind> {
        let kind = match family {
            Family::Ipv4 | Family::Ipv6 => ProxyKind::Clear,
            Family::Onion => ProxyKind::Onion,
            Family::I2p => ProxyKind::I2p,
            Family::Cjdns => return None,
        };
        self.proxy(kind).map(|_| kind)
    }

    /// The families the crawler can reach with these flags.
    pub fn reachable(&self) -> FamilySet {
        let mut set = FamilySet::NONE.with(Family::Ipv4).with(Family::Ipv6);
        if self.onion_proxy.is_some() {
            set = set.with(Family::Onion);
        }
        if self.i2p_proxy.is_some() {
            set = set.with(Family::I2p);
        }
        if self.cjdns {
            set = set.with(Family::Cjdns);
        }
        set
    }

    /// How to reach `addr`; `None` when its network has no route (it is never dialed).
    pub fn route(&self, addr: &PeerAddr) -> Option<Route> {
        let family = addr.family();
        if !self.reachable().contains(family) {
            return None;
        }
        let target = match (addr.socket_addr(), addr.proxy_name()) {
            (Some(sock), _) => Target::Ip(sock),
            (None, Some(name)) => Target::Domain(name, addr.port),
            (None, None) => return None,
        };
        match (self.proxy_for(family), target) {
            (None, Target::Ip(sock)) => Some(Route::Direct(sock)),
            (None, Target::Domain(..)) => None,
            (Some(kind), target) => Some(Route::Socks {
                kind,
                at: self.proxy(kind)?,
                target,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Host;

    fn addr(s: &str) -> PeerAddr {
        s.parse().expect("a test address")
    }

    fn onion() -> PeerAddr {
        PeerAddr {
            host: Host::TorV3([7; 32]),
            port: 8333,
        }
    }

    fn i2p() -> PeerAddr {
        PeerAddr {
            host: Host::I2p([9; 32]),
            port: 0,
        }
    }

    #[test]
    fn without_flags_only_ip_is_dialed_directly() {
        let none = Networks::default();
        let v4 = addr("1.2.3.4:8333");
        assert_eq!(
            none.route(&v4),
            Some(Route::Direct(v4.socket_addr().unwrap()))
        );
        assert_eq!(none.route(&onion()), None);
        assert_eq!(none.route(&i2p()), None);
        assert_eq!(none.route(&addr("[fc00::1]:8333")), None);
        assert!(!none.reachable().contains(Family::Onion));
    }

    #[test]
    fn names_go_to_their_proxy_unresolved() {
        let tor: SocketAddr = "127.0.0.1:9050".parse().unwrap();
        let i2pd: SocketAddr = "127.0.0.1:4447".parse().unwrap();
        let nets = Networks {
            onion_proxy: Some(tor),
            i2p_proxy: Some(i2pd),
            cjdns: true,
            ..Networks::default()
        };
        let Some(Route::Socks { kind, at, target }) = nets.route(&onion()) else {
            panic!("an onion peer goes through the Tor proxy");
        };
        assert_eq!((kind, at), (ProxyKind::Onion, tor));
        assert_eq!(target, Target::Domain(onion().host.to_string(), 8333));
        let Some(Route::Socks { kind, target, .. }) = nets.route(&i2p()) else {
            panic!("an I2P peer goes through the I2P proxy");
        };
        assert_eq!(kind, ProxyKind::I2p);
        assert_eq!(target, Target::Domain(i2p().host.to_string(), 0));
        let cjdns = addr("[fc00::1]:8333");
        assert_eq!(
            nets.route(&cjdns),
            Some(Route::Direct(cjdns.socket_addr().unwrap()))
        );
        assert_eq!(nets.reachable(), FamilySet::ALL);
    }

    #[test]
    fn the_clearnet_proxy_carries_ip_but_not_cjdns() {
        let socks: SocketAddr = "127.0.0.1:1080".parse().unwrap();
        let nets = Networks {
            proxy: Some(socks),
            cjdns: true,
            ..Networks::default()
        };
        for a in ["1.2.3.4:8333", "[2001:db8::1]:8333"] {
            let peer = addr(a);
            let expected = Route::Socks {
                kind: ProxyKind::Clear,
                at: socks,
                target: Target::Ip(peer.socket_addr().unwrap()),
            };
            assert_eq!(nets.route(&peer), Some(expected), "{a}");
        }
        let cjdns = addr("[fc00::1]:8333");
        assert_eq!(
            nets.route(&cjdns),
            Some(Route::Direct(cjdns.socket_addr().unwrap()))
        );
        assert_eq!(nets.route(&onion()), None, "--proxy does not carry Tor");
    }
}
