//! The emulated Tor and I2P proxies: SOCKS5 servers that let the seeder reach the simulated
//! onion and I2P nodes by name, as its `--onion-proxy` and `--i2p-proxy` would.
//!
//! Each listens on its own loopback address of the configuration's block (no node uses it)
//! on a port the system picks. A session (one short-lived thread, see [`super::socks`])
//! takes one CONNECT to a `.onion` or `.b32.i2p` name, waits [`SimConfig::circuit_delay`]
//! as a circuit being built would, and relays bytes to the node's hidden listener, dialed
//! from the proxy's own address so that the node can tell proxied connections from direct
//! ones. Failures carry the codes of the real thing (Tor's extended errors, the plain
//! codes of an I2P router); IP requests are refused and counted ([`ProxyStats`]). A test
//! can [`SimProxy::pause`] a proxy (its listener closes, new connections are refused) and
//! [`SimProxy::resume`] it on the same port.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::{Network, SimConfig, socks};

/// Token of the listener in the acceptor's poll.
const LISTENER: Token = Token(0);
/// Token of the waker that interrupts the poll on pause and shutdown.
const WAKE: Token = Token(1);
/// Stack of a session thread (and of its relay helper).
pub(crate) const SESSION_STACK: usize = 256 * 1024;
/// How long shutdown waits for sessions to notice the stop flag.
const DRAIN_WAIT: Duration = Duration::from_secs(3);
/// How many times [`SimProxy::resume`] tries to bind while the port is still in use.
const REBIND_TRIES: u32 = 20;

/// What a proxy has seen since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// SOCKS5 requests read (after a greeting), whatever their address type.
    pub requests: u64,
    /// Requests for a domain name (ATYP 3): `.onion` / `.b32.i2p` names.
    pub domain_requests: u64,
    /// Requests for an IPv4 or IPv6 address (ATYP 1 or 4), all refused: a seeder must never
    /// send an onion or I2P peer as an IP.
    pub ip_requests: u64,
    /// Client sessions open now (from accepted to closed).
    pub in_flight: u64,
    /// The most sessions ever open at once.
    pub max_in_flight: u64,
}

/// Where a CONNECT to one name goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// The node's hidden listener.
    pub listener: SocketAddr,
    /// The only port the name answers on; `None` for any (I2P ignores ports).
    pub port: Option<u16>,
}

/// What the acceptor and the sessions of one proxy share.
#[derive(Debug)]
pub(crate) struct ProxyShared {
    /// `Onion` (an emulated Tor) or `I2p` (an emulated I2P router).
    pub network: Network,
    /// The address the proxy listens on and dials from.
    pub ip: Ipv4Addr,
    /// Targets by lower-case host name (`<56>.onion`, `<52>.b32.i2p`).
    pub targets: HashMap<String, Target>,
    pub circuit_delay: Duration,
    /// Idle limit of a client's writes and of the SOCKS exchange.
    pub idle: Duration,
    /// Set when the network stops: every session ends.
    pub stop: AtomicBool,
    pub requests: AtomicU64,
    pub domain_requests: AtomicU64,
    pub ip_requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// A running emulated proxy. Dropping it stops it.
#[derive(Debug)]
pub struct SimProxy {
    shared: Arc<ProxyShared>,
    addr: SocketAddr,
    acceptor: Mutex<Option<Acceptor>>,
}

/// The thread accepting on the listener, and how to stop it.
#[derive(Debug)]
struct Acceptor {
    stop: Arc<AtomicBool>,
    waker: Waker,
    handle: JoinHandle<()>,
}

impl SimProxy {
    /// Starts the proxy for the `network` nodes of `config` (`Onion` or `I2p`) on
    /// [`SimConfig::proxy_ip`], port 0.
    ///
    /// # Errors
    ///
    /// If the address cannot be bound or the acceptor thread cannot start.
    pub(crate) fn start(config: &SimConfig, network: Network) -> io::Result<SimProxy> {
        let ip = config.proxy_ip(network);
        let shared = Arc::new(ProxyShared {
            network,
            ip,
            targets: targets(config, network),
            circuit_delay: config.circuit_delay,
            idle: config.idle_timeout,
            stop: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            domain_requests: AtomicU64::new(0),
            ip_requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
        });
        let listener = TcpListener::bind((ip, 0))
            .map_err(|e| io::Error::new(e.kind(), format!("bind the {network:?} proxy: {e}")))?;
        let addr = listener.local_addr()?;
        let acceptor = Acceptor::spawn(listener, &shared)?;
        log::debug!("simulated network: {network:?} proxy on {addr}");
        Ok(SimProxy {
            shared,
            addr,
            acceptor: Mutex::new(Some(acceptor)),
        })
    }

    /// The address the proxy listens on (give it to `--onion-proxy` or `--i2p-proxy`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the proxy has seen so far.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ProxyStats {
            requests: load(&s.requests),
            domain_requests: load(&s.domain_requests),
            ip_requests: load(&s.ip_requests),
            in_flight: load(&s.in_flight),
            max_in_flight: load(&s.max_in_flight),
        }
    }

    /// Closes the listener: new connections are refused; open sessions go on.
    pub fn pause(&self) {
        let acceptor = self
            .acceptor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(acceptor) = acceptor {
            acceptor.stop();
        }
    }

    /// Listens again on the same address and port after [`SimProxy::pause`] (does nothing
    /// if the proxy is listening).
    ///
    /// # Errors
    ///
    /// If the port stays in use for a second, or the acceptor thread cannot start.
    pub fn resume(&self) -> io::Result<()> {
        let mut acceptor = self.acceptor.lock().unwrap_or_else(PoisonError::into_inner);
        if acceptor.is_none() {
            let listener = rebind(self.addr)?;
            *acceptor = Some(Acceptor::spawn(listener, &self.shared)?);
        }
        Ok(())
    }

    /// Stops accepting, ends every session and waits (up to 3 s) until they are closed.
    pub(crate) fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.pause();
        let deadline = Instant::now() + DRAIN_WAIT;
        while self.shared.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for SimProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `network` nodes of `config` by host name.
fn targets(config: &SimConfig, network: Network) -> HashMap<String, Target> {
    config
        .nodes
        .iter()
        .filter(|n| n.network == network)
        .map(|n| {
            let port = (network == Network::Onion).then_some(n.public.port);
            let target = Target {
                listener: n.addr,
                port,
            };
            (n.public.host.to_string().to_ascii_lowercase(), target)
        })
        .collect()
}

/// Binds `addr` again, waiting while the system still holds the port.
fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr) {
            Err(e) if e.kind() == ErrorKind::AddrInUse && tries < REBIND_TRIES => {
                tries += 1;
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("rebind {addr}: {e}"))),
            Ok(listener) => return Ok(listener),
        }
    }
}

impl Acceptor {
    /// Starts a thread accepting on `listener` until stopped.
    fn spawn(listener: TcpListener, shared: &Arc<ProxyShared>) -> io::Result<Acceptor> {
        listener.set_nonblocking(true)?;
        let poll = Poll::new()?;
        let fd = listener.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, shared) = (Arc::clone(&stop), Arc::clone(shared));
        let handle = crate::thread::spawn("sim-proxy", move || {
            accept_loop(poll, &listener, &shared, &flag);
            Ok(())
        })
        .map_err(io::Error::other)?;
        Ok(Acceptor {
            stop,
            waker,
            handle,
        })
    }

    /// Stops the thread; the listener closes with it.
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Err(e) = self.waker.wake() {
            log::warn!("simulated proxy: cannot wake the accept thread: {e}");
        }
        if self.handle.join().is_err() {
            log::warn!("simulated proxy: the accept thread panicked");
        }
    }
}

/// Accepts until `paused` or the proxy's stop flag is set. Every round tries the listener,
/// so an accept that failed for lack of resources is retried.
fn accept_loop(
    mut poll: Poll,
    listener: &TcpListener,
    shared: &Arc<ProxyShared>,
    paused: &AtomicBool,
) {
    let mut events = Events::with_capacity(16);
    let stopped = || paused.load(Ordering::Relaxed) || shared.stop.load(Ordering::Relaxed);
    while !stopped() {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(200))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            log::error!("simulated proxy: poll failed, no more accepts: {e}");
            return;
        }
        if !stopped() {
            accept_all(listener, shared);
        }
    }
}

/// Accepts until the listener's queue is empty or an error, starting a session for each.
fn accept_all(listener: &TcpListener, shared: &Arc<ProxyShared>) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => start_session(stream, shared),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("simulated proxy: accept: {e}");
                return;
            }
        }
    }
}

/// Counts the session open and starts its thread.
fn start_session(stream: TcpStream, shared: &Arc<ProxyShared>) {
    let open = shared.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
    shared.max_in_flight.fetch_max(open, Ordering::AcqRel);
    let slot = Arc::new(Slot {
        shared: Arc::clone(shared),
        left: AtomicBool::new(false),
    });
    let worker = Arc::clone(shared);
    let spawned = crate::thread::spawn_with_stack("sim-socks", SESSION_STACK, move || {
        socks::serve(stream, &worker, &slot);
        Ok(())
    });
    if let Err(e) = spawned {
        // The stream and the slot were moved into the failed closure and left with it.
        log::warn!("simulated proxy: {e:#}");
    }
}

/// One session's place in the count of sessions in flight. It leaves the count once, when
/// the proxy ends the session with the client (before its last reply, or before it shuts
/// the relay down), so a client that waits for that end never sees its next session
/// counted beside this one; at the latest when the session's thread drops it.
#[derive(Debug)]
pub(crate) struct Slot {
    shared: Arc<ProxyShared>,
    left: AtomicBool,
}

impl Slot {
    /// Leaves the count (once).
    pub(crate) fn leave(&self) {
        if !self.left.swap(true, Ordering::AcqRel) {
            self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.leave();
    }
}

impl ProxyShared {
    /// The address the proxy dials nodes from.
    pub(crate) fn source(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), 0)
    }
}
