//! Arbitrary bytes through the importer (`dump::read`), with a round trip for every peer
//! it accepts: the address's text parses back to the same address, and the dump line
//! `format_line` writes for the peer's figures
//! - follows the grammar of SPEC §8 (12 tokens, `NN.NN%` percentages, a quoted agent),
//! - parses back to the same figures (percentages to the 0.01% the line carries, the
//!   agent without the whitespace and quotes the format drops),
//! - and is written again identically from what it parsed to.
#![no_main]

use dnsseeder::addr::PeerAddr;
use dnsseeder::dump;
use dnsseeder::testkit::check_dump_line;
use libfuzzer_sys::fuzz_target;

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
            check_dump_line(&peer.addr, f);
        }
    }
});
