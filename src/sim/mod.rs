//! A simulated Bitcoin P2P network on 127.0.0.0/8.
//!
//! The seeder's job is to crawl hostile, unreliable peers; it cannot be tested, benchmarked or
//! demonstrated against the real network (no internet here, and a real crawl is neither
//! repeatable nor fast). This module runs thousands of fake nodes in one process, each on its
//! own loopback address (`127.<block>.x.y`, never 127.0.0.1), speaking real P2P messages built
//! with the `bitcoin` crate. Each node has a [`Behaviour`]: most are good, others refuse,
//! stall, send garbage, lie about their magic or version, flood addresses, and so on. Their
//! `getaddr` answers form a graph that lets a crawler starting from [`SimNetwork::seed`] find
//! every node (see [`SimConfig::answer_lists`]), plus "poison" addresses it must never dial.
//!
//! Some nodes may live on Tor, I2P or CJDNS ([`SimConfig::place`], [`Network`]): they are
//! gossiped by `.onion` / `.b32.i2p` name or `fc00::/8` address, and [`SimNetwork::start`]
//! runs an emulated Tor proxy and I2P router (SOCKS5) that reach the onion and I2P nodes'
//! hidden loopback listeners, as the seeder's `--onion-proxy` and `--i2p-proxy` would.
//!
//! Some nodes speak BIP324 v2 transport as well as v1 ([`Behaviour::V2`]), or only pretend
//! to ([`Behaviour::V1AdvertisingV2`], [`Behaviour::V2Garbage`]); every node counts the
//! sessions that opened in each transport ([`SimNetwork::sessions`]).
//!
//! Used by the integration tests, the benches and `dnsseeder demo`.
//!
//! Sockets: one `std` listener per node, all registered with one `mio` poll in a single accept
//! thread; each accepted connection gets a short-lived thread with 100 ms socket timeouts, so
//! [`SimNetwork::shutdown`] (or dropping the network) stops everything within a fraction of a
//! second.

mod gossip;
mod networks;
mod node;
mod proxy;
mod server;
mod socks;
mod transport;
mod v2;
mod wire;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bitcoin::p2p::{Magic, ServiceFlags};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::addr::PeerAddr;

pub use networks::{CJDNS_ROUTE_COMMAND, Network, cjdns_bindable};
pub use proxy::{ProxyStats, SimProxy};
pub use server::SimNetwork;
pub use transport::Sessions;

/// How a simulated node treats the connections it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Behaviour {
    /// Handshakes like Bitcoin Core 27: answers the client's `version` with `version`,
    /// `wtxidrelay`, `sendaddrv2` and `verack`; after the client's `verack` sends
    /// `sendheaders`, `sendcmpct`, `ping`, `feefilter` and a 1-entry self-announcing `addr`;
    /// answers `ping` with `pong`. Answers the first `getaddr` after the handshake with its
    /// gossip list (`addrv2` if the client sent `sendaddrv2` before its `verack`, else
    /// `addr`), at most 1000 entries per message, split in two on every third connection.
    /// Disconnects on a foreign magic; closes when the client closes. It speaks only v1:
    /// when the client opens with a BIP324 key instead, the key's first bytes are a foreign
    /// magic and it disconnects. Some good nodes advertise P2P_V2 all the same (services
    /// 0xc09 in the mix, see [`SimConfig::new`]), like [`Behaviour::V1AdvertisingV2`].
    Good,
    /// Nothing listens on its address: connections are refused.
    Dead,
    /// Accepts TCP and never sends a byte.
    Silent,
    /// A good node that waits [`SimConfig::slow_delay`] before each reply.
    Slow,
    /// Sends random bytes right after accepting.
    Garbage,
    /// Sends a well-formed header with the right magic and a payload length of 0xFFFF_FFF0.
    OversizeHeader,
    /// A good node speaking with [`SimConfig::wrong_magic`] (it accepts any magic).
    WrongMagic,
    /// Handshakes with protocol version 31800 (below the seeder's ban threshold of 31900).
    OldVersion,
    /// A good node advertising services 0 (whatever its [`NodeSpec::services`] say).
    NoServices,
    /// Good on odd-numbered connections (1st, 3rd, ...); closes even-numbered ones at once.
    /// The alternation is deterministic, per node.
    Flaky,
    /// Good handshake; answers `getaddr` with its real list, then
    /// [`SimConfig::flood_messages`] messages of 1000 addresses where nothing listens.
    AddrFlood,
    /// A good node on a non-default port (the network port + 1), advertised with that port.
    AltPort,
    /// Sends a valid `version` message one byte per second (a slowloris): the handshake
    /// can only end by the prober's deadline.
    Slowloris,
    /// Sends its `version`, then an endless stream of valid messages (`ping`, `inv`,
    /// `sendheaders`, ...) without ever sending `verack`.
    EndlessStream,
    /// A good node that speaks both transports, as Bitcoin Core 26+ does: if the client's
    /// first 16 bytes are a v1 `version` header (the magic, then `version` NUL-padded), it
    /// is `Good` in v1; if they are a v1 header of another network it disconnects;
    /// otherwise it runs the BIP324 responder (sending random garbage of random length
    /// after its key, as Core does) and then `Good`'s conversation over v2 packets. Its
    /// services always include P2P_V2, NETWORK and WITNESS.
    V2,
    /// A `Good` node that speaks only v1 but advertises P2P_V2 (a node behind a proxy that
    /// strips it, or a lie): it disconnects a client that opens with a BIP324 key.
    V1AdvertisingV2,
    /// Advertises P2P_V2 and is never good: to a BIP324 client it sends a key and then
    /// garbage without a terminator (odd-numbered connections) or half a key and closes
    /// (even-numbered ones); to a v1 client, 2 KiB of random bytes.
    V2Garbage,
}

impl Behaviour {
    /// Every behaviour, `Good` first.
    pub const ALL: [Behaviour; 17] = [
        Behaviour::Good,
        Behaviour::Dead,
        Behaviour::Silent,
        Behaviour::Slow,
        Behaviour::Garbage,
        Behaviour::OversizeHeader,
        Behaviour::WrongMagic,
        Behaviour::OldVersion,
        Behaviour::NoServices,
        Behaviour::Flaky,
        Behaviour::AddrFlood,
        Behaviour::AltPort,
        Behaviour::Slowloris,
        Behaviour::EndlessStream,
        Behaviour::V2,
        Behaviour::V1AdvertisingV2,
        Behaviour::V2Garbage,
    ];

    /// The behaviours [`SimConfig::mixed`] deals out, `Good` first: all but the v2 ones
    /// (`V2`, `V1AdvertisingV2`, `V2Garbage`), so the mix stays what tests and benches
    /// were written against.
    pub const MIXED: [Behaviour; 14] = [
        Behaviour::Good,
        Behaviour::Dead,
        Behaviour::Silent,
        Behaviour::Slow,
        Behaviour::Garbage,
        Behaviour::OversizeHeader,
        Behaviour::WrongMagic,
        Behaviour::OldVersion,
        Behaviour::NoServices,
        Behaviour::Flaky,
        Behaviour::AddrFlood,
        Behaviour::AltPort,
        Behaviour::Slowloris,
        Behaviour::EndlessStream,
    ];

    /// Whether a node of this kind answers `getaddr` with other nodes' addresses.
    pub fn answers_getaddr(self) -> bool {
        matches!(
            self,
            Behaviour::Good
                | Behaviour::Slow
                | Behaviour::NoServices
                | Behaviour::Flaky
                | Behaviour::AddrFlood
                | Behaviour::AltPort
                | Behaviour::V2
                | Behaviour::V1AdvertisingV2
        )
    }

    /// Whether the node answers `getaddr` on every connection (not `Flaky`, not `AddrFlood`):
    /// the nodes that vouch for the misbehaving ones in the gossip graph.
    pub(crate) fn is_dependable(self) -> bool {
        matches!(
            self,
            Behaviour::Good
                | Behaviour::Slow
                | Behaviour::NoServices
                | Behaviour::AltPort
                | Behaviour::V2
                | Behaviour::V1AdvertisingV2
        )
    }
}

/// One simulated node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Where it listens (or, for [`Behaviour::Dead`], where nothing listens). For an onion
    /// or I2P node, a hidden loopback listener that only its proxy dials.
    pub addr: SocketAddr,
    /// The overlay it is on ([`SimConfig::place`]).
    pub network: Network,
    /// The address the network knows it by: what other nodes gossip and the seeder stores
    /// (`addr` itself for clear and CJDNS nodes, a `.onion` or `.b32.i2p` name otherwise).
    pub public: PeerAddr,
    /// What it does with connections.
    pub behaviour: Behaviour,
    /// Service bits in its `version` message and in other nodes' gossip about it.
    pub services: ServiceFlags,
    /// Start height in its `version` message.
    pub start_height: i32,
}

/// Everything a [`SimNetwork`] needs: the nodes and the knobs of their behaviours.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Network magic the nodes speak (and expect from clients).
    pub magic: Magic,
    /// The network's default P2P port.
    pub port: u16,
    /// The nodes, in order; [`SimConfig::answer_lists`] is aligned with it.
    pub nodes: Vec<NodeSpec>,
    /// Target number of node addresses in one `getaddr` answer (more if a node must vouch for
    /// several misbehaving nodes; split into messages of at most 1000 entries).
    pub addrs_per_answer: usize,
    /// How many ring successors each answering node lists (the reachability backbone).
    pub ring_successors: usize,
    /// Addresses a crawler must never dial, added by every other `Good` node to its answers.
    pub poison: Vec<SocketAddr>,
    /// Delay of a [`Behaviour::Slow`] node before each reply.
    pub slow_delay: Duration,
    /// Number of 1000-entry messages a [`Behaviour::AddrFlood`] node sends after its answer.
    pub flood_messages: usize,
    /// Magic used by [`Behaviour::WrongMagic`] nodes.
    pub wrong_magic: Magic,
    /// A connection whose client sends nothing for this long is closed (also the lifetime of
    /// a `Silent` connection).
    pub idle_timeout: Duration,
    /// Seed of the RNG that draws the random part of the gossip lists.
    pub gossip_seed: u64,
    /// How long the emulated Tor and I2P proxies wait before answering a CONNECT to a known
    /// name (a circuit being built).
    pub circuit_delay: Duration,
    /// Whether each v2 session of a [`Behaviour::V2`] node keeps the raw bytes its client
    /// sent after the handshake (the first 64 KiB), for [`SimNetwork::v2_captures`]. Off by
    /// default.
    pub capture_v2: bool,
    /// The first /16 block of 127.0.0.0/8 reserved for this configuration.
    block: usize,
    /// Index of the first address of the block that no node uses (two are kept for the
    /// proxies).
    spare: usize,
}

/// Nodes per /16 block: third octet 0..=255, fourth octet 1..=254.
const NODES_PER_BLOCK: usize = 256 * 254;
/// Addresses reserved after the nodes' for the emulated proxies (Tor, I2P).
const PROXY_ADDRS: usize = 2;
/// Second octets 1..=199 hold nodes; 200..=254 hold the flood addresses.
const LAST_NODE_BLOCK: usize = 199;
/// The next free second octet for a new configuration in this process.
static NEXT_BLOCK: AtomicUsize = AtomicUsize::new(1);

/// Reserves `count` consecutive /16 blocks of 127.0.0.0/8 for one configuration, so that
/// networks built in parallel (tests) never share an address. Wraps after 127.199.0.0/16.
fn reserve_blocks(count: usize) -> usize {
    let span = LAST_NODE_BLOCK;
    let mut start = 0;
    let _ = NEXT_BLOCK.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
        start = if next + count - 1 > LAST_NODE_BLOCK {
            1
        } else {
            next
        };
        Some((start + count - 1) % span + 1)
    });
    start
}

/// Address of node `index` of a configuration whose first block is `block`.
fn node_ip(block: usize, index: usize) -> Ipv4Addr {
    let block = block + index / NODES_PER_BLOCK;
    let within = index % NODES_PER_BLOCK;
    let octet = |v: usize| u8::try_from(v).expect("precondition: octet computed modulo 256");
    Ipv4Addr::new(
        127,
        octet(block.min(LAST_NODE_BLOCK)),
        octet(within / 254),
        octet(within % 254 + 1),
    )
}

/// The port an [`Behaviour::AltPort`] node listens on.
fn alt_port(port: u16) -> u16 {
    port.checked_add(1).unwrap_or(port - 1)
}

/// Service bits handed out in turn to nodes (most have NETWORK).
const SERVICE_MIX: [u64; 7] = [0x409, 0x9, 0xc09, 0x1, 0x449, 0x40d, 0x408];
/// Of every 32 nodes built by [`SimConfig::mixed`], the odd positions 1, 3, ..., 25 take the
/// other thirteen of [`Behaviour::MIXED`] in turn; the other 19 are good.
const MIX_PERIOD: usize = 32;

impl SimConfig {
    /// Builds a network with one node per entry of `behaviours`, in that order, on fresh
    /// addresses `127.<block>.x.y` (a block no other configuration of this process uses),
    /// services varied (0x409, 0x9, 0xc09, 0x1, ...; 0 for `NoServices`; P2P_V2 added for
    /// the v2 kinds, and NETWORK and WITNESS too for `V2`), heights around 900,000, and
    /// defaults for every knob. The good nodes given 0xc09 advertise P2P_V2 while speaking
    /// only v1, as [`Behaviour::V1AdvertisingV2`] nodes do.
    ///
    /// # Panics
    ///
    /// If `behaviours` has more than 199 × 65,024 − 2 entries.
    pub fn new(magic: Magic, port: u16, behaviours: &[Behaviour]) -> SimConfig {
        let most = LAST_NODE_BLOCK * NODES_PER_BLOCK - PROXY_ADDRS;
        assert!(
            behaviours.len() <= most,
            "precondition: at most {most} simulated nodes"
        );
        let addresses = behaviours.len() + PROXY_ADDRS;
        let block = reserve_blocks(addresses.div_ceil(NODES_PER_BLOCK));
        let nodes = behaviours
            .iter()
            .enumerate()
            .map(|(i, &behaviour)| node_spec(block, i, behaviour, port))
            .collect();
        let poison_ip = node_ip(block, 4);
        SimConfig {
            magic,
            port,
            nodes,
            addrs_per_answer: 50,
            ring_successors: 3,
            poison: default_poison(port, poison_ip),
            slow_delay: Duration::from_millis(300),
            flood_messages: 5,
            wrong_magic: other_magic(magic),
            idle_timeout: Duration::from_secs(60),
            gossip_seed: 0x5eed,
            circuit_delay: Duration::from_millis(20),
            capture_v2: false,
            block,
            spare: behaviours.len(),
        }
    }

    /// `n` nodes with every behaviour of [`Behaviour::MIXED`] (all but the v2 kinds) in a
    /// fixed proportion: of every 32 nodes, 19 are `Good` and one is of each other kind (so
    /// 500 nodes hold 15 or 16 of each). Node 0 is good.
    pub fn mixed(n: usize, magic: Magic, port: u16) -> SimConfig {
        let behaviours: Vec<Behaviour> = (0..n)
            .map(|i| {
                let pos = i % MIX_PERIOD;
                if pos % 2 == 1 && pos / 2 < Behaviour::MIXED.len() - 1 {
                    Behaviour::MIXED[pos / 2 + 1]
                } else {
                    Behaviour::Good
                }
            })
            .collect();
        SimConfig::new(magic, port, &behaviours)
    }

    /// `n` nodes of which the fractions `silent` and `dead` (rounded) are `Silent` and
    /// `Dead`, the rest `Good`, shuffled with a fixed seed; node 0 is always good. For
    /// benches.
    pub fn with_fractions(n: usize, silent: f64, dead: f64, magic: Magic, port: u16) -> SimConfig {
        let count = |f: f64| (n as f64 * f.clamp(0.0, 1.0)).round() as usize;
        let silent = count(silent).min(n.saturating_sub(1));
        let dead = count(dead).min(n.saturating_sub(1) - silent);
        let mut behaviours = vec![Behaviour::Silent; silent];
        behaviours.extend(std::iter::repeat_n(Behaviour::Dead, dead));
        behaviours.extend(std::iter::repeat_n(
            Behaviour::Good,
            n.saturating_sub(1) - silent - dead,
        ));
        behaviours.shuffle(&mut StdRng::seed_from_u64(n as u64));
        if n > 0 {
            behaviours.insert(0, Behaviour::Good);
        }
        SimConfig::new(magic, port, &behaviours)
    }

    /// The IP addresses each node returns to `getaddr`, aligned with [`SimConfig::nodes`]
    /// (empty for nodes that do not answer): those of clear and CJDNS nodes; onion and I2P
    /// nodes are left out (see [`SimConfig::public_answer_lists`]). Poison and flood
    /// addresses are not included.
    ///
    /// The lists are built deterministically from [`SimConfig::gossip_seed`]: answering nodes
    /// form a shuffled ring in which each lists its next [`SimConfig::ring_successors`];
    /// every non-answering node is listed by two dependable answering nodes (round-robin);
    /// each list is then topped up with random nodes to [`SimConfig::addrs_per_answer`].
    pub fn answer_lists(&self) -> Vec<Vec<SocketAddr>> {
        gossip::plan(self)
            .into_iter()
            .map(|list| {
                list.into_iter()
                    .filter(|&j| matches!(self.nodes[j].network, Network::Clear | Network::Cjdns))
                    .map(|j| self.nodes[j].addr)
                    .collect()
            })
            .collect()
    }
}

impl SimConfig {
    /// Makes a `fraction` of the `Good` nodes (evenly spread, never the seed, node 0) speak
    /// BIP324 v2 as well: [`Behaviour::V2`], advertising P2P_V2. For benches.
    pub fn speak_v2(&mut self, fraction: f64) {
        let good: Vec<usize> = (1..self.nodes.len())
            .filter(|&i| self.nodes[i].behaviour == Behaviour::Good)
            .collect();
        let take = (good.len() as f64 * fraction.clamp(0.0, 1.0)).round() as usize;
        for k in 0..take {
            let i = good[k * good.len() / take.max(1)];
            let node = &mut self.nodes[i];
            node.behaviour = Behaviour::V2;
            node.services |= ServiceFlags::NETWORK | ServiceFlags::WITNESS | ServiceFlags::P2P_V2;
        }
    }
}

/// Node `i` of a configuration whose first block is `block`, on the network's `port`.
fn node_spec(block: usize, i: usize, behaviour: Behaviour, port: u16) -> NodeSpec {
    let port = match behaviour {
        Behaviour::AltPort => alt_port(port),
        _ => port,
    };
    let mix = ServiceFlags::from(SERVICE_MIX[i % SERVICE_MIX.len()]);
    let services = match behaviour {
        Behaviour::NoServices => ServiceFlags::NONE,
        Behaviour::V2 => mix | ServiceFlags::NETWORK | ServiceFlags::WITNESS | ServiceFlags::P2P_V2,
        Behaviour::V1AdvertisingV2 | Behaviour::V2Garbage => mix | ServiceFlags::P2P_V2,
        _ => mix,
    };
    let addr = SocketAddr::new(IpAddr::V4(node_ip(block, i)), port);
    NodeSpec {
        addr,
        network: Network::Clear,
        public: PeerAddr::from_socket(addr),
        behaviour,
        services,
        start_height: 900_000 + i32::try_from(i % 1000).unwrap_or(0),
    }
}

/// The default poison list: unspecified, multicast, broadcast, reserved and port 0.
fn default_poison(port: u16, port_zero_ip: Ipv4Addr) -> Vec<SocketAddr> {
    [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(240, 0, 0, 1),
    ]
    .into_iter()
    .map(|ip| SocketAddr::new(IpAddr::V4(ip), port))
    .chain([SocketAddr::new(IpAddr::V4(port_zero_ip), 0)])
    .collect()
}

/// A real network's magic that differs from `magic`.
fn other_magic(magic: Magic) -> Magic {
    if magic == Magic::TESTNET4 {
        Magic::SIGNET
    } else {
        Magic::TESTNET4
    }
}

#[cfg(test)]
mod tests;
