//! The running network: listeners, the accept loop, the per-connection threads and the
//! emulated proxies.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bitcoin::p2p::Magic;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::networks::{bind_cjdns, cjdns_bindable};
use super::transport::{Sessions, Tally};
use super::{Behaviour, Network, NodeSpec, SimConfig, SimProxy, gossip, node};
use crate::addr::PeerAddr;

/// Token of the waker that interrupts the poll on shutdown (listeners use their node index).
const WAKE: Token = Token(usize::MAX);
/// File descriptors kept free for connections and everything else in the process.
const SPARE_FDS: u64 = 256;
/// Stack of a connection thread: messages are built on the heap, so little is needed.
const CONN_STACK: usize = 256 * 1024;
/// How long shutdown waits for connection threads to notice the stop flag.
const DRAIN_WAIT: Duration = Duration::from_secs(3);

/// State shared by the accept loop and the connection threads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: SimConfig,
    /// Gossip list of each node (indices into `config.nodes`).
    pub plan: Vec<Vec<usize>>,
    /// Whether each node adds the poison addresses to its answers.
    pub poisoner: Vec<bool>,
    /// Rank of each `AddrFlood` node among them, so each floods its own addresses.
    pub flood_rank: Vec<usize>,
    pub stop: AtomicBool,
    /// Connections accepted per node.
    pub accepted: Vec<AtomicU64>,
    /// Connection threads still running.
    pub live: AtomicUsize,
    /// Connections to onion and I2P nodes that did not come from their proxy.
    pub hidden_direct: AtomicU64,
    /// Connections accepted by all nodes, by the client's IP address.
    pub sources: Mutex<HashMap<IpAddr, u64>>,
    /// Sessions per node by the transport they opened with.
    pub transports: Vec<Tally>,
    /// What v2 sessions received after their handshake ([`SimConfig::capture_v2`]).
    pub captures: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    /// Keeps what one v2 session received after its handshake.
    pub(crate) fn keep_capture(&self, bytes: Vec<u8>) {
        let mut captures = self.captures.lock().unwrap_or_else(PoisonError::into_inner);
        captures.push(bytes);
    }
}

/// A running simulated network. Dropping it stops it, like [`SimNetwork::shutdown`].
#[derive(Debug)]
pub struct SimNetwork {
    shared: Arc<Shared>,
    index: HashMap<SocketAddr, usize>,
    public_index: HashMap<PeerAddr, usize>,
    seed: usize,
    proxies: Vec<(Network, SimProxy)>,
    waker: Waker,
    acceptor: Option<JoinHandle<()>>,
}

impl SimNetwork {
    /// Raises the open-file limit to its hard limit, binds a listener for every node that is
    /// not [`Behaviour::Dead`], starts the accept thread, and starts an emulated Tor proxy if
    /// any node is on [`Network::Onion`] and an emulated I2P router if any is on
    /// [`Network::I2p`].
    ///
    /// # Errors
    ///
    /// If the configuration has no `Good` node (there would be no seed), if the open-file
    /// limit cannot hold one descriptor per listener plus some spare, if CJDNS nodes cannot
    /// bind in `fc00::/8` (the message names the route to add), or if an address cannot be
    /// bound (already in use, or not a local address).
    pub fn start(config: SimConfig) -> io::Result<SimNetwork> {
        let seed = seed_node(&config)?;
        if config.nodes.iter().any(|n| n.network == Network::Cjdns) {
            cjdns_bindable()?;
        }
        let listening: Vec<usize> = (0..config.nodes.len())
            .filter(|&i| config.nodes[i].behaviour != Behaviour::Dead)
            .collect();
        ensure_fd_limit(listening.len() as u64 + SPARE_FDS)?;
        let poll = Poll::new()?;
        let listeners = bind_listeners(&config, &listening, &poll)?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let shared = Arc::new(shared_state(config));
        let (index, public_index) = node_index(&shared.config);
        let acceptor = spawn_acceptor(poll, listeners, &shared)?;
        log::debug!(
            "simulated network: {} nodes, {} listening",
            shared.config.nodes.len(),
            listening.len()
        );
        let mut net = SimNetwork {
            shared,
            index,
            public_index,
            seed,
            proxies: Vec::new(),
            waker,
            acceptor: Some(acceptor),
        };
        net.start_proxies()?;
        Ok(net)
    }

    /// Starts a proxy for each hidden network that has nodes.
    fn start_proxies(&mut self) -> io::Result<()> {
        for network in [Network::Onion, Network::I2p] {
            if self.nodes().iter().any(|n| n.network == network) {
                let proxy = SimProxy::start(&self.shared.config, network)?;
                self.proxies.push((network, proxy));
            }
        }
        Ok(())
    }

    /// The emulated proxy of `network` (`Onion`: Tor; `I2p`: an I2P router), if any node
    /// is on it.
    pub fn proxy(&self, network: Network) -> Option<&SimProxy> {
        self.proxies
            .iter()
            .find(|(n, _)| *n == network)
            .map(|(_, proxy)| proxy)
    }

    /// The address of the emulated Tor proxy (for `--onion-proxy`), if any node is an onion.
    pub fn onion_proxy(&self) -> Option<SocketAddr> {
        self.proxy(Network::Onion).map(SimProxy::addr)
    }

    /// The address of the emulated I2P router's SOCKS5 port (for `--i2p-proxy`), if any
    /// node is on I2P.
    pub fn i2p_proxy(&self) -> Option<SocketAddr> {
        self.proxy(Network::I2p).map(SimProxy::addr)
    }

    /// Connections that onion and I2P nodes accepted from anywhere but their proxy's
    /// address: 0 as long as nobody dials their hidden listeners directly.
    pub fn hidden_direct_connections(&self) -> u64 {
        self.shared.hidden_direct.load(Ordering::Relaxed)
    }

    /// Connections accepted by all nodes so far, by the client's IP address (a test tells
    /// a proxy's connections from direct ones by the address the proxy binds).
    pub fn connection_sources(&self) -> HashMap<IpAddr, u64> {
        let sources = self.shared.sources.lock();
        sources.unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Connections accepted so far by the node known as `public` (0 for an unknown one).
    pub fn connections_to(&self, public: &PeerAddr) -> u64 {
        self.public_index
            .get(public)
            .map_or(0, |&i| self.shared.accepted[i].load(Ordering::Relaxed))
    }

    /// The nodes, as configured.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.shared.config.nodes
    }

    /// The configuration the network runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// The network's default P2P port.
    pub fn port(&self) -> u16 {
        self.shared.config.port
    }

    /// The network's magic.
    pub fn magic(&self) -> Magic {
        self.shared.config.magic
    }

    /// Address of the first `Good` node: a crawler bootstrapping from it reaches every node.
    pub fn seed(&self) -> SocketAddr {
        self.shared.config.nodes[self.seed].addr
    }

    /// Sessions the node at `addr` saw so far, by the transport they opened with (zeros for
    /// an unknown address). A connection is counted once its first 16 bytes have been read
    /// (a node that never reads, like `EndlessStream` or `Dead`, counts nothing).
    pub fn sessions(&self, addr: SocketAddr) -> Sessions {
        self.index
            .get(&addr)
            .map_or_else(Sessions::default, |&i| self.shared.transports[i].sessions())
    }

    /// The raw bytes each completed v2 session of a [`Behaviour::V2`] node received after
    /// its handshake (the first 64 KiB), in the order the sessions ended; empty unless
    /// [`SimConfig::capture_v2`] is set.
    pub fn v2_captures(&self) -> Vec<Vec<u8>> {
        let captures = self.shared.captures.lock();
        captures.unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Connections accepted so far by the node at `addr` (0 for an unknown address).
    pub fn connections(&self, addr: SocketAddr) -> u64 {
        self.index
            .get(&addr)
            .map_or(0, |&i| self.shared.accepted[i].load(Ordering::Relaxed))
    }

    /// Stops accepting, closes every listener (the proxies' too) and waits (up to 3 s) for
    /// the connection threads to close their sockets.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for (_, proxy) in &self.proxies {
            proxy.stop();
        }
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        if let Err(e) = self.waker.wake() {
            log::warn!("simulated network: cannot wake the accept thread: {e}");
        }
        if acceptor.join().is_err() {
            log::warn!("simulated network: the accept thread panicked");
        }
        let deadline = Instant::now() + DRAIN_WAIT;
        while self.shared.live.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for SimNetwork {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The index of the first `Good` node, the seed a crawl starts from.
fn seed_node(config: &SimConfig) -> io::Result<usize> {
    config
        .nodes
        .iter()
        .position(|n| n.behaviour == Behaviour::Good)
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "no good node to seed from"))
}

/// Each node's index by its listener address, and by its public address.
fn node_index(config: &SimConfig) -> (HashMap<SocketAddr, usize>, HashMap<PeerAddr, usize>) {
    let nodes = config.nodes.iter().enumerate();
    (
        nodes.clone().map(|(i, n)| (n.addr, i)).collect(),
        nodes.map(|(i, n)| (n.public, i)).collect(),
    )
}

/// Binds a non-blocking listener for each of the `nodes` (indices into the configured
/// nodes) and registers it with `poll` under its node's index.
fn bind_listeners(
    config: &SimConfig,
    nodes: &[usize],
    poll: &Poll,
) -> io::Result<HashMap<usize, TcpListener>> {
    let mut listeners = HashMap::with_capacity(nodes.len());
    for &i in nodes {
        let addr = config.nodes[i].addr;
        let listener = if config.nodes[i].network == Network::Cjdns {
            bind_cjdns(addr)?
        } else {
            TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?
        };
        listener.set_nonblocking(true)?;
        poll.registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            Token(i),
            Interest::READABLE,
        )?;
        listeners.insert(i, listener);
    }
    Ok(listeners)
}

/// Starts the thread that accepts on every listener until the network stops.
fn spawn_acceptor(
    poll: Poll,
    listeners: HashMap<usize, TcpListener>,
    shared: &Arc<Shared>,
) -> io::Result<JoinHandle<()>> {
    let shared = Arc::clone(shared);
    crate::thread::spawn("sim-accept", move || {
        accept_loop(poll, &listeners, &shared);
        Ok(())
    })
    .map_err(io::Error::other)
}

/// The state shared with the connection threads: the configuration and what is derived
/// from it once (gossip plan, poisoning nodes, flood ranks), and the counters.
fn shared_state(config: SimConfig) -> Shared {
    let plan = gossip::plan(&config);
    let mut good_rank = 0;
    let mut flood_count = 0;
    let mut poisoner = Vec::with_capacity(config.nodes.len());
    let mut flood_rank = Vec::with_capacity(config.nodes.len());
    for node in &config.nodes {
        let good = node.behaviour == Behaviour::Good;
        poisoner.push(good && good_rank % 2 == 0);
        good_rank += usize::from(good);
        flood_rank.push(flood_count);
        flood_count += usize::from(node.behaviour == Behaviour::AddrFlood);
    }
    let accepted = config.nodes.iter().map(|_| AtomicU64::new(0)).collect();
    let transports = config.nodes.iter().map(|_| Tally::default()).collect();
    Shared {
        config,
        plan,
        poisoner,
        flood_rank,
        stop: AtomicBool::new(false),
        accepted,
        live: AtomicUsize::new(0),
        hidden_direct: AtomicU64::new(0),
        sources: Mutex::default(),
        transports,
        captures: Mutex::default(),
    }
}

/// Raises the soft open-file limit to the hard one and checks that `needed` fit. If the
/// hard limit is too low, tries to raise it too (which works when privileged).
fn ensure_fd_limit(needed: u64) -> io::Result<()> {
    let mut limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            log::warn!("simulated network: cannot raise the open-file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE)?.0
        }
    };
    if limit < needed && rlimit::setrlimit(rlimit::Resource::NOFILE, needed, needed).is_ok() {
        limit = needed;
    }
    if limit < needed {
        return Err(io::Error::other(format!(
            "the open-file limit is {limit}, the simulated network needs {needed}"
        )));
    }
    Ok(())
}

/// Accepts on every listener until the stop flag is set. Listeners whose accept failed for
/// lack of resources are retried on the next round, since the edge-triggered poll would not
/// report them again.
fn accept_loop(mut poll: Poll, listeners: &HashMap<usize, TcpListener>, shared: &Arc<Shared>) {
    let mut events = Events::with_capacity(1024);
    let mut retry: Vec<usize> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let timeout = if retry.is_empty() { 500 } else { 50 };
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(timeout))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            log::error!("simulated network: poll failed, no more accepts: {e}");
            return;
        }
        let ready: Vec<usize> = events
            .iter()
            .map(|ev| ev.token().0)
            .filter(|&t| Token(t) != WAKE)
            .chain(std::mem::take(&mut retry))
            .collect();
        for node in ready {
            if let Some(listener) = listeners.get(&node)
                && !accept_all(listener, node, shared)
            {
                retry.push(node);
            }
        }
        retry.dedup();
    }
}

/// Accepts until the listener's queue is empty. Returns `false` if it stopped on an error
/// other than an empty queue.
fn accept_all(listener: &TcpListener, node: usize, shared: &Arc<Shared>) -> bool {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let nth = shared.accepted[node].fetch_add(1, Ordering::Relaxed) + 1;
                if is_direct_to_hidden(&shared.config, node, peer) {
                    shared.hidden_direct.fetch_add(1, Ordering::Relaxed);
                }
                let mut sources = shared
                    .sources
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                *sources.entry(peer.ip()).or_default() += 1;
                spawn_connection(stream, peer, node, nth, shared);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("simulated network: accept on node {node}: {e}");
                return false;
            }
        }
    }
}

/// Whether `node` is an onion or I2P node and `peer` is not its proxy.
fn is_direct_to_hidden(config: &SimConfig, node: usize, peer: SocketAddr) -> bool {
    let network = config.nodes[node].network;
    matches!(network, Network::Onion | Network::I2p)
        && peer.ip() != IpAddr::V4(config.proxy_ip(network))
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    node: usize,
    nth: u64,
    shared: &Arc<Shared>,
) {
    shared.live.fetch_add(1, Ordering::AcqRel);
    let worker = Arc::clone(shared);
    let spawned = crate::thread::spawn_with_stack("sim-conn", CONN_STACK, move || {
        node::serve(stream, peer, node, nth, &worker);
        worker.live.fetch_sub(1, Ordering::AcqRel);
        Ok(())
    });
    if let Err(e) = spawned {
        // The stream was moved into the failed closure and is closed with it.
        shared.live.fetch_sub(1, Ordering::AcqRel);
        log::warn!("simulated network: {e:#}");
    }
}
