//! The UDP serving loop: one thread per UDP socket, answering a batch of datagrams per
//! receive call.
//!
//! It exists apart from the batch I/O (`udp`) and the responder (`respond`) to show the
//! hot path of the server in one screen: receive a batch, let the source's rate limit
//! decide between an answer, a truncated reply and silence, write each response into its
//! buffer, count it, send the batch. The only lock on it is the answer cache's read lock.

use std::net::UdpSocket;
use std::thread;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::ratelimit::{DEFAULT_MAX_SOURCES, RateLimiter, Verdict};
use super::respond::{MAX_UDP_EDNS, Outcome, Transport, respond_into, respond_truncated_into};
use super::server::{POLL, RECV_RETRY, Shared, is_timeout};
use super::udp::Batch;

/// Serves `socket` until the server stops, with its own random generator and rate
/// limiter (no locks between UDP threads).
pub(super) fn udp_loop(socket: &UdpSocket, shared: &Shared) {
    if let Err(e) = socket.set_read_timeout(Some(POLL)) {
        log::error!("DNS UDP socket unusable: {e}");
        return;
    }
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut limiter = shared
        .rate_limit
        .map(|(qps, burst)| RateLimiter::new(qps, burst, DEFAULT_MAX_SOURCES, Instant::now()));
    let mut batch = Batch::new(MAX_UDP_EDNS);
    while !shared.stopping() {
        let Some(received) = receive(&mut batch, socket) else {
            continue;
        };
        answer_batch(&mut batch, received, shared, limiter.as_mut(), &mut rng);
        batch.send(socket);
    }
}

/// Receives a batch and returns its size; `None` when the read timeout passed or the
/// socket failed (logged, then a short pause).
#[inline]
fn receive(batch: &mut Batch, socket: &UdpSocket) -> Option<usize> {
    match batch.receive(socket) {
        Ok(received) => Some(received),
        Err(e) if is_timeout(&e) => None,
        Err(e) => {
            log::debug!("DNS UDP receive: {e}");
            thread::sleep(RECV_RETRY);
            None
        }
    }
}

/// Writes the response to each of the `received` requests of `batch` into its buffer,
/// as the rate limiter (if any) allows, and counts what each said.
#[inline]
fn answer_batch(
    batch: &mut Batch,
    received: usize,
    shared: &Shared,
    mut limiter: Option<&mut RateLimiter>,
    rng: &mut SmallRng,
) {
    let answers = |mask| shared.cache.get(mask);
    let now = Instant::now();
    for i in 0..received {
        let (request, peer, out) = batch.request(i);
        let verdict = match &mut limiter {
            Some(limiter) => limiter.check(peer.ip(), now),
            None => Verdict::Answer,
        };
        let outcome = match verdict {
            Verdict::Answer => {
                respond_into(request, Transport::Udp, &shared.ctx, &answers, rng, out)
            }
            Verdict::Truncate => respond_truncated_into(request, &shared.ctx, out),
            Verdict::Drop => Outcome::Dropped,
        };
        shared.counters.record_udp(outcome);
    }
}
