//! Answer sets: the good peers for one service mask, split by family and grouped by
//! netgroup, and the random, netgroup-diverse choice of the addresses of one answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::seq::SliceRandom;
use rand::{Rng, RngExt};

/// Most address records in one answer.
pub const MAX_ANSWERS: usize = 30;

/// The peers that may be served for one service mask, pre-grouped by netgroup
/// (/16 for IPv4, /32 for IPv6) so that building an answer costs no allocation.
#[derive(Debug, Clone, Default)]
pub struct AnswerSet {
    v4: Grouped<Ipv4Addr>,
    v6: Grouped<Ipv6Addr>,
}

impl AnswerSet {
    /// Builds the set from peer addresses in any order; duplicates are removed and
    /// IPv4-mapped IPv6 addresses count as IPv4.
    pub fn new(peers: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for ip in peers {
            match ip.to_canonical() {
                IpAddr::V4(a) => v4.push(a),
                IpAddr::V6(a) => v6.push(a),
            }
        }
        Self {
            v4: Grouped::new(v4, |a| u64::from(a.to_bits() >> 16)),
            v6: Grouped::new(v6, |a| (a.to_bits() >> 96) as u64),
        }
    }

    /// Returns the number of IPv4 peers.
    pub fn ipv4_len(&self) -> usize {
        self.v4.addrs.len()
    }

    /// Returns the number of IPv6 peers.
    pub fn ipv6_len(&self) -> usize {
        self.v6.addrs.len()
    }

    /// Returns the number of distinct IPv4 netgroups (/16).
    pub fn ipv4_netgroups(&self) -> usize {
        self.v4.starts.len()
    }

    /// Returns the number of distinct IPv6 netgroups (/32).
    pub fn ipv6_netgroups(&self) -> usize {
        self.v6.starts.len()
    }

    /// Fills `out` (at most [`MAX_ANSWERS`] of it) with distinct random IPv4 peers and
    /// returns how many were written: first one from each of as many netgroups as fit,
    /// then, while slots remain, more from netgroups already used.
    pub fn pick_ipv4<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [Ipv4Addr]) -> usize {
        self.v4.pick(rng, out)
    }

    /// Fills `out` with distinct random IPv6 peers, as [`AnswerSet::pick_ipv4`] does.
    pub fn pick_ipv6<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [Ipv6Addr]) -> usize {
        self.v6.pick(rng, out)
    }
}

/// Addresses sorted by netgroup, with the index where each netgroup starts.
#[derive(Debug, Clone)]
struct Grouped<T> {
    addrs: Vec<T>,
    starts: Vec<usize>,
}

impl<T> Default for Grouped<T> {
    fn default() -> Self {
        Self {
            addrs: Vec::new(),
            starts: Vec::new(),
        }
    }
}

impl<T: Copy + Ord> Grouped<T> {
    fn new(mut addrs: Vec<T>, netgroup: impl Fn(T) -> u64) -> Self {
        addrs.sort_unstable_by_key(|&a| (netgroup(a), a));
        addrs.dedup();
        let starts = (0..addrs.len())
            .filter(|&i| i == 0 || netgroup(addrs[i - 1]) != netgroup(addrs[i]))
            .collect();
        Self { addrs, starts }
    }

    fn group_range(&self, group: usize) -> std::ops::Range<usize> {
        let end = self
            .starts
            .get(group + 1)
            .copied()
            .unwrap_or(self.addrs.len());
        self.starts[group]..end
    }

    fn pick<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [T]) -> usize {
        let want = out.len().min(MAX_ANSWERS).min(self.addrs.len());
        if want == 0 {
            return 0;
        }
        // Indices into `addrs`; the first `diverse` come from distinct netgroups.
        let mut chosen = [0usize; MAX_ANSWERS];
        let diverse = want.min(self.starts.len());
        sample_distinct(rng, self.starts.len(), &mut chosen[..diverse]);
        chosen[..diverse].shuffle(rng);
        for slot in &mut chosen[..diverse] {
            *slot = rng.random_range(self.group_range(*slot));
        }
        fill_distinct(rng, self.addrs.len(), diverse, &mut chosen[..want]);
        chosen[diverse..want].shuffle(rng);
        for (o, &i) in out.iter_mut().zip(&chosen[..want]) {
            *o = self.addrs[i];
        }
        want
    }
}

/// Writes `out.len()` distinct indices below `len` (Floyd's algorithm; order not random).
fn sample_distinct<R: Rng + ?Sized>(rng: &mut R, len: usize, out: &mut [usize]) {
    let amount = out.len();
    for (k, j) in (len - amount..len).enumerate() {
        let t = rng.random_range(0..=j);
        out[k] = if out[..k].contains(&t) { j } else { t };
    }
}

/// Completes `chosen[..first]` (distinct indices below `len`) to `chosen.len()` distinct
/// indices, chosen at random among the rest.
fn fill_distinct<R: Rng + ?Sized>(rng: &mut R, len: usize, first: usize, chosen: &mut [usize]) {
    let mut filled = first;
    let mut tries = 0;
    while filled < chosen.len() && tries < 4 * MAX_ANSWERS {
        tries += 1;
        let i = rng.random_range(0..len);
        if !chosen[..filled].contains(&i) {
            chosen[filled] = i;
            filled += 1;
        }
    }
    // Few candidates left (or a poor generator): take the next free ones from a random start.
    let mut i = rng.random_range(0..len);
    while filled < chosen.len() {
        if !chosen[..filled].contains(&i) {
            chosen[filled] = i;
            filled += 1;
        }
        i = (i + 1) % len;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    use std::collections::HashSet;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn groups_by_family_and_netgroup() {
        let set = AnswerSet::new([
            v4(1, 2, 3, 4),
            v4(1, 2, 9, 9),
            v4(1, 3, 0, 1),
            v4(1, 2, 3, 4),
            "::ffff:5.6.7.8".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            "2001:db8:ffff::1".parse().unwrap(),
            "2001:db9::1".parse().unwrap(),
        ]);
        assert_eq!((set.ipv4_len(), set.ipv4_netgroups()), (4, 3));
        assert_eq!((set.ipv6_len(), set.ipv6_netgroups()), (3, 2));
    }

    #[test]
    fn one_netgroup_still_fills_the_answer() {
        let set = AnswerSet::new((0..200).map(|i| v4(127, 0, (i / 250) as u8, (i % 250) as u8)));
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = [Ipv4Addr::UNSPECIFIED; MAX_ANSWERS];
        assert_eq!(set.pick_ipv4(&mut rng, &mut out), 30);
        assert_eq!(out.iter().collect::<HashSet<_>>().len(), 30);
    }

    #[test]
    fn every_netgroup_before_repeating() {
        // 7 netgroups of unequal sizes, 100 peers in all.
        let mut peers = Vec::new();
        for (g, n) in [
            (1u8, 70usize),
            (2, 10),
            (3, 10),
            (4, 5),
            (5, 3),
            (6, 1),
            (7, 1),
        ] {
            peers.extend((0..n).map(|i| v4(10, g, 0, i as u8)));
        }
        let set = AnswerSet::new(peers);
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..200 {
            let mut out = [Ipv4Addr::UNSPECIFIED; MAX_ANSWERS];
            let n = set.pick_ipv4(&mut rng, &mut out);
            assert_eq!(n, 30);
            assert_eq!(out.iter().collect::<HashSet<_>>().len(), 30, "distinct");
            let groups: Vec<u8> = out[..7].iter().map(|a| a.octets()[1]).collect();
            assert_eq!(
                groups.iter().collect::<HashSet<_>>().len(),
                7,
                "first 7 diverse"
            );
        }
    }

    #[test]
    fn many_netgroups_give_distinct_netgroups() {
        let set = AnswerSet::new((0..5000u32).map(|i| IpAddr::V4(Ipv4Addr::from(i << 12))));
        assert_eq!(set.ipv4_netgroups(), 313);
        let mut rng = SmallRng::seed_from_u64(3);
        let mut out = [Ipv4Addr::UNSPECIFIED; MAX_ANSWERS];
        assert_eq!(set.pick_ipv4(&mut rng, &mut out), 30);
        let groups: HashSet<u32> = out.iter().map(|a| a.to_bits() >> 16).collect();
        assert_eq!(groups.len(), 30);
    }

    #[test]
    fn small_sets_are_returned_whole() {
        let set = AnswerSet::new(
            ["2001:db8::1", "2001:db8::2", "2001:db9::1"].map(|s| s.parse().unwrap()),
        );
        let mut rng = SmallRng::seed_from_u64(5);
        let mut out = [Ipv6Addr::UNSPECIFIED; MAX_ANSWERS];
        assert_eq!(set.pick_ipv6(&mut rng, &mut out), 3);
        assert_eq!(out[..3].iter().collect::<HashSet<_>>().len(), 3);
        assert_eq!(set.pick_ipv4(&mut rng, &mut [Ipv4Addr::UNSPECIFIED; 30]), 0);
        // A shorter output slice limits the count.
        assert_eq!(set.pick_ipv6(&mut rng, &mut out[..2]), 2);
    }

    #[test]
    fn choice_is_spread_over_the_whole_set() {
        let set = AnswerSet::new((0..40).map(|i| v4(127, 0, 0, i)));
        let mut rng = SmallRng::seed_from_u64(9);
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let mut out = [Ipv4Addr::UNSPECIFIED; MAX_ANSWERS];
            set.pick_ipv4(&mut rng, &mut out);
            seen.extend(out);
        }
        assert_eq!(seen.len(), 40);
    }
}
