//! The records of the transferred zone: for each of its names, up to `--zone-records` A
//! and AAAA records chosen from the answer set of the name's mask as answers are chosen
//! (good peers, one per ASN or netgroup before any repeats), and the rule by which its
//! serial grows.
//!
//! Pure: the answer sets and the random source come in, so that `dnsseeder zone` (from
//! the database) and the running server (from its answer cache) build the same zone.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rand::Rng;

use crate::dns::{AnswerSet, MAX_ANSWERS};

/// One name of the zone: the apex (the bare host, the default mask) or `x<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneName {
    /// The service mask its peers must have.
    pub mask: u64,
    /// Its label under the apex (`x9`); `None` for the apex itself.
    pub label: Option<String>,
}

/// The address records of one name, each list sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRecords {
    pub name: ZoneName,
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

/// The zone at one serial: its names' address records. SOA and NS come from the
/// [`ZoneContext`](crate::dns::ZoneContext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub serial: u32,
    pub names: Vec<NameRecords>,
}

impl Zone {
    /// Chooses up to `per_name` (at most [`MAX_ANSWERS`]) IPv4 and IPv6 peers for each of
    /// `names` from the answer set `sets` gives for its mask (none: no records).
    pub fn choose<R: Rng + ?Sized>(
        serial: u32,
        names: &[ZoneName],
        sets: impl Fn(u64) -> Option<Arc<AnswerSet>>,
        per_name: usize,
        rng: &mut R,
    ) -> Self {
        let per_name = per_name.min(MAX_ANSWERS);
        let names = names
            .iter()
            .map(|name| {
                let set = sets(name.mask).unwrap_or_default();
                let mut v4 = [Ipv4Addr::UNSPECIFIED; MAX_ANSWERS];
                let mut v6 = [Ipv6Addr::UNSPECIFIED; MAX_ANSWERS];
                let n4 = set.pick_ipv4(rng, &mut v4[..per_name]);
                let n6 = set.pick_ipv6(rng, &mut v6[..per_name]);
                NameRecords {
                    name: name.clone(),
                    v4: sorted(&v4[..n4]),
                    v6: sorted(&v6[..n6]),
                }
            })
            .collect();
        Self { serial, names }
    }

    /// Whether `other` holds the same records (whatever its serial).
    pub fn same_records(&self, other: &Zone) -> bool {
        self.names == other.names
    }

    /// The number of address records.
    pub fn address_count(&self) -> usize {
        self.names.iter().map(|n| n.v4.len() + n.v6.len()).sum()
    }
}

fn sorted<T: Copy + Ord>(addrs: &[T]) -> Vec<T> {
    let mut v = addrs.to_vec();
    v.sort_unstable();
    v
}

/// The serial of a changed zone: the UNIX time `now` when it is ahead of `previous` in
/// serial number arithmetic (RFC 1982), else `previous + 1`. The UNIX time keeps
/// serials growing across restarts, the increment keeps them growing when changes come
/// faster than the seconds or the clock steps back.
pub fn next_serial(previous: u32, now: u32) -> u32 {
    let ahead = now.wrapping_sub(previous);
    if ahead != 0 && ahead < 1 << 31 {
        now
    } else {
        previous.wrapping_add(1)
    }
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    use std::net::IpAddr;

    fn names() -> Vec<ZoneName> {
        vec![
            ZoneName {
                mask: 1,
                label: None,
            },
            ZoneName {
                mask: 9,
                label: Some("x9".into()),
            },
        ]
    }

    fn set(n: u8) -> Arc<AnswerSet> {
        let v4 = (0..n).map(|i| IpAddr::V4(Ipv4Addr::new(10, i, 0, 1)));
        let v6 = (0..n).map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, i.into(), 0, 0, 0, 0, 1)));
        Arc::new(AnswerSet::new(v4.chain(v6)))
    }

    #[test]
    fn each_name_gets_up_to_n_distinct_records_of_its_set() {
        let mut rng = SmallRng::seed_from_u64(7);
        let big = set(100);
        let small = set(3);
        let zone = Zone::choose(
            5,
            &names(),
            |mask| {
                Some(if mask == 1 {
                    Arc::clone(&big)
                } else {
                    Arc::clone(&small)
                })
            },
            25,
            &mut rng,
        );
        assert_eq!(zone.serial, 5);
        let [apex, x9] = &zone.names[..] else {
            panic!()
        };
        assert_eq!((apex.v4.len(), apex.v6.len()), (25, 25));
        assert_eq!((x9.v4.len(), x9.v6.len()), (3, 3));
        let mut distinct = apex.v4.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), 25, "sorted and distinct");
        // Each /16 once: one per netgroup before any repeats.
        let groups: std::collections::HashSet<_> = apex.v4.iter().map(|a| a.octets()[1]).collect();
        assert_eq!(groups.len(), 25);
        assert_eq!(zone.address_count(), 56);
    }

    #[test]
    fn the_same_small_sets_give_the_same_records() {
        let mut rng = SmallRng::seed_from_u64(1);
        let s = set(10);
        let a = Zone::choose(1, &names(), |_| Some(Arc::clone(&s)), 25, &mut rng);
        let b = Zone::choose(2, &names(), |_| Some(Arc::clone(&s)), 25, &mut rng);
        assert!(
            a.same_records(&b),
            "every peer fits: the order of the draw does not matter"
        );
        let c = Zone::choose(3, &names(), |_| Some(set(11)), 25, &mut rng);
        assert!(!a.same_records(&c));
        let empty = Zone::choose(4, &names(), |_| None, 25, &mut rng);
        assert_eq!(empty.address_count(), 0);
    }

    #[test]
    fn serials_grow_in_serial_arithmetic() {
        assert_eq!(next_serial(100, 200), 200, "the clock when ahead");
        assert_eq!(next_serial(200, 200), 201, "two changes in one second");
        assert_eq!(next_serial(200, 100), 201, "the clock stepped back");
        assert_eq!(next_serial(u32::MAX, 5), 5, "ahead across the wrap");
        assert_eq!(next_serial(u32::MAX, u32::MAX - 3), 0, "behind: wraps to 0");
        assert_eq!(
            next_serial(1, 1 + (1 << 31)),
            2,
            "half the space away is not ahead"
        );
    }
}
