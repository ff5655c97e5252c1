//! Sockets and threads: binding, the UDP loops, the TCP acceptor and connections, the
//! cache refresher, the counters, and orderly shutdown.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use socket2::{Domain, Protocol, Socket, Type};

use super::PeerSource;
use super::cache::AnswerCache;
use super::config::{ConfigError, DnsConfig};
use super::ratelimit::{DEFAULT_MAX_SOURCES, RateLimiter, Verdict};
use super::udp::Batch;
use super::wire::{
    MAX_UDP_EDNS, Outcome, Transport, ZoneContext, respond_into, respond_truncated_into,
};

/// Longest a serving thread blocks before checking for shutdown.
const POLL: Duration = Duration::from_millis(100);
/// Pause of the TCP acceptor when no connection is waiting.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// A TCP client must take a response within this time, or it is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_millis(200);
/// Attempts to find a port free for both UDP and TCP when the listen port is 0.
const PORT_ATTEMPTS: usize = 8;
/// Receive buffer asked for the UDP sockets, to absorb bursts.
const UDP_RECV_BUFFER: usize = 1 << 20;
/// Largest TCP-framed request plus its length prefix.
const MAX_FRAME: usize = 2 + 65535;

/// Why the server could not bind its sockets.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The configuration is unusable.
    #[error("invalid DNS configuration")]
    Config(#[from] ConfigError),
    /// Binding needs a privilege the process lacks (ports below 1024).
    #[error(
        "cannot bind DNS port {addr}: permission denied; run as root, grant \
         CAP_NET_BIND_SERVICE (setcap 'cap_net_bind_service=+ep' {binary}), or choose \
         another port with --dns-listen"
    )]
    PermissionDenied {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The path of this program, for the `setcap` hint.
        binary: String,
    },
    /// Another socket holds the address.
    #[error(
        "cannot bind DNS port {addr} ({protocol}): address already in use; stop the other \
         DNS server or choose another port with --dns-listen"
    )]
    AddrInUse {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        protocol: &'static str,
    },
    /// Any other failure to create or bind a socket.
    #[error("cannot bind DNS port {addr} ({protocol})")]
    Io {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        protocol: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

impl BindError {
    fn from_io(addr: SocketAddr, protocol: &'static str, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::PermissionDenied => Self::PermissionDenied {
                addr,
                binary: std::env::current_exe()
                    .map_or_else(|_| "dnsseeder".to_owned(), |p| p.display().to_string()),
            },
            io::ErrorKind::AddrInUse => Self::AddrInUse { addr, protocol },
            _ => Self::Io {
                addr,
                protocol,
                source,
            },
        }
    }
}

/// What the server has done since it started; every field only grows.
#[derive(Debug, Default)]
pub struct DnsCounters {
    /// Requests received (UDP datagrams and TCP messages), whatever became of them.
    pub queries: AtomicU64,
    /// NOERROR responses, with or without records.
    pub answered: AtomicU64,
    /// REFUSED responses.
    pub refused: AtomicU64,
    /// NXDOMAIN responses.
    pub nxdomain: AtomicU64,
    /// FORMERR (and BADVERS) responses.
    pub formerr: AtomicU64,
    /// NOTIMP responses.
    pub notimp: AtomicU64,
    /// Empty truncated replies sent to rate-limited sources.
    pub rate_limited: AtomicU64,
    /// Requests that got no response (malformed, responses, over the rate limit).
    pub dropped: AtomicU64,
    /// TCP connections served.
    pub tcp_connections: AtomicU64,
    /// TCP connections closed at once because the cap was reached.
    pub tcp_rejected: AtomicU64,
}

/// A copy of [`DnsCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// See [`DnsCounters::queries`].
    pub queries: u64,
    /// See [`DnsCounters::answered`].
    pub answered: u64,
    /// See [`DnsCounters::refused`].
    pub refused: u64,
    /// See [`DnsCounters::nxdomain`].
    pub nxdomain: u64,
    /// See [`DnsCounters::formerr`].
    pub formerr: u64,
    /// See [`DnsCounters::notimp`].
    pub notimp: u64,
    /// See [`DnsCounters::rate_limited`].
    pub rate_limited: u64,
    /// See [`DnsCounters::dropped`].
    pub dropped: u64,
    /// See [`DnsCounters::tcp_connections`].
    pub tcp_connections: u64,
    /// See [`DnsCounters::tcp_rejected`].
    pub tcp_rejected: u64,
}

impl DnsCounters {
    /// Returns the current values.
    pub fn snapshot(&self) -> DnsStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DnsStats {
            queries: get(&self.queries),
            answered: get(&self.answered),
            refused: get(&self.refused),
            nxdomain: get(&self.nxdomain),
            formerr: get(&self.formerr),
            notimp: get(&self.notimp),
            rate_limited: get(&self.rate_limited),
            dropped: get(&self.dropped),
            tcp_connections: get(&self.tcp_connections),
            tcp_rejected: get(&self.tcp_rejected),
        }
    }

    fn record(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Answered => &self.answered,
            Outcome::NxDomain => &self.nxdomain,
            Outcome::Refused => &self.refused,
            Outcome::FormErr => &self.formerr,
            Outcome::NotImp => &self.notimp,
            Outcome::Truncated => &self.rate_limited,
            Outcome::Dropped => &self.dropped,
        };
        bump(&self.queries);
        bump(counter);
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A DNS server whose sockets are bound but not yet served; see [`DnsServer::spawn`].
pub struct DnsServer {
    config: DnsConfig,
    ctx: ZoneContext,
    sockets: Vec<(UdpSocket, TcpListener)>,
    local_addrs: Vec<SocketAddr>,
    source: Box<dyn PeerSource>,
    counters: Arc<DnsCounters>,
}

impl fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsServer")
            .field("host", &self.config.host)
            .field("local_addrs", &self.local_addrs)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Validates `config` and binds UDP and TCP on every listen address (the same port
    /// for both; port 0 picks a free one), logging each as `DNS listening on udp+tcp ADDR`.
    ///
    /// # Errors
    ///
    /// Returns a [`BindError`] for an invalid configuration or an address that cannot
    /// be bound; its message names the address and, for privileged ports, the remedies.
    pub fn bind<S: PeerSource>(config: DnsConfig, source: S) -> Result<Self, BindError> {
        config.validate()?;
        let ctx = ZoneContext::new(&config)?;
        let mut sockets = Vec::new();
        let mut local_addrs = Vec::new();
        for &addr in &config.listen {
            let (udp, tcp) = bind_pair(addr)?;
            let local = udp
                .local_addr()
                .map_err(|e| BindError::from_io(addr, "udp", e))?;
            log::info!("DNS listening on udp+tcp {local}");
            local_addrs.push(local);
            sockets.push((udp, tcp));
        }
        Ok(Self {
            config,
            ctx,
            sockets,
            local_addrs,
            source: Box::new(source),
            counters: Arc::new(DnsCounters::default()),
        })
    }

    /// Returns the bound addresses, one per listen address, in order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Returns the counters, shared with the running server.
    pub fn counters(&self) -> Arc<DnsCounters> {
        Arc::clone(&self.counters)
    }

    /// Fills the answer cache for the default mask and `allow_filters`, then starts the
    /// threads: one per UDP socket, a TCP acceptor per listener (and a thread per
    /// connection), and the cache refresher.
    ///
    /// # Errors
    ///
    /// Fails if a thread cannot be started; the threads already started are stopped.
    pub fn spawn(self) -> anyhow::Result<DnsHandle> {
        let mut pinned = vec![self.config.default_mask];
        pinned.extend(self.config.allow_filters.iter().flatten());
        pinned.sort_unstable();
        pinned.dedup();
        let cache = AnswerCache::new(
            self.source,
            self.config.cache_ttl,
            self.config.max_cached_masks,
            pinned,
        );
        cache.prefill();
        let shared = Arc::new(Shared {
            ctx: self.ctx,
            cache,
            counters: Arc::clone(&self.counters),
            stop: AtomicBool::new(false),
            rate_limit: self.config.rate_limit.filter(|&(qps, _)| qps > 0),
            tcp_idle_timeout: self.config.tcp_idle_timeout,
            max_tcp_connections: self.config.max_tcp_connections,
            cache_ttl: self.config.cache_ttl,
        });
        let mut handle = DnsHandle {
            shared: Arc::clone(&shared),
            threads: Vec::new(),
            local_addrs: self.local_addrs,
        };
        for (udp, tcp) in self.sockets {
            let s = Arc::clone(&shared);
            handle
                .threads
                .push(spawn_named("dns-udp", move || udp_loop(&udp, &s))?);
            let s = Arc::clone(&shared);
            handle
                .threads
                .push(spawn_named("dns-tcp", move || accept_loop(&tcp, &s))?);
        }
        let s = Arc::clone(&shared);
        handle
            .threads
            .push(spawn_named("dns-refresh", move || refresh_loop(&s))?);
        Ok(handle)
    }
}

/// A running DNS server; [`DnsHandle::shutdown`] or dropping it stops and joins its
/// threads within a few hundred milliseconds.
pub struct DnsHandle {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    local_addrs: Vec<SocketAddr>,
}

impl fmt::Debug for DnsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsHandle")
            .field("local_addrs", &self.local_addrs)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl DnsHandle {
    /// Returns the bound addresses, one per listen address, in order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Returns the counters.
    pub fn counters(&self) -> Arc<DnsCounters> {
        Arc::clone(&self.shared.counters)
    }

    /// Stops the server and waits for its threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                log::error!("a DNS thread panicked");
            }
        }
    }
}

impl Drop for DnsHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// What every serving thread shares.
struct Shared {
    ctx: ZoneContext,
    cache: AnswerCache,
    counters: Arc<DnsCounters>,
    stop: AtomicBool,
    rate_limit: Option<(u32, u32)>,
    tcp_idle_timeout: Duration,
    max_tcp_connections: usize,
    cache_ttl: Duration,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Starts a serving thread through [`crate::thread::spawn`]; the loops end only when the
/// server stops and report their own errors.
fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> anyhow::Result<JoinHandle<()>> {
    crate::thread::spawn(name, move || {
        f();
        Ok(())
    })
}

/// Binds UDP, then TCP on the port UDP got; with port 0, retries when TCP's is taken.
fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), BindError> {
    let attempts = if addr.port() == 0 { PORT_ATTEMPTS } else { 1 };
    let mut attempt = 1;
    loop {
        let udp = bind_udp(addr).map_err(|e| BindError::from_io(addr, "udp", e))?;
        let port = udp
            .local_addr()
            .map_err(|e| BindError::from_io(addr, "udp", e))?
            .port();
        let tcp_addr = SocketAddr::new(addr.ip(), port);
        match bind_tcp(tcp_addr) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < attempts => {
                log::debug!("TCP port {port} taken, trying another for {addr}");
                attempt += 1;
            }
            Err(e) => return Err(BindError::from_io(tcp_addr, "tcp", e)),
        }
    }
}

fn new_socket(addr: SocketAddr, ty: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() {
        // So that [::]:53 and 0.0.0.0:53 can both be bound.
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    if let Err(e) = socket.set_recv_buffer_size(UDP_RECV_BUFFER) {
        log::debug!("cannot enlarge the UDP receive buffer of {addr}: {e}");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn udp_loop(socket: &UdpSocket, shared: &Shared) {
    if let Err(e) = socket.set_read_timeout(Some(POLL)) {
        log::error!("DNS UDP socket unusable: {e}");
        return;
    }
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut limiter = shared
        .rate_limit
        .map(|(qps, burst)| RateLimiter::new(qps, burst, DEFAULT_MAX_SOURCES, Instant::now()));
    let answers = |mask| shared.cache.get(mask);
    let mut batch = Batch::new(MAX_UDP_EDNS);
    while !shared.stopping() {
        let received = match batch.receive(socket) {
            Ok(received) => received,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => {
                log::debug!("DNS UDP receive: {e}");
                thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        let now = Instant::now();
        for i in 0..received {
            let (request, peer, out) = batch.request(i);
            let verdict = match &mut limiter {
                Some(limiter) => limiter.check(peer.ip(), now),
                None => Verdict::Answer,
            };
            let outcome = match verdict {
                Verdict::Answer => respond_into(
                    request,
                    Transport::Udp,
                    &shared.ctx,
                    &answers,
                    &mut rng,
                    out,
                ),
                Verdict::Truncate => respond_truncated_into(request, &shared.ctx, out),
                Verdict::Drop => Outcome::Dropped,
            };
            shared.counters.record(outcome);
        }
        batch.send(socket);
    }
}

/// Decrements the count of open TCP connections when a connection thread ends.
struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    if let Err(e) = listener.set_nonblocking(true) {
        log::error!("DNS TCP listener unusable: {e}");
        return;
    }
    let open = Arc::new(AtomicUsize::new(0));
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping() {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                // Out of file descriptors, typically: back off.
                log::warn!("DNS TCP accept: {e}");
                thread::sleep(POLL);
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= shared.max_tcp_connections {
            bump(&shared.counters.tcp_rejected);
            drop(stream);
            continue;
        }
        connections.retain(|c| !c.is_finished());
        open.fetch_add(1, Ordering::Relaxed);
        bump(&shared.counters.tcp_connections);
        let slot = ConnectionSlot(Arc::clone(&open));
        let s = Arc::clone(shared);
        let serve = move || {
            let _slot = slot;
            if let Err(e) = serve_tcp(stream, &s) {
                log::debug!("DNS TCP connection from {peer}: {e}");
            }
        };
        match spawn_named("dns-tcp-conn", serve) {
            Ok(thread) => connections.push(thread),
            Err(e) => log::warn!("{e:#}"),
        }
    }
    for connection in connections {
        if connection.join().is_err() {
            log::error!("a DNS TCP connection thread panicked");
        }
    }
}

/// Returns the first complete length-framed message at the start of `buf`.
fn next_frame(buf: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*buf.first()?, *buf.get(1)?]));
    buf.get(2..2 + len)
}

/// Serves one TCP connection: pipelined queries answered in order, closed when idle for
/// `tcp_idle_timeout` (partial messages do not count as activity), on a request that
/// deserves silence, or at shutdown.
fn serve_tcp(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let answers = |mask| shared.cache.get(mask);
    let mut input = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut out = Vec::with_capacity(1024);
    let mut framed = Vec::with_capacity(1024);
    let mut deadline = Instant::now() + shared.tcp_idle_timeout;
    loop {
        let mut consumed = 0;
        let mut close = false;
        framed.clear();
        while let Some(request) = next_frame(&input[consumed..]) {
            consumed += 2 + request.len();
            let outcome = respond_into(
                request,
                Transport::Tcp,
                &shared.ctx,
                &answers,
                &mut rng,
                &mut out,
            );
            shared.counters.record(outcome);
            if out.is_empty() {
                close = true;
                break;
            }
            framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
            framed.extend_from_slice(&out);
        }
        input.drain(..consumed);
        if !framed.is_empty() {
            stream.write_all(&framed)?;
            deadline = Instant::now() + shared.tcp_idle_timeout;
        }
        if close || shared.stopping() || Instant::now() >= deadline {
            return Ok(());
        }
        debug_assert!(input.len() < MAX_FRAME);
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => input.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

fn refresh_loop(shared: &Shared) {
    let tick = (shared.cache_ttl / 4).clamp(Duration::from_millis(10), POLL);
    while !shared.stopping() {
        thread::sleep(tick);
        shared.cache.refresh(Instant::now());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn permission_denied_names_the_address_flag_and_capability() {
        let addr: SocketAddr = "0.0.0.0:53".parse().unwrap();
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let message = BindError::from_io(addr, "udp", denied).to_string();
        assert!(message.starts_with("cannot bind DNS port 0.0.0.0:53: permission denied;"));
        for part in [
            "CAP_NET_BIND_SERVICE",
            "setcap 'cap_net_bind_service=+ep' ",
            "--dns-listen",
        ] {
            assert!(message.contains(part), "{message}");
        }
        let in_use = io::Error::from(io::ErrorKind::AddrInUse);
        let message = BindError::from_io(addr, "tcp", in_use).to_string();
        assert!(
            message.contains("0.0.0.0:53 (tcp): address already in use"),
            "{message}"
        );
    }

    #[test]
    fn frames_are_split_by_their_length_prefix() {
        assert_eq!(next_frame(&[]), None);
        assert_eq!(next_frame(&[0]), None);
        assert_eq!(next_frame(&[0, 3, 1, 2]), None);
        assert_eq!(next_frame(&[0, 3, 1, 2, 3, 9]), Some(&[1, 2, 3][..]));
        assert_eq!(next_frame(&[0, 0]), Some(&[][..]));
    }
}
