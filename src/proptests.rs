//! Property tests that mirror the cargo-fuzz targets in `fuzz/` on stable Rust, so that
//! `cargo test` keeps guarding the paths the fuzzers explored (see docs/SECURITY.md,
//! "Fuzzing"): arbitrary bytes, and structured inputs that get past the first checks,
//! through the P2P reader and conversation (v1 and v2), the DNS responder, the dump importer
//! the SOCKS5 client, the asmap decoder and the metrics endpoint's HTTP request parser,
//! plus the peer-address text round trip and the service-flag parser.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::consensus::encode;
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::p2p::address::Address;
use bitcoin::p2p::{Magic, ServiceFlags};
use hickory_proto::op::{Edns, Message as DnsMessage, Query};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::addr::{Host, PeerAddr};
use crate::dns::{
    AnswerSet, DnsConfig, MAX_UDP_PLAIN, Transport, ZoneContext, respond, respond_truncated_into,
};
use crate::dump::DumpFigures;
use crate::dump::{self, MAX_LINE, format_line};
use crate::metrics::http::{Head, MAX_HEAD, Method};
use crate::p2p::{
    Header, MAX_ADDR_PER_MESSAGE, MAX_PAYLOAD, Message, ProbeOptions, converse, decode_payload,
    parse_header,
};
use crate::services;
use crate::socks5::{SocksError, Target};
use crate::testkit::asmap::{Instruction, assemble_bits, check_asmap_bytes, pack};
use crate::testkit::http::check_http_head;
use crate::testkit::socks5::{check_socks5_connect, check_socks5_reply};
use crate::testkit::v2::{V2_CHUNKS, V2Stage, check_v2_conversation, fuzz_v2, v2_script};
use crate::testkit::{
    ScriptedPeer, check_dns_response, check_dump_line, peer_handshake, raw_frame,
};

// ---------------------------------------------------------------------------------------
// P2P: the fuzz target `p2p_conversation`.

fn magic() -> Magic {
    Magic::from(Network::Regtest)
}

const COMMANDS: [&str; 10] = [
    "version",
    "verack",
    "ping",
    "addr",
    "addrv2",
    "sendheaders",
    "inv",
    "block",
    "",
    "feefilter",
];

fn frame(command: &str, payload: &[u8]) -> Vec<u8> {
    raw_frame(magic(), command, payload)
}

fn handshake() -> Vec<u8> {
    peer_handshake(magic())
}

/// Runs a conversation with `script` and checks what the fuzz target checks.
fn converse_checked(script: &[u8], chunk: usize) {
    let mut conn = ScriptedPeer {
        chunk,
        ..ScriptedPeer::new(script)
    };
    let opts = ProbeOptions::new(magic());
    let peer = "127.0.0.1:18444".parse().unwrap();
    match converse(
        &mut conn,
        peer,
        &opts,
        Instant::now() + Duration::from_secs(60),
    ) {
        Ok(info) => {
            assert!(info.addrs.len() <= opts.max_addrs);
            assert!(info.user_agent.chars().count() <= 256);
            assert!(!info.user_agent.chars().any(char::is_control));
        }
        Err(e) => assert!(
            matches!(
                e.reason(),
                "closed" | "bad-magic" | "bad-checksum" | "oversize" | "protocol"
            ),
            "{e}"
        ),
    }
    // What we said is well framed, starting with version and sendaddrv2.
    let mut sent = &conn.output[..];
    let mut commands = Vec::new();
    while !sent.is_empty() {
        let (header, rest) = sent.split_first_chunk::<24>().unwrap();
        let h = parse_header(header, magic()).unwrap();
        decode_payload(&h, &rest[..h.length as usize]).unwrap();
        sent = &rest[h.length as usize..];
        commands.push(h.command);
    }
    assert_eq!(commands[..2], ["version", "sendaddrv2"]);
}

fn check_decoded(msg: &Message) {
    if let Message::Addr(entries) = msg {
        assert!(entries.len() as u64 <= MAX_ADDR_PER_MESSAGE);
    }
}

/// A frame with a valid checksum: a command from the list and an arbitrary payload.
fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        0..COMMANDS.len(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(i, payload)| frame(COMMANDS[i], &payload))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn p2p_arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..1024),
        after_handshake: bool,
        chunk in prop::sample::select(vec![1usize, 3, 24, usize::MAX]),
    ) {
        let mut script = if after_handshake { handshake() } else { Vec::new() };
        script.extend(data);
        converse_checked(&script, chunk);
    }

    #[test]
    fn p2p_checksummed_frames_never_panic(
        frames in proptest::collection::vec(any_frame(), 0..8),
        after_handshake: bool,
    ) {
        let mut script = if after_handshake { handshake() } else { Vec::new() };
        script.extend(frames.concat());
        converse_checked(&script, usize::MAX);
    }

    #[test]
    fn p2p_header_and_payload_decoders_never_panic(
        header: [u8; 24],
        good_magic: bool,
        payload in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut header = header;
        if good_magic {
            header[..4].copy_from_slice(&magic().to_bytes());
        }
        if let Ok(h) = parse_header(&header, magic()) {
            assert!(h.length <= MAX_PAYLOAD);
            assert!(h.command.bytes().all(|b| b.is_ascii_graphic()));
            if let Ok(msg) = decode_payload(&h, &payload) {
                check_decoded(&msg);
            }
        }
        let checksum = sha256d::Hash::hash(&payload).as_byte_array()[..4].try_into().unwrap();
        for command in ["version", "verack", "ping", "addr", "addrv2"] {
            let h = Header { command: command.into(), length: payload.len() as u32, checksum };
            match decode_payload(&h, &payload) {
                Ok(msg) => check_decoded(&msg),
                Err(e) => assert!(e.is_violation(), "{e}"),
            }
        }
    }

    #[test]
    fn p2p_addr_messages_decode_to_what_was_sent(
        entries in proptest::collection::vec((any::<u32>(), any::<u32>(), any::<u16>(), any::<u64>()), 0..50),
    ) {
        let msg: Vec<(u32, Address)> = entries
            .iter()
            .map(|&(t, ip, port, s)| {
                let sock = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port));
                (t, Address::new(&sock, ServiceFlags::from(s)))
            })
            .collect();
        let payload = encode::serialize(&msg);
        let checksum = sha256d::Hash::hash(&payload).as_byte_array()[..4].try_into().unwrap();
        let h = Header { command: "addr".into(), length: payload.len() as u32, checksum };
        let Message::Addr(learned) = decode_payload(&h, &payload).unwrap() else {
            panic!("not an addr")
        };
        prop_assert_eq!(learned.len(), entries.len());
        for (l, &(t, ip, port, s)) in learned.iter().zip(&entries) {
            prop_assert_eq!(l.time, t);
            prop_assert_eq!(l.services, s);
            prop_assert_eq!(l.addr, PeerAddr { host: Host::V4(Ipv4Addr::from(ip)), port });
        }
    }
}

// ---------------------------------------------------------------------------------------
// P2P over v2 (BIP324), the v2 receive path: the fuzz target `p2p_v2_receive`. The probe's
// key is fixed, the peer's handshake made in memory (`testkit::v2`); then random bytes,
// or records the peer encrypts into packets (some decoys, some with a spoiled tag, some
// whose length lies over the cap).

/// A payload the probe decodes, valid, for record command `command` (see
/// `testkit::v2`'s list: 0 version, 2 ping, 4 addrv2), else `raw`.
fn v2_payload(command: u8, entries: u8, raw: Vec<u8>) -> Vec<u8> {
    match command {
        0 => encode::serialize(&crate::testkit::peer_version(70016)),
        2 => raw.iter().copied().chain([0; 8]).take(8).collect(),
        4 => {
            let mut out = encode::serialize(&encode::VarInt(u64::from(entries)));
            for i in 0..entries {
                out.extend([0, 0, 0, 0, 1, 1, 4, 127, 3, 0, i, 0x47, 0x6c]);
            }
            out
        }
        _ => raw,
    }
}

/// One record `[command][flags][len u16 LE][payload]`: flags mostly clear, payloads
/// mostly valid.
fn any_v2_record() -> impl Strategy<Value = Vec<u8>> {
    let flags = prop_oneof![4 => Just(0u8), 1 => any::<u8>()];
    let valid = any::<bool>();
    (
        0..16u8,
        flags,
        valid,
        0..40u8,
        proptest::collection::vec(any::<u8>(), 0..60),
    )
        .prop_map(|(command, flags, valid, entries, raw)| {
            let payload = if valid {
                v2_payload(command, entries, raw)
            } else {
                raw
            };
            let mut out = vec![command, flags];
            out.extend((payload.len() as u16).to_le_bytes());
            out.extend(payload);
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes, in any stage: the checks of `fuzz_v2`.
    #[test]
    fn p2p_v2_arbitrary_bytes_never_panic(
        flags: u8,
        data in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut input = vec![flags];
        input.extend(data);
        fuzz_v2(&input);
    }

    /// Random bytes where the peer's packets should be end the conversation with an error
    /// (never a success, a panic or a timeout), whatever the chunking.
    #[test]
    fn p2p_v2_random_stream_ends_with_an_error(
        after_version: bool,
        with_garbage: bool,
        data in proptest::collection::vec(any::<u8>(), 0..5000),
        chunk in prop::sample::select(V2_CHUNKS.to_vec()),
    ) {
        let stage = if after_version { V2Stage::AfterVersion } else { V2Stage::AfterKey };
        let script = v2_script(stage, with_garbage, &data);
        let result = check_v2_conversation(&script, chunk, true);
        prop_assert!(result.is_err());
    }

    /// Packets of the session: the conversation never panics, and a first record whose
    /// length lies over the cap ends it as `oversize`, right at that length.
    #[test]
    fn p2p_v2_records_never_panic_and_stop_at_a_lie(
        records in proptest::collection::vec(any_v2_record(), 0..8),
        after_handshake: bool,
        with_garbage: bool,
        getaddr: bool,
        chunk in prop::sample::select(V2_CHUNKS.to_vec()),
    ) {
        let stage = if after_handshake {
            V2Stage::RecordsAfterHandshake
        } else {
            V2Stage::Records
        };
        let script = v2_script(stage, with_garbage, &records.concat());
        let result = check_v2_conversation(&script, chunk, getaddr);
        let first_lies = records.first().is_some_and(|r| r[1] & 4 != 0);
        if first_lies && stage == V2Stage::Records {
            prop_assert_eq!(result.map_err(|e| e.reason()).err(), Some("oversize"));
        }
    }
}

// ---------------------------------------------------------------------------------------
// DNS: the fuzz target `dns_respond`.

const ZONE: &str = "seed.example.com";

fn zone() -> ZoneContext {
    let mut c = DnsConfig::new(ZONE, "ns.example.com", "hostmaster@example.com");
    c.serial = Some(7);
    ZoneContext::new(&c).unwrap()
}

fn peers() -> Vec<(IpAddr, u64)> {
    let services = [1u64, 9, 0x409, 0x449, 0x408];
    (0..100u32)
        .flat_map(|i| {
            let v4 = Ipv4Addr::from(0x0100_0000u32.wrapping_add(i.wrapping_mul(0x0127_3b15)));
            let v6 = Ipv6Addr::new(0x2a01, (i * 37) as u16, 0, i as u16, 0, 0, 0, 1);
            let s = services[i as usize % services.len()];
            [(IpAddr::V4(v4), s), (IpAddr::V6(v6), s)]
        })
        .collect()
}

fn lookup(mask: u64) -> Option<Arc<AnswerSet>> {
    let ips = peers().into_iter().filter(|(_, s)| s & mask == mask);
    Some(Arc::new(AnswerSet::new(ips.map(|(ip, _)| ip))))
}

fn respond_checked(request: &[u8]) -> Option<Vec<u8>> {
    let ctx = zone();
    let mut rng = SmallRng::seed_from_u64(1);
    let udp = respond(request, Transport::Udp, &ctx, &lookup, &mut rng);
    let tcp = respond(request, Transport::Tcp, &ctx, &lookup, &mut rng);
    let rcode = check_dns_response(request, udp.as_deref(), Transport::Udp);
    assert_eq!(
        rcode,
        check_dns_response(request, tcp.as_deref(), Transport::Tcp)
    );
    let mut out = Vec::new();
    respond_truncated_into(request, &ctx, &mut out);
    let truncated = (!out.is_empty()).then_some(&out[..]);
    if let Some(t) = check_dns_response(request, truncated, Transport::Udp) {
        assert!(out.len() <= MAX_UDP_PLAIN);
        if t != 0 {
            assert_eq!(rcode, Some(t));
        }
    }
    udp
}

/// A query name: random labels, in or under the zone, or `x<hex>` names.
fn any_name() -> impl Strategy<Value = String> {
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,18}[a-zA-Z0-9])?";
    prop_oneof![
        Just(format!("{ZONE}.")),
        "[xX][0-9a-fA-F]{1,17}".prop_map(|x| format!("{x}.{ZONE}.")),
        label.prop_map(|l| format!("{l}.{ZONE}.")),
        proptest::collection::vec(label, 1..5).prop_map(|ls| format!("{}.", ls.join("."))),
    ]
}

fn any_rtype() -> impl Strategy<Value = RecordType> {
    prop::sample::select(vec![
        RecordType::A,
        RecordType::AAAA,
        RecordType::NS,
        RecordType::SOA,
        RecordType::ANY,
        RecordType::AXFR,
        RecordType::TXT,
        RecordType::MX,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn dns_arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        respond_checked(&data);
    }

    #[test]
    fn dns_mutated_queries_never_panic(
        name in any_name(),
        rtype in any_rtype(),
        edns in proptest::option::of(any::<u16>()),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let mut m = DnsMessage::query();
        m.metadata.id = 0x4242;
        m.add_query(Query::query(Name::from_ascii(&name).unwrap(), rtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        let mut request = m.to_vec().unwrap();
        let clean = respond_checked(&request);
        prop_assert!(clean.is_some(), "a well-formed query gets an answer");
        for (at, x) in flips {
            let len = request.len();
            request[at % len] ^= x;
        }
        respond_checked(&request);
    }
}

// ---------------------------------------------------------------------------------------
// Import: the fuzz target `import_lines`.

fn import_checked(data: &[u8]) -> dump::ImportFile {
    let file = dump::read(data).unwrap();
    let lines = data.split(|&b| b == b'\n').count();
    let skipped: usize = file.skipped.values().map(|(n, _)| n).sum();
    assert!(file.peers.len() + skipped <= lines);
    for peer in &file.peers {
        let text = peer.addr.to_string();
        assert_eq!(text.parse::<PeerAddr>().ok(), Some(peer.addr), "{text}");
        if let Some(f) = &peer.figures {
            check_dump_line(&peer.addr, f);
        }
    }
    file
}

fn any_peer_addr() -> impl Strategy<Value = PeerAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| {
            PeerAddr::from_socket(SocketAddr::from((Ipv4Addr::from(ip), port)))
        }),
        (any::<u128>(), any::<u16>()).prop_map(|(ip, port)| {
            PeerAddr::from_socket(SocketAddr::from((Ipv6Addr::from(ip), port)))
        }),
        (any::<[u8; 32]>(), any::<u16>()).prop_map(|(k, port)| PeerAddr {
            host: Host::TorV3(k),
            port
        }),
        (any::<[u8; 32]>(), any::<u16>()).prop_map(|(h, port)| PeerAddr {
            host: Host::I2p(h),
            port
        }),
    ]
}

fn any_figures() -> impl Strategy<Value = DumpFigures> {
    (
        any::<bool>(),
        any::<i64>(),
        proptest::array::uniform5(0.0..=1.0f64),
        any::<i64>(),
        any::<u64>(),
        any::<i64>(),
        "\\PC{0,40}",
    )
        .prop_map(
            |(good, last_success, reliability, start_height, services, version, user_agent)| {
                DumpFigures {
                    good,
                    last_success,
                    reliability,
                    start_height,
                    services,
                    version,
                    user_agent,
                }
            },
        )
}

/// A dump line written by another seeder: odd but valid numbers, percentages such as
/// `-0%` or `1e2%`, and agents long enough to fill a line.
fn foreign_line() -> impl Strategy<Value = String> {
    let pct = prop_oneof![
        Just("-0%".to_owned()),
        Just("-0.00%".to_owned()),
        Just("1e2%".to_owned()),
        "[0-9]{1,2}(\\.[0-9]{0,4})?%",
    ];
    (
        any_peer_addr(),
        proptest::collection::vec(pct, 5),
        "[+-]?[0-9]{1,19}",
        "\\+?[0-9a-fA-F]{1,16}",
        prop_oneof![
            "[ -!#-~]{0,40}",
            // Long enough to fill a line; cheaper than a 4000-character regex.
            (3900..4060usize, "[a-z/:.()]{1,8}").prop_map(|(n, unit)| {
                let mut agent = unit.repeat(n / unit.len() + 1);
                agent.truncate(n);
                agent
            }),
        ],
    )
        .prop_map(|(a, pcts, num, hex, agent)| {
            let line = format!(
                "{a} 1 {num} {} {num} {hex} {num} \"{agent}\"",
                pcts.join(" ")
            );
            line.chars().take(MAX_LINE).collect()
        })
}

/// One import line: a dump line with some tokens replaced by arbitrary text, or a
/// plain address; with the address it must import as when it is one of ours, a dump line
/// or a plain address, untouched.
fn any_line() -> impl Strategy<Value = (String, Option<PeerAddr>)> {
    prop_oneof![
        (any_peer_addr(), any_figures()).prop_map(|(a, f)| (format_line(&a, &f), Some(a))),
        foreign_line().prop_map(|line| (line, None)),
        (
            any_peer_addr(),
            any_figures(),
            any::<usize>(),
            "[ -~]{0,12}"
        )
            .prop_map(|(a, f, at, junk)| {
                let line = format_line(&a, &f);
                let mut tokens: Vec<&str> = line.split_whitespace().collect();
                let at = at % tokens.len();
                tokens[at] = &junk;
                (tokens.join(" "), None)
            }),
        any_peer_addr().prop_map(|a| (a.to_string(), Some(a))),
        "\\PC{0,80}".prop_map(|line| (line, None)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn import_arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        import_checked(&data);
    }

    /// Besides the checks of `import_checked`: every dump line and plain address of ours
    /// is imported, in order (other lines may import too, or be skipped).
    #[test]
    fn import_lines_round_trip(lines in proptest::collection::vec(any_line(), 0..20)) {
        let text: Vec<&str> = lines.iter().map(|(line, _)| line.as_str()).collect();
        let file = import_checked(text.join("\n").as_bytes());
        let mut imported = file.peers.iter().map(|p| p.addr);
        for want in lines.iter().filter_map(|(_, addr)| *addr) {
            prop_assert!(imported.any(|a| a == want), "{} not imported", want);
        }
    }

    #[test]
    fn dump_figures_round_trip(addr in any_peer_addr(), f in any_figures()) {
        check_dump_line(&addr, &f);
    }

    #[test]
    fn peer_addr_text_round_trips(addr in any_peer_addr()) {
        prop_assert_eq!(addr.to_string().parse::<PeerAddr>().unwrap(), addr);
    }

    #[test]
    fn peer_addr_parse_never_panics(text in "\\PC{0,120}") {
        if let Ok(addr) = text.parse::<PeerAddr>() {
            prop_assert_eq!(addr.to_string().parse::<PeerAddr>().unwrap(), addr);
        }
    }

    #[test]
    fn services_parse_never_panics(text in "\\PC{0,60}") {
        let _ = services::parse(&text);
    }

    #[test]
    fn services_parse_reads_names_hex_and_decimal(mask: u64, picks in proptest::collection::vec(0..services::NAMES.len(), 1..5)) {
        prop_assert_eq!(services::parse(&format!("0x{mask:x}")), Ok(mask));
        prop_assert_eq!(services::parse(&mask.to_string()), Ok(mask));
        let names: Vec<&str> = picks.iter().map(|&i| services::NAMES[i].0).collect();
        let want = picks.iter().fold(0, |m, &i| m | services::NAMES[i].1);
        prop_assert_eq!(services::parse(&names.join(",")), Ok(want));
    }
}

// ---------------------------------------------------------------------------------------
// SOCKS5: the fuzz target `socks5_reply`.

const SOCKS_CHUNKS: [usize; 5] = [1, 2, 3, 7, usize::MAX];

fn any_socks_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        "[a-z2-7]{56}\\.onion".prop_map(|name| Target::Domain(name, 8333)),
        "[a-z2-7]{52}\\.b32\\.i2p".prop_map(|name| Target::Domain(name, 0)),
        any::<SocketAddr>().prop_map(Target::Ip),
    ]
}

/// A CONNECT reply with mostly valid fields: code, reserved byte and address type each
/// usually right, an address of the announced length, then `cut` bytes dropped from the end.
fn any_reply() -> impl Strategy<Value = (Vec<u8>, u8, bool)> {
    let code = prop_oneof![2 => Just(0u8), 1 => any::<u8>()];
    let reserved = prop_oneof![4 => Just(0u8), 1 => any::<u8>()];
    let atyp = prop_oneof![3 => prop::sample::select(vec![1u8, 3, 4]), 1 => any::<u8>()];
    let cut = prop_oneof![3 => Just(0usize), 1 => 1..12usize];
    (
        code,
        reserved,
        atyp,
        any::<u8>(),
        any::<[u8; 255]>(),
        any::<u16>(),
        cut,
    )
        .prop_map(|(code, reserved, atyp, len, body, port, cut)| {
            let address = match atyp {
                1 => 4,
                4 => 16,
                3 => 1 + usize::from(len),
                _ => 4,
            };
            let mut reply = vec![5, code, reserved, atyp, len];
            reply.extend_from_slice(&body[..address - 1]);
            reply.extend(port.to_be_bytes());
            let cut = cut.min(reply.len());
            let valid = code == 0 && reserved == 0 && [1, 3, 4].contains(&atyp) && cut == 0;
            reply.truncate(reply.len() - cut);
            (reply, code, valid)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn socks5_arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        chunk in prop::sample::select(SOCKS_CHUNKS.to_vec()),
        target in any_socks_target(),
    ) {
        check_socks5_reply(&data);
        check_socks5_connect(&data, chunk, &target).ok();
        let mut after_method = vec![5, 0];
        after_method.extend(&data);
        check_socks5_connect(&after_method, chunk, &target).ok();
    }

    /// Besides the checks of `check_socks5_connect`: a whole success reply is accepted
    /// with the peer's bytes after it, and a failure code is reported as that code, even
    /// in a reply cut short or otherwise malformed.
    #[test]
    fn socks5_structured_replies(
        (reply, code, valid) in any_reply(),
        trailing in proptest::collection::vec(any::<u8>(), 0..40),
        chunk in prop::sample::select(SOCKS_CHUNKS.to_vec()),
        target in any_socks_target(),
    ) {
        check_socks5_reply(&reply);
        let mut script = vec![5, 0];
        script.extend(&reply);
        let result = check_socks5_connect(&script, chunk, &target);
        prop_assert_eq!(result.is_ok(), valid, "{:?}", result);
        if code != 0 && reply.len() >= 2 {
            let peer = matches!(code, 0x03..=0x06 | 0xF0..=0xF7);
            match &result {
                Err(SocksError::Peer { code: c, .. }) => prop_assert!(peer && *c == code),
                Err(e) => {
                    let named = e.to_string().contains(&format!("{code:#04x}"));
                    prop_assert!(!peer && named, "{}", e);
                }
                Ok(()) => prop_assert!(false, "success with code {code:#04x}"),
            }
        }
        // The peer's bytes after the reply (or after a cut reply: they may complete it).
        script.extend(&trailing);
        let later = check_socks5_connect(&script, chunk, &target);
        prop_assert!(later.is_ok() || !valid, "{:?}", later);
    }
}

// ---- asmap decoder (fuzz target `asmap_decode`) ----

/// Any instruction, with values around the edges of their encodings.
fn any_asmap_instruction() -> impl Strategy<Value = Instruction> {
    prop_oneof![
        (1..=70_000u32).prop_map(Instruction::Return),
        (17..=400u32).prop_map(Instruction::Jump),
        (2..=511u32).prop_map(Instruction::Match),
        (1..=70_000u32).prop_map(Instruction::Default),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn asmap_arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_asmap_bytes(&data);
    }

    /// Programs of real instructions (some valid, most not), whole or with a bit flipped.
    #[test]
    fn asmap_instruction_sequences_never_panic(
        program in proptest::collection::vec(any_asmap_instruction(), 1..40),
        flip in any::<u16>(),
    ) {
        let mut file = pack(&assemble_bits(&program));
        check_asmap_bytes(&file);
        let bit = usize::from(flip) % (file.len() * 8);
        file[bit / 8] ^= 1 << (bit % 8);
        check_asmap_bytes(&file);
    }
}

// ---- metrics HTTP request heads (fuzz target `http_request`) ----

/// A line of a request head: mostly well formed, sometimes not.
fn any_head_line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "(GET|HEAD|POST|get|G\\(T) (/metrics|/health|/|\\*|/m\\?q=1|http://h:1/health|x)( HTTP/1\\.[01]| HTTP/[02]\\.0| HTTP/1| )?",
        3 => "[A-Za-z-]{1,12}: ?[ -~]{0,20}",
        1 => "[ \t]?[ -~]{0,30}",
    ]
}

/// A request head built of lines ended by CRLF, LF or a stray CR, maybe with the empty
/// line, maybe padded past `MAX_HEAD`, maybe with bytes after it.
fn any_head() -> impl Strategy<Value = Vec<u8>> {
    let end = prop::sample::select(vec!["\r\n", "\n", "\r", "\r\r\n"]);
    (
        proptest::collection::vec((any_head_line(), end), 0..8),
        prop::sample::select(vec!["\r\n", "\n", "", "\r"]),
        prop_oneof![3 => Just(0usize), 1 => MAX_HEAD - 40..MAX_HEAD + 40],
        proptest::collection::vec(any::<u8>(), 0..20),
    )
        .prop_map(|(lines, last, pad, tail)| {
            let mut head = Vec::new();
            for (i, (line, end)) in lines.iter().enumerate() {
                head.extend(line.as_bytes());
                if i == 1 && pad > 0 {
                    head.extend(b"\r\nX-Pad: ");
                    head.resize(pad.max(head.len()), b'p');
                }
                head.extend(end.as_bytes());
            }
            head.extend(last.as_bytes());
            head.extend(tail);
            head
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never panic, and never make a request without an empty line in the
    /// first `MAX_HEAD` bytes (checked by `check_http_head`).
    #[test]
    fn http_arbitrary_bytes_never_panic(
        data in prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..300),
            1 => proptest::collection::vec(any::<u8>(), MAX_HEAD - 10..MAX_HEAD + 300),
        ],
        chunk in 1..600usize,
    ) {
        check_http_head(&data, chunk).ok();
        check_http_head(&data, 1).ok();
    }

    /// Heads of real lines, cut anywhere: the same verdict whole and in pieces, a request
    /// only with its empty line.
    #[test]
    fn http_structured_heads(head in any_head(), chunk in 1..64usize, cut in any::<prop::sample::Index>()) {
        check_http_head(&head, chunk).ok();
        check_http_head(&head[..cut.index(head.len() + 1)], chunk).ok();
    }

    /// A well-formed GET with any headers is a request for its path.
    #[test]
    fn http_well_formed_gets_are_requests(
        path in "/[a-z0-9/._-]{0,30}",
        query in proptest::option::of("[a-z0-9=&]{0,10}"),
        fields in proptest::collection::vec("[A-Za-z-]{1,12}: [ -~]{0,20}", 0..10),
        lf_only in any::<bool>(),
    ) {
        let eol = if lf_only { "\n" } else { "\r\n" };
        let target = query.map_or(path.clone(), |q| format!("{path}?{q}"));
        let mut head = format!("GET {target} HTTP/1.1{eol}");
        for field in fields {
            head.push_str(&field);
            head.push_str(eol);
        }
        head.push_str(eol);
        let verdict = check_http_head(head.as_bytes(), 7);
        let Ok(Head::Request(request)) = verdict else {
            panic!("{head:?}: {verdict:?}");
        };
        prop_assert_eq!(request.method, Method::Get);
        prop_assert_eq!(request.path, path);
    }
}
