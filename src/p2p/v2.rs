//! The BIP324 v2 (encrypted) transport of a probe: the initiator's handshake and the
//! packets after it, over the same deadline-bounded stream as v1.
//!
//! The `bip324` crate does the cryptography: its `Handshake` state machine (keys, garbage
//! terminator, version packet) and its packet ciphers. The reading is ours, so that our
//! limits hold: every read is bounded by the deadline (the handshake's, like v1's
//! `version`/`verack`), at most 4095 bytes of garbage are read before the terminator must
//! have come, and a packet's length is checked as soon as it is decrypted: over
//! [`MAX_CONTENTS`] the probe ends as `Oversize` before anything is allocated (an encrypted
//! packet cannot be skipped like a v1 payload: it must be authenticated whole).
//!
//! We send no garbage and no decoys. A peer that closes the connection before its garbage
//! terminator (a v1-only node closes at our 64-byte key, which lacks its magic), answers in
//! v1, or sends no terminator in time fails as [`ProbeError::V2Handshake`], the crawler's
//! cue to retry over v1 as Bitcoin Core does; a silent one fails as `Timeout`. After the
//! terminator the peer has proven it speaks v2, and failures are what they are over v1.

pub(crate) mod contents;
#[cfg(test)]
mod tests;

use std::time::Instant;

use bip324::{
    FillBytes, GarbageResult, Handshake, InboundCipher, OutboundCipher, ReceivedKey, Role,
    SentVersion, VersionResult,
};
use bitcoin::p2p::Magic;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::secp256k1::Secp256k1;

use super::decode::{Message, decode_authenticated};
use super::stream::Deadlined;
use super::{Conn, MAX_DECODED_PAYLOAD, ProbeError, Wire};
use contents::LONG_TYPE_LEN;

/// Length of an ElligatorSwift public key, the first thing each side sends.
pub(crate) const KEY_LEN: usize = 64;
/// Length of a garbage terminator.
pub(crate) const TERMINATOR_LEN: usize = 16;
/// Most garbage a peer may send before its terminator (BIP324).
pub(crate) const MAX_GARBAGE: usize = 4095;
/// Length of a packet's encrypted length field.
pub(crate) const LENGTH_LEN: usize = 3;
/// What a packet holds after its length besides the contents: the header byte and the tag.
pub(crate) const PACKET_OVERHEAD: usize = 1 + 16;
/// Largest contents of a packet the probe reads: a decoded payload's cap and the longest
/// message type.
pub(crate) const MAX_CONTENTS: usize = MAX_DECODED_PAYLOAD as usize + LONG_TYPE_LEN;
/// The header bit of a decoy packet (BIP324's "ignore" bit).
const IGNORE_BIT: u8 = 0x80;

/// v2 packets over a stream, bounded by a deadline.
pub(super) struct V2Framed<'a, C> {
    io: Deadlined<'a, C>,
    inbound: InboundCipher,
    outbound: OutboundCipher,
}

/// The 32 bytes the ephemeral secret key is made of.
struct Seed([u8; 32]);

impl FillBytes for Seed {
    fn fill_bytes(&mut self, dest: &mut [u8; 32]) {
        *dest = self.0;
    }
}

impl<'a, C: Conn> V2Framed<'a, C> {
    /// Runs the initiator's handshake on a stream that has just opened, by `deadline`, with
    /// an ephemeral key made of `seed` (random bytes; fixed ones in tests and fuzzing).
    ///
    /// # Errors
    /// `V2Handshake` when the peer does not speak v2, `Timeout`, or, once its terminator
    /// came, as [`Wire::receive`].
    pub(super) fn connect(
        conn: &'a mut C,
        magic: Magic,
        deadline: Instant,
        seed: [u8; 32],
    ) -> Result<V2Framed<'a, C>, ProbeError> {
        let mut io = Deadlined::new(conn, deadline);
        let sent = exchange_keys(&mut io, magic, seed)?;
        let (inbound, outbound) = receive_version(&mut io, sent)?;
        Ok(V2Framed {
            io,
            inbound,
            outbound,
        })
    }
}

/// Sends our key, reads the peer's, then sends our garbage terminator and version packet.
fn exchange_keys<C: Conn>(
    io: &mut Deadlined<'_, C>,
    magic: Magic,
    seed: [u8; 32],
) -> Result<Handshake<SentVersion>, ProbeError> {
    let curve = Secp256k1::signing_only();
    let ours = Handshake::new_with_rng(magic.to_bytes(), Role::Initiator, &mut Seed(seed), &curve)
        .map_err(handshake_error)?;
    let mut key = [0u8; KEY_LEN];
    let ours = ours.send_key(None, &mut key).map_err(handshake_error)?;
    io.write_all(&key).map_err(|e| closed_early(e, "our key"))?;
    let mut theirs = [0u8; KEY_LEN];
    io.read_exact(&mut theirs)
        .map_err(|e| closed_early(e, "its key"))?;
    let ours = ours.receive_key(theirs).map_err(handshake_error)?;
    let mut version = vec![0u8; Handshake::<ReceivedKey<'static>>::send_version_len(None)];
    let ours = ours
        .send_version(&mut version, None)
        .map_err(handshake_error)?;
    io.write_all(&version)
        .map_err(|e| closed_early(e, "our version packet"))?;
    Ok(ours)
}

/// Reads the peer's garbage up to its terminator (at most [`MAX_GARBAGE`] bytes before
/// it), then its decoys and version packet. Returns the session's ciphers.
fn receive_version<C: Conn>(
    io: &mut Deadlined<'_, C>,
    mut sent: Handshake<SentVersion>,
) -> Result<(InboundCipher, OutboundCipher), ProbeError> {
    let limit = MAX_GARBAGE + TERMINATOR_LEN;
    let mut garbage = Vec::with_capacity(512);
    let (mut shake, consumed) = loop {
        match sent.receive_garbage(&garbage).map_err(handshake_error)? {
            GarbageResult::FoundGarbage {
                handshake,
                consumed_bytes,
            } => break (handshake, consumed_bytes),
            GarbageResult::NeedMoreData(again) => sent = again,
        }
        let room = limit - garbage.len();
        io.take_into(&mut garbage, room)
            .map_err(|e| closed_early(e, "its garbage"))?;
    };
    // What came after the terminator is the first packet's.
    io.give_back(garbage.len() - consumed);
    loop {
        let mut packet = read_packet(io, |length| shake.decrypt_packet_len(length))?;
        match shake
            .receive_version(&mut packet)
            .map_err(handshake_error)?
        {
            VersionResult::Complete { cipher } => return Ok(cipher.into_split()),
            VersionResult::Decoy(next) => shake = next,
        }
    }
}

/// Reads one packet's length, decrypted by `decrypt_length`, and, if its contents are at
/// most [`MAX_CONTENTS`], the rest of the packet (header, contents, tag; still encrypted).
fn read_packet<C: Conn>(
    io: &mut Deadlined<'_, C>,
    decrypt_length: impl FnOnce([u8; LENGTH_LEN]) -> Result<usize, bip324::Error>,
) -> Result<Vec<u8>, ProbeError> {
    let mut length = [0u8; LENGTH_LEN];
    io.read_exact(&mut length)?;
    let packet_len = decrypt_length(length).map_err(handshake_error)?;
    let contents = packet_len.saturating_sub(PACKET_OVERHEAD);
    if contents > MAX_CONTENTS {
        return Err(ProbeError::Oversize {
            command: "v2 packet".into(),
            length: u32::try_from(contents).unwrap_or(u32::MAX),
        });
    }
    let mut packet = vec![0u8; packet_len];
    io.read_exact(&mut packet)?;
    Ok(packet)
}

/// A peer that closes (or resets) the connection before its garbage terminator is taken
/// for a v1-only node; anything else (a timeout) stays what it is.
fn closed_early(e: ProbeError, at: &str) -> ProbeError {
    match e {
        ProbeError::Closed => ProbeError::V2Handshake(format!("connection closed at {at}")),
        e => e,
    }
}

fn handshake_error(e: bip324::Error) -> ProbeError {
    match e {
        bip324::Error::V1Protocol => ProbeError::V2Handshake("the peer answered in v1".into()),
        bip324::Error::NoGarbageTerminator => ProbeError::V2Handshake(format!(
            "no garbage terminator within {} bytes",
            MAX_GARBAGE + TERMINATOR_LEN
        )),
        bip324::Error::Decryption(_) | bip324::Error::CiphertextTooSmall => {
            ProbeError::Protocol("a v2 packet fails authentication".into())
        }
        other => ProbeError::V2Handshake(other.to_string()),
    }
}

impl<C: Conn> Wire for V2Framed<'_, C> {
    fn send_all<const N: usize>(&mut self, msgs: [NetworkMessage; N]) -> Result<(), ProbeError> {
        let mut bytes = Vec::new();
        for msg in msgs {
            let contents = contents::encode(&msg);
            let packet = self
                .outbound
                .encrypt_to_vec(&contents, bip324::PacketType::Genuine, None);
            bytes.extend(packet);
        }
        self.io.write_all(&bytes)
    }

    /// Reads packets until one is not a decoy, and decodes its message.
    fn receive(&mut self) -> Result<Message, ProbeError> {
        loop {
            let inbound = &mut self.inbound;
            let mut packet =
                read_packet(
                    &mut self.io,
                    |length| Ok(inbound.decrypt_packet_len(length)),
                )?;
            let (_, plain) = inbound
                .decrypt_in_place(&mut packet, None)
                .map_err(handshake_error)?;
            let Some((&header, contents)) = plain.split_first() else {
                return Err(ProbeError::Protocol("a v2 packet without header".into()));
            };
            if header & IGNORE_BIT == 0 {
                let (command, payload) = contents::decode(contents)?;
                return decode_authenticated(&command, payload);
            }
        }
    }

    fn deadline(&self) -> Instant {
        self.io.deadline
    }

    fn set_deadline(&mut self, deadline: Instant) {
        self.io.deadline = deadline;
    }
}
