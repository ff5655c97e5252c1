//! Where a simulated node lives: the clear net, or Tor v3, I2P or CJDNS, and the address the
//! network knows it by.
//!
//! The seeder reaches `.onion` and `.b32.i2p` peers only through a SOCKS5 proxy, and CJDNS
//! peers (`fc00::/8`) directly. So an onion or I2P node keeps a hidden loopback listener,
//! known only to its emulated proxy ([`super::proxy`]), and is gossiped under a
//! deterministic Tor v3 key or I2P hash derived from its configuration's block and its
//! index; a CJDNS node listens on `fc00:0:<block>::<index>` itself, which needs
//! `fc00::/8` routed to `lo` ([`cjdns_bindable`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};

use sha3::{Digest, Sha3_256};

use crate::addr::{Host, PeerAddr};

use super::{Behaviour, NodeSpec, SimConfig, node_ip};

/// The overlay a simulated node is reachable on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// IPv4 on loopback, dialed directly.
    Clear,
    /// A Tor v3 hidden service, reached through the emulated Tor proxy.
    Onion,
    /// An I2P destination (port 0), reached through the emulated I2P router.
    I2p,
    /// A CJDNS address in `fc00::/8`, dialed directly.
    Cjdns,
}

/// Last byte of a simulated node's Tor v3 key (the poison onion of `node.rs` has zeros
/// after its first 8 bytes, so the two never meet).
const ONION_MARK: u8 = 0x0e;
/// Last byte of a simulated node's I2P hash.
const I2P_MARK: u8 = 0x12;
/// The route that makes `fc00::/8` local, as the errors name it.
pub const CJDNS_ROUTE_COMMAND: &str = "ip -6 route add local fc00::/8 dev lo";
/// Backlog of a CJDNS listener (std's own listeners use 128).
const CJDNS_BACKLOG: i32 = 1024;

/// A 32-byte key for node `index` of the configuration at `block`, ending in `mark`.
fn overlay_key(block: usize, index: usize, mark: u8) -> [u8; 32] {
    let mut hasher = Sha3_256::new();
    hasher.update(b"dnsseeder sim");
    hasher.update([mark]);
    hasher.update((block as u64).to_le_bytes());
    hasher.update((index as u64).to_le_bytes());
    let mut key: [u8; 32] = hasher.finalize().into();
    key[31] = mark;
    key
}

/// The CJDNS address of node `index` of the configuration at `block`.
fn cjdns_ip(block: usize, index: usize) -> Ipv6Addr {
    let seg = |v: usize| u16::try_from(v & 0xffff).unwrap_or(0);
    let n = index + 1;
    Ipv6Addr::new(0xfc00, 0, seg(block), 0, 0, 0, seg(n >> 16), seg(n))
}

/// Whether `ip` is in `fc00::/8`.
pub(crate) fn is_cjdns(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.octets()[0] == 0xfc)
}

impl SimConfig {
    /// Moves a share `fraction` (0 to 1) of the nodes still on [`Network::Clear`] to
    /// `network`: for each behaviour, that share of its clear nodes (rounded), evenly spaced
    /// among them, so every kind gets its part. The seed (the first `Good` node) always
    /// stays clear, and placing on `Clear` does nothing. Deterministic.
    ///
    /// An onion node is then known by a Tor v3 key derived from its index, on its port; an
    /// I2P node by an I2P hash, on port 0; both keep their loopback listener, which only
    /// their proxy dials. A CJDNS node moves to `[fc00:0:<block>::<index + 1>]:<port>`.
    pub fn place(&mut self, network: Network, fraction: f64) {
        if network == Network::Clear {
            return;
        }
        let seed = self
            .nodes
            .iter()
            .position(|n| n.behaviour == Behaviour::Good);
        let fraction = fraction.clamp(0.0, 1.0);
        for behaviour in Behaviour::ALL {
            let clear: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| Some(i) != seed && self.nodes[i].behaviour == behaviour)
                .filter(|&i| self.nodes[i].network == Network::Clear)
                .collect();
            let count = (clear.len() as f64 * fraction).round() as usize;
            for k in 0..count {
                let i = clear[k * clear.len() / count];
                self.move_node(i, network);
            }
        }
    }

    /// Puts node `i` on `network` (not `Clear`), with its address there.
    fn move_node(&mut self, i: usize, network: Network) {
        let block = self.block;
        let node: &mut NodeSpec = &mut self.nodes[i];
        node.network = network;
        node.public = match network {
            Network::Clear => PeerAddr::from_socket(node.addr),
            Network::Onion => PeerAddr {
                host: Host::TorV3(overlay_key(block, i, ONION_MARK)),
                port: node.addr.port(),
            },
            Network::I2p => PeerAddr {
                host: Host::I2p(overlay_key(block, i, I2P_MARK)),
                port: 0,
            },
            Network::Cjdns => {
                node.addr = SocketAddr::new(IpAddr::V6(cjdns_ip(block, i)), node.addr.port());
                PeerAddr::from_socket(node.addr)
            }
        };
    }

    /// The loopback address the emulated proxy for `network` listens on and dials from:
    /// one of the two addresses of the configuration's block that no node uses.
    pub(crate) fn proxy_ip(&self, network: Network) -> Ipv4Addr {
        let extra = usize::from(network != Network::Onion);
        node_ip(self.block, self.spare + extra)
    }

    /// What each node lists in its answers to `getaddr`, aligned with
    /// [`SimConfig::nodes`], as the network knows them: clear and CJDNS nodes by IP, onion
    /// and I2P nodes by name (see [`SimConfig::answer_lists`] for the plan). Poison and
    /// flood addresses are not included.
    pub fn public_answer_lists(&self) -> Vec<Vec<PeerAddr>> {
        super::gossip::plan(self)
            .into_iter()
            .map(|list| list.into_iter().map(|j| self.nodes[j].public).collect())
            .collect()
    }
}

/// Checks that listeners can be bound in `fc00::/8` and that connections to them stay on
/// this machine: the route `local fc00::/8 dev lo` must exist.
///
/// # Errors
///
/// If IPv6 is unavailable, if `fc00::/8` is not routed to `lo` (the message names the
/// command that adds the route), or if the bind fails.
pub fn cjdns_bindable() -> io::Result<()> {
    let probe = SocketAddr::new(IpAddr::V6(cjdns_ip(0, 0)), 9);
    let udp = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))
        .map_err(|e| io::Error::new(e.kind(), format!("IPv6 is unavailable: {e}")))?;
    // Connecting a UDP socket sends nothing: it only asks the kernel for a route.
    udp.connect(probe).map_err(|e| no_route(&e.to_string()))?;
    let via = udp.local_addr()?.ip();
    if !via.is_loopback() && !is_cjdns(via) {
        return Err(no_route(&format!("it leaves through {via}")));
    }
    bind_cjdns(SocketAddr::new(probe.ip(), 0)).map(drop)
}

/// The error of a missing `fc00::/8` route.
fn no_route(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        format!(
            "fc00::/8 is not routed to lo ({why}): add the route with `{CJDNS_ROUTE_COMMAND}` \
             (as root, or in a network namespace with CAP_NET_ADMIN)"
        ),
    )
}

/// Binds a listener on a CJDNS address. The local route makes `fc00::/8` reachable but,
/// unlike 127.0.0.0/8, not bindable: IPv6 binds only configured addresses, so the socket
/// takes `IPV6_FREEBIND` (Linux).
pub(crate) fn bind_cjdns(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_freebind_v6(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
    socket.listen(CJDNS_BACKLOG)?;
    Ok(socket.into())
}
