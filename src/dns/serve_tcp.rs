//! DNS over TCP: one event loop (`mio`, edge-triggered) serving every listener and every
//! connection of the server from one thread, so that thousands of mostly idle
//! connections cost a table entry each instead of a thread (SPEC §6).
//!
//! One loop for all listeners rather than one per listener, because the limits are the
//! server's: a source's connections are counted, and the least recently active one
//! chosen for eviction, across IPv4 and IPv6 listeners in one table without locks. One
//! thread is enough: TCP is the minor path (resolvers come after a truncated UDP reply),
//! and an answer costs microseconds. Each turn waits for readiness (at most [`POLL`], or
//! until the next idle deadline), then accepts (a bounded number per listener and turn),
//! steps the connections whose sockets are ready (`tcp_conn`: a bounded number of reads
//! each, so a client that keeps sending waits for the others), and closes the connections
//! idle for `tcp_idle_timeout` (partial requests are no activity) and those whose client
//! has not taken its answers for `tcp_conn::WRITE_TIMEOUT`. Admission follows
//! `tcp_table`: a per-source cap, and at the global cap the least recently active
//! connection makes room for a newcomer from another source. Running out of descriptors
//! is treated like the cap: the oldest connection is closed and the accept retried.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::counters::bump;
use super::server::{POLL, Shared};
use super::tcp_conn::{Connection, READ_CHUNK, Step, WRITE_TIMEOUT, Workspace};
use super::tcp_table::{Admission, Table};
use crate::ratelog::RateLimitedLog;

/// Connections accepted per listener and turn; more wait for the next turn.
const ACCEPT_BUDGET: usize = 128;
/// Readiness events taken per turn.
const EVENTS: usize = 1024;
/// How often a failing accept (out of descriptors) is logged.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);
/// `errno` of an accept refused for lack of descriptors: the process's (`EMFILE`) or the
/// system's (`ENFILE`); the same on Linux, the BSDs and macOS.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Serves DNS over TCP on `listeners` until the server stops, then closes every
/// connection.
pub(super) fn tcp_loop(listeners: Vec<std::net::TcpListener>, shared: &Arc<Shared>) {
    match EventLoop::new(listeners, shared) {
        Ok(mut event_loop) => event_loop.run(),
        Err(e) => log::error!("DNS over TCP is not served: cannot set up its event loop: {e}"),
    }
}

/// The loop's state: its listeners (tokens `0..listeners.len()`) and connections (token
/// `listeners.len() + slot`).
struct EventLoop<'s> {
    shared: &'s Shared,
    poll: Poll,
    listeners: Vec<TcpListener>,
    /// Whether a listener may have connections waiting (its budget ran out, or a
    /// descriptor was freed after running out of them).
    accept_again: bool,
    /// No accept before this time: the process is out of descriptors and holds no
    /// connection to close.
    accept_paused_until: Option<Instant>,
    table: Table<Connection>,
    workspace: Workspace<'s>,
    chunk: Vec<u8>,
    /// Connections that used their read budget, to step again at the next turn.
    again: Vec<usize>,
    /// Connections whose answers wait for their socket (possibly listed twice, or closed).
    writers: Vec<usize>,
    accept_log: RateLimitedLog,
}

impl<'s> EventLoop<'s> {
    fn new(listeners: Vec<std::net::TcpListener>, shared: &'s Shared) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut registered = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            listener.set_nonblocking(true)?;
            let mut listener = TcpListener::from_std(listener);
            poll.registry()
                .register(&mut listener, Token(i), Interest::READABLE)?;
            registered.push(listener);
        }
        Ok(Self {
            shared,
            poll,
            listeners: registered,
            accept_again: false,
            accept_paused_until: None,
            table: Table::new(shared.max_tcp_connections, shared.max_tcp_per_source),
            workspace: Workspace::new(shared),
            chunk: vec![0; READ_CHUNK],
            again: Vec::new(),
            writers: Vec::new(),
            accept_log: RateLimitedLog::new(ACCEPT_LOG_EVERY),
        })
    }

    /// Turns until the server stops.
    fn run(&mut self) {
        let mut events = Events::with_capacity(EVENTS);
        while !self.shared.stopping() {
            let timeout = self.timeout(Instant::now());
            // Those that used their read budget last turn go after this turn's events.
            let again = std::mem::take(&mut self.again);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("DNS TCP event loop: {e}");
                    std::thread::sleep(POLL);
                }
                events.clear();
            }
            for event in &events {
                self.dispatch(event.token().0);
            }
            for slot in again {
                self.step(slot);
            }
            self.retry_accept(Instant::now());
            self.expire(Instant::now());
        }
    }

    /// How long the next wait may last: none when work is left over, else until the
    /// oldest connection's idle deadline, at most [`POLL`] (for the stop flag).
    fn timeout(&self, now: Instant) -> Duration {
        let paused = self.accept_paused_until.is_some_and(|t| t > now);
        if !self.again.is_empty() || (self.accept_again && !paused) {
            return Duration::ZERO;
        }
        let mut wake = now + POLL;
        if let Some(deadline) = self.idle_deadline() {
            wake = wake.min(deadline);
        }
        if !self.writers.is_empty() {
            wake = wake.min(now + WRITE_TIMEOUT / 4);
        }
        wake.saturating_duration_since(now)
    }

    fn dispatch(&mut self, token: usize) {
        match token.checked_sub(self.listeners.len()) {
            None => self.accept(token),
            Some(slot) => self.step(slot),
        }
    }

    /// Runs a step of the connection in `slot`, and what it asks for.
    fn step(&mut self, slot: usize) {
        let Some(connection) = self.table.get_mut(slot) else {
            return;
        };
        self.workspace.answered = false;
        let step = connection.step(&mut self.workspace, &mut self.chunk);
        if self.workspace.answered {
            self.table.touch(slot, Instant::now());
        }
        match step {
            Step::Idle => {}
            Step::Blocked => self.writers.push(slot),
            Step::Again => self.again.push(slot),
            Step::Close => self.close(slot),
        }
    }

    /// Accepts the connections waiting on listener `i`, up to [`ACCEPT_BUDGET`].
    fn accept(&mut self, i: usize) {
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    self.accept_failed(&e);
                    return;
                }
            }
        }
        self.accept_again = true;
    }

    /// Retries every listener when one may still have connections waiting.
    fn retry_accept(&mut self, now: Instant) {
        if !self.accept_again || self.accept_paused_until.is_some_and(|t| t > now) {
            return;
        }
        self.accept_again = false;
        self.accept_paused_until = None;
        for i in 0..self.listeners.len() {
            self.accept(i);
        }
    }

    /// After an accept failed: out of descriptors, closes the oldest connection so that
    /// the next accept can succeed; otherwise, or without a connection to close, pauses
    /// accepting for a [`POLL`].
    fn accept_failed(&mut self, e: &io::Error) {
        let out_of_descriptors = matches!(e.raw_os_error(), Some(EMFILE | ENFILE));
        let hint = if out_of_descriptors {
            "; raise the open file limit (ulimit -n, LimitNOFILE) above max_tcp_connections"
        } else {
            ""
        };
        self.accept_log.log(&format!("DNS TCP accept: {e}{hint}"));
        self.accept_again = true;
        match self.table.oldest() {
            Some((slot, _)) if out_of_descriptors => {
                self.close(slot);
                bump(&self.shared.counters.tcp_evicted);
            }
            _ => self.accept_paused_until = Some(Instant::now() + POLL),
        }
    }

    /// Serves `stream`, refuses it, or serves it in place of the oldest connection.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        if !self.make_room(peer.ip()) {
            return;
        }
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("DNS TCP connection from {peer}: {e}");
        }
        let connection = Connection::new(stream, self.shared.may_transfer(peer.ip()));
        let slot = self.table.insert(peer.ip(), connection, Instant::now());
        let token = Token(self.listeners.len() + slot);
        let registry = self.poll.registry();
        let registered = self.table.get_mut(slot).map(|c| {
            registry.register(
                c.stream_mut(),
                token,
                Interest::READABLE | Interest::WRITABLE,
            )
        });
        match registered {
            Some(Ok(())) => bump(&self.shared.counters.tcp_connections),
            Some(Err(e)) => {
                log::warn!("DNS TCP connection from {peer} not served: {e}");
                self.table.remove(slot);
            }
            None => {}
        }
    }

    /// Whether a new connection from `ip` may be served, after closing the connection it
    /// replaces if any.
    fn make_room(&mut self, ip: IpAddr) -> bool {
        let counters = &self.shared.counters;
        match self.table.admission(ip) {
            Admission::Admit => true,
            Admission::Evict(slot) => {
                self.close(slot);
                bump(&counters.tcp_evicted);
                true
            }
            Admission::Refuse => {
                bump(&counters.tcp_rejected);
                false
            }
        }
    }

    /// Closes the connections idle for `tcp_idle_timeout` and those whose client has not
    /// taken its answers by their write deadline.
    fn expire(&mut self, now: Instant) {
        while self.idle_deadline().is_some_and(|deadline| deadline <= now) {
            if let Some((slot, _)) = self.table.oldest() {
                self.close(slot);
            }
        }
        if self.writers.is_empty() {
            return;
        }
        self.writers.sort_unstable();
        self.writers.dedup();
        let mut stalled = Vec::new();
        let table = &self.table;
        self.writers.retain(
            |&slot| match table.get(slot).and_then(Connection::write_deadline) {
                None => false,
                Some(deadline) if now >= deadline => {
                    stalled.push(slot);
                    false
                }
                Some(_) => true,
            },
        );
        for slot in stalled {
            self.close(slot);
        }
    }

    /// When the least recently active connection will have been idle for
    /// `tcp_idle_timeout`; `None` without connections (or with a timeout beyond time).
    fn idle_deadline(&self) -> Option<Instant> {
        let (_, since) = self.table.oldest()?;
        since.checked_add(self.shared.tcp_idle_timeout)
    }

    /// Closes the connection in `slot`.
    fn close(&mut self, slot: usize) {
        if let Some(mut connection) = self.table.remove(slot) {
            // Closing the socket would do it too; this keeps the registry exact.
            let _ = self.poll.registry().deregister(connection.stream_mut());
        }
    }
}

/// Whether an accept error concerns only the connection it was for.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
