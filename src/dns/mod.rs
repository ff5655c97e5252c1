//! The authoritative DNS server: it answers A and AAAA queries for the seed zone with
//! good peers, over UDP and TCP, without an async runtime.
//!
//! # What it answers (SPEC §6)
//! - `HOST` and `x<hex>.HOST` (A, AAAA): peers whose services include the mask: the
//!   configured default mask for `HOST`, exactly `<hex>` for `x<hex>` (1 to 16 hex
//!   digits of either case, no leading zero, so `x0` and `x09` are unknown names), and
//!   only masks in `allow_filters` when it is set. At most [`MAX_ANSWERS`] records, IPv4
//!   for A and IPv6 for AAAA, chosen at random one netgroup (/16, /32) at a time. Each
//!   answer set draws 128 such answers per family when it is built (every cache refresh)
//!   and a query is served one of them at random (see `answer::PREBUILT_ANSWERS`).
//! - NS (one per `--ns`) and SOA at the apex. ANY at the apex gets the SOA alone (RFC 8482),
//!   elsewhere no data; classes other than IN are REFUSED, and so are AXFR/IXFR except over
//!   TCP from an `--axfr-allow` source, which gets the whole zone (`transfer`, SPEC §13).
//!   The SOA's serial follows the transferred zone's when transfers are on.
//! - A known name without data: NOERROR with the SOA in authority (TTL and SOA minimum
//!   `negative_ttl`); an unknown name inside the zone: NXDOMAIN with the SOA; a name
//!   outside the zone: REFUSED, not authoritative, question echoed.
//! - AA on authoritative answers; the question is copied byte for byte, so its letter
//!   case (0x20) is echoed. RD and CD are echoed.
//! - UDP answers fit 512 bytes, or the client's EDNS0 size capped at 1232 (an OPT
//!   record advertising 1232 is then added); records cut for size set TC. TCP (RFC 7766
//!   framing, pipelining) returns the same answers whole.
//! - Malformed requests: FORMERR when the header parsed (QR=0) but the rest did not,
//!   or there is not exactly one question; NOTIMP for opcodes other than QUERY; BADVERS
//!   for EDNS versions above 0; silence for responses and packets under 12 bytes.
//!
//! # Layout
//! The pure responder, one request's bytes in, one response's bytes out:
//! - `respond`: [`respond()`] (and [`respond_into`], which reuses a buffer), what each
//!   request gets, and the size limit of each [`Transport`];
//! - `request`: parsing; the question and a plain OPT record are read by hand, anything
//!   else in the request by hickory-proto;
//! - `response`: the response written directly, with the question copied and owner
//!   names as compression pointers into it;
//! - `zone`: [`ZoneContext`], the zone's names, masks and SOA/NS RDATA encoded once by
//!   hickory-proto, and the current SOA serial;
//! - `transfer`: the zone secondaries transfer (AXFR, NOTIFY, the master file), and
//!   `acl`: the `--axfr-allow` ranges.
//!
//! No allocation for typical queries; about 0.2 µs per 30-record answer (see
//! docs/PERFORMANCE.md, `## DNS`). Then the data it answers from:
//! - `answer`: [`AnswerSet`], the peers of one mask grouped by netgroup, and the choice;
//! - `cache`: the answer sets per mask; `ratelimit`: [`RateLimiter`].
//!
//! And the sockets and threads:
//! - `server`: [`DnsServer`] and [`DnsHandle`], starting and stopping the threads;
//! - `bind`: the sockets and [`BindError`]; `counters`: [`DnsCounters`];
//! - `serve_udp`: the UDP loop, over `udp`'s batched receive and send;
//! - `serve_tcp`: the TCP event loop (`mio`) over every listener and connection;
//!   `tcp_conn`: one connection's framing, answering and nonblocking I/O; `tcp_table`:
//!   the open connections, their activity order and the admission rules.
//!
//! # Answer cache
//! One `Arc<AnswerSet>` per mask in a `RwLock<HashMap>`; a serving thread holds the read
//! lock only to clone the `Arc`. A refresher thread rebuilds every set older than
//! `cache_ttl` from the [`PeerSource`], querying the source without holding the map's
//! lock, and on an error keeps serving the old set. The default mask and `allow_filters`
//! are filled before serving starts and never dropped. A mask seen for the first time is
//! filled synchronously by the serving thread that meets it (one query to the source),
//! but only while fewer than `max_cached_masks` (64) other masks are cached; past that
//! cap it is answered NOERROR + SOA without records, so random `x<hex>` names cannot
//! make the server hit the database per query. Masks unused for 10 minutes are dropped.
//! Chosen over a channel to the refresher because the first answer for a new mask is
//! then complete, and the cap bounds how often the serving thread can wait on the source.
//!
//! # Rate limiting
//! Per source address (IPv6 by /64), UDP only, one limiter per UDP thread (no locks):
//! a token bucket of `burst` refilled at `qps` grants answers; when it is empty a second
//! bucket of the same shape grants empty TC=1 replies (a real resolver retries over
//! TCP); beyond both, silence. Entries that have refilled are swept every 5 s and at most
//! 65,536 sources are tracked; newcomers while the table is full share one overflow
//! bucket 8 times larger. TCP is bounded by connections instead (see Threads).
//!
//! # Amplification
//! Measured by the unit test `amplification_factor_of_the_largest_answers` for
//! `x9.seed.example.com` (a 37-byte query, 48 bytes with an OPT record):
//! A without EDNS0: 29 records in 501 bytes, 13.5x; AAAA without EDNS0: 16 records in
//! 485 bytes, 13.1x; A with EDNS0: 30 records in 528 bytes, 11.0x; AAAA with EDNS0
//! (size at least 888): 30 records in 888 bytes, **18.5x, the largest**. The rate limiter
//! caps what a spoofed flood can reflect at one victim address: a burst of 100 answers
//! and 50 per second, then as many ~1x truncated replies, then nothing.
//!
//! # Threads
//! [`DnsServer::bind`] binds UDP and TCP on the same port per listen address (IPv6
//! sockets are `IPV6_V6ONLY`, so `0.0.0.0:53` and `[::]:53` coexist).
//! [`DnsServer::spawn`] starts one thread per UDP socket, one TCP event loop (`mio`) for
//! every listener and connection, and the cache refresher. TCP (RFC 7766): pipelined
//! queries answered in order; a connection without a complete query for
//! `tcp_idle_timeout` is closed (partial messages are no activity), and so is one whose
//! client takes no answer for 200 ms, or that announces a request over 4096 bytes; at
//! most `max_tcp_per_source` (32) connections per source (IPv6 by /64), and at
//! `max_tcp_connections` (4096) a newcomer from a source holding none is served in place
//! of the least recently active connection (RFC 7766 §6.2.3), so a fresh client is always
//! served. An idle connection costs about 130 bytes of the server's memory besides its
//! socket (docs/PERFORMANCE.md, "TCP connections"). Every wait has a timeout of at most
//! 100 ms, so [`DnsHandle::shutdown`] (or dropping the handle) stops and joins the threads
//! promptly.

mod acl;
mod answer;
mod bind;
mod cache;
mod config;
mod counters;
mod ratelimit;
mod request;
mod respond;
mod response;
mod serve_tcp;
mod serve_udp;
mod server;
mod tcp_conn;
mod tcp_table;
mod transfer;
mod udp;
mod zone;

pub use acl::Cidr;
pub use answer::{AnswerSet, MAX_ANSWERS, PREBUILT_ANSWERS};
pub use bind::BindError;
pub use config::{ConfigError, DnsConfig};
pub use counters::{DnsCounters, DnsStats};
pub use ratelimit::{RateLimiter, Verdict};
pub use respond::{
    MAX_UDP_EDNS, MAX_UDP_PLAIN, Outcome, Transport, respond, respond_into, respond_truncated_into,
};
pub use server::{AnswerSizes, DnsHandle, DnsServer};
pub use transfer::{
    DEFAULT_ZONE_FILTERS, MESSAGE_LIMIT, NameRecords, Zone, ZoneName, master_file,
    respond_transfer, zone_names,
};
pub use zone::{ZoneContext, parse_mask_label};

/// Where answer sets come from: the SQLite peer store implements it with an indexed
/// query (good peers whose services include `mask`).
///
/// Called from the cache refresher, and once per new mask from a serving thread (see
/// the module documentation), never per query.
pub trait PeerSource: Send + 'static {
    /// Returns the good peers whose services include every bit of `mask`; addresses
    /// that are neither IPv4 nor IPv6 have no place here.
    ///
    /// # Errors
    ///
    /// Any error is logged, and the previous answer set (or none) is served until the
    /// next refresh.
    fn good_peers(&mut self, mask: u64) -> anyhow::Result<Vec<std::net::IpAddr>>;

    /// Whether nothing changed since the previous call, once per refresh round: the
    /// refresher then only redraws the prebuilt answers of the sets it has instead of
    /// querying them again. The default, `false`, always queries.
    fn unchanged(&mut self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
