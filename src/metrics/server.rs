//! The HTTP thread of `--metrics-listen`: one `mio` event loop that accepts, reads each
//! request head (`http`), answers `GET /metrics` and `GET /health`, and closes, so that
//! whatever clients send costs this thread a bounded amount and never touches DNS.
//!
//! Bounds: at most [`Limits::max_connections`] connections (64) and, per connection,
//! `MAX_HEAD` (8 KiB) of request head, one response, and a deadline
//! ([`Limits::timeout`], 5 s from accept to the last byte of the response) after which
//! the connection is closed, so a slow reader or a client sending a byte at a time holds
//! a slot for 5 s at most. When the table is full, the oldest connection still reading
//! its head (else the oldest) is closed to admit the newcomer: flooding clients then
//! push each other out while a scraper's request, which arrives with its connection, is
//! answered within a turn or two (accepts are capped per turn, [`ACCEPT_BUDGET`], well
//! under the table's size). One response per connection (`Connection: close`), HEAD
//! answered as GET without the body. Each turn waits at most [`POLL`], so the stop flag
//! is seen promptly. What a client gets wrong is logged at debug level only; a failing
//! accept (out of descriptors) at error level, at most every 10 s.
//!
//! One thread rather than the DNS server's loop: the scrape renders a page (about a
//! millisecond), which DNS should never wait for.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::conn::{Conn, READ_CHUNK, Step};
use super::http::{self, HeadError, Method, Request};
use super::{Sources, render, verdict};
use crate::ratelog::RateLimitedLog;
use crate::unix_now;

/// The longest wait of a turn: how soon the stop flag is seen.
const POLL: Duration = Duration::from_millis(200);
/// Connections accepted per turn; more wait for the next turn.
const ACCEPT_BUDGET: usize = 16;
/// The listener's token; connection `slot` has token `slot + 1`.
const LISTENER: Token = Token(0);
/// How often a failing accept is logged.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// The server's bounds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Connections open at once.
    pub(super) max_connections: usize,
    /// From accept to the last byte of the response.
    pub(super) timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A running metrics endpoint; [`MetricsServer::stop`] stops it.
#[derive(Debug)]
pub struct MetricsServer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `listen` and starts serving `sources`.
    ///
    /// # Errors
    /// When the address cannot be bound (the message names `--metrics-listen`), or the
    /// thread cannot start.
    pub fn start(listen: SocketAddr, sources: Sources) -> anyhow::Result<Self> {
        Self::start_with(listen, sources, Limits::default())
    }

    /// [`MetricsServer::start`] with other bounds (tests).
    pub(super) fn start_with(
        listen: SocketAddr,
        sources: Sources,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let cannot = |e: io::Error| {
            anyhow::anyhow!(
                "--metrics-listen {listen}: cannot listen ({e}); pick a free address and port"
            )
        };
        let mut listener = TcpListener::bind(listen).map_err(cannot)?;
        let addr = listener.local_addr().map_err(cannot)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = crate::thread::spawn("metrics", move || {
            EventLoop::new(poll, listener, sources, limits).run(&flag);
            Ok(())
        })?;
        log::info!("metrics: GET /metrics and /health on http://{addr}");
        Ok(Self { stop, thread, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread (within [`POLL`]) and waits for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// The loop's state: the listener and a fixed table of connection slots.
struct EventLoop {
    poll: Poll,
    listener: TcpListener,
    sources: Sources,
    limits: Limits,
    slots: Vec<Option<Conn>>,
    /// Connections that used their read budget, to step again at the next turn.
    again: Vec<usize>,
    /// Connections may be waiting on the listener (the budget ran out, or accept failed).
    accept_again: bool,
    /// No accept before this time (an accept failed).
    accept_paused_until: Option<Instant>,
    chunk: Vec<u8>,
    accept_log: RateLimitedLog,
}

impl EventLoop {
    fn new(poll: Poll, listener: TcpListener, sources: Sources, limits: Limits) -> Self {
        Self {
            poll,
            listener,
            sources,
            limits,
            slots: (0..limits.max_connections).map(|_| None).collect(),
            again: Vec::new(),
            accept_again: false,
            accept_paused_until: None,
            chunk: vec![0; READ_CHUNK],
            accept_log: RateLimitedLog::new(ACCEPT_LOG_EVERY),
        }
    }

    /// Turns until `stop` is set.
    fn run(&mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(256);
        while !stop.load(Ordering::Relaxed) {
            let timeout = self.timeout(Instant::now());
            let again = std::mem::take(&mut self.again);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("metrics: event loop: {e}");
                    std::thread::sleep(POLL);
                }
                events.clear();
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(),
                    Token(token) => self.step(token - 1),
                }
            }
            for slot in again {
                self.step(slot);
            }
            self.retry_accept(Instant::now());
            self.expire(Instant::now());
        }
    }

    /// How long the next wait may last: none with work left over, else until the
    /// nearest deadline, at most [`POLL`].
    fn timeout(&self, now: Instant) -> Duration {
        let paused = self.accept_paused_until.is_some_and(|t| t > now);
        if !self.again.is_empty() || (self.accept_again && !paused) {
            return Duration::ZERO;
        }
        let nearest = self.conns().map(|(_, c)| c.deadline()).min();
        let wake = nearest.map_or(now + POLL, |d| d.min(now + POLL));
        wake.saturating_duration_since(now)
    }

    fn conns(&self) -> impl Iterator<Item = (usize, &Conn)> {
        let slots = self.slots.iter().enumerate();
        slots.filter_map(|(slot, c)| c.as_ref().map(|c| (slot, c)))
    }

    /// Steps the connection in `slot`, and closes it if it asks.
    fn step(&mut self, slot: usize) {
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let sources = &self.sources;
        let mut respond = |verdict| answer(verdict, sources);
        match conn.step(&mut self.chunk, &mut respond) {
            Step::Idle => {}
            Step::Again => self.again.push(slot),
            Step::Close => self.close(slot),
        }
    }

    /// Accepts waiting connections, up to [`ACCEPT_BUDGET`].
    fn accept(&mut self) {
        for _ in 0..ACCEPT_BUDGET {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    self.accept_log.log(&format!(
                        "metrics: accept: {e}; if out of descriptors, raise the open file \
                         limit (ulimit -n, LimitNOFILE)"
                    ));
                    self.accept_paused_until = Some(Instant::now() + POLL);
                    break;
                }
            }
        }
        self.accept_again = true;
    }

    /// Accepts again when the listener may still hold connections.
    fn retry_accept(&mut self, now: Instant) {
        if !self.accept_again || self.accept_paused_until.is_some_and(|t| t > now) {
            return;
        }
        self.accept_again = false;
        self.accept_paused_until = None;
        self.accept();
    }

    /// Serves `stream` in a free slot, or in the slot of the connection
    /// [`EventLoop::victim`] names.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let free = self.slots.iter().position(Option::is_none);
        let Some(slot) = free.or_else(|| self.victim()) else {
            return;
        };
        if free.is_none() {
            log::debug!(
                "metrics: {} connections open: closing the oldest",
                self.slots.len()
            );
            self.close(slot);
        }
        let mut conn = Conn::new(stream, Instant::now(), self.limits.timeout);
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self
            .poll
            .registry()
            .register(conn.stream_mut(), Token(slot + 1), interest)
        {
            Ok(()) => self.slots[slot] = Some(conn),
            Err(e) => log::warn!("metrics: connection from {peer} not served: {e}"),
        }
    }

    /// The connection to close for a newcomer: the oldest still reading its head, else
    /// the oldest. `None` only without slots.
    fn victim(&self) -> Option<usize> {
        let oldest = |reading_only: bool| {
            self.conns()
                .filter(|(_, c)| !reading_only || c.reading())
                .min_by_key(|(_, c)| c.accepted())
                .map(|(slot, _)| slot)
        };
        oldest(true).or_else(|| oldest(false))
    }

    /// Closes the connections past their deadline.
    fn expire(&mut self, now: Instant) {
        for slot in 0..self.slots.len() {
            let Some(conn) = self.slots[slot].as_mut() else {
                continue;
            };
            if conn.deadline() <= now {
                conn.expire();
                self.close(slot);
            }
        }
    }

    /// Closes the connection in `slot`.
    fn close(&mut self, slot: usize) {
        if let Some(mut conn) = self.slots.get_mut(slot).and_then(Option::take) {
            // Closing the socket would do it too; this keeps the registry exact.
            let _ = self.poll.registry().deregister(conn.stream_mut());
        }
    }
}

/// The response to a request, or to the error that refused its head.
fn answer(verdict: Result<Request, HeadError>, sources: &Sources) -> Vec<u8> {
    match verdict {
        Ok(request) => {
            let (status, body) = route(request.method, &request.path, sources);
            if request.method == Method::Head {
                http::head_response(status, &body)
            } else {
                http::response(status, &body)
            }
        }
        Err(e) => {
            log::debug!("metrics: refused a request: {e}");
            http::response(e.status(), &format!("{e}\n"))
        }
    }
}

/// The status and body for a request (HEAD is routed as GET, its body then dropped).
fn route(method: Method, path: &str, sources: &Sources) -> (u16, String) {
    match (method, path) {
        (Method::Get | Method::Head, "/metrics") => match render(sources) {
            Ok(page) => (200, page),
            Err(e) => (500, format!("cannot encode the metrics: {e}\n")),
        },
        (Method::Get | Method::Head, "/health") => match verdict(&sources.facts(unix_now())) {
            Ok(()) => (200, "ok\n".to_owned()),
            Err(why) => (503, format!("{why}\n")),
        },
        (Method::Other, "/metrics" | "/health") => (405, "only GET and HEAD\n".to_owned()),
        _ => (404, "not found: try /metrics or /health\n".to_owned()),
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
