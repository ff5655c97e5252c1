//! The `/health` verdict (SPEC §12): a pure function of a few facts, so that every
//! condition is tested without a running seeder.

/// Longest results may wait without a successful commit, seconds.
pub const COMMIT_STALL_SECS: i64 = 60;

/// What the verdict is judged on; times are Unix seconds, 0 meaning never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub now: i64,
    /// Whether the last commit attempt failed.
    pub last_commit_failed: bool,
    /// The last successful commit.
    pub last_commit: i64,
    /// Since when results have been waiting for a commit (0: none waiting).
    pub pending_since: i64,
    /// The last successful probe.
    pub last_success: i64,
    /// `--health-probe-age`, seconds.
    pub probe_age: i64,
    /// Good peers served for the bare host, when known.
    pub bare_host_good: Option<u64>,
}

/// `Ok` when healthy, else the first failing condition, in one line.
///
/// # Errors
/// The reason the seeder is unhealthy.
pub fn verdict(f: &Facts) -> Result<(), String> {
    if f.last_commit_failed {
        return Err("the last database commit failed".to_owned());
    }
    let stalled = |since: i64| f.now - since >= COMMIT_STALL_SECS;
    if f.pending_since > 0 && stalled(f.pending_since) && stalled(f.last_commit) {
        return Err(format!(
            "no database commit succeeded in the last {COMMIT_STALL_SECS} s while results were waiting"
        ));
    }
    if f.last_success == 0 || f.now - f.last_success > f.probe_age {
        return Err(format!(
            "no successful probe in the last {} s (--health-probe-age)",
            f.probe_age
        ));
    }
    if f.bare_host_good == Some(0) {
        return Err("no good peer for the bare host".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn healthy() -> Facts {
        Facts {
            now: NOW,
            last_commit_failed: false,
            last_commit: NOW - 1,
            pending_since: 0,
            last_success: NOW - 5,
            probe_age: 600,
            bare_host_good: Some(12),
        }
    }

    fn reason(f: Facts) -> String {
        verdict(&f).unwrap_err()
    }

    #[test]
    fn healthy_is_ok() {
        assert_eq!(verdict(&healthy()), Ok(()));
        let no_dns = Facts {
            bare_host_good: None,
            ..healthy()
        };
        assert_eq!(verdict(&no_dns), Ok(()));
    }

    #[test]
    fn a_failed_commit_fails() {
        let f = Facts {
            last_commit_failed: true,
            ..healthy()
        };
        assert_eq!(reason(f), "the last database commit failed");
    }

    #[test]
    fn results_waiting_a_minute_without_a_commit_fail() {
        let waiting = Facts {
            pending_since: NOW - 61,
            last_commit: NOW - 70,
            ..healthy()
        };
        assert!(reason(waiting).starts_with("no database commit succeeded in the last 60 s"));
        let recent = Facts {
            pending_since: NOW - 30,
            last_commit: NOW - 70,
            ..healthy()
        };
        assert_eq!(verdict(&recent), Ok(()));
        let never = Facts {
            pending_since: NOW - 60,
            last_commit: 0,
            ..healthy()
        };
        assert!(verdict(&never).is_err());
    }

    #[test]
    fn no_recent_successful_probe_fails() {
        let old = Facts {
            last_success: NOW - 601,
            ..healthy()
        };
        assert_eq!(
            reason(old),
            "no successful probe in the last 600 s (--health-probe-age)"
        );
        let never = Facts {
            last_success: 0,
            ..healthy()
        };
        assert!(reason(never).starts_with("no successful probe"));
        let edge = Facts {
            last_success: NOW - 600,
            ..healthy()
        };
        assert_eq!(verdict(&edge), Ok(()));
    }

    #[test]
    fn no_good_peer_for_the_bare_host_fails() {
        let f = Facts {
            bare_host_good: Some(0),
            ..healthy()
        };
        assert_eq!(reason(f), "no good peer for the bare host");
    }

    #[test]
    fn the_first_failing_condition_is_named() {
        let f = Facts {
            last_commit_failed: true,
            last_success: 0,
            bare_host_good: Some(0),
            ..healthy()
        };
        assert_eq!(reason(f), "the last database commit failed");
    }
}
