//! The TCP event loop's table of open connections: a slot per connection (its token in
//! the loop), the connections in order of last activity, and how many each source holds.
//!
//! It exists apart from the loop to hold the admission rules of SPEC §6 as pure logic,
//! tested without sockets: a source (an IPv4 address, an IPv6 /64) holds at most
//! `max_per_source` connections; at the global cap `max`, a newcomer from a source that
//! holds none is admitted by closing the least recently active connection (RFC 7766
//! §6.2.3: the one the idle timeout would close first), so a fresh client is always
//! served, while a source that already holds one is refused (it has one to reuse). The
//! activity order is a doubly-linked list through the slots: a connection that answers a
//! request moves to its tail in O(1), and the oldest is its head. A few dozen bytes per
//! connection besides the connection itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::ratelimit::source_key;

/// The end of the activity list.
const NIL: u32 = u32::MAX;

/// What to do with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Serve it.
    Admit,
    /// Serve it after closing the connection in this slot, the least recently active.
    Evict(usize),
    /// Close it at once.
    Refuse,
}

/// One open connection and its place in the activity list.
struct Entry<T> {
    value: T,
    /// The source's key: the address, or the /64 of an IPv6 address.
    source: IpAddr,
    /// When it connected or last had a request answered.
    last_active: Instant,
    prev: u32,
    next: u32,
}

/// The open connections, by slot.
pub(super) struct Table<T> {
    slots: Vec<Option<Entry<T>>>,
    free: Vec<u32>,
    /// Least recently active.
    head: u32,
    /// Most recently active.
    tail: u32,
    len: usize,
    per_source: HashMap<IpAddr, usize>,
    max: usize,
    max_per_source: usize,
}

impl<T> Table<T> {
    /// An empty table for at most `max` connections, `max_per_source` from one source.
    pub(super) fn new(max: usize, max_per_source: usize) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            per_source: HashMap::new(),
            max,
            max_per_source,
        }
    }

    /// Returns the number of open connections.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Returns how many connections the source of `ip` holds.
    pub(super) fn held_by(&self, ip: IpAddr) -> usize {
        self.per_source.get(&source_key(ip)).copied().unwrap_or(0)
    }

    /// Decides what becomes of a new connection from `ip`.
    pub(super) fn admission(&self, ip: IpAddr) -> Admission {
        let held = self.held_by(ip);
        if held >= self.max_per_source {
            return Admission::Refuse;
        }
        if self.len < self.max {
            return Admission::Admit;
        }
        match self.oldest() {
            Some((slot, _)) if held == 0 => Admission::Evict(slot),
            _ => Admission::Refuse,
        }
    }

    /// Adds a connection from `ip`, active `now`; returns its slot.
    pub(super) fn insert(&mut self, ip: IpAddr, value: T, now: Instant) -> usize {
        let source = source_key(ip);
        *self.per_source.entry(source).or_insert(0) += 1;
        let entry = Entry {
            value,
            source,
            last_active: now,
            prev: NIL,
            next: NIL,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                index(self.slots.len() - 1)
            }
        };
        self.len += 1;
        self.link_tail(slot);
        slot as usize
    }

    /// Removes the connection in `slot` and returns it.
    pub(super) fn remove(&mut self, slot: usize) -> Option<T> {
        self.slots.get(slot)?.as_ref()?;
        self.unlink(index(slot));
        let entry = self.slots[slot].take()?;
        self.free.push(index(slot));
        self.len -= 1;
        if let Some(held) = self.per_source.get_mut(&entry.source) {
            *held -= 1;
            if *held == 0 {
                self.per_source.remove(&entry.source);
            }
        }
        Some(entry.value)
    }

    /// Marks the connection in `slot` active at `now` (it moves to the end of the list).
    pub(super) fn touch(&mut self, slot: usize, now: Instant) {
        let Some(entry) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        entry.last_active = now;
        self.unlink(index(slot));
        self.link_tail(index(slot));
    }

    /// Returns the least recently active connection's slot and last activity.
    pub(super) fn oldest(&self) -> Option<(usize, Instant)> {
        let slot = self.head as usize;
        let entry = self.slots.get(slot)?.as_ref()?;
        Some((slot, entry.last_active))
    }

    /// Returns the connection in `slot`.
    pub(super) fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        Some(&mut self.slots.get_mut(slot)?.as_mut()?.value)
    }

    /// Returns the connection in `slot`.
    pub(super) fn get(&self, slot: usize) -> Option<&T> {
        Some(&self.slots.get(slot)?.as_ref()?.value)
    }

    /// Appends the linked-out `slot` to the end of the activity list.
    fn link_tail(&mut self, slot: u32) {
        let old_tail = self.tail;
        if let Some(entry) = self.entry_mut(slot) {
            entry.prev = old_tail;
            entry.next = NIL;
        }
        match self.entry_mut(old_tail) {
            Some(tail) => tail.next = slot,
            None => self.head = slot,
        }
        self.tail = slot;
    }

    /// Takes `slot` out of the activity list.
    fn unlink(&mut self, slot: u32) {
        let Some(entry) = self.entry_mut(slot) else {
            return;
        };
        let (prev, next) = (entry.prev, entry.next);
        match self.entry_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.entry_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn entry_mut(&mut self, slot: u32) -> Option<&mut Entry<T>> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }
}

/// A slot as stored in the list; slots never outnumber the process's descriptors.
fn index(slot: usize) -> u32 {
    u32::try_from(slot).unwrap_or(NIL)
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The slots from the least to the most recently active.
    fn order<T>(t: &Table<T>) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = t.head;
        while at != NIL {
            out.push(at as usize);
            at = t.slots[at as usize].as_ref().unwrap().next;
        }
        out
    }

    #[test]
    fn a_source_holds_at_most_its_cap_and_ipv6_counts_by_64() {
        let now = Instant::now();
        let mut t = Table::new(100, 2);
        for addr in ["2001:db8::1", "2001:db8::ffff:2"] {
            assert_eq!(t.admission(ip(addr)), Admission::Admit);
            t.insert(ip(addr), (), now);
        }
        assert_eq!(t.admission(ip("2001:db8::3")), Admission::Refuse);
        assert_eq!(t.admission(ip("2001:db8:0:1::1")), Admission::Admit);
        t.insert(ip("192.0.2.1"), (), now);
        let slot = t.insert(ip("::ffff:192.0.2.1"), (), now);
        assert_eq!(t.held_by(ip("192.0.2.1")), 2);
        assert_eq!(t.admission(ip("192.0.2.1")), Admission::Refuse);
        assert_eq!(t.admission(ip("192.0.2.2")), Admission::Admit);
        t.remove(slot);
        assert_eq!(t.admission(ip("192.0.2.1")), Admission::Admit);
    }

    #[test]
    fn at_the_cap_a_new_source_evicts_the_least_recently_active() {
        let start = Instant::now();
        let mut t = Table::new(3, 8);
        let slots: Vec<usize> = (0..3u64)
            .map(|i| t.insert(ip("192.0.2.1"), i, start + Duration::from_secs(i)))
            .collect();
        assert_eq!(t.admission(ip("192.0.2.9")), Admission::Evict(slots[0]));
        // The oldest answers a request: the next one becomes the victim.
        t.touch(slots[0], start + Duration::from_secs(5));
        assert_eq!(order(&t), [slots[1], slots[2], slots[0]]);
        assert_eq!(t.admission(ip("192.0.2.9")), Admission::Evict(slots[1]));
        // A source that already holds a connection is refused at the cap.
        assert_eq!(t.admission(ip("192.0.2.1")), Admission::Refuse);
        assert_eq!(t.remove(slots[1]), Some(1));
        assert_eq!(t.oldest(), Some((slots[2], start + Duration::from_secs(2))));
        assert_eq!(t.admission(ip("192.0.2.1")), Admission::Admit);
    }

    #[test]
    fn a_zero_cap_refuses_everyone() {
        let t: Table<()> = Table::new(0, 8);
        assert_eq!(t.admission(ip("192.0.2.1")), Admission::Refuse);
        let t: Table<()> = Table::new(8, 0);
        assert_eq!(t.admission(ip("192.0.2.1")), Admission::Refuse);
    }

    #[test]
    fn slots_are_reused_and_the_list_stays_consistent() {
        let now = Instant::now();
        let mut t = Table::new(1000, 1000);
        let mut open = Vec::new();
        for round in 0..50u32 {
            for i in 0..20u32 {
                open.push(t.insert(IpAddr::from([10, 0, (i % 4) as u8, 1]), round, now));
            }
            // Close every third, touch every fifth.
            let closing: Vec<usize> = open.iter().copied().step_by(3).collect();
            for slot in closing {
                t.remove(slot).unwrap();
                open.retain(|&s| s != slot);
            }
            for &slot in open.iter().step_by(5) {
                t.touch(slot, now);
            }
            let mut listed = order(&t);
            assert_eq!(listed.len(), t.len());
            listed.sort_unstable();
            let mut expected = open.clone();
            expected.sort_unstable();
            assert_eq!(listed, expected);
        }
        assert!(t.slots.len() < 1000, "slots are reused: {}", t.slots.len());
        let held: usize = (0..4u8)
            .map(|i| t.held_by(IpAddr::from([10, 0, i, 1])))
            .sum();
        assert_eq!(held, t.len());
        for slot in open {
            t.remove(slot).unwrap();
        }
        assert!(t.per_source.is_empty() && t.oldest().is_none());
        assert_eq!(t.remove(0), None);
    }
}
