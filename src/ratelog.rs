//! A log line for recurring errors (a full disk, an unreachable proxy) that says each at
//! most once per interval and how many it held back, so a fault that repeats a thousand
//! times a second neither floods the log nor goes unnoticed.

use std::time::{Duration, Instant};

/// Logs a recurring error at most once per interval, with the number suppressed.
#[derive(Debug)]
pub struct RateLimitedLog {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// Logs at most once per `every`.
    pub fn new(every: Duration) -> RateLimitedLog {
        RateLimitedLog {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Logs `message` at error level unless one was logged less than the interval ago.
    pub fn log(&mut self, message: &str) {
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            log::error!("{message} ({} more since the last report)", self.suppressed);
        } else {
            log::error!("{message}");
        }
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}
