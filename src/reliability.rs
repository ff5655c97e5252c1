//! The reliability model of sipa's seeder, as pure functions over the columns the store
//! keeps: five exponentially decaying windows, the rules that make a peer good, the rules
//! that ban it, and when to try it next.
//!
//! Times are UNIX seconds of the real clock; `--retry-scale F` makes the model's clock
//! run 1/F times faster by multiplying every constant (decay taus, the first-try credit,
//! retry intervals, bans) by F, so a test sees as many probes per window as production.

/// Decay constants of the five windows, seconds: 2 h, 8 h, 1 day, 1 week, 1 month.
pub const TAUS: [f64; 5] = [7200.0, 28_800.0, 86_400.0, 604_800.0, 2_592_000.0];

/// Window names, for column names and output.
pub const WINDOW_NAMES: [&str; 5] = ["2h", "8h", "1d", "1w", "1m"];

/// Age credited to the first probe of a peer, seconds.
pub const FIRST_TRY_AGE: f64 = 1000.0;

/// Lowest protocol version a good peer may report.
pub const MIN_GOOD_VERSION: i64 = 70001;

/// Peers reporting a lower protocol version are banned for a week.
pub const MIN_VERSION: i64 = 31900;

const DAY: f64 = 86_400.0;

/// Ban for a protocol violation (bad header, oversize message), unscaled seconds.
pub const VIOLATION_BAN: f64 = DAY;

/// One decaying window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// Decayed fraction of successful probes.
    pub reliability: f64,
    /// Decayed number of probes.
    pub count: f64,
    /// Decayed weight of the observed time (1 when fully observed).
    pub weight: f64,
}

/// The five windows of one peer (2h, 8h, 1d, 1w, 1m).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub windows: [Window; 5],
}

impl Stats {
    /// Folds one probe into every window. `age` is the number of (real) seconds since the
    /// previous probe, `None` for the first one; `scale` is `--retry-scale`.
    pub fn update(&mut self, success: bool, age: Option<f64>, scale: f64) {
        let age = age.unwrap_or(FIRST_TRY_AGE * scale).max(0.0);
        for (window, tau) in self.windows.iter_mut().zip(TAUS) {
            let f = (-age / (tau * scale)).exp();
            window.reliability = window.reliability * f + if success { 1.0 - f } else { 0.0 };
            window.count = window.count * f + 1.0;
            window.weight = window.weight * f + (1.0 - f);
        }
    }

    fn w(&self, i: usize) -> Window {
        self.windows[i]
    }
}

/// A peer's record as its row keeps it: everything the verdict reads, and what each probe
/// updates ([`Record::fold`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Record {
    pub stats: Stats,
    /// Probes ever made.
    pub tries: i64,
    /// Probes that completed the handshake.
    pub successes: i64,
    /// Consecutive failed probes up to the last one (0 after a success).
    pub failures_in_row: i64,
    /// When the last probe ended, UNIX seconds; `None` before the first.
    pub last_try: Option<i64>,
    /// Protocol version the peer reported (0 if it never answered).
    pub version: i64,
    /// Start height the peer reported.
    pub start_height: i64,
}

/// What one probe showed, as far as the model cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The handshake completed; the peer reported these.
    Answered { version: i64, start_height: i64 },
    /// It did not. `violation` names a protocol violation (bad header, wrong magic,
    /// oversize), which bans the peer for [`VIOLATION_BAN`].
    Failed { violation: Option<&'static str> },
}

impl Record {
    /// Folds a probe that ended at `time` into the record; `scale` is `--retry-scale`.
    pub fn fold(&mut self, probe: &Probe, time: i64, scale: f64) {
        let success = matches!(probe, Probe::Answered { .. });
        let age = self.last_try.map(|t| (time - t) as f64);
        self.stats.update(success, age, scale);
        self.tries += 1;
        self.last_try = Some(time);
        if let Probe::Answered {
            version,
            start_height,
        } = *probe
        {
            self.successes += 1;
            self.failures_in_row = 0;
            self.version = version;
            self.start_height = start_height;
        } else {
            self.failures_in_row += 1;
        }
    }
}

/// A ban: no probe and no answer before `until` (UNIX seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    pub until: i64,
    /// `old-version`, `unreliable`, or the violation (`bad-magic`, `oversize`, ...).
    pub reason: &'static str,
}

/// What the model decides after a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Served by DNS (never while banned).
    pub good: bool,
    pub ban: Option<Ban>,
    /// When to probe again, UNIX seconds (never before the ban ends).
    pub next_try: i64,
}

/// Judges a peer after its last probe: `record` already holds that probe (see
/// [`Record::fold`]), which was `last` and ended at `record.last_try`. `jitter` in [0, 1)
/// spreads the retries; `scale` is `--retry-scale`.
pub fn verdict(
    record: &Record,
    last: &Probe,
    req: &Requirements,
    scale: f64,
    jitter: f64,
) -> Verdict {
    let time = record.last_try.unwrap_or(0);
    let good = is_good(record, req);
    let ban = ban(record, last, good).map(|(seconds, reason)| Ban {
        until: time + (seconds * scale).ceil() as i64,
        reason,
    });
    let retry = retry_seconds(record.failures_in_row.min(64) as u32, jitter);
    let next_try = (time + (retry * scale).ceil() as i64).max(ban.map_or(0, |b| b.until));
    Verdict {
        good: good && ban.is_none(),
        ban,
        next_try,
    }
}

/// The ban a peer earns, in unscaled seconds, and why: a protocol violation on its last
/// probe, or its record (see [`ban_seconds`]).
fn ban(record: &Record, last: &Probe, good: bool) -> Option<(f64, &'static str)> {
    if let Probe::Failed {
        violation: Some(reason),
    } = *last
    {
        return Some((VIOLATION_BAN, reason));
    }
    let seconds = ban_seconds(record, good);
    let reason = if record.version > 0 && record.version < MIN_VERSION {
        "old-version"
    } else {
        "unreliable"
    };
    (seconds > 0.0).then_some((seconds, reason))
}

/// What the network and the flags demand of a good peer.
#[derive(Debug, Clone, Copy)]
pub struct Requirements {
    /// The peer is on the network's default port.
    pub default_port: bool,
    /// The peer is routable, or `--allow-private` accepts it.
    pub routable: bool,
    /// `--min-height`.
    pub min_height: i64,
}

/// Whether a peer is good: sipa's rules over its windows and counters (SPEC §5).
/// Services are not part of goodness; they are filtered at query time.
pub fn is_good(s: &Record, req: &Requirements) -> bool {
    if !req.default_port
        || !req.routable
        || s.version < MIN_GOOD_VERSION
        || s.start_height < req.min_height
    {
        return false;
    }
    let st = &s.stats;
    (s.tries <= 3 && 2 * s.successes >= s.tries)
        || (st.w(0).reliability > 0.85 && st.w(0).count > 2.0)
        || (st.w(1).reliability > 0.70 && st.w(1).count > 4.0)
        || (st.w(2).reliability > 0.55 && st.w(2).count > 8.0)
        || (st.w(3).reliability > 0.45 && st.w(3).count > 16.0)
        || (st.w(4).reliability > 0.35 && st.w(4).count > 32.0)
}

/// How long (unscaled seconds) a peer is banned for its record, 0 if not at all.
/// A good peer is never banned for its statistics.
pub fn ban_seconds(s: &Record, good: bool) -> f64 {
    if s.version > 0 && s.version < MIN_VERSION {
        return 7.0 * DAY;
    }
    if good {
        return 0.0;
    }
    let st = &s.stats;
    if st.w(4).reliability < 0.15 && st.w(4).count > 32.0 {
        30.0 * DAY
    } else if st.w(3).reliability < 0.10 && st.w(3).count > 16.0 {
        7.0 * DAY
    } else if st.w(2).reliability < 0.05 && st.w(2).count > 8.0 {
        DAY
    } else {
        0.0
    }
}

/// Shortest retry interval of a peer that answered, unscaled seconds.
pub const RETRY_MIN: f64 = 15.0 * 60.0;
/// Longest retry interval of a peer that answered, unscaled seconds.
pub const RETRY_MAX: f64 = 60.0 * 60.0;
/// First backoff after a failure, unscaled seconds.
pub const BACKOFF_BASE: f64 = 30.0 * 60.0;
/// Longest backoff, unscaled seconds.
pub const BACKOFF_MAX: f64 = 4.0 * DAY;

/// Seconds (unscaled) until the next probe. `failures_in_row` counts consecutive failed
/// probes including this one (0 after a success); `jitter` in [0, 1) spreads the load.
pub fn retry_seconds(failures_in_row: u32, jitter: f64) -> f64 {
    if failures_in_row == 0 {
        RETRY_MIN + (RETRY_MAX - RETRY_MIN) * jitter
    } else {
        let doubling = 2f64.powi(failures_in_row.min(32) as i32 - 1);
        (BACKOFF_BASE * doubling).min(BACKOFF_MAX) * (0.9 + 0.2 * jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-9;

    fn standing(stats: Stats, tries: i64, successes: i64) -> Record {
        Record {
            stats,
            tries,
            successes,
            version: 70016,
            start_height: 900_000,
            ..Record::default()
        }
    }

    const OK: Requirements = Requirements {
        default_port: true,
        routable: true,
        min_height: 800_000,
    };

    fn with_window(i: usize, reliability: f64, count: f64) -> Stats {
        let mut s = Stats::default();
        s.windows[i] = Window {
            reliability,
            count,
            weight: 1.0,
        };
        s
    }

    #[test]
    fn first_success_credits_one_thousand_seconds() {
        let mut s = Stats::default();
        s.update(true, None, 1.0);
        // 1 - exp(-1000/7200) = 0.129 675...
        assert!((s.windows[0].reliability - 0.129_675_274_2).abs() < 1e-6);
        assert!((s.windows[0].count - 1.0).abs() < EPS);
        assert!((s.windows[0].weight - s.windows[0].reliability).abs() < EPS);
        assert!((s.windows[4].reliability - (1.0 - (-1000.0f64 / 2_592_000.0).exp())).abs() < EPS);
    }

    #[test]
    fn failure_decays_reliability_and_counts() {
        let mut s = Stats::default();
        s.update(true, None, 1.0);
        let before = s.windows[0];
        s.update(false, Some(7200.0), 1.0);
        let f = (-1.0f64).exp();
        assert!((s.windows[0].reliability - before.reliability * f).abs() < EPS);
        assert!((s.windows[0].count - (before.count * f + 1.0)).abs() < EPS);
        assert!((s.windows[0].weight - (before.weight * f + 1.0 - f)).abs() < EPS);
    }

    #[test]
    fn retry_scale_keeps_the_same_figures_at_scaled_ages() {
        let (mut real, mut fast) = (Stats::default(), Stats::default());
        for i in 0..10 {
            let age = (i > 0).then_some(900.0);
            real.update(i % 3 != 0, age, 1.0);
            fast.update(i % 3 != 0, age.map(|a| a * 0.001), 0.001);
        }
        for (a, b) in real.windows.iter().zip(fast.windows.iter()) {
            assert!((a.reliability - b.reliability).abs() < 1e-9);
            assert!((a.count - b.count).abs() < 1e-9);
        }
    }

    #[test]
    fn few_tries_rule() {
        let s = Stats::default();
        assert!(is_good(&standing(s, 1, 1), &OK));
        assert!(is_good(&standing(s, 2, 1), &OK));
        assert!(is_good(&standing(s, 3, 2), &OK));
        assert!(!is_good(&standing(s, 3, 1), &OK));
        assert!(!is_good(&standing(s, 1, 0), &OK));
        assert!(!is_good(&standing(s, 4, 4), &OK));
    }

    #[test]
    fn each_window_rule_at_its_threshold() {
        let rules = [
            (0, 0.85, 2.0),
            (1, 0.70, 4.0),
            (2, 0.55, 8.0),
            (3, 0.45, 16.0),
            (4, 0.35, 32.0),
        ];
        for (i, r, c) in rules {
            let good =
                |rel: f64, count: f64| is_good(&standing(with_window(i, rel, count), 10, 5), &OK);
            assert!(good(r + 0.001, c + 0.01), "window {i} just above");
            assert!(
                !good(r - 0.001, c + 0.01),
                "window {i} reliability just below"
            );
            assert!(!good(r, c + 0.01), "window {i} reliability equal");
            assert!(!good(r + 0.001, c), "window {i} count equal");
        }
    }

    #[test]
    fn requirements_override_statistics() {
        let s = standing(with_window(0, 0.99, 10.0), 10, 10);
        assert!(is_good(&s, &OK));
        assert!(!is_good(
            &s,
            &Requirements {
                default_port: false,
                ..OK
            }
        ));
        assert!(!is_good(
            &s,
            &Requirements {
                routable: false,
                ..OK
            }
        ));
        assert!(!is_good(
            &Record {
                version: 70000,
                ..s
            },
            &OK
        ));
        assert!(is_good(
            &Record {
                version: 70001,
                ..s
            },
            &OK
        ));
        assert!(!is_good(
            &Record {
                start_height: 799_999,
                ..s
            },
            &OK
        ));
        assert!(is_good(
            &Record {
                start_height: 800_000,
                ..s
            },
            &OK
        ));
    }

    #[test]
    fn new_peer_is_good_for_three_tries_then_needs_uptime() {
        // Probed every 15 minutes, always answering: good for the first three tries,
        // then not until the 2h window passes 0.85 (sipa's behaviour, SPEC §5).
        let mut s = standing(Stats::default(), 0, 0);
        let mut goodness = Vec::new();
        for i in 0..20 {
            s.stats.update(true, (i > 0).then_some(900.0), 1.0);
            s.tries += 1;
            s.successes += 1;
            goodness.push(is_good(&s, &OK));
        }
        assert_eq!(&goodness[..4], &[true, true, true, false]);
        let first_good_again = goodness.iter().skip(3).position(|g| *g).unwrap() + 3;
        let hours = first_good_again as f64 * 0.25;
        assert!((3.0..4.5).contains(&hours), "good again after {hours} h");
    }

    #[test]
    fn ban_rules() {
        let s = |stats| standing(stats, 100, 1);
        assert_eq!(
            ban_seconds(
                &Record {
                    version: 31800,
                    ..s(Stats::default())
                },
                false
            ),
            7.0 * DAY
        );
        assert_eq!(
            ban_seconds(
                &Record {
                    version: 31900,
                    ..s(Stats::default())
                },
                false
            ),
            0.0
        );
        assert_eq!(
            ban_seconds(&s(with_window(4, 0.149, 32.1)), false),
            30.0 * DAY
        );
        assert_eq!(ban_seconds(&s(with_window(4, 0.151, 32.1)), false), 0.0);
        assert_eq!(ban_seconds(&s(with_window(4, 0.149, 32.0)), false), 0.0);
        assert_eq!(
            ban_seconds(&s(with_window(3, 0.099, 16.1)), false),
            7.0 * DAY
        );
        assert_eq!(ban_seconds(&s(with_window(3, 0.101, 16.1)), false), 0.0);
        assert_eq!(ban_seconds(&s(with_window(3, 0.099, 16.0)), false), 0.0);
        assert_eq!(ban_seconds(&s(with_window(2, 0.049, 8.1)), false), DAY);
        assert_eq!(ban_seconds(&s(with_window(2, 0.051, 8.1)), false), 0.0);
        assert_eq!(ban_seconds(&s(with_window(2, 0.049, 8.0)), false), 0.0);
        assert_eq!(
            ban_seconds(&s(with_window(2, 0.0, 9.0)), true),
            0.0,
            "good peers keep serving"
        );
    }

    #[test]
    fn retry_intervals() {
        assert_eq!(retry_seconds(0, 0.0), 900.0);
        assert_eq!(retry_seconds(0, 0.999_999).round(), 3600.0);
        assert_eq!(retry_seconds(1, 0.5), 1800.0);
        assert_eq!(retry_seconds(2, 0.5), 3600.0);
        assert_eq!(retry_seconds(3, 0.5), 7200.0);
        assert_eq!(retry_seconds(40, 0.5), 4.0 * DAY);
        assert!(retry_seconds(1, 0.0) < retry_seconds(1, 0.99));
    }

    /// A record after `n` answered probes 15 minutes apart, ending at 10,000.
    fn answered(n: i64) -> Record {
        let mut r = Record::default();
        for i in 0..n {
            r.fold(&ANSWERED, 10_000 - (n - 1 - i) * 900, 1.0);
        }
        r
    }

    const ANSWERED: Probe = Probe::Answered {
        version: 70016,
        start_height: 900_000,
    };

    #[test]
    fn fold_counts_tries_successes_and_failures_in_a_row() {
        let mut r = answered(2);
        assert_eq!((r.tries, r.successes, r.failures_in_row), (2, 2, 0));
        assert_eq!(
            (r.version, r.start_height, r.last_try),
            (70016, 900_000, Some(10_000))
        );
        r.fold(&Probe::Failed { violation: None }, 10_900, 1.0);
        r.fold(&Probe::Failed { violation: None }, 11_800, 1.0);
        assert_eq!((r.tries, r.successes, r.failures_in_row), (4, 2, 2));
        assert_eq!(r.version, 70016, "a failure keeps what the peer said");
        let mut expected = answered(2).stats;
        expected.update(false, Some(900.0), 1.0);
        expected.update(false, Some(900.0), 1.0);
        assert_eq!(r.stats, expected);
    }

    #[test]
    fn verdict_of_an_answering_peer_is_good_and_retried_within_the_hour() {
        let r = answered(1);
        let v = verdict(&r, &ANSWERED, &OK_ANY_HEIGHT, 1.0, 0.0);
        assert_eq!(
            v,
            Verdict {
                good: true,
                ban: None,
                next_try: 10_000 + 900
            }
        );
        let v = verdict(&r, &ANSWERED, &OK_ANY_HEIGHT, 0.001, 0.999_999);
        assert_eq!(v.next_try, 10_000 + 4, "3600 s scaled by 0.001, rounded up");
    }

    const OK_ANY_HEIGHT: Requirements = Requirements {
        min_height: 0,
        ..OK
    };

    #[test]
    fn verdict_bans_a_violation_for_a_scaled_day_even_a_good_peer() {
        let mut r = answered(5);
        let last = Probe::Failed {
            violation: Some("bad-magic"),
        };
        r.fold(&last, 10_900, 0.5);
        let v = verdict(&r, &last, &OK_ANY_HEIGHT, 0.5, 0.5);
        let ban = Ban {
            until: 10_900 + 43_200,
            reason: "bad-magic",
        };
        assert_eq!(
            v,
            Verdict {
                good: false,
                ban: Some(ban),
                next_try: ban.until
            }
        );
    }

    #[test]
    fn verdict_bans_old_versions_for_a_week_and_the_unreliable_by_their_record() {
        let mut old = answered(1);
        old.version = 31_800;
        let v = verdict(&old, &ANSWERED, &OK_ANY_HEIGHT, 1.0, 0.0);
        assert_eq!(
            v.ban.map(|b| (b.until, b.reason)),
            Some((10_000 + 7 * 86_400, "old-version"))
        );
        assert!(!v.good);
        let failing = Record {
            stats: with_window(2, 0.01, 9.0),
            tries: 9,
            last_try: Some(10_000),
            failures_in_row: 3,
            ..Record::default()
        };
        let v = verdict(&failing, &Probe::Failed { violation: None }, &OK, 1.0, 0.5);
        assert_eq!(
            v.ban.map(|b| (b.until, b.reason)),
            Some((10_000 + 86_400, "unreliable"))
        );
        assert_eq!(
            v.next_try,
            10_000 + 86_400,
            "the backoff ends before the ban"
        );
    }

    #[test]
    fn verdict_backs_off_a_failing_peer_and_requirements_keep_it_from_good() {
        let mut r = Record::default();
        for t in [1_000, 3_000, 7_000] {
            r.fold(&Probe::Failed { violation: None }, t, 1.0);
        }
        let v = verdict(&r, &Probe::Failed { violation: None }, &OK, 1.0, 0.5);
        assert_eq!(
            v,
            Verdict {
                good: false,
                ban: None,
                next_try: 7_000 + 7_200
            }
        );
        let elsewhere = Requirements {
            default_port: false,
            ..OK_ANY_HEIGHT
        };
        assert!(!verdict(&answered(1), &ANSWERED, &elsewhere, 1.0, 0.0).good);
    }
}
