//! Decoding what a peer sends: message headers, checked before anything is allocated,
//! and the payloads of the few messages a probe reads.
//!
//! It exists apart from the probe so that every limit on hostile input stands in pure
//! functions, with no socket in sight: the magic, the command's characters, the length
//! cap ([`MAX_PAYLOAD`]), the checksum, and the entry cap of address messages
//! ([`MAX_ADDR_PER_MESSAGE`]). The proptests and the fuzz target call them directly. Both
//! transports decode payloads here: v1 after its checksum, v2 after its packet's tag.

use std::net::IpAddr;

use bitcoin::consensus::encode::{self, Decodable, VarInt};
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::p2p::Magic;
use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message_network::VersionMessage;

use super::{HEADER_LEN, Learned, MAX_ADDR_PER_MESSAGE, MAX_PAYLOAD, ProbeError};
use crate::addr::{Host, PeerAddr};

/// A decoded message, as far as a probe cares.
#[derive(Debug)]
pub enum Message {
    Version(VersionMessage),
    Verack,
    Ping(u64),
    Addr(Vec<Learned>),
    /// Anything else, by command name.
    Other(String),
}

/// A checked message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub command: String,
    pub length: u32,
    pub checksum: [u8; 4],
}

/// Reads a 24-byte header: checks the magic, the command's characters and the length cap.
///
/// # Errors
/// `BadMagic`, `Oversize` or `Protocol`.
pub fn parse_header(bytes: &[u8; HEADER_LEN], magic: Magic) -> Result<Header, ProbeError> {
    let got: [u8; 4] = bytes[0..4].try_into().expect("a header has 4 magic bytes");
    if got != magic.to_bytes() {
        return Err(ProbeError::BadMagic(got));
    }
    let command = command_name(&bytes[4..16])?;
    let length = u32::from_le_bytes(bytes[16..20].try_into().expect("4 length bytes"));
    if length > MAX_PAYLOAD {
        return Err(ProbeError::Oversize { command, length });
    }
    let checksum = bytes[20..24].try_into().expect("4 checksum bytes");
    Ok(Header {
        command,
        length,
        checksum,
    })
}

/// Reads a 12-byte command field: printable ASCII, then NUL padding only.
///
/// # Errors
/// `Protocol` for anything else.
pub(super) fn command_name(raw: &[u8]) -> Result<String, ProbeError> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    if !raw[..end].iter().all(|b| b.is_ascii_graphic()) || raw[end..].iter().any(|&b| b != 0) {
        return Err(ProbeError::Protocol("malformed command name".into()));
    }
    Ok(String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// Whether a probe decodes messages named `command` (v1 skips the others).
pub(super) fn is_decoded(command: &str) -> bool {
    matches!(command, "version" | "verack" | "ping" | "addr" | "addrv2")
}

/// Verifies the checksum and decodes the payload of the messages a probe needs (v1).
///
/// # Errors
/// `BadChecksum`, `Oversize` (too many addr entries) or `Protocol`.
pub fn decode_payload(header: &Header, payload: &[u8]) -> Result<Message, ProbeError> {
    let hash = sha256d::Hash::hash(payload);
    if hash.as_byte_array()[..4] != header.checksum {
        return Err(ProbeError::BadChecksum(header.command.clone()));
    }
    decode_authenticated(&header.command, payload)
}

/// Decodes the payload of a `command` message whose integrity is already established (a v1
/// checksum, a v2 packet's authentication tag): the messages a probe needs, by name; any
/// other is [`Message::Other`]. v1 and v2 share it, and so its caps.
///
/// # Errors
/// `Oversize` (too many addr entries) or `Protocol`.
pub fn decode_authenticated(command: &str, payload: &[u8]) -> Result<Message, ProbeError> {
    let bad = |e: encode::Error| ProbeError::Protocol(format!("bad '{command}': {e}"));
    Ok(match command {
        "version" => Message::Version(decode_version(payload).map_err(bad)?),
        "verack" => Message::Verack,
        "ping" => Message::Ping(encode::deserialize_partial::<u64>(payload).map_err(bad)?.0),
        "addr" => Message::Addr(decode_addrs(payload, command, decode_addr_v1)?),
        "addrv2" => Message::Addr(decode_addrs(payload, command, decode_addr_v2)?),
        other => Message::Other(other.to_owned()),
    })
}

/// Decodes a `version`, tolerating trailing bytes (some nodes send them) and a missing
/// `relay` byte (protocol versions before BIP37).
fn decode_version(payload: &[u8]) -> Result<VersionMessage, encode::Error> {
    match encode::deserialize_partial::<VersionMessage>(payload) {
        Ok((v, _)) => Ok(v),
        Err(e) => {
            let mut padded = payload.to_vec();
            padded.push(0);
            encode::deserialize_partial::<VersionMessage>(&padded)
                .map(|(v, _)| v)
                .map_err(|_| e)
        }
    }
}

fn decode_addrs(
    payload: &[u8],
    command: &str,
    entry: fn(&mut &[u8]) -> Result<Option<Learned>, encode::Error>,
) -> Result<Vec<Learned>, ProbeError> {
    let bad = |e: encode::Error| ProbeError::Protocol(format!("bad '{command}': {e}"));
    let mut reader = payload;
    let count = VarInt::consensus_decode(&mut reader).map_err(bad)?.0;
    if count > MAX_ADDR_PER_MESSAGE {
        return Err(ProbeError::Oversize {
            command: format!("{command} with {count} entries"),
            length: payload.len() as u32,
        });
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        if let Some(learned) = entry(&mut reader).map_err(bad)? {
            out.push(learned);
        }
    }
    Ok(out)
}

fn decode_addr_v1(reader: &mut &[u8]) -> Result<Option<Learned>, encode::Error> {
    let time = u32::consensus_decode(reader)?;
    let address = Address::consensus_decode(reader)?;
    Ok(address.socket_addr().ok().map(|sock| Learned {
        addr: PeerAddr::from_socket(sock),
        services: address.services.to_u64(),
        time,
    }))
}

fn decode_addr_v2(reader: &mut &[u8]) -> Result<Option<Learned>, encode::Error> {
    let m = AddrV2Message::consensus_decode(reader)?;
    let host = match m.addr {
        AddrV2::Ipv4(ip) => Host::V4(ip),
        AddrV2::Ipv6(ip) => Host::from_ip(IpAddr::V6(ip)),
        AddrV2::TorV3(key) => Host::TorV3(key),
        AddrV2::I2p(hash) => Host::I2p(hash),
        AddrV2::Cjdns(ip) => Host::Cjdns(ip),
        AddrV2::TorV2(_) | AddrV2::Unknown(..) => return Ok(None),
    };
    Ok(Some(Learned {
        addr: PeerAddr { host, port: m.port },
        services: m.services.to_u64(),
        time: m.time,
    }))
}
