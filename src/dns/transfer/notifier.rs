//! The NOTIFY thread: tells each `--notify` secondary about every new zone serial, over
//! UDP, until it acknowledges.
//!
//! Each secondary has its own connected socket (so only its answers are read) and at
//! most one NOTIFY outstanding, for the newest serial: a newer zone replaces a pending
//! one. An unanswered NOTIFY is sent again after 2, 4, 8 and 16 seconds; after
//! [`ATTEMPTS`] sends, or when the secondary answers with an error (it does not take
//! NOTIFY from this address), it is logged and given up: the secondary still refreshes
//! on the SOA's refresh timer (`--zone-refresh`).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::notify::{Ack, notify_message, read_ack};
use super::records::Zone;
use crate::dns::server::{POLL, Shared};

/// Sends of one NOTIFY at most.
pub const ATTEMPTS: u32 = 5;
/// The wait before the first resend; it doubles after each.
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Datagrams (or errors) read per secondary and turn: a flood from it waits.
const READS_PER_TURN: usize = 64;

/// One secondary and its NOTIFY in flight.
struct Target {
    addr: SocketAddr,
    socket: UdpSocket,
    pending: Option<Pending>,
}

struct Pending {
    zone: Arc<Zone>,
    id: u16,
    sent: u32,
    next: Instant,
}

/// Sends NOTIFY to `targets` for each zone `zones` delivers, until the server stops.
pub(in crate::dns) fn notify_loop(
    shared: &Shared,
    targets: &[SocketAddr],
    zones: &Receiver<Arc<Zone>>,
) {
    let mut targets: Vec<Target> = targets.iter().filter_map(|&addr| open(addr)).collect();
    let mut buf = [0u8; 512];
    while !shared.stopping() {
        let now = Instant::now();
        let wait = (targets.iter().filter_map(|t| t.pending.as_ref()))
            .map(|p| p.next.saturating_duration_since(now))
            .fold(POLL, Duration::min);
        match zones.recv_timeout(wait) {
            Ok(zone) => targets.iter_mut().for_each(|t| t.start(&zone)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        for target in &mut targets {
            target.read_acks(&mut buf);
            target.send_due(shared, Instant::now());
        }
    }
}

/// A socket connected to `addr`, or `None` (logged) when none can be made.
fn open(addr: SocketAddr) -> Option<Target> {
    let local = match addr {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local)
        .and_then(|s| s.connect(addr).map(|()| s))
        .and_then(|s| s.set_nonblocking(true).map(|()| s));
    match socket {
        Ok(socket) => Some(Target {
            addr,
            socket,
            pending: None,
        }),
        Err(e) => {
            log::error!("--notify {addr}: cannot open a UDP socket to it ({e}); it gets no NOTIFY");
            None
        }
    }
}

impl Target {
    /// Replaces what is pending with a NOTIFY for `zone`, due now.
    fn start(&mut self, zone: &Arc<Zone>) {
        self.pending = Some(Pending {
            zone: Arc::clone(zone),
            id: rand::random(),
            sent: 0,
            next: Instant::now(),
        });
    }

    /// Sends the pending NOTIFY if it is due, or gives it up after [`ATTEMPTS`].
    fn send_due(&mut self, shared: &Shared, now: Instant) {
        let Some(p) = self.pending.as_mut().filter(|p| p.next <= now) else {
            return;
        };
        if p.sent == ATTEMPTS {
            log::warn!(
                "NOTIFY of serial {} to {}: no answer after {ATTEMPTS} tries; check that it \
                 listens there and accepts NOTIFY from this host (it refreshes on the SOA \
                 timer meanwhile)",
                p.zone.serial,
                self.addr
            );
            self.pending = None;
            return;
        }
        let message = notify_message(p.id, &shared.ctx, &p.zone);
        if let Err(e) = self.socket.send(&message) {
            log::debug!("NOTIFY to {}: {e}", self.addr);
        }
        p.next = now + FIRST_RETRY * 2u32.pow(p.sent);
        p.sent += 1;
    }

    /// Reads what the secondary sent back; an answer to the pending NOTIFY ends it.
    fn read_acks(&mut self, buf: &mut [u8]) {
        for _ in 0..READS_PER_TURN {
            let n = match self.socket.recv(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP errors of earlier sends (nothing listens there yet): keep trying.
                Err(_) => continue,
            };
            let Some(p) = &self.pending else { continue };
            match read_ack(&buf[..n], p.id) {
                Ack::Done => {
                    log::info!(
                        "NOTIFY of serial {} acknowledged by {}",
                        p.zone.serial,
                        self.addr
                    );
                    self.pending = None;
                }
                Ack::Refused(rcode) => {
                    log::warn!(
                        "NOTIFY of serial {} refused by {} (RCODE {rcode}): allow NOTIFY from \
                         this host in its configuration",
                        p.zone.serial,
                        self.addr
                    );
                    self.pending = None;
                }
                Ack::Other => {}
            }
        }
    }
}
