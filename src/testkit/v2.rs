//! A BIP324 responder in memory, for the probe's v2 transport, and the checks the unit
//! tests, the property tests ("v2 receive path") and the `p2p_v2_receive` fuzz target
//! share.
//!
//! The probe's ephemeral key is fixed ([`PROBE_SEED`], through `p2p::converse_seeded`) and
//! so is the responder's, so the whole handshake is known in advance: a [`V2Peer`] holds the
//! responder's side up to its version packet and the ciphers after it, and a script is that
//! preamble followed by the packets it encrypts, or by any bytes at all.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bip324::{
    FillBytes, GarbageResult, Handshake, InboundCipher, Initialized, OutboundCipher, PacketType,
    ReceivedKey, Role, VersionResult,
};
use bitcoin::Network;
use bitcoin::consensus::encode;
use bitcoin::p2p::Magic;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::secp256k1::Secp256k1;

use super::{CountingPeer, ScriptedPeer, peer_version};
use crate::p2p::v2::{KEY_LEN, LENGTH_LEN, MAX_CONTENTS, PACKET_OVERHEAD};
use crate::p2p::{
    MAX_DECODED_PAYLOAD, PeerInfo, ProbeError, ProbeOptions, READ_BUFFER, Transport,
    converse_seeded,
};

/// The probe's ephemeral key in every scripted v2 conversation.
pub const PROBE_SEED: [u8; 32] = [0x5e; 32];
const PEER_SEED: [u8; 32] = [0xa7; 32];

/// The short IDs the scripts use (their own table: it must not agree with the probe's by
/// construction).
const SHORT: [(&str, u8); 10] = [
    ("addr", 1),
    ("block", 2),
    ("feefilter", 5),
    ("headers", 13),
    ("inv", 14),
    ("ping", 18),
    ("pong", 19),
    ("sendcmpct", 20),
    ("tx", 21),
    ("addrv2", 28),
];

/// The contents of a v2 packet carrying `command`: its short ID if it has one among the
/// few above, else the long type (0, then the command padded to 12 bytes), then `payload`.
pub fn v2_contents(command: &str, payload: &[u8], long: bool) -> Vec<u8> {
    let mut out = match SHORT.iter().find(|(name, _)| *name == command) {
        Some((_, id)) if !long => vec![*id],
        _ => {
            let mut t = vec![0u8; 13];
            t[1..1 + command.len()].copy_from_slice(command.as_bytes());
            t
        }
    };
    out.extend_from_slice(payload);
    out
}

struct Fixed([u8; 32]);

impl FillBytes for Fixed {
    fn fill_bytes(&mut self, dest: &mut [u8; 32]) {
        *dest = self.0;
    }
}

fn party(magic: Magic, role: Role, seed: [u8; 32]) -> Handshake<Initialized> {
    let curve = Secp256k1::signing_only();
    Handshake::new_with_rng(magic.to_bytes(), role, &mut Fixed(seed), &curve)
        .expect("a fixed seed is a valid key")
}

/// The responder's side of a completed handshake with the probe's fixed key.
#[derive(Clone)]
pub struct V2Peer {
    /// What the responder says before its first message: its key, garbage, terminator,
    /// decoys and version packet.
    pub preamble: Vec<u8>,
    /// What the probe sends before its first message: its key, terminator and version
    /// packet.
    pub probe_handshake: Vec<u8>,
    outbound: OutboundCipher,
    inbound: InboundCipher,
}

impl std::fmt::Debug for V2Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V2Peer")
            .field("preamble", &self.preamble.len())
            .finish_non_exhaustive()
    }
}

impl V2Peer {
    /// Runs both sides of the handshake in memory: the probe's with [`PROBE_SEED`] and no
    /// garbage (as the probe does), the responder's with `garbage` and `decoys`.
    pub fn new(magic: Magic, garbage: &[u8], decoys: &[&[u8]]) -> V2Peer {
        let mut probe_handshake = vec![0u8; KEY_LEN];
        let probe = party(magic, Role::Initiator, PROBE_SEED);
        let probe = probe.send_key(None, &mut probe_handshake).expect("room");
        let mut preamble = vec![0u8; KEY_LEN + garbage.len()];
        let peer = party(magic, Role::Responder, PEER_SEED);
        let peer = peer.send_key(Some(garbage), &mut preamble).expect("room");
        let key: [u8; KEY_LEN] = probe_handshake[..].try_into().expect("a key");
        let peer = peer.receive_key(key).expect("a v2 key");
        let peer_key: [u8; KEY_LEN] = preamble[..KEY_LEN].try_into().expect("a key");
        let probe = probe.receive_key(peer_key).expect("a v2 key");
        let mut version =
            vec![0u8; Handshake::<ReceivedKey<'static>>::send_version_len(Some(decoys))];
        let peer = peer.send_version(&mut version, Some(decoys)).expect("room");
        preamble.extend(version);
        let mut version = vec![0u8; Handshake::<ReceivedKey<'static>>::send_version_len(None)];
        probe.send_version(&mut version, None).expect("room");
        probe_handshake.extend(&version);
        let (inbound, outbound) = receive_probe_version(peer, &version);
        V2Peer {
            preamble,
            probe_handshake,
            outbound,
            inbound,
        }
    }

    /// The scripts' peer on regtest, with 3 bytes of garbage and a decoy in its handshake
    /// or none, made once.
    pub fn cached(with_garbage: bool) -> V2Peer {
        static PEERS: OnceLock<[V2Peer; 2]> = OnceLock::new();
        let peers = PEERS.get_or_init(|| {
            let magic = Magic::from(Network::Regtest);
            [
                V2Peer::new(magic, &[], &[]),
                V2Peer::new(magic, &[1, 2, 3], &[&[9; 40]]),
            ]
        });
        peers[usize::from(with_garbage)].clone()
    }

    /// A packet of `contents`, a decoy if `decoy`.
    pub fn packet(&mut self, contents: &[u8], decoy: bool) -> Vec<u8> {
        let kind = if decoy {
            PacketType::Decoy
        } else {
            PacketType::Genuine
        };
        self.outbound.encrypt_to_vec(contents, kind, None)
    }

    /// A genuine packet of `contents` whose length field announces `announced` bytes of
    /// contents (the length is a stream cipher's output: flipping bits of the ciphertext
    /// flips the same bits of the plaintext).
    pub fn lying_packet(&mut self, contents: &[u8], announced: u32) -> Vec<u8> {
        let mut packet = self.packet(contents, false);
        let real = (contents.len() as u32).to_le_bytes();
        let lie = announced.to_le_bytes();
        for i in 0..LENGTH_LEN {
            packet[i] ^= real[i] ^ lie[i];
        }
        packet
    }

    /// A packet carrying `msg` (long type unless its command has a short ID).
    pub fn message(&mut self, msg: &NetworkMessage) -> Vec<u8> {
        let contents = v2_contents(msg.cmd(), &encode::serialize(msg), false);
        self.packet(&contents, false)
    }

    /// Decrypts what the probe sent after its handshake: each message's type byte(s) and
    /// payload, as `(contents)`. Panics on a packet that does not decrypt (plaintext, or
    /// a broken cipher state).
    pub fn read_sent(&mut self, mut sent: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !sent.is_empty() {
            let length: [u8; LENGTH_LEN] = sent[..LENGTH_LEN].try_into().expect("a length");
            let len = self.inbound.decrypt_packet_len(length);
            let end = LENGTH_LEN + len;
            let (_, plain) = self
                .inbound
                .decrypt_to_vec(&sent[LENGTH_LEN..end], None)
                .expect("what the probe sent decrypts");
            out.push(plain[1..].to_vec());
            sent = &sent[end..];
        }
        out
    }
}

/// The responder's side of reading the probe's terminator and version packet.
fn receive_probe_version(
    peer: Handshake<bip324::SentVersion>,
    sent: &[u8],
) -> (InboundCipher, OutboundCipher) {
    let Ok(GarbageResult::FoundGarbage {
        handshake,
        consumed_bytes,
    }) = peer.receive_garbage(sent)
    else {
        panic!("the probe's terminator")
    };
    let mut handshake = handshake;
    let rest = &sent[consumed_bytes..];
    let length: [u8; LENGTH_LEN] = rest[..LENGTH_LEN].try_into().expect("a length");
    let len = handshake.decrypt_packet_len(length).expect("a length");
    let mut packet = rest[LENGTH_LEN..LENGTH_LEN + len].to_vec();
    match handshake.receive_version(&mut packet) {
        Ok(VersionResult::Complete { cipher }) => cipher.into_split(),
        _ => panic!("the probe's version packet"),
    }
}

/// Commands a record can name; the decoded ones first.
const COMMANDS: [&str; 16] = [
    "version",
    "verack",
    "ping",
    "addr",
    "addrv2",
    "sendaddrv2",
    "sendheaders",
    "sendcmpct",
    "feefilter",
    "wtxidrelay",
    "inv",
    "block",
    "pong",
    "getaddr",
    "",
    "headers",
];

/// A peer's side of a v2 conversation, and where in it the first packet whose length lies
/// over the cap starts (the probe must stop there).
#[derive(Debug, Clone)]
pub struct V2Script {
    pub bytes: Vec<u8>,
    pub first_lie: Option<usize>,
    /// The peer, its ciphers where the script leaves them (to read what the probe sent).
    pub peer: V2Peer,
}

/// Where the fuzzed bytes go in a v2 script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Stage {
    /// After the peer's key: as its garbage (no terminator can be guessed).
    AfterKey,
    /// After the peer's version packet: as the encrypted stream.
    AfterVersion,
    /// After the peer's version packet: as records, encrypted into packets.
    Records,
    /// After the peer's `version` and `verack` messages: as records.
    RecordsAfterHandshake,
}

impl V2Stage {
    pub fn from_bits(bits: u8) -> V2Stage {
        [
            V2Stage::AfterKey,
            V2Stage::AfterVersion,
            V2Stage::Records,
            V2Stage::RecordsAfterHandshake,
        ][usize::from(bits % 4)]
    }
}

/// Builds a script: the peer's handshake (with garbage and a decoy if `with_garbage`), then
/// `data` as `stage` says.
pub fn v2_script(stage: V2Stage, with_garbage: bool, data: &[u8]) -> V2Script {
    let mut peer = V2Peer::cached(with_garbage);
    let mut bytes = match stage {
        V2Stage::AfterKey => peer.preamble[..KEY_LEN].to_vec(),
        _ => peer.preamble.clone(),
    };
    if stage == V2Stage::RecordsAfterHandshake {
        bytes.extend(peer.message(&NetworkMessage::Version(peer_version(70016))));
        bytes.extend(peer.message(&NetworkMessage::Verack));
    }
    let mut first_lie = None;
    match stage {
        V2Stage::AfterKey | V2Stage::AfterVersion => bytes.extend_from_slice(data),
        _ => records(&mut peer, data, &mut bytes, &mut first_lie),
    }
    V2Script {
        bytes,
        first_lie,
        peer,
    }
}

/// Appends the packets `data` describes: records `[command][flags][len u16 LE][payload]`.
/// Record flags: bit 0 a decoy, bit 1 the long type for a command with a short ID, bit 2
/// the length field lies over the cap (by `flags >> 5` × 100,000 bytes more), bit 3 a
/// spoiled tag, bit 4 the payload is the whole contents (type bytes included).
fn records(peer: &mut V2Peer, mut data: &[u8], out: &mut Vec<u8>, first_lie: &mut Option<usize>) {
    while data.len() >= 4 {
        let command = COMMANDS[usize::from(data[0]) % COMMANDS.len()];
        let flags = data[1];
        let len = usize::from(u16::from_le_bytes([data[2], data[3]])).min(data.len() - 4);
        let payload = &data[4..4 + len];
        let contents = if flags & 16 != 0 {
            payload.to_vec()
        } else {
            v2_contents(command, payload, flags & 2 != 0)
        };
        let packet = if flags & 4 != 0 {
            first_lie.get_or_insert(out.len());
            let over = MAX_CONTENTS as u32 + 1 + u32::from(flags >> 5) * 100_000;
            peer.lying_packet(&contents, over)
        } else {
            peer.packet(&contents, flags & 1 != 0)
        };
        let spoiled = out.len() + packet.len() - 1;
        out.extend(packet);
        if flags & 8 != 0 {
            out[spoiled] ^= 1;
        }
        data = &data[4 + len..];
    }
    out.extend_from_slice(data);
}

/// Runs the probe's v2 conversation (with [`PROBE_SEED`]) against `script`, at most `chunk`
/// bytes per read, then the peer closes; checks that:
/// - it fails only as closed, v2-handshake, oversize or protocol (never a timeout: the
///   deadlines are a minute away), or succeeds over v2 within the caps;
/// - no read is given a buffer larger than the read buffer or the largest packet the probe
///   accepts (a packet's buffer is never sized by a length over the cap);
/// - it stops at the first packet whose length lies over the cap, having read at most one
///   read buffer past its length field;
/// - everything it sent after its key is encrypted: its handshake as expected, then
///   packets the peer decrypts, starting with `version`, `sendaddrv2`.
///
/// # Panics
/// When one of these breaks.
pub fn check_v2_conversation(
    script: &V2Script,
    chunk: usize,
    getaddr: bool,
) -> Result<PeerInfo, ProbeError> {
    let mut conn = CountingPeer::new(ScriptedPeer {
        chunk,
        ..ScriptedPeer::new(&script.bytes)
    });
    let mut opts = ProbeOptions::new(Magic::from(Network::Regtest));
    opts.transport = Transport::V2;
    opts.getaddr = getaddr;
    opts.max_addrs = 1500;
    let peer: SocketAddr = "127.0.0.1:18444".parse().expect("an address");
    let later = Instant::now() + Duration::from_secs(60);
    let result = converse_seeded(&mut conn, peer, &opts, later, PROBE_SEED);
    check_outcome(&result, &opts);
    let largest = READ_BUFFER.max(MAX_CONTENTS + PACKET_OVERHEAD);
    assert!(
        conn.largest_read <= largest,
        "a read of {}",
        conn.largest_read
    );
    let read = script.bytes.len() - conn.inner.input.len();
    if let (Some(at), Err(ProbeError::Oversize { .. })) = (script.first_lie, &result) {
        assert!(
            read <= at + LENGTH_LEN + READ_BUFFER,
            "read {read}, lie at {at}"
        );
    }
    check_sent(&mut script.peer.clone(), &conn.inner.output);
    result
}

fn check_outcome(result: &Result<PeerInfo, ProbeError>, opts: &ProbeOptions) {
    match result {
        Ok(info) => {
            assert_eq!(info.transport, Transport::V2);
            assert!(info.addrs.len() <= opts.max_addrs);
            assert!(info.user_agent.chars().count() <= 256);
            assert!(!info.user_agent.chars().any(char::is_control));
            assert!(info.asked_getaddr <= opts.getaddr);
        }
        Err(e) => assert!(
            matches!(
                e.reason(),
                "closed" | "v2-handshake" | "oversize" | "protocol"
            ),
            "{e}"
        ),
    }
    if let Err(ProbeError::Oversize { length, .. }) = result {
        // A packet over the cap, or an address message of over 1000 entries.
        assert!(*length as usize > MAX_CONTENTS || *length <= MAX_DECODED_PAYLOAD);
    }
}

/// Checks what the probe sent: a prefix of its expected handshake, then packets the peer
/// decrypts, starting with `version`, `sendaddrv2`.
fn check_sent(peer: &mut V2Peer, sent: &[u8]) {
    let shake = &peer.probe_handshake;
    let n = sent.len().min(shake.len());
    assert_eq!(sent[..n], shake[..n], "the probe's handshake");
    if sent.len() <= shake.len() {
        return;
    }
    let messages = peer.read_sent(&sent[shake.len()..]);
    assert!(messages.len() >= 2, "{messages:?}");
    assert_eq!(messages[0][..8], *b"\0version");
    assert_eq!(messages[1], v2_contents("sendaddrv2", &[], false));
}

/// Bytes per read a fuzz input can pick.
pub const V2_CHUNKS: [usize; 8] = [1, 2, 3, 7, 64, 1000, 8192, usize::MAX];

/// The whole check of one fuzz input: byte 0 holds flags, the rest goes into the script.
/// Bits 0..2: the [`V2Stage`]; bits 2..5: bytes per read (from [`V2_CHUNKS`]); bit 5: no
/// `getaddr`; bit 6: the peer's handshake has garbage and a decoy. Besides the checks of
/// [`check_v2_conversation`]: bytes that are not packets of the session (the raw stages)
/// end the conversation with an error.
///
/// # Panics
/// When a check fails.
pub fn fuzz_v2(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let stage = V2Stage::from_bits(flags);
    let script = v2_script(stage, flags & 64 != 0, rest);
    let chunk = V2_CHUNKS[usize::from(flags >> 2) % V2_CHUNKS.len()];
    let result = check_v2_conversation(&script, chunk, flags & 32 == 0);
    if matches!(stage, V2Stage::AfterKey | V2Stage::AfterVersion) {
        assert!(
            result.is_err(),
            "bytes outside the session completed a handshake"
        );
    }
}
