//! The check of a zone transfer's bytes, shared by the fuzz target `dns_transfer` and the
//! property tests: whatever the request, a transfer is length-framed messages under
//! [`MESSAGE_LIMIT`] that parse, echo the request's ID with QR and AA set, and carry the
//! zone from its SOA to the same SOA.

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};

use crate::dns::MESSAGE_LIMIT;

/// Checks `framed`, the transfer answered to `request` (at least 2 bytes), and returns
/// its serial and the number of records.
///
/// # Panics
/// When the transfer breaks one of the rules above.
pub fn check_transfer(request: &[u8], framed: &[u8]) -> (u32, usize) {
    let mut rest = framed;
    let mut records = Vec::new();
    while !rest.is_empty() {
        let [high, low, body @ ..] = rest else {
            panic!("a cut length prefix");
        };
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        assert!(len <= MESSAGE_LIMIT, "a message of {len} bytes");
        let m = Message::from_vec(&body[..len]).unwrap_or_else(|e| panic!("unparsable: {e}"));
        assert_eq!(body[..2], request[..2], "ID echoed");
        assert!(m.metadata.authoritative && body[2] & 0x80 != 0, "QR and AA");
        assert_eq!(m.metadata.response_code.low(), 0, "NOERROR");
        records.extend(m.answers);
        rest = &body[len..];
    }
    let soa = |i: usize| match records.get(i).map(|r| &r.data) {
        Some(RData::SOA(soa)) => soa.serial,
        other => panic!("record {i} is not the SOA: {other:?}"),
    };
    let serial = soa(0);
    assert_eq!(soa(records.len() - 1), serial, "the closing SOA");
    let soas = records
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA);
    assert_eq!(soas.count(), 2, "two SOA records");
    (serial, records.len())
}
