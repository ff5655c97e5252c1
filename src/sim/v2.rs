//! BIP324 v2 transport for the simulated nodes: the responder's handshake (through the
//! `bip324` crate, over the node's patient [`Conn`]) and the v2 framing of P2P messages,
//! behind the same [`Wire`] as v1 so a [`Behaviour::V2`](super::Behaviour::V2) node holds
//! the very conversation of a `Good` one.
//!
//! A v2 packet's contents are a message type and the consensus-encoded payload: one byte,
//! a BIP324 short ID for the common messages, or 0 followed by the 12-byte NUL-padded
//! command for the others (`version`, `verack`, `getaddr`, `sendaddrv2`, ...).
//!
//! With [`SimConfig::capture_v2`](super::SimConfig::capture_v2) a session keeps the raw bytes
//! its client sent after the handshake ([`Capture`]), so tests can check that nothing went in
//! the clear. The handshake is then read one byte at a time, so that none of the client's
//! first packets is swallowed by the handshake's search for the garbage terminator.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::time::Duration;

use bip324::io::{Payload, Protocol};
use bip324::{PacketType, Role};
use bitcoin::consensus::encode;
use bitcoin::p2p::Magic;
use bitcoin::p2p::message::NetworkMessage;
use rand::{Rng, RngExt};

use super::wire::{Conn, Incoming, Wire};
use crate::p2p::v2::contents::{command_of, short_id};

/// Length of a command in the long form (as in a v1 header).
const COMMAND_LEN: usize = 12;
/// Most garbage a BIP324 party may send after its key (Core picks a length up to this).
pub(crate) const MAX_GARBAGE_LEN: usize = 4095;
/// Bytes a v2 session keeps of what its client sent after the handshake.
const CAPTURE_LIMIT: usize = 64 * 1024;

/// The contents of the v2 packet that carries `msg`.
pub(crate) fn encode_contents(msg: &NetworkMessage) -> Vec<u8> {
    let command = msg.cmd();
    let mut contents = match short_id(command) {
        Some(id) => vec![id],
        None => {
            let mut long = vec![0u8; 1 + COMMAND_LEN];
            long[1..=command.len()].copy_from_slice(command.as_bytes());
            long
        }
    };
    contents.extend(encode::serialize(msg));
    contents
}

/// The command and payload carried by v2 packet `contents`, or `None` for contents Core
/// would not accept as a message (empty, an unknown short ID, a malformed command).
pub(crate) fn decode_contents(contents: &[u8]) -> Option<(String, &[u8])> {
    let (&id, rest) = contents.split_first()?;
    if id != 0 {
        return Some((command_of(id)?.to_owned(), rest));
    }
    let (command, payload) = rest.split_at_checked(COMMAND_LEN)?;
    let len = command.iter().position(|&b| b == 0).unwrap_or(COMMAND_LEN);
    let well_formed = len > 0
        && command[..len].iter().all(u8::is_ascii_graphic)
        && command[len..].iter().all(|&b| b == 0);
    well_formed.then(|| {
        (
            String::from_utf8_lossy(&command[..len]).into_owned(),
            payload,
        )
    })
}

/// The raw bytes one v2 session received after its handshake, when asked for.
#[derive(Debug)]
pub(crate) struct Capture {
    enabled: bool,
    armed: Cell<bool>,
    bytes: RefCell<Vec<u8>>,
}

impl Capture {
    pub(crate) fn new(enabled: bool) -> Self {
        Capture {
            enabled,
            armed: Cell::new(false),
            bytes: RefCell::default(),
        }
    }

    /// Whether reads must go one byte at a time (capturing, handshake not over).
    fn trickles(&self) -> bool {
        self.enabled && !self.armed.get()
    }

    /// Keeps `bytes` once the handshake is over, up to [`CAPTURE_LIMIT`] in all.
    fn record(&self, bytes: &[u8]) {
        if self.enabled && self.armed.get() {
            let mut kept = self.bytes.borrow_mut();
            let room = CAPTURE_LIMIT.saturating_sub(kept.len());
            kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }

    /// What was kept, if capturing and the handshake completed.
    pub(crate) fn into_bytes(self) -> Option<Vec<u8>> {
        (self.enabled && self.armed.get()).then(|| self.bytes.into_inner())
    }
}

/// The reader under the BIP324 protocol: the connection, seen by the [`Capture`].
struct Tap<'c> {
    conn: &'c Conn<'c>,
    capture: &'c Capture,
}

impl Read for Tap<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = if self.capture.trickles() {
            buf.len().min(1)
        } else {
            buf.len()
        };
        let n = self.conn.read_some(&mut buf[..want])?;
        self.capture.record(&buf[..n]);
        Ok(n)
    }
}

/// The v2 transport of one connection, after the handshake.
pub(crate) struct V2<'c> {
    protocol: Protocol<Tap<'c>, &'c Conn<'c>>,
    conn: &'c Conn<'c>,
    magic: Magic,
}

impl std::fmt::Debug for V2<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V2").field("magic", &self.magic).finish()
    }
}

/// Runs the responder's side of the BIP324 handshake on `conn` for the network whose magic
/// is `magic`, sending random garbage of random length after its key as Core does. Returns
/// `None` if the handshake fails (the client goes away, stalls or is not speaking BIP324).
pub(crate) fn accept<'c>(conn: &'c Conn<'c>, capture: &'c Capture, magic: Magic) -> Option<V2<'c>> {
    let tap = Tap { conn, capture };
    let garbage = random_bytes(rand::rng().random_range(0..=MAX_GARBAGE_LEN));
    let garbage = (!garbage.is_empty()).then_some(garbage);
    let protocol = Protocol::new(magic.to_bytes(), Role::Responder, garbage, None, tap, conn);
    let protocol = protocol.ok()?;
    capture.armed.set(true);
    Some(V2 {
        protocol,
        conn,
        magic,
    })
}

impl Wire for V2<'_> {
    /// Skips decoy packets and contents that are no message; any failure ends the
    /// conversation (a v2 stream cannot resynchronise).
    fn read_message(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            let Ok(packet) = self.protocol.read() else {
                return Ok(None);
            };
            if packet.packet_type() == PacketType::Decoy {
                continue;
            }
            if let Some((command, payload)) = decode_contents(packet.contents()) {
                return Ok(Some(Incoming {
                    magic: self.magic,
                    command,
                    payload: payload.to_vec(),
                }));
            }
        }
    }

    fn send(&mut self, msg: NetworkMessage) -> io::Result<()> {
        let payload = Payload::genuine(encode_contents(&msg));
        self.protocol
            .write(&payload)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    fn pause(&self, delay: Duration) -> bool {
        self.conn.pause(delay)
    }
}

/// `len` random bytes.
pub(crate) fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}
