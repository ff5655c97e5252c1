//! What one simulated node does with one accepted connection, per [`Behaviour`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_compact_blocks::SendCmpct;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use rand::RngExt;
use rand::seq::SliceRandom;

use super::server::Shared;
use super::transport::{Opening, V1_PREFIX_LEN, opening};
use super::v2::{self, Capture, MAX_GARBAGE_LEN, random_bytes};
use super::wire::{Conn, HEADER_LEN, Incoming, V1, Wire, encode_message};
use super::{Behaviour, Network};
use crate::addr::{Host, PeerAddr};

/// Protocol version of the good nodes (Bitcoin Core 22+).
const PROTOCOL_VERSION: u32 = 70016;
/// Protocol version of [`Behaviour::OldVersion`] nodes.
const OLD_PROTOCOL_VERSION: u32 = 31800;
/// Most entries in one `addr`/`addrv2` message (the protocol limit).
const MAX_ADDR_PER_MSG: usize = 1000;
/// Length of a BIP324 public key (ElligatorSwift encoding): any 64 bytes pass for one.
const V2_KEY_LEN: usize = 64;
/// Length field of the [`Behaviour::OversizeHeader`] header.
const OVERSIZE_LEN: u32 = 0xFFFF_FFF0;
/// Network id of the unknown-network entry in poisoned `addrv2` answers (BIP155 ids stop at 6).
const UNKNOWN_NETWORK_ID: u8 = 42;
/// User agents the good nodes take in turn.
const USER_AGENTS: [&str; 4] = [
    "/Satoshi:27.0.0/",
    "/Satoshi:26.1.0/",
    "/Satoshi:25.0.0/",
    "/Satoshi:27.1.0/",
];

/// Serves connection number `nth` (1-based) accepted by node `node`, until the client
/// closes, the node's behaviour ends it, or the network stops.
pub(crate) fn serve(stream: TcpStream, peer: SocketAddr, node: usize, nth: u64, shared: &Shared) {
    let stop = &shared.stop;
    let conn = Conn::new(stream, stop, shared.config.idle_timeout);
    let mut conn = conn.sniffed(&shared.transports[node]);
    if conn.setup().is_err() {
        return;
    }
    match shared.config.nodes[node].behaviour {
        Behaviour::Dead => {}
        Behaviour::Silent => conn.drain(),
        Behaviour::Garbage => send_then_drain(conn, &garbage()),
        Behaviour::OversizeHeader => send_then_drain(conn, &oversize_header(shared.config.magic)),
        Behaviour::Flaky if nth % 2 == 0 => {}
        Behaviour::Slowloris => slowloris(conn, shared, node, peer),
        Behaviour::EndlessStream => endless_stream(conn, shared, node, peer),
        Behaviour::V2 => dual(conn, shared, node, nth, peer),
        Behaviour::V2Garbage => v2_garbage(conn, shared.config.magic, nth),
        _ => {
            let magic = session_magic(shared, node);
            converse(V1 { conn, magic }, shared, node, nth, peer);
        }
    }
}

/// Holds the node's side of the conversation until it ends.
fn converse<W: Wire>(wire: W, shared: &Shared, node: usize, nth: u64, peer: SocketAddr) {
    let mut session = Session::new(wire, shared, node, nth, peer);
    // Errors only mean the client went away or misbehaved: the connection just ends.
    let _ = session.run();
}

/// A [`Behaviour::V2`] node: v1 if the client opens with a v1 `version` header, closes on
/// a foreign network's, and runs the BIP324 responder otherwise (as Core does).
fn dual(mut conn: Conn<'_>, shared: &Shared, node: usize, nth: u64, peer: SocketAddr) {
    let magic = shared.config.magic;
    let Ok(Some(first)) = conn.peek_prefix() else {
        return;
    };
    match opening(&first, magic) {
        Opening::V1 => converse(V1 { conn, magic }, shared, node, nth, peer),
        Opening::ForeignV1 => {
            let _ = conn.read_exact(&mut [0u8; V1_PREFIX_LEN]);
        }
        Opening::V2 => {
            let capture = Capture::new(shared.config.capture_v2);
            if let Some(wire) = v2::accept(&conn, &capture, magic) {
                converse(wire, shared, node, nth, peer);
            }
            if let Some(bytes) = capture.into_bytes() {
                shared.keep_capture(bytes);
            }
        }
    }
}

/// A [`Behaviour::V2Garbage`] node: garbage on v1; on v2, a key and then garbage without
/// a terminator on odd-numbered connections, half a key and the end on even ones.
fn v2_garbage(mut conn: Conn<'_>, magic: Magic, nth: u64) {
    let Ok(Some(first)) = conn.peek_prefix() else {
        return;
    };
    match opening(&first, magic) {
        Opening::V2 if nth % 2 == 0 => {
            let _ = conn.read_exact(&mut [0u8; V1_PREFIX_LEN]);
            let _ = conn.write_all(&random_bytes(V2_KEY_LEN / 2));
        }
        Opening::V2 => {
            // More than the most garbage plus a terminator: the client must give up.
            let len = V2_KEY_LEN + 2 * MAX_GARBAGE_LEN;
            send_then_drain(conn, &random_bytes(len));
        }
        Opening::V1 | Opening::ForeignV1 => send_then_drain(conn, &garbage()),
    }
}

/// The magic a node sends with: the network's, or the wrong one for a
/// [`Behaviour::WrongMagic`] node.
fn session_magic(shared: &Shared, node: usize) -> Magic {
    match shared.config.nodes[node].behaviour {
        Behaviour::WrongMagic => shared.config.wrong_magic,
        _ => shared.config.magic,
    }
}

/// Sends `bytes`, then reads and discards until the client goes away.
fn send_then_drain(mut conn: Conn<'_>, bytes: &[u8]) {
    if conn.write_all(bytes).is_ok() {
        conn.drain();
    }
}

/// What a [`Behaviour::Garbage`] node sends: 2 KiB of random bytes.
fn garbage() -> Vec<u8> {
    random_bytes(2048)
}

/// What a [`Behaviour::OversizeHeader`] node sends: a `version` header with the right
/// magic announcing a payload of [`OVERSIZE_LEN`] bytes, then the start of a payload.
fn oversize_header(magic: Magic) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + 8);
    bytes.extend_from_slice(&magic.to_bytes());
    bytes.extend_from_slice(b"version\0\0\0\0\0");
    bytes.extend_from_slice(&OVERSIZE_LEN.to_le_bytes());
    bytes.extend_from_slice(&[0x5d, 0xf6, 0xe0, 0xe2]);
    bytes.extend_from_slice(&[0x7f, 0x11, 0x01, 0x00, 0x09, 0x04, 0x00, 0x00]);
    bytes
}

/// A [`Behaviour::Slowloris`] node: its `version` one byte per second, then silence.
fn slowloris(mut conn: Conn<'_>, shared: &Shared, node: usize, peer: SocketAddr) {
    let version = NetworkMessage::Version(handshake_version(shared, node, peer));
    for byte in encode_message(shared.config.magic, version) {
        if conn.write_all(&[byte]).is_err() || !conn.pause(Duration::from_secs(1)) {
            return;
        }
    }
    conn.drain();
}

/// A [`Behaviour::EndlessStream`] node: its `version`, then `ping`, `sendheaders` and
/// `feefilter` in turn (a short pause every 16) until the client goes away.
fn endless_stream(mut conn: Conn<'_>, shared: &Shared, node: usize, peer: SocketAddr) {
    let magic = shared.config.magic;
    let version = NetworkMessage::Version(handshake_version(shared, node, peer));
    if conn.send(magic, version).is_err() {
        return;
    }
    for i in 0u64.. {
        let msg = match i % 3 {
            0 => NetworkMessage::Ping(i),
            1 => NetworkMessage::SendHeaders,
            _ => NetworkMessage::FeeFilter(1000),
        };
        if conn.send(magic, msg).is_err() || (i % 16 == 0 && !conn.pause(Duration::from_millis(1)))
        {
            return;
        }
    }
}

/// The services a node announces.
fn node_services(spec: &super::NodeSpec) -> ServiceFlags {
    match spec.behaviour {
        Behaviour::NoServices => ServiceFlags::NONE,
        _ => spec.services,
    }
}

/// The `version` message node `node` sends to `peer`.
fn handshake_version(shared: &Shared, node: usize, peer: SocketAddr) -> VersionMessage {
    let spec = &shared.config.nodes[node];
    let old = spec.behaviour == Behaviour::OldVersion;
    let services = node_services(spec);
    // A hidden node does not give its listener away (Core sends an empty address anyway).
    let own = match spec.network {
        Network::Onion | Network::I2p => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        Network::Clear | Network::Cjdns => spec.addr,
    };
    let mut version = VersionMessage::new(
        services,
        i64::from(now()),
        Address::new(&peer, ServiceFlags::NONE),
        Address::new(&own, services),
        rand::rng().random(),
        if old {
            "/Satoshi:0.3.18/".to_owned()
        } else {
            USER_AGENTS[node % USER_AGENTS.len()].to_owned()
        },
        spec.start_height,
    );
    version.version = if old {
        OLD_PROTOCOL_VERSION
    } else {
        PROTOCOL_VERSION
    };
    version.relay = true;
    version
}

/// One handshaking connection: the node's side of the protocol, over either transport.
struct Session<'a, W> {
    wire: W,
    shared: &'a Shared,
    node: usize,
    nth: u64,
    peer: SocketAddr,
    got_version: bool,
    got_verack: bool,
    /// The client sent `sendaddrv2` before its `verack`.
    addrv2: bool,
    answered: bool,
}

/// One entry of an address answer.
enum Entry {
    /// A peer address: IPs go as `addr` and `addrv2`, CJDNS as IPv6 in `addr`; onion and
    /// I2P names only as `addrv2`.
    Peer(PeerAddr, ServiceFlags),
    /// An entry only `addrv2` can carry, in a form `PeerAddr` has no room for.
    V2Only(AddrV2, u16),
}

impl Entry {
    /// An entry for an IP socket address.
    fn ip(addr: SocketAddr, services: ServiceFlags) -> Entry {
        Entry::Peer(PeerAddr::from_socket(addr), services)
    }

    /// The entry as `addrv2` carries it, seen at `time`.
    fn to_v2(&self, time: u32) -> AddrV2Message {
        let (addr, port, services) = match self {
            Entry::Peer(peer, services) => (v2_addr(peer.host), peer.port, *services),
            Entry::V2Only(addr, port) => (addr.clone(), *port, flood_services()),
        };
        AddrV2Message {
            time,
            services,
            addr,
            port,
        }
    }

    /// The entry as `addr` carries it; `None` for an entry only `addrv2` can carry.
    fn to_v1(&self) -> Option<Address> {
        let Entry::Peer(peer, services) = self else {
            return None;
        };
        let ip = match peer.host {
            Host::V4(ip) => IpAddr::V4(ip),
            Host::V6(ip) | Host::Cjdns(ip) => IpAddr::V6(ip),
            Host::TorV3(_) | Host::I2p(_) => return None,
        };
        Some(Address::new(&SocketAddr::new(ip, peer.port), *services))
    }
}

impl<'a, W: Wire> Session<'a, W> {
    fn new(wire: W, shared: &'a Shared, node: usize, nth: u64, peer: SocketAddr) -> Self {
        Session {
            wire,
            shared,
            node,
            nth,
            peer,
            got_version: false,
            got_verack: false,
            addrv2: false,
            answered: false,
        }
    }

    fn behaviour(&self) -> Behaviour {
        self.shared.config.nodes[self.node].behaviour
    }

    fn services(&self) -> ServiceFlags {
        node_services(&self.shared.config.nodes[self.node])
    }

    /// Answers the client's messages until it closes or sends a foreign magic.
    fn run(&mut self) -> io::Result<()> {
        while let Some(msg) = self.wire.read_message()? {
            if self.behaviour() != Behaviour::WrongMagic && msg.magic != self.shared.config.magic {
                return Ok(()); // Core disconnects on a foreign magic.
            }
            self.handle(&msg)?;
        }
        Ok(())
    }

    /// Answers one message as Core would at this point of the handshake; ignores what
    /// Core would ignore.
    fn handle(&mut self, msg: &Incoming) -> io::Result<()> {
        match msg.command.as_str() {
            "version" if !self.got_version => {
                self.got_version = true;
                self.wait()?;
                let replies = self.handshake();
                self.send_all(replies)
            }
            "sendaddrv2" if self.got_version && !self.got_verack => {
                self.addrv2 = true;
                Ok(())
            }
            "verack" if self.got_version && !self.got_verack => {
                self.got_verack = true;
                self.wait()?;
                let replies = self.after_verack();
                self.send_all(replies)
            }
            "getaddr" if self.got_verack && !self.answered => {
                self.answered = true;
                self.wait()?;
                self.answer_getaddr()
            }
            "ping" if msg.payload.len() >= 8 => self.pong(&msg.payload[..8]),
            _ => Ok(()),
        }
    }

    /// Answers a `ping` whose nonce is `nonce`.
    fn pong(&mut self, nonce: &[u8]) -> io::Result<()> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(nonce);
        self.wait()?;
        self.wire
            .send(NetworkMessage::Pong(u64::from_le_bytes(bytes)))
    }

    /// The delay of a `Slow` node before a reply.
    fn wait(&self) -> io::Result<()> {
        if self.behaviour() == Behaviour::Slow && !self.wire.pause(self.shared.config.slow_delay) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(())
    }

    fn send_all(&mut self, msgs: Vec<NetworkMessage>) -> io::Result<()> {
        msgs.into_iter().try_for_each(|msg| self.wire.send(msg))
    }

    /// `version`, then (as Core does for 70016 peers) `wtxidrelay` and `sendaddrv2`, `verack`.
    fn handshake(&self) -> Vec<NetworkMessage> {
        let old = self.behaviour() == Behaviour::OldVersion;
        let version = handshake_version(self.shared, self.node, self.peer);
        let mut msgs = vec![NetworkMessage::Version(version)];
        if !old {
            msgs.extend([NetworkMessage::WtxidRelay, NetworkMessage::SendAddrV2]);
        }
        msgs.push(NetworkMessage::Verack);
        msgs
    }

    /// The unsolicited messages a Core node sends once the handshake is done.
    fn after_verack(&self) -> Vec<NetworkMessage> {
        if self.behaviour() == Behaviour::OldVersion {
            return Vec::new();
        }
        let own = Entry::Peer(self.shared.config.nodes[self.node].public, self.services());
        let mut msgs = vec![
            NetworkMessage::SendHeaders,
            NetworkMessage::SendCmpct(SendCmpct {
                send_compact: false,
                version: 2,
            }),
            NetworkMessage::Ping(rand::rng().random()),
            NetworkMessage::FeeFilter(1000),
        ];
        msgs.extend(self.addr_message(std::slice::from_ref(&own)));
        msgs
    }

    /// Sends the node's gossip list (plus poison), split in two on every third connection,
    /// then an `AddrFlood` node's flood.
    fn answer_getaddr(&mut self) -> io::Result<()> {
        let mut entries = self.entries();
        if entries.is_empty() {
            return Ok(());
        }
        entries.shuffle(&mut rand::rng());
        let split = (self.nth + self.node as u64) % 3 == 0 && entries.len() >= 2;
        let (first, second) = entries.split_at(if split { entries.len() / 2 } else { 0 });
        self.send_addrs(first)?;
        self.send_addrs(second)?;
        if self.behaviour() == Behaviour::AddrFlood {
            self.flood()?;
        }
        Ok(())
    }

    /// Sends `entries` in messages of at most [`MAX_ADDR_PER_MSG`].
    fn send_addrs(&mut self, entries: &[Entry]) -> io::Result<()> {
        for chunk in entries.chunks(MAX_ADDR_PER_MSG) {
            if let Some(msg) = self.addr_message(chunk) {
                self.wire.send(msg)?;
            }
        }
        Ok(())
    }

    /// The flood of an `AddrFlood` node: `flood_messages` full messages of addresses
    /// where nothing listens, from a range of its own among the flooding nodes.
    fn flood(&mut self) -> io::Result<()> {
        let rank = self.shared.flood_rank[self.node];
        let count = self.shared.config.flood_messages;
        for m in 0..count {
            let first = (rank * count + m) * MAX_ADDR_PER_MSG;
            let chunk: Vec<Entry> = (first..first + MAX_ADDR_PER_MSG)
                .map(|k| Entry::ip(flood_addr(k, self.shared.config.port), flood_services()))
                .collect();
            if let Some(msg) = self.addr_message(&chunk) {
                self.wire.send(msg)?;
            }
        }
        Ok(())
    }

    /// The real nodes this node lists, plus poison if it is a poisoning node.
    fn entries(&self) -> Vec<Entry> {
        let nodes = &self.shared.config.nodes;
        let mut entries: Vec<Entry> = self.shared.plan[self.node]
            .iter()
            .map(|&j| Entry::Peer(nodes[j].public, nodes[j].services))
            .collect();
        if self.shared.poisoner[self.node] {
            let port = self.shared.config.port;
            entries.extend(
                self.shared
                    .config
                    .poison
                    .iter()
                    .map(|&addr| Entry::ip(addr, flood_services())),
            );
            entries.push(Entry::V2Only(
                AddrV2::Unknown(UNKNOWN_NETWORK_ID, vec![0xab; 12]),
                port,
            ));
            let mut onion = [0u8; 32];
            onion[..8].copy_from_slice(&(self.node as u64).to_le_bytes());
            entries.push(Entry::V2Only(AddrV2::TorV3(onion), port));
        }
        entries
    }

    /// An `addrv2` message if the client asked for it, else `addr` (dropping v2-only
    /// entries; `None` if that leaves nothing to send).
    fn addr_message(&self, entries: &[Entry]) -> Option<NetworkMessage> {
        let now = now();
        let mut rng = rand::rng();
        let mut time = || now.saturating_sub(rng.random_range(60..3 * 3600));
        if self.addrv2 {
            return Some(NetworkMessage::AddrV2(
                entries.iter().map(|e| e.to_v2(time())).collect(),
            ));
        }
        let v1: Vec<_> = entries.iter().filter_map(Entry::to_v1).collect();
        (!v1.is_empty() || entries.is_empty())
            .then(|| NetworkMessage::Addr(v1.into_iter().map(|a| (time(), a)).collect()))
    }
}

fn v2_addr(host: Host) -> AddrV2 {
    match host {
        Host::V4(ip) => AddrV2::Ipv4(ip),
        Host::V6(ip) => AddrV2::Ipv6(ip),
        Host::TorV3(key) => AddrV2::TorV3(key),
        Host::I2p(hash) => AddrV2::I2p(hash),
        Host::Cjdns(ip) => AddrV2::Cjdns(ip),
    }
}

/// Address `k` of the flood range 127.200.0.0–127.254.255.255, where nothing listens.
fn flood_addr(k: usize, port: u16) -> SocketAddr {
    let k = k % (55 << 16);
    let octet = |v: usize| u8::try_from(v % 256).expect("precondition: reduced modulo 256");
    let ip = Ipv4Addr::new(127, octet(200 + (k >> 16)), octet(k >> 8), octet(k));
    SocketAddr::new(IpAddr::V4(ip), port)
}

fn flood_services() -> ServiceFlags {
    ServiceFlags::NETWORK | ServiceFlags::WITNESS
}

/// UNIX time in seconds, as P2P timestamps carry it.
fn now() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs).unwrap_or(u32::MAX)
}
