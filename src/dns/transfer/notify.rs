//! DNS NOTIFY messages (RFC 1996): the message that tells a secondary the zone's serial
//! grew, and the check of its answer. Pure; `notifier` sends them.

use super::records::Zone;
use crate::dns::zone::ZoneContext;

/// Opcode NOTIFY.
const OPCODE_NOTIFY: u8 = 4;

/// A NOTIFY for the apex's SOA, with the new SOA in the answer section as a hint of the
/// serial (RFC 1996 §3.7).
pub fn notify_message(id: u16, ctx: &ZoneContext, zone: &Zone) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(&id.to_be_bytes());
    // Opcode NOTIFY and AA; counts: one question, one answer.
    m.extend_from_slice(&[OPCODE_NOTIFY << 3 | 0x04, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
    m.extend_from_slice(ctx.zone_wire());
    m.extend_from_slice(&[0, 6, 0, 1]);
    // The answer's owner is the question's name, at offset 12.
    m.extend_from_slice(&[0xC0, 12, 0, 6, 0, 1]);
    m.extend_from_slice(&ctx.ttl.to_be_bytes());
    let soa = ctx.soa_rdata_with(zone.serial);
    m.extend_from_slice(&(soa.len() as u16).to_be_bytes());
    m.extend_from_slice(&soa);
    m
}

/// What a secondary answered to a NOTIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// A NOTIFY response with this ID and RCODE NOERROR: done.
    Done,
    /// A NOTIFY response with this ID and another RCODE (REFUSED, NOTAUTH...): the
    /// secondary does not take NOTIFY from us; retrying will not help.
    Refused(u8),
    /// Anything else: not an answer to this NOTIFY.
    Other,
}

/// Reads `response` as the answer to the NOTIFY with `id`.
pub fn read_ack(response: &[u8], id: u16) -> Ack {
    let [i0, i1, flags, rcode, ..] = *response else {
        return Ack::Other;
    };
    let is_response = flags & 0x80 != 0;
    let opcode = (flags >> 3) & 0x0f;
    if !is_response || opcode != OPCODE_NOTIFY || u16::from_be_bytes([i0, i1]) != id {
        return Ack::Other;
    }
    match rcode & 0x0f {
        0 => Ack::Done,
        rcode => Ack::Refused(rcode),
    }
}
