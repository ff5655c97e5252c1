//! Scaffolding: the harness in `dnsd.rs` proven against a Knot primary serving a static
//! zone, until the seeder itself can be the hidden primary. Delete this file and its `mod`
//! line once the hidden-primary tests run the harness against the real binary.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dnsseeder::testkit::dns_client::addresses;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dnsd::{
    Daemon, Kind, Secondary, axfr_with, delv_validated, dnskey_anchor, kdig_dnssec,
    knot_server_conf, knotc, kzonecheck, missing_tools, named_checkzone, query, soa_serial,
    start_knot, wait_serial,
};
use crate::util::free_port;

const ZONE: &str = "seed.example.com";
const PRIMARY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
const KNOT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const NSD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 12);
const SIGNER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 13);
const NSD_FILE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 14);
/// Not among the primary's transfer ACL.
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 99);
/// How long a NOTIFY may take to show at a secondary.
const NOTIFY_LIMIT: Duration = Duration::from_secs(10);

fn at(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), free_port())
}

/// The zone at `serial`: two NS, A and AAAA at the apex and at x9; from serial 2 on, x9
/// has one more A.
fn zone_text(serial: u32) -> String {
    let mut text = format!(
        "$ORIGIN {ZONE}.\n$TTL 60\n\
         @ IN SOA ns1 hostmaster {serial} 60 10 3600 60\n\
         @ IN NS ns1\n@ IN NS ns2\nns1 IN A 192.0.2.53\nns2 IN A 192.0.2.54\n\
         @ IN A 192.0.2.1\n@ IN A 192.0.2.2\n@ IN AAAA 2001:db8::1\n\
         x9 IN A 198.51.100.9\nx9 IN AAAA 2001:db8::9\n"
    );
    if serial >= 2 {
        text += "x9 IN A 198.51.100.10\n";
    }
    text
}

/// knotd as the primary of `ZONE` from a file, notifying `secondaries` from its own address.
struct KnotPrimary {
    daemon: Daemon,
    addr: SocketAddr,
    file: PathBuf,
}

impl KnotPrimary {
    fn start(addr: SocketAddr, secondaries: &[SocketAddr]) -> KnotPrimary {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("primary.zone");
        std::fs::write(&file, zone_text(1)).unwrap();
        let mut conf = knot_server_conf(dir.path(), addr);
        conf += "remote:\n";
        for (i, s) in secondaries.iter().enumerate() {
            conf += &format!(
                "  - id: s{i}\n    address: {}@{}\n    via: {}\n",
                s.ip(),
                s.port(),
                addr.ip()
            );
        }
        let ids: Vec<String> = (0..secondaries.len()).map(|i| format!("s{i}")).collect();
        conf += &format!(
            "acl:\n  - id: transfer\n    address: [{KNOT}, {NSD}, {SIGNER}]\n    \
             action: transfer\n\
             zone:\n  - domain: {ZONE}\n    file: \"{}\"\n    notify: [{}]\n    \
             acl: transfer\n",
            file.display(),
            ids.join(", ")
        );
        let daemon = start_knot("knotd (primary)", dir, addr, &conf, ZONE);
        KnotPrimary { daemon, addr, file }
    }

    /// Writes the zone at `serial` and has knotd load it (it then notifies).
    fn publish(&self, serial: u32) {
        std::fs::write(&self.file, zone_text(serial)).unwrap();
        knotc(&self.daemon, &["zone-reload", ZONE]);
    }
}

/// The addresses `server` answers with AA for `name` `rtype`, sorted.
fn authoritative(server: &Secondary, name: &str, rtype: RecordType) -> Vec<IpAddr> {
    let m = query(server.addr, name, rtype);
    assert!(
        m.metadata.authoritative,
        "{:?}: no AA for {name} {rtype}",
        server.kind
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let mut ips = addresses(&m);
    ips.sort();
    ips
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = list.iter().map(|s| s.parse().unwrap()).collect();
    v.sort();
    v
}

/// The zone's apex and x9 as a secondary serves them at `serial`.
fn assert_serves(server: &Secondary, serial: u32) {
    let x9 = format!("x9.{ZONE}");
    let mut x9_a = vec!["198.51.100.9"];
    if serial >= 2 {
        x9_a.push("198.51.100.10");
    }
    assert_eq!(
        authoritative(server, ZONE, RecordType::A),
        ips(&["192.0.2.1", "192.0.2.2"])
    );
    assert_eq!(
        authoritative(server, ZONE, RecordType::AAAA),
        ips(&["2001:db8::1"])
    );
    assert_eq!(authoritative(server, &x9, RecordType::A), ips(&x9_a));
    assert_eq!(
        authoritative(server, &x9, RecordType::AAAA),
        ips(&["2001:db8::9"])
    );
}

/// The master file passes kzonecheck and named-checkzone and NSD serves it.
fn check_file(path: &Path) {
    kzonecheck(path, ZONE).unwrap();
    named_checkzone(ZONE, path).unwrap();
    let nsd = Secondary::nsd_from_file(ZONE, path, at(NSD_FILE));
    assert_eq!(soa_serial(nsd.addr, ZONE), Some(1), "{}", nsd.log());
    assert_serves(&nsd, 1);
}

#[test]
fn harness_against_a_knot_primary() {
    let tools = [
        "knotd",
        "knotc",
        "kdig",
        "kzonecheck",
        "nsd",
        "named-checkzone",
        "delv",
    ];
    if let Some(why) = missing_tools(&tools) {
        eprintln!("skipped: harness_against_a_knot_primary: {why}");
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let static_zone = files.path().join("static.zone");
    std::fs::write(&static_zone, zone_text(1)).unwrap();
    check_file(&static_zone);

    let (knot_addr, nsd_addr, signer_addr) = (at(KNOT), at(NSD), at(SIGNER));
    let primary = KnotPrimary::start(at(PRIMARY), &[knot_addr, nsd_addr, signer_addr]);
    let from = IpAddr::V4(PRIMARY);
    let knot = Secondary::knot(ZONE, primary.addr, knot_addr, from, false);
    let nsd = Secondary::nsd(ZONE, primary.addr, nsd_addr, from);
    let signer = Secondary::knot(ZONE, primary.addr, signer_addr, from, true);
    for s in [&knot, &nsd] {
        assert_eq!(wait_serial(s.addr, ZONE, 1, NOTIFY_LIMIT), 1);
        assert_serves(s, 1);
    }
    assert_eq!(knot.kind, Kind::Knot);
    assert_eq!(nsd.kind, Kind::Nsd);
    let signed = wait_serial(signer.addr, ZONE, 1, NOTIFY_LIMIT);

    let axfr = axfr_with(IpAddr::V4(KNOT), primary.addr, ZONE).unwrap();
    assert_eq!(axfr.rcode, ResponseCode::NoError);
    let soas = axfr
        .records
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA);
    assert_eq!(soas.count(), 2, "{axfr:?}");
    assert_eq!(axfr.records.len(), 11, "{axfr:?}");
    let refused = axfr_with(IpAddr::V4(STRANGER), primary.addr, ZONE).unwrap();
    assert_ne!(refused.rcode, ResponseCode::NoError, "{refused:?}");
    assert!(refused.records.is_empty(), "{refused:?}");

    // A new serial reaches every secondary by NOTIFY (their refresh is 60 s).
    let published = Instant::now();
    primary.publish(2);
    for s in [&knot, &nsd] {
        assert_eq!(wait_serial(s.addr, ZONE, 2, NOTIFY_LIMIT), 2);
        assert_serves(s, 2);
    }
    wait_serial(signer.addr, ZONE, signed + 1, NOTIFY_LIMIT);
    eprintln!(
        "serial 2 everywhere {:?} after the reload",
        published.elapsed()
    );
    // A refresh without NOTIFY: Knot's SOA query over TCP finds nothing new.
    knotc(knot.daemon(), &["zone-refresh", ZONE]);
    let asked = Instant::now();
    while !knot.log().contains("zone is up-to-date") {
        assert!(asked.elapsed() < NOTIFY_LIMIT, "no refresh");
        std::thread::sleep(Duration::from_millis(50));
    }

    let x9 = format!("x9.{ZONE}");
    let dig = kdig_dnssec(signer.addr, &x9, RecordType::A);
    assert!(dig.contains("RRSIG"), "{dig}");
    let anchor = files.path().join("anchor.conf");
    std::fs::write(&anchor, dnskey_anchor(signer.addr, ZONE)).unwrap();
    let delv = delv_validated(signer.addr, ZONE, &x9, RecordType::A, &anchor);
    assert!(delv.contains("; fully validated"), "{delv}");
    assert!(delv.contains("198.51.100.10"), "{delv}");
}
