//! What flows between the crawler's threads: due addresses from the scheduler to the
//! workers, probe results and the addresses they taught us from the workers to the writer,
//! and the writer's batches to the store.

use crate::addr::PeerAddr;
use crate::reliability::Probe;

/// An address that is due for a probe.
#[derive(Debug, Clone, PartialEq)]
pub struct DuePeer {
    pub addr: PeerAddr,
    pub last_getaddr: Option<i64>,
}

/// Where a new address came from (the `source` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Seed,
    DnsSeed,
    Gossip,
    Import,
}

impl Source {
    /// The `source` column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Seed => "seed",
            Source::DnsSeed => "dns-seed",
            Source::Gossip => "gossip",
            Source::Import => "import",
        }
    }
}

/// An address heard of, not yet probed by us.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPeer {
    pub addr: PeerAddr,
    /// Services as gossiped (kept only until the peer tells us its own).
    pub services: u64,
    /// Gossip timestamp, UNIX seconds.
    pub seen: i64,
    pub source: Source,
}

/// What a probe found out.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handshake completed.
    Success {
        version: i64,
        services: u64,
        user_agent: String,
        start_height: i64,
    },
    /// It did not; `reason` is stored in `last_error` (`refused`, `timeout`, ...).
    /// A protocol `violation` (bad header, wrong magic, oversize) bans the peer for a day.
    Failure {
        reason: &'static str,
        violation: bool,
    },
}

impl Outcome {
    /// The outcome as the reliability model sees it.
    pub fn as_probe(&self) -> Probe {
        match *self {
            Outcome::Success {
                version,
                start_height,
                ..
            } => Probe::Answered {
                version,
                start_height,
            },
            Outcome::Failure { reason, violation } => Probe::Failed {
                violation: violation.then_some(reason),
            },
        }
    }
}

/// One finished probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub addr: PeerAddr,
    /// When the probe ended, UNIX seconds.
    pub time: i64,
    pub outcome: Outcome,
    /// `getaddr` was sent (and the peer answered the handshake).
    pub asked_getaddr: bool,
}

/// A batch for the writer: results and the addresses they taught us, one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub results: Vec<ProbeResult>,
    pub learned: Vec<NewPeer>,
}
