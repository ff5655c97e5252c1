//! A real [`Crawler`] running flat out on instant failures, as a load on the rest of the
//! process: its own database of loopback addresses where nothing listens (127.1.0.0/16 and
//! up, port [`PORT`]), all due at once, so every probe ends at once with `refused` and the
//! workers, the scheduler and the writer turn as fast as they can. A tiny `--retry-scale`
//! ([`RETRY_SCALE`]) makes a failed address due again a second later, so the crawler never
//! runs out of work however long it runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use bitcoin::Network;
use bitcoin::p2p::Magic;
use dnsseeder::addr::PeerAddr;
use dnsseeder::crawler::{CrawlConfig, Crawler, Networks, NewPeer, Policy, Source};
use dnsseeder::p2p::ProbeOptions;
use dnsseeder::store::Store;
use tempfile::TempDir;

/// The port of every address: below 1024, so no unprivileged process (another bench's
/// simulated network) can listen there, and no standard service does.
pub const PORT: u16 = 1;
/// The model's clock runs this much faster: a failed address is due again in a second
/// (the shortest retry, as retries are whole seconds), and so is a banned one.
pub const RETRY_SCALE: f64 = 1e-6;

/// The crawler's database: `rows` never-tried addresses, each due at once.
pub struct Database {
    path: PathBuf,
    // Deleted on drop.
    _dir: TempDir,
}

impl Database {
    /// Writes `rows` addresses into a new database in a temporary directory.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub fn create(rows: usize) -> anyhow::Result<Database> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("churn.db");
        fill(&path, rows)?;
        Ok(Database { path, _dir: dir })
    }

    /// Starts a crawler of `threads` workers on the database.
    ///
    /// # Errors
    /// When the crawler cannot start.
    pub fn crawl(&self, threads: usize) -> anyhow::Result<Churn> {
        Ok(Churn(Crawler::start(config(&self.path, threads))?))
    }
}

/// A crawler churning through refused addresses until stopped.
pub struct Churn(Crawler);

impl Churn {
    /// Probes finished so far, and how many of them completed a handshake (0 unless
    /// something listened after all).
    pub fn probes(&self) -> (u64, u64) {
        let c = &self.0.counters;
        (
            c.probes.load(Ordering::Relaxed),
            c.successes.load(Ordering::Relaxed),
        )
    }

    /// Stops the crawler, joining its threads.
    pub fn stop(self) {
        self.0.stop();
    }
}

/// The `i`th address: 127.1.0.1 upward, never .0 or .255.
pub fn address(i: usize) -> PeerAddr {
    let (host, i) = (1 + i % 254, i / 254);
    let (subnet, net) = (i % 256, 1 + i / 256);
    let ip = Ipv4Addr::new(127, net.min(255) as u8, subnet as u8, host as u8);
    PeerAddr::from_socket(SocketAddr::from((ip, PORT)))
}

/// Writes `rows` never-tried addresses, each due now, into a new database at `db`.
fn fill(db: &Path, rows: usize) -> anyhow::Result<()> {
    let now = dnsseeder::unix_now();
    let peers: Vec<NewPeer> = (0..rows)
        .map(|i| NewPeer::unannounced(address(i), now, Source::Import))
        .collect();
    let mut store = Store::open(db)?;
    let inserted = store.add_peers(&peers, now)?;
    anyhow::ensure!(inserted == rows, "{inserted} rows written, not {rows}");
    Ok(())
}

/// Regtest magic, private addresses allowed, the default probe timeouts.
fn config(db: &Path, threads: usize) -> CrawlConfig {
    CrawlConfig {
        db: db.to_owned(),
        threads,
        probe: ProbeOptions::new(Magic::from(Network::Regtest)),
        policy: Policy {
            scale: RETRY_SCALE,
            default_port: PORT,
            min_height: 0,
            allow_private: true,
            max_addresses: 1_000_000,
        },
        seeds: Vec::new(),
        dns_seeds: Vec::new(),
        networks: Networks::default(),
        proxy_probes: 32,
        v2_first: true,
    }
}
