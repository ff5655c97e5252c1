//! What the unit tests, the property tests (`src/proptests.rs`), the cargo-fuzz targets
//! (`fuzz/`) and the integration tests share: an in-memory peer for the probe's
//! conversation and the messages it says, a BIP324 peer for its v2 transport and the
//! checks on it ([`v2`]), the invariants they check of a DNS response and
//! of a dump line, the SOCKS5 client's checks ([`socks5`]), and a DNS client over real
//! sockets ([`dns_client`]), asmap files built from prefix lists with the decoder's
//! checks ([`asmap`]), and the checks of the metrics endpoint's HTTP parser ([`http`]).
//! One copy, so the fuzzers and the stable-Rust property tests that mirror them cannot
//! drift apart.
//!
//! It also holds [`ensure_cjdns_route`], which lets the simulated network's CJDNS nodes
//! bind where the machine allows it, and [`generate`], the generator of realistic peer databases that the benches
//! and tests fill their databases with.
//!
//! Not part of the seeder's behaviour; the checks panic on a violation, as a test should.
//! It compiles only for the crate's own tests or with the `testkit` feature, which the
//! integration tests, benches and fuzz targets turn on (the crate is its own
//! dev-dependency): the shipped binary carries none of it.

pub mod asmap;
pub mod dns_client;
pub mod generate;
pub mod http;
pub mod rng;
pub mod socks5;
pub mod transfer;
pub mod v2;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::consensus::encode;
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use hickory_proto::op::Message;

use crate::addr::PeerAddr;
use crate::dns::{MAX_ANSWERS, MAX_UDP_EDNS, MAX_UDP_PLAIN, Transport};
use crate::dump::{DumpFigures, format_line, parse_line};
use crate::p2p::Conn;

/// A P2P message as it travels: `magic`, `command`, then `payload` with its true length
/// and checksum (for commands the `bitcoin` crate would not encode, or payloads it would
/// refuse).
pub fn raw_frame(magic: Magic, command: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_bytes().to_vec();
    let mut name = [0u8; 12];
    name[..command.len()].copy_from_slice(command.as_bytes());
    out.extend_from_slice(&name);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&sha256d::Hash::hash(payload).as_byte_array()[..4]);
    out.extend_from_slice(payload);
    out
}

/// The `version` of a typical peer: protocol `version`, NETWORK | WITNESS, height
/// 850,000, `/Satoshi:27.0.0/`.
pub fn peer_version(version: u32) -> VersionMessage {
    let peer = SocketAddr::from(([127, 0, 0, 1], 18444));
    let mut v = VersionMessage::new(
        ServiceFlags::NETWORK | ServiceFlags::WITNESS,
        0,
        Address::new(&peer, ServiceFlags::NONE),
        Address::new(&peer, ServiceFlags::NONE),
        7,
        "/Satoshi:27.0.0/".into(),
        850_000,
    );
    v.version = version;
    v
}

/// What such a peer sends to complete a handshake: its `version` (protocol 70016), then
/// `verack`.
pub fn peer_handshake(magic: Magic) -> Vec<u8> {
    let mut out = Vec::new();
    for msg in [
        NetworkMessage::Version(peer_version(70016)),
        NetworkMessage::Verack,
    ] {
        out.extend(encode::serialize(&RawNetworkMessage::new(magic, msg)));
    }
    out
}

/// A peer that says a fixed script, at most `chunk` bytes per read, and keeps what it is
/// sent. Reads past the script return 0 (the peer closed), or, with `silent_at_end`, wait
/// out the read timeout the probe last set and fail as a socket's read does then (the peer
/// keeps the connection open and says nothing more).
#[derive(Debug)]
pub struct ScriptedPeer<'a> {
    pub input: &'a [u8],
    pub chunk: usize,
    pub output: Vec<u8>,
    /// Stay silent after the script instead of closing.
    pub silent_at_end: bool,
    /// The read timeout the probe last set.
    pub read_timeout: Duration,
}

impl<'a> ScriptedPeer<'a> {
    /// A peer saying `input`, as many bytes per read as asked, then closing.
    pub fn new(input: &'a [u8]) -> Self {
        ScriptedPeer {
            input,
            chunk: usize::MAX,
            output: Vec::new(),
            silent_at_end: false,
            read_timeout: Duration::ZERO,
        }
    }
}

impl Read for ScriptedPeer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() && self.silent_at_end && !buf.is_empty() {
            std::thread::sleep(self.read_timeout);
            // What a socket's read gives on Linux when its timeout passes.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.chunk).min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for ScriptedPeer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Conn for ScriptedPeer<'_> {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.read_timeout = timeout;
        Ok(())
    }

    fn set_write_timeout_only(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }
}

/// A [`Conn`] that counts the reads and timeout changes the probe makes, and keeps the
/// largest buffer a read was given (a buffer sized by a hostile length would show here).
#[derive(Debug)]
pub struct CountingPeer<'a> {
    pub inner: ScriptedPeer<'a>,
    pub reads: usize,
    pub timeouts: usize,
    pub largest_read: usize,
}

impl<'a> CountingPeer<'a> {
    pub fn new(inner: ScriptedPeer<'a>) -> Self {
        CountingPeer {
            inner,
            reads: 0,
            timeouts: 0,
            largest_read: 0,
        }
    }
}

impl Read for CountingPeer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        self.largest_read = self.largest_read.max(buf.len());
        self.inner.read(buf)
    }
}

impl Write for CountingPeer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Conn for CountingPeer<'_> {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.timeouts += 2;
        self.inner.set_timeout(timeout)
    }

    fn set_read_timeout_only(&mut self, timeout: Duration) -> io::Result<()> {
        self.timeouts += 1;
        self.inner.set_timeout(timeout)
    }

    fn set_write_timeout_only(&mut self, _: Duration) -> io::Result<()> {
        self.timeouts += 1;
        Ok(())
    }
}

/// Checks a DNS response to `request`, if there is one: it parses, echoes the ID with QR
/// set, has at most 30 answers; over UDP it fits 512 bytes (1232 with an OPT record);
/// over TCP it is never truncated. Returns its response code (low 4 bits).
///
/// # Panics
/// When the response breaks one of these.
pub fn check_dns_response(
    request: &[u8],
    response: Option<&[u8]>,
    transport: Transport,
) -> Option<u8> {
    let bytes = response?;
    assert!(bytes.len() >= 12, "a {}-byte response", bytes.len());
    assert_eq!(bytes[..2], request[..2], "ID echoed");
    assert!(bytes[2] & 0x80 != 0, "QR set");
    let msg = Message::from_vec(bytes).unwrap_or_else(|e| panic!("unparsable response: {e}"));
    assert!(msg.answers.len() <= MAX_ANSWERS);
    match transport {
        Transport::Udp => {
            let limit = if msg.edns.is_some() {
                MAX_UDP_EDNS
            } else {
                MAX_UDP_PLAIN
            };
            assert!(bytes.len() <= limit, "{} bytes over UDP", bytes.len());
        }
        Transport::Tcp => assert!(!msg.metadata.truncation, "TC over TCP"),
    }
    Some(bytes[3] & 0x0f)
}

/// Half of the 0.01% a dump line shows, as a fraction, plus room for float error.
const PCT_TOLERANCE: f64 = 0.000_050_000_1;

/// The figures a dump line carries exactly.
fn exact_figures(f: &DumpFigures) -> (bool, i64, i64, u64, i64) {
    (
        f.good,
        f.last_success,
        f.start_height,
        f.services,
        f.version,
    )
}

/// A percentage token as makeseeds.py expects it: `99.50%`.
fn is_percentage(token: &str) -> bool {
    let Some(number) = token.strip_suffix('%') else {
        return false;
    };
    let Some((int, frac)) = number.split_once('.') else {
        return false;
    };
    (1..=3).contains(&int.len())
        && frac.len() == 2
        && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        && number.parse::<f64>().is_ok_and(|v| v <= 100.0)
}

/// Checks the dump line of `addr` with figures `f`: 12 tokens in the makeseeds.py
/// grammar, parsing back to the same figures (the agent without spaces, quotes and
/// control characters; percentages to their two decimals), and a fixed point.
///
/// # Panics
/// When the line breaks one of these.
pub fn check_dump_line(addr: &PeerAddr, f: &DumpFigures) {
    let line = format_line(addr, f);
    let tokens: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(tokens.len(), 12, "{line}");
    assert_eq!(tokens[0], addr.to_string());
    assert!(matches!(tokens[1], "0" | "1"), "{line}");
    assert!(tokens[3..8].iter().all(|t| is_percentage(t)), "{line}");
    assert!(tokens[9].len() >= 8, "{line}");
    assert!(
        tokens[11].len() >= 2 && tokens[11].starts_with('"') && tokens[11].ends_with('"'),
        "{line}"
    );
    let back = parse_line(&line)
        .unwrap_or_else(|e| panic!("{line:?} does not parse back: {e:?}"))
        .unwrap_or_else(|| panic!("{line:?} is not a data line"));
    assert_eq!(back.addr, *addr);
    let g = back
        .figures
        .unwrap_or_else(|| panic!("{line:?} has no figures"));
    assert_eq!(exact_figures(&g), exact_figures(f));
    let agent: String = f
        .user_agent
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '"' && !c.is_control())
        .collect();
    assert_eq!(g.user_agent, agent);
    for (a, b) in g.reliability.iter().zip(&f.reliability) {
        assert!((a - b).abs() <= PCT_TOLERANCE, "{a} vs {b}");
    }
    assert_eq!(format_line(&back.addr, &g), line, "not a fixed point");
}

/// Makes `fc00::/8` bindable for the simulated CJDNS nodes: if [`crate::sim::cjdns_bindable`]
/// fails, adds the route `ip -6 route add local fc00::/8 dev lo` (an existing route is fine)
/// and checks again. Needs root, or a network namespace with CAP_NET_ADMIN
/// (`unshare -rn`).
///
/// # Errors
/// Why the route is missing and could not be added (not root, no `ip`, IPv6 disabled on
/// `lo`), for a test to print as the reason it skips.
pub fn ensure_cjdns_route() -> Result<(), String> {
    use crate::sim::{CJDNS_ROUTE_COMMAND, cjdns_bindable};
    if cjdns_bindable().is_ok() {
        return Ok(());
    }
    let args: Vec<&str> = CJDNS_ROUTE_COMMAND.split(' ').skip(1).collect();
    let out = std::process::Command::new("ip")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run `{CJDNS_ROUTE_COMMAND}` ({e}): is iproute2 installed?"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !stderr.contains("File exists") {
        return Err(format!(
            "`{CJDNS_ROUTE_COMMAND}` failed ({}): it needs root or CAP_NET_ADMIN, and IPv6 on lo",
            stderr.trim()
        ));
    }
    cjdns_bindable().map_err(|e| format!("fc00::/8 is still not bindable: {e}"))
}
