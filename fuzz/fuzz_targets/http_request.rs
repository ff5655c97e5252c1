//! What a client sends to the metrics endpoint (`--metrics-listen`), through its request
//! head parser (`metrics::http`), whole and in pieces, with the checks of
//! `testkit::http`.
//!
//! Input layout: byte 0 picks how many bytes each `HeadReader::push` gets (1 to
//! unlimited); the rest is the request.
#![no_main]

use dnsseeder::testkit::http::check_http_head;
use libfuzzer_sys::fuzz_target;

const CHUNKS: [usize; 8] = [1, 2, 3, 5, 8, 64, 1000, usize::MAX];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let _ = check_http_head(rest, CHUNKS[usize::from(flags) % CHUNKS.len()]);
});
