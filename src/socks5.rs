//! A small blocking SOCKS5 client (RFC 1928, CONNECT without authentication), for reaching
//! peers through a proxy such as Tor's or I2P's SOCKS port. It runs over a stream the
//! caller has already connected to the proxy, under the caller's deadlines: one for the
//! greeting, one for the circuit (the CONNECT reply). Its errors tell the proxy's own
//! failures ([`SocksError::Proxy`]) from the peer's ([`SocksError::Peer`],
//! [`SocksError::Timeout`]), so a dead proxy does not count against every peer behind it.
//!
//! Hand-written rather than the `socks` crate (0.3.4): that crate connects to the proxy
//! itself with no timeout, cannot run over an already-connected stream, and reports the
//! proxy's reply codes only as `io::Error` strings, so a proxy failure cannot be told from
//! a peer failure. The reply parser is pure ([`reply_length`], [`check_reply`]), and the
//! exchange reads exactly the reply's bytes into a fixed buffer: what follows is the
//! peer's P2P stream.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use crate::p2p::Conn;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const NO_ACCEPTABLE_METHOD: u8 = 0xFF;
const CONNECT: u8 = 1;
const ATYP_V4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_V6: u8 = 4;
/// The greeting: version 5, one method, "no authentication".
const GREETING: [u8; 3] = [VERSION, 1, NO_AUTH];
/// The longest reply: VER REP RSV ATYP, a length byte, a 255-byte name, the port.
const MAX_REPLY: usize = 4 + 1 + 255 + 2;
/// Bytes of a reply needed to know its length (VER REP RSV ATYP and the first address byte).
const REPLY_HEAD: usize = 5;

/// Where the proxy should connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A name sent to the proxy unresolved (ATYP 3): `.onion` and `.b32.i2p` names. Never
    /// resolved locally.
    Domain(String, u16),
    /// An IP address (ATYP 1 or 4).
    Ip(SocketAddr),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Domain(name, port) => write!(f, "{name}:{port}"),
            Target::Ip(addr) => write!(f, "{addr}"),
        }
    }
}

/// Why a SOCKS5 exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    /// The proxy itself failed, not the peer: a malformed, short or garbage reply, a wrong
    /// version, no acceptable method (the proxy demands authentication), general failure
    /// (0x01), not allowed (0x02), command not supported (0x07), address type not
    /// supported (0x08), an unknown code, the proxy closing the connection, or no answer
    /// to the greeting by the greeting deadline.
    #[error("proxy failed: {0}")]
    Proxy(String),
    /// The proxy reached out and the peer is unreachable: network or host unreachable,
    /// connection refused, TTL expired (0x03..=0x06), and Tor's onion-service codes
    /// (0xF0..=0xF7).
    #[error("proxy reports {meaning} (code {code:#04x})")]
    Peer { code: u8, meaning: &'static str },
    /// The CONNECT reply did not arrive by the circuit deadline (counts against the peer).
    #[error("no SOCKS5 CONNECT reply before the circuit deadline")]
    Timeout,
}

impl SocksError {
    /// Whether the failure is the proxy's own (reason `proxy`), not the peer's.
    pub fn is_proxy_failure(&self) -> bool {
        matches!(self, SocksError::Proxy(_))
    }
}

/// How much of a CONNECT reply there is, from its first bytes ([`reply_length`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyLength {
    /// The total number of bytes needed to decide (more than given).
    NeedMore(usize),
    /// The total length of the reply, at most 262 bytes.
    Complete(usize),
}

/// Runs the SOCKS5 exchange on `conn`, a stream already connected to the proxy: the
/// greeting `[5, 1, 0]` and the method reply, then CONNECT to `target` and its reply.
///
/// Reads exactly the reply's bytes and not one more: on success the stream is ready for
/// the peer's bytes. Never holds more than the largest possible reply (262 bytes).
///
/// # Errors
/// [`SocksError::Proxy`] when the proxy fails, or does not answer the greeting by
/// `greeting_deadline`; [`SocksError::Peer`] when it reports the peer unreachable;
/// [`SocksError::Timeout`] when the CONNECT reply is not in by `circuit_deadline`.
pub fn connect<C: Conn>(
    conn: &mut C,
    target: &Target,
    greeting_deadline: Instant,
    circuit_deadline: Instant,
) -> Result<(), SocksError> {
    let request = request(target)?;
    let greeting = Phase::Greeting(greeting_deadline);
    send(conn, &GREETING, greeting)?;
    let mut method = [0u8; 2];
    fill(conn, &mut method, greeting)?;
    check_method(method)?;
    let circuit = Phase::Circuit(circuit_deadline);
    send(conn, &request, circuit)?;
    read_reply(conn, circuit)
}

/// The CONNECT request bytes for `target`.
///
/// # Errors
/// [`SocksError::Proxy`] naming a domain that is empty or over 255 bytes, which SOCKS5
/// cannot carry.
pub fn request(target: &Target) -> Result<Vec<u8>, SocksError> {
    let mut out = vec![VERSION, CONNECT, 0];
    let port = match target {
        Target::Domain(name, port) => {
            let len = u8::try_from(name.len())
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad_name(name))?;
            out.extend([ATYP_DOMAIN, len]);
            out.extend_from_slice(name.as_bytes());
            *port
        }
        Target::Ip(SocketAddr::V4(a)) => {
            out.push(ATYP_V4);
            out.extend_from_slice(&a.ip().octets());
            a.port()
        }
        Target::Ip(SocketAddr::V6(a)) => {
            out.push(ATYP_V6);
            out.extend_from_slice(&a.ip().octets());
            a.port()
        }
    };
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

fn bad_name(name: &str) -> SocksError {
    let shown: String = name.chars().take(80).collect();
    let more = if shown.len() < name.len() { "…" } else { "" };
    SocksError::Proxy(format!(
        "cannot ask for the name {shown:?}{more}: it is {} bytes, and SOCKS5 carries names \
         of 1 to 255 bytes; check the address",
        name.len()
    ))
}

/// What the first bytes of a CONNECT reply say: how many bytes the whole reply has, or
/// that more are needed to know, or the error. The version and the reply code are judged
/// as soon as they are in (a proxy may send a short reply on error, then close); the
/// length needs 5 bytes (VER REP RSV ATYP and the first address byte).
///
/// # Errors
/// The version is not 5, the reserved byte not 0, the address type unknown
/// ([`SocksError::Proxy`]), or the reply code not success (its mapped error).
pub fn reply_length(head: &[u8]) -> Result<ReplyLength, SocksError> {
    check_version_and_code(head)?;
    let Some(&[_, _, reserved, atyp, first]) = head.first_chunk::<REPLY_HEAD>() else {
        return Ok(ReplyLength::NeedMore(REPLY_HEAD));
    };
    if reserved != 0 {
        return Err(SocksError::Proxy(format!(
            "its CONNECT reply has reserved byte {reserved:#04x}, not 0 (garbage)"
        )));
    }
    Ok(ReplyLength::Complete(4 + address_len(atyp, first)? + 2))
}

/// Judges a reply's version and code, as far as they are in.
fn check_version_and_code(head: &[u8]) -> Result<(), SocksError> {
    match *head {
        [] => Ok(()),
        [version, ..] if version != VERSION => Err(SocksError::Proxy(format!(
            "its CONNECT reply has version {version}, not 5 (garbage, or not a SOCKS5 proxy)"
        ))),
        [_, code, ..] if code != 0 => Err(code_error(code)),
        _ => Ok(()),
    }
}

/// The length of a reply's address of type `atyp`, whose first byte is `first`.
fn address_len(atyp: u8, first: u8) -> Result<usize, SocksError> {
    match atyp {
        ATYP_V4 => Ok(4),
        ATYP_V6 => Ok(16),
        ATYP_DOMAIN => Ok(1 + usize::from(first)),
        other => Err(SocksError::Proxy(format!(
            "its CONNECT reply has address type {other:#04x}, not 1, 3 or 4 (garbage)"
        ))),
    }
}

/// Checks a complete CONNECT reply: version 5, reserved byte 0, address type 1, 3 or 4,
/// exactly the length these announce, and reply code 0 (success).
///
/// # Errors
/// [`SocksError::Proxy`] for a malformed reply, or the reply code's error.
pub fn check_reply(reply: &[u8]) -> Result<(), SocksError> {
    match reply_length(reply)? {
        ReplyLength::Complete(n) if n == reply.len() => Ok(()),
        ReplyLength::Complete(n) => Err(SocksError::Proxy(format!(
            "its CONNECT reply is {} bytes where its address type announces {n}",
            reply.len()
        ))),
        ReplyLength::NeedMore(_) => Err(SocksError::Proxy(format!(
            "its CONNECT reply is {} bytes, too short to be one",
            reply.len()
        ))),
    }
}

/// The error a nonzero reply code stands for.
fn code_error(code: u8) -> SocksError {
    let peer = |meaning| SocksError::Peer { code, meaning };
    let proxy = |what: &str| SocksError::Proxy(format!("{what} (code {code:#04x})"));
    match code {
        0x01 => proxy("general SOCKS server failure; check the proxy's log"),
        0x02 => proxy("connection not allowed by its ruleset; check the proxy's rules"),
        0x03 => peer("network unreachable"),
        0x04 => peer("host unreachable"),
        0x05 => peer("connection refused"),
        0x06 => peer("TTL expired"),
        0x07 => proxy("command CONNECT not supported"),
        0x08 => proxy("address type not supported; is it the right proxy for this network?"),
        0xF0 => peer("onion service descriptor not found"),
        0xF1 => peer("onion service descriptor invalid"),
        0xF2 => peer("onion service introduction failed"),
        0xF3 => peer("onion service rendezvous failed"),
        0xF4 => peer("onion service missing client authorization"),
        0xF5 => peer("onion service wrong client authorization"),
        0xF6 => peer("invalid onion service address"),
        0xF7 => peer("onion service introduction timed out"),
        _ => proxy("unknown reply code"),
    }
}

/// Checks the method reply to the greeting.
fn check_method([version, method]: [u8; 2]) -> Result<(), SocksError> {
    let problem = match (version, method) {
        (VERSION, NO_AUTH) => return Ok(()),
        (VERSION, NO_ACCEPTABLE_METHOD) => "it demands authentication and dnsseeder supports \
             none; configure the proxy without authentication"
            .to_owned(),
        (VERSION, m) => format!("it chose method {m:#04x}, which was not offered"),
        (v, _) => {
            format!("it answered the greeting with version {v}, not 5; is it a SOCKS5 proxy?")
        }
    };
    Err(SocksError::Proxy(problem))
}

/// Which step of the exchange, with its deadline: they differ in what a timeout means.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Greeting(Instant),
    Circuit(Instant),
}

impl Phase {
    fn deadline(self) -> Instant {
        match self {
            Phase::Greeting(d) | Phase::Circuit(d) => d,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Phase::Greeting(_) => "the greeting",
            Phase::Circuit(_) => "the CONNECT request",
        }
    }

    /// The deadline passed.
    fn timeout(self) -> SocksError {
        match self {
            Phase::Greeting(_) => SocksError::Proxy(
                "no answer to the greeting before the deadline; is the proxy up and is it \
                 a SOCKS5 proxy?"
                    .to_owned(),
            ),
            Phase::Circuit(_) => SocksError::Timeout,
        }
    }

    /// A failed read or write.
    fn io(self, e: &io::Error) -> SocksError {
        match e.kind() {
            // A read timeout surfaces as WouldBlock on Linux.
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => self.timeout(),
            _ => SocksError::Proxy(format!("while exchanging {}: {e}", self.what())),
        }
    }

    fn closed(self, got: usize) -> SocksError {
        SocksError::Proxy(format!(
            "it closed the connection after {got} bytes of its answer to {}",
            self.what()
        ))
    }

    /// The time left, or the timeout error when there is none.
    fn remaining(self) -> Result<std::time::Duration, SocksError> {
        let left = self.deadline().saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.timeout())
        } else {
            Ok(left)
        }
    }
}

fn send<C: Conn>(conn: &mut C, bytes: &[u8], phase: Phase) -> Result<(), SocksError> {
    conn.set_write_timeout_only(phase.remaining()?)
        .map_err(|e| phase.io(&e))?;
    conn.write_all(bytes).map_err(|e| phase.io(&e))
}

/// One read into `buf`, bounded by the phase's deadline: how many bytes came (at least 1).
/// `got` is how many bytes of the answer came before, for the error when the proxy closes.
fn read_some<C: Conn>(
    conn: &mut C,
    buf: &mut [u8],
    got: usize,
    phase: Phase,
) -> Result<usize, SocksError> {
    loop {
        conn.set_read_timeout_only(phase.remaining()?)
            .map_err(|e| phase.io(&e))?;
        match conn.read(buf) {
            Ok(0) => return Err(phase.closed(got)),
            Ok(n) => return Ok(n.min(buf.len())),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(phase.io(&e)),
        }
    }
}

/// Reads exactly `buf.len()` bytes.
fn fill<C: Conn>(conn: &mut C, buf: &mut [u8], phase: Phase) -> Result<(), SocksError> {
    let mut filled = 0;
    while filled < buf.len() {
        filled += read_some(conn, &mut buf[filled..], filled, phase)?;
    }
    Ok(())
}

/// Reads the CONNECT reply, no further than its end, judging it as its bytes come in.
fn read_reply<C: Conn>(conn: &mut C, phase: Phase) -> Result<(), SocksError> {
    let mut buf = [0u8; MAX_REPLY];
    let mut filled = 0;
    loop {
        let need = match reply_length(&buf[..filled])? {
            ReplyLength::Complete(n) if n == filled => return check_reply(&buf[..n]),
            ReplyLength::Complete(n) | ReplyLength::NeedMore(n) => n,
        };
        let Some(rest) = buf.get_mut(filled..need) else {
            return Err(SocksError::Proxy(format!(
                "its CONNECT reply would be {need} bytes, longer than {MAX_REPLY} (garbage)"
            )));
        };
        filled += read_some(conn, rest, filled, phase)?;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap

    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use super::*;

    const ONION: &str = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion";

    fn v4_reply(code: u8) -> Vec<u8> {
        vec![5, code, 0, ATYP_V4, 127, 0, 0, 1, 0x20, 0x8d]
    }

    fn domain_reply(name_len: u8) -> Vec<u8> {
        let mut r = vec![5, 0, 0, ATYP_DOMAIN, name_len];
        r.extend(std::iter::repeat_n(b'a', usize::from(name_len)));
        r.extend([0x20, 0x8d]);
        r
    }

    fn v6_reply() -> Vec<u8> {
        let mut r = vec![5, 0, 0, ATYP_V6];
        r.extend([0xfe; 16]);
        r.extend([0x20, 0x8d]);
        r
    }

    /// A proxy on loopback that writes `script` at once (then, with `close`, shuts its
    /// side), and returns what it was sent once the client hangs up.
    fn serve(script: Vec<u8>, close: bool) -> (TcpStream, JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(&script).unwrap();
            if close {
                s.shutdown(Shutdown::Write).unwrap();
            }
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            got
        });
        (TcpStream::connect(addr).unwrap(), server)
    }

    fn target() -> Target {
        Target::Domain(ONION.to_owned(), 8333)
    }

    /// Runs `connect` against a proxy saying `script`; the result and the client stream.
    fn run(script: Vec<u8>, close: bool) -> (Result<(), SocksError>, TcpStream) {
        let (mut conn, _server) = serve(script, close);
        let now = Instant::now();
        let secs = Duration::from_secs(5);
        (connect(&mut conn, &target(), now + secs, now + secs), conn)
    }

    fn proxy_message(result: Result<(), SocksError>) -> String {
        match result {
            Err(e @ SocksError::Proxy(_)) => e.to_string(),
            other => panic!("expected a proxy failure, got {other:?}"),
        }
    }

    #[test]
    fn request_for_a_domain_sends_the_name_unresolved() {
        let mut want = vec![5, 1, 0, 3, 62];
        want.extend_from_slice(ONION.as_bytes());
        want.extend([0x20, 0x8d]);
        assert_eq!(request(&target()).unwrap(), want);
    }

    #[test]
    fn request_for_ipv4_and_ipv6() {
        let v4 = Target::Ip("10.1.2.3:18333".parse().unwrap());
        assert_eq!(request(&v4).unwrap(), [5, 1, 0, 1, 10, 1, 2, 3, 0x47, 0x9d]);
        let v6 = Target::Ip("[2001:db8::1]:8333".parse().unwrap());
        let mut want = vec![5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8];
        want.extend([0; 11]);
        want.extend([1, 0x20, 0x8d]);
        assert_eq!(request(&v6).unwrap(), want);
    }

    #[test]
    fn request_refuses_empty_and_overlong_names() {
        for len in [0, 256, 10_000] {
            let e = request(&Target::Domain("a".repeat(len), 1)).unwrap_err();
            let text = proxy_message(Err(e));
            assert!(text.contains(&format!("{len} bytes")), "{text}");
            assert!(text.len() < 300, "{text}");
        }
        assert_eq!(
            request(&Target::Domain("a".repeat(255), 1)).unwrap().len(),
            262
        );
    }

    #[test]
    fn every_reply_code_maps_to_its_variant() {
        let onion = [
            "descriptor not found",
            "descriptor invalid",
            "introduction failed",
            "rendezvous failed",
            "missing client auth",
            "wrong client auth",
            "invalid onion service address",
            "introduction timed out",
        ];
        for code in 1..=255u8 {
            let e = check_reply(&v4_reply(code)).unwrap_err();
            let peer = matches!(code, 0x03..=0x06 | 0xF0..=0xF7);
            assert_eq!(e.is_proxy_failure(), !peer, "{code:#04x}: {e}");
            assert!(e.to_string().contains(&format!("{code:#04x}")), "{e}");
            if let SocksError::Peer { code: c, meaning } = e {
                assert_eq!(c, code);
                if code >= 0xF0 {
                    assert!(
                        meaning.contains(onion[usize::from(code - 0xF0)]),
                        "{meaning}"
                    );
                }
            }
        }
        assert!(matches!(
            check_reply(&v4_reply(5)),
            Err(SocksError::Peer { code: 5, .. })
        ));
        assert!(proxy_message(check_reply(&v4_reply(0x42))).contains("unknown"));
    }

    #[test]
    fn reply_length_needs_five_bytes_then_knows() {
        assert_eq!(reply_length(&[]).unwrap(), ReplyLength::NeedMore(5));
        assert_eq!(
            reply_length(&[5, 0, 0, 1]).unwrap(),
            ReplyLength::NeedMore(5)
        );
        assert_eq!(
            reply_length(&v4_reply(0)).unwrap(),
            ReplyLength::Complete(10)
        );
        assert_eq!(
            reply_length(&v6_reply()[..5]).unwrap(),
            ReplyLength::Complete(22)
        );
        assert_eq!(
            reply_length(&domain_reply(255)).unwrap(),
            ReplyLength::Complete(262)
        );
        assert_eq!(
            reply_length(&domain_reply(0)).unwrap(),
            ReplyLength::Complete(7)
        );
        // The code is judged as soon as it is in: a short error reply still tells.
        assert!(matches!(
            reply_length(&[5, 4]),
            Err(SocksError::Peer { code: 4, .. })
        ));
    }

    #[test]
    fn check_reply_refuses_malformed_replies() {
        let mut long = v4_reply(0);
        long.push(0);
        for bad in [
            vec![],
            vec![5, 0, 0],
            v4_reply(0)[..9].to_vec(),
            long,
            vec![4, 0, 0, 1, 1, 2, 3, 4, 0, 1],
            vec![5, 0, 1, 1, 1, 2, 3, 4, 0, 1],
            vec![5, 0, 0, 2, 1, 2, 3, 4, 0, 1],
        ] {
            proxy_message(check_reply(&bad));
        }
        for good in [v4_reply(0), v6_reply(), domain_reply(0), domain_reply(255)] {
            check_reply(&good).unwrap();
        }
    }

    #[test]
    fn success_with_each_address_type_reads_exactly_the_reply() {
        for reply in [v4_reply(0), v6_reply(), domain_reply(0), domain_reply(255)] {
            let mut script = vec![5, 0];
            script.extend(&reply);
            script.extend(b"P2P");
            let (mut conn, server) = serve(script, false);
            let later = Instant::now() + Duration::from_secs(5);
            connect(&mut conn, &target(), later, later).unwrap();
            let mut rest = [0u8; 3];
            conn.read_exact(&mut rest).unwrap();
            assert_eq!(&rest, b"P2P", "after a {}-byte reply", reply.len());
            drop(conn);
            let mut sent = GREETING.to_vec();
            sent.extend(request(&target()).unwrap());
            assert_eq!(server.join().unwrap(), sent);
        }
    }

    #[test]
    fn a_silent_circuit_times_out_at_the_circuit_deadline() {
        let (mut conn, _server) = serve(vec![5, 0], false);
        let start = Instant::now();
        let circuit = start + Duration::from_millis(600);
        let result = connect(
            &mut conn,
            &target(),
            start + Duration::from_millis(200),
            circuit,
        );
        assert!(matches!(result, Err(SocksError::Timeout)), "{result:?}");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(590), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn a_silent_greeting_is_the_proxy_failing_at_the_greeting_deadline() {
        let (mut conn, _server) = serve(Vec::new(), false);
        let start = Instant::now();
        let greeting = start + Duration::from_millis(300);
        let result = connect(
            &mut conn,
            &target(),
            greeting,
            start + Duration::from_secs(10),
        );
        assert!(proxy_message(result).contains("greeting"));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(290), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn closing_mid_reply_is_the_proxy_failing() {
        for script in [vec![], vec![5], vec![5, 0, 5, 0, 0, 1, 127, 0]] {
            let (result, _conn) = run(script, true);
            assert!(proxy_message(result).contains("closed"));
        }
    }

    #[test]
    fn a_short_error_reply_reports_its_code() {
        let (result, _conn) = run(vec![5, 0, 5, 4], true);
        assert!(
            matches!(result, Err(SocksError::Peer { code: 4, .. })),
            "{result:?}"
        );
    }

    #[test]
    fn a_proxy_demanding_authentication_is_told_apart() {
        let (result, _conn) = run(vec![5, 0xFF], false);
        let text = proxy_message(result);
        assert!(text.contains("authentication"), "{text}");
        assert!(text.contains("configure the proxy"), "{text}");
    }

    #[test]
    fn garbage_is_the_proxy_failing() {
        let http = b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec();
        let mut after_method = vec![5, 0];
        after_method.extend(&http);
        for script in [http, after_method, vec![5, 2], vec![5, 0, 5, 0, 0, 9, 1]] {
            let (result, _conn) = run(script, false);
            proxy_message(result);
        }
    }
}
