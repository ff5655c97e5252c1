//! One probe of one peer over a blocking socket: connect, handshake, ask for addresses,
//! and report what the peer said or why it failed.
//!
//! Every peer is hostile until proven otherwise. The conversation runs over one of two
//! framings ([`Transport`]): v1's plaintext messages (`v1`: the magic checked, a length over
//! [`MAX_PAYLOAD`] refused before anything is allocated, the checksum verified, payloads
//! the probe does not read skipped through a fixed buffer) or BIP324's encrypted packets
//! (`v2`: the handshake, then a packet's length checked before it is read). Either way only
//! the messages a probe needs are decoded, with their own, tighter caps. Every read and
//! write is bounded by a deadline: the handshake's (`handshake_timeout` after the
//! connection opened) until the peer's `version` and `verack` are in (v2's key exchange
//! included), then the probe's overall one, cut to `addr_grace` after the peer's answer to
//! `getaddr`. So no peer holds a crawler thread longer than it needs: a silent one fails at
//! the handshake timeout, an answering one is let go shortly after its answer. The checks
//! on what a peer sends are pure functions in `decode`, the socket's deadlines are in
//! `stream`; this module holds the conversation.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::str::FromStr;
use std::time::{Duration, Instant};

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};

use crate::addr::PeerAddr;
use crate::socks5::{self, SocksError, Target};

mod decode;
mod stream;
mod v1;
pub(crate) mod v2;

pub use decode::{Header, Message, decode_authenticated, decode_payload, parse_header};
#[cfg(any(test, feature = "testkit"))]
pub(crate) use stream::READ_BUFFER;
use v1::Framed;
use v2::V2Framed;

/// Largest payload any header may announce (SPEC §4); larger is a protocol violation.
pub const MAX_PAYLOAD: u32 = 4_000_000;
/// Largest `addr`/`addrv2` entry count in one message.
pub const MAX_ADDR_PER_MESSAGE: u64 = 1000;
/// Protocol version we announce.
pub const PROTOCOL_VERSION: u32 = 70016;
/// Largest payload of a message a probe decodes (`addrv2` with 1000 entries of up to
/// 512-byte addresses would be larger, but no real network has such addresses).
pub(crate) const MAX_DECODED_PAYLOAD: u32 = 256 * 1024;
const HEADER_LEN: usize = 24;

/// Why a probe failed. [`ProbeError::reason`] is what the store records.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connection refused")]
    Refused,
    #[error("timed out")]
    Timeout,
    #[error("wrong network magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("bad checksum on '{0}'")]
    BadChecksum(String),
    #[error("oversize '{command}' message of {length} bytes")]
    Oversize { command: String, length: u32 },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection closed by peer")]
    Closed,
    #[error("never dialed: {0} is not a dialable address")]
    Forbidden(SocketAddr),
    /// The SOCKS5 proxy reports the peer unreachable (host or network unreachable, TTL
    /// expired, Tor's onion-service errors).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The proxy itself failed (not the peer's fault: its record is left alone).
    #[error("proxy: {0}")]
    Proxy(String),
    /// The v2 (BIP324) handshake failed before the version exchange: the peer closed or
    /// reset the connection at our key, answered in v1, or sent no garbage terminator in
    /// time. Not a violation: retry over v1 on a new connection.
    #[error("v2 handshake failed: {0}; retry over v1")]
    V2Handshake(String),
    #[error("{0}")]
    Io(io::Error),
}

impl ProbeError {
    /// The short reason stored in `last_error` and counted in `stats`.
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::Refused => "refused",
            ProbeError::Timeout => "timeout",
            ProbeError::BadMagic(_) => "bad-magic",
            ProbeError::BadChecksum(_) => "bad-checksum",
            ProbeError::Oversize { .. } => "oversize",
            ProbeError::Protocol(_) => "protocol",
            ProbeError::Closed => "closed",
            ProbeError::Forbidden(_) => "forbidden",
            ProbeError::Unreachable(_) => "unreachable",
            ProbeError::Proxy(_) => "proxy",
            ProbeError::V2Handshake(_) => "v2-handshake",
            ProbeError::Io(_) => "io",
        }
    }

    /// Whether the failure is the peer breaking the protocol (banned for about a day),
    /// rather than the peer being down.
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            ProbeError::BadMagic(_)
                | ProbeError::BadChecksum(_)
                | ProbeError::Oversize { .. }
                | ProbeError::Protocol(_)
        )
    }

    /// Whether the proxy failed rather than the peer (reason `proxy`).
    pub fn is_proxy_failure(&self) -> bool {
        matches!(self, ProbeError::Proxy(_))
    }

    fn from_socks(e: SocksError) -> ProbeError {
        match e {
            SocksError::Proxy(why) => ProbeError::Proxy(why),
            SocksError::Peer { code: 0x05, .. } => ProbeError::Refused,
            SocksError::Peer { meaning, .. } => ProbeError::Unreachable(meaning.to_owned()),
            SocksError::Timeout => ProbeError::Timeout,
        }
    }

    fn from_io(e: io::Error) -> ProbeError {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ProbeError::Refused,
            // A read timeout surfaces as WouldBlock on Linux.
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ProbeError::Timeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ProbeError::Closed,
            _ => ProbeError::Io(e),
        }
    }
}

/// The transport a probe speaks (SPEC §10): v1's plaintext messages or BIP324's encrypted
/// packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    #[default]
    V1,
    V2,
}

impl Transport {
    /// `"v1"` or `"v2"`, as the store and the CLI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::V1 => "v1",
            Transport::V2 => "v2",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transport name that is neither `v1` nor `v2`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport '{0}': write v1 or v2")]
pub struct ParseTransportError(String);

impl FromStr for Transport {
    type Err = ParseTransportError;

    fn from_str(s: &str) -> Result<Transport, ParseTransportError> {
        match s {
            "v1" => Ok(Transport::V1),
            "v2" => Ok(Transport::V2),
            other => Err(ParseTransportError(other.to_owned())),
        }
    }
}

/// How to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub magic: Magic,
    pub connect_timeout: Duration,
    /// Longest wait from the open connection to the end of the handshake (the peer's
    /// `version` and `verack`); `deadline` still caps it.
    pub handshake_timeout: Duration,
    /// Overall deadline of one probe, connect included (through a proxy: from the open
    /// circuit).
    pub deadline: Duration,
    /// Longest wait for a SOCKS5 proxy to open the connection to the peer (a Tor or I2P
    /// circuit); the proxy's own greeting gets `connect_timeout`.
    pub circuit_timeout: Duration,
    /// Send `getaddr` and collect the answer.
    pub getaddr: bool,
    /// How long to keep collecting after the first multi-entry `addr`/`addrv2` (the answer
    /// to `getaddr`), for the rest of an answer split over several messages; `deadline`
    /// still caps it.
    pub addr_grace: Duration,
    /// Most addresses kept from one peer.
    pub max_addrs: usize,
    pub user_agent: String,
    /// The transport this probe speaks (v1 by default).
    pub transport: Transport,
}

impl ProbeOptions {
    /// Defaults of SPEC §4 for `magic`.
    pub fn new(magic: Magic) -> ProbeOptions {
        ProbeOptions {
            magic,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(20),
            circuit_timeout: Duration::from_secs(30),
            getaddr: true,
            addr_grace: Duration::from_millis(250),
            max_addrs: 2500,
            user_agent: format!("/dnsseeder:{}/", env!("CARGO_PKG_VERSION")),
            transport: Transport::V1,
        }
    }
}

/// An address a peer told us about.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub addr: PeerAddr,
    pub services: u64,
    /// Gossip timestamp, UNIX seconds (not yet clamped).
    pub time: u32,
}

/// What a successful probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    pub version: u32,
    pub services: u64,
    pub user_agent: String,
    pub start_height: i32,
    /// Whether `getaddr` was sent.
    pub asked_getaddr: bool,
    pub addrs: Vec<Learned>,
    /// The transport the probe spoke.
    pub transport: Transport,
}

/// A stream with a settable timeout for the next operation.
pub trait Conn: Read + Write {
    /// Bounds the next reads and writes.
    ///
    /// # Errors
    /// As the socket's `set_read_timeout`.
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()>;

    /// Bounds the next reads (writes may keep an older bound). Defaults to
    /// [`Conn::set_timeout`]; a socket overrides it to save a system call.
    ///
    /// # Errors
    /// As the socket's `set_read_timeout`.
    fn set_read_timeout_only(&mut self, timeout: Duration) -> io::Result<()> {
        self.set_timeout(timeout)
    }

    /// Bounds the next writes (reads may keep an older bound). Defaults to
    /// [`Conn::set_timeout`].
    ///
    /// # Errors
    /// As the socket's `set_write_timeout`.
    fn set_write_timeout_only(&mut self, timeout: Duration) -> io::Result<()> {
        self.set_timeout(timeout)
    }
}

impl Conn for TcpStream {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout_only(timeout)?;
        self.set_write_timeout_only(timeout)
    }

    fn set_read_timeout_only(&mut self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
    }

    fn set_write_timeout_only(&mut self, timeout: Duration) -> io::Result<()> {
        self.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
    }
}

/// Probes `addr`: connect, handshake, optionally `getaddr`. Logs `dial ADDR` at debug
/// level first (tests read it to prove where the crawler went).
///
/// # Errors
/// Why the peer could not be probed.
pub fn probe(addr: SocketAddr, opts: &ProbeOptions) -> Result<PeerInfo, ProbeError> {
    if !crate::addr::is_dialable(addr) {
        return Err(ProbeError::Forbidden(addr));
    }
    let start = Instant::now();
    log::debug!("dial {addr}");
    let mut stream = TcpStream::connect_timeout(&addr, opts.connect_timeout.min(opts.deadline))
        .map_err(ProbeError::from_io)?;
    stream.set_nodelay(true).map_err(ProbeError::Io)?;
    let result = converse(&mut stream, addr, opts, start + opts.deadline);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    result
}

/// Probes the peer `target` through the SOCKS5 proxy at `proxy`: connect to the proxy and
/// greet it within `connect_timeout`, have it open the connection within `circuit_timeout`
/// (names go to it unresolved), then converse as [`probe`] does. Logs `dial TARGET via
/// PROXY` at debug level first.
///
/// # Errors
/// Why the peer could not be probed; [`ProbeError::Proxy`] when the proxy itself failed.
pub fn probe_through(
    proxy: SocketAddr,
    target: &Target,
    opts: &ProbeOptions,
) -> Result<PeerInfo, ProbeError> {
    let peer = match target {
        Target::Ip(sock) if !crate::addr::is_dialable(*sock) => {
            return Err(ProbeError::Forbidden(*sock));
        }
        Target::Ip(sock) => *sock,
        Target::Domain(_, port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), *port),
    };
    let start = Instant::now();
    log::debug!("dial {target} via {proxy}");
    let mut stream = TcpStream::connect_timeout(&proxy, opts.connect_timeout)
        .map_err(|e| ProbeError::Proxy(format!("cannot connect to it: {e}")))?;
    stream.set_nodelay(true).map_err(ProbeError::Io)?;
    let greeted_by = start + opts.connect_timeout;
    socks5::connect(
        &mut stream,
        target,
        greeted_by,
        start + opts.circuit_timeout,
    )
    .map_err(ProbeError::from_socks)?;
    let result = converse(&mut stream, peer, opts, Instant::now() + opts.deadline);
    close_through_proxy(stream);
    result
}

/// Longest wait for a proxy to close its side of a stream after we closed ours.
const PROXY_CLOSE_WAIT: Duration = Duration::from_millis(250);

/// Closes a stream through a proxy the polite way: our side first, then a wait (at most
/// [`PROXY_CLOSE_WAIT`], reading at most 64 KiB the peer still sends) for the proxy to
/// close its side, so that it has ended the stream before the slot it held is used again.
fn close_through_proxy(mut stream: TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + PROXY_CLOSE_WAIT;
    let mut sink = [0u8; 4096];
    let mut left = 64 * 1024usize;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// What a conversation runs over: v1 messages or v2 packets, every read and write bounded
/// by a deadline the conversation may move.
trait Wire {
    /// Sends the messages in one write.
    fn send_all<const N: usize>(&mut self, msgs: [NetworkMessage; N]) -> Result<(), ProbeError>;

    fn send(&mut self, msg: NetworkMessage) -> Result<(), ProbeError> {
        self.send_all([msg])
    }

    /// Reads the next message, decoded if the probe needs it.
    fn receive(&mut self) -> Result<Message, ProbeError>;

    fn deadline(&self) -> Instant;

    fn set_deadline(&mut self, deadline: Instant);
}

/// Runs the handshake and address collection on a stream that has just opened, in the
/// transport `opts.transport` says (v2: BIP324's handshake first): the handshake must end
/// within `opts.handshake_timeout` from now, the whole conversation by `deadline`.
///
/// # Errors
/// Why the conversation failed before the handshake completed ([`ProbeError::Timeout`]
/// when the peer's `version` and `verack` are not in by the handshake's deadline;
/// [`ProbeError::V2Handshake`] when a peer asked for v2 does not speak it).
pub fn converse<C: Conn>(
    conn: &mut C,
    peer: SocketAddr,
    opts: &ProbeOptions,
    deadline: Instant,
) -> Result<PeerInfo, ProbeError> {
    converse_seeded(conn, peer, opts, deadline, rand::random())
}

/// [`converse`], with v2's ephemeral key made of `seed` (tests and fuzzing fix it, so that
/// a peer's script can be written in advance).
pub(crate) fn converse_seeded<C: Conn>(
    conn: &mut C,
    peer: SocketAddr,
    opts: &ProbeOptions,
    deadline: Instant,
    seed: [u8; 32],
) -> Result<PeerInfo, ProbeError> {
    let handshake_deadline = deadline.min(Instant::now() + opts.handshake_timeout);
    match opts.transport {
        Transport::V1 => {
            let mut wire = Framed::new(conn, opts.magic, handshake_deadline);
            talk(&mut wire, peer, opts, deadline)
        }
        Transport::V2 => {
            let mut wire = V2Framed::connect(conn, opts.magic, handshake_deadline, seed)?;
            talk(&mut wire, peer, opts, deadline)
        }
    }
}

/// The conversation after the transport's own handshake: `version`/`verack` by the
/// wire's deadline, then `getaddr` and the answer by `deadline`.
fn talk<W: Wire>(
    io: &mut W,
    peer: SocketAddr,
    opts: &ProbeOptions,
    deadline: Instant,
) -> Result<PeerInfo, ProbeError> {
    let version = handshake(io, peer, opts)?;
    io.set_deadline(deadline);
    let mut info = PeerInfo::from_version(&version, opts.transport);
    if opts.getaddr && version.version >= 31402 {
        info.asked_getaddr = true;
        // Failures here do not undo the handshake: keep what arrived.
        if let Err(e) = io.send(NetworkMessage::GetAddr) {
            log::debug!("{peer}: getaddr not sent: {e}");
            return Ok(info);
        }
        collect_addrs(io, peer, opts, &mut info.addrs);
    }
    Ok(info)
}

impl PeerInfo {
    /// What the peer's `version` says, before any `getaddr`.
    fn from_version(v: &VersionMessage, transport: Transport) -> PeerInfo {
        PeerInfo {
            version: v.version,
            services: v.services.to_u64(),
            user_agent: sanitize_agent(&v.user_agent),
            start_height: v.start_height,
            asked_getaddr: false,
            addrs: Vec::new(),
            transport,
        }
    }
}

/// Sends our `version` and `sendaddrv2`, then answers the peer (`verack` to its
/// `version`, `pong` to its pings) until both its `version` and its `verack` arrived.
/// Returns its `version`.
fn handshake<W: Wire>(
    io: &mut W,
    peer: SocketAddr,
    opts: &ProbeOptions,
) -> Result<VersionMessage, ProbeError> {
    // One write for both: one segment for the peer to read, one system call here.
    io.send_all([
        NetworkMessage::Version(our_version(peer, opts)),
        NetworkMessage::SendAddrV2,
    ])?;
    let (mut version, mut verack) = (None, false);
    while version.is_none() || !verack {
        match io.receive()? {
            Message::Version(v) => {
                if version.is_some() {
                    return Err(ProbeError::Protocol("duplicate version".into()));
                }
                io.send(NetworkMessage::Verack)?;
                version = Some(v);
            }
            Message::Verack => verack = true,
            Message::Ping(nonce) => io.send(NetworkMessage::Pong(nonce))?,
            Message::Addr(_) | Message::Other(_) => {}
        }
    }
    Ok(version.expect("the loop ends only once the version arrived"))
}

/// Collects the addresses the peer sends into `out`, answering its pings, until `out`
/// holds `max_addrs`, the deadline passes (cut to `addr_grace` after the first real
/// answer), or the peer closes or breaks the protocol.
fn collect_addrs<W: Wire>(
    io: &mut W,
    peer: SocketAddr,
    opts: &ProbeOptions,
    out: &mut Vec<Learned>,
) {
    loop {
        let done = match io.receive() {
            Ok(Message::Addr(entries)) => keep_addrs(io, entries, opts, out),
            Ok(Message::Ping(nonce)) => io.send(NetworkMessage::Pong(nonce)).is_err(),
            Ok(_) => false,
            Err(ProbeError::Timeout | ProbeError::Closed) => true,
            Err(e) => {
                log::debug!("{peer}: after handshake: {e}");
                true
            }
        };
        if done {
            return;
        }
    }
}

/// Keeps what fits of `entries` in `out`; after the first real answer (more than one
/// entry, not a self-announcement) listens only `addr_grace` longer, for the rest of a
/// split answer (later messages do not extend the grace). Returns whether `out` is full.
fn keep_addrs<W: Wire>(
    io: &mut W,
    entries: Vec<Learned>,
    opts: &ProbeOptions,
    out: &mut Vec<Learned>,
) -> bool {
    let real_answer = entries.len() > 1;
    let room = opts.max_addrs.saturating_sub(out.len());
    // Exactly what is kept: doubling took 2500 entries to a capacity of 4000.
    out.reserve_exact(entries.len().min(room));
    out.extend(entries.into_iter().take(room));
    if out.len() >= opts.max_addrs {
        return true;
    }
    if real_answer {
        io.set_deadline(io.deadline().min(Instant::now() + opts.addr_grace));
    }
    false
}

fn our_version(peer: SocketAddr, opts: &ProbeOptions) -> VersionMessage {
    let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    let mut v = VersionMessage::new(
        ServiceFlags::NONE,
        crate::unix_now(),
        Address::new(&peer, ServiceFlags::NONE),
        Address::new(&unspecified, ServiceFlags::NONE),
        rand::random(),
        opts.user_agent.clone(),
        0,
    );
    v.version = PROTOCOL_VERSION;
    v.relay = false;
    v
}

/// Strips a user agent to printable characters and a sane length.
fn sanitize_agent(agent: &str) -> String {
    agent
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect()
}

#[cfg(test)]
mod tests;
