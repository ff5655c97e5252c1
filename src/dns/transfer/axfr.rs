//! AXFR (and IXFR, answered with the whole zone, RFC 1995 §4) over TCP: a transfer
//! request's bytes in, the framed messages of the zone out (RFC 5936).
//!
//! Pure, like the responder: the server calls it only for connections from an
//! `--axfr-allow` source, and leaves everything it declines (other types, other classes,
//! names other than the apex, EDNS versions above 0, malformed requests) to
//! [`respond_into`](crate::dns::respond_into), which refuses transfers. The zone goes
//! out as SOA, NS, the address records, SOA again, in messages of at most
//! [`MESSAGE_LIMIT`] bytes; the first echoes the question, and owner names are
//! compression pointers to the apex (and to the previous owner) within each message.

use hickory_proto::rr::{DNSClass, RecordType};

use super::records::Zone;
use crate::dns::request::{HEADER_LEN, Request, parse};
use crate::dns::response::OPT_LEN;
use crate::dns::zone::ZoneContext;

/// Largest message of a transfer: well under the 64 KiB of a TCP message, and small
/// enough that every name written is within reach of a compression pointer (16 KiB).
pub const MESSAGE_LIMIT: usize = 16_000;
/// Type, class, TTL and RDLENGTH of a record.
const RR_FIXED: usize = 10;

/// Appends the framed transfer of `zone` to `framed` when `request` is an AXFR or IXFR
/// of the zone's apex in class IN; returns whether it did. The server asks it only for
/// connections from `--axfr-allow` sources.
pub fn respond_transfer(
    request: &[u8],
    ctx: &ZoneContext,
    zone: &Zone,
    framed: &mut Vec<u8>,
) -> bool {
    let Ok(req) = parse(request) else {
        return false;
    };
    let transfer = matches!(req.qtype, RecordType::AXFR | RecordType::IXFR);
    let edns_ok = req.edns.is_none_or(|e| e.version == 0);
    if !transfer || req.qclass != DNSClass::IN || !edns_ok || ctx.zone_start(&req) != Some(0) {
        return false;
    }
    write_zone(&req, ctx, zone, framed);
    true
}

/// The owner of a record.
#[derive(Clone, Copy)]
enum Owner<'z> {
    Apex,
    /// The `index`-th name of the zone, one label under the apex.
    Label(usize, &'z str),
}

fn write_zone(req: &Request<'_>, ctx: &ZoneContext, zone: &Zone, framed: &mut Vec<u8>) {
    let soa = ctx.soa_rdata_with(zone.serial);
    let mut w = TransferWriter::start(req, ctx.zone_wire(), framed);
    w.record(Owner::Apex, RecordType::SOA, ctx.ttl, &soa);
    for ns in &ctx.ns_rdatas {
        w.record(Owner::Apex, RecordType::NS, ctx.ttl, ns);
    }
    for (i, name) in zone.names.iter().enumerate() {
        let owner = name
            .name
            .label
            .as_deref()
            .map_or(Owner::Apex, |l| Owner::Label(i, l));
        for a in &name.v4 {
            w.record(owner, RecordType::A, ctx.ttl, &a.octets());
        }
        for a in &name.v6 {
            w.record(owner, RecordType::AAAA, ctx.ttl, &a.octets());
        }
    }
    w.record(Owner::Apex, RecordType::SOA, ctx.ttl, &soa);
    w.finish_message();
}

/// Writes records into length-framed messages, starting a new one when the next record
/// would pass [`MESSAGE_LIMIT`].
struct TransferWriter<'a> {
    out: &'a mut Vec<u8>,
    req: &'a Request<'a>,
    apex: &'a [u8],
    /// Where the current message starts in `out` (after its length).
    start: usize,
    answers: u16,
    /// Offsets in the current message of the apex's name and of the last owner written
    /// under it (with its index), for compression pointers.
    apex_at: Option<usize>,
    label_at: Option<(usize, usize)>,
}

impl<'a> TransferWriter<'a> {
    fn start(req: &'a Request<'a>, apex: &'a [u8], out: &'a mut Vec<u8>) -> Self {
        let mut w = Self {
            out,
            req,
            apex,
            start: 0,
            answers: 0,
            apex_at: None,
            label_at: None,
        };
        w.start_message(true);
        w
    }

    /// Starts a message: its length (set when it is finished), the header, and in the
    /// first one the question, whose name is the apex.
    fn start_message(&mut self, first: bool) {
        self.out.extend_from_slice(&[0, 0]);
        self.start = self.out.len();
        self.out.extend_from_slice(&self.req.id.to_be_bytes());
        // QR and AA; RD and CD echoed; opcode QUERY, RCODE NOERROR.
        self.out.push(0x84 | self.req.flags[0]);
        self.out.push(self.req.flags[1]);
        self.out
            .extend_from_slice(&[0, u8::from(first), 0, 0, 0, 0, 0, 0]);
        self.answers = 0;
        self.label_at = None;
        self.apex_at = None;
        if first {
            self.out.extend_from_slice(self.req.question);
            self.apex_at = Some(HEADER_LEN);
        }
    }

    /// Sets the answer count and the length, and adds an OPT record when the request had
    /// one (RFC 6891 §7).
    fn finish_message(&mut self) {
        let start = self.start;
        self.out[start + 6..start + 8].copy_from_slice(&self.answers.to_be_bytes());
        if self.req.edns.is_some() {
            self.out[start + 10..start + 12].copy_from_slice(&1u16.to_be_bytes());
            self.out
                .extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        let len = (self.out.len() - start) as u16;
        self.out[start - 2..start].copy_from_slice(&len.to_be_bytes());
    }

    fn record(&mut self, owner: Owner<'_>, rtype: RecordType, ttl: u32, rdata: &[u8]) {
        // At most a label and the whole apex as the owner.
        let most = 64 + self.apex.len() + RR_FIXED + rdata.len() + OPT_LEN;
        if self.answers > 0 && self.out.len() - self.start + most > MESSAGE_LIMIT {
            self.finish_message();
            self.start_message(false);
        }
        self.owner(owner);
        self.out.extend_from_slice(&u16::from(rtype).to_be_bytes());
        self.out
            .extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
        self.out.extend_from_slice(&ttl.to_be_bytes());
        self.out
            .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.out.extend_from_slice(rdata);
        self.answers += 1;
    }

    /// Writes an owner name: a pointer when it is already in the message, else its
    /// label and the apex (itself a pointer when already written).
    fn owner(&mut self, owner: Owner<'_>) {
        match owner {
            Owner::Apex => self.apex_name(),
            Owner::Label(i, _) if self.label_at.is_some_and(|(j, _)| j == i) => {
                let (_, at) = self.label_at.unwrap_or_default();
                self.pointer(at);
            }
            Owner::Label(i, label) => {
                self.label_at = Some((i, self.out.len() - self.start));
                self.out.push(label.len() as u8);
                self.out.extend_from_slice(label.as_bytes());
                self.apex_name();
            }
        }
    }

    fn apex_name(&mut self) {
        match self.apex_at {
            Some(at) => self.pointer(at),
            None => {
                self.apex_at = Some(self.out.len() - self.start);
                self.out.extend_from_slice(self.apex);
            }
        }
    }

    fn pointer(&mut self, at: usize) {
        self.out
            .extend_from_slice(&(0xC000 | at as u16).to_be_bytes());
    }
}
