//! Answer sets: the good peers for one service mask, split by family and grouped by
//! autonomous system (with `--asmap`) or netgroup, and the random, group-diverse choice of
//! the addresses of one answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::Rng;

use crate::asmap::Asmap;
use rand::seq::SliceRandom;

/// The group of each of `addrs` in an answer set: its ASN by `asmap` when it maps one,
/// else its `netgroup` (in a range of keys no ASN takes).
fn keys<T: Copy>(
    asmap: Option<&Asmap>,
    addrs: &[T],
    ip: impl Fn(T) -> IpAddr,
    netgroup: impl Fn(T) -> u64,
) -> Vec<u64> {
    let asns = match asmap {
        Some(m) => m.lookup_many(addrs.iter().map(|&a| ip(a))),
        None => vec![0; addrs.len()],
    };
    let key = |(&a, asn): (&T, u32)| match asn {
        0 => (1 << 40) | netgroup(a),
        asn => u64::from(asn),
    };
    addrs.iter().zip(asns).map(key).collect()
}

/// Most address records in one answer.
pub const MAX_ANSWERS: usize = 30;

/// Answers drawn in advance per family when a set is built (every cache refresh, a few
/// seconds): a query then copies one of them instead of drawing 30 peers at random from
/// a large set, whose scattered reads were the serving thread's largest cost. Over a
/// refresh period clients see up to 128 different answers, 3840 peer slots.
pub const PREBUILT_ANSWERS: usize = 128;

/// The peers that may be served for one service mask, pre-grouped by netgroup
/// (/16 for IPv4, /32 for IPv6) so that building an answer costs no allocation.
#[derive(Debug, Clone, Default)]
pub struct AnswerSet {
    v4: Grouped<Ipv4Addr>,
    v6: Grouped<Ipv6Addr>,
}

impl AnswerSet {
    /// Builds the set from peer addresses in any order, grouped by netgroup; duplicates
    /// are removed and IPv4-mapped IPv6 addresses count as IPv4.
    pub fn new(peers: impl IntoIterator<Item = IpAddr>) -> Self {
        Self::grouped(peers, None)
    }

    /// As [`AnswerSet::new`], grouped by autonomous system when `asmap` is given (an
    /// address it does not map, ASN 0, is grouped by its netgroup), so that an answer takes
    /// one address per ASN before it repeats one (SPEC §11).
    pub fn grouped(peers: impl IntoIterator<Item = IpAddr>, asmap: Option<&Asmap>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for ip in peers {
            match ip.to_canonical() {
                IpAddr::V4(a) => v4.push(a),
                IpAddr::V6(a) => v6.push(a),
            }
        }
        let v4_keys = keys(asmap, &v4, IpAddr::V4, |a| u64::from(a.to_bits() >> 16));
        let v6_keys = keys(asmap, &v6, IpAddr::V6, |a| (a.to_bits() >> 96) as u64);
        Self {
            v4: Grouped::new(v4_keys.into_iter().zip(v4).collect()),
            v6: Grouped::new(v6_keys.into_iter().zip(v6).collect()),
        }
    }

    /// The same peers with a fresh draw of prebuilt answers (for a refresh that found
    /// the source unchanged).
    pub fn redrawn(&self) -> Self {
        let mut set = self.clone();
        let mut rng = rand::rng();
        set.v4.prebuild(&mut rng);
        set.v6.prebuild(&mut rng);
        set
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
        self.v4.netgroups()
    }

    /// Returns the number of distinct IPv6 netgroups (/32).
    pub fn ipv6_netgroups(&self) -> usize {
        self.v6.netgroups()
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

    /// One of the [`PREBUILT_ANSWERS`] IPv4 answers drawn by [`AnswerSet::pick_ipv4`] when
    /// the set was built, chosen at random: the hot path of the DNS server.
    pub fn answer_ipv4<R: Rng + ?Sized>(&self, rng: &mut R) -> &[Ipv4Addr] {
        self.v4.prebuilt(rng)
    }

    /// One of the prebuilt IPv6 answers, as [`AnswerSet::answer_ipv4`].
    pub fn answer_ipv6<R: Rng + ?Sized>(&self, rng: &mut R) -> &[Ipv6Addr] {
        self.v6.prebuilt(rng)
    }
}

/// Addresses sorted by netgroup, with the index where each netgroup starts.
#[derive(Debug, Clone)]
struct Grouped<T> {
    addrs: Vec<T>,
    /// Where each netgroup starts in `addrs`, then `addrs.len()` (empty when `addrs` is).
    starts: Vec<u32>,
    /// [`PREBUILT_ANSWERS`] answers of `per_answer` addresses each, back to back.
    prebuilt: Vec<T>,
    per_answer: usize,
}

impl<T> Default for Grouped<T> {
    fn default() -> Self {
        Self {
            addrs: Vec::new(),
            starts: Vec::new(),
            prebuilt: Vec::new(),
            per_answer: 0,
        }
    }
}

impl<T: Copy + Ord> Grouped<T> {
    /// Groups addresses by the key each comes with (its ASN or netgroup).
    fn new(mut keyed: Vec<(u64, T)>) -> Self {
        keyed.sort_unstable();
        keyed.dedup();
        // Indices are u32: an answer set holds far fewer than 4 billion peers.
        keyed.truncate(u32::MAX as usize);
        let mut starts: Vec<u32> = (0..keyed.len())
            .filter(|&i| i == 0 || keyed[i - 1].0 != keyed[i].0)
            .map(|i| i as u32)
            .collect();
        let addrs: Vec<T> = keyed.into_iter().map(|(_, a)| a).collect();
        if !addrs.is_empty() {
            starts.push(addrs.len() as u32);
        }
        let mut grouped = Self {
            per_answer: addrs.len().min(MAX_ANSWERS),
            addrs,
            starts,
            prebuilt: Vec::new(),
        };
        grouped.prebuild(&mut rand::rng());
        grouped
    }

    fn prebuild<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let mut prebuilt = Vec::with_capacity(PREBUILT_ANSWERS * self.per_answer);
        if let Some(&first) = self.addrs.first() {
            let mut answer = [first; MAX_ANSWERS];
            for _ in 0..PREBUILT_ANSWERS {
                let n = self.pick(rng, &mut answer);
                prebuilt.extend_from_slice(&answer[..n]);
            }
        }
        self.prebuilt = prebuilt;
    }

    fn prebuilt<R: Rng + ?Sized>(&self, rng: &mut R) -> &[T] {
        if self.per_answer == 0 {
            return &[];
        }
        let start = below(rng, PREBUILT_ANSWERS) * self.per_answer;
        &self.prebuilt[start..start + self.per_answer]
    }

    fn netgroups(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    fn pick<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [T]) -> usize {
        let want = out.len().min(MAX_ANSWERS).min(self.addrs.len());
        if want == 0 {
            return 0;
        }
        // The first `diverse` come from distinct netgroups, which are drawn in random
        // order, so the answer's order is random too.
        let diverse = want.min(self.netgroups());
        // Indices into `addrs` of the chosen peers.
        let mut chosen = [0u32; MAX_ANSWERS];
        self.one_per_netgroup(rng, &mut chosen[..diverse], &mut out[..diverse]);
        if diverse < want {
            self.fill_rest(rng, diverse, &mut chosen[..want], &mut out[..want]);
        }
        want
    }

    /// Fills `out` with a random member each of `out.len()` distinct random netgroups,
    /// and `chosen` with their indices.
    fn one_per_netgroup<R: Rng + ?Sized>(&self, rng: &mut R, chosen: &mut [u32], out: &mut [T]) {
        let mut groups = [0u32; MAX_ANSWERS];
        let groups = &mut groups[..out.len()];
        sample_distinct(rng, self.netgroups(), groups);
        // No branch depends on the memory read, so the CPU overlaps the cache misses
        // of the 30 records (most of the cost of an answer from a large set).
        for ((slot, o), &group) in chosen.iter_mut().zip(out.iter_mut()).zip(&*groups) {
            let (start, end) = (self.starts[group as usize], self.starts[group as usize + 1]);
            *slot = start + below(rng, (end - start) as usize) as u32;
            *o = self.addrs[*slot as usize];
        }
    }

    /// Completes `out[first..]` with random peers other than the `first` already in
    /// `chosen`, in random order.
    fn fill_rest<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        first: usize,
        chosen: &mut [u32],
        out: &mut [T],
    ) {
        fill_distinct(rng, self.addrs.len(), first, chosen);
        chosen[first..].shuffle(rng);
        for (o, &i) in out[first..].iter_mut().zip(&chosen[first..]) {
            *o = self.addrs[i as usize];
        }
    }
}

/// Returns a random number below `n` (> 0): the high half of a 64x64-bit product
/// (Lemire), without the rejection step, so values are off uniform by at most
/// `n / 2^64`, far below anything observable. A few times cheaper than `random_range`,
/// and answers draw about 30 numbers each.
fn below<R: Rng + ?Sized>(rng: &mut R, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// Writes `out.len()` (at most [`MAX_ANSWERS`], at most `len`) distinct indices below
/// `len`, in random order: a partial Fisher-Yates shuffle when `len` is small, else
/// rejection (each draw is new with probability above one half).
fn sample_distinct<R: Rng + ?Sized>(rng: &mut R, len: usize, out: &mut [u32]) {
    let amount = out.len();
    if len <= 2 * MAX_ANSWERS {
        let mut all = [0u32; 2 * MAX_ANSWERS];
        for (i, a) in all[..len].iter_mut().enumerate() {
            *a = i as u32;
        }
        for i in 0..amount {
            all.swap(i, i + below(rng, len - i));
        }
        out.copy_from_slice(&all[..amount]);
    } else {
        // A 1024-bit filter of the low bits spares most draws the scan of `out`.
        let mut seen = [0u64; 16];
        for k in 0..amount {
            out[k] = loop {
                let candidate = below(rng, len) as u32;
                let (word, bit) = ((candidate >> 6) as usize & 15, 1u64 << (candidate & 63));
                if seen[word] & bit == 0 || !out[..k].contains(&candidate) {
                    seen[word] |= bit;
                    break candidate;
                }
            };
        }
    }
}

/// Completes `chosen[..first]` (distinct indices below `len`) to `chosen.len()` distinct
/// indices, chosen at random among the rest.
fn fill_distinct<R: Rng + ?Sized>(rng: &mut R, len: usize, first: usize, chosen: &mut [u32]) {
    let mut filled = first;
    let mut tries = 0;
    while filled < chosen.len() && tries < 4 * MAX_ANSWERS {
        tries += 1;
        let i = below(rng, len) as u32;
        if !chosen[..filled].contains(&i) {
            chosen[filled] = i;
            filled += 1;
        }
    }
    // Few candidates left (or a poor generator): take the next free ones from a random start.
    let mut i = below(rng, len) as u32;
    while filled < chosen.len() {
        if !chosen[..filled].contains(&i) {
            chosen[filled] = i;
            filled += 1;
        }
        i = (i + 1) % len as u32;
    }
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
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
    fn prebuilt_answers_are_diverse_distinct_and_varied() {
        let set = AnswerSet::new((0..5000u32).map(|i| IpAddr::V4(Ipv4Addr::from(i << 12))));
        let mut rng = SmallRng::seed_from_u64(9);
        let mut seen = HashSet::new();
        let mut answers = HashSet::new();
        for _ in 0..2000 {
            let answer = set.answer_ipv4(&mut rng);
            assert_eq!(answer.len(), MAX_ANSWERS);
            let groups: HashSet<u32> = answer.iter().map(|a| a.to_bits() >> 16).collect();
            assert_eq!(groups.len(), MAX_ANSWERS, "one peer per netgroup");
            seen.extend(answer.iter().copied());
            answers.insert(answer.to_vec());
        }
        assert_eq!(
            answers.len(),
            PREBUILT_ANSWERS,
            "every prebuilt answer is served"
        );
        // 3840 slots over 5000 peers: about 5000 * (1 - e^-0.77) = 2680 distinct.
        assert!(seen.len() > 2400, "{} peers served", seen.len());
        assert!(AnswerSet::default().answer_ipv6(&mut rng).is_empty());
        let small = AnswerSet::new((0..7).map(|i| v4(127, 0, 0, i)));
        assert_eq!(small.answer_ipv4(&mut rng).len(), 7);
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

    #[test]
    fn every_netgroup_and_position_is_equally_likely() {
        // 100 netgroups (the rejection path) and 40 (the shuffle path) of one peer each,
        // and 40 netgroups of 5 peers: every peer is in about 30/n of the answers, and
        // as often first as any other.
        for (groups, per_group) in [(100u32, 1u32), (40, 1), (40, 5)] {
            let set = AnswerSet::new(
                (0..groups * per_group).map(|i| IpAddr::V4(Ipv4Addr::from((i % groups) << 16 | i))),
            );
            let peers = (groups * per_group) as usize;
            let mut rng = SmallRng::seed_from_u64(11);
            let (mut seen, mut first) = (vec![0u32; peers], vec![0u32; peers]);
            let rounds = 20_000;
            for _ in 0..rounds {
                let mut out = [Ipv4Addr::UNSPECIFIED; MAX_ANSWERS];
                assert_eq!(set.pick_ipv4(&mut rng, &mut out), 30);
                let index = |a: Ipv4Addr| (a.to_bits() & 0xffff) as usize;
                first[index(out[0])] += 1;
                for a in out {
                    seen[index(a)] += 1;
                }
            }
            let expect = f64::from(rounds) * 30.0 / peers as f64;
            for &n in &seen {
                assert!((f64::from(n) / expect - 1.0).abs() < 0.1, "{n} vs {expect}");
            }
            let expect_first = f64::from(rounds) / peers as f64;
            for &n in &first {
                assert!(
                    (f64::from(n) / expect_first - 1.0).abs() < 0.5,
                    "{n} vs {expect_first}"
                );
            }
        }
    }

    #[test]
    fn with_an_asmap_answers_take_one_address_per_asn() {
        use crate::asmap::Asmap;
        use crate::testkit::asmap::encode;
        // 600 addresses in one /16: one netgroup, but 40 ASNs of 15 addresses each.
        let ips: Vec<IpAddr> = (0..600u16)
            .map(|i| v4(127, 9, (i / 250) as u8, (i % 250) as u8))
            .collect();
        let prefixes: Vec<(IpAddr, u8, u32)> = ips
            .iter()
            .enumerate()
            .map(|(i, &ip)| (ip, 32, 100 + (i % 40) as u32))
            .collect();
        let asmap = Asmap::from_bytes(encode(&prefixes)).unwrap();
        let set = AnswerSet::grouped(ips.iter().copied(), Some(&asmap));
        let mut rng = rand::rng();
        for _ in 0..50 {
            let answer = set.answer_ipv4(&mut rng);
            let asns: HashSet<u32> = answer
                .iter()
                .map(|&a| asmap.lookup(IpAddr::V4(a)))
                .collect();
            assert_eq!(asns.len(), answer.len(), "an ASN repeats in {answer:?}");
        }
        let by_netgroup = AnswerSet::new(ips.iter().copied());
        assert_eq!(by_netgroup.ipv4_netgroups(), 1);
    }
}
