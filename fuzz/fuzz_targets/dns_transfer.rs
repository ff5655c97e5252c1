//! Arbitrary request bytes through the zone-transfer path (`dns::respond_transfer`, what a
//! connection from an `--axfr-allow` source gets), with a realistic zone of nine names.
//!
//! Invariants: a request it takes gets the whole zone, SOA to SOA, in framed messages that
//! parse, echo the ID with QR and AA, and stay under `MESSAGE_LIMIT` (see
//! `testkit::transfer::check_transfer`); one it declines leaves nothing written, and then
//! gets the responder's answer over TCP, which is never a transfer.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use dnsseeder::dns::{
    AnswerSet, DnsConfig, Transport, Zone, ZoneContext, respond, respond_transfer, zone_names,
};
use dnsseeder::testkit::check_dns_response;
use dnsseeder::testkit::transfer::check_transfer;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::SmallRng;

struct World {
    ctx: ZoneContext,
    zone: Zone,
    set: Arc<AnswerSet>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut config =
            DnsConfig::new("seed.example.com", "ns1.example.net", "hostmaster@example.com");
        config.extra_ns = vec!["ns2.example.net".into()];
        config.serial = Some(2_026_120_601);
        let ctx = ZoneContext::new(&config).expect("a valid zone");
        let v4 = (0..200u32).map(|i| IpAddr::V4(Ipv4Addr::from(0x0100_0000 + i * 0x0001_3b15)));
        let v6 = (0..200u16).map(|i| IpAddr::V6(Ipv6Addr::new(0x2a01, i, 0, 0, 0, 0, 0, 1)));
        let set = Arc::new(AnswerSet::new(v4.chain(v6)));
        let mut rng = SmallRng::seed_from_u64(1);
        let names = zone_names(&ctx);
        let zone = Zone::choose(2_026_120_601, &names, |_| Some(Arc::clone(&set)), 25, &mut rng);
        World { ctx, zone, set }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let mut framed = Vec::new();
    if respond_transfer(data, &w.ctx, &w.zone, &mut framed) {
        let (serial, _) = check_transfer(data, &framed);
        assert_eq!(serial, w.zone.serial);
        return;
    }
    assert!(framed.is_empty());
    let lookup = |_| Some(Arc::clone(&w.set));
    let mut rng = SmallRng::seed_from_u64(2);
    let tcp = respond(data, Transport::Tcp, &w.ctx, &lookup, &mut rng);
    check_dns_response(data, tcp.as_deref(), Transport::Tcp);
});
