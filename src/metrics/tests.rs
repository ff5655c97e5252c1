//! The metrics server over real sockets: what scrapers get, and what hostile clients
//! (huge heads, slow senders, silence, garbage) cannot take from them.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::server::Limits;
use super::{MetricsServer, PeerSnapshot, Sources};
use crate::crawler::CrawlCounters;

fn sources() -> Sources {
    Sources {
        crawl: Arc::new(CrawlCounters::default()),
        dns: None,
        peers: PeerSnapshot::default(),
        probe_age: Duration::from_secs(600),
    }
}

fn start(limits: Limits) -> MetricsServer {
    let listen = "127.0.0.1:0".parse().unwrap();
    MetricsServer::start_with(listen, sources(), limits).unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Everything the server sends until it closes (or resets) the connection.
fn read_reply(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut chunk = [0; 4096];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `request` on a new connection; the whole reply.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    read_reply(&mut stream)
}

fn status(reply: &str) -> u16 {
    reply
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {reply:?}"))
}

fn body(reply: &str) -> &str {
    reply.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[test]
fn scrapes_probes_and_wrong_requests_get_their_answers() {
    let server = start(Limits::default());
    let addr = server.local_addr();
    let page = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&page), 200);
    assert!(body(&page).contains("dnsseeder_probes_total"), "{page}");
    let length = format!("\r\nContent-Length: {}\r\n", body(&page).len());
    assert!(page.contains(&length), "{page}");
    // No probe succeeded yet.
    assert_eq!(
        status(&exchange(addr, b"GET /health HTTP/1.0\r\n\r\n")),
        503
    );
    let head = exchange(addr, b"HEAD /health?x=1 HTTP/1.1\r\n\r\n");
    assert_eq!((status(&head), body(&head)), (503, ""));
    let post = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nab",
    );
    assert_eq!(status(&post), 405);
    assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
    assert_eq!(status(&exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n")), 404);
    assert_eq!(status(&exchange(addr, b"GET / HTTP/2.0\r\n\r\n")), 505);
    server.stop();
}

#[test]
fn a_megabyte_header_gets_431_and_the_server_serves_on() {
    let server = start(Limits::default());
    let addr = server.local_addr();
    let mut stream = connect(addr);
    let start = Instant::now();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut head = b"GET /metrics HTTP/1.1\r\nX-Huge: ".to_vec();
            head.resize(1 << 20, b'a');
            // The server may close before taking it all.
            let _ = stream.write_all(&head);
        })
    };
    let reply = read_reply(&mut stream);
    writer.join().unwrap();
    assert_eq!(status(&reply), 431, "{reply}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        status(&exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n")),
        200
    );
    server.stop();
}

#[test]
fn two_hundred_slow_clients_do_not_hold_up_a_scrape() {
    let server = start(Limits::default());
    let addr = server.local_addr();
    let slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = connect(addr);
            stream.write_all(b"G").unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..3 {
        let start = Instant::now();
        let reply = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        let took = start.elapsed();
        assert_eq!(status(&reply), 200);
        assert!(took < Duration::from_secs(2), "the scrape took {took:?}");
    }
    drop(slow);
    server.stop();
}

#[test]
fn a_silent_connection_is_closed_at_its_deadline() {
    let timeout = Duration::from_millis(300);
    let server = start(Limits {
        timeout,
        ..Limits::default()
    });
    let mut silent = connect(server.local_addr());
    let mut slow = connect(server.local_addr());
    slow.write_all(b"GET /met").unwrap();
    let start = Instant::now();
    let reply = read_reply(&mut silent);
    let took = start.elapsed();
    assert_eq!(status(&reply), 408, "{reply}");
    assert!(
        took >= timeout - Duration::from_millis(50),
        "closed after {took:?}"
    );
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    assert_eq!(status(&read_reply(&mut slow)), 408);
    server.stop();
}

#[test]
fn a_request_cut_short_then_eof_is_400() {
    let server = start(Limits::default());
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let reply = read_reply(&mut stream);
    assert_eq!(status(&reply), 400, "{reply}");
    assert_eq!(body(&reply), "malformed request: the head is cut short\n");
    server.stop();
}

#[test]
fn garbage_is_400_as_soon_as_its_first_line_ends() {
    let server = start(Limits::default());
    let addr = server.local_addr();
    // A TLS ClientHello's start, then a line feed; the connection stays open for writing.
    let mut stream = connect(addr);
    stream
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 \xff\x00\n")
        .unwrap();
    let start = Instant::now();
    let reply = read_reply(&mut stream);
    assert_eq!(status(&reply), 400, "{reply}");
    assert!(start.elapsed() < Duration::from_secs(2));
    for garbage in [
        &b"\r\n\r\n"[..],
        b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
    ] {
        assert_eq!(status(&exchange(addr, garbage)), 400, "{garbage:?}");
    }
    server.stop();
}

#[test]
fn a_full_table_closes_its_oldest_connection_for_a_newcomer() {
    let server = start(Limits {
        max_connections: 4,
        ..Limits::default()
    });
    let addr = server.local_addr();
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(addr)).collect();
    std::thread::sleep(Duration::from_millis(100));
    let reply = exchange(addr, b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(status(&reply), 503);
    // The oldest was closed without an answer; the newest is still open.
    assert_eq!(read_reply(&mut held[0]), "");
    let newest = &mut held[3];
    newest
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let err = newest.read(&mut [0; 16]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    server.stop();
}

#[test]
fn stop_is_prompt_with_connections_open() {
    let server = start(Limits::default());
    let _held: Vec<TcpStream> = (0..10).map(|_| connect(server.local_addr())).collect();
    let start = Instant::now();
    server.stop();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_taken_port_is_an_error_naming_the_flag_and_the_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap();
    let err = MetricsServer::start(listen, sources()).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("--metrics-listen"), "{message}");
    assert!(
        message.contains("pick a free address and port"),
        "{message}"
    );
}
