//! The pure part of the server: one request's bytes in, one response's bytes out.
//!
//! It exists to hold the decision of what a request gets (SPEC §6: REFUSED outside the
//! zone, NXDOMAIN for unknown names, records or the SOA inside it, BADVERS, the size
//! limit of each transport), apart from how requests are read (`request`), how responses
//! are written (`response`) and the zone's fixed data (`zone`). A typical query
//! allocates nothing. `benches/dns.rs` measures the whole server against a fixed
//! responder.

use std::sync::Arc;

use hickory_proto::rr::{DNSClass, RecordType};
use rand::Rng;

use super::answer::AnswerSet;
use super::request::{EdnsInfo, Request, parse};
use super::response::{
    RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED, ResponseWriter, Section, write_reject,
};
use super::zone::ZoneContext;

/// Largest UDP response without EDNS0 (RFC 1035).
pub const MAX_UDP_PLAIN: usize = 512;
/// Largest UDP response whatever the client's EDNS0 size (DNS flag day 2020).
pub const MAX_UDP_EDNS: usize = 1232;
const MAX_TCP: usize = 65535;

/// The transport a request came in on, which bounds the size of its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// 512 bytes, or the client's EDNS0 size capped at [`MAX_UDP_EDNS`]; TC when cut.
    Udp,
    /// Length-framed TCP: up to 64 KiB, so every answer goes out whole.
    Tcp,
}

impl Transport {
    /// Returns the largest response to a request with `edns` on this transport.
    #[inline]
    fn limit(self, edns: Option<EdnsInfo>) -> usize {
        match self {
            Transport::Udp => edns.map_or(MAX_UDP_PLAIN, |e| {
                usize::from(e.payload).clamp(MAX_UDP_PLAIN, MAX_UDP_EDNS)
            }),
            Transport::Tcp => MAX_TCP,
        }
    }
}

/// What a response said, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR, with or without records.
    Answered,
    /// A zone transfer (AXFR or IXFR) to an `--axfr-allow` source, all its messages.
    Transferred,
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
    let req = match parse_or_reject(request, out) {
        Ok(req) => req,
        Err(outcome) => return outcome,
    };
    let mut w = ResponseWriter::start(&req, out, transport.limit(req.edns));
    if req.edns.is_some_and(|e| e.version > 0) {
        // BADVERS (16): low bits 0 here, high bits 1 in the OPT record.
        w.aa = true;
        return w.finish(RCODE_NOERROR, 1, Outcome::FormErr);
    }
    match ctx.zone_start(&req) {
        Some(zone_start) if is_served(&req) => {
            answer_in_zone(w, &req, zone_start, ctx, answers, rng)
        }
        _ => w.finish(RCODE_REFUSED, 0, Outcome::Refused),
    }
}

/// Writes an empty NOERROR answer with TC set (to send a rate-limited client to TCP), or
/// what [`respond_into`] would write for a malformed request.
pub fn respond_truncated_into(request: &[u8], ctx: &ZoneContext, out: &mut Vec<u8>) -> Outcome {
    let req = match parse_or_reject(request, out) {
        Ok(req) => req,
        Err(outcome) => return outcome,
    };
    let mut w = ResponseWriter::start(&req, out, MAX_UDP_PLAIN);
    w.aa = ctx.zone_start(&req).is_some();
    w.tc = true;
    w.finish(RCODE_NOERROR, 0, Outcome::Truncated)
}

/// Clears `out` and parses `request`; for a request that gets no normal response, writes
/// its reply (or nothing, for silence) and returns what it said as the error.
#[inline]
fn parse_or_reject<'q>(request: &'q [u8], out: &mut Vec<u8>) -> Result<Request<'q>, Outcome> {
    out.clear();
    parse(request).map_err(|reject| write_reject(reject, out))
}

/// Whether a query for a name inside the zone is answered at all: class IN and no zone
/// transfer (others are REFUSED).
#[inline]
fn is_served(req: &Request<'_>) -> bool {
    req.qclass == DNSClass::IN && !matches!(req.qtype, RecordType::AXFR | RecordType::IXFR)
}

/// Answers a served query for a name inside the zone, authoritatively: NXDOMAIN for an
/// unknown name, else the records asked for, with the SOA in the authority section when
/// there are none.
#[inline]
fn answer_in_zone<R: Rng + ?Sized>(
    mut w: ResponseWriter<'_>,
    req: &Request<'_>,
    zone_start: usize,
    ctx: &ZoneContext,
    answers: &dyn Fn(u64) -> Option<Arc<AnswerSet>>,
    rng: &mut R,
) -> Outcome {
    w.aa = true;
    let Some(mask) = ctx.mask_of(req, zone_start) else {
        w.soa(ctx, req, zone_start, Section::Authority);
        return w.finish(RCODE_NXDOMAIN, 0, Outcome::NxDomain);
    };
    let apex = zone_start == 0;
    let found = match req.qtype {
        RecordType::A => w.ipv4_answer(ctx.ttl, answers(mask).as_deref(), rng),
        RecordType::AAAA => w.ipv6_answer(ctx.ttl, answers(mask).as_deref(), rng),
        RecordType::NS if apex => (ctx.ns_rdatas.iter()).fold(false, |any, ns| {
            w.record(RecordType::NS, ctx.ttl, ns, Section::Answer) | any
        }),
        RecordType::SOA | RecordType::ANY if apex => w.soa(ctx, req, zone_start, Section::Answer),
        _ => false,
    };
    if !found {
        w.soa(ctx, req, zone_start, Section::Authority);
    }
    w.finish(RCODE_NOERROR, 0, Outcome::Answered)
}
