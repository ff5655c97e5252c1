//! Arbitrary request bytes through the DNS responder (`dns::respond` for UDP and TCP,
//! and the rate limiter's `respond_truncated_into`), with realistic zones and answer sets.
//!
//! The input is the request itself. Its ID picks the setting, so that a seed corpus of
//! plain DNS queries works: bit 0 the zone (`seed.example.com` with default settings, or
//! `dnsseed.example.org` with mask 9 and `allow_filters`), bit 1 no answer sets at all.
//!
//! Invariants: a response, when any, parses with hickory-proto, echoes the ID with QR
//! set, has at most 30 answers; over UDP it fits 512 bytes, or 1232 when it carries an
//! OPT record; over TCP it is never truncated; UDP and TCP agree on whether to answer
//! and on the response code.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use dnsseeder::dns::{
    AnswerSet, DnsConfig, MAX_UDP_PLAIN, Transport, ZoneContext, respond, respond_truncated_into,
};
use dnsseeder::testkit::check_dns_response;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::SmallRng;

struct World {
    zones: [ZoneContext; 2],
    peers: Vec<(IpAddr, u64)>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut plain = DnsConfig::new(
            "seed.example.com",
            "ns.example.com",
            "hostmaster@example.com",
        );
        plain.serial = Some(7);
        let mut strict = DnsConfig::new(
            "dnsseed.example.org",
            "ns1.example.org",
            "admin.example.org",
        );
        strict.default_mask = 9;
        strict.allow_filters = Some(vec![1, 5, 9, 0xd, 0x49, 0x409, 0x809]);
        strict.ttl = 3600;
        strict.negative_ttl = 600;
        // Peers in many netgroups, with the service combinations real nodes announce.
        let services = [1u64, 9, 0x409, 0x449, 0xc09, 0x408, 0x4d];
        let mut peers = Vec::new();
        for i in 0..120u32 {
            let v4 = Ipv4Addr::from(0x0100_0000u32.wrapping_add(i.wrapping_mul(0x0127_3b15)));
            peers.push((IpAddr::V4(v4), services[i as usize % services.len()]));
            let v6 = Ipv6Addr::new(0x2a01, (i * 37) as u16, 0, i as u16, 0, 0, 0, 1);
            peers.push((IpAddr::V6(v6), services[(i as usize + 3) % services.len()]));
        }
        for i in 0..40u8 {
            peers.push((IpAddr::V4(Ipv4Addr::new(127, 0, 1, i)), 9));
        }
        World {
            zones: [
                ZoneContext::new(&plain).expect("a valid zone"),
                ZoneContext::new(&strict).expect("a valid zone"),
            ],
            peers,
        }
    })
}

fn answers(mask: u64) -> Option<Arc<AnswerSet>> {
    let peers = world().peers.iter().filter(|(_, s)| s & mask == mask);
    Some(Arc::new(AnswerSet::new(peers.map(|(ip, _)| *ip))))
}

fn nothing(_: u64) -> Option<Arc<AnswerSet>> {
    None
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let id = data.get(1).copied().unwrap_or(0);
    let ctx = &w.zones[usize::from(id & 1)];
    let lookup: &dyn Fn(u64) -> Option<Arc<AnswerSet>> =
        if id & 2 == 0 { &answers } else { &nothing };
    let mut rng = SmallRng::seed_from_u64(u64::from(id));
    let udp = respond(data, Transport::Udp, ctx, lookup, &mut rng);
    let tcp = respond(data, Transport::Tcp, ctx, lookup, &mut rng);
    let udp_rcode = check_dns_response(data, udp.as_deref(), Transport::Udp);
    let tcp_rcode = check_dns_response(data, tcp.as_deref(), Transport::Tcp);
    assert_eq!(udp_rcode, tcp_rcode);

    let mut out = Vec::new();
    respond_truncated_into(data, ctx, &mut out);
    if let Some(rcode) =
        check_dns_response(data, (!out.is_empty()).then_some(&out[..]), Transport::Udp)
    {
        assert!(out.len() <= MAX_UDP_PLAIN);
        // Only a request that does not parse gets an error here, the same as from `respond`.
        if rcode != 0 {
            assert_eq!(udp_rcode, Some(rcode));
        }
    }
});
