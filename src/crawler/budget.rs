//! The bound on learned addresses waiting for the writer: a flood of gossip cannot pile up
//! in the result queue while the writer commits; the workers wait instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// A counting bound on the learned addresses in the result queue: workers acquire before
/// sending a result, the writer releases as it takes one off the queue.
#[derive(Debug)]
pub(super) struct LearnedBudget {
    queued: Mutex<usize>,
    freed: Condvar,
    limit: usize,
}

impl LearnedBudget {
    pub(super) fn new(limit: usize) -> LearnedBudget {
        LearnedBudget {
            queued: Mutex::new(0),
            freed: Condvar::new(),
            limit,
        }
    }

    /// Waits until `n` more addresses fit (any number fits an empty queue), then counts
    /// them. Stops waiting once `stop` is set: the writer drains the queue at shutdown.
    pub(super) fn acquire(&self, n: usize, stop: &AtomicBool) {
        if n == 0 {
            return;
        }
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        while *queued > 0 && *queued + n > self.limit && !stop.load(Ordering::SeqCst) {
            queued = self
                .freed
                .wait_timeout(queued, Duration::from_millis(200))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *queued += n;
    }

    /// Uncounts `n` addresses the writer took off the queue.
    pub(super) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        *queued = queued.saturating_sub(n);
        drop(queued);
        self.freed.notify_all();
    }
}
