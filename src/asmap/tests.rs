#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::IpAddr;

use proptest::prelude::*;

use super::{Asmap, AsmapError};
use crate::testkit::asmap::Instruction::{Default, Jump, Match, Return};
use crate::testkit::asmap::{
    MAX_ENCODABLE_ASN, assemble_bits, check_asmap_round_trip, encode, naive_lookup, pack,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Nested IPv4 and IPv6 prefixes, and space left unmapped.
fn nested() -> Vec<(IpAddr, u8, u32)> {
    vec![
        (ip("10.0.0.0"), 8, 100),
        (ip("10.1.0.0"), 16, 200),
        (ip("10.1.2.0"), 24, 300),
        (ip("203.0.113.7"), 32, 400),
        (ip("2001:db8::"), 32, 500),
        (ip("2001:db8:1::"), 48, 600),
        (ip("2a00::"), 12, MAX_ENCODABLE_ASN),
    ]
}

#[test]
fn longest_prefix_wins_ipv4_and_ipv6() {
    let map = Asmap::from_bytes(encode(&nested())).unwrap();
    for (addr, asn) in [
        ("10.0.0.1", 100),
        ("10.255.255.255", 100),
        ("10.1.0.1", 200),
        ("10.1.2.3", 300),
        ("10.1.3.0", 200),
        ("203.0.113.7", 400),
        ("203.0.113.6", 0),
        ("11.0.0.0", 0),
        ("0.0.0.0", 0),
        ("2001:db8::1", 500),
        ("2001:db8:1::1", 600),
        ("2001:db8:2::1", 500),
        ("2a0f:ffff::1", MAX_ENCODABLE_ASN),
        ("2001:db9::", 0),
        ("::", 0),
        ("::ffff:10.1.2.3", 300),
        ("::10.1.2.3", 0),
    ] {
        assert_eq!(map.lookup(ip(addr)), asn, "{addr}");
    }
}

#[test]
fn a_whole_family_or_everything_maps() {
    let map = Asmap::from_bytes(encode(&[(ip("0.0.0.0"), 0, 7)])).unwrap();
    assert_eq!(map.lookup(ip("1.2.3.4")), 7);
    assert_eq!(map.lookup(ip("2001:db8::1")), 0);
    let map = Asmap::from_bytes(encode(&[(ip("::"), 0, 9), (ip("1.0.0.0"), 8, 1)])).unwrap();
    assert_eq!(map.lookup(ip("2001:db8::1")), 9);
    assert_eq!(map.lookup(ip("2.0.0.0")), 9);
    assert_eq!(map.lookup(ip("1.0.0.0")), 1);
}

#[test]
fn default_is_returned_on_a_mismatch() {
    // DEFAULT 7; the first bit must be 1; RETURN 9.
    let file = pack(&assemble_bits(&[Default(7), Match(0b11), Return(9)]));
    let map = Asmap::from_bytes(file).unwrap();
    assert_eq!(map.lookup(ip("8000::")), 9);
    assert_eq!(map.lookup(ip("::1")), 7);
    assert_eq!(map.lookup(ip("1.2.3.4")), 7);
}

#[test]
fn every_cut_of_a_valid_file_is_refused() {
    let file = encode(&nested());
    assert!(file.len() > 20, "{} bytes", file.len());
    for len in 0..file.len() {
        assert!(Asmap::from_bytes(file[..len].to_vec()).is_err(), "{len}");
    }
}

#[test]
fn an_empty_file_is_refused() {
    let err = Asmap::from_bytes(Vec::new()).unwrap_err();
    assert!(matches!(err, AsmapError::Empty { .. }), "{err:?}");
    assert!(err.to_string().contains("get a fresh one"), "{err}");
}

#[test]
fn trailing_garbage_is_refused() {
    let file = encode(&nested());
    for extra in [0u8, 1, 0xff] {
        let mut longer = file.clone();
        longer.push(extra);
        assert!(Asmap::from_bytes(longer).is_err(), "{extra}");
    }
    // A set padding bit.
    let bits = assemble_bits(&[Return(1)]);
    assert_eq!(bits.len(), 17);
    let mut file = pack(&bits);
    Asmap::from_bytes(file.clone()).unwrap();
    file[2] |= 0x80;
    assert!(Asmap::from_bytes(file).is_err());
}

#[test]
fn a_jump_out_of_range_is_refused() {
    let valid = [Jump(17), Return(1), Return(2)];
    Asmap::from_bytes(pack(&assemble_bits(&valid))).unwrap();
    for jump in [18, 40, 1000] {
        let program = [Jump(jump), Return(1), Return(2)];
        assert!(Asmap::from_bytes(pack(&assemble_bits(&program))).is_err());
    }
    // Into the middle of an instruction, and jumps that cross.
    let program = [Jump(18), Return(1), Return(2), Return(3)];
    assert!(Asmap::from_bytes(pack(&assemble_bits(&program))).is_err());
}

#[test]
fn a_program_that_runs_off_its_end_or_input_is_refused() {
    for program in [
        // No RETURN.
        vec![Match(0b11)],
        vec![Default(5)],
        // The 1 side of the jump has no code.
        vec![Jump(17), Return(1)],
        // 17 full matches read 136 bits, more than an address has.
        [vec![Match(0x1ff); 17], vec![Return(1)]].concat(),
        // Redundant forms Core refuses.
        vec![Default(5), Return(1)],
        vec![Default(5), Default(6), Match(0b11), Return(1)],
        vec![Match(0b101), Match(0b11), Return(1)],
    ] {
        let file = pack(&assemble_bits(&program));
        assert!(Asmap::from_bytes(file).is_err(), "{program:?}");
    }
    // 16 full matches are the whole address: valid.
    let program = [vec![Match(0x1ff); 16], vec![Return(1)]].concat();
    Asmap::from_bytes(pack(&assemble_bits(&program))).unwrap();
}

#[test]
fn file_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.asmap");
    let err = Asmap::from_file(&missing).unwrap_err();
    assert!(matches!(err, AsmapError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.asmap"), "{err}");

    let bad = dir.path().join("bad.asmap");
    std::fs::write(&bad, [0xff; 10]).unwrap();
    let err = Asmap::from_file(&bad).unwrap_err();
    assert!(matches!(err, AsmapError::Invalid { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("bad.asmap") && text.contains("ASN diversity"),
        "{text}"
    );

    let good = dir.path().join("good.asmap");
    std::fs::write(&good, encode(&nested())).unwrap();
    let map = Asmap::from_file(&good).unwrap();
    assert_eq!(map.clone().lookup(ip("10.1.2.3")), 300);
    assert!(format!("{map:?}").contains("bytes"));
}

#[test]
fn an_oversized_file_is_refused_before_checking() {
    let err = Asmap::from_bytes(vec![0; super::MAX_ASMAP_BYTES + 1]).unwrap_err();
    assert!(matches!(err, AsmapError::TooLarge { .. }), "{err:?}");
}

fn any_prefix() -> impl Strategy<Value = (IpAddr, u8, u32)> {
    let asn = prop_oneof![1..=5u32, 1..=MAX_ENCODABLE_ASN];
    // Prefixes clustered so they nest and share bits.
    let v4 = (0..4u8, any::<[u8; 3]>(), 0..=32u8)
        .prop_map(|(a, [b, c, d], len)| (IpAddr::from([10 + a, b % 4, c, d]), len));
    let v6 = (0..4u16, any::<u16>(), any::<u64>(), 0..=128u8).prop_map(|(a, b, c, len)| {
        let bits = (u128::from(0x2001_0db8u32 + u32::from(a)) << 96)
            | (u128::from(b % 8) << 80)
            | u128::from(c);
        (IpAddr::from(bits.to_be_bytes()), len)
    });
    (prop_oneof![v4, v6], asn).prop_map(|((ip, len), asn)| (ip, len, asn))
}

fn any_address() -> impl Strategy<Value = IpAddr> {
    let v4 =
        (0..5u8, any::<[u8; 3]>()).prop_map(|(a, [b, c, d])| IpAddr::from([10 + a, b % 4, c, d]));
    let v6 = (0..5u16, any::<u16>(), any::<u64>()).prop_map(|(a, b, c)| {
        let bits = (u128::from(0x2001_0db8u32 + u32::from(a)) << 96)
            | (u128::from(b % 8) << 80)
            | u128::from(c);
        IpAddr::from(bits.to_be_bytes())
    });
    prop_oneof![
        v4,
        v6,
        any::<u128>().prop_map(|b| IpAddr::from(b.to_be_bytes()))
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random prefix lists, encoded, look addresses up as a naive longest-prefix match.
    #[test]
    fn round_trip_matches_naive_longest_prefix(
        prefixes in proptest::collection::vec(any_prefix(), 1..40),
        addrs in proptest::collection::vec(any_address(), 1..60),
    ) {
        // The prefixes' own addresses too, so every prefix is hit.
        let mut all = addrs.clone();
        all.extend(prefixes.iter().map(|p| p.0));
        check_asmap_round_trip(&prefixes, &all);
        for &a in &all {
            prop_assert!(naive_lookup(&prefixes, a) <= MAX_ENCODABLE_ASN);
        }
    }
}

#[test]
fn remembered_lookups_are_the_lookups() {
    let asmap = Asmap::from_bytes(encode(&nested())).unwrap();
    let ips: Vec<IpAddr> = ["10.1.2.3", "10.200.0.1", "192.0.2.1", "2001:db8::1", "::1"]
        .iter()
        .map(|s| ip(s))
        .collect();
    let expected: Vec<u32> = ips.iter().map(|&a| asmap.lookup(a)).collect();
    assert_eq!(asmap.lookup_many(ips.iter().copied()), expected);
    assert_eq!(
        asmap.clone().lookup_many(ips.iter().copied()),
        expected,
        "from the memo"
    );
}
