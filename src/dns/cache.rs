//! The answer cache: one `Arc<AnswerSet>` per service mask, rebuilt from the
//! [`PeerSource`] by the refresher thread when older than the cache TTL.
//!
//! Serving threads take the read lock only to clone an `Arc`. A mask not cached yet is
//! filled synchronously by the serving thread that first asks for it, only while fewer
//! than `max_masks` masks are cached; past the cap it gets no data. The default mask and
//! `allow_filters` are pinned: filled at start and never dropped. Other masks are dropped
//! after [`MASK_IDLE`] without a query.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

use super::PeerSource;
use super::answer::AnswerSet;
use crate::asmap::Asmap;

/// A mask unused for this long is dropped from the cache (unless pinned).
pub const MASK_IDLE: Duration = Duration::from_secs(600);

struct Entry {
    set: Arc<AnswerSet>,
    built: Instant,
    /// Milliseconds since the cache's epoch of the last lookup.
    last_used: AtomicU64,
}

/// Answer sets per service mask, shared by the serving threads and the refresher.
pub(crate) struct AnswerCache {
    entries: RwLock<HashMap<u64, Entry>>,
    source: Mutex<Box<dyn PeerSource>>,
    epoch: Instant,
    /// Milliseconds since `epoch`, advanced by the refresher: a coarse clock that spares
    /// the serving threads a clock read and a shared write per query.
    clock: AtomicU64,
    ttl: Duration,
    max_masks: usize,
    pinned: Vec<u64>,
    /// `--asmap`: answer sets are grouped by ASN.
    asmap: Option<Arc<Asmap>>,
}

impl AnswerCache {
    /// Creates an empty cache over `source`; `pinned` masks are never dropped and do not
    /// count against `max_masks`.
    pub(crate) fn new(
        source: Box<dyn PeerSource>,
        ttl: Duration,
        max_masks: usize,
        pinned: Vec<u64>,
    ) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            source: Mutex::new(source),
            epoch: Instant::now(),
            clock: AtomicU64::new(0),
            ttl,
            max_masks: max_masks + pinned.len(),
            pinned,
            asmap: None,
        }
    }

    /// Groups the answer sets by the ASNs of `asmap` (SPEC §11).
    pub(crate) fn with_asmap(mut self, asmap: Option<Arc<Asmap>>) -> Self {
        self.asmap = asmap;
        self
    }

    /// The cached masks and their answer sets' sizes as (mask, IPv4, IPv6), by mask.
    pub(crate) fn sizes(&self) -> Vec<(u64, usize, usize)> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let mut sizes: Vec<_> = (entries.iter())
            .map(|(&mask, e)| (mask, e.set.ipv4_len(), e.set.ipv6_len()))
            .collect();
        sizes.sort_unstable();
        sizes
    }

    /// Fills every pinned mask (at start, before serving).
    pub(crate) fn prefill(&self) {
        let now = Instant::now();
        for &mask in &self.pinned {
            let set = self.fetch(mask, None);
            self.store(mask, set, now);
        }
    }

    /// Returns the answer set for `mask`: the cached one, or a fresh one if the mask is
    /// new and the cache has room, else `None`.
    pub(crate) fn get(&self, mask: u64) -> Option<Arc<AnswerSet>> {
        {
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = entries.get(&mask) {
                let clock = self.clock.load(Ordering::Relaxed);
                if entry.last_used.load(Ordering::Relaxed) != clock {
                    entry.last_used.store(clock, Ordering::Relaxed);
                }
                return Some(Arc::clone(&entry.set));
            }
            if entries.len() >= self.max_masks {
                return None;
            }
        }
        let set = self.fetch(mask, None);
        let now = Instant::now();
        let mut entries = self.write();
        if entries.len() < self.max_masks || entries.contains_key(&mask) {
            entries.insert(mask, self.entry(Arc::clone(&set), now));
        }
        Some(set)
    }

    /// Rebuilds the sets older than the TTL and drops idle unpinned masks; called by the
    /// refresher thread. The source is queried without holding the map's lock.
    pub(crate) fn refresh(&self, now: Instant) {
        self.clock.fetch_max(self.millis(now), Ordering::Relaxed);
        let due = self.sweep(now);
        if due.is_empty() {
            return;
        }
        let unchanged = self
            .source
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unchanged();
        for (mask, old) in due {
            let set = if unchanged {
                Arc::new(old.redrawn())
            } else {
                self.fetch(mask, Some(old))
            };
            self.replace(mask, set, now);
        }
    }

    /// Drops the unpinned masks unused for [`MASK_IDLE`] and returns the sets older than
    /// the TTL, under one write lock.
    fn sweep(&self, now: Instant) -> Vec<(u64, Arc<AnswerSet>)> {
        let idle_before = self
            .millis(now)
            .saturating_sub(MASK_IDLE.as_millis() as u64);
        let mut entries = self.write();
        entries.retain(|mask, e| {
            self.pinned.contains(mask) || e.last_used.load(Ordering::Relaxed) >= idle_before
        });
        entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.built) >= self.ttl)
            .map(|(&mask, e)| (mask, Arc::clone(&e.set)))
            .collect()
    }

    /// Puts the rebuilt `set` of `mask` in place, unless the mask was dropped meanwhile.
    fn replace(&self, mask: u64, set: Arc<AnswerSet>, now: Instant) {
        if let Some(entry) = self.write().get_mut(&mask) {
            entry.set = set;
            entry.built = now;
        }
    }

    /// Returns the number of cached masks.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Queries the source; on error keeps `old` (or serves nothing) until the next refresh.
    fn fetch(&self, mask: u64, old: Option<Arc<AnswerSet>>) -> Arc<AnswerSet> {
        let result = {
            let mut source = self.source.lock().unwrap_or_else(PoisonError::into_inner);
            source.good_peers(mask)
        };
        match result {
            Ok(peers) => Arc::new(AnswerSet::grouped(peers, self.asmap.as_deref())),
            Err(e) => {
                log::warn!("cannot load DNS answers for mask {mask:#x}: {e:#}");
                old.unwrap_or_default()
            }
        }
    }

    fn store(&self, mask: u64, set: Arc<AnswerSet>, now: Instant) {
        let entry = self.entry(set, now);
        self.write().insert(mask, entry);
    }

    /// The map, locked for writing (a panicked holder left it consistent: each change is
    /// one insert, retain or field update).
    fn write(&self) -> RwLockWriteGuard<'_, HashMap<u64, Entry>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry(&self, set: Arc<AnswerSet>, now: Instant) -> Entry {
        Entry {
            set,
            built: now,
            last_used: AtomicU64::new(self.millis(now)),
        }
    }

    fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::AtomicUsize;

    /// Serves `n` peers with every service bit, counting calls; fails when `fail` is set.
    struct Counting {
        calls: Arc<AtomicUsize>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl PeerSource for Counting {
        fn good_peers(&mut self, mask: u64) -> anyhow::Result<Vec<IpAddr>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            anyhow::ensure!(!self.fail.load(Ordering::SeqCst), "database is locked");
            Ok(vec![IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                (mask & 0xff) as u8,
                n as u8,
            ))])
        }
    }

    fn cache(
        max: usize,
        pinned: Vec<u64>,
    ) -> (
        AnswerCache,
        Arc<AtomicUsize>,
        Arc<std::sync::atomic::AtomicBool>,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let source = Counting {
            calls: Arc::clone(&calls),
            fail: Arc::clone(&fail),
        };
        let c = AnswerCache::new(Box::new(source), Duration::from_secs(5), max, pinned);
        (c, calls, fail)
    }

    #[test]
    fn new_masks_fill_once_up_to_the_cap() {
        let (c, calls, _) = cache(2, vec![1]);
        c.prefill();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(c.get(1).unwrap().ipv4_len(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "served from the cache");
        assert!(c.get(2).is_some());
        assert!(c.get(3).is_some());
        assert_eq!(c.len(), 3);
        assert!(c.get(4).is_none(), "cap reached: no data, no query");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn refresh_rebuilds_stale_sets_and_drops_idle_masks() {
        let (c, calls, fail) = cache(8, vec![1]);
        c.prefill();
        c.get(2);
        let start = Instant::now();
        c.refresh(start);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "nothing stale yet");
        c.refresh(start + Duration::from_secs(6));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // A failing source keeps the old set.
        fail.store(true, Ordering::SeqCst);
        let before = c.get(2).unwrap();
        c.refresh(start + Duration::from_secs(12));
        assert!(Arc::ptr_eq(&before, &c.get(2).unwrap()));
        // Long unused: mask 2 goes, pinned mask 1 stays.
        c.refresh(start + MASK_IDLE + Duration::from_secs(60));
        assert_eq!(c.len(), 1);
        assert!(c.get(1).is_some());
    }

    #[test]
    fn unchanged_source_is_not_queried_but_answers_are_redrawn() {
        struct Still(Counting);
        impl PeerSource for Still {
            fn good_peers(&mut self, mask: u64) -> anyhow::Result<Vec<IpAddr>> {
                self.0.good_peers(mask)
            }
            fn unchanged(&mut self) -> bool {
                true
            }
        }
        let calls = Arc::new(AtomicUsize::new(0));
        let source = Still(Counting {
            calls: Arc::clone(&calls),
            fail: Arc::default(),
        });
        let c = AnswerCache::new(Box::new(source), Duration::from_secs(5), 8, vec![1]);
        c.prefill();
        let before = c.get(1).unwrap();
        c.refresh(Instant::now() + Duration::from_secs(6));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no second query");
        let after = c.get(1).unwrap();
        assert!(
            !Arc::ptr_eq(&before, &after),
            "a new set with new prebuilt answers"
        );
        assert_eq!(after.ipv4_len(), before.ipv4_len());
    }
}
