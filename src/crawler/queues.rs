//! The workers' job queues: one for direct probes (2 × `--threads`), and one per
//! configured proxy, as long as its cap (`--proxy-probes`). A job for a proxy holds one of
//! its slots from the moment it is queued, so it must not wait behind hundreds of direct
//! jobs: workers take from whichever queue has a job, and the scheduler tops up a proxy's
//! queue at every tick whatever the direct queue holds.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, bounded};

use super::DuePeer;
use super::route::{Networks, ProxyKind};

/// The scheduler's ends of the queues.
#[derive(Debug)]
pub(super) struct JobSenders {
    pub(super) direct: Sender<DuePeer>,
    proxies: [Option<Sender<DuePeer>>; 3],
}

/// A worker's ends of the queues (the direct one first).
#[derive(Debug, Clone)]
pub(super) struct JobReceivers {
    receivers: Vec<Receiver<DuePeer>>,
}

/// The queues for `threads` workers and the proxies of `networks`, each `cap` long.
pub(super) fn job_queues(
    threads: usize,
    networks: &Networks,
    cap: usize,
) -> (JobSenders, JobReceivers) {
    let (direct, direct_rx) = bounded(threads * 2);
    let mut receivers = vec![direct_rx];
    let proxies = ProxyKind::ALL.map(|kind| {
        networks.proxy(kind).map(|_| {
            let (tx, rx) = bounded(cap.max(1));
            receivers.push(rx);
            tx
        })
    });
    (JobSenders { direct, proxies }, JobReceivers { receivers })
}

impl JobSenders {
    /// The queue of jobs through the proxy `kind` (`None`: direct).
    pub(super) fn queue(&self, kind: Option<ProxyKind>) -> &Sender<DuePeer> {
        kind.and_then(|k| self.proxies[k.index()].as_ref())
            .unwrap_or(&self.direct)
    }
}

impl JobReceivers {
    /// The next job of any queue, waiting up to `timeout`.
    ///
    /// # Errors
    /// `Timeout` when none came, `Disconnected` once the scheduler is gone.
    pub(super) fn recv_timeout(&self, timeout: Duration) -> Result<DuePeer, RecvTimeoutError> {
        let mut select = Select::new();
        for r in &self.receivers {
            select.recv(r);
        }
        let op = select
            .select_timeout(timeout)
            .map_err(|_| RecvTimeoutError::Timeout)?;
        let index = op.index();
        op.recv(&self.receivers[index])
            .map_err(|_| RecvTimeoutError::Disconnected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PeerAddr;

    fn job(s: &str) -> DuePeer {
        DuePeer {
            addr: s.parse::<PeerAddr>().expect("a test address"),
            last_getaddr: None,
            services: 0,
        }
    }

    #[test]
    fn workers_take_from_every_queue_until_the_scheduler_is_gone() {
        let networks = Networks {
            onion_proxy: Some("127.0.0.1:9050".parse().expect("an address")),
            ..Networks::default()
        };
        let (tx, rx) = job_queues(2, &networks, 3);
        for i in 1..=4 {
            tx.queue(None)
                .try_send(job(&format!("1.1.1.{i}:8333")))
                .expect("room");
        }
        assert!(tx.queue(None).is_full());
        let onion = job("2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion:8333");
        tx.queue(Some(ProxyKind::Onion))
            .try_send(onion.clone())
            .expect("room");
        assert_eq!(tx.queue(Some(ProxyKind::Onion)).capacity(), Some(3));
        assert!(
            tx.queue(Some(ProxyKind::I2p)).same_channel(&tx.direct),
            "no I2P proxy: direct"
        );
        let taken: Vec<DuePeer> = (0..5)
            .map(|_| rx.recv_timeout(Duration::from_secs(1)).expect("a job"))
            .collect();
        assert!(taken.contains(&onion));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout)
        );
        drop(tx);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(1)),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}
