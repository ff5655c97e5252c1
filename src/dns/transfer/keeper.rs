//! The zone keeper: rebuilds the transferred zone every `--zone-refresh` from the answer
//! cache, and when its records changed publishes it with a grown serial (which every
//! SOA then carries) and hands it to the NOTIFY thread.
//!
//! It runs on the cache's refresher thread, so that the zone is built from answer sets
//! that thread has just refreshed and nothing else takes the cache's source for it.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::records::{Zone, ZoneName, next_serial};
use crate::dns::cache::AnswerCache;
use crate::dns::server::Shared;
use crate::dns::zone::ZoneContext;

/// The zone secondaries transfer, shared by the keeper (writer) and the TCP loop.
#[derive(Debug)]
pub(in crate::dns) struct PublishedZone(RwLock<Arc<Zone>>);

impl PublishedZone {
    pub(in crate::dns) fn new(zone: Zone) -> Self {
        Self(RwLock::new(Arc::new(zone)))
    }

    /// The current zone.
    pub(in crate::dns) fn get(&self) -> Arc<Zone> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn set(&self, zone: Arc<Zone>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = zone;
    }
}

/// What the keeper needs besides the server's shared state.
pub(in crate::dns) struct ZoneKeeper {
    names: Vec<ZoneName>,
    per_name: usize,
    every: Duration,
    next: Instant,
    notify: Option<Sender<Arc<Zone>>>,
    rng: SmallRng,
}

impl ZoneKeeper {
    /// A keeper that first rebuilds `every` from now; `notify` gets each new zone.
    pub(in crate::dns) fn new(
        names: Vec<ZoneName>,
        per_name: usize,
        every: Duration,
        notify: Option<Sender<Arc<Zone>>>,
    ) -> Self {
        Self {
            names,
            per_name,
            every,
            next: Instant::now() + every,
            notify,
            rng: SmallRng::from_rng(&mut rand::rng()),
        }
    }

    /// The first zone, with the serial the server started with; also sent to the NOTIFY
    /// thread, so that secondaries holding an older serial catch up after a restart.
    pub(in crate::dns) fn first(&mut self, ctx: &ZoneContext, cache: &AnswerCache) -> Zone {
        let zone = self.build(cache, ctx.serial());
        self.announce(&zone, "first");
        zone
    }

    /// Rebuilds the zone when due; publishes it if its records changed.
    pub(in crate::dns) fn tick(&mut self, shared: &Shared, zone: &PublishedZone, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        let current = zone.get();
        let mut fresh = self.build(&shared.cache, current.serial);
        if fresh.same_records(&current) {
            return;
        }
        fresh.serial = next_serial(current.serial, crate::unix_now() as u32);
        shared.ctx.set_serial(fresh.serial);
        self.announce(&fresh, "new");
        zone.set(Arc::new(fresh));
    }

    fn build(&mut self, cache: &AnswerCache, serial: u32) -> Zone {
        let sets = |mask| cache.get(mask);
        Zone::choose(serial, &self.names, sets, self.per_name, &mut self.rng)
    }

    fn announce(&self, zone: &Zone, which: &str) {
        log::info!(
            "zone: {which} serial {} with {} address records",
            zone.serial,
            zone.address_count()
        );
        if let Some(tx) = &self.notify {
            let _ = tx.send(Arc::new(zone.clone()));
        }
    }
}
