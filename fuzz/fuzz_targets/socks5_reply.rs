//! What a hostile or broken SOCKS5 proxy answers, through the whole exchange
//! (`socks5::connect` over an in-memory `Conn`) and through `reply_length` /
//! `check_reply` directly, with the checks of `testkit::socks5`.
//!
//! Input layout: byte 0 holds flags, the rest is the proxy's side of the exchange.
//! - bit 0: a valid method reply `[5, 0]` is said first, so the CONNECT reply is reached.
//! - bits 1..3: the target (an onion name, an I2P name, IPv4, IPv6).
//! - bits 3..6: how many bytes one read returns at most (1 to unlimited).
#![no_main]

use dnsseeder::socks5::Target;
use dnsseeder::testkit::socks5::{check_socks5_connect, check_socks5_reply};
use libfuzzer_sys::fuzz_target;

const CHUNKS: [usize; 8] = [1, 2, 3, 4, 5, 7, 10, usize::MAX];

fn target(pick: u8) -> Target {
    match pick % 4 {
        0 => Target::Domain(
            "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion".to_owned(),
            8333,
        ),
        1 => Target::Domain(
            "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst.b32.i2p".to_owned(),
            0,
        ),
        2 => Target::Ip("203.0.113.7:8333".parse().expect("an address")),
        _ => Target::Ip("[2001:db8::7]:8333".parse().expect("an address")),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    check_socks5_reply(rest);
    let mut script = if flags & 1 != 0 {
        vec![5, 0]
    } else {
        Vec::new()
    };
    script.extend_from_slice(rest);
    let chunk = CHUNKS[usize::from(flags >> 3) % CHUNKS.len()];
    let _ = check_socks5_connect(&script, chunk, &target(flags >> 1));
});
