//! Framing for the simulated nodes: patient reads and writes on blocking sockets that give up
//! when the network stops or the peer stays idle too long, and the v1 transport (24-byte
//! headers) behind the [`Wire`] a node's conversation is written against.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bitcoin::consensus::encode;
use bitcoin::p2p::Magic;
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};

use super::transport::{Sniff, Tally, V1_PREFIX_LEN};

/// Length of a P2P message header: magic, command, payload length, checksum.
pub(crate) const HEADER_LEN: usize = 24;

/// Largest payload a simulated node accepts from its client (the client only sends small
/// messages; anything bigger means the stream is out of sync).
const MAX_PAYLOAD: usize = 1_000_000;

/// How long one blocking socket call may wait before the stop flag is checked again.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long [`Conn::peek_prefix`] sleeps while fewer than 16 bytes have arrived.
const PEEK_NAP: Duration = Duration::from_millis(2);

/// One message as received: the magic it came with, its command name and its raw payload.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub magic: Magic,
    pub command: String,
    pub payload: Vec<u8>,
}

/// One side of a conversation in P2P messages, whatever the transport under it.
pub(crate) trait Wire {
    /// Reads the next message. Returns `Ok(None)` when the conversation is over: EOF, stop,
    /// idle timeout, or a stream that cannot be read any further.
    fn read_message(&mut self) -> io::Result<Option<Incoming>>;

    /// Sends one message.
    fn send(&mut self, msg: NetworkMessage) -> io::Result<()>;

    /// Sleeps for `delay`; returns `false` if the network stopped meanwhile.
    fn pause(&self, delay: Duration) -> bool;
}

/// The v1 transport: every message behind a 24-byte header with `magic`.
#[derive(Debug)]
pub(crate) struct V1<'a> {
    pub conn: Conn<'a>,
    pub magic: Magic,
}

impl Wire for V1<'_> {
    fn read_message(&mut self) -> io::Result<Option<Incoming>> {
        self.conn.read_message()
    }

    fn send(&mut self, msg: NetworkMessage) -> io::Result<()> {
        self.conn.send(self.magic, msg)
    }

    fn pause(&self, delay: Duration) -> bool {
        self.conn.pause(delay)
    }
}

/// A blocking stream plus what ends it: the network's stop flag and an idle limit; and,
/// for a node's connection, what counts its first bytes.
#[derive(Debug)]
pub(crate) struct Conn<'a> {
    pub stream: TcpStream,
    stop: &'a AtomicBool,
    idle: Duration,
    sniff: Option<Sniff<'a>>,
}

impl<'a> Conn<'a> {
    pub(crate) fn new(stream: TcpStream, stop: &'a AtomicBool, idle: Duration) -> Self {
        Conn {
            stream,
            stop,
            idle,
            sniff: None,
        }
    }

    /// The same connection, counted in `tally` by its first 16 bytes.
    pub(crate) fn sniffed(self, tally: &'a Tally) -> Self {
        Conn {
            sniff: Some(Sniff::new(tally)),
            ..self
        }
    }
}

impl Conn<'_> {
    /// Sets the short socket timeouts that let every call notice `stop`.
    pub(crate) fn setup(&self) -> io::Result<()> {
        self.stream.set_nonblocking(false)?;
        self.stream.set_nodelay(true)?;
        self.stream.set_read_timeout(Some(POLL_INTERVAL))?;
        self.stream.set_write_timeout(Some(POLL_INTERVAL))
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Reads what has arrived, waiting for at least a byte. Returns `Ok(0)` on EOF; fails
    /// with `TimedOut` on stop or when nothing arrived for the idle limit.
    pub(crate) fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        let start = Instant::now();
        loop {
            if self.stopped() || start.elapsed() > self.idle {
                return Err(ErrorKind::TimedOut.into());
            }
            match (&self.stream).read(buf) {
                Ok(n) => {
                    self.got(&buf[..n]);
                    return Ok(n);
                }
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes some of `bytes`, waiting while the client is slow to read. Fails with
    /// `TimedOut` on stop or when nothing could be written for the idle limit.
    fn write_some(&self, bytes: &[u8]) -> io::Result<usize> {
        let start = Instant::now();
        loop {
            if self.stopped() || start.elapsed() > self.idle {
                return Err(ErrorKind::TimedOut.into());
            }
            match (&self.stream).write(bytes) {
                Ok(0) if !bytes.is_empty() => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => return Ok(n),
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Tells the sniffer (if any) about bytes just read.
    fn got(&self, bytes: &[u8]) {
        if let Some(sniff) = &self.sniff {
            sniff.feed(bytes);
        }
    }

    /// Waits until the client's first 16 bytes have arrived and returns them, leaving them
    /// to be read. Returns `Ok(None)` on EOF, stop or idle timeout before that.
    pub(crate) fn peek_prefix(&self) -> io::Result<Option<[u8; V1_PREFIX_LEN]>> {
        let mut first = [0u8; V1_PREFIX_LEN];
        let start = Instant::now();
        while !self.stopped() && start.elapsed() <= self.idle {
            match self.stream.peek(&mut first) {
                Ok(0) => return Ok(None),
                Ok(V1_PREFIX_LEN) => return Ok(Some(first)),
                Ok(_) => std::thread::sleep(PEEK_NAP),
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Fills `buf` completely. Returns `Ok(false)` on EOF, stop or idle timeout.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let mut done = 0;
        while done < buf.len() {
            match self.read_some(&mut buf[done..]) {
                Ok(0) => return Ok(false),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::TimedOut => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
    /// Fills `buf` completely. Returns `Ok(false)` on EOF, stop or idle timeout.
    pub(crate) fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.fill(buf)
    }

    /// Reads one message. Returns `Ok(None)` on EOF, stop, idle timeout or an oversized
    /// header (the stream is then useless).
    pub(crate) fn read_message(&mut self) -> io::Result<Option<Incoming>> {
        let mut header = [0u8; HEADER_LEN];
        if !self.fill(&mut header)? {
            return Ok(None);
        }
        let magic = Magic::from_bytes([header[0], header[1], header[2], header[3]]);
        let command: String = header[4..16]
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| char::from(b))
            .collect();
        let len = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_PAYLOAD {
            return Ok(None);
        }
        let mut payload = vec![0u8; len];
        if !self.fill(&mut payload)? {
            return Ok(None);
        }
        Ok(Some(Incoming {
            magic,
            command,
            payload,
        }))
    }

    /// Writes all of `bytes`, waiting while the client is slow to read. Fails with
    /// `TimedOut` on stop or when nothing could be written for the idle limit.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < bytes.len() {
            done += self.write_some(&bytes[done..])?;
        }
        Ok(())
    }

    /// Encodes and sends one message with the given magic.
    pub(crate) fn send(&mut self, magic: Magic, msg: NetworkMessage) -> io::Result<()> {
        self.write_all(&encode_message(magic, msg))
    }

    /// Sleeps for `delay` in short steps; returns `false` if the network stopped meanwhile.
    pub(crate) fn pause(&self, delay: Duration) -> bool {
        let end = Instant::now() + delay;
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(POLL_INTERVAL));
        }
    }

    /// Reads and discards everything until EOF, stop or the idle limit.
    pub(crate) fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        let start = Instant::now();
        while !self.stopped() && start.elapsed() < self.idle {
            match (&self.stream).read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.got(&buf[..n]),
                Err(e) if is_retry(&e) => {}
                Err(_) => return,
            }
        }
    }
}

/// The connection as a reader for the BIP324 handshake and packets: [`Conn::read_some`].
impl Read for &Conn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_some(buf)
    }
}

/// The connection as a writer for the BIP324 handshake and packets: patient writes.
impl Write for &Conn<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_some(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serialises a message with its 24-byte header.
pub(crate) fn encode_message(magic: Magic, msg: NetworkMessage) -> Vec<u8> {
    encode::serialize(&RawNetworkMessage::new(magic, msg))
}

/// Whether a socket call failed only because its timeout passed (or a signal came).
pub(crate) fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}
