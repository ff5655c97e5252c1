//! The probe over v2: against the `bip324` crate's own responder on loopback sockets, and
//! against scripted responders (`testkit::v2`) for what a socket cannot time precisely.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bip324::io::Protocol;
use bip324::{PacketType, Role};
use bitcoin::Network;
use bitcoin::consensus::encode;
use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::{Magic, ServiceFlags};

use super::super::{PeerInfo, ProbeError, ProbeOptions, READ_BUFFER, Transport, probe};
use super::{KEY_LEN, LENGTH_LEN, MAX_CONTENTS, MAX_GARBAGE};
use crate::testkit::peer_version;
use crate::testkit::v2::{
    V2Peer, V2Script, V2Stage, check_v2_conversation, v2_contents, v2_script,
};

fn magic() -> Magic {
    Magic::from(Network::Regtest)
}

fn v2_options(handshake_ms: u64) -> ProbeOptions {
    let mut opts = ProbeOptions::new(magic());
    opts.transport = Transport::V2;
    opts.handshake_timeout = Duration::from_millis(handshake_ms);
    opts.addr_grace = Duration::from_millis(100);
    opts
}

fn addrv2(n: u8) -> Vec<u8> {
    let entries: Vec<AddrV2Message> = (0..n)
        .map(|i| AddrV2Message {
            time: 1_700_000_000,
            services: ServiceFlags::NETWORK,
            addr: AddrV2::Ipv4([127, 2, 0, i].into()),
            port: 18444,
        })
        .collect();
    encode::serialize(&entries)
}

/// Bytes read from a socket, kept for the test to look at.
struct Tap {
    inner: TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// A v2 node on loopback driven by the `bip324` crate's responder: does the handshake,
/// then runs `script` with the session; returns everything it received.
fn v2_node<F>(script: F) -> (SocketAddr, JoinHandle<Vec<u8>>)
where
    F: FnOnce(&mut Protocol<Tap, TcpStream>) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let node = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tap = Tap {
            inner: s.try_clone().unwrap(),
            seen: Arc::clone(&seen),
        };
        let mut session =
            Protocol::new(magic().to_bytes(), Role::Responder, None, None, tap, s).unwrap();
        script(&mut session);
        // Hold the connection until the prober closes it.
        while session.read().is_ok() {}
        seen.lock().unwrap().clone()
    });
    (addr, node)
}

/// The next genuine message the probe sent, as contents.
fn next_message(session: &mut Protocol<Tap, TcpStream>) -> Vec<u8> {
    loop {
        let payload = session.read().unwrap();
        if payload.packet_type() == PacketType::Genuine {
            return payload.contents().to_vec();
        }
    }
}

fn say(session: &mut Protocol<Tap, TcpStream>, command: &str, payload: &[u8]) {
    let contents = v2_contents(command, payload, false);
    session
        .write(&bip324::io::Payload::genuine(contents))
        .unwrap();
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn v2_probe_collects_addresses_and_sends_nothing_in_plaintext() {
    let (addr, node) = v2_node(|session| {
        assert_eq!(next_message(session)[..8], *b"\0version");
        assert_eq!(next_message(session), v2_contents("sendaddrv2", &[], false));
        say(session, "version", &encode::serialize(&peer_version(70016)));
        say(session, "verack", &[]);
        assert_eq!(next_message(session), v2_contents("verack", &[], false));
        assert_eq!(next_message(session), v2_contents("getaddr", &[], false));
        say(session, "addrv2", &addrv2(5));
    });
    let info = probe(addr, &v2_options(2000)).unwrap();
    assert_eq!(info.transport, Transport::V2);
    assert_eq!(info.version, 70016);
    assert_eq!(info.user_agent, "/Satoshi:27.0.0/");
    assert!(info.asked_getaddr);
    assert_eq!(info.addrs.len(), 5);
    assert_eq!(info.addrs[4].addr.to_string(), "127.2.0.4:18444");
    let received = node.join().unwrap();
    assert!(received.len() > KEY_LEN + 100, "{} bytes", received.len());
    for word in [
        &b"version"[..],
        b"verack",
        b"getaddr",
        b"sendaddrv2",
        b"dnsseeder",
    ] {
        assert!(
            !contains(&received, word),
            "'{}' in plaintext",
            String::from_utf8_lossy(word)
        );
    }
}

/// A v1-only node reads our 64-byte key, finds no magic in it, and closes: the probe
/// fails as `v2-handshake` (not a violation), for the crawler to retry over v1.
#[test]
fn v1_only_node_fails_as_v2_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let node = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut key = [0u8; KEY_LEN];
        s.read_exact(&mut key).unwrap();
        key
    });
    let start = Instant::now();
    let err = probe(addr, &v2_options(5000)).unwrap_err();
    assert_eq!(err.reason(), "v2-handshake", "{err}");
    assert!(!err.is_violation());
    assert!(start.elapsed() < Duration::from_secs(2));
    let key = node.join().unwrap();
    assert_ne!(key[..4], magic().to_bytes());
}

/// A node that accepts and says nothing fails at the handshake timeout, as a timeout (a
/// silent node is silent over v1 too).
#[test]
fn silent_node_times_out_at_the_handshake_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let opts = v2_options(300);
    let start = Instant::now();
    let err = probe(listener.local_addr().unwrap(), &opts).unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.reason(), "timeout", "{err}");
    assert!(took >= opts.handshake_timeout, "{took:?}");
    assert!(
        took < opts.handshake_timeout + Duration::from_secs(2),
        "{took:?}"
    );
}

/// A packet whose length announces more than the probe reads ends the probe as `oversize`
/// as soon as the length is in: the node sends the length field and a few bytes, never
/// the packet, and the probe does not wait for it.
#[test]
fn oversize_packet_fails_on_its_length_over_a_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let node = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut writer = s.try_clone().unwrap();
        let (_, mut outbound, _) = bip324::io::handshake(
            magic().to_bytes(),
            Role::Responder,
            None,
            None,
            s,
            &mut writer,
        )
        .unwrap();
        let mut packet = outbound.encrypt_to_vec(&[18], PacketType::Genuine, None);
        let lie = (MAX_CONTENTS as u32 + 1).to_le_bytes();
        for i in 0..LENGTH_LEN {
            packet[i] ^= [1, 0, 0][i] ^ lie[i];
        }
        writer.write_all(&packet[..LENGTH_LEN + 2]).unwrap();
        let mut sink = Vec::new();
        let _ = writer.read_to_end(&mut sink);
    });
    let start = Instant::now();
    let err = probe(addr, &v2_options(5000)).unwrap_err();
    assert_eq!(err.reason(), "oversize", "{err}");
    assert!(err.is_violation());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "waited for the packet"
    );
    node.join().unwrap();
}

/// The peer's side: its handshake (garbage and a decoy in it if `with_garbage`), its
/// `version` and `verack`, then `rest` built with its ciphers.
fn scripted(with_garbage: bool, rest: impl FnOnce(&mut V2Peer) -> Vec<u8>) -> V2Script {
    let mut script = v2_script(V2Stage::RecordsAfterHandshake, with_garbage, &[]);
    let more = rest(&mut script.peer);
    script.bytes.extend(more);
    script
}

fn talk(script: &V2Script, chunk: usize) -> Result<PeerInfo, ProbeError> {
    check_v2_conversation(script, chunk, true)
}

#[test]
fn decoys_pings_and_split_answers_read_alike_however_the_bytes_arrive() {
    let script = scripted(true, |peer| {
        let mut out = peer.packet(&[7; 100], true);
        out.extend(peer.message(&NetworkMessage::Ping(5)));
        out.extend(peer.packet(&v2_contents("ping", &6u64.to_le_bytes(), true), false));
        out.extend(peer.packet(&v2_contents("addrv2", &addrv2(1), false), false));
        out.extend(peer.packet(&[29, 1, 2, 3], false));
        out.extend(peer.packet(&v2_contents("addrv2", &addrv2(200), false), false));
        out.extend(peer.packet(&v2_contents("inv", &[0], false), true));
        out.extend(peer.packet(&v2_contents("addrv2", &addrv2(3), false), false));
        out
    });
    let whole = talk(&script, usize::MAX).unwrap();
    assert_eq!(whole.addrs.len(), 204);
    assert_eq!(whole.transport, Transport::V2);
    for chunk in [1, 2, 3, 17, 64, 1000, READ_BUFFER - 1, READ_BUFFER + 1] {
        assert_eq!(talk(&script, chunk).unwrap(), whole, "chunks of {chunk}");
    }
}

/// Garbage up to BIP324's limit is read; one byte more without the terminator is refused
/// as `v2-handshake`.
#[test]
fn garbage_up_to_the_limit_and_no_further() {
    let magic = magic();
    let mut script = v2_script(V2Stage::RecordsAfterHandshake, false, &[]);
    let mut peer = V2Peer::new(magic, &[0x42; MAX_GARBAGE], &[]);
    script.bytes = peer.preamble.clone();
    script
        .bytes
        .extend(peer.message(&NetworkMessage::Version(peer_version(70016))));
    script.bytes.extend(peer.message(&NetworkMessage::Verack));
    script.peer = peer;
    assert_eq!(talk(&script, 1000).unwrap().version, 70016);

    let endless = v2_script(V2Stage::AfterKey, false, &[0x42; MAX_GARBAGE + 16]);
    let err = talk(&endless, usize::MAX).unwrap_err();
    assert_eq!(err.reason(), "v2-handshake", "{err}");
}

#[test]
fn peers_that_do_not_speak_v2_fail_as_v2_handshake() {
    // Closes at once; closes after its key; answers with a v1 message.
    let mut v1 = magic().to_bytes().to_vec();
    v1.extend([0u8; 80]);
    let mut half = v2_script(V2Stage::AfterKey, false, &[]);
    half.bytes.truncate(KEY_LEN - 1);
    for (bytes, what) in [
        (Vec::new(), "nothing"),
        (half.bytes.clone(), "half a key"),
        (v2_script(V2Stage::AfterKey, false, &[]).bytes, "a key"),
        (v1, "v1"),
    ] {
        let script = V2Script {
            bytes,
            ..half.clone()
        };
        let err = talk(&script, usize::MAX).unwrap_err();
        assert_eq!(err.reason(), "v2-handshake", "{what}: {err}");
        assert!(!err.is_violation());
    }
}

/// What a broken peer says, made with its ciphers.
type Broken = dyn Fn(&mut V2Peer) -> Vec<u8>;

/// After the terminator the peer has proven it speaks v2: a tampered packet, an empty
/// message or a malformed type is a protocol violation, a close is a close.
#[test]
fn a_v2_peer_that_breaks_the_protocol_is_a_violation() {
    let tampered = |peer: &mut V2Peer| {
        let mut p = peer.message(&NetworkMessage::Verack);
        p[LENGTH_LEN + 1] ^= 1;
        p
    };
    let empty = |peer: &mut V2Peer| peer.packet(&[], false);
    let malformed = |peer: &mut V2Peer| peer.packet(b"\0ver ack\0\0\0\0\0", false);
    let cases: [(&Broken, &str); 3] = [
        (&tampered, "tampered"),
        (&empty, "empty"),
        (&malformed, "malformed"),
    ];
    for (broken, what) in cases {
        let mut script = v2_script(V2Stage::Records, false, &[]);
        let version = NetworkMessage::Version(peer_version(70016));
        let version = script.peer.message(&version);
        script.bytes.extend(version);
        let packet = broken(&mut script.peer);
        script.bytes.extend(packet);
        let err = talk(&script, usize::MAX).unwrap_err();
        assert_eq!(err.reason(), "protocol", "{what}: {err}");
        assert!(err.is_violation());
    }
    let mut closed = v2_script(V2Stage::Records, false, &[]);
    let version = closed
        .peer
        .message(&NetworkMessage::Version(peer_version(70016)));
    closed.bytes.extend(&version[..version.len() - 1]);
    assert_eq!(talk(&closed, usize::MAX).unwrap_err().reason(), "closed");
}

/// A length over the cap ends the probe on the length: no buffer of that size is given to
/// a read, and at most one read buffer past the length field is taken, though the peer
/// has the whole packet ready.
#[test]
fn oversize_length_is_refused_before_the_packet_is_read() {
    for announced in [MAX_CONTENTS as u32 + 1, 0xff_ffff] {
        let mut script = v2_script(V2Stage::Records, false, &[]);
        let at = script.bytes.len();
        let contents = vec![0u8; MAX_CONTENTS + 1];
        let packet = script.peer.lying_packet(&contents, announced);
        script.bytes.extend(packet);
        script.first_lie = Some(at);
        let err = talk(&script, usize::MAX).unwrap_err();
        assert_eq!(err.reason(), "oversize", "{err}");
    }
    // The largest packet the probe accepts is read and decoded.
    let script = scripted(false, |peer| {
        let mut contents = v2_contents("inv", &[], false);
        contents.resize(MAX_CONTENTS, 0);
        let mut out = peer.packet(&contents, false);
        out.extend(peer.packet(&v2_contents("addrv2", &addrv2(2), false), false));
        out
    });
    assert_eq!(talk(&script, usize::MAX).unwrap().addrs.len(), 2);
}

#[test]
fn transport_names() {
    for t in [Transport::V1, Transport::V2] {
        assert_eq!(t.as_str().parse::<Transport>().unwrap(), t);
        assert_eq!(t.to_string(), t.as_str());
    }
    assert_eq!(Transport::default(), Transport::V1);
    assert_eq!(ProbeOptions::new(magic()).transport, Transport::V1);
    let err = "v3".parse::<Transport>().unwrap_err();
    assert!(err.to_string().contains("v1 or v2"), "{err}");
}
