//! What a hostile peer says, through the probe's whole conversation (`p2p::converse` over
//! an in-memory `Conn`), and through `parse_header` / `decode_payload` directly.
//!
//! Input layout: byte 0 holds flags, the rest is the peer's side of the conversation.
//! - bit 0: the rest is a list of records that the harness frames with the right magic,
//!   length and checksum (so payload decoders are reached): `[command][flags][len u16 LE]
//!   [payload]`, where record flag bit 0 spoils the checksum, bit 1 the magic, and bits
//!   2..8 make the header announce that many bytes more than the payload has. Otherwise
//!   the rest is sent as it is.
//! - bit 1: a valid `version` + `verack` is said first, so address collection is reached.
//! - bit 2: the probe does not send `getaddr`.
//! - bits 3..6: how many bytes one read returns at most (1 to unlimited).
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::p2p::Magic;
use dnsseeder::p2p::{
    Header, MAX_ADDR_PER_MESSAGE, MAX_PAYLOAD, Message, ProbeOptions, converse, decode_payload,
    parse_header,
};
use dnsseeder::testkit::{ScriptedPeer, peer_handshake, raw_frame};
use libfuzzer_sys::fuzz_target;

const HEADER_LEN: usize = 24;

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
    "reject",
];

const CHUNKS: [usize; 8] = [1, 2, 3, 7, 24, 100, 4096, usize::MAX];

fn magic() -> Magic {
    Magic::from(Network::Regtest)
}

/// A frame of `command` and `payload`, spoiled as `flags` says: bit 0 flips a checksum
/// bit, bit 1 the magic, the bits above add to the announced length.
fn frame(command: &str, payload: &[u8], flags: u8) -> Vec<u8> {
    let mut out = raw_frame(magic(), command, payload);
    if flags & 2 != 0 {
        out[0] ^= 0x55;
    }
    let lie = u32::from(flags >> 2);
    let length = payload.len() as u32 + lie;
    out[16..20].copy_from_slice(&length.to_le_bytes());
    if flags & 1 != 0 {
        out[23] ^= 1;
    }
    out
}

fn records(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let command = COMMANDS[usize::from(data[0]) % COMMANDS.len()];
        let flags = data[1];
        let len = usize::from(u16::from_le_bytes([data[2], data[3]])).min(data.len() - 4);
        out.extend(frame(command, &data[4..4 + len], flags));
        data = &data[4 + len..];
    }
    out.extend_from_slice(data);
    out
}

fn handshake() -> Vec<u8> {
    peer_handshake(magic())
}

/// Checks the invariants of one decoded message.
fn check_message(msg: &Message) {
    if let Message::Addr(entries) = msg {
        assert!(entries.len() as u64 <= MAX_ADDR_PER_MESSAGE);
    }
}

/// The header and payload decoders on their own.
fn decoders(data: &[u8]) {
    let Some((header, payload)) = data.split_first_chunk::<HEADER_LEN>() else {
        return;
    };
    for m in [
        magic(),
        Magic::from_bytes(header[..4].try_into().expect("4")),
    ] {
        if let Ok(h) = parse_header(header, m) {
            assert!(h.length <= MAX_PAYLOAD);
            assert!(h.command.len() <= 12);
            assert!(h.command.bytes().all(|b| b.is_ascii_graphic()));
            if let Ok(msg) = decode_payload(&h, payload) {
                check_message(&msg);
            }
        }
    }
    // The payload under each decoded command with a correct checksum.
    let checksum = sha256d::Hash::hash(payload).as_byte_array()[..4]
        .try_into()
        .expect("4 bytes");
    for command in &COMMANDS[..5] {
        let h = Header {
            command: (*command).to_owned(),
            length: payload.len() as u32,
            checksum,
        };
        match decode_payload(&h, payload) {
            Ok(msg) => check_message(&msg),
            Err(e) => assert!(e.is_violation(), "{e}"),
        }
    }
}

/// Splits what we sent into frames and checks that each is well formed.
fn check_sent(mut sent: &[u8]) {
    let mut commands = Vec::new();
    while !sent.is_empty() {
        let (header, rest) = sent
            .split_first_chunk::<HEADER_LEN>()
            .expect("whole headers sent");
        let h = parse_header(header, magic()).expect("our header parses");
        let len = h.length as usize;
        decode_payload(&h, &rest[..len]).expect("our payload decodes");
        commands.push(h.command);
        sent = &rest[len..];
    }
    assert!(commands.len() >= 2, "{commands:?}");
    assert_eq!(commands[..2], ["version", "sendaddrv2"]);
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    decoders(rest);

    let mut script = if flags & 2 != 0 {
        handshake()
    } else {
        Vec::new()
    };
    if flags & 1 != 0 {
        script.extend(records(rest));
    } else {
        script.extend_from_slice(rest);
    }
    let mut conn = ScriptedPeer {
        chunk: CHUNKS[usize::from(flags >> 3) % CHUNKS.len()],
        ..ScriptedPeer::new(&script)
    };
    let mut opts = ProbeOptions::new(magic());
    opts.getaddr = flags & 4 == 0;
    opts.max_addrs = 1500;
    let peer: SocketAddr = "127.0.0.1:18444".parse().expect("an address");
    let result = converse(
        &mut conn,
        peer,
        &opts,
        Instant::now() + Duration::from_secs(60),
    );
    match &result {
        Ok(info) => {
            assert!(info.addrs.len() <= opts.max_addrs);
            assert!(info.user_agent.chars().count() <= 256);
            assert!(!info.user_agent.chars().any(char::is_control));
            assert!(info.asked_getaddr <= opts.getaddr);
        }
        Err(e) => assert!(
            matches!(
                e.reason(),
                "closed" | "bad-magic" | "bad-checksum" | "oversize" | "protocol"
            ),
            "{e}"
        ),
    }
    check_sent(&conn.output);
});
