//! Pacing of instant failures. A probe refused at once (nothing listens on this host or its
//! LAN) or that cannot connect at all (no route) costs a few tens of microseconds; a pool of
//! hundreds of workers meeting nothing else would spin through such jobs as fast as the
//! scheduler and the writer can turn (20,000 a second on 2 cores), taking the CPU from the
//! DNS threads for nothing. So once a worker has met more than [`INSTANT_STREAK`] instant
//! failures in a row, each further one waits for a slot of the pool's budget,
//! [`INSTANT_FAILURES_PER_SEC`], shared by every worker. Any other outcome (an answer, a
//! timeout, a peer that closed or broke the protocol, a failure that took a round trip) ends
//! the worker's streak: on the Internet a refusal takes a round trip, so a real crawl is not
//! paced.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Outcome;

/// A probe that failed to connect within this time failed at once: the local network stack
/// answered, not a host across the Internet.
pub const INSTANT_FAILURE: Duration = Duration::from_millis(5);
/// Instant failures in a row that a worker makes unpaced.
pub const INSTANT_STREAK: u32 = 3;
/// Instant failures the whole pool makes per second at most once paced. Measured with the
/// DNS bench (phase 1b, `docs/PERFORMANCE.md`): about 1,300 a second left the server 0.92x
/// its idle rate, 4,900 a second 0.82-0.91x.
pub const INSTANT_FAILURES_PER_SEC: u32 = 1000;
/// Longest a worker waits for its slot, so that it notices a stop soon; only a pool of more
/// than `INSTANT_FAILURES_PER_SEC` workers can reach it.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Whether a probe failed before any peer spoke: the connection was refused or could not be
/// made (`io`: no route, network unreachable), or the address is one we never dial. A peer
/// that answered and then closed or broke the protocol is not counted: it cost a handshake,
/// and a violation bans it for a day.
pub(super) fn failed_locally(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Failure {
            reason: "refused" | "io" | "forbidden",
            ..
        }
    )
}

/// One worker's run of instant failures.
#[derive(Debug, Default)]
pub(super) struct Streak(u32);

impl Streak {
    /// Notes a probe's outcome (whether it [`failed_locally`]) and duration; returns
    /// whether the worker must now wait for a slot of the pool's budget.
    pub(super) fn after(&mut self, failed_locally: bool, took: Duration) -> bool {
        if !failed_locally || took >= INSTANT_FAILURE {
            self.0 = 0;
            return false;
        }
        self.0 = self.0.saturating_add(1);
        self.0 > INSTANT_STREAK
    }
}

/// The pool's budget of paced instant failures: slots `1 / per_sec` apart, handed out in
/// the order they are asked for.
#[derive(Debug)]
pub(super) struct InstantPace {
    interval: Duration,
    next: Mutex<Instant>,
}

impl InstantPace {
    pub(super) fn new(per_sec: u32) -> InstantPace {
        InstantPace {
            interval: Duration::from_secs(1) / per_sec.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Takes the next free slot at or after `now`; returns how long to wait for it (at
    /// most [`MAX_WAIT`]).
    pub(super) fn reserve(&self, now: Instant) -> Duration {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = (*next).max(now);
        *next = slot + self.interval;
        (slot - now).min(MAX_WAIT)
    }

    /// Waits for the next free slot.
    pub(super) fn wait(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_streak_of_instant_failures_is_paced() {
        let mut streak = Streak::default();
        let instant = Duration::from_millis(1);
        for _ in 0..INSTANT_STREAK {
            assert!(!streak.after(true, instant));
        }
        assert!(streak.after(true, instant));
        assert!(streak.after(true, instant));
        assert!(
            !streak.after(true, Duration::from_millis(40)),
            "a round trip ends it"
        );
        for _ in 0..=INSTANT_STREAK {
            streak.after(true, instant);
        }
        assert!(!streak.after(false, instant), "another outcome ends it");
        assert!(!streak.after(true, instant));
    }

    #[test]
    fn only_failures_to_connect_count_as_local() {
        let failure = |reason| Outcome::Failure {
            reason,
            violation: false,
        };
        for reason in ["refused", "io", "forbidden"] {
            assert!(failed_locally(&failure(reason)), "{reason}");
        }
        for reason in ["timeout", "closed", "bad-magic", "protocol"] {
            assert!(!failed_locally(&failure(reason)), "{reason}");
        }
    }

    #[test]
    fn the_pool_gets_slots_one_interval_apart() {
        let pace = InstantPace::new(1000);
        let now = Instant::now() + Duration::from_secs(1);
        let waits: Vec<Duration> = (0..4).map(|_| pace.reserve(now)).collect();
        let ms = Duration::from_millis;
        assert_eq!(waits, [ms(0), ms(1), ms(2), ms(3)]);
        // After a quiet spell the next slot is free at once.
        assert_eq!(pace.reserve(now + ms(100)), ms(0));
        assert_eq!(InstantPace::new(1).reserve(now + ms(100)), ms(0));
        let slow = InstantPace::new(1);
        slow.reserve(now);
        slow.reserve(now);
        assert_eq!(slow.reserve(now), MAX_WAIT, "a wait is bounded");
    }
}
