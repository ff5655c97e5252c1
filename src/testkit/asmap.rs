//! Asmap files for tests, and the checks the `asmap_decode` fuzz target and its property
//! tests share. [`encode`] compiles a prefix list into Bitcoin Core's asmap program (a
//! binary trie walked bit by bit: JUMP where both halves differ, MATCH down a lone branch
//! of unmapped space, RETURN where a whole subtree has one ASN), valid by Core's sanity
//! check though less compact than Core's own encoder (contrib/asmap). [`naive_lookup`] is
//! the longest-prefix-match oracle the files are checked against.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::asmap::Asmap;

/// Instruction codes, as bits in file order.
const RETURN: &[bool] = &[false];
const JUMP: &[bool] = &[true, false];
const MATCH: &[bool] = &[true, true, false];
const DEFAULT: &[bool] = &[true, true, true];

/// Core's variable-length classes: the smallest value and the mantissa widths.
const ASN_CLASSES: (u32, &[u8]) = (1, &[15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
const MATCH_CLASSES: (u32, &[u8]) = (2, &[1, 2, 3, 4, 5, 6, 7, 8]);
const JUMP_CLASSES: (u32, &[u8]) = (
    17,
    &[
        5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
        29, 30,
    ],
);

/// The largest ASN the format can hold (2^25 - 2^15).
pub const MAX_ENCODABLE_ASN: u32 = (1 << 25) - (1 << 15);

/// An address as the 128 bits asmap walks: IPv4 as `::ffff:a.b.c.d`.
pub fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// A prefix `(address, length in its family's bits)` as 128-bit value and length.
fn prefix_bits(ip: IpAddr, len: u8) -> (u128, u32) {
    let full = match ip {
        IpAddr::V4(_) => {
            assert!(len <= 32, "an IPv4 prefix of {len} bits");
            96 + u32::from(len)
        }
        IpAddr::V6(_) => {
            assert!(len <= 128, "an IPv6 prefix of {len} bits");
            u32::from(len)
        }
    };
    (ip_bits(ip), full)
}

/// Whether `ip` lies in the 128-bit prefix `(bits, len)`.
fn in_prefix(ip: u128, bits: u128, len: u32) -> bool {
    len == 0 || (ip ^ bits) >> (128 - len) == 0
}

/// The ASN of the longest prefix in `prefixes` holding `ip` (the later of equal ones), or 0.
pub fn naive_lookup(prefixes: &[(IpAddr, u8, u32)], ip: IpAddr) -> u32 {
    let ip = ip_bits(ip);
    let mut best: Option<(u32, u32)> = None;
    for &(addr, len, asn) in prefixes {
        let (bits, len) = prefix_bits(addr, len);
        if in_prefix(ip, bits, len) && best.is_none_or(|(l, _)| len >= l) {
            best = Some((len, asn));
        }
    }
    best.map_or(0, |(_, asn)| asn)
}

#[derive(Debug, Default, Clone)]
struct Node {
    child: [Option<usize>; 2],
    asn: Option<u32>,
}

/// The binary trie of `prefixes`: node 0 is the root; a later equal prefix replaces.
fn build_trie(prefixes: &[(IpAddr, u8, u32)]) -> Vec<Node> {
    let mut nodes = vec![Node::default()];
    for &(addr, len, asn) in prefixes {
        assert!(
            (1..=MAX_ENCODABLE_ASN).contains(&asn),
            "ASN {asn} cannot be encoded"
        );
        let (bits, len) = prefix_bits(addr, len);
        let mut at = 0;
        for depth in 0..len {
            let bit = usize::from((bits >> (127 - depth)) & 1 == 1);
            at = match nodes[at].child[bit] {
                Some(next) => next,
                None => {
                    nodes.push(Node::default());
                    nodes[at].child[bit] = Some(nodes.len() - 1);
                    nodes.len() - 1
                }
            };
        }
        nodes[at].asn = Some(asn);
    }
    nodes
}

/// Appends `value` in Core's variable-length encoding of `classes`.
fn push_number(out: &mut Vec<bool>, value: u32, (min, sizes): (u32, &[u8])) {
    let mut rest = value
        .checked_sub(min)
        .expect("a value below the class minimum");
    for (i, &size) in sizes.iter().enumerate() {
        let last = i + 1 == sizes.len();
        if rest < 1 << size || last {
            assert!(rest < 1 << size, "{value} is too large to encode");
            if !last {
                out.push(false);
            }
            out.extend((0..size).rev().map(|b| (rest >> b) & 1 == 1));
            return;
        }
        out.push(true);
        rest -= 1 << size;
    }
}

fn push_return(out: &mut Vec<bool>, asn: u32) {
    out.extend_from_slice(RETURN);
    push_number(out, asn, ASN_CLASSES);
}

/// Whether every address under `node` maps to `asn`.
fn uniform(nodes: &[Node], node: usize, asn: u32) -> bool {
    nodes[node].asn.is_none_or(|a| a == asn)
        && nodes[node]
            .child
            .iter()
            .flatten()
            .all(|&c| uniform(nodes, c, asn))
}

/// JUMP on the next bit: the 0 side's code, then the 1 side's.
fn push_jump(out: &mut Vec<bool>, zero: Vec<bool>, one: Vec<bool>) {
    out.extend_from_slice(JUMP);
    push_number(out, zero.len() as u32, JUMP_CLASSES);
    out.extend(zero);
    out.extend(one);
}

/// The code of the subtree at `node` (where `inherited` is the ASN of its longest
/// enclosing prefix), appended to `out`.
fn compile(nodes: &[Node], node: usize, inherited: Option<u32>, out: &mut Vec<bool>) {
    let n = &nodes[node];
    match n.asn.or(inherited) {
        Some(asn) if uniform(nodes, node, asn) => push_return(out, asn),
        Some(asn) => {
            let side = |c: Option<usize>| {
                let mut code = Vec::new();
                match c {
                    Some(c) => compile(nodes, c, Some(asn), &mut code),
                    None => push_return(&mut code, asn),
                }
                code
            };
            push_jump(out, side(n.child[0]), side(n.child[1]));
        }
        None => match n.child {
            [Some(zero), Some(one)] => {
                let side = |c| {
                    let mut code = Vec::new();
                    compile(nodes, c, None, &mut code);
                    code
                };
                push_jump(out, side(zero), side(one));
            }
            [None, None] => panic!("an asmap must map at least one prefix"),
            _ => compile_lone_branch(nodes, node, out),
        },
    }
}

/// Unmapped space with one mapped branch: MATCH its bits (a mismatch returns Core's
/// default, 0), 8 at a time, down to the next node that forks or has an ASN.
fn compile_lone_branch(nodes: &[Node], mut node: usize, out: &mut Vec<bool>) {
    let mut path = Vec::new();
    while let (None, [zero, one]) = (nodes[node].asn, nodes[node].child) {
        match (zero, one) {
            (Some(c), None) => path.push((false, c)),
            (None, Some(c)) => path.push((true, c)),
            _ => break,
        }
        node = path[path.len() - 1].1;
    }
    for chunk in path.chunks(8) {
        let value = chunk
            .iter()
            .fold(1u32, |v, &(bit, _)| (v << 1) | u32::from(bit));
        out.extend_from_slice(MATCH);
        push_number(out, value, MATCH_CLASSES);
    }
    compile(nodes, node, None, out);
}

/// An asmap file mapping each `(prefix, length, asn)` (IPv4 lengths of the IPv4 address,
/// under `::ffff:0:0/96`) by longest-prefix match; the later of equal prefixes wins.
///
/// # Panics
/// When nothing is mapped (no valid program maps nothing), or an ASN is 0 or over
/// [`MAX_ENCODABLE_ASN`], or a length is over its family's bits.
pub fn encode(prefixes: &[(IpAddr, u8, u32)]) -> Vec<u8> {
    let nodes = build_trie(prefixes);
    let mut bits = Vec::new();
    compile(&nodes, 0, None, &mut bits);
    pack(&bits)
}

/// One instruction of an asmap program, for hand-made (and malformed) files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instruction {
    /// Returns the ASN.
    Return(u32),
    /// Reads a bit; on 1 skips this many bits of program (at least 17).
    Jump(u32),
    /// Compares the next bits with the value's bits below its leading 1 (2..=511);
    /// on a mismatch returns the default ASN.
    Match(u32),
    /// Sets the default ASN.
    Default(u32),
}

/// The bits of `program`, unpadded.
pub fn assemble_bits(program: &[Instruction]) -> Vec<bool> {
    let mut out = Vec::new();
    for &i in program {
        let (code, value, classes) = match i {
            Instruction::Return(asn) => (RETURN, asn, ASN_CLASSES),
            Instruction::Jump(n) => (JUMP, n, JUMP_CLASSES),
            Instruction::Match(v) => (MATCH, v, MATCH_CLASSES),
            Instruction::Default(asn) => (DEFAULT, asn, ASN_CLASSES),
        };
        out.extend_from_slice(code);
        push_number(&mut out, value, classes);
    }
    out
}

/// `bits` as a file: 8 to a byte, first bit lowest, the last byte padded with zeros.
pub fn pack(bits: &[bool]) -> Vec<u8> {
    bits.chunks(8)
        .map(|byte| {
            byte.iter()
                .enumerate()
                .fold(0u8, |b, (i, &bit)| b | (u8::from(bit) << i))
        })
        .collect()
}

/// Addresses to look up in a map built from `data`: fixed corners, and 16-byte windows
/// of `data` as IPv6 and 4-byte ones as IPv4.
fn probe_addresses(data: &[u8]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = vec![
        Ipv4Addr::UNSPECIFIED.into(),
        Ipv4Addr::BROADCAST.into(),
        Ipv6Addr::UNSPECIFIED.into(),
        Ipv6Addr::from(u128::MAX).into(),
    ];
    for w in data.chunks_exact(16).take(8) {
        let mut b = [0u8; 16];
        b.copy_from_slice(w);
        out.push(Ipv6Addr::from(b).into());
        out.push(Ipv4Addr::new(b[0], b[1], b[2], b[3]).into());
    }
    out
}

/// Checks `Asmap::from_bytes` on any `data`: no panic; when accepted, lookups do not
/// panic, and the file with a byte more or a byte less is refused (a valid program ends
/// in its last byte, padded with at most 7 zero bits). Returns the map if accepted.
///
/// # Panics
/// When one of these breaks.
pub fn check_asmap_bytes(data: &[u8]) -> Option<Asmap> {
    let map = Asmap::from_bytes(data.to_vec()).ok()?;
    for ip in probe_addresses(data) {
        map.lookup(ip);
    }
    let mut longer = data.to_vec();
    longer.push(data.last().copied().unwrap_or(0));
    assert!(
        Asmap::from_bytes(longer).is_err(),
        "a byte past the end accepted"
    );
    let shorter = data[..data.len() - 1].to_vec();
    assert!(Asmap::from_bytes(shorter).is_err(), "a cut file accepted");
    Some(map)
}

/// Checks [`encode`] of `prefixes`: the file is accepted ([`check_asmap_bytes`]) and
/// looks up each of `addrs` as [`naive_lookup`] does. Returns the file.
///
/// # Panics
/// When one of these breaks.
pub fn check_asmap_round_trip(prefixes: &[(IpAddr, u8, u32)], addrs: &[IpAddr]) -> Vec<u8> {
    let file = encode(prefixes);
    let map =
        check_asmap_bytes(&file).unwrap_or_else(|| panic!("encoded file refused: {prefixes:?}"));
    for &ip in addrs {
        assert_eq!(
            map.lookup(ip),
            naive_lookup(prefixes, ip),
            "{ip} in {prefixes:?}"
        );
    }
    file
}
