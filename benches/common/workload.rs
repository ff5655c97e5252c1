//! A crawler writer's workload for benches: probe results for the peers of a generated
//! database, in the order the scheduler would take them, committed as the writer thread
//! commits them. Shared by the store bench and the DNS bench (which writes while it
//! serves), included with `#[path]` next to `mod common`.

use dnsseeder::addr::PeerAddr;
use dnsseeder::crawler::{Batch, Outcome, Policy, ProbeResult};
use dnsseeder::store::Store;

use crate::common::{self, NOW, Rng};

/// The policy of the writes: mainnet's, with room for every generated row.
pub const POLICY: Policy = Policy {
    scale: 1.0,
    default_port: 8333,
    min_height: 0,
    allow_private: false,
    max_addresses: 1_000_000,
};

/// Outcomes of failed probes: reason, weight, protocol violation.
const FAILURES: &[((&str, bool), u32)] = &[
    (("timeout", false), 60),
    (("refused", false), 30),
    (("reset", false), 6),
    (("protocol-error", false), 3),
    (("bad-magic", true), 1),
];

/// Probe results for the dialable peers of a database, taken in `next_try` order as the
/// scheduler would, each outcome drawn by the peer's record; pass after pass, an hour
/// apart.
pub struct Workload {
    /// Address and chance of answering.
    peers: Vec<(PeerAddr, f64)>,
    cursor: usize,
    pass: i64,
    rng: Rng,
}

impl Workload {
    pub fn new(store: &Store, seed: u64) -> Workload {
        let mut stmt = store
            .connection()
            .prepare(
                "SELECT address, good, last_success IS NOT NULL, tries FROM peers \
                 WHERE next_try IS NOT NULL ORDER BY next_try",
            )
            .expect("the workload query prepares");
        let peers = stmt
            .query_map([], |r| {
                let (address, good, answered, tries): (String, bool, bool, i64) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                let chance = match (good, answered, tries) {
                    (true, _, _) => 0.97,
                    (_, true, _) => 0.3,
                    (_, _, 0) => 0.12,
                    _ => 0.02,
                };
                Ok((address, chance))
            })
            .expect("the workload query runs")
            .map(|row| {
                let (address, chance) = row.expect("a workload row reads");
                let addr = address.parse().expect("generated addresses parse");
                (addr, chance)
            })
            .collect::<Vec<_>>();
        assert!(!peers.is_empty(), "the database has dialable peers");
        Workload {
            peers,
            cursor: 0,
            pass: 0,
            rng: Rng::new(seed),
        }
    }

    /// The next `size` results and the time they were committed at.
    pub fn next_batch(&mut self, size: usize) -> (Batch, i64) {
        let results: Vec<ProbeResult> = (0..size).map(|_| self.next_result()).collect();
        let now = results.last().map_or(NOW, |r| r.time);
        let batch = Batch {
            results,
            learned: Vec::new(),
        };
        (batch, now)
    }

    fn next_result(&mut self) -> ProbeResult {
        if self.cursor == self.peers.len() {
            self.cursor = 0;
            self.pass += 1;
        }
        let (addr, chance) = self.peers[self.cursor];
        let time = NOW + 600 + self.pass * 3600 + (self.cursor / 100) as i64;
        self.cursor += 1;
        let rng = &mut self.rng;
        let (outcome, asked_getaddr) = if rng.chance(chance) {
            let success = Outcome::Success {
                transport: "v1",
                version: 70016,
                services: common::services(rng),
                user_agent: common::user_agent(rng).to_owned(),
                start_height: 900_000 + self.pass,
            };
            (success, rng.chance(0.5))
        } else {
            let (reason, violation) = rng.pick(FAILURES);
            (Outcome::Failure { reason, violation }, false)
        };
        ProbeResult {
            addr,
            time,
            outcome,
            asked_getaddr,
        }
    }
}
