//! The writer's memory of gossip it already wrote, which drops mentions that would change
//! nothing before they reach SQLite (see [`KnownGossip`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::{NewPeer, Source};
use crate::addr::PeerAddr;

/// Gossiped addresses remembered per generation: 7/8 of 65,536 hash buckets, so a
/// generation's map never grows past them (65,536 x 57 bytes = 3.7 MB; two are kept).
pub const KNOWN_GOSSIP_GENERATION: usize = 57_344;

/// The gossiped addresses the writer knows to be in the table, each with the newest gossip
/// timestamp written for it (a lower bound of its `last_seen`) and the source groups it
/// wrote as announcers (a subset of its `source_bits`).
///
/// Every answering peer gossips dozens to a thousand addresses, nearly all of them already
/// known; each used to cost an upsert (format the address, seek the unique index, compare)
/// that changed nothing unless the timestamp was newer. Profiling the crawl bench showed these
/// upserts taking three quarters of the writer's time. A mention is now dropped before SQLite
/// when the remembered timestamp is at least as new and its announcer is already counted (the
/// upsert would have been a no-op), and repeated mentions within a batch are merged (first
/// mention's services and announcer, newest timestamp, every announcer's bit), which is what
/// the upserts in a row would have written. Rows leave the table only by
/// eviction and pruning, both in the writer: eviction reports the addresses it deleted and
/// exactly those are forgotten (at `--max-addresses` every batch that inserts rows evicts,
/// so forgetting everything left the filter nearly empty there); pruning, hourly, forgets
/// everything. Bounded: two generations of [`KNOWN_GOSSIP_GENERATION`] addresses, the older
/// dropped when the newer fills.
///
/// Its tables and the filter's scratch space are cleared, never freed, and the writer reuses
/// its batch: each large block freed raises glibc's mmap threshold, after which blocks of that
/// size stay resident in its arenas (peak RSS under gossip: docs/PERFORMANCE.md, Scale).
#[derive(Debug, Default)]
pub(super) struct KnownGossip {
    current: HashMap<PeerAddr, Written>,
    previous: HashMap<PeerAddr, Written>,
    /// Scratch for [`KnownGossip::filter`]: the first mention of each address in a batch.
    first: HashMap<PeerAddr, usize>,
    /// Scratch for [`KnownGossip::filter`]: the mentions kept.
    kept: Vec<NewPeer>,
}

/// What the writer wrote of an address: its newest gossip timestamp and the bits of its
/// announcers.
#[derive(Debug, Clone, Copy)]
struct Written {
    seen: i64,
    announced_by: u64,
}

impl Written {
    /// Whether writing `peer` would change nothing.
    fn covers(self, peer: &NewPeer) -> bool {
        peer.seen <= self.seen && peer.announced_by & !self.announced_by == 0
    }
}

impl KnownGossip {
    fn written(&self, addr: &PeerAddr) -> Option<Written> {
        self.current
            .get(addr)
            .or_else(|| self.previous.get(addr))
            .copied()
    }

    /// Drops the gossiped addresses that would change nothing and merges repeats; other
    /// sources (seeds) pass untouched. Returns how many were dropped.
    pub(super) fn filter(&mut self, learned: &mut Vec<NewPeer>) -> usize {
        let before = learned.len();
        let KnownGossip {
            current,
            previous,
            first,
            kept,
        } = self;
        first.clear();
        kept.clear();
        for peer in learned.drain(..) {
            if peer.source != Source::Gossip {
                kept.push(peer);
                continue;
            }
            let written = current.get(&peer.addr).or_else(|| previous.get(&peer.addr));
            if written.is_some_and(|w| w.covers(&peer)) {
                continue;
            }
            merge(first, kept, peer);
        }
        // `learned` takes the kept mentions; the scratch keeps the other buffer.
        std::mem::swap(learned, kept);
        before - learned.len()
    }

    /// Remembers the gossiped addresses of a committed batch.
    pub(super) fn remember(&mut self, learned: &[NewPeer]) {
        for peer in learned.iter().filter(|p| p.source == Source::Gossip) {
            let written = self.written(&peer.addr).map_or(
                Written {
                    seen: peer.seen,
                    announced_by: peer.announced_by,
                },
                |w| Written {
                    seen: w.seen.max(peer.seen),
                    announced_by: w.announced_by | peer.announced_by,
                },
            );
            if self.current.len() >= KNOWN_GOSSIP_GENERATION {
                std::mem::swap(&mut self.previous, &mut self.current);
                self.current.clear();
            }
            self.current.insert(peer.addr, written);
        }
    }

    /// Forgets the given addresses (their rows were deleted).
    pub(super) fn forget_these(&mut self, addrs: &[PeerAddr]) {
        for addr in addrs {
            self.current.remove(addr);
            self.previous.remove(addr);
        }
    }

    /// Forgets everything (rows were deleted).
    pub(super) fn forget(&mut self) {
        self.current.clear();
        self.previous.clear();
    }
}

/// Keeps the first mention of an address in a batch, with the newest timestamp of all and
/// every announcer's bit.
fn merge(first: &mut HashMap<PeerAddr, usize>, kept: &mut Vec<NewPeer>, peer: NewPeer) {
    match first.entry(peer.addr) {
        Entry::Occupied(e) => {
            let earlier = &mut kept[*e.get()];
            earlier.seen = earlier.seen.max(peer.seen);
            earlier.announced_by |= peer.announced_by;
        }
        Entry::Vacant(e) => {
            e.insert(kept.len());
            kept.push(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crawler::{Batch, Policy, SourceGroup};
    use crate::store::Store;

    fn gossip(addr: &str, services: u64, seen: i64) -> NewPeer {
        gossip_from(addr, services, seen, "9.9.9.9:8333")
    }

    fn gossip_from(addr: &str, services: u64, seen: i64, announcer: &str) -> NewPeer {
        let announcer = SourceGroup::of(&announcer.parse().unwrap());
        NewPeer::gossiped(addr.parse().unwrap(), services, seen, announcer)
    }

    #[test]
    fn known_gossip_drops_what_would_change_nothing() {
        let mut known = KnownGossip::default();
        known.remember(&[gossip("1.1.1.1:8333", 9, 1000)]);
        let seed = NewPeer::unannounced("1.1.1.1:8333".parse().unwrap(), 5, Source::Seed);
        let other = "7.7.7.7:8333";
        let mut learned = vec![
            gossip("1.1.1.1:8333", 9, 1000), // not newer, same announcer: dropped
            gossip("1.1.1.1:8333", 9, 999),  // older: dropped
            seed.clone(),                    // not gossip: kept as is
            gossip("2.2.2.2:8333", 1, 50),   // new: kept, first mention's services
            gossip("2.2.2.2:8333", 8, 70),   // repeat: merged, newest time
            gossip_from("2.2.2.2:8333", 8, 60, other), // another announcer: merged
            gossip("1.1.1.1:8333", 9, 1001), // newer: kept
            gossip_from("3.3.3.3:8333", 9, 10, other),
            gossip_from("1.1.1.1:8333", 9, 10, other), // older, but a new announcer: merged
        ];
        assert_eq!(known.filter(&mut learned), 5);
        let bits = |a: &str| SourceGroup::of(&a.parse().unwrap()).bit();
        let kept: Vec<(String, u64, i64, Source, u64)> = learned
            .iter()
            .map(|p| {
                (
                    p.addr.to_string(),
                    p.services,
                    p.seen,
                    p.source,
                    p.announced_by,
                )
            })
            .collect();
        let (ours, theirs) = (bits("9.9.9.9:8333"), bits(other));
        assert_ne!(ours, theirs, "the test's announcers need distinct bits");
        assert_eq!(
            kept,
            [
                ("1.1.1.1:8333".to_owned(), 0, 5, Source::Seed, 0),
                (
                    "2.2.2.2:8333".to_owned(),
                    1,
                    70,
                    Source::Gossip,
                    ours | theirs
                ),
                (
                    "1.1.1.1:8333".to_owned(),
                    9,
                    1001,
                    Source::Gossip,
                    ours | theirs
                ),
                ("3.3.3.3:8333".to_owned(), 9, 10, Source::Gossip, theirs),
            ]
        );
        known.forget();
        let mut again = vec![gossip("1.1.1.1:8333", 9, 1000)];
        assert_eq!(
            known.filter(&mut again),
            0,
            "forgotten addresses pass again"
        );
    }

    #[test]
    fn known_gossip_keeps_two_bounded_generations() {
        let mut known = KnownGossip::default();
        let many: Vec<NewPeer> = (0..KNOWN_GOSSIP_GENERATION as u32 * 2 + 10)
            .map(|i| {
                gossip(
                    &format!("{}:8333", std::net::Ipv4Addr::from((i + 1) << 8)),
                    1,
                    7,
                )
            })
            .collect();
        known.remember(&many);
        // Neither map grew past 65,536 buckets (what the memory bound assumes).
        assert!(known.current.capacity() <= KNOWN_GOSSIP_GENERATION);
        assert!(known.previous.capacity() <= KNOWN_GOSSIP_GENERATION);
        assert!(known.previous.len() == KNOWN_GOSSIP_GENERATION);
        // The newest are remembered, the oldest forgotten.
        let mut last = vec![many[many.len() - 1].clone()];
        assert_eq!(known.filter(&mut last), 1);
        let mut first = vec![many[0].clone()];
        assert_eq!(known.filter(&mut first), 0);
    }

    /// The rows the gossip columns end up with.
    fn gossip_rows(store: &Store) -> Vec<String> {
        let mut stmt = store
            .connection()
            .prepare(
                "SELECT address || ' ' || services || ' ' || source || ' ' || last_seen \
                 || ' ' || source_bits || ' ' || evidence || ' ' || source_rank \
                 FROM peers ORDER BY address",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn filtered_gossip_writes_the_same_rows_as_every_mention() {
        gossip_equivalence(1_000_000, 11);
    }

    /// At the address cap every batch that inserts rows evicts; the filter forgets exactly
    /// the evicted addresses, so an address evicted and gossiped again is written again.
    #[test]
    fn filtered_gossip_writes_the_same_rows_at_the_address_cap() {
        gossip_equivalence(150, 12);
    }

    /// Commits the same random gossip with and without [`KnownGossip`] (as the writer uses
    /// it) into two stores capped at `max_addresses`; the rows must be identical.
    fn gossip_equivalence(max_addresses: u64, seed: u64) {
        use rand::{RngExt, SeedableRng};
        let policy = Policy {
            scale: 1.0,
            default_port: 8333,
            min_height: 0,
            allow_private: false,
            max_addresses,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut plain = Store::open(&dir.path().join("plain.db")).unwrap();
        let mut filtered = Store::open(&dir.path().join("filtered.db")).unwrap();
        let mut known = KnownGossip::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (mut skipped, mut evicted_total) = (0, 0);
        for round in 0..40 {
            // 300 mentions of 200 addresses by 3 announcers per batch: repeats within and
            // across batches, timestamps older and newer than what was written.
            let learned: Vec<NewPeer> = (0..300)
                .map(|_| {
                    let host = rng.random_range(1..200u32);
                    gossip_from(
                        &format!("{}:8333", std::net::Ipv4Addr::from(0x0808_0000 + host)),
                        rng.random_range(0..16u64),
                        1_700_000_000 + rng.random_range(0..10_000i64),
                        ["3.0.0.1:8333", "4.0.0.1:8333", "5.0.0.1:8333"][rng.random_range(0..3)],
                    )
                })
                .collect();
            let now = 1_700_100_000 + round;
            let batch = Batch {
                results: Vec::new(),
                learned: learned.clone(),
            };
            let expected = plain.commit_batch(&batch, &policy, now).unwrap();
            let mut batch = batch;
            skipped += known.filter(&mut batch.learned);
            let mut evicted = Vec::new();
            let summary = filtered
                .commit_batch_reporting(&batch, &policy, now, &mut evicted)
                .unwrap();
            assert_eq!(summary, expected, "round {round}");
            assert_eq!(evicted.len(), summary.evicted);
            evicted_total += summary.evicted;
            known.remember(&batch.learned);
            known.forget_these(&evicted);
            assert_eq!(gossip_rows(&plain), gossip_rows(&filtered), "round {round}");
        }
        assert!(
            skipped > 40 * 300 / 2,
            "most mentions are skipped ({skipped})"
        );
        if max_addresses < 200 {
            assert!(evicted_total > 40, "the cap evicted ({evicted_total})");
            assert_eq!(plain.count().unwrap(), max_addresses);
        }
    }
}
