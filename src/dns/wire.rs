//! The pure part of the server: one request's bytes in, one response's bytes out.
//!
//! Requests are decoded with hickory-proto (the header, and every record after the
//! question, so a malformed OPT or a trailing record is caught), except for what every
//! query has, read by hand with the same rules (a unit test compares both on mutated
//! packets): the question, and a lone OPT record without options. Decoding the question
//! into a hickory `Name` cost more than writing the answer. Responses are written by hand
//! into a reused buffer: the question is copied verbatim (so its letter case is echoed),
//! owner names are compression pointers into it, and the SOA and NS RDATA are encoded
//! once with hickory-proto when the [`ZoneContext`] is built. A typical query allocates
//! nothing. `benches/dns.rs` measures the whole server against a fixed responder.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Header, HeaderCounts, MessageType, OpCode};
use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding,
};
use rand::Rng;

use super::answer::AnswerSet;
use super::config::{ConfigError, DnsConfig, normalize_mbox, normalize_name};

/// Largest UDP response without EDNS0 (RFC 1035).
pub const MAX_UDP_PLAIN: usize = 512;
/// Largest UDP response whatever the client's EDNS0 size (DNS flag day 2020).
pub const MAX_UDP_EDNS: usize = 1232;
const MAX_TCP: usize = 65535;
const HEADER_LEN: usize = 12;
const OPT_LEN: usize = 11;
/// Fixed part of a resource record after its owner name: type, class, TTL, RDLENGTH.
const RR_FIXED: usize = 10;
/// An owner name written as a compression pointer.
const POINTER_LEN: usize = 2;
/// SOA timers, as sipa's seeder sets them.
const SOA_REFRESH: i32 = 604_800;
const SOA_RETRY: i32 = 86_400;
const SOA_EXPIRE: i32 = 2_592_000;

const RCODE_NOERROR: u8 = 0;
const RCODE_FORMERR: u8 = 1;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
const RCODE_REFUSED: u8 = 5;

/// The transport a request came in on, which bounds the size of its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// 512 bytes, or the client's EDNS0 size capped at [`MAX_UDP_EDNS`]; TC when cut.
    Udp,
    /// Length-framed TCP: up to 64 KiB, so every answer goes out whole.
    Tcp,
}

/// What a response said, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR, with or without records.
    Answered,
    /// NXDOMAIN: an unknown name inside the zone.
    NxDomain,
    /// REFUSED: a name outside the zone, another class, or a zone transfer.
    Refused,
    /// FORMERR (or BADVERS): the request was malformed.
    FormErr,
    /// NOTIMP: an opcode other than QUERY.
    NotImp,
    /// An empty answer with TC set, sent to a rate-limited source.
    Truncated,
    /// No response at all: too short, a response itself, or unparsable.
    Dropped,
}

/// The zone's fixed data, prepared once: names, TTLs, masks and pre-encoded RDATA.
#[derive(Debug, Clone)]
pub struct ZoneContext {
    /// The zone's name in wire form (lower case, with the root label).
    zone_wire: Vec<u8>,
    /// The number of labels of the zone's name.
    zone_labels: usize,
    ttl: u32,
    negative_ttl: u32,
    default_mask: u64,
    allow_filters: Option<Vec<u64>>,
    soa_rdata: Vec<u8>,
    ns_rdata: Vec<u8>,
}

impl ZoneContext {
    /// Prepares the zone of `config`; the SOA serial is `config.serial` or the UNIX time.
    ///
    /// # Errors
    ///
    /// Returns a [`ConfigError`] when `host`, `ns` or `mbox` is not a valid name.
    pub fn new(config: &DnsConfig) -> Result<Self, ConfigError> {
        let host = normalize_name("host", &config.host)?;
        let ns = to_name("ns", &normalize_name("ns", &config.ns)?)?;
        let mbox = to_name("mbox", &normalize_mbox(&config.mbox)?)?;
        let serial = config.serial.unwrap_or_else(|| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH);
            now.map_or(1, |d| d.as_secs() as u32)
        });
        let soa = SOA::new(
            ns.clone(),
            mbox,
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            config.negative_ttl,
        );
        let mut allow_filters = config.allow_filters.clone();
        if let Some(masks) = &mut allow_filters {
            masks.sort_unstable();
            masks.dedup();
        }
        Ok(Self {
            zone_wire: host
                .split('.')
                .flat_map(|l| std::iter::once(l.len() as u8).chain(l.bytes()))
                .chain([0])
                .collect(),
            zone_labels: host.split('.').count(),
            ttl: config.ttl,
            negative_ttl: config.negative_ttl,
            default_mask: config.default_mask,
            allow_filters,
            soa_rdata: encode_rdata("mbox", &soa)?,
            ns_rdata: encode_rdata("ns", &NS(ns))?,
        })
    }

    /// Returns the service mask of a name inside the zone, given the index of the zone's
    /// first label in it: the default mask for the apex, the hex mask of an allowed
    /// `x<hex>` label, `None` for unknown names.
    fn mask_of(&self, req: &Request<'_>, zone_start: usize) -> Option<u64> {
        match zone_start {
            0 => Some(self.default_mask),
            1 => parse_mask_label(req.label(0)).filter(|m| self.is_allowed(*m)),
            _ => None,
        }
    }

    /// Returns whether `x<mask>` is served (always, unless `allow_filters` is set).
    pub fn is_allowed(&self, mask: u64) -> bool {
        self.allow_filters
            .as_ref()
            .is_none_or(|masks| masks.binary_search(&mask).is_ok())
    }

    /// Returns the mask of the bare zone name.
    pub fn default_mask(&self) -> u64 {
        self.default_mask
    }
}

fn to_name(field: &'static str, name: &str) -> Result<Name, ConfigError> {
    Name::from_ascii(format!("{name}.")).map_err(|_| ConfigError::InvalidName {
        field,
        name: name.to_owned(),
        reason: "rejected by the DNS encoder",
    })
}

fn encode_rdata(field: &'static str, rdata: &impl BinEncodable) -> Result<Vec<u8>, ConfigError> {
    let mut buf = Vec::new();
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    rdata
        .emit(&mut encoder)
        .map_err(|_| ConfigError::InvalidName {
            field,
            name: String::new(),
            reason: "rejected by the DNS encoder",
        })?;
    Ok(buf)
}

/// Parses an `x<hex>` label: `x` or `X`, 1 to 16 hex digits without a leading zero.
pub fn parse_mask_label(label: &[u8]) -> Option<u64> {
    let (first, hex) = label.split_first()?;
    if !matches!(first, b'x' | b'X') || hex.is_empty() || hex.len() > 16 || hex[0] == b'0' {
        return None;
    }
    hex.iter().try_fold(0u64, |acc, &c| {
        let digit = char::from(c).to_digit(16)?;
        Some(acc << 4 | u64::from(digit))
    })
}

/// Builds the response to `request`, or `None` when it deserves silence.
///
/// `answers` returns the answer set for a service mask (`None`: no data). See
/// [`respond_into`] for the allocation-free form used by the server.
pub fn respond<R: Rng + ?Sized>(
    request: &[u8],
    transport: Transport,
    ctx: &ZoneContext,
    answers: &dyn Fn(u64) -> Option<Arc<AnswerSet>>,
    rng: &mut R,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(MAX_UDP_PLAIN);
    respond_into(request, transport, ctx, answers, rng, &mut out);
    (!out.is_empty()).then_some(out)
}

/// Writes the response to `request` into `out` (cleared first; left empty for silence)
/// and returns what it said.
pub fn respond_into<R: Rng + ?Sized>(
    request: &[u8],
    transport: Transport,
    ctx: &ZoneContext,
    answers: &dyn Fn(u64) -> Option<Arc<AnswerSet>>,
    rng: &mut R,
    out: &mut Vec<u8>,
) -> Outcome {
    out.clear();
    let req = match parse(request) {
        Ok(req) => req,
        Err(reject) => return write_reject(reject, out),
    };
    let limit = match transport {
        Transport::Udp => req.edns.map_or(MAX_UDP_PLAIN, |e| {
            usize::from(e.payload).clamp(MAX_UDP_PLAIN, MAX_UDP_EDNS)
        }),
        Transport::Tcp => MAX_TCP,
    };
    let mut w = ResponseWriter::start(&req, out, limit);
    if req.edns.is_some_and(|e| e.version > 0) {
        // BADVERS (16): low bits 0 here, high bits 1 in the OPT record.
        w.aa = true;
        return w.finish(RCODE_NOERROR, 1, Outcome::FormErr);
    }
    let Some(zone_start) = zone_start(&req, ctx) else {
        return w.finish(RCODE_REFUSED, 0, Outcome::Refused);
    };
    if req.qclass != DNSClass::IN || matches!(req.qtype, RecordType::AXFR | RecordType::IXFR) {
        return w.finish(RCODE_REFUSED, 0, Outcome::Refused);
    }
    w.aa = true;
    let Some(mask) = ctx.mask_of(&req, zone_start) else {
        w.soa(ctx, &req, zone_start, Section::Authority);
        return w.finish(RCODE_NXDOMAIN, 0, Outcome::NxDomain);
    };
    let apex = zone_start == 0;
    let found = match req.qtype {
        RecordType::A => {
            let set = answers(mask);
            let picked = set.as_deref().map_or(&[][..], |s| s.answer_ipv4(rng));
            w.address_answer(RecordType::A, ctx.ttl, picked, |ip| ip.octets())
        }
        RecordType::AAAA => {
            let set = answers(mask);
            let picked = set.as_deref().map_or(&[][..], |s| s.answer_ipv6(rng));
            w.address_answer(RecordType::AAAA, ctx.ttl, picked, |ip| ip.octets())
        }
        RecordType::NS if apex => w.record(RecordType::NS, ctx.ttl, &ctx.ns_rdata, Section::Answer),
        RecordType::SOA | RecordType::ANY if apex => w.soa(ctx, &req, zone_start, Section::Answer),
        _ => false,
    };
    if !found {
        w.soa(ctx, &req, zone_start, Section::Authority);
    }
    w.finish(RCODE_NOERROR, 0, Outcome::Answered)
}

/// Writes an empty NOERROR answer with TC set (to send a rate-limited client to TCP), or
/// what [`respond_into`] would write for a malformed request.
pub fn respond_truncated_into(request: &[u8], ctx: &ZoneContext, out: &mut Vec<u8>) -> Outcome {
    out.clear();
    let req = match parse(request) {
        Ok(req) => req,
        Err(reject) => return write_reject(reject, out),
    };
    let mut w = ResponseWriter::start(&req, out, MAX_UDP_PLAIN);
    w.aa = zone_start(&req, ctx).is_some();
    w.tc = true;
    w.finish(RCODE_NOERROR, 0, Outcome::Truncated)
}

/// The EDNS0 facts of a request.
#[derive(Debug, Clone, Copy)]
struct EdnsInfo {
    payload: u16,
    version: u8,
}

/// A request that passed decoding.
struct Request<'a> {
    id: u16,
    /// Opcode (always QUERY here), RD and CD bits, to echo.
    flags: [u8; 2],
    /// The raw question: name, type, class.
    question: &'a [u8],
    /// Offsets of the name's labels in `question`.
    labels: [u8; 128],
    label_count: usize,
    qtype: RecordType,
    qclass: DNSClass,
    edns: Option<EdnsInfo>,
}

impl Request<'_> {
    fn label(&self, i: usize) -> &[u8] {
        let start = usize::from(self.labels[i]);
        let len = usize::from(self.question[start]);
        &self.question[start + 1..start + 1 + len]
    }
}

/// Why a request gets no normal response.
enum Reject {
    Silent,
    Error { id: u16, flags: [u8; 2], rcode: u8 },
}

/// The checks every request starts with: silence for an unreadable header or a response,
/// NOTIMP for an opcode other than QUERY, FORMERR unless there is exactly one question.
/// Returns the decoder past the header, the header's counts, and the ID and flags a
/// response echoes.
fn read_header(msg: &[u8]) -> Result<(BinDecoder<'_>, HeaderCounts, u16, [u8; 2]), Reject> {
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
        return Ok((decoder, header.counts, id, flags));
    };
    Err(Reject::Error { id, flags, rcode })
}

/// The sections after the question, with their record counts and whether an OPT record
/// may stand there (only in the additional section).
fn sections(counts: &HeaderCounts) -> [(u16, bool); 3] {
    [
        (counts.answers, false),
        (counts.authorities, false),
        (counts.additionals, true),
    ]
}

fn parse(msg: &[u8]) -> Result<Request<'_>, Reject> {
    let (mut decoder, counts, id, flags) = read_header(msg)?;
    let error = |rcode| Reject::Error { id, flags, rcode };
    let (question, labels, label_count) =
        read_question(&msg[HEADER_LEN..]).ok_or(error(RCODE_FORMERR))?;
    decoder
        .read_slice(question.len())
        .map_err(|_| error(RCODE_FORMERR))?;
    let [.., t0, t1, c0, c1] = *question else {
        return Err(error(RCODE_FORMERR));
    };
    let mut edns = None;
    let rest = &msg[decoder.index()..];
    if let ([0, 0, 1], [0, 0, 41, p0, p1, _, version, _, _, 0, 0, ..]) = (
        [counts.answers, counts.authorities, counts.additionals],
        rest,
    ) {
        // The usual case, read by hand: one OPT record without options (root name,
        // RDLENGTH 0), as hickory would decode it (a payload under 512 counts as 512).
        edns = Some(EdnsInfo {
            payload: u16::from_be_bytes([*p0, *p1]).max(512),
            version: *version,
        });
    } else {
        read_records(&mut decoder, sections(&counts), &mut edns)
            .map_err(|()| error(RCODE_FORMERR))?;
    }
    Ok(Request {
        id,
        flags,
        question,
        labels,
        label_count,
        qtype: RecordType::from(u16::from_be_bytes([t0, t1])),
        qclass: DNSClass::from(u16::from_be_bytes([c0, c1])),
        edns,
    })
}

/// Decodes the records after the question with hickory-proto, keeping the EDNS0 facts
/// of the OPT record; fails on any malformed record and on an OPT record outside the
/// additional section or repeated.
fn read_records(
    decoder: &mut BinDecoder<'_>,
    sections: [(u16, bool); 3],
    edns: &mut Option<EdnsInfo>,
) -> Result<(), ()> {
    for (count, additional) in sections {
        for _ in 0..count {
            let record = Record::read(decoder).map_err(drop)?;
            if record.record_type() == RecordType::OPT {
                if !additional || edns.is_some() {
                    return Err(());
                }
                *edns = Some(EdnsInfo {
                    payload: u16::from(record.dns_class),
                    version: (record.ttl >> 16) as u8,
                });
            }
        }
    }
    Ok(())
}

/// Reads the question at the start of `rest` (the message after its header): a name
/// without compression (a question name has nothing before it to point to), its type
/// and class. Returns the question's bytes and the offsets of the name's labels in them,
/// or `None` where hickory's `Query::read` would fail (labels over 63 bytes, names over
/// 255, missing bytes) and for compression pointers. Read by hand: decoding the name
/// into a hickory `Name` cost more than the rest of a response.
fn read_question(rest: &[u8]) -> Option<(&[u8], [u8; 128], usize)> {
    let mut labels = [0u8; 128];
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
    let question = rest.get(..pos + 1 + 4)?;
    Some((question, labels, count))
}

/// Returns the index of the first label of the zone in the question name, or `None`
/// when the name is outside the zone.
fn zone_start(req: &Request<'_>, ctx: &ZoneContext) -> Option<usize> {
    let start = req.label_count.checked_sub(ctx.zone_labels)?;
    let name_end = req.question.len() - 4;
    let suffix = &req.question[usize::from(req.labels[start])..name_end];
    // Length bytes (0 to 63) are no letters, so folding case compares them exactly.
    suffix.eq_ignore_ascii_case(&ctx.zone_wire).then_some(start)
}

fn write_reject(reject: Reject, out: &mut Vec<u8>) -> Outcome {
    let Reject::Error { id, flags, rcode } = reject else {
        return Outcome::Dropped;
    };
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0x80 | flags[0]);
    out.push(flags[1] | rcode);
    out.extend_from_slice(&[0; 8]);
    if rcode == RCODE_NOTIMP {
        Outcome::NotImp
    } else {
        Outcome::FormErr
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Answer,
    Authority,
}

/// Appends records after the copied question while they fit in the size limit
/// (less the OPT record, which is always written when the request had one).
struct ResponseWriter<'o> {
    out: &'o mut Vec<u8>,
    budget: usize,
    edns: bool,
    aa: bool,
    tc: bool,
    answers: u16,
    authorities: u16,
}

impl<'o> ResponseWriter<'o> {
    fn start(req: &Request<'_>, out: &'o mut Vec<u8>, limit: usize) -> Self {
        out.extend_from_slice(&req.id.to_be_bytes());
        out.extend_from_slice(&req.flags);
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(req.question);
        let edns = req.edns.is_some();
        Self {
            out,
            budget: limit - if edns { OPT_LEN } else { 0 },
            edns,
            aa: false,
            tc: false,
            answers: 0,
            authorities: 0,
        }
    }

    fn room(&self) -> usize {
        self.budget.saturating_sub(self.out.len())
    }

    /// Writes one record owned by the name at `owner` (an offset in the message).
    fn rr(&mut self, owner: usize, rtype: RecordType, ttl: u32, rdata: &[u8], section: Section) {
        let owner = 0xC000 | owner as u16;
        self.out.extend_from_slice(&owner.to_be_bytes());
        self.out.extend_from_slice(&u16::from(rtype).to_be_bytes());
        self.out.extend_from_slice(&1u16.to_be_bytes());
        self.out.extend_from_slice(&ttl.to_be_bytes());
        self.out
            .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.out.extend_from_slice(rdata);
        match section {
            Section::Answer => self.answers += 1,
            Section::Authority => self.authorities += 1,
        }
    }

    /// Writes a record owned by the question name; returns whether it fit.
    fn record(&mut self, rtype: RecordType, ttl: u32, rdata: &[u8], section: Section) -> bool {
        if self.room() < POINTER_LEN + RR_FIXED + rdata.len() {
            self.tc = true;
            return false;
        }
        self.rr(HEADER_LEN, rtype, ttl, rdata, section);
        true
    }

    /// Writes the zone's SOA owned by the apex (the question name from label `zone_start`).
    fn soa(&mut self, ctx: &ZoneContext, req: &Request<'_>, zone_start: usize, s: Section) -> bool {
        if self.room() < POINTER_LEN + RR_FIXED + ctx.soa_rdata.len() {
            self.tc = true;
            return false;
        }
        let ttl = if s == Section::Answer {
            ctx.ttl
        } else {
            ctx.negative_ttl
        };
        let owner = HEADER_LEN + usize::from(req.labels[zone_start]);
        self.rr(owner, RecordType::SOA, ttl, &ctx.soa_rdata, s);
        true
    }

    /// Writes as many of `picked` as fit as address records; sets TC if some did not.
    /// Returns whether any was written.
    fn address_answer<T: Copy, const N: usize>(
        &mut self,
        rtype: RecordType,
        ttl: u32,
        picked: &[T],
        octets: impl Fn(T) -> [u8; N],
    ) -> bool {
        let fit = picked.len().min(self.room() / (POINTER_LEN + RR_FIXED + N));
        self.addresses(rtype, ttl, picked[..fit].iter().map(|&ip| octets(ip)));
        self.tc |= fit < picked.len();
        fit > 0
    }

    /// Writes address records owned by the question name, one copy per record.
    fn addresses<const N: usize>(
        &mut self,
        rtype: RecordType,
        ttl: u32,
        rdatas: impl ExactSizeIterator<Item = [u8; N]>,
    ) {
        let head = POINTER_LEN + RR_FIXED;
        let mut rr = [0u8; POINTER_LEN + RR_FIXED];
        rr[..2].copy_from_slice(&(0xC000 | HEADER_LEN as u16).to_be_bytes());
        rr[2..4].copy_from_slice(&u16::from(rtype).to_be_bytes());
        rr[4..6].copy_from_slice(&1u16.to_be_bytes());
        rr[6..10].copy_from_slice(&ttl.to_be_bytes());
        rr[10..12].copy_from_slice(&(N as u16).to_be_bytes());
        self.answers += rdatas.len() as u16;
        let at = self.out.len();
        self.out.resize(at + rdatas.len() * (head + N), 0);
        for (record, rdata) in self.out[at..].chunks_exact_mut(head + N).zip(rdatas) {
            record[..head].copy_from_slice(&rr);
            record[head..].copy_from_slice(&rdata);
        }
    }

    /// Sets the flags and counts, appends the OPT record if any, and returns `outcome`.
    fn finish(self, rcode: u8, ext_rcode: u8, outcome: Outcome) -> Outcome {
        let out = self.out;
        out[2] |= 0x80 | u8::from(self.aa) << 2 | u8::from(self.tc) << 1;
        out[3] |= rcode;
        out[6..8].copy_from_slice(&self.answers.to_be_bytes());
        out[8..10].copy_from_slice(&self.authorities.to_be_bytes());
        if self.edns {
            out[10..12].copy_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&[0, 0, 41]);
            out.extend_from_slice(&(MAX_UDP_EDNS as u16).to_be_bytes());
            out.extend_from_slice(&[ext_rcode, 0, 0, 0, 0, 0]);
        }
        outcome
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
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
        let (mut decoder, counts, id, flags) = read_header(msg)?;
        let error = |rcode| Reject::Error { id, flags, rcode };
        let query = Query::read(&mut decoder).map_err(|_| error(RCODE_FORMERR))?;
        let question = &msg[HEADER_LEN..decoder.index()];
        let (_, labels, label_count) = read_question(question)
            .filter(|(q, _, _)| q.len() == question.len())
            .ok_or(error(RCODE_FORMERR))?;
        let mut edns = None;
        read_records(&mut decoder, sections(&counts), &mut edns)
            .map_err(|()| error(RCODE_FORMERR))?;
        Ok(Request {
            id,
            flags,
            question,
            labels,
            label_count,
            qtype: query.query_type(),
            qclass: query.query_class(),
            edns,
        })
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
