//! What a hostile peer says over the v2 (BIP324) transport, through the probe's whole
//! conversation (`p2p::converse` with `Transport::V2`, its key fixed) over an in-memory
//! `Conn`, after the peer's side of the handshake made in memory (`testkit::v2`).
//!
//! Input layout: byte 0 holds flags, the rest is the peer's side after the point the
//! flags pick.
//! - bits 0..2: where the rest goes: after the peer's key (as its garbage), after its
//!   version packet (as the encrypted stream), or as records the harness encrypts into
//!   packets, after the version packet or after the peer's `version` and `verack`:
//!   `[command][flags][len u16 LE][payload]`, where record flag bit 0 makes a decoy, bit 1
//!   the long message type, bit 2 a length field that lies over the cap, bit 3 a spoiled
//!   tag, bit 4 contents taken whole from the payload.
//! - bits 2..5: how many bytes one read returns at most (1 to unlimited).
//! - bit 5: the probe does not send `getaddr`.
//! - bit 6: the peer's handshake carries garbage and a decoy packet.
//!
//! Checked (`testkit::v2::check_v2_conversation`): no panic; failures only closed /
//! v2-handshake / oversize / protocol; no read buffer larger than the largest accepted
//! packet; the probe stops within one read buffer of a lying length; everything it sent
//! after its key is its expected handshake and then packets that decrypt; bytes outside
//! the session never complete a handshake.
#![no_main]

use dnsseeder::testkit::v2::fuzz_v2;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_v2(data));
