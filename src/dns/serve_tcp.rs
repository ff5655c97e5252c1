//! DNS over TCP: the acceptor of each listener, and a thread per connection answering
//! its length-framed, possibly pipelined requests in order (RFC 7766).
//!
//! It exists apart from the UDP loop because TCP's concerns are its own: a cap on open
//! connections (extra ones are accepted and closed at once), an idle timeout that partial
//! messages do not reset, a write timeout for clients that do not read, and framing.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::counters::bump;
use super::respond::{Transport, respond_into};
use super::server::{ACCEPT_POLL, POLL, Shared, is_timeout, spawn_named};

/// A TCP client must take a response within this time, or it is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_millis(200);
/// Largest TCP-framed request plus its length prefix.
const MAX_FRAME: usize = 2 + 65535;
/// Bytes taken from the socket per read.
const READ_CHUNK: usize = 4096;

/// Accepts connections on `listener` until the server stops, then waits for their
/// threads.
pub(super) fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    if let Err(e) = listener.set_nonblocking(true) {
        log::error!("DNS TCP listener unusable: {e}");
        return;
    }
    let mut connections = Connections::default();
    while !shared.stopping() {
        let Some((stream, peer)) = accept(listener) else {
            continue;
        };
        if connections.open() >= shared.max_tcp_connections {
            bump(&shared.counters.tcp_rejected);
            drop(stream);
            continue;
        }
        connections.start(stream, peer, shared);
    }
    connections.join();
}

/// Accepts one connection; `None` when none is waiting (after a short pause) or the
/// accept failed (after a longer one when the failure may last, such as running out of
/// file descriptors).
fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept() {
        Ok(accepted) => Some(accepted),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            thread::sleep(ACCEPT_POLL);
            None
        }
        Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::ConnectionAborted => None,
        Err(e) => {
            // Out of file descriptors, typically: back off.
            log::warn!("DNS TCP accept: {e}");
            thread::sleep(POLL);
            None
        }
    }
}

/// The connection threads of one listener, and how many of them are still serving.
#[derive(Default)]
struct Connections {
    open: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Connections {
    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Starts the thread serving `stream`; it holds one of the open slots until it ends.
    fn start(&mut self, stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
        self.threads.retain(|c| !c.is_finished());
        self.open.fetch_add(1, Ordering::Relaxed);
        bump(&shared.counters.tcp_connections);
        let slot = ConnectionSlot(Arc::clone(&self.open));
        let s = Arc::clone(shared);
        let serve = move || {
            let _slot = slot;
            if let Err(e) = serve_tcp(stream, &s) {
                log::debug!("DNS TCP connection from {peer}: {e}");
            }
        };
        match spawn_named("dns-tcp-conn", serve) {
            Ok(thread) => self.threads.push(thread),
            Err(e) => log::warn!("{e:#}"),
        }
    }

    /// Waits for every connection thread (they end within a poll of the stop flag).
    fn join(self) {
        for connection in self.threads {
            if connection.join().is_err() {
                log::error!("a DNS TCP connection thread panicked");
            }
        }
    }
}

/// Decrements the count of open TCP connections when a connection thread ends.
struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one TCP connection: pipelined queries answered in order, closed when idle for
/// `tcp_idle_timeout` (partial messages do not count as activity), on a request that
/// deserves silence, or at shutdown.
fn serve_tcp(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    configure(&stream)?;
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut buffers = Buffers::new();
    let mut deadline = Instant::now() + shared.tcp_idle_timeout;
    loop {
        let close = answer_frames(&mut buffers, shared, &mut rng);
        if !buffers.framed.is_empty() {
            stream.write_all(&buffers.framed)?;
            deadline = Instant::now() + shared.tcp_idle_timeout;
        }
        if close || shared.stopping() || Instant::now() >= deadline {
            return Ok(());
        }
        debug_assert!(buffers.input.len() < MAX_FRAME);
        if !read_more(&mut stream, &mut buffers)? {
            return Ok(());
        }
    }
}

/// Blocking reads that wake up to check for shutdown, bounded writes, no Nagle delay.
fn configure(stream: &TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)
}

/// The reused buffers of one connection.
struct Buffers {
    /// Bytes received and not yet answered.
    input: Vec<u8>,
    chunk: [u8; READ_CHUNK],
    /// One response.
    out: Vec<u8>,
    /// The responses of one round, each behind its length, for one write.
    framed: Vec<u8>,
}

impl Buffers {
    fn new() -> Self {
        Self {
            input: Vec::with_capacity(1024),
            chunk: [0; READ_CHUNK],
            out: Vec::with_capacity(1024),
            framed: Vec::with_capacity(1024),
        }
    }
}

/// Answers every complete request at the start of `input` (and removes them), framing
/// the responses into `framed`. Returns whether the connection must close: a request
/// deserved silence (the responses before it still go out).
fn answer_frames(buffers: &mut Buffers, shared: &Shared, rng: &mut SmallRng) -> bool {
    let answers = |mask| shared.cache.get(mask);
    let Buffers {
        input, out, framed, ..
    } = buffers;
    let mut consumed = 0;
    let mut close = false;
    framed.clear();
    while let Some(request) = next_frame(&input[consumed..]) {
        consumed += 2 + request.len();
        let outcome = respond_into(request, Transport::Tcp, &shared.ctx, &answers, rng, out);
        shared.counters.record(outcome);
        if out.is_empty() {
            close = true;
            break;
        }
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(out);
    }
    input.drain(..consumed);
    close
}

/// Reads what has arrived into `input`; returns `false` when the client closed. A read
/// timeout is no error: the caller checks the deadline and the stop flag.
fn read_more(stream: &mut TcpStream, buffers: &mut Buffers) -> io::Result<bool> {
    match stream.read(&mut buffers.chunk) {
        Ok(0) => Ok(false),
        Ok(n) => {
            buffers.input.extend_from_slice(&buffers.chunk[..n]);
            Ok(true)
        }
        Err(e) if is_timeout(&e) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Returns the first complete length-framed message at the start of `buf`.
fn next_frame(buf: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*buf.first()?, *buf.get(1)?]));
    buf.get(2..2 + len)
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_by_their_length_prefix() {
        assert_eq!(next_frame(&[]), None);
        assert_eq!(next_frame(&[0]), None);
        assert_eq!(next_frame(&[0, 3, 1, 2]), None);
        assert_eq!(next_frame(&[0, 3, 1, 2, 3, 9]), Some(&[1, 2, 3][..]));
        assert_eq!(next_frame(&[0, 0]), Some(&[][..]));
    }
}
