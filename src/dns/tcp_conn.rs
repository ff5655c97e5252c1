//! One DNS-over-TCP connection of the event loop, and the step the loop runs when its
//! socket is ready: write the answers still waiting, then read length-framed requests
//! (RFC 7766), answer them in order through the pure responder, and write the answers,
//! all without blocking.
//!
//! It exists apart from the loop so that a connection's rules read in one place, and its
//! memory stays small: an idle connection holds no buffer at all. Requests are read into
//! the loop's [`Workspace`] and answered from there; only a partial request is kept (its
//! frame is at most [`MAX_REQUEST`] bytes, the bound a UDP request has: a longer one
//! closes the connection), and only answers the socket did not take. While answers wait,
//! nothing more is read or answered (TCP's own flow control then holds the client back),
//! so a connection never queues more than [`FLUSH_AT`] bytes plus one answer; a client
//! that takes none of them for [`WRITE_TIMEOUT`] is closed by the loop.
//!
//! A connection from an `--axfr-allow` source may also ask for the zone: its answer is
//! then the whole transfer (a few kilobytes per served name), and its client has
//! [`TRANSFER_WRITE_TIMEOUT`] to take each part, as a secondary across the world may
//! need a few round trips to open its window.

use std::io::{self, Read, Write};
use std::mem;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::respond::{Outcome, Transport, respond_into};
use super::server::Shared;
use super::transfer::respond_transfer;
use super::udp::DATAGRAM;

/// Longest request accepted over TCP, as over UDP; a longer frame closes the connection.
pub(super) const MAX_REQUEST: usize = DATAGRAM;
/// Bytes taken from a socket per read.
pub(super) const READ_CHUNK: usize = 4096;
/// Reads per step: a client that keeps sending is served again at the next turn, after
/// the others.
const READ_BUDGET: usize = 8;
/// Answers are written out once this many bytes of them are framed.
pub(super) const FLUSH_AT: usize = 8192;
/// A client must take waiting answers within this time, or it is disconnected.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_millis(200);
/// The same for a connection from an `--axfr-allow` source.
pub(super) const TRANSFER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the loop does with a connection after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing more until its socket is ready again.
    Idle,
    /// Answers wait for the socket; see [`Connection::waiting_since`].
    Blocked,
    /// It used its read budget: step it again at the next turn.
    Again,
    /// Close it: the client closed, failed, sent a request that deserves silence (after
    /// the answers before it went out) or one longer than [`MAX_REQUEST`].
    Close,
}

/// Where a connection stands after answering what it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Ready,
    Blocked,
    Close,
}

/// Why answering stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// No complete request left.
    Partial,
    /// [`FLUSH_AT`] bytes of answers framed: write them before answering more.
    Full,
    /// A request deserved silence or was too long: close after what is framed.
    Silence,
}

/// The loop's buffers and state shared by every connection's steps.
pub(super) struct Workspace<'s> {
    shared: &'s Shared,
    rng: SmallRng,
    /// One response.
    response: Vec<u8>,
    /// The responses of one round, each behind its length, for one write.
    framed: Vec<u8>,
    /// Whether the last step answered a request (the loop then marks it active).
    pub(super) answered: bool,
}

impl<'s> Workspace<'s> {
    pub(super) fn new(shared: &'s Shared) -> Self {
        Self {
            shared,
            rng: SmallRng::from_rng(&mut rand::rng()),
            response: Vec::with_capacity(1024),
            framed: Vec::with_capacity(FLUSH_AT + 1024),
            answered: false,
        }
    }
}

/// One client connection.
pub(super) struct Connection {
    stream: TcpStream,
    /// Bytes received and not yet answered: a partial request, or requests held back
    /// while answers wait. Empty (and unallocated) when idle.
    input: Vec<u8>,
    /// Framed answers the socket has not taken yet. Empty (and unallocated) when idle.
    output: Vec<u8>,
    /// When `output` was last written to the socket, or became non-empty.
    waiting_since: Option<Instant>,
    /// Nothing more is read: close once `output` is written.
    closing: bool,
    /// From an `--axfr-allow` source: zone transfers are answered.
    may_transfer: bool,
}

impl Connection {
    pub(super) fn new(stream: TcpStream, may_transfer: bool) -> Self {
        Self {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            waiting_since: None,
            closing: false,
            may_transfer,
        }
    }

    /// The socket, to register it with the loop.
    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// When the client must have taken some of the answers waiting; `None` when none wait.
    pub(super) fn write_deadline(&self) -> Option<Instant> {
        let timeout = if self.may_transfer {
            TRANSFER_WRITE_TIMEOUT
        } else {
            WRITE_TIMEOUT
        };
        self.waiting_since.map(|since| since + timeout)
    }

    /// Writes what waits, answers the requests held back, then reads and answers until
    /// the socket has nothing more, answers wait, or the read budget is used; `chunk`
    /// (at least [`READ_CHUNK`] bytes) is the loop's read buffer.
    pub(super) fn step(&mut self, ws: &mut Workspace<'_>, chunk: &mut [u8]) -> Step {
        match self.flush() {
            Err(_) => return Step::Close,
            Ok(false) => return Step::Blocked,
            Ok(true) if self.closing => return Step::Close,
            Ok(true) => {}
        }
        if !self.input.is_empty() {
            match self.answer_input(ws) {
                Ok(Flow::Ready) => {}
                Ok(Flow::Blocked) => return Step::Blocked,
                Ok(Flow::Close) | Err(_) => return Step::Close,
            }
        }
        self.read_and_answer(ws, chunk)
    }

    /// Reads up to [`READ_BUDGET`] chunks, answering each.
    fn read_and_answer(&mut self, ws: &mut Workspace<'_>, chunk: &mut [u8]) -> Step {
        for _ in 0..READ_BUDGET {
            let n = match self.stream.read(chunk) {
                Ok(0) => return Step::Close,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Step::Close,
            };
            let flow = if self.input.is_empty() {
                self.answer_chunk(&chunk[..n], ws)
            } else {
                self.input.extend_from_slice(&chunk[..n]);
                self.answer_input(ws)
            };
            match flow {
                Ok(Flow::Ready) => {}
                Ok(Flow::Blocked) => return Step::Blocked,
                Ok(Flow::Close) | Err(_) => return Step::Close,
            }
        }
        Step::Again
    }

    /// Answers the requests in freshly read `data`, keeping what is left of it.
    fn answer_chunk(&mut self, data: &[u8], ws: &mut Workspace<'_>) -> io::Result<Flow> {
        let (consumed, flow) = self.answer_and_send(data, ws)?;
        if flow != Flow::Close {
            self.input.extend_from_slice(&data[consumed..]);
        }
        Ok(flow)
    }

    /// Answers the requests in `input`, keeping what is left of it.
    fn answer_input(&mut self, ws: &mut Workspace<'_>) -> io::Result<Flow> {
        let mut input = mem::take(&mut self.input);
        let (consumed, flow) = self.answer_and_send(&input, ws)?;
        input.drain(..consumed);
        if !input.is_empty() {
            self.input = input;
        }
        Ok(flow)
    }

    /// Answers the complete requests at the start of `data` in order and writes the
    /// answers, [`FLUSH_AT`] bytes at a time, stopping when the socket takes no more;
    /// returns the bytes of `data` used.
    fn answer_and_send(
        &mut self,
        data: &[u8],
        ws: &mut Workspace<'_>,
    ) -> io::Result<(usize, Flow)> {
        let mut consumed = 0;
        loop {
            ws.framed.clear();
            let (used, stop) = answer_frames(&data[consumed..], ws, self.may_transfer);
            consumed += used;
            self.send(&ws.framed)?;
            self.closing |= stop == Stop::Silence;
            if stop != Stop::Full || !self.output.is_empty() {
                return Ok((consumed, self.flow()));
            }
        }
    }

    fn flow(&self) -> Flow {
        if !self.output.is_empty() {
            Flow::Blocked
        } else if self.closing {
            Flow::Close
        } else {
            Flow::Ready
        }
    }

    /// Writes `bytes` after what already waits; what the socket does not take waits.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let written = if self.output.is_empty() {
            write_some(&mut self.stream, bytes)?
        } else {
            0
        };
        if written < bytes.len() {
            if self.output.is_empty() {
                self.waiting_since = Some(Instant::now());
            }
            self.output.extend_from_slice(&bytes[written..]);
        }
        Ok(())
    }

    /// Writes what waits; returns whether nothing waits any more.
    fn flush(&mut self) -> io::Result<bool> {
        if self.output.is_empty() {
            return Ok(true);
        }
        let written = write_some(&mut self.stream, &self.output)?;
        if written == self.output.len() {
            self.output = Vec::new();
            self.waiting_since = None;
            return Ok(true);
        }
        if written > 0 {
            self.output.drain(..written);
            self.waiting_since = Some(Instant::now());
        }
        Ok(false)
    }
}

/// Writes as much of `bytes` as the socket takes now; returns how much that was.
fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Answers the complete requests at the start of `data` in order, framing the responses
/// into `ws.framed` until it holds [`FLUSH_AT`] bytes; returns the bytes used and why
/// it stopped.
fn answer_frames(data: &[u8], ws: &mut Workspace<'_>, may_transfer: bool) -> (usize, Stop) {
    let mut consumed = 0;
    while ws.framed.len() < FLUSH_AT {
        let request = match next_frame(&data[consumed..]) {
            Frame::Whole(request) => request,
            Frame::Partial => return (consumed, Stop::Partial),
            Frame::TooLong => {
                ws.shared.counters.record_tcp(Outcome::Dropped);
                return (consumed, Stop::Silence);
            }
        };
        consumed += 2 + request.len();
        if may_transfer && transfer(request, ws) {
            continue;
        }
        if !answer(request, ws) {
            return (consumed, Stop::Silence);
        }
    }
    (consumed, Stop::Full)
}

/// Appends the framed response to `request` to `ws.framed`; returns `false` when the
/// request deserves silence instead.
fn answer(request: &[u8], ws: &mut Workspace<'_>) -> bool {
    let shared = ws.shared;
    let answers = |mask| shared.cache.get(mask);
    let out = &mut ws.response;
    let outcome = respond_into(
        request,
        Transport::Tcp,
        &shared.ctx,
        &answers,
        &mut ws.rng,
        out,
    );
    shared.counters.record_tcp(outcome);
    if out.is_empty() {
        return false;
    }
    ws.framed
        .extend_from_slice(&(out.len() as u16).to_be_bytes());
    ws.framed.extend_from_slice(out);
    ws.answered = true;
    true
}

/// Appends the framed transfer of the zone to `ws.framed` when `request` asks for it;
/// returns whether it did.
fn transfer(request: &[u8], ws: &mut Workspace<'_>) -> bool {
    let shared = ws.shared;
    let Some(zone) = &shared.zone else {
        return false;
    };
    if !respond_transfer(request, &shared.ctx, &zone.get(), &mut ws.framed) {
        return false;
    }
    shared.counters.record_tcp(Outcome::Transferred);
    ws.answered = true;
    true
}

/// The first length-framed message at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
enum Frame<'b> {
    /// It is all there.
    Whole(&'b [u8]),
    /// More bytes are needed.
    Partial,
    /// Its length is over [`MAX_REQUEST`].
    TooLong,
}

/// Returns the first length-framed message at the start of `buf`.
fn next_frame(buf: &[u8]) -> Frame<'_> {
    let [high, low, ..] = *buf else {
        return Frame::Partial;
    };
    let len = usize::from(u16::from_be_bytes([high, low]));
    if len > MAX_REQUEST {
        return Frame::TooLong;
    }
    buf.get(2..2 + len).map_or(Frame::Partial, Frame::Whole)
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_by_their_length_prefix() {
        assert_eq!(next_frame(&[]), Frame::Partial);
        assert_eq!(next_frame(&[0]), Frame::Partial);
        assert_eq!(next_frame(&[0, 3, 1, 2]), Frame::Partial);
        assert_eq!(next_frame(&[0, 3, 1, 2, 3, 9]), Frame::Whole(&[1, 2, 3]));
        assert_eq!(next_frame(&[0, 0]), Frame::Whole(&[]));
        assert_eq!(next_frame(&[0x10, 0x00]), Frame::Partial);
        assert_eq!(next_frame(&[0x10, 0x01]), Frame::TooLong);
        assert_eq!(next_frame(&[0xff, 0xff, 1]), Frame::TooLong);
    }
}
