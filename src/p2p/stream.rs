//! Buffered reads and writes on a [`Conn`], every system call bounded by a deadline: what
//! both framings (v1's headers, v2's encrypted packets) read and write through.
//!
//! Reads go through a buffer: a peer sends its `version`, `wtxidrelay`, `sendaddrv2` and
//! `verack` (or the five messages after the handshake) back to back, and one `recv` takes
//! them all, where reading each header and payload on its own cost two system calls per
//! message plus two `setsockopt`s each. Each system call is still bounded by the time left
//! until the deadline: the read timeout is set before every `recv`, the write timeout before
//! every write. Nothing here decides how much to read: the framings check a length before
//! they ask for that many bytes.

use std::io;
use std::time::{Duration, Instant};

use super::{Conn, ProbeError};

/// Bytes read from the socket at most per system call (more only for a large payload, which
/// is read straight into its own buffer).
pub(crate) const READ_BUFFER: usize = 8192;

/// A stream with a read buffer and a deadline.
pub(super) struct Deadlined<'a, C> {
    conn: &'a mut C,
    pub(super) deadline: Instant,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

/// Where [`Deadlined::recv`] puts what it reads.
enum ReadInto<'b> {
    /// The read buffer (which must be empty).
    Buffer,
    /// Straight into the caller's slice.
    Slice(&'b mut [u8]),
}

impl<'a, C: Conn> Deadlined<'a, C> {
    pub(super) fn new(conn: &'a mut C, deadline: Instant) -> Deadlined<'a, C> {
        Deadlined {
            conn,
            deadline,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
        }
    }

    fn remaining(&self) -> Result<Duration, ProbeError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(ProbeError::Timeout)
        } else {
            Ok(left)
        }
    }

    /// Writes `bytes` in one call, bounded by the deadline.
    pub(super) fn write_all(&mut self, bytes: &[u8]) -> Result<(), ProbeError> {
        self.conn
            .set_write_timeout_only(self.remaining()?)
            .map_err(ProbeError::Io)?;
        self.conn.write_all(bytes).map_err(ProbeError::from_io)
    }

    /// One `recv` of at most `into.len()` bytes, bounded by the deadline.
    fn recv(&mut self, mut into: ReadInto<'_>) -> Result<usize, ProbeError> {
        loop {
            self.conn
                .set_read_timeout_only(self.remaining()?)
                .map_err(ProbeError::Io)?;
            let read = match into {
                ReadInto::Buffer => self.conn.read(&mut self.buf),
                ReadInto::Slice(ref mut out) => self.conn.read(out),
            };
            match read {
                Ok(0) => return Err(ProbeError::Closed),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ProbeError::from_io(e)),
            }
        }
    }

    /// Fills the buffer if it is empty.
    fn refill(&mut self) -> Result<(), ProbeError> {
        if self.start == self.end {
            self.end = self.recv(ReadInto::Buffer)?;
            self.start = 0;
        }
        Ok(())
    }

    pub(super) fn read_exact(&mut self, out: &mut [u8]) -> Result<(), ProbeError> {
        let mut filled = 0;
        while filled < out.len() {
            let wanted = out.len() - filled;
            if self.start == self.end && wanted >= self.buf.len() {
                // A large payload: no point copying it through the buffer.
                filled += self.recv(ReadInto::Slice(&mut out[filled..]))?;
                continue;
            }
            self.refill()?;
            let n = wanted.min(self.end - self.start);
            out[filled..filled + n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.start += n;
            filled += n;
        }
        Ok(())
    }

    /// Reads and drops `len` bytes through a fixed buffer.
    pub(super) fn skip(&mut self, mut len: usize) -> Result<(), ProbeError> {
        let mut scratch = [0u8; 4096];
        while len > 0 {
            let n = len.min(scratch.len());
            self.read_exact(&mut scratch[..n])?;
            len -= n;
        }
        Ok(())
    }

    /// Appends to `out` what the buffer holds, at most `max` bytes (after one `recv` if it
    /// holds nothing). Returns how many bytes were appended.
    pub(super) fn take_into(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize, ProbeError> {
        self.refill()?;
        let n = max.min(self.end - self.start);
        out.extend_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }

    /// Puts back the last `n` bytes the last [`Deadlined::take_into`] took (never more), so
    /// the next reads see them again.
    pub(super) fn give_back(&mut self, n: usize) {
        self.start = self.start.saturating_sub(n);
    }
}
