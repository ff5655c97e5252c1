//! Tests of the transfer's pure parts: AXFR messages decoded with hickory-proto, the
//! master file, NOTIFY and its acknowledgement.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::notify::{Ack, notify_message, read_ack};
use super::*;
use crate::dns::{AnswerSet, DnsConfig};

fn ctx(filters: Option<Vec<u64>>) -> ZoneContext {
    let mut c = DnsConfig::new(
        "seed.example.com",
        "ns1.example.net",
        "hostmaster@example.com",
    );
    c.extra_ns = vec!["ns2.example.net".into()];
    c.allow_filters = filters;
    c.serial = Some(7);
    ZoneContext::new(&c).unwrap()
}

/// A zone of `ctx`'s names with `n` IPv4 and `n` IPv6 peers in each set.
fn zone(ctx: &ZoneContext, n: u16, serial: u32) -> Zone {
    let v4 = (0..n).map(|i| IpAddr::V4(Ipv4Addr::new(10, (i >> 8) as u8, i as u8, 1)));
    let v6 = (0..n).map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, i, 0, 0, 0, 0, 1)));
    let set = Arc::new(AnswerSet::new(v4.chain(v6)));
    let mut rng = SmallRng::seed_from_u64(3);
    Zone::choose(
        serial,
        &zone_names(ctx),
        |_| Some(Arc::clone(&set)),
        25,
        &mut rng,
    )
}

fn request(name: &str, rtype: RecordType, class: DNSClass, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0xbeef;
    let mut q = Query::query(Name::from_ascii(name).unwrap(), rtype);
    q.set_query_class(class);
    m.add_query(q);
    if edns {
        m.set_edns(Edns::new());
    }
    m.to_vec().unwrap()
}

/// The messages of a framed transfer.
fn messages(framed: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut rest = framed;
    while !rest.is_empty() {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        assert!(len <= MESSAGE_LIMIT, "message of {len} bytes");
        out.push(Message::from_vec(&rest[2..2 + len]).unwrap());
        rest = &rest[2 + len..];
    }
    out
}

fn transfer(ctx: &ZoneContext, zone: &Zone, req: &[u8]) -> Option<Vec<Message>> {
    let mut framed = Vec::new();
    respond_transfer(req, ctx, zone, &mut framed).then(|| messages(&framed))
}

fn records(msgs: &[Message]) -> Vec<Record> {
    msgs.iter()
        .flat_map(|m| m.answers.iter().cloned())
        .collect()
}

#[test]
fn axfr_carries_soa_ns_and_every_address_between_two_soas() {
    let ctx = ctx(None);
    let zone = zone(&ctx, 40, 9);
    let msgs = transfer(
        &ctx,
        &zone,
        &request("Seed.Example.com.", RecordType::AXFR, DNSClass::IN, true),
    )
    .unwrap();
    let first = &msgs[0];
    assert_eq!(first.metadata.id, 0xbeef);
    assert_eq!(first.metadata.message_type, MessageType::Response);
    assert!(first.metadata.authoritative);
    assert_eq!(first.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        first.queries[0].name().to_ascii(),
        "Seed.Example.com.",
        "question echoed"
    );
    assert!(
        msgs.iter()
            .all(|m| m.metadata.id == 0xbeef && m.edns.is_some())
    );
    let all = records(&msgs);
    let soa_serial = |r: &Record| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    };
    assert_eq!(soa_serial(&all[0]), Some(9));
    assert_eq!(soa_serial(all.last().unwrap()), Some(9));
    let ns: Vec<_> = all
        .iter()
        .filter(|r| r.record_type() == RecordType::NS)
        .collect();
    assert_eq!(ns.len(), 2);
    // 9 names (apex and 8 default filters), 25 A and 25 AAAA each.
    let x9 = Name::from_ascii("x9.seed.example.com.").unwrap();
    let apex = Name::from_ascii("seed.example.com.").unwrap();
    let count = |name: &Name, t| {
        all.iter()
            .filter(|r| r.name == *name && r.record_type() == t)
            .count()
    };
    assert_eq!(count(&x9, RecordType::A), 25);
    assert_eq!(count(&x9, RecordType::AAAA), 25);
    assert_eq!(count(&apex, RecordType::A), 25);
    assert_eq!(all.len(), 2 + 2 + 9 * 50);
    for name in &zone.names {
        let owner = match &name.name.label {
            Some(l) => Name::from_ascii(format!("{l}.seed.example.com.")).unwrap(),
            None => apex.clone(),
        };
        let got: Vec<Ipv4Addr> = all
            .iter()
            .filter(|r| r.name == owner)
            .filter_map(|r| match r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        assert_eq!(got, name.v4, "{owner}");
    }
}

#[test]
fn large_zones_are_split_into_messages_under_the_limit() {
    let filters: Vec<u64> = (1..=60).collect();
    let ctx = ctx(Some(filters));
    let zone = zone(&ctx, 40, 3);
    let msgs = transfer(
        &ctx,
        &zone,
        &request("seed.example.com.", RecordType::AXFR, DNSClass::IN, false),
    )
    .unwrap();
    assert!(msgs.len() >= 3, "{} messages", msgs.len());
    assert_eq!(msgs[0].queries.len(), 1);
    assert!(
        msgs[1..]
            .iter()
            .all(|m| m.queries.is_empty() && m.edns.is_none())
    );
    assert_eq!(records(&msgs).len(), 2 + 2 + 61 * 50);
}

#[test]
fn ixfr_gets_the_whole_zone_and_other_requests_are_declined() {
    let ctx = ctx(None);
    let zone = zone(&ctx, 5, 3);
    let ixfr = transfer(
        &ctx,
        &zone,
        &request("seed.example.com.", RecordType::IXFR, DNSClass::IN, false),
    )
    .unwrap();
    assert_eq!(records(&ixfr).len(), 2 + 2 + 9 * 10);
    for declined in [
        request("seed.example.com.", RecordType::A, DNSClass::IN, false),
        request("seed.example.com.", RecordType::AXFR, DNSClass::CH, false),
        request("seed.example.com.", RecordType::AXFR, DNSClass::ANY, false),
        request(
            "x9.seed.example.com.",
            RecordType::AXFR,
            DNSClass::IN,
            false,
        ),
        request("example.com.", RecordType::AXFR, DNSClass::IN, false),
        vec![0xbe, 0xef, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0],
        vec![],
    ] {
        assert!(transfer(&ctx, &zone, &declined).is_none(), "{declined:?}");
    }
    let mut two_questions = request("seed.example.com.", RecordType::AXFR, DNSClass::IN, false);
    two_questions[5] = 2;
    assert!(transfer(&ctx, &zone, &two_questions).is_none());
}

#[test]
fn the_master_file_holds_the_same_records() {
    let ctx = ctx(None);
    let zone = zone(&ctx, 3, 42);
    let text = master_file(&ctx, &zone);
    assert!(text.contains("$ORIGIN seed.example.com.\n"), "{text}");
    assert!(
        text.contains("@ IN SOA ns1.example.net. hostmaster.example.com. 42 300 60 604800 40\n"),
        "{text}"
    );
    assert!(text.contains("@ IN NS ns2.example.net.\n"));
    let a_lines = text.lines().filter(|l| l.contains(" IN A ")).count();
    let aaaa_lines = text.lines().filter(|l| l.contains(" IN AAAA ")).count();
    assert_eq!((a_lines, aaaa_lines), (27, 27));
    assert!(text.contains("x9 IN A 10.0.0.1\n") || text.contains("x9 IN A 10.0.1.1\n"));
}

#[test]
fn notify_is_a_notify_for_the_soa_and_acks_match_its_id() {
    let ctx = ctx(None);
    let zone = zone(&ctx, 1, 77);
    let m = Message::from_vec(&notify_message(0x4242, &ctx, &zone)).unwrap();
    assert_eq!(m.metadata.op_code, OpCode::Notify);
    assert!(m.metadata.authoritative);
    assert_eq!(m.queries[0].query_type(), RecordType::SOA);
    assert_eq!(m.queries[0].name().to_ascii(), "seed.example.com.");
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!()
    };
    assert_eq!(soa.serial, 77);
    let mut ack = Message::response(0x4242, OpCode::Notify);
    ack.metadata.response_code = ResponseCode::NoError;
    let ack = ack.to_vec().unwrap();
    assert_eq!(read_ack(&ack, 0x4242), Ack::Done);
    assert_eq!(read_ack(&ack, 0x4243), Ack::Other);
    let mut refused = ack.clone();
    refused[3] |= 5;
    assert_eq!(read_ack(&refused, 0x4242), Ack::Refused(5));
    let mut query = ack.clone();
    query[2] &= 0x7f;
    assert_eq!(read_ack(&query, 0x4242), Ack::Other, "not a response");
    assert_eq!(read_ack(&ack[..3], 0x4242), Ack::Other);
}

/// Checks what [`respond_transfer`] did with `request`: nothing, or a whole transfer
/// (`testkit::transfer::check_transfer`) of `zone`'s serial and records.
fn transfer_checked(ctx: &ZoneContext, zone: &Zone, request: &[u8]) {
    let mut framed = Vec::new();
    if !respond_transfer(request, ctx, zone, &mut framed) {
        assert!(framed.is_empty());
        return;
    }
    let (serial, count) = crate::testkit::transfer::check_transfer(request, &framed);
    assert_eq!(serial, zone.serial);
    assert_eq!(count, 2 + ctx.ns_rdatas.len() + zone.address_count());
}

proptest::proptest! {
    /// Arbitrary bytes never panic the transfer path.
    #[test]
    fn transfer_survives_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let ctx = ctx(None);
        transfer_checked(&ctx, &zone(&ctx, 5, 1), &bytes);
    }

    /// Transfer requests with bytes changed or cut are answered whole or declined.
    #[test]
    fn mutated_transfer_requests_are_whole_or_declined(
        edits in proptest::collection::vec((0usize..64, proptest::num::u8::ANY), 1..4),
        cut in 0usize..80,
        edns in proptest::bool::ANY,
    ) {
        let ctx = ctx(None);
        let mut req = request("seed.example.com.", RecordType::AXFR, DNSClass::IN, edns);
        for (at, byte) in edits {
            let at = at % req.len();
            req[at] = byte;
        }
        req.truncate(cut.max(12).min(req.len()));
        transfer_checked(&ctx, &zone(&ctx, 5, 1), &req);
    }
}
