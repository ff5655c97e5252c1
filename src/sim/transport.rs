//! Which transport a client speaks, told from its first 16 bytes as Bitcoin Core tells it.
//!
//! A node that accepts both transports cannot know which one an inbound client chose until
//! bytes arrive: a v1 client opens with a `version` header (the network magic, then
//! `version` NUL-padded to 12 bytes), a BIP324 client with its 64-byte public key, which is
//! uniformly random. Core compares the first 16 bytes with that v1 prefix (BIP324,
//! "V1_PREFIX_LEN"). The simulated nodes apply the same test to decide what to speak, and
//! every node applies it to what it reads, only to count the sessions of each kind
//! ([`super::SimNetwork::sessions`]), so a test can tell whether a prober tried v2 there.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use bitcoin::p2p::Magic;

/// Bytes of a client's opening that tell v1 from v2.
pub(crate) const V1_PREFIX_LEN: usize = 16;
/// Bytes 4..16 of a v1 `version` header: the command, NUL-padded.
const VERSION_COMMAND: [u8; 12] = *b"version\0\0\0\0\0";

/// What a client's first 16 bytes say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// A v1 `version` header with the network's magic.
    V1,
    /// A v1 `version` header with another network's magic (Core disconnects at once).
    ForeignV1,
    /// Anything else: the start of a BIP324 key.
    V2,
}

/// How a client of the network whose magic is `magic` opened, from its first 16 bytes.
pub(crate) fn opening(first: &[u8; V1_PREFIX_LEN], magic: Magic) -> Opening {
    if !is_version_header(first) {
        Opening::V2
    } else if first[..4] == magic.to_bytes() {
        Opening::V1
    } else {
        Opening::ForeignV1
    }
}

/// Whether `first` opens a v1 `version` header, of whatever magic.
fn is_version_header(first: &[u8; V1_PREFIX_LEN]) -> bool {
    first[4..] == VERSION_COMMAND
}

/// Sessions one node saw, by transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sessions {
    /// Connections that opened with a v1 `version` header (of any magic).
    pub v1: u64,
    /// Connections whose first 16 bytes were not a v1 `version` header: v2 attempts
    /// (BIP324 keys), and also garbage.
    pub v2_attempts: u64,
}

/// The counters behind [`Sessions`], one per node.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    v1: AtomicU64,
    v2: AtomicU64,
}

impl Tally {
    /// Counts one connection that opened with `first`.
    fn count(&self, first: &[u8; V1_PREFIX_LEN]) {
        let counter = if is_version_header(first) {
            &self.v1
        } else {
            &self.v2
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub(crate) fn sessions(&self) -> Sessions {
        Sessions {
            v1: self.v1.load(Ordering::Relaxed),
            v2_attempts: self.v2.load(Ordering::Relaxed),
        }
    }
}

/// Watches the bytes a connection reads and counts the connection in its node's [`Tally`]
/// once 16 have arrived (a connection that sends fewer is not counted).
#[derive(Debug)]
pub(crate) struct Sniff<'a> {
    first: Cell<[u8; V1_PREFIX_LEN]>,
    seen: Cell<usize>,
    tally: &'a Tally,
}

impl<'a> Sniff<'a> {
    pub(crate) fn new(tally: &'a Tally) -> Self {
        Sniff {
            first: Cell::new([0; V1_PREFIX_LEN]),
            seen: Cell::new(0),
            tally,
        }
    }

    /// Takes note of `bytes`, the next ones read.
    pub(crate) fn feed(&self, bytes: &[u8]) {
        let seen = self.seen.get();
        if seen >= V1_PREFIX_LEN || bytes.is_empty() {
            return;
        }
        let take = bytes.len().min(V1_PREFIX_LEN - seen);
        let mut first = self.first.get();
        first[seen..seen + take].copy_from_slice(&bytes[..take]);
        self.first.set(first);
        self.seen.set(seen + take);
        if seen + take == V1_PREFIX_LEN {
            self.tally.count(&first);
        }
    }
}
