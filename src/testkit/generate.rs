//! A generator of realistic peer databases, for benchmarks and tests: [`generate`] writes
//! rows straight into `peers` with one prepared INSERT in one transaction, a million rows
//! in seconds.
//!
//! The rows look like a seeder's after weeks of crawling mainnet: mostly IPv4 spread over
//! the whole public address space (so over nearly every /16), some IPv6 in real provider
//! prefixes, a few onions; the usual service masks; and reliability windows that agree
//! with each row's history, so that `reliability::is_good` says of every row what its
//! `good` column says. These addresses are only stored, never dialed: a seeder must not be
//! run on such a database (it would dial them).
//!
//! With [`Options::loopback`], every address is one a test may dial: IPv4 in 127.0.0.0/8
//! (spread over all 256 /16s of it, never in 127.0.0.0/24, never ending in .0 or .255),
//! and no IPv6 or onion rows at all (the only IPv6 loopback address is `::1`, and a good
//! peer must be on the default port, so IPv6 rows could not stay unique). The mix of
//! services and histories is the same; `dnsseeder run --allow-private` on such a
//! database dials only loopback addresses, and its rows are good by the same rules with
//! `--allow-private`.

use std::net::{Ipv4Addr, Ipv6Addr};

use std::sync::LazyLock;

use rusqlite::{Connection, ToSql};

use crate::addr::{Family, Host, PeerAddr};
use crate::reliability::{self, Probe, Record, Requirements, Stats, TAUS};
use crate::store::{WINDOW_COLUMNS, window_values};

pub use super::rng::Rng;

/// The fixed clock of [`fill`]'s databases (the benches'), UNIX seconds: every timestamp
/// is at or before it, except `next_try` and `banned_until`, which may lie ahead.
/// Callers that run a seeder on the database pass the current time (see [`Options::now`]).
pub const NOW: i64 = 1_750_000_000;

/// Service masks as real nodes announce them, with their weights: NETWORK | WITNESS |
/// NETWORK_LIMITED (0x409), with P2P_V2 (0xc09), with COMPACT_FILTERS (0x449), older or
/// pruned nodes (0x9, 0x1) and gossip that says nothing (0x0).
const SERVICES: &[(u64, u32)] = &[
    (0xc09, 40),
    (0x409, 25),
    (0x449, 10),
    (0x9, 12),
    (0x1, 5),
    (0x0, 8),
];

const AGENTS: &[(&str, u32)] = &[
    ("/Satoshi:29.0.0/", 25),
    ("/Satoshi:28.1.0/", 25),
    ("/Satoshi:27.0.0/", 20),
    ("/Satoshi:26.0.0/", 10),
    ("/Satoshi:25.0.0/", 6),
    ("/Satoshi:28.1.0/Knots:20250305/", 8),
    ("/Satoshi:0.21.0/", 4),
    ("/btcd:0.24.2/", 2),
];

const ERRORS: &[(&str, u32)] = &[
    ("timeout", 60),
    ("refused", 30),
    ("reset", 6),
    ("protocol-error", 3),
    ("bad-magic", 1),
];

/// Well-known provider prefixes (first two groups) for IPv6 peers.
const V6_PREFIXES: &[[u16; 2]] = &[
    [0x2a01, 0x04f8],
    [0x2001, 0x41d0],
    [0x2600, 0x3c00],
    [0x2a02, 0x8108],
    [0x2604, 0xa880],
    [0x2003, 0x00e3],
    [0x2406, 0xda18],
    [0x2a0e, 0x0b00],
];

const DEFAULT_PORT: u16 = 8333;
const OTHER_PORTS: &[(u16, u32)] = &[(8334, 3), (18333, 2), (8433, 1), (9333, 1), (0, 3)];

/// The columns a generated row fills, in the order of [`Row::values`].
static INSERT: LazyLock<String> = LazyLock::new(|| {
    let placeholders: Vec<String> = (1..=35).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO peers (address, family, services, source, first_seen, last_seen, tries, \
         successes, failures_in_row, last_try, last_success, last_error, last_getaddr, {}, \
         version, user_agent, start_height, good, banned_until, ban_reason, next_try) \
         VALUES ({})",
        *WINDOW_COLUMNS,
        placeholders.join(", ")
    )
});

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Rows to write.
    pub rows: usize,
    /// How many of them are good (at most `rows`).
    pub good: usize,
    /// The same seed (and clock) gives the same rows.
    pub seed: u64,
    /// Only addresses in 127.0.0.0/8, IPv4 only (see the module documentation).
    pub loopback: bool,
    /// The clock of the database, UNIX seconds: every timestamp is at or before it,
    /// except `next_try` and `banned_until`, which may lie ahead.
    pub now: i64,
}

/// At most this many rows in loopback mode: 127.0.0.0/8 without 127.0.0.0/24 and
/// without the addresses ending in .0 or .255.
pub const LOOPBACK_MAX_ROWS: usize = 16_000_000;

/// Fills `peers` with `n` generated rows of which exactly `good` are good, in one
/// transaction; the same `seed` gives the same rows. Timestamps are relative to [`NOW`];
/// no address is loopback.
///
/// # Errors
/// On SQLite errors (a table that already holds generated rows of the same seed fails
/// on the unique address); nothing is written then.
///
/// # Panics
/// If `good > n`.
pub fn fill(conn: &Connection, n: usize, good: usize, seed: u64) -> rusqlite::Result<()> {
    generate(
        conn,
        &Options {
            rows: n,
            good,
            seed,
            loopback: false,
            now: NOW,
        },
    )
}

/// Fills `peers` as `options` say, in one transaction.
///
/// # Errors
/// On SQLite errors (a table that already holds generated rows of the same seed fails
/// on the unique address); nothing is written then.
///
/// # Panics
/// If `good > rows`, or `rows` exceeds [`LOOPBACK_MAX_ROWS`] in loopback mode.
pub fn generate(conn: &Connection, options: &Options) -> rusqlite::Result<()> {
    let Options { rows, good, .. } = *options;
    assert!(good <= rows, "cannot make {good} of {rows} rows good");
    assert!(
        !options.loopback || rows <= LOOPBACK_MAX_ROWS,
        "127.0.0.0/8 holds at most {LOOPBACK_MAX_ROWS} generated rows, not {rows}"
    );
    // A large page cache while filling: the unique-address and next_try indexes take
    // inserts in random order. The connection's own setting is restored afterwards.
    let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    conn.pragma_update(None, "cache_size", -512 * 1024)?;
    let filled = insert_rows(conn, options);
    conn.pragma_update(None, "cache_size", cache)?;
    filled
}

fn insert_rows(conn: &Connection, options: &Options) -> rusqlite::Result<()> {
    let n = options.rows;
    let tx = conn.unchecked_transaction()?;
    {
        let mut stmt = tx.prepare(&INSERT)?;
        let mut generator = Generator::new(options);
        let mut good_left = options.good;
        for i in 0..n {
            // Selection sampling: exactly `good` rows, spread evenly at random.
            let is_good = generator.rng.below((n - i) as u64) < good_left as u64;
            good_left -= usize::from(is_good);
            let row = generator.row(is_good);
            let (keys, windows) = (row.keys(), window_values(&row.stats));
            stmt.execute(row.values(&keys, &windows).as_slice())?;
        }
    }
    tx.commit()
}

/// A service mask as gossiped or announced, by the usual weights.
pub fn services(rng: &mut Rng) -> u64 {
    rng.pick(SERVICES)
}

/// A user agent, by the usual weights.
pub fn user_agent(rng: &mut Rng) -> &'static str {
    rng.pick(AGENTS)
}

/// One generated row.
struct Row {
    addr: PeerAddr,
    services: u64,
    source: &'static str,
    first_seen: i64,
    last_seen: Option<i64>,
    tries: i64,
    successes: i64,
    failures_in_row: i64,
    last_try: Option<i64>,
    last_success: Option<i64>,
    last_error: Option<&'static str>,
    last_getaddr: Option<i64>,
    stats: Stats,
    version: i64,
    user_agent: &'static str,
    start_height: i64,
    good: bool,
    banned_until: i64,
    ban_reason: Option<&'static str>,
    next_try: Option<i64>,
}

impl Row {
    /// The address, family and services columns.
    fn keys(&self) -> (String, i64, i64) {
        let addr = &self.addr;
        (addr.to_string(), addr.family() as i64, self.services as i64)
    }

    /// The row's values in the order of [`INSERT`]'s columns, with its [`Row::keys`] and
    /// its stats' [`window_values`].
    fn values<'a>(
        &'a self,
        (address, family, services): &'a (String, i64, i64),
        windows: &'a [f64; 15],
    ) -> Vec<&'a dyn ToSql> {
        let mut values: Vec<&dyn ToSql> = vec![
            address,
            family,
            services,
            &self.source,
            &self.first_seen,
            &self.last_seen,
            &self.tries,
            &self.successes,
            &self.failures_in_row,
            &self.last_try,
            &self.last_success,
            &self.last_error,
            &self.last_getaddr,
        ];
        values.extend(windows.iter().map(|v| v as &dyn ToSql));
        values.extend([
            &self.version as &dyn ToSql,
            &self.user_agent,
            &self.start_height,
            &self.good,
            &self.banned_until,
            &self.ban_reason,
            &self.next_try,
        ]);
        values
    }
}

/// What a row has been through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Answers nearly every probe and is served.
    Good,
    /// Answered before, too seldom to be served (or an outdated version).
    Flaky,
    /// Tried, never answered.
    Failing,
    /// Heard of, never tried.
    New,
}

struct Generator {
    rng: Rng,
    now: i64,
    loopback: bool,
    /// Counters behind the unique addresses of each family.
    v4: u32,
    v6: u64,
    /// Odd multiplier and mask of the IPv4 permutation, from the seed.
    v4_mul: u32,
    v4_xor: u32,
}

impl Generator {
    fn new(options: &Options) -> Generator {
        let mut rng = Rng::new(options.seed);
        let v4_mul = (rng.next_u64() as u32) | 1;
        let v4_xor = rng.next_u64() as u32;
        Generator {
            rng,
            now: options.now,
            loopback: options.loopback,
            v4: 0,
            v6: 0,
            v4_mul,
            v4_xor,
        }
    }

    fn row(&mut self, good: bool) -> Row {
        let kind = if good {
            Kind::Good
        } else {
            self.rng
                .pick(&[(Kind::New, 55), (Kind::Failing, 35), (Kind::Flaky, 10)])
        };
        let family = self.family(kind);
        let port = self.port(kind);
        let addr = PeerAddr {
            host: self.host(family),
            port,
        };
        let row = self.blank(addr);
        match kind {
            Kind::Good => self.good(row),
            Kind::Flaky => self.flaky(row),
            Kind::Failing => self.failing(row),
            Kind::New => row,
        }
    }

    /// Onions are only heard of, never reached; loopback mode is IPv4 only.
    fn family(&mut self, kind: Kind) -> Family {
        let family = match kind {
            Kind::New => {
                self.rng
                    .pick(&[(Family::Ipv4, 78), (Family::Ipv6, 14), (Family::Onion, 8)])
            }
            _ => self.rng.pick(&[(Family::Ipv4, 82), (Family::Ipv6, 18)]),
        };
        if self.loopback { Family::Ipv4 } else { family }
    }

    /// Good peers are on the default port; 5% of the others are not.
    fn port(&mut self, kind: Kind) -> u16 {
        if kind == Kind::Good || self.rng.chance(0.95) {
            return DEFAULT_PORT;
        }
        match self.rng.pick(OTHER_PORTS) {
            0 => self.rng.range(1024, 65536) as u16,
            port => port,
        }
    }

    /// A fresh unique host: IPv4 by a seeded permutation of a counter, skipping what is
    /// not routable; IPv6 in a provider prefix; onions from random keys.
    fn host(&mut self, family: Family) -> Host {
        match family {
            Family::Ipv4 if self.loopback => self.loopback_v4(),
            Family::Ipv4 => self.public_v4(),
            Family::Ipv6 => self.provider_v6(),
            _ => {
                let mut key = [0u8; 32];
                for chunk in key.chunks_mut(8) {
                    chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes());
                }
                Host::TorV3(key)
            }
        }
    }

    fn public_v4(&mut self) -> Host {
        loop {
            let ip = Ipv4Addr::from(self.v4.wrapping_mul(self.v4_mul) ^ self.v4_xor);
            self.v4 += 1;
            let host = Host::V4(ip);
            let addr = PeerAddr {
                host,
                port: DEFAULT_PORT,
            };
            if addr.is_routable() {
                return host;
            }
        }
    }

    fn provider_v6(&mut self) -> Host {
        let [a, b] = V6_PREFIXES[self.rng.below(V6_PREFIXES.len() as u64) as usize];
        let site = self.rng.next_u64();
        self.v6 += 1;
        let id = self.v6.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let g = |x: u64, shift: u32| (x >> shift) as u16;
        let groups = [
            g(site, 0),
            g(site, 16),
            g(id, 48),
            g(id, 32),
            g(id, 16),
            g(id, 0),
        ];
        let [c, d, e, f, g, h] = groups;
        Host::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
    }

    /// A fresh unique address in 127.0.0.0/8: the low 24 bits of the same kind of
    /// permutation of a counter (a bijection on 24 bits, so unique while the counter
    /// stays below 2^24), which spreads consecutive rows over every 127.a/16.
    fn loopback_v4(&mut self) -> Host {
        loop {
            assert!(self.v4 < 1 << 24, "127.0.0.0/8 is exhausted");
            let low = (self.v4.wrapping_mul(self.v4_mul) ^ self.v4_xor) & 0x00ff_ffff;
            self.v4 += 1;
            let last = low & 0xff;
            if low >> 8 != 0 && last != 0 && last != 0xff {
                return Host::V4(Ipv4Addr::from(0x7f00_0000 | low));
            }
        }
    }

    fn blank(&mut self, addr: PeerAddr) -> Row {
        let first_seen = self.now - self.rng.range(0, 30 * DAY);
        Row {
            addr,
            services: services(&mut self.rng),
            source: self
                .rng
                .pick(&[("gossip", 94), ("dns-seed", 4), ("import", 1), ("seed", 1)]),
            first_seen,
            last_seen: Some(first_seen - self.rng.range(0, 3 * DAY)),
            tries: 0,
            successes: 0,
            failures_in_row: 0,
            last_try: None,
            last_success: None,
            last_error: None,
            last_getaddr: None,
            stats: Stats::default(),
            version: 0,
            user_agent: "",
            start_height: 0,
            good: false,
            banned_until: 0,
            ban_reason: None,
            next_try: Some(first_seen),
        }
    }

    /// Probed every 15-60 min for days to months, answering 90-100% of the time.
    fn good(&mut self, mut row: Row) -> Row {
        let dt = self.rng.range(900, 3600);
        let tries = self.rng.range(50, 2000);
        let p = 0.9 + 0.1 * self.rng.unit();
        let last_try = self.now - self.rng.range(0, dt);
        self.answered(&mut row, tries, dt, p, last_try);
        row.last_success = Some(last_try);
        row.last_getaddr = Some(last_try - self.rng.range(0, DAY));
        row.version = self.rng.pick(&[(70016, 90), (70015, 10)]);
        let row = self.schedule(row);
        assert!(row.good, "generated good row {} is not good", row.addr);
        row
    }

    /// Answered now and then; mostly failing lately. A few run an outdated version.
    fn flaky(&mut self, mut row: Row) -> Row {
        let dt = self.rng.range(3600, 6 * 3600);
        let tries = self.rng.range(5, 300);
        let p = 0.05 + 0.25 * self.rng.unit();
        let last_try = self.now - self.rng.range(0, dt);
        self.answered(&mut row, tries, dt, p, last_try);
        row.failures_in_row = self.rng.range(0, 7).min(tries - row.successes);
        row.last_success = Some(last_try - row.failures_in_row * dt - self.rng.range(0, dt));
        if row.failures_in_row > 0 {
            row.last_error = Some(self.rng.pick(ERRORS));
        }
        row.last_getaddr = row.last_success;
        if self.rng.chance(0.005) {
            row.version = 31800;
        }
        let row = self.schedule(row);
        assert!(!row.good, "generated flaky row {} is good", row.addr);
        row
    }

    /// Tried 1-40 times with exponential backoff, never answered.
    fn failing(&mut self, mut row: Row) -> Row {
        let tries = 1 + (self.rng.unit().powi(2) * 40.0) as i64;
        let dt = reliability::retry_seconds((tries / 2).max(1) as u32, 0.5) as i64;
        let last_try = self.now - self.rng.range(0, dt);
        row.tries = tries;
        row.failures_in_row = tries;
        row.stats = history(tries, dt as f64, 0.0);
        row.last_try = Some(last_try);
        // A seeder prunes addresses never reached for 30 days (`crawler::PRUNE_AGE`):
        // a failing row was first seen within the last 29, whatever its history says.
        row.first_seen = row
            .first_seen
            .min(last_try - tries * dt)
            .max(self.now - 29 * DAY);
        row.last_error = Some(self.rng.pick(ERRORS));
        self.schedule(row)
    }

    /// The fields of a peer that answered some of `tries` probes `dt` seconds apart.
    fn answered(&mut self, row: &mut Row, tries: i64, dt: i64, p: f64, last_try: i64) {
        row.tries = tries;
        row.successes = ((p * tries as f64).round() as i64).clamp(1, tries);
        row.stats = history(tries, dt as f64, p);
        row.last_try = Some(last_try);
        row.first_seen = row.first_seen.min(last_try - tries * dt);
        row.user_agent = user_agent(&mut self.rng);
        row.version = 70016;
        row.start_height = 900_000 - self.rng.range(0, 2000);
    }

    /// Good flag, ban and next try: the reliability model's verdict on the row's last
    /// probe (a `bad-magic` failure is a protocol violation).
    fn schedule(&mut self, mut row: Row) -> Row {
        let last = match row.last_error {
            Some(e @ "bad-magic") => Probe::Failed { violation: Some(e) },
            Some(_) => Probe::Failed { violation: None },
            None => Probe::Answered {
                version: row.version,
                start_height: row.start_height,
            },
        };
        let requirements = self.requirements(&row);
        let verdict =
            reliability::verdict(&record(&row), &last, &requirements, 1.0, self.rng.unit());
        row.good = verdict.good;
        if let Some(ban) = verdict.ban {
            row.banned_until = ban.until;
            row.ban_reason = Some(ban.reason);
        }
        row.next_try = Some(verdict.next_try);
        row
    }
}

const DAY: i64 = 86_400;

/// The windows after `tries` probes `dt` seconds apart, a fraction `p` of them answered:
/// the expectation of the model's update rule, in closed form.
fn history(tries: i64, dt: f64, p: f64) -> Stats {
    let mut stats = Stats::default();
    for (window, tau) in stats.windows.iter_mut().zip(TAUS) {
        let f = (-dt / tau).exp();
        let fk = f.powi(tries.min(i64::from(i32::MAX)) as i32);
        window.weight = 1.0 - fk;
        window.count = (1.0 - fk) / (1.0 - f);
        window.reliability = p * window.weight;
    }
    stats
}

fn record(row: &Row) -> Record {
    Record {
        stats: row.stats,
        tries: row.tries,
        successes: row.successes,
        failures_in_row: row.failures_in_row,
        last_try: row.last_try,
        version: row.version,
        start_height: row.start_height,
    }
}

impl Generator {
    /// What the seeder demands of `row` to call it good: the default port, routable (or, in
    /// loopback mode, as with `--allow-private`), at any height.
    fn requirements(&self, row: &Row) -> Requirements {
        Requirements {
            default_port: row.addr.port == DEFAULT_PORT,
            routable: self.loopback || row.addr.is_routable(),
            min_height: 0,
        }
    }
}
#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::store::{Store, read_windows};

    /// A new database filled as `options` say, in a temporary directory.
    fn generated(options: &Options) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(&dir.path().join("gen.db")).expect("a new database opens");
        generate(store.connection(), options).expect("the generator fills the database");
        (dir, store)
    }

    fn options(rows: usize, good: usize, loopback: bool) -> Options {
        Options {
            rows,
            good,
            seed: 7,
            loopback,
            now: 1_800_000_000,
        }
    }

    /// Every row's `good` column against `reliability::is_good` recomputed from its
    /// stored columns; returns the addresses.
    fn check_rows(store: &Store, allow_private: bool) -> Vec<PeerAddr> {
        let mut stmt = store
            .connection()
            .prepare(&format!(
                "SELECT address, good, tries, successes, version, start_height, {} FROM peers",
                *WINDOW_COLUMNS
            ))
            .expect("the check query prepares");
        let mut rows = stmt.query([]).expect("the check query runs");
        let mut addrs = Vec::new();
        while let Some(r) = rows.next().expect("a row reads") {
            let addr: PeerAddr = r
                .get::<_, String>(0)
                .expect("address")
                .parse()
                .expect("generated addresses parse");
            let record = Record {
                stats: read_windows(r, 6).expect("the windows"),
                tries: r.get(2).expect("tries"),
                successes: r.get(3).expect("successes"),
                version: r.get(4).expect("version"),
                start_height: r.get(5).expect("start_height"),
                ..Record::default()
            };
            let requirements = Requirements {
                default_port: addr.port == DEFAULT_PORT,
                routable: allow_private || addr.is_routable(),
                min_height: 0,
            };
            let good: bool = r.get(1).expect("good");
            assert_eq!(
                good,
                reliability::is_good(&record, &requirements),
                "row {addr} says good = {good}"
            );
            addrs.push(addr);
        }
        addrs
    }

    fn good_count(store: &Store) -> usize {
        store
            .connection()
            .query_row("SELECT count(*) FROM peers WHERE good = 1", [], |r| {
                r.get(0)
            })
            .expect("good rows count")
    }

    #[test]
    fn rows_are_as_asked_and_agree_with_is_good() {
        let (_dir, store) = generated(&options(6000, 450, false));
        assert_eq!(store.count().expect("count"), 6000);
        assert_eq!(good_count(&store), 450);
        let addrs = check_rows(&store, false);
        let families: HashSet<Family> = addrs.iter().map(PeerAddr::family).collect();
        assert_eq!(
            families,
            HashSet::from([Family::Ipv4, Family::Ipv6, Family::Onion])
        );
        assert!(addrs.iter().all(PeerAddr::is_routable));
    }

    #[test]
    fn loopback_mode_yields_only_loopback_ipv4_spread_over_many_16s() {
        let (_dir, store) = generated(&options(8000, 600, true));
        assert_eq!(store.count().expect("count"), 8000);
        assert_eq!(good_count(&store), 600);
        let addrs = check_rows(&store, true);
        let mut sixteens = HashSet::new();
        for addr in &addrs {
            let Host::V4(ip) = addr.host else {
                panic!("{addr} is not IPv4");
            };
            let o = ip.octets();
            assert!(ip.is_loopback(), "{addr} is not loopback");
            assert!(addr.is_dialable(), "{addr} may not be dialed");
            assert!(o[1..3] != [0, 0] && o[3] != 0 && o[3] != 255, "{addr}");
            sixteens.insert(o[1]);
        }
        assert!(sixteens.len() > 250, "only {} /16s used", sixteens.len());
    }

    #[test]
    fn the_same_seed_gives_the_same_rows_and_fill_keeps_its_clock() {
        let dump = |store: &Store| -> Vec<(String, i64, Option<i64>)> {
            let mut stmt = store
                .connection()
                .prepare("SELECT address, first_seen, next_try FROM peers ORDER BY id")
                .expect("prepares");
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .expect("runs")
                .collect::<rusqlite::Result<_>>()
                .expect("rows read")
        };
        let (_a, first) = generated(&options(500, 40, true));
        let (_b, second) = generated(&options(500, 40, true));
        assert_eq!(dump(&first), dump(&second));
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(&dir.path().join("fill.db")).expect("opens");
        fill(store.connection(), 500, 40, 7).expect("fills");
        assert!(
            dump(&store)
                .iter()
                .all(|(_, first_seen, _)| *first_seen <= NOW)
        );
        // Nothing the seeder would prune at once (never reached for 30 days).
        let prunable: i64 = store
            .connection()
            .query_row(
                "SELECT count(*) FROM peers WHERE last_success IS NULL AND tries > 0 \
                 AND first_seen < ?1",
                [NOW - crate::crawler::PRUNE_AGE],
                |r| r.get(0),
            )
            .expect("counts");
        assert_eq!(prunable, 0);
    }
}
