//! Probe conversations against scripted and real peers.

use std::collections::HashSet;
use std::net::TcpListener;

use bitcoin::Network;
use bitcoin::consensus::encode::VarInt;

use super::*;
use bitcoin::consensus::encode;
use bitcoin::p2p::message::RawNetworkMessage;

use crate::testkit::{self, CountingPeer, ScriptedPeer, peer_handshake, peer_version};

fn magic() -> Magic {
    Magic::from(Network::Regtest)
}

fn frame(msg: NetworkMessage) -> Vec<u8> {
    encode::serialize(&RawNetworkMessage::new(magic(), msg))
}

fn raw_frame(command: &str, payload: &[u8]) -> Vec<u8> {
    testkit::raw_frame(magic(), command, payload)
}

fn addr_entries(n: usize) -> Vec<(u32, Address)> {
    (0..n)
        .map(|i| {
            let sock = SocketAddr::from(([127, 1, (i / 256) as u8, (i % 256) as u8], 18444));
            (1_700_000_000, Address::new(&sock, ServiceFlags::NETWORK))
        })
        .collect()
}

fn talk(script: Vec<u8>) -> (Result<PeerInfo, ProbeError>, Vec<u8>) {
    let (result, sent, _, _) = talk_in_chunks(&script, usize::MAX);
    (result, sent)
}

fn handshake() -> Vec<u8> {
    peer_handshake(magic())
}

/// Splits what we sent into command names.
fn commands(mut sent: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while sent.len() >= HEADER_LEN {
        let header = parse_header(sent[..HEADER_LEN].try_into().unwrap(), magic()).unwrap();
        out.push(header.command);
        sent = &sent[HEADER_LEN + header.length as usize..];
    }
    out
}

#[test]
fn handshake_then_addresses_over_several_messages() {
    let mut script = handshake();
    script.extend(frame(NetworkMessage::SendHeaders));
    script.extend(frame(NetworkMessage::Ping(99)));
    script.extend(frame(NetworkMessage::Addr(addr_entries(1))));
    script.extend(frame(NetworkMessage::Addr(addr_entries(600))));
    script.extend(raw_frame("inv", &[0]));
    script.extend(frame(NetworkMessage::Addr(addr_entries(400))));
    let (result, sent) = talk(script);
    let info = result.unwrap();
    assert_eq!(info.version, 70016);
    assert_eq!(info.services, 9);
    assert_eq!(info.user_agent, "/Satoshi:27.0.0/");
    assert_eq!(info.start_height, 850_000);
    assert!(info.asked_getaddr);
    assert_eq!(info.addrs.len(), 1001);
    assert_eq!(info.addrs[1].addr.to_string(), "127.1.0.0:18444");
    assert_eq!(
        commands(&sent),
        ["version", "sendaddrv2", "verack", "getaddr", "pong"]
    );
}

#[test]
fn our_version_announces_what_spec_says() {
    let (_, sent) = talk(Vec::new());
    let header = parse_header(sent[..HEADER_LEN].try_into().unwrap(), magic()).unwrap();
    let payload = &sent[HEADER_LEN..HEADER_LEN + header.length as usize];
    let Message::Version(v) = decode_payload(&header, payload).unwrap() else {
        panic!("not a version")
    };
    assert_eq!(v.version, 70016);
    assert_eq!(v.services, ServiceFlags::NONE);
    assert!(!v.relay);
    assert_eq!(v.start_height, 0);
    assert_eq!(
        v.user_agent,
        format!("/dnsseeder:{}/", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn address_cap_per_probe() {
    let mut script = handshake();
    for _ in 0..4 {
        script.extend(frame(NetworkMessage::Addr(addr_entries(1000))));
    }
    let (result, _) = talk(script);
    assert_eq!(result.unwrap().addrs.len(), 2500);
}

#[test]
fn version_with_trailing_bytes_is_accepted() {
    let mut payload = encode::serialize(&peer_version(70016));
    payload.push(0x42);
    let mut script = raw_frame("version", &payload);
    script.extend(frame(NetworkMessage::Verack));
    let (result, _) = talk(script);
    assert_eq!(result.unwrap().version, 70016);
}

#[test]
fn hostile_headers_fail_with_their_reason() {
    let mut wrong_magic = frame(NetworkMessage::Verack);
    wrong_magic[0] ^= 0xff;
    let mut oversize = raw_frame("block", &[]);
    oversize[16..20].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let mut bad_sum = frame(NetworkMessage::Version(peer_version(70016)));
    bad_sum[20] ^= 1;
    let mut flood = handshake_prefix_version();
    let mut payload = encode::serialize(&VarInt(1001));
    for (t, a) in addr_entries(1001) {
        payload.extend(encode::serialize(&t));
        payload.extend(encode::serialize(&a));
    }
    flood.extend(raw_frame("addr", &payload));
    let cases: [(Vec<u8>, &str); 6] = [
        (wrong_magic, "bad-magic"),
        (oversize, "oversize"),
        (bad_sum, "bad-checksum"),
        (flood, "oversize"),
        (raw_frame("version", &[1, 2, 3]), "protocol"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), "bad-magic"),
    ];
    for (script, reason) in cases {
        let err = talk(script).0.unwrap_err();
        assert_eq!(err.reason(), reason, "{err}");
        assert!(err.is_violation());
    }
}

fn handshake_prefix_version() -> Vec<u8> {
    frame(NetworkMessage::Version(peer_version(70016)))
}

/// A payload the probe does not decode, as large as a header may announce, is skipped
/// through the fixed read buffer: the handshake after it completes, and no read asks for
/// more than `READ_BUFFER` bytes, where reading the payload into a buffer of its own size
/// would ask for megabytes at once.
#[test]
fn large_unknown_payload_is_skipped_not_allocated() {
    let mut script = handshake_prefix_version();
    script.extend(raw_frame("block", &vec![0u8; MAX_PAYLOAD as usize]));
    script.extend(frame(NetworkMessage::Verack));
    let (result, peer) = converse_with(&script, usize::MAX);
    assert_eq!(result.unwrap().version, 70016);
    assert!(peer.inner.input.is_empty(), "the whole script was read");
    assert!(
        peer.largest_read <= READ_BUFFER,
        "a read of {} bytes",
        peer.largest_read
    );
}

/// A message the probe decodes whose header announces more than it ever decodes is refused
/// as oversize on its header: at most one read buffer of the payload the peer has ready is
/// taken (never the payload itself), and the reason is not "closed", which is how reading
/// a payload the peer never finishes would end.
#[test]
fn large_decoded_payload_is_refused_on_its_header() {
    let payload_len = MAX_DECODED_PAYLOAD as usize + 1;
    for complete in [true, false] {
        let mut script = handshake_prefix_version();
        let mut addr = raw_frame("addr", &vec![0u8; payload_len]);
        if !complete {
            addr.truncate(HEADER_LEN + 1000);
        }
        let unread_payload = addr.len() - HEADER_LEN;
        script.extend(addr);
        let (result, peer) = converse_with(&script, usize::MAX);
        let err = result.unwrap_err();
        assert_eq!(err.reason(), "oversize", "{err}");
        assert!(
            peer.inner.input.len() + READ_BUFFER >= unread_payload,
            "{} payload bytes read",
            unread_payload - peer.inner.input.len()
        );
        assert!(peer.largest_read <= READ_BUFFER);
    }
}

#[test]
fn truncated_conversation_is_closed() {
    let mut script = handshake_prefix_version();
    script.truncate(script.len() - 5);
    let err = talk(script).0.unwrap_err();
    assert_eq!(err.reason(), "closed");
    assert!(!err.is_violation());
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    for round in 0..2000 {
        let mut script = if round % 2 == 0 {
            handshake()
        } else {
            Vec::new()
        };
        for _ in 0..(round % 64) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % (script.len() + 1);
            script.insert(at, (seed >> 32) as u8);
        }
        let _ = talk(script);
    }
}

#[test]
fn real_socket_probe_and_refusal() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let node = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut script = handshake();
        script.extend(frame(NetworkMessage::Addr(addr_entries(5))));
        s.write_all(&script).unwrap();
        // Hold the connection until the prober closes it.
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    let mut opts = ProbeOptions::new(magic());
    opts.addr_grace = Duration::from_millis(100);
    let info = probe(addr, &opts).unwrap();
    assert_eq!(info.addrs.len(), 5);
    node.join().unwrap();
    // Nothing listens there any more.
    let err = probe(addr, &opts).unwrap_err();
    assert_eq!(err.reason(), "refused");
}

#[test]
fn silent_peer_times_out_by_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut opts = ProbeOptions::new(magic());
    opts.deadline = Duration::from_millis(300);
    let start = Instant::now();
    let err = probe(addr, &opts).unwrap_err();
    assert_eq!(err.reason(), "timeout");
    assert!(start.elapsed() < Duration::from_secs(3));
    drop(listener);
}

/// A node on a real socket that, once it accepted the prober, sleeps and writes each
/// step in turn, then holds the connection, silent, until the prober closes it.
fn node_saying(steps: Vec<(Duration, Vec<u8>)>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let node = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        for (pause, bytes) in steps {
            std::thread::sleep(pause);
            s.write_all(&bytes).unwrap();
        }
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    (addr, node)
}

/// Options with a 20 s deadline, the handshake timeout and grace given in milliseconds.
fn options(handshake_ms: u64, grace_ms: u64) -> ProbeOptions {
    let mut opts = ProbeOptions::new(magic());
    opts.deadline = Duration::from_secs(20);
    opts.handshake_timeout = Duration::from_millis(handshake_ms);
    opts.addr_grace = Duration::from_millis(grace_ms);
    opts
}

/// Issue 11: a peer that accepts and never says a byte held a crawler thread for the
/// whole 20 s deadline; it now fails at the handshake timeout, as a timeout.
/// A probe that failed with `timeout` at the handshake timeout (within 2 s of it), not at
/// the deadline.
fn assert_timed_out_at_the_handshake(err: &ProbeError, took: Duration, opts: &ProbeOptions) {
    assert_eq!(err.reason(), "timeout", "{err}");
    assert!(took >= opts.handshake_timeout, "failed after {took:?}");
    assert!(
        took < opts.handshake_timeout + Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn silent_peer_fails_at_the_handshake_timeout_not_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let opts = options(300, 250);
    let start = Instant::now();
    let err = probe(listener.local_addr().unwrap(), &opts).unwrap_err();
    assert_timed_out_at_the_handshake(&err, start.elapsed(), &opts);
}

/// The handshake ends with the peer's `verack`, not its `version`: a peer that sends its
/// `version` and nothing more fails at the handshake timeout too.
#[test]
fn peer_without_verack_fails_at_the_handshake_timeout() {
    let script = handshake_prefix_version();
    let mut conn = ScriptedPeer {
        silent_at_end: true,
        ..ScriptedPeer::new(&script)
    };
    let opts = options(300, 250);
    let peer = "127.0.0.1:18444".parse().unwrap();
    let start = Instant::now();
    let deadline = start + opts.deadline;
    let err = converse(&mut conn, peer, &opts, deadline).unwrap_err();
    assert_timed_out_at_the_handshake(&err, start.elapsed(), &opts);
}

/// Issue 11: every answering peer held a crawler thread for 1 s after its `addr`. A peer
/// that answers `getaddr` with 1000 entries and then stays silent ends the probe after the
/// grace, with every entry kept.
#[test]
fn getaddr_answer_ends_the_probe_after_the_grace() {
    let mut script = handshake();
    script.extend(frame(NetworkMessage::Addr(addr_entries(1000))));
    let mut conn = ScriptedPeer {
        silent_at_end: true,
        ..ScriptedPeer::new(&script)
    };
    let opts = options(1000, 300);
    let peer = "127.0.0.1:18444".parse().unwrap();
    let start = Instant::now();
    let info = converse(&mut conn, peer, &opts, start + opts.deadline).unwrap();
    let took = start.elapsed();
    assert_eq!(info.addrs.len(), 1000);
    assert!(
        took >= opts.addr_grace,
        "ended after {took:?}, before the grace"
    );
    assert!(took < opts.addr_grace + Duration::from_secs(1), "{took:?}");
}

/// An answer split over two messages 200 ms apart, within the grace, is collected whole,
/// and the probe still ends long before the deadline.
#[test]
fn split_answer_within_the_grace_is_collected_whole() {
    let mut first = handshake();
    first.extend(frame(NetworkMessage::Addr(
        addr_entries(1000)[..600].to_vec(),
    )));
    let second = frame(NetworkMessage::Addr(addr_entries(1000)[600..].to_vec()));
    let (addr, node) = node_saying(vec![
        (Duration::ZERO, first),
        (Duration::from_millis(200), second),
    ]);
    let opts = options(1000, 1000);
    let start = Instant::now();
    let info = probe(addr, &opts).unwrap();
    let took = start.elapsed();
    let distinct: HashSet<String> = info.addrs.iter().map(|l| l.addr.to_string()).collect();
    assert_eq!(distinct.len(), 1000);
    assert!(took < opts.addr_grace + Duration::from_secs(2), "{took:?}");
    node.join().unwrap();
}

/// The handshake timeout bounds the handshake only: an answer to `getaddr` that comes
/// after it (but before the deadline) is still collected.
#[test]
fn slow_getaddr_answer_is_bounded_by_the_deadline_only() {
    let (addr, node) = node_saying(vec![
        (Duration::ZERO, handshake()),
        (
            Duration::from_millis(600),
            frame(NetworkMessage::Addr(addr_entries(10))),
        ),
    ]);
    let info = probe(addr, &options(300, 100)).unwrap();
    assert_eq!(info.addrs.len(), 10);
    node.join().unwrap();
}

#[test]
fn forbidden_addresses_are_never_dialed() {
    let opts = ProbeOptions::new(magic());
    for a in [
        "0.0.0.0:8333",
        "224.0.0.1:8333",
        "255.255.255.255:8333",
        "127.0.0.1:0",
    ] {
        let err = probe(a.parse().unwrap(), &opts).unwrap_err();
        assert_eq!(err.reason(), "forbidden", "{a}");
    }
}

/// Talks to `script` delivered at most `chunk` bytes per read; returns the result and the
/// peer, with what it was sent, what it did not get to say, and its counts.
fn converse_with(script: &[u8], chunk: usize) -> (Result<PeerInfo, ProbeError>, CountingPeer<'_>) {
    let mut conn = CountingPeer::new(ScriptedPeer {
        chunk,
        ..ScriptedPeer::new(script)
    });
    let peer = "127.0.0.1:18444".parse().unwrap();
    let opts = ProbeOptions::new(magic());
    let result = converse(
        &mut conn,
        peer,
        &opts,
        Instant::now() + Duration::from_secs(5),
    );
    (result, conn)
}

/// Talks to `script` delivered at most `chunk` bytes per read; returns the result, what
/// was sent, and the number of reads and timeout changes.
fn talk_in_chunks(
    script: &[u8],
    chunk: usize,
) -> (Result<PeerInfo, ProbeError>, Vec<u8>, usize, usize) {
    let (result, conn) = converse_with(script, chunk);
    (result, conn.inner.output, conn.reads, conn.timeouts)
}

#[test]
fn framing_does_not_depend_on_how_the_bytes_arrive() {
    // Small messages, a payload larger than the read buffer that is decoded (1000 addr
    // entries, 30 kB) and one that is skipped (an unknown 20 kB message).
    let mut script = handshake();
    script.extend(frame(NetworkMessage::SendHeaders));
    script.extend(frame(NetworkMessage::Ping(5)));
    script.extend(raw_frame("inv", &vec![7u8; 20_000]));
    script.extend(frame(NetworkMessage::Addr(addr_entries(1))));
    script.extend(frame(NetworkMessage::Addr(addr_entries(1000))));
    script.extend(frame(NetworkMessage::Addr(addr_entries(3))));
    let (whole, sent, _, _) = talk_in_chunks(&script, usize::MAX);
    let whole = whole.unwrap();
    assert_eq!(whole.addrs.len(), 1004);
    for chunk in [
        1,
        3,
        23,
        24,
        25,
        1000,
        READ_BUFFER - 1,
        READ_BUFFER,
        READ_BUFFER + 1,
    ] {
        let (result, sent_here, _, _) = talk_in_chunks(&script, chunk);
        assert_eq!(result.unwrap(), whole, "chunks of {chunk} bytes");
        assert_eq!(
            commands(&sent_here),
            commands(&sent),
            "chunks of {chunk} bytes"
        );
    }
    // Cut anywhere, the conversation ends as closed or with what arrived, never a panic.
    for cut in (0..script.len()).step_by(997) {
        let (result, _, _, _) = talk_in_chunks(&script[..cut], 700);
        if let Err(e) = result {
            assert_eq!(e.reason(), "closed", "cut at {cut}");
        }
    }
}

#[test]
fn messages_that_arrive_together_are_read_in_one_call() {
    // A peer's handshake and the five messages after it, all available at once: before the
    // read buffer, each header and each payload was a read of its own (and each read set
    // both timeouts), 2 reads per message.
    let mut script = handshake();
    script.extend(frame(NetworkMessage::SendHeaders));
    script.extend(frame(NetworkMessage::Ping(5)));
    script.extend(frame(NetworkMessage::FeeFilter(1000)));
    script.extend(frame(NetworkMessage::WtxidRelay));
    script.extend(frame(NetworkMessage::Addr(addr_entries(2))));
    let (result, sent, reads, timeouts) = talk_in_chunks(&script, usize::MAX);
    assert_eq!(result.unwrap().addrs.len(), 2);
    let writes = commands(&sent).len();
    // One read takes everything, one more finds the peer closed.
    assert_eq!(reads, 2);
    // One timeout per read and one per write (`version` and `sendaddrv2` go in one write).
    assert_eq!(timeouts, reads + writes - 1);
}

/// A one-shot SOCKS5 proxy on loopback: accepts one client, answers the greeting, reads the
/// CONNECT request and replies `reply`, then (after a success) plays the peer `script`.
/// Returns its address and the request it received.
fn socks_proxy(reply: Vec<u8>, script: Vec<u8>) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut greeting = [0u8; 3];
        s.read_exact(&mut greeting).unwrap();
        s.write_all(&[5, 0]).unwrap();
        let mut request = vec![0u8; 5];
        s.read_exact(&mut request).unwrap();
        let rest = match request[3] {
            1 => 4 + 2 - 1,
            4 => 16 + 2 - 1,
            _ => usize::from(request[4]) + 2,
        };
        let mut tail = vec![0u8; rest];
        s.read_exact(&mut tail).unwrap();
        request.extend(tail);
        s.write_all(&reply).unwrap();
        if reply[1] == 0 {
            s.write_all(&script).unwrap();
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        }
        request
    });
    (addr, handle)
}

#[test]
fn probe_through_a_proxy_sends_the_name_and_converses() {
    let success = vec![5, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    let (proxy, server) = socks_proxy(success, handshake());
    let name = "expyuzz4wqqyqhjn.onion".to_owned();
    let target = crate::socks5::Target::Domain(name.clone(), 8333);
    let mut opts = ProbeOptions::new(magic());
    opts.getaddr = false;
    let info = probe_through(proxy, &target, &opts).unwrap();
    assert_eq!(info.version, 70016);
    let request = server.join().unwrap();
    assert_eq!(&request[..5], &[5, 1, 0, 3, name.len() as u8]);
    assert_eq!(
        &request[5..5 + name.len()],
        name.as_bytes(),
        "the name, unresolved"
    );
}

#[test]
fn the_proxys_failures_and_the_peers_are_told_apart() {
    let target = crate::socks5::Target::Domain("a.onion".to_owned(), 8333);
    let opts = ProbeOptions::new(magic());
    let reply = |code: u8| vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0];
    for (code, reason) in [
        (0x05, "refused"),
        (0x04, "unreachable"),
        (0xf0, "unreachable"),
        (0x01, "proxy"),
    ] {
        let (proxy, server) = socks_proxy(reply(code), Vec::new());
        let err = probe_through(proxy, &target, &opts).unwrap_err();
        assert_eq!(err.reason(), reason, "code {code:#x}: {err}");
        assert_eq!(err.is_proxy_failure(), reason == "proxy");
        server.join().unwrap();
    }
    // Nothing listens: the proxy is down, not the peer.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = probe_through(closed, &target, &opts).unwrap_err();
    assert!(err.is_proxy_failure(), "{err}");
    // A forbidden IP target is refused before the proxy is contacted.
    let forbidden = crate::socks5::Target::Ip("0.0.0.0:8333".parse().unwrap());
    let err = probe_through(closed, &forbidden, &opts).unwrap_err();
    assert_eq!(err.reason(), "forbidden");
}
