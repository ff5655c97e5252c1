//! The v1 framing of P2P messages (plaintext: magic, command, length, checksum, payload)
//! over a deadline-bounded stream.
//!
//! Headers are read by hand: the magic is checked, a length over [`MAX_PAYLOAD`] is refused
//! before anything is allocated, the checksum is verified, and only the messages a probe
//! needs are decoded (up to [`MAX_DECODED_PAYLOAD`]); other payloads are skipped through a
//! fixed buffer.
//!
//! [`MAX_PAYLOAD`]: super::MAX_PAYLOAD

use std::time::Instant;

use bitcoin::consensus::encode;
use bitcoin::p2p::Magic;
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};

use super::decode::{Message, decode_payload, is_decoded, parse_header};
use super::stream::Deadlined;
use super::{Conn, HEADER_LEN, MAX_DECODED_PAYLOAD, ProbeError, Wire};

/// v1 message framing over a stream, bounded by a deadline.
pub(super) struct Framed<'a, C> {
    io: Deadlined<'a, C>,
    magic: Magic,
}

impl<'a, C: Conn> Framed<'a, C> {
    pub(super) fn new(conn: &'a mut C, magic: Magic, deadline: Instant) -> Framed<'a, C> {
        Framed {
            io: Deadlined::new(conn, deadline),
            magic,
        }
    }
}

impl<C: Conn> Wire for Framed<'_, C> {
    fn send_all<const N: usize>(&mut self, msgs: [NetworkMessage; N]) -> Result<(), ProbeError> {
        let mut bytes = Vec::new();
        for msg in msgs {
            bytes.extend(encode::serialize(&RawNetworkMessage::new(self.magic, msg)));
        }
        self.io.write_all(&bytes)
    }

    fn receive(&mut self) -> Result<Message, ProbeError> {
        let mut header = [0u8; HEADER_LEN];
        self.io.read_exact(&mut header)?;
        let header = parse_header(&header, self.magic)?;
        if header.length > MAX_DECODED_PAYLOAD && !is_decoded(&header.command) {
            // Not ours to decode: skip without allocating (the checksum goes unchecked).
            self.io.skip(header.length as usize)?;
            return Ok(Message::Other(header.command));
        }
        if header.length > MAX_DECODED_PAYLOAD {
            return Err(ProbeError::Oversize {
                command: header.command,
                length: header.length,
            });
        }
        let mut payload = vec![0u8; header.length as usize];
        self.io.read_exact(&mut payload)?;
        decode_payload(&header, &payload)
    }

    fn deadline(&self) -> Instant {
        self.io.deadline
    }

    fn set_deadline(&mut self, deadline: Instant) {
        self.io.deadline = deadline;
    }
}
