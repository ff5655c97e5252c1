//! The server's lifecycle: a bound [`DnsServer`] becomes a running [`DnsHandle`] with
//! its threads (one per UDP socket, one TCP event loop for every listener, the cache
//! refresher), and the handle stops and joins them.
//!
//! It exists to hold what the serving threads share ([`Shared`]) and how they start and
//! stop; the loops themselves are in `serve_udp` and `serve_tcp`, binding in `bind`.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::PeerSource;
use super::acl::Cidr;
use super::bind::{BindError, bind_pair};
use super::cache::AnswerCache;
use super::config::DnsConfig;
use super::counters::DnsCounters;
use super::serve_tcp::tcp_loop;
use super::serve_udp::udp_loop;
use super::transfer::{PublishedZone, ZoneKeeper, notify_loop, zone_names};
use super::zone::ZoneContext;

/// Longest a serving thread blocks before checking for shutdown.
pub(super) const POLL: Duration = Duration::from_millis(100);
/// Pause of a UDP thread after a failed receive.
pub(super) const RECV_RETRY: Duration = Duration::from_millis(5);

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
    /// threads: one per UDP socket, one event loop serving every TCP listener and
    /// connection, and the cache refresher.
    ///
    /// # Errors
    ///
    /// Fails if a thread cannot be started; the threads already started are stopped.
    pub fn spawn(self) -> anyhow::Result<DnsHandle> {
        let Self {
            config,
            ctx,
            sockets,
            local_addrs,
            source,
            counters,
        } = self;
        let cache = AnswerCache::new(
            source,
            config.cache_ttl,
            config.max_cached_masks,
            pinned_masks(&config),
        )
        .with_asmap(config.asmap.clone());
        cache.prefill();
        let (transfer, first) = Transfer::prepare(&config, &ctx, &cache).unzip();
        let mut shared = Shared::new(&config, ctx, cache, counters);
        shared.zone = first.map(PublishedZone::new);
        let mut handle = DnsHandle {
            shared: Arc::new(shared),
            threads: Vec::new(),
            local_addrs,
        };
        warn_if_few_descriptors(config.max_tcp_connections);
        handle.start_all(sockets, transfer)?;
        Ok(handle)
    }
}

/// The zone keeper and NOTIFY thread's inputs, when the zone is kept for secondaries.
struct Transfer {
    keeper: ZoneKeeper,
    notify: Vec<SocketAddr>,
    zones: crossbeam_channel::Receiver<Arc<super::transfer::Zone>>,
}

impl Transfer {
    /// `None` without `--axfr-allow` and `--notify`; else with the first zone, built now.
    fn prepare(
        config: &DnsConfig,
        ctx: &ZoneContext,
        cache: &AnswerCache,
    ) -> Option<(Self, super::transfer::Zone)> {
        if !config.transfers() {
            return None;
        }
        let (tx, zones) = crossbeam_channel::unbounded();
        let notify = (!config.notify.is_empty()).then_some(tx);
        let mut keeper = ZoneKeeper::new(
            zone_names(ctx),
            config.zone_records,
            config.zone_refresh,
            notify,
        );
        let first = keeper.first(ctx, cache);
        let transfer = Self {
            keeper,
            notify: config.notify.clone(),
            zones,
        };
        Some((transfer, first))
    }
}

/// The masks cached for the whole run: the default mask and `allow_filters`.
fn pinned_masks(config: &DnsConfig) -> Vec<u64> {
    let mut pinned = vec![config.default_mask];
    pinned.extend(config.allow_filters.iter().flatten());
    if config.transfers() && config.allow_filters.is_none() {
        pinned.extend(super::DEFAULT_ZONE_FILTERS);
    }
    pinned.sort_unstable();
    pinned.dedup();
    pinned
}

/// Descriptors the rest of the process may need besides the DNS TCP connections (the
/// crawler's probes are `--threads`, 96 by default).
const OTHER_DESCRIPTORS: u64 = 256;

/// Warns when the open file limit is too low for `max_tcp_connections`: the TCP loop
/// would run out of descriptors first (it then closes its oldest connections to accept).
fn warn_if_few_descriptors(max_tcp_connections: usize) {
    let wanted = max_tcp_connections as u64 + OTHER_DESCRIPTORS;
    if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        if soft < wanted {
            log::warn!(
                "the open file limit ({soft}) is below the {max_tcp_connections} DNS TCP \
                 connections allowed plus {OTHER_DESCRIPTORS}: raise it (ulimit -n, \
                 LimitNOFILE) to {wanted} or more"
            );
        }
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

    /// Returns a reader of the answer sets' sizes (for `/metrics`).
    pub fn answer_sizes(&self) -> AnswerSizes {
        AnswerSizes(Arc::clone(&self.shared))
    }

    /// Stops the server and waits for its threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// Starts a thread per UDP socket, the TCP event loop over every listener, and the
    /// cache refresher.
    fn start_all(
        &mut self,
        sockets: Vec<(UdpSocket, TcpListener)>,
        transfer: Option<Transfer>,
    ) -> anyhow::Result<()> {
        let mut listeners = Vec::with_capacity(sockets.len());
        for (udp, tcp) in sockets {
            self.start("dns-udp", move |s| udp_loop(&udp, s))?;
            listeners.push(tcp);
        }
        self.start("dns-tcp", move |s| tcp_loop(listeners, s))?;
        let Some(Transfer {
            keeper,
            notify,
            zones,
        }) = transfer
        else {
            return self.start("dns-refresh", |s| refresh_loop(s, None));
        };
        self.start("dns-refresh", move |s| refresh_loop(s, Some(keeper)))?;
        if notify.is_empty() {
            return Ok(());
        }
        self.start("dns-notify", move |s| notify_loop(s, &notify, &zones))
    }

    /// Starts the serving thread `name`, running `serve` on the shared state.
    fn start(
        &mut self,
        name: &str,
        serve: impl FnOnce(&Arc<Shared>) + Send + 'static,
    ) -> anyhow::Result<()> {
        let shared = Arc::clone(&self.shared);
        self.threads
            .push(spawn_named(name, move || serve(&shared))?);
        Ok(())
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

/// Reads the sizes of the cached answer sets, from any thread, while the server runs.
#[derive(Clone)]
pub struct AnswerSizes(Arc<Shared>);

impl fmt::Debug for AnswerSizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerSizes").finish_non_exhaustive()
    }
}

impl AnswerSizes {
    /// The cached masks and their sets' sizes as (mask, IPv4, IPv6), by mask.
    pub fn get(&self) -> Vec<(u64, usize, usize)> {
        self.0.cache.sizes()
    }
}

/// What every serving thread shares.
pub(super) struct Shared {
    pub(super) ctx: ZoneContext,
    pub(super) cache: AnswerCache,
    pub(super) counters: Arc<DnsCounters>,
    stop: AtomicBool,
    /// Per-source UDP limit as (queries per second, burst); `None` when off.
    pub(super) rate_limit: Option<(u32, u32)>,
    pub(super) tcp_idle_timeout: Duration,
    pub(super) max_tcp_connections: usize,
    pub(super) max_tcp_per_source: usize,
    cache_ttl: Duration,
    /// The zone secondaries transfer; `None` without `--axfr-allow` and `--notify`.
    pub(super) zone: Option<PublishedZone>,
    /// `--axfr-allow`.
    axfr_allow: Vec<Cidr>,
}

impl Shared {
    fn new(
        config: &DnsConfig,
        ctx: ZoneContext,
        cache: AnswerCache,
        counters: Arc<DnsCounters>,
    ) -> Self {
        Self {
            ctx,
            cache,
            counters,
            stop: AtomicBool::new(false),
            rate_limit: config.rate_limit.filter(|&(qps, _)| qps > 0),
            tcp_idle_timeout: config.tcp_idle_timeout,
            max_tcp_connections: config.max_tcp_connections,
            max_tcp_per_source: config.max_tcp_per_source,
            cache_ttl: config.cache_ttl,
            zone: None,
            axfr_allow: config.axfr_allow.clone(),
        }
    }

    /// Whether `ip` may transfer the zone.
    pub(super) fn may_transfer(&self, ip: std::net::IpAddr) -> bool {
        self.zone.is_some() && self.axfr_allow.iter().any(|net| net.contains(ip))
    }

    /// Whether the server is stopping: every loop checks it at least once per [`POLL`].
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Starts a serving thread through [`crate::thread::spawn`]; the loops end only when the
/// server stops and report their own errors.
pub(super) fn spawn_named(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    crate::thread::spawn(name, move || {
        f();
        Ok(())
    })
}

/// Whether a socket error only means that its timeout passed (or a signal came).
pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Refreshes the answer cache, a few times per `cache_ttl`, and with `keeper` the
/// transferred zone, until the server stops.
fn refresh_loop(shared: &Shared, mut keeper: Option<ZoneKeeper>) {
    let tick = (shared.cache_ttl / 4).clamp(Duration::from_millis(10), POLL);
    while !shared.stopping() {
        thread::sleep(tick);
        shared.cache.refresh(Instant::now());
        if let (Some(keeper), Some(zone)) = (keeper.as_mut(), &shared.zone) {
            keeper.tick(shared, zone, Instant::now());
        }
    }
}
