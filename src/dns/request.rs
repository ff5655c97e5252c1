//! Request parsing: a request's bytes in, a [`Request`] (or the reason it gets no normal
//! response) out.
//!
//! It exists so that every rule about what a request may contain stands in one place,
//! apart from what the response says. The header, and every record after the question,
//! are decoded with hickory-proto (so a malformed OPT or a trailing record is caught),
//! except for what every query has, read by hand with the same rules (a unit test
//! compares both on mutated packets): the question, and a lone OPT record without
//! options. Decoding the question into a hickory `Name` cost more than writing the
//! answer.

use hickory_proto::op::{Header, HeaderCounts, MessageType, OpCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::response::{RCODE_FORMERR, RCODE_NOTIMP};

/// Length of the DNS header.
pub(super) const HEADER_LEN: usize = 12;
/// Most labels of a name: 255 bytes hold at most 127 one-byte labels and the root.
const MAX_LABELS: usize = 128;

/// The EDNS0 facts of a request.
#[derive(Debug, Clone, Copy)]
pub(super) struct EdnsInfo {
    pub(super) payload: u16,
    pub(super) version: u8,
}

/// A request that passed decoding.
pub(super) struct Request<'a> {
    pub(super) id: u16,
    /// Opcode (always QUERY here), RD and CD bits, to echo.
    pub(super) flags: [u8; 2],
    /// The raw question: name, type, class.
    pub(super) question: &'a [u8],
    /// Offsets of the name's labels in `question`.
    pub(super) labels: [u8; MAX_LABELS],
    pub(super) label_count: usize,
    pub(super) qtype: RecordType,
    pub(super) qclass: DNSClass,
    pub(super) edns: Option<EdnsInfo>,
}

impl Request<'_> {
    /// Returns the bytes of label `i` of the question name.
    #[inline]
    pub(super) fn label(&self, i: usize) -> &[u8] {
        let start = usize::from(self.labels[i]);
        let len = usize::from(self.question[start]);
        &self.question[start + 1..start + 1 + len]
    }
}

/// Why a request gets no normal response.
pub(super) enum Reject {
    Silent,
    Error { id: u16, flags: [u8; 2], rcode: u8 },
}

/// A header that passed [`read_header`]'s checks, with the decoder past it.
struct Head<'a> {
    decoder: BinDecoder<'a>,
    counts: HeaderCounts,
    id: u16,
    flags: [u8; 2],
}

impl<'a> Head<'a> {
    /// The FORMERR reply to a request whose header parsed but whose rest did not.
    #[inline]
    fn formerr(&self) -> Reject {
        Reject::Error {
            id: self.id,
            flags: self.flags,
            rcode: RCODE_FORMERR,
        }
    }

    /// The request of this header, with its question and EDNS0 facts.
    #[inline]
    fn into_request(
        self,
        question: Question<'a>,
        qtype: RecordType,
        qclass: DNSClass,
        edns: Option<EdnsInfo>,
    ) -> Request<'a> {
        Request {
            id: self.id,
            flags: self.flags,
            question: question.bytes,
            labels: question.labels,
            label_count: question.label_count,
            qtype,
            qclass,
            edns,
        }
    }
}

/// The question's bytes as [`read_question`] found them.
struct Question<'a> {
    bytes: &'a [u8],
    /// Offsets of the name's labels in `bytes`.
    labels: [u8; MAX_LABELS],
    label_count: usize,
}

/// Decodes `msg`, or says why it gets no normal response.
pub(super) fn parse(msg: &[u8]) -> Result<Request<'_>, Reject> {
    let mut head = read_header(msg)?;
    let question = read_question(&msg[HEADER_LEN..]).ok_or_else(|| head.formerr())?;
    head.decoder
        .read_slice(question.bytes.len())
        .map_err(|_| head.formerr())?;
    let [.., t0, t1, c0, c1] = *question.bytes else {
        return Err(head.formerr());
    };
    let edns = match plain_opt(&head.counts, &msg[head.decoder.index()..]) {
        Some(edns) => Some(edns),
        None => read_edns(&mut head.decoder, &head.counts).map_err(|()| head.formerr())?,
    };
    let qtype = RecordType::from(u16::from_be_bytes([t0, t1]));
    let qclass = DNSClass::from(u16::from_be_bytes([c0, c1]));
    Ok(head.into_request(question, qtype, qclass, edns))
}

/// The checks every request starts with: silence for an unreadable header or a response,
/// NOTIMP for an opcode other than QUERY, FORMERR unless there is exactly one question.
/// Returns the decoder past the header, the header's counts, and the ID and flags a
/// response echoes.
fn read_header(msg: &[u8]) -> Result<Head<'_>, Reject> {
    let mut decoder = BinDecoder::new(msg);
    let header = Header::read(&mut decoder).map_err(|_| Reject::Silent)?;
    if header.metadata.message_type == MessageType::Response {
        return Err(Reject::Silent);
    }
    let id = header.metadata.id;
    let flags = [msg[2] & 0x79, msg[3] & 0x10];
    let rcode = if header.metadata.op_code != OpCode::Query {
        RCODE_NOTIMP
    } else if header.counts.queries != 1 {
        RCODE_FORMERR
    } else {
        return Ok(Head {
            decoder,
            counts: header.counts,
            id,
            flags,
        });
    };
    Err(Reject::Error { id, flags, rcode })
}

/// The usual case, read by hand: no answer or authority records and one OPT record
/// without options (root name, RDLENGTH 0) at the start of `rest`, as hickory would
/// decode it (a payload under 512 counts as 512). `None` for anything else.
#[inline]
fn plain_opt(counts: &HeaderCounts, rest: &[u8]) -> Option<EdnsInfo> {
    let records = [counts.answers, counts.authorities, counts.additionals];
    let ([0, 0, 1], [0, 0, 41, p0, p1, _, version, _, _, 0, 0, ..]) = (records, rest) else {
        return None;
    };
    Some(EdnsInfo {
        payload: u16::from_be_bytes([*p0, *p1]).max(512),
        version: *version,
    })
}

/// Decodes the records after the question with hickory-proto and returns the EDNS0 facts
/// of the OPT record, if any; fails on any malformed record and on an OPT record outside
/// the additional section or repeated.
fn read_edns(decoder: &mut BinDecoder<'_>, counts: &HeaderCounts) -> Result<Option<EdnsInfo>, ()> {
    let mut edns = None;
    // The sections after the question, and whether an OPT record may stand there.
    let sections = [
        (counts.answers, false),
        (counts.authorities, false),
        (counts.additionals, true),
    ];
    for (count, additional) in sections {
        for _ in 0..count {
            let record = Record::read(decoder).map_err(drop)?;
            if record.record_type() == RecordType::OPT {
                if !additional || edns.is_some() {
                    return Err(());
                }
                edns = Some(EdnsInfo {
                    payload: u16::from(record.dns_class),
                    version: (record.ttl >> 16) as u8,
                });
            }
        }
    }
    Ok(edns)
}

/// Reads the question at the start of `rest` (the message after its header): a name
/// without compression (a question name has nothing before it to point to), its type
/// and class. Returns the question's bytes and the offsets of the name's labels in them,
/// or `None` where hickory's `Query::read` would fail (labels over 63 bytes, names over
/// 255, missing bytes) and for compression pointers. Read by hand: decoding the name
/// into a hickory `Name` cost more than the rest of a response.
fn read_question(rest: &[u8]) -> Option<Question<'_>> {
    let mut labels = [0u8; MAX_LABELS];
    let mut count = 0;
    let mut pos = 0usize;
    loop {
        let len = usize::from(*rest.get(pos)?);
        if len == 0 {
            break;
        }
        if len > 63 || count == labels.len() {
            return None;
        }
        labels[count] = u8::try_from(pos).ok()?;
        count += 1;
        pos += 1 + len;
        // The name's wire length, root label included, is at most 255.
        if pos + 1 > 255 {
            return None;
        }
    }
    // The root label, then the type and class.
    let bytes = rest.get(..pos + 1 + 4)?;
    Some(Question {
        bytes,
        labels,
        label_count: count,
    })
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    /// What a parse said, comparable.
    type Summary = Result<(u16, [u8; 2], Vec<u8>, Vec<u8>, u16, u16, Option<(u16, u8)>), String>;

    fn summary(parsed: Result<Request<'_>, Reject>) -> Summary {
        match parsed {
            Ok(r) => Ok((
                r.id,
                r.flags,
                r.question.to_vec(),
                r.labels[..r.label_count].to_vec(),
                u16::from(r.qtype),
                u16::from(r.qclass),
                r.edns.map(|e| (e.payload, e.version)),
            )),
            Err(Reject::Silent) => Err("silent".into()),
            Err(Reject::Error { id, flags, rcode }) => Err(format!("{id} {flags:?} {rcode}")),
        }
    }

    /// The parser as it was before the question and the OPT record were read by hand:
    /// hickory-proto decodes the question and every record.
    fn reference(msg: &[u8]) -> Result<Request<'_>, Reject> {
        let mut head = read_header(msg)?;
        let query = Query::read(&mut head.decoder).map_err(|_| head.formerr())?;
        let question = &msg[HEADER_LEN..head.decoder.index()];
        let question = read_question(question)
            .filter(|q| q.bytes.len() == question.len())
            .ok_or_else(|| head.formerr())?;
        let edns = read_edns(&mut head.decoder, &head.counts).map_err(|()| head.formerr())?;
        Ok(head.into_request(question, query.query_type(), query.query_class(), edns))
    }

    fn packet(name: &[u8], edns: Option<&[u8]>) -> Vec<u8> {
        let mut p = vec![
            0x12,
            0x34,
            1,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(edns.is_some()),
        ];
        p.extend_from_slice(name);
        p.extend_from_slice(&[0, 1, 0, 1]);
        if let Some(opt) = edns {
            p.extend_from_slice(opt);
        }
        p
    }

    /// The hand-read question and OPT record agree with hickory-proto's decoding on
    /// valid, edge-case and mutated requests.
    #[test]
    fn hand_parsing_agrees_with_hickory() {
        let name = b"\x02x9\x04seed\x07example\x03com\x00";
        let opt = [0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0];
        let long_label = [&[63u8][..], &[b'a'; 63]].concat();
        let mut seeds = vec![
            packet(name, None),
            packet(name, Some(&opt)),
            // Payload under 512, version 1, OPT with an option, trailing bytes.
            packet(name, Some(&[0, 0, 41, 0, 100, 0, 1, 0, 0, 0, 0])),
            packet(
                name,
                Some(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 4, 0, 8, 0, 0]),
            ),
            packet(name, Some(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0, 9, 9])),
            // OPT with a non-root name, another record type in the additional section.
            packet(name, Some(&[1, b'a', 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0])),
            packet(name, Some(&[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4])),
            // Names of 255 and 256 bytes, a label of 64, a pointer, the root.
            packet(&[&long_label.repeat(4)[..], &[0]].concat()[..], None),
            packet(
                &[&long_label.repeat(3)[..], &[62], &[b'b'; 62], &[0]].concat()[..],
                None,
            ),
            packet(
                &[&long_label.repeat(3)[..], &[61], &[b'b'; 61], &[0]].concat()[..],
                None,
            ),
            packet(&[&[64u8][..], &[b'a'; 64], &[0]].concat()[..], None),
            packet(&[0xc0, 0x0c], None),
            packet(&[0], None),
        ];
        let mut counts = packet(name, Some(&opt));
        counts[7] = 1; // an answer record that is the OPT record
        seeds.push(counts);
        let check = |p: &[u8]| {
            assert_eq!(summary(parse(p)), summary(reference(p)), "{p:?}");
        };
        for seed in &seeds {
            check(seed);
            for cut in 0..seed.len() {
                check(&seed[..cut]);
            }
        }
        let mut rng = SmallRng::seed_from_u64(0x5eed);
        for i in 0..50_000 {
            let mut p = seeds[i % seeds.len()].clone();
            for _ in 0..rng.random_range(1..4) {
                if p.is_empty() {
                    break;
                }
                let at = rng.random_range(0..p.len());
                match rng.random_range(0..3) {
                    0 => p[at] ^= 1 << rng.random_range(0..8),
                    1 => p[at] = rng.random(),
                    _ => p.truncate(at),
                }
            }
            check(&p);
        }
    }
}
