//! One connection of the metrics server and the step its event loop runs when the
//! socket is ready: read the request head (at most `MAX_HEAD` bytes kept), answer it
//! once, write the answer without blocking, then close in the way that lets the client
//! read it.
//!
//! It exists apart from the loop so that a connection's life reads in one place:
//! `Reading` until the head is judged, `Writing` the one response, then `Lingering`:
//! after the response the write side is shut down and what the client still sends (the
//! rest of an oversized head, a body) is read and dropped until it closes, for at most
//! [`LINGER`] and [`LINGER_BYTES`]. Closing at once with unread bytes would make the
//! kernel reset the connection, and a reset can destroy the response before the client
//! reads it. Each step reads at most [`READ_BUDGET`] chunks, so one client that keeps
//! sending waits for the others; the loop closes a connection at its deadline (see
//! [`Conn::expire`]).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::http::{Head, HeadError, HeadReader, Request, response};

/// Bytes taken from a socket per read (the loop's shared buffer).
pub(super) const READ_CHUNK: usize = 4096;
/// Reads per step.
const READ_BUDGET: usize = 16;
/// How long a connection may stay after its response is written, for the client to close.
pub(super) const LINGER: Duration = Duration::from_secs(1);
/// How much a lingering connection reads and drops before it is closed anyway.
pub(super) const LINGER_BYTES: usize = 1 << 20;

/// What the loop does with a connection after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing more until its socket is ready again.
    Idle,
    /// It used its read budget: step it again at the next turn.
    Again,
    /// Close it.
    Close,
}

/// Where a connection is in its life.
#[derive(Debug)]
enum State {
    Reading(HeadReader),
    /// The response and how much of it is written.
    Writing(Vec<u8>, usize),
    /// Bytes read and dropped since the response went out.
    Lingering(usize),
}

/// One client connection.
#[derive(Debug)]
pub(super) struct Conn {
    stream: TcpStream,
    state: State,
    accepted: Instant,
    /// When the loop closes it: the request must be answered by then, or the lingering is
    /// over.
    deadline: Instant,
}

impl Conn {
    /// A connection accepted `now`, to be answered within `timeout`.
    pub(super) fn new(stream: TcpStream, now: Instant, timeout: Duration) -> Self {
        Self {
            stream,
            state: State::Reading(HeadReader::new()),
            accepted: now,
            deadline: now + timeout,
        }
    }

    /// The socket, to register it with the loop.
    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub(super) fn accepted(&self) -> Instant {
        self.accepted
    }

    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the request head is still being read (no response chosen yet).
    pub(super) fn reading(&self) -> bool {
        matches!(self.state, State::Reading(_))
    }

    /// Bytes of request head kept.
    #[cfg(test)]
    pub(super) fn buffered(&self) -> usize {
        match &self.state {
            State::Reading(reader) => reader.buffered(),
            _ => 0,
        }
    }

    /// Reads, answers through `answer` (a request, or the error that refuses its head) and
    /// writes as far as the socket allows; `chunk` is the loop's read buffer.
    pub(super) fn step(
        &mut self,
        chunk: &mut [u8],
        answer: &mut dyn FnMut(Result<Request, HeadError>) -> Vec<u8>,
    ) -> Step {
        loop {
            let step = match &mut self.state {
                State::Reading(reader) => read_head(&mut self.stream, reader, chunk),
                State::Writing(out, written) => write_out(&mut self.stream, out, written),
                State::Lingering(dropped) => drain(&mut self.stream, dropped, chunk),
            };
            match step {
                Progress::Wait(step) => return step,
                Progress::Answer(verdict) => {
                    self.state = State::Writing(answer(verdict), 0);
                }
                Progress::Written => {
                    // The FIN goes after the response; errors mean the client is gone.
                    let _ = self.stream.shutdown(Shutdown::Write);
                    self.state = State::Lingering(0);
                    self.deadline = Instant::now() + LINGER;
                }
            }
        }
    }

    /// At the deadline: a client still sending its head gets a best-effort 408 (one
    /// write that never blocks) before the loop closes it.
    pub(super) fn expire(&mut self) {
        if self.reading() {
            let _ = self
                .stream
                .write(&response(408, "request not received in time\n"));
        }
    }
}

/// What a state's work came to.
#[derive(Debug)]
enum Progress {
    /// Stop here.
    Wait(Step),
    /// The head is judged: answer it.
    Answer(Result<Request, HeadError>),
    /// The whole response is written.
    Written,
}

/// Reads the head, at most [`READ_BUDGET`] chunks and never past `MAX_HEAD` bytes.
fn read_head(stream: &mut TcpStream, reader: &mut HeadReader, chunk: &mut [u8]) -> Progress {
    for _ in 0..READ_BUDGET {
        let room = reader.room().min(chunk.len());
        let n = match stream.read(&mut chunk[..room]) {
            // Closed before the head ended: a partial head is malformed, nothing is nothing.
            Ok(0) if reader.buffered() > 0 => {
                return Progress::Answer(Err(HeadError::Malformed("the head is cut short")));
            }
            Ok(0) => return Progress::Wait(Step::Close),
            Ok(n) => n,
            Err(e) => match wait_or_close(&e) {
                Some(step) => return Progress::Wait(step),
                None => continue,
            },
        };
        match reader.push(&chunk[..n]) {
            Ok(Head::Incomplete) => {}
            Ok(Head::Request(request)) => return Progress::Answer(Ok(request)),
            Err(e) => return Progress::Answer(Err(e)),
        }
    }
    Progress::Wait(Step::Again)
}

/// Writes what is left of `out`.
fn write_out(stream: &mut TcpStream, out: &[u8], written: &mut usize) -> Progress {
    while *written < out.len() {
        match stream.write(&out[*written..]) {
            Ok(0) => return Progress::Wait(Step::Close),
            Ok(n) => *written += n,
            Err(e) => {
                if let Some(step) = wait_or_close(&e) {
                    return Progress::Wait(step);
                }
            }
        }
    }
    Progress::Written
}

/// Reads and drops what the client still sends, until it closes or has sent
/// [`LINGER_BYTES`].
fn drain(stream: &mut TcpStream, dropped: &mut usize, chunk: &mut [u8]) -> Progress {
    for _ in 0..READ_BUDGET {
        match stream.read(chunk) {
            Ok(0) => return Progress::Wait(Step::Close),
            Ok(n) => *dropped += n,
            Err(e) => match wait_or_close(&e) {
                Some(step) => return Progress::Wait(step),
                None => continue,
            },
        }
        if *dropped > LINGER_BYTES {
            return Progress::Wait(Step::Close);
        }
    }
    Progress::Wait(Step::Again)
}

/// After an I/O error: wait for readiness, close, or (`None`) retry at once.
fn wait_or_close(e: &io::Error) -> Option<Step> {
    match e.kind() {
        io::ErrorKind::WouldBlock => Some(Step::Idle),
        io::ErrorKind::Interrupted => None,
        _ => Some(Step::Close),
    }
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::super::http::{MAX_HEAD, Method};
    use super::*;

    /// A connection of ours and the client's end of it.
    fn pair() -> (Conn, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let conn = Conn::new(
            TcpStream::from_std(server),
            Instant::now(),
            Duration::from_secs(5),
        );
        (conn, client)
    }

    fn echo_status(verdict: Result<Request, HeadError>) -> Vec<u8> {
        match verdict {
            Ok(r) if r.method == Method::Get => response(200, &r.path),
            Ok(_) => response(405, ""),
            Err(e) => response(e.status(), &e.to_string()),
        }
    }

    /// Steps `conn` until it asks to be closed or `limit` steps passed.
    fn run(conn: &mut Conn, limit: usize) -> Step {
        let mut chunk = vec![0; READ_CHUNK];
        let mut step = Step::Idle;
        for _ in 0..limit {
            step = conn.step(&mut chunk, &mut echo_status);
            if step == Step::Close {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        step
    }

    fn read_all(client: &mut std::net::TcpStream) -> String {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn a_request_is_answered_and_the_connection_lingers_until_the_client_closes() {
        let (mut conn, mut client) = pair();
        client
            .write_all(b"GET /metrics?x HTTP/1.1\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(run(&mut conn, 1), Step::Idle);
        assert!(!conn.reading());
        let reply = read_all(&mut client);
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\n/metrics"), "{reply}");
        drop(client);
        assert_eq!(run(&mut conn, 100), Step::Close);
    }

    #[test]
    fn a_huge_head_keeps_max_head_bytes_and_gets_431() {
        let (mut conn, mut client) = pair();
        let writer = {
            let mut client = client.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut head = b"GET /metrics HTTP/1.1\r\nX-Huge: ".to_vec();
                head.resize(1 << 20, b'a');
                let _ = client.write_all(&head);
            })
        };
        let mut chunk = vec![0; READ_CHUNK];
        let mut most = 0;
        for _ in 0..2000 {
            most = most.max(conn.buffered());
            if conn.step(&mut chunk, &mut echo_status) == Step::Close {
                break;
            }
            most = most.max(conn.buffered());
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(most <= MAX_HEAD, "{most} bytes kept");
        writer.join().unwrap();
        let reply = read_all(&mut client);
        assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    }

    #[test]
    fn a_head_cut_short_by_the_client_is_400_and_nothing_is_closed_silently() {
        let (mut conn, mut client) = pair();
        client.write_all(b"GET /metr").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(run(&mut conn, 100), Step::Close);
        let reply = read_all(&mut client);
        assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
        assert!(reply.ends_with("the head is cut short"), "{reply}");

        let (mut conn, client) = pair();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(run(&mut conn, 100), Step::Close);
    }

    #[test]
    fn expiring_a_reading_connection_says_408() {
        let (mut conn, mut client) = pair();
        client.write_all(b"GET /").unwrap();
        assert_eq!(run(&mut conn, 2), Step::Idle);
        conn.expire();
        drop(conn);
        let reply = read_all(&mut client);
        assert!(
            reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{reply}"
        );
    }
}
