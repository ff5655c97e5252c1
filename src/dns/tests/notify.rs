//! NOTIFY to a secondary played by a UDP socket of the test: the server's first zone is
//! announced at start, an unanswered NOTIFY is sent again after 2 s, an acknowledged or
//! refused one is not, and a change of the peers brings a new serial, in the NOTIFY and in
//! the SOA the server answers, while an unchanged zone brings none.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::sockets::{VecSource, config};
use crate::dns::{DnsConfig, DnsHandle, DnsServer};
use crate::testkit::dns_client::{client, exchange, query};

/// A secondary's socket and a server notifying it, with `peers` (shared, to change them).
fn setup(peers: &Arc<Mutex<Vec<(IpAddr, u64)>>>, refresh: Duration) -> (UdpSocket, DnsHandle) {
    let secondary = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c: DnsConfig = config();
    c.notify = vec![secondary.local_addr().unwrap()];
    c.zone_refresh = refresh;
    c.cache_ttl = Duration::from_millis(100);
    let server = DnsServer::bind(c, VecSource(Arc::clone(peers))).unwrap();
    (secondary, server.spawn().unwrap())
}

/// The next NOTIFY within `wait`, with where it came from, or `None`.
fn next_notify(secondary: &UdpSocket, wait: Duration) -> Option<(Message, SocketAddr)> {
    secondary.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    let (n, from) = secondary.recv_from(&mut buf).ok()?;
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.op_code, OpCode::Notify);
    assert_eq!(m.queries[0].query_type(), RecordType::SOA);
    Some((m, from))
}

fn serial_of(m: &Message) -> u32 {
    m.answers
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
        .unwrap()
}

fn answer(secondary: &UdpSocket, to: SocketAddr, notify: &Message, rcode: ResponseCode) {
    let mut ack = Message::response(notify.metadata.id, OpCode::Notify);
    ack.metadata.response_code = rcode;
    secondary.send_to(&ack.to_vec().unwrap(), to).unwrap();
}

fn peers(n: u8) -> Arc<Mutex<Vec<(IpAddr, u64)>>> {
    let v = (0..n).map(|i| (IpAddr::V4(Ipv4Addr::new(127, 0, 7, i)), 1 | 8));
    Arc::new(Mutex::new(v.collect()))
}

#[test]
fn an_unanswered_notify_is_resent_and_an_answered_one_is_not() {
    let (secondary, _server) = setup(&peers(5), Duration::from_secs(3600));
    let (first, _) = next_notify(&secondary, Duration::from_secs(5)).expect("NOTIFY at start");
    let sent = Instant::now();
    let (again, from) = next_notify(&secondary, Duration::from_secs(5)).expect("resent");
    let waited = sent.elapsed();
    assert!(
        waited > Duration::from_millis(1500) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(again.metadata.id, first.metadata.id, "the same NOTIFY");
    assert_eq!(serial_of(&again), serial_of(&first));
    answer(&secondary, from, &again, ResponseCode::NoError);
    assert!(
        next_notify(&secondary, Duration::from_secs(5)).is_none(),
        "acknowledged: no more"
    );
}

#[test]
fn a_refused_notify_is_given_up() {
    let (secondary, _server) = setup(&peers(5), Duration::from_secs(3600));
    let (first, from) = next_notify(&secondary, Duration::from_secs(5)).unwrap();
    answer(&secondary, from, &first, ResponseCode::Refused);
    assert!(
        next_notify(&secondary, Duration::from_secs(3)).is_none(),
        "refused: given up"
    );
}

#[test]
fn a_changed_zone_gets_a_new_serial_and_an_unchanged_one_none() {
    let shared = peers(5);
    let (secondary, server) = setup(&shared, Duration::from_millis(300));
    let dns = server.local_addrs()[0];
    let (first, from) = next_notify(&secondary, Duration::from_secs(5)).unwrap();
    answer(&secondary, from, &first, ResponseCode::NoError);
    assert!(
        next_notify(&secondary, Duration::from_millis(1500)).is_none(),
        "5 peers, all in the zone: nothing changes, no new serial"
    );
    shared.lock().unwrap().truncate(3);
    let (changed, _) = next_notify(&secondary, Duration::from_secs(5)).expect("a new serial");
    let serial = serial_of(&changed);
    assert!(
        serial > serial_of(&first),
        "{} -> {serial}",
        serial_of(&first)
    );
    let soa = exchange(
        &client("127.0.0.1:0"),
        dns,
        &query(1, "seed.example.com.", RecordType::SOA, None),
    )
    .unwrap();
    assert_eq!(
        serial_of(&soa),
        serial,
        "the live SOA carries the new serial"
    );
}
