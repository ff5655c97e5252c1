//! Tests of the pure responder: queries built and answers decoded with hickory-proto.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::*;

/// NOTIFY over real sockets: resent until acknowledged, given up on an error, sent again
/// when the zone changes and only then.
mod notify;
/// The server over real sockets, with this file's zone and peers.
mod sockets;
/// The TCP event loop under thousands of connections: the per-source and global caps.
mod tcp_limits;

const ZONE: &str = "seed.example.com";

fn config() -> DnsConfig {
    let mut c = DnsConfig::new(ZONE, "ns.example.com", "hostmaster@example.com");
    c.serial = Some(7);
    c
}

fn ctx() -> ZoneContext {
    ZoneContext::new(&config()).unwrap()
}

/// Peers and their services: 127.0.x.y with NETWORK (1), some with WITNESS (8) and
/// NETWORK_LIMITED (0x400), IPv6 documentation addresses with 1|8.
fn peers() -> Vec<(IpAddr, u64)> {
    let mut v = Vec::new();
    for i in 0..40u8 {
        v.push((IpAddr::V4(Ipv4Addr::new(127, 0, 1, i)), 1 | 8));
        v.push((IpAddr::V4(Ipv4Addr::new(127, 0, 2, i)), 1));
        v.push((IpAddr::V4(Ipv4Addr::new(127, 0, 3, i)), 0x408));
        v.push((format!("2001:db8::{i:x}").parse().unwrap(), 1 | 8));
    }
    v
}

fn lookup(mask: u64) -> Option<Arc<AnswerSet>> {
    let ips = peers().into_iter().filter(|(_, s)| s & mask == mask);
    Some(Arc::new(AnswerSet::new(ips.map(|(ip, _)| ip))))
}

fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x1234;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn ask_raw(request: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(42);
    respond(request, transport, &ctx(), &lookup, &mut rng)
}

fn ask(name: &str, rtype: RecordType) -> Message {
    let bytes = ask_raw(&query(name, rtype, None), Transport::Udp).expect("a response");
    Message::from_vec(&bytes).unwrap()
}

fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn services_of(ip: IpAddr) -> u64 {
    peers().into_iter().find(|(p, _)| *p == ip).unwrap().1
}

fn assert_soa_authority(m: &Message) {
    assert_eq!(m.authorities.len(), 1, "{m:?}");
    let soa = &m.authorities[0];
    assert_eq!(soa.name, Name::from_ascii("seed.example.com.").unwrap());
    assert_eq!(soa.ttl, 40);
    let RData::SOA(soa) = &soa.data else {
        panic!("not a SOA: {soa:?}")
    };
    assert_eq!(soa.serial, 7);
    assert_eq!(soa.minimum, 40);
    assert_eq!(soa.rname.to_ascii(), "hostmaster.example.com.");
}

#[test]
fn apex_a_returns_only_peers_with_the_default_mask() {
    let m = ask("seed.example.com.", RecordType::A);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert!(m.metadata.recursion_desired, "RD echoed");
    assert_eq!(m.metadata.id, 0x1234);
    let ips = addresses(&m);
    assert_eq!(ips.len(), 29, "512 bytes hold 29 A records for this name");
    assert!(m.metadata.truncation);
    assert!(
        ips.iter()
            .all(|ip| ip.is_ipv4() && services_of(*ip) & 1 == 1)
    );
    assert_eq!(ips.iter().collect::<HashSet<_>>().len(), ips.len());
    assert!(m.answers.iter().all(|r| r.ttl == 60));
}

#[test]
fn x_masks_select_exactly_their_bits() {
    for (name, mask) in [("x9", 9u64), ("x409", 0x409), ("x8", 8), ("X408", 0x408)] {
        let m = ask(&format!("{name}.{ZONE}."), RecordType::A);
        let ips = addresses(&m);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        if mask == 0x409 {
            assert!(ips.is_empty(), "nobody has 0x409");
            assert_soa_authority(&m);
        } else {
            assert!(!ips.is_empty(), "{name}");
            assert!(
                ips.iter().all(|ip| services_of(*ip) & mask == mask),
                "{name}"
            );
        }
    }
}

#[test]
fn mask_nobody_has_is_nodata() {
    let m = ask("x400000.seed.example.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(m.metadata.authoritative);
    assert_soa_authority(&m);
    // No answer set at all (cache full) looks the same.
    let mut rng = SmallRng::seed_from_u64(1);
    let none = |_| None;
    let bytes = respond(
        &query("x9.seed.example.com.", RecordType::A, None),
        Transport::Udp,
        &ctx(),
        &none,
        &mut rng,
    )
    .unwrap();
    let m = Message::from_vec(&bytes).unwrap();
    assert!(m.answers.is_empty());
    assert_soa_authority(&m);
}

#[test]
fn aaaa_returns_ipv6_peers_only() {
    let m = ask("seed.example.com.", RecordType::AAAA);
    let ips = addresses(&m);
    assert!(!ips.is_empty());
    assert!(ips.iter().all(IpAddr::is_ipv6));
    let m = ask("x400.seed.example.com.", RecordType::AAAA);
    assert!(m.answers.is_empty(), "no IPv6 peer has 0x400");
    assert_soa_authority(&m);
}

#[test]
fn ns_and_soa_at_the_apex() {
    let m = ask("seed.example.com.", RecordType::NS);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        m.answers[0].data,
        RData::NS(hickory_proto::rr::rdata::NS(
            Name::from_ascii("ns.example.com.").unwrap()
        ))
    );
    let m = ask("seed.example.com.", RecordType::SOA);
    assert_eq!(m.answers.len(), 1);
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!()
    };
    assert_eq!(soa.mname.to_ascii(), "ns.example.com.");
    assert_eq!(
        (soa.refresh, soa.retry, soa.expire, soa.minimum),
        (300, 60, 604800, 40),
        "refresh: --zone-refresh; retry a minute; expire a week; minimum: negative TTL"
    );
    assert_eq!(m.answers[0].ttl, 60);
    // Not at x-names, and other types are NODATA.
    for (name, t) in [
        ("x9.seed.example.com.", RecordType::NS),
        ("seed.example.com.", RecordType::MX),
        ("seed.example.com.", RecordType::TXT),
    ] {
        let m = ask(name, t);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_soa_authority(&m);
    }
}

#[test]
fn outside_the_zone_is_refused_with_the_question() {
    for name in [
        "example.com.",
        "seed.example.org.",
        "xseed.example.com.",
        "com.",
        ".",
    ] {
        let m = ask(name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{name}");
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(!m.metadata.authoritative);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].name().to_ascii(), name);
        assert!(m.answers.is_empty() && m.authorities.is_empty());
    }
    // Another class, or a zone transfer, is refused too.
    let mut m = Message::query();
    let mut q = Query::query(
        Name::from_ascii("seed.example.com.").unwrap(),
        RecordType::A,
    );
    q.set_query_class(DNSClass::CH);
    m.add_query(q);
    let r = Message::from_vec(&ask_raw(&m.to_vec().unwrap(), Transport::Udp).unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    let r = ask("seed.example.com.", RecordType::AXFR);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn unknown_names_inside_the_zone_are_nxdomain() {
    for label in [
        "x09",
        "x0",
        "xzz",
        "x",
        "foo",
        "a.x9",
        "x9.x9",
        "x10000000000000000",
        "9",
    ] {
        let name = format!("{label}.seed.example.com.");
        let m = ask(&name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(m.metadata.authoritative);
        assert!(m.answers.is_empty());
        assert_soa_authority(&m);
    }
}

#[test]
fn allow_filters_restrict_x_masks() {
    let mut c = config();
    c.allow_filters = Some(vec![9]);
    let ctx = ZoneContext::new(&c).unwrap();
    let mut rng = SmallRng::seed_from_u64(1);
    let rcode = |name: &str, rng: &mut SmallRng| {
        let bytes = respond(
            &query(name, RecordType::A, None),
            Transport::Udp,
            &ctx,
            &lookup,
            rng,
        )
        .unwrap();
        Message::from_vec(&bytes).unwrap().metadata.response_code
    };
    assert_eq!(
        rcode("x9.seed.example.com.", &mut rng),
        ResponseCode::NoError
    );
    assert_eq!(rcode("seed.example.com.", &mut rng), ResponseCode::NoError);
    assert_eq!(
        rcode("x8.seed.example.com.", &mut rng),
        ResponseCode::NXDomain
    );
}

#[test]
fn letter_case_of_the_question_is_echoed() {
    let name = "x9.SeEd.eXaMpLe.CoM.";
    let request = query(name, RecordType::A, None);
    let response = ask_raw(&request, Transport::Udp).unwrap();
    // The question section is byte-identical.
    assert_eq!(&response[12..request.len()], &request[12..]);
    let m = Message::from_vec(&response).unwrap();
    assert_eq!(m.queries[0].name().to_ascii(), name);
    assert!(!m.answers.is_empty());
    let nx = ask("NoPe.SEED.example.com.", RecordType::A);
    assert_eq!(nx.queries[0].name().to_ascii(), "NoPe.SEED.example.com.");
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn edns_size_is_honoured_and_opt_echoed() {
    for (size, expect_aaaa) in [(512u16, 16usize), (1000, 30), (4096, 30), (100, 16)] {
        let bytes = ask_raw(
            &query("seed.example.com.", RecordType::AAAA, Some(size)),
            Transport::Udp,
        )
        .unwrap();
        let limit = usize::from(size).clamp(512, 1232);
        assert!(bytes.len() <= limit, "{size}: {}", bytes.len());
        let m = Message::from_vec(&bytes).unwrap();
        let edns = m.edns.as_ref().expect("OPT echoed");
        assert_eq!(edns.max_payload(), 1232);
        assert_eq!(edns.version(), 0);
        // IPv6 peers: only 40, one netgroup; 30 fit into 1000 bytes (28 each).
        let n = addresses(&m).len();
        assert_eq!(
            n,
            if size >= 1000 { 30 } else { expect_aaaa.min(n) },
            "{size}"
        );
        assert_eq!(m.metadata.truncation, n < 30, "{size}");
    }
    // No EDNS in the query: no OPT in the answer.
    assert!(ask("seed.example.com.", RecordType::A).edns.is_none());
}

#[test]
fn udp_limit_truncates_and_tcp_answers_in_full() {
    let request = query("x9.seed.example.com.", RecordType::AAAA, None);
    let udp = ask_raw(&request, Transport::Udp).unwrap();
    assert!(udp.len() <= 512);
    let udp = Message::from_vec(&udp).unwrap();
    assert!(udp.metadata.truncation);
    assert!(addresses(&udp).len() < 30);
    let tcp = Message::from_vec(&ask_raw(&request, Transport::Tcp).unwrap()).unwrap();
    assert!(!tcp.metadata.truncation);
    assert_eq!(addresses(&tcp).len(), 30);
}

/// The figures the module documentation gives (`## Amplification`): records and bytes of
/// each answer, and the largest factor under 20.
#[test]
fn amplification_factor_of_the_largest_answers() {
    let mut worst: f64 = 0.0;
    for (rtype, edns, records, bytes) in [
        (RecordType::A, None, 29, 501),
        (RecordType::A, Some(4096), 30, 528),
        (RecordType::AAAA, None, 16, 485),
        (RecordType::AAAA, Some(4096), 30, 888),
    ] {
        let request = query("x9.seed.example.com.", rtype, edns);
        let response = ask_raw(&request, Transport::Udp).unwrap();
        let m = Message::from_vec(&response).unwrap();
        assert_eq!(
            (m.answers.len(), response.len()),
            (records, bytes),
            "{rtype} edns={edns:?}"
        );
        let factor = response.len() as f64 / request.len() as f64;
        println!(
            "amplification x9.{ZONE} {rtype} edns={edns:?}: {} -> {} bytes = {factor:.1}x",
            request.len(),
            response.len()
        );
        worst = worst.max(factor);
    }
    println!("largest amplification factor: {worst:.1}x");
    assert!(worst < 20.0);
}

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        v.extend_from_slice(&c.to_be_bytes());
    }
    v
}

#[test]
fn malformed_requests_get_formerr_notimp_or_silence() {
    // Shorter than a header, or a response: silence.
    assert!(ask_raw(&[], Transport::Udp).is_none());
    assert!(ask_raw(&[0; 11], Transport::Udp).is_none());
    let mut response = query("seed.example.com.", RecordType::A, None);
    response[2] |= 0x80;
    assert!(ask_raw(&response, Transport::Udp).is_none());
    // A header alone with no question: FORMERR.
    let rcode = |bytes: &[u8]| {
        let r = ask_raw(bytes, Transport::Udp).expect("a response");
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.metadata.message_type, MessageType::Response);
        m.metadata.response_code
    };
    assert_eq!(rcode(&header(1, 0, [0; 4])), ResponseCode::FormErr);
    assert_eq!(rcode(&header(1, 0, [1, 0, 0, 0])), ResponseCode::FormErr);
    // Two questions.
    let mut two = query("seed.example.com.", RecordType::A, None);
    two[5] = 2;
    let q = two[12..].to_vec();
    two.extend_from_slice(&q);
    assert_eq!(rcode(&two), ResponseCode::FormErr);
    // Opcode other than QUERY (STATUS = 2, UPDATE = 5).
    let mut status = query("seed.example.com.", RecordType::A, None);
    status[2] = 2 << 3;
    assert_eq!(rcode(&status), ResponseCode::NotImp);
    status[2] = 5 << 3;
    assert_eq!(rcode(&status), ResponseCode::NotImp);
    // A compression pointer in the question name.
    let mut ptr = header(1, 0, [1, 0, 0, 0]);
    ptr.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
    assert_eq!(rcode(&ptr), ResponseCode::FormErr);
    // Trailing garbage claimed as an additional record.
    let mut extra = query("seed.example.com.", RecordType::A, None);
    extra[11] = 1;
    extra.extend_from_slice(&[1, 2, 3]);
    assert_eq!(rcode(&extra), ResponseCode::FormErr);
    // Two OPT records.
    let mut two_opt = query("seed.example.com.", RecordType::A, Some(1232));
    let opt = two_opt[two_opt.len() - 11..].to_vec();
    two_opt[11] = 2;
    two_opt.extend_from_slice(&opt);
    assert_eq!(rcode(&two_opt), ResponseCode::FormErr);
}

#[test]
fn unknown_edns_version_gets_badvers() {
    let mut request = query("seed.example.com.", RecordType::A, Some(1232));
    let at = request.len() - 11 + 6; // OPT: name, type, class, ext-rcode, VERSION
    request[at] = 1;
    let m = Message::from_vec(&ask_raw(&request, Transport::Udp).unwrap()).unwrap();
    // 16 is both BADVERS and BADSIG; hickory names it BADSIG.
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert!(m.answers.is_empty());
}

#[test]
fn rate_limited_reply_is_empty_and_truncated() {
    let mut out = Vec::new();
    let request = query("x9.Seed.example.com.", RecordType::A, Some(1232));
    assert_eq!(
        respond_truncated_into(&request, &ctx(), &mut out),
        Outcome::Truncated
    );
    let m = Message::from_vec(&out).unwrap();
    assert!(m.metadata.truncation);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && m.authorities.is_empty());
    assert_eq!(m.queries[0].name().to_ascii(), "x9.Seed.example.com.");
    assert_eq!(
        respond_truncated_into(&[1, 2, 3], &ctx(), &mut out),
        Outcome::Dropped
    );
    assert!(out.is_empty());
}

#[test]
fn outcomes_are_reported() {
    let ctx = ctx();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut out = Vec::new();
    let mut outcome = |name: &str| {
        respond_into(
            &query(name, RecordType::A, None),
            Transport::Udp,
            &ctx,
            &lookup,
            &mut rng,
            &mut out,
        )
    };
    assert_eq!(outcome("seed.example.com."), Outcome::Answered);
    assert_eq!(outcome("x0.seed.example.com."), Outcome::NxDomain);
    assert_eq!(outcome("example.net."), Outcome::Refused);
}

#[test]
fn mask_labels_parse_strictly() {
    assert_eq!(parse_mask_label(b"x9"), Some(9));
    assert_eq!(parse_mask_label(b"X409"), Some(0x409));
    assert_eq!(parse_mask_label(b"xAbC"), Some(0xabc));
    assert_eq!(parse_mask_label(b"xffffffffffffffff"), Some(u64::MAX));
    for bad in [
        &b"x"[..],
        b"x0",
        b"x09",
        b"xzz",
        b"y9",
        b"x1ffffffffffffffff",
        b"",
        b"x-1",
    ] {
        assert_eq!(parse_mask_label(bad), None, "{bad:?}");
    }
}

/// Random and mutated packets never panic, and every response decodes.
#[test]
fn arbitrary_bytes_never_panic() {
    let ctx = ctx();
    let mut rng = SmallRng::seed_from_u64(0xD5);
    let seeds = [
        query("x9.seed.example.com.", RecordType::A, Some(1232)),
        query("seed.example.com.", RecordType::AAAA, None),
        query("foo.seed.example.com.", RecordType::SOA, Some(512)),
    ];
    let mut out = Vec::new();
    for i in 0..20_000 {
        let packet: Vec<u8> = if i % 4 == 0 {
            let len = rng.random_range(0..80);
            (0..len).map(|_| rng.random()).collect()
        } else {
            let mut p = seeds[i % seeds.len()].clone();
            for _ in 0..rng.random_range(1..4) {
                match rng.random_range(0..3) {
                    0 => p.truncate(rng.random_range(0..=p.len())),
                    1 if !p.is_empty() => {
                        let at = rng.random_range(0..p.len());
                        p[at] ^= 1 << rng.random_range(0..8);
                    }
                    _ if !p.is_empty() => {
                        let at = rng.random_range(0..p.len());
                        p[at] = rng.random();
                    }
                    _ => {}
                }
            }
            p
        };
        for transport in [Transport::Udp, Transport::Tcp] {
            let outcome = respond_into(&packet, transport, &ctx, &lookup, &mut rng, &mut out);
            assert_eq!(out.is_empty(), outcome == Outcome::Dropped);
            if !out.is_empty() {
                assert!(out.len() >= 12);
                assert_eq!(out[..2], packet[..2], "id echoed");
                if transport == Transport::Udp {
                    assert!(out.len() <= MAX_UDP_EDNS);
                }
                Message::from_vec(&out).unwrap_or_else(|e| panic!("{e}: {packet:?} -> {out:?}"));
            }
        }
    }
}

/// A buffer reused from one response to the next, as the UDP threads reuse theirs, keeps
/// nothing of a longer previous response, and one of `MAX_UDP_EDNS` bytes is never
/// reallocated (the module's "no allocation for typical queries"). The cost of a response
/// is measured by `benches/dns.rs`, not here.
#[test]
fn reused_buffer_gives_the_bytes_of_a_fresh_one_without_reallocating() {
    let ctx = ctx();
    let mut reused = Vec::with_capacity(MAX_UDP_EDNS);
    let at = reused.as_ptr();
    // The same answer sets (each draws its prebuilt answers when built) and the same
    // seed on both sides: the same records are chosen for both buffers.
    let sets: HashMap<u64, Option<Arc<AnswerSet>>> = [1, 9].map(|m| (m, lookup(m))).into();
    let answers = |mask: u64| sets.get(&mask).cloned().unwrap_or_else(|| lookup(mask));
    let (mut rng_reused, mut rng_fresh) = (SmallRng::seed_from_u64(1), SmallRng::seed_from_u64(1));
    for (name, rtype, edns) in [
        ("x9.seed.example.com.", RecordType::AAAA, Some(1232)),
        ("seed.example.com.", RecordType::A, None),
        ("nope.example.com.", RecordType::A, None),
        ("x0.seed.example.com.", RecordType::A, None),
        ("x9.seed.example.com.", RecordType::AAAA, None),
        ("seed.example.com.", RecordType::SOA, Some(1232)),
    ] {
        let request = query(name, rtype, edns);
        let mut fresh = Vec::new();
        let outcome = respond_into(
            &request,
            Transport::Udp,
            &ctx,
            &answers,
            &mut rng_reused,
            &mut reused,
        );
        let expected = respond_into(
            &request,
            Transport::Udp,
            &ctx,
            &answers,
            &mut rng_fresh,
            &mut fresh,
        );
        assert_eq!(outcome, expected, "{name} {rtype}");
        assert_eq!(reused, fresh, "{name} {rtype}");
        assert!(!reused.is_empty());
        assert_eq!(
            reused.as_ptr(),
            at,
            "{name} {rtype}: the buffer was reallocated"
        );
    }
}

#[test]
fn zone_context_rejects_bad_names() {
    let mut c = config();
    c.host = "bad..name".into();
    assert!(ZoneContext::new(&c).is_err());
    let mut c = config();
    c.mbox = "a b".into();
    assert!(ZoneContext::new(&c).is_err());
}
