//! Arbitrary bytes through the importer (`dump::read`), with a round trip for every peer
//! it accepts: the address's text parses back to the same address, and the dump line
//! `format_line` writes for the peer's figures
//! - follows the grammar of SPEC §8 (12 tokens, `NN.NN%` percentages, a quoted agent),
//! - parses back to the same figures (percentages to the 0.01% the line carries, the
//!   agent without the whitespace and quotes the format drops),
//! - and is written again identically from what it parsed to.
#![no_main]

use dnsseeder::addr::PeerAddr;
use dnsseeder::dump::{self, format_line, parse_line};
use dnsseeder::store::DumpFigures;
use libfuzzer_sys::fuzz_target;

/// Half of the 0.01% a dump line shows, as a fraction, plus room for float error.
const PCT_TOLERANCE: f64 = 0.000_050_000_1;

/// The figures a dump line carries exactly.
fn numbers(f: &DumpFigures) -> (bool, i64, i64, u64, i64) {
    (
        f.good,
        f.last_success,
        f.start_height,
        f.services,
        f.version,
    )
}

fn is_percentage(token: &str) -> bool {
    let Some(number) = token.strip_suffix('%') else {
        return false;
    };
    let Some((int, frac)) = number.split_once('.') else {
        return false;
    };
    (1..=3).contains(&int.len())
        && frac.len() == 2
        && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        && number.parse::<f64>().is_ok_and(|v| v <= 100.0)
}

fn check_line(addr: &PeerAddr, f: &DumpFigures) {
    let line = format_line(addr, f);
    let tokens: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(tokens.len(), 12, "{line}");
    assert_eq!(tokens[0], addr.to_string());
    assert!(matches!(tokens[1], "0" | "1"), "{line}");
    assert!(tokens[3..8].iter().all(|t| is_percentage(t)), "{line}");
    assert!(tokens[9].len() >= 8, "{line}");
    assert!(
        tokens[11].len() >= 2 && tokens[11].starts_with('"') && tokens[11].ends_with('"'),
        "{line}"
    );

    let back = parse_line(&line)
        .unwrap_or_else(|e| panic!("{line:?} does not parse back: {e:?}"))
        .expect("a data line");
    assert_eq!(back.addr, *addr);
    let g = back.figures.expect("figures");
    assert_eq!(numbers(&g), numbers(f));
    let agent: String = f
        .user_agent
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '"' && !c.is_control())
        .collect();
    assert_eq!(g.user_agent, agent);
    for (a, b) in g.reliability.iter().zip(&f.reliability) {
        assert!((a - b).abs() <= PCT_TOLERANCE, "{a} vs {b}");
    }
    assert_eq!(format_line(&back.addr, &g), line, "not a fixed point");
}

fuzz_target!(|data: &[u8]| {
    let file = dump::read(data).expect("reading from memory cannot fail");
    let lines = data.split(|&b| b == b'\n').count();
    let skipped: usize = file.skipped.values().map(|(n, _)| n).sum();
    assert!(file.peers.len() + skipped <= lines);
    for (count, first) in file.skipped.values() {
        assert!(*count >= 1 && *first >= 1 && *first <= lines);
    }
    for peer in &file.peers {
        let text = peer.addr.to_string();
        assert_eq!(text.parse::<PeerAddr>().ok(), Some(peer.addr), "{text}");
        if let Some(f) = &peer.figures {
            check_line(&peer.addr, f);
        }
    }
});
