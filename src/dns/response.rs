//! Response encoding: the bytes of a response, written by hand into a reused buffer.
//!
//! It exists so that the wire layout of a response (header flags and counts, record
//! headers, compression pointers, the OPT record, size limits and TC) stands in one
//! place, apart from the decision of what to answer. The question is copied verbatim
//! (so its letter case is echoed), owner names are compression pointers into it, and
//! the SOA and NS RDATA come pre-encoded from the [`ZoneContext`]. Nothing here
//! allocates once the buffer has grown to a response's size.

use hickory_proto::rr::RecordType;
use rand::Rng;

use super::answer::AnswerSet;
use super::request::{HEADER_LEN, Reject, Request};
use super::respond::{MAX_UDP_EDNS, Outcome};
use super::zone::{SOA_SERIAL_FROM_END, ZoneContext};

pub(super) const RCODE_NOERROR: u8 = 0;
pub(super) const RCODE_FORMERR: u8 = 1;
pub(super) const RCODE_NXDOMAIN: u8 = 3;
pub(super) const RCODE_NOTIMP: u8 = 4;
pub(super) const RCODE_REFUSED: u8 = 5;

/// Length of an OPT record without options.
pub(super) const OPT_LEN: usize = 11;
/// Fixed part of a resource record after its owner name: type, class, TTL, RDLENGTH.
const RR_FIXED: usize = 10;
/// An owner name written as a compression pointer.
const POINTER_LEN: usize = 2;
/// A record's header: its owner as a compression pointer, then the fixed part.
const RR_HEAD: usize = POINTER_LEN + RR_FIXED;

/// The section a record goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Answer,
    Authority,
}

/// Writes the reply to a rejected request: nothing for silence, else the header alone
/// with the request's ID and flags and the rejection's RCODE.
pub(super) fn write_reject(reject: Reject, out: &mut Vec<u8>) -> Outcome {
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

/// Appends records after the copied question while they fit in the size limit
/// (less the OPT record, which is always written when the request had one).
pub(super) struct ResponseWriter<'o> {
    out: &'o mut Vec<u8>,
    budget: usize,
    edns: bool,
    /// The AA flag: set for authoritative answers.
    pub(super) aa: bool,
    /// The TC flag: set when a record did not fit.
    pub(super) tc: bool,
    answers: u16,
    authorities: u16,
}

impl<'o> ResponseWriter<'o> {
    /// Writes the header and the question of the response to `req` into `out` (empty),
    /// for a response of at most `limit` bytes.
    #[inline]
    pub(super) fn start(req: &Request<'_>, out: &'o mut Vec<u8>, limit: usize) -> Self {
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

    #[inline]
    fn room(&self) -> usize {
        self.budget.saturating_sub(self.out.len())
    }

    /// Writes a record owned by the name at `owner` (an offset in the message) if it
    /// fits; sets TC if not. Returns whether it fit.
    #[inline]
    fn record_at(
        &mut self,
        owner: usize,
        rtype: RecordType,
        ttl: u32,
        rdata: &[u8],
        section: Section,
    ) -> bool {
        if self.room() < RR_HEAD + rdata.len() {
            self.tc = true;
            return false;
        }
        self.out
            .extend_from_slice(&rr_head(owner, rtype, ttl, rdata.len()));
        self.out.extend_from_slice(rdata);
        match section {
            Section::Answer => self.answers += 1,
            Section::Authority => self.authorities += 1,
        }
        true
    }

    /// Writes a record owned by the question name; returns whether it fit.
    #[inline]
    pub(super) fn record(
        &mut self,
        rtype: RecordType,
        ttl: u32,
        rdata: &[u8],
        section: Section,
    ) -> bool {
        self.record_at(HEADER_LEN, rtype, ttl, rdata, section)
    }

    /// Writes the zone's SOA owned by the apex (the question name from label
    /// `zone_start`), with the negative TTL in the authority section; returns whether
    /// it fit.
    #[inline]
    pub(super) fn soa(
        &mut self,
        ctx: &ZoneContext,
        req: &Request<'_>,
        zone_start: usize,
        section: Section,
    ) -> bool {
        let ttl = match section {
            Section::Answer => ctx.ttl,
            Section::Authority => ctx.negative_ttl,
        };
        let owner = HEADER_LEN + usize::from(req.labels[zone_start]);
        let fit = self.record_at(owner, RecordType::SOA, ttl, &ctx.soa_rdata, section);
        if fit {
            let at = self.out.len() - SOA_SERIAL_FROM_END;
            self.out[at..at + 4].copy_from_slice(&ctx.serial().to_be_bytes());
        }
        fit
    }

    /// Writes one of the prebuilt IPv4 answers of `set` (nothing without a set);
    /// returns whether any record was written.
    #[inline]
    pub(super) fn ipv4_answer<R: Rng + ?Sized>(
        &mut self,
        ttl: u32,
        set: Option<&AnswerSet>,
        rng: &mut R,
    ) -> bool {
        let picked = set.map_or(&[][..], |s| s.answer_ipv4(rng));
        self.address_answer(RecordType::A, ttl, picked, |ip| ip.octets())
    }

    /// Writes one of the prebuilt IPv6 answers of `set`, as
    /// [`ResponseWriter::ipv4_answer`].
    #[inline]
    pub(super) fn ipv6_answer<R: Rng + ?Sized>(
        &mut self,
        ttl: u32,
        set: Option<&AnswerSet>,
        rng: &mut R,
    ) -> bool {
        let picked = set.map_or(&[][..], |s| s.answer_ipv6(rng));
        self.address_answer(RecordType::AAAA, ttl, picked, |ip| ip.octets())
    }

    /// Writes as many of `picked` as fit as address records; sets TC if some did not.
    /// Returns whether any was written.
    #[inline]
    fn address_answer<T: Copy, const N: usize>(
        &mut self,
        rtype: RecordType,
        ttl: u32,
        picked: &[T],
        octets: impl Fn(T) -> [u8; N],
    ) -> bool {
        let fit = picked.len().min(self.room() / (RR_HEAD + N));
        self.addresses(rtype, ttl, picked[..fit].iter().map(|&ip| octets(ip)));
        self.tc |= fit < picked.len();
        fit > 0
    }

    /// Writes address records owned by the question name, one copy per record.
    #[inline]
    fn addresses<const N: usize>(
        &mut self,
        rtype: RecordType,
        ttl: u32,
        rdatas: impl ExactSizeIterator<Item = [u8; N]>,
    ) {
        let head = rr_head(HEADER_LEN, rtype, ttl, N);
        self.answers += rdatas.len() as u16;
        let at = self.out.len();
        self.out.resize(at + rdatas.len() * (RR_HEAD + N), 0);
        for (record, rdata) in self.out[at..].chunks_exact_mut(RR_HEAD + N).zip(rdatas) {
            record[..RR_HEAD].copy_from_slice(&head);
            record[RR_HEAD..].copy_from_slice(&rdata);
        }
    }

    /// Sets the flags and counts, appends the OPT record if any, and returns `outcome`.
    #[inline]
    pub(super) fn finish(self, rcode: u8, ext_rcode: u8, outcome: Outcome) -> Outcome {
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

/// The header of a record of class IN owned by the name at `owner` (an offset in the
/// message, written as a compression pointer), with `rdlength` bytes of RDATA to follow.
#[inline]
fn rr_head(owner: usize, rtype: RecordType, ttl: u32, rdlength: usize) -> [u8; RR_HEAD] {
    let mut head = [0u8; RR_HEAD];
    head[..2].copy_from_slice(&(0xC000 | owner as u16).to_be_bytes());
    head[2..4].copy_from_slice(&u16::from(rtype).to_be_bytes());
    head[4..6].copy_from_slice(&1u16.to_be_bytes());
    head[6..10].copy_from_slice(&ttl.to_be_bytes());
    head[10..12].copy_from_slice(&(rdlength as u16).to_be_bytes());
    head
}
