//! Tests of the nodes that speak, or claim, BIP324 v2 transport, with the `bip324` crate's
//! initiator as the client, and of the v2 message framing.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bip324::io::{Payload, Protocol, ProtocolError, ProtocolFailureSuggestion};
use bip324::{PacketType, Role};
use bitcoin::consensus::encode;
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};

use super::{Client, MAGIC, PORT, answered, node_of};
use crate::sim::v2::{decode_contents, encode_contents};
use crate::sim::{Behaviour, NodeSpec, Sessions, SimConfig, SimNetwork};

/// A good seed (services 0x409: no P2P_V2), then one node of each v2 kind, then more good.
fn v2_config() -> SimConfig {
    let mut behaviours = vec![
        Behaviour::Good,
        Behaviour::V2,
        Behaviour::V1AdvertisingV2,
        Behaviour::V2Garbage,
    ];
    behaviours.extend([Behaviour::Good; 6]);
    let mut config = SimConfig::new(MAGIC, PORT, &behaviours);
    config.idle_timeout = Duration::from_secs(5);
    config
}

fn start(capture: bool) -> SimNetwork {
    let mut config = v2_config();
    config.capture_v2 = capture;
    SimNetwork::start(config).unwrap()
}

/// A BIP324 client: the crate's initiator over a blocking socket.
struct V2Client {
    protocol: Protocol<TcpStream, TcpStream>,
    /// The socket under the protocol, to set its timeout.
    stream: TcpStream,
    /// Bytes of the packets sent after the handshake.
    sent: usize,
}

impl V2Client {
    fn connect(addr: SocketAddr) -> Result<V2Client, ProtocolError> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let (reader, writer) = (stream.try_clone().unwrap(), stream.try_clone().unwrap());
        let magic = MAGIC.to_bytes();
        let protocol = Protocol::new(magic, Role::Initiator, None, None, reader, writer)?;
        Ok(V2Client {
            protocol,
            stream,
            sent: 0,
        })
    }

    fn send(&mut self, msg: NetworkMessage) {
        let contents = encode_contents(&msg);
        // Length (3), header byte (1), contents, tag (16).
        self.sent += contents.len() + 20;
        self.protocol.write(&Payload::genuine(contents)).unwrap();
    }

    /// Next message, or `None` on EOF, timeout or a failed packet.
    fn recv(&mut self) -> Option<NetworkMessage> {
        loop {
            let packet = self.protocol.read().ok()?;
            if packet.packet_type() == PacketType::Decoy {
                continue;
            }
            let (command, payload) = decode_contents(packet.contents()).expect("a message");
            return Some(as_v1(&command, payload));
        }
    }

    /// Handshakes (`version`, `sendaddrv2`, then `verack` once the node's has come); returns
    /// the node's version and the commands it sent up to its `verack`.
    fn handshake(&mut self) -> (VersionMessage, Vec<&'static str>) {
        self.send(Client::version());
        self.send(NetworkMessage::SendAddrV2);
        let mut version = None;
        let mut commands = Vec::new();
        while let Some(msg) = self.recv() {
            commands.push(msg.cmd());
            match msg {
                NetworkMessage::Version(v) => version = Some(v),
                NetworkMessage::Verack => break,
                _ => {}
            }
        }
        self.send(NetworkMessage::Verack);
        (version.expect("version before verack"), commands)
    }

    /// Answers pings and collects every message until the node is quiet for half a second.
    fn collect(&mut self) -> Vec<NetworkMessage> {
        let quiet = Duration::from_millis(500);
        self.stream.set_read_timeout(Some(quiet)).unwrap();
        let mut msgs = Vec::new();
        while let Some(msg) = self.recv() {
            if let NetworkMessage::Ping(nonce) = msg {
                self.send(NetworkMessage::Pong(nonce));
            }
            msgs.push(msg);
        }
        msgs
    }
}

/// Decodes a v2 message by dressing it as a v1 one.
fn as_v1(command: &str, payload: &[u8]) -> NetworkMessage {
    let mut bytes = MAGIC.to_bytes().to_vec();
    let mut padded = [0u8; 12];
    padded[..command.len()].copy_from_slice(command.as_bytes());
    bytes.extend_from_slice(&padded);
    bytes.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(&sha256d::Hash::hash(payload).to_byte_array()[..4]);
    bytes.extend_from_slice(payload);
    let raw: RawNetworkMessage = encode::deserialize(&bytes).unwrap();
    raw.into_payload()
}

fn is_v1_fallback(result: Result<V2Client, ProtocolError>) -> bool {
    matches!(
        result,
        Err(ProtocolError::Io(_, ProtocolFailureSuggestion::RetryV1))
    )
}

fn has_v2(services: ServiceFlags) -> bool {
    services.has(ServiceFlags::P2P_V2)
}

/// Waits until `done` holds (the node records a session when it ends).
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(5), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn short_ids_are_cores() {
    let id = |msg: NetworkMessage| encode_contents(&msg)[0];
    assert_eq!(id(NetworkMessage::Addr(Vec::new())), 1);
    assert_eq!(id(NetworkMessage::FeeFilter(1000)), 5);
    assert_eq!(id(NetworkMessage::Inv(Vec::new())), 14);
    assert_eq!(id(NetworkMessage::Ping(7)), 18);
    assert_eq!(id(NetworkMessage::Pong(7)), 19);
    assert_eq!(id(NetworkMessage::AddrV2(Vec::new())), 28);
    let pong = encode_contents(&NetworkMessage::Pong(7));
    assert_eq!(pong[1..], 7u64.to_le_bytes());
    for msg in [
        NetworkMessage::Verack,
        NetworkMessage::GetAddr,
        NetworkMessage::SendAddrV2,
        NetworkMessage::WtxidRelay,
        NetworkMessage::SendHeaders,
    ] {
        let contents = encode_contents(&msg);
        assert_eq!(contents.len(), 13, "{msg:?}");
        let (command, payload) = decode_contents(&contents).unwrap();
        assert_eq!((command.as_str(), payload), (msg.cmd(), &[][..]));
    }
    let version = encode_contents(&Client::version());
    assert_eq!(version[..13], *b"\0version\0\0\0\0\0");
    assert_eq!(decode_contents(&[18, 1, 2]).unwrap().0, "ping");
}

#[test]
fn malformed_contents_are_no_message() {
    assert_eq!(decode_contents(&[]), None);
    assert_eq!(decode_contents(&[29]), None);
    assert_eq!(decode_contents(&[200, 1]), None);
    assert_eq!(decode_contents(b"\0version"), None, "short command");
    assert_eq!(
        decode_contents(b"\0ver\0sion\0\0\0\0"),
        None,
        "bytes after NUL"
    );
    assert_eq!(decode_contents(&[0; 13]), None, "empty command");
}

#[test]
fn v2_node_answers_version_and_getaddr_over_v2() {
    let net = start(false);
    let node = node_of(&net, Behaviour::V2);
    let mut client = V2Client::connect(node).unwrap();
    let (version, commands) = client.handshake();
    let wanted = ServiceFlags::NETWORK | ServiceFlags::WITNESS | ServiceFlags::P2P_V2;
    assert!(version.services.has(wanted), "{}", version.services);
    assert_eq!(version.version, 70016);
    assert_eq!(commands, ["version", "wtxidrelay", "sendaddrv2", "verack"]);
    client.send(NetworkMessage::Ping(0x1234));
    client.send(NetworkMessage::GetAddr);
    let msgs = client.collect();
    assert!(msgs.contains(&NetworkMessage::Pong(0x1234)), "{msgs:?}");
    assert!(msgs.contains(&NetworkMessage::SendHeaders));
    assert!(!msgs.iter().any(|m| matches!(m, NetworkMessage::Addr(_))));
    let got: HashSet<SocketAddr> = answered(&msgs).into_iter().collect();
    let listed = &net.config().answer_lists()[1];
    assert!(!listed.is_empty());
    assert!(listed.iter().all(|a| got.contains(a)), "{got:?}");
}

#[test]
fn v2_node_answers_a_v1_client_like_a_good_one() {
    let net = start(false);
    let commands = |addr| {
        let mut client = Client::connect(addr);
        let version = client.handshake(MAGIC, true);
        let msgs = client.getaddr(MAGIC, Duration::from_millis(500));
        let answer = answered(&msgs).len();
        let kinds: Vec<&str> = msgs.iter().map(NetworkMessage::cmd).collect();
        (version, kinds, answer)
    };
    let (good_version, good, _) = commands(net.seed());
    let (version, v2, answer) = commands(node_of(&net, Behaviour::V2));
    assert_eq!(version.version, good_version.version);
    assert!(has_v2(version.services) && !has_v2(good_version.services));
    assert!(answer >= net.config().answer_lists()[1].len());
    // The seed's answer carries poison too; both open and close alike.
    let dedup = |mut kinds: Vec<&'static str>| {
        kinds.dedup();
        kinds
    };
    assert_eq!(dedup(v2), dedup(good));
}

#[test]
fn v1_nodes_advertising_v2_or_not_close_on_a_key() {
    let net = start(false);
    let liar = node_of(&net, Behaviour::V1AdvertisingV2);
    assert!(has_v2(net.nodes()[2].services));
    let version = Client::connect(liar).handshake(MAGIC, true);
    assert!(has_v2(version.services), "{}", version.services);
    assert!(is_v1_fallback(V2Client::connect(liar)));
    assert!(is_v1_fallback(V2Client::connect(net.seed())));
    // Still good in v1 after that.
    let mut client = Client::connect(liar);
    client.handshake(MAGIC, false);
    let msgs = client.getaddr(MAGIC, Duration::from_millis(500));
    assert!(!answered(&msgs).is_empty());
}

#[test]
fn v2_garbage_node_never_completes_a_handshake() {
    let net = start(false);
    let node = node_of(&net, Behaviour::V2Garbage);
    assert!(has_v2(net.nodes()[3].services));
    // 1st connection: a key, then garbage without a terminator.
    let first = V2Client::connect(node);
    assert!(
        first.is_err() && !is_v1_fallback(first),
        "garbage is no v1 hint"
    );
    // 2nd: half a key, then the end.
    assert!(is_v1_fallback(V2Client::connect(node)));
    // 3rd, in v1: random bytes.
    let mut client = Client::connect(node);
    client.send(MAGIC, Client::version());
    assert!(client.try_recv().is_none());
    let counted = Sessions {
        v1: 1,
        v2_attempts: 2,
    };
    wait_for("counted", || net.sessions(node) == counted);
}

#[test]
fn captures_hold_the_clients_encrypted_bytes() {
    let net = start(true);
    let node = node_of(&net, Behaviour::V2);
    let mut client = V2Client::connect(node).unwrap();
    client.handshake();
    client.send(NetworkMessage::GetAddr);
    let msgs = client.collect();
    assert!(answered(&msgs).len() > 1);
    let sent = client.sent;
    drop(client);
    // A v1 session keeps nothing.
    Client::connect(node).handshake(MAGIC, true);
    wait_for("the v2 session ends", || net.v2_captures().len() == 1);
    let captures = net.v2_captures();
    assert_eq!(captures[0].len(), sent, "every byte after the handshake");
    for plain in [&b"version"[..], b"getaddr", b"verack", b"sendaddrv2"] {
        assert!(!captures[0].windows(plain.len()).any(|w| w == plain));
    }
    assert!(start(false).v2_captures().is_empty());
}

#[test]
fn sessions_count_each_transport() {
    let net = start(false);
    let good = net.seed();
    assert!(!has_v2(net.nodes()[0].services));
    let v2 = node_of(&net, Behaviour::V2);
    Client::connect(good).handshake(MAGIC, true);
    Client::connect(v2).handshake(MAGIC, true);
    V2Client::connect(v2).unwrap().handshake();
    V2Client::connect(v2).unwrap().handshake();
    let _ = V2Client::connect(node_of(&net, Behaviour::V1AdvertisingV2));
    wait_for("counted", || net.sessions(v2).v2_attempts == 2);
    assert_eq!(
        net.sessions(good),
        Sessions {
            v1: 1,
            v2_attempts: 0
        }
    );
    assert_eq!(
        net.sessions(v2),
        Sessions {
            v1: 1,
            v2_attempts: 2
        }
    );
    let liar = node_of(&net, Behaviour::V1AdvertisingV2);
    assert_eq!(
        net.sessions(liar),
        Sessions {
            v1: 0,
            v2_attempts: 1
        }
    );
    let unknown = SocketAddr::from(([127, 0, 0, 1], 1));
    assert_eq!(net.sessions(unknown), Sessions::default());
    // A v1 client of another network is no v2 attempt.
    let mut foreign = Client::connect(v2);
    foreign.send(Magic::TESTNET4, Client::version());
    assert!(foreign.try_recv().is_none());
    assert_eq!(net.sessions(v2).v1, 2);
}

#[test]
fn speak_v2_turns_a_share_of_the_good_nodes_but_not_the_seed() {
    let mut config = SimConfig::with_fractions(101, 0.1, 0.0, Magic::REGTEST, 18444);
    let good = config
        .nodes
        .iter()
        .filter(|n| n.behaviour == Behaviour::Good)
        .count();
    config.speak_v2(0.5);
    let v2: Vec<&NodeSpec> = config
        .nodes
        .iter()
        .filter(|n| n.behaviour == Behaviour::V2)
        .collect();
    assert_eq!(v2.len(), ((good - 1) as f64 * 0.5).round() as usize);
    assert!(v2.iter().all(|n| n.services.has(ServiceFlags::P2P_V2)));
    assert_eq!(
        config.nodes[0].behaviour,
        Behaviour::Good,
        "the seed stays v1"
    );
}
