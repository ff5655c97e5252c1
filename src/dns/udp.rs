//! Batched UDP input and output for the serving threads.
//!
//! On Linux a [`Batch`] receives up to [`BATCH`] datagrams with one `recvmmsg` (blocking
//! for the first only: `MSG_WAITFORONE`) and sends their responses with one `sendmmsg`,
//! so that under load the system calls, most of a UDP server's cost, are shared by many
//! queries. A lone query is received and answered as soon as it arrives: a batch never
//! waits to fill. Elsewhere a batch is one `recv_from` and a `send_to` per response.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Most datagrams taken by one receive call.
pub(crate) const BATCH: usize = 32;
/// Receive buffer per datagram: larger queries are cut, then refused as malformed.
pub(crate) const DATAGRAM: usize = 4096;

/// Buffers for up to [`BATCH`] requests and their responses.
pub(crate) struct Batch {
    requests: Box<[[u8; DATAGRAM]; BATCH]>,
    /// Per received request: its buffer's index, its length and its source.
    received: Vec<(usize, usize, SocketAddr)>,
    responses: Vec<Vec<u8>>,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    mmsg: mmsg::Headers,
}

impl Batch {
    /// Allocates the buffers; a response buffer starts with `response_capacity` bytes.
    pub(crate) fn new(response_capacity: usize) -> Self {
        Self {
            requests: Box::new([[0; DATAGRAM]; BATCH]),
            received: Vec::with_capacity(BATCH),
            responses: (0..BATCH)
                .map(|_| Vec::with_capacity(response_capacity))
                .collect(),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            mmsg: mmsg::Headers::new(),
        }
    }

    /// Waits for at least one datagram (up to the socket's read timeout) and takes all
    /// that are queued, up to [`BATCH`]; returns how many.
    ///
    /// # Errors
    ///
    /// The socket's error: `WouldBlock` or `TimedOut` when the timeout passed.
    pub(crate) fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.received.clear();
        #[cfg(any(target_os = "linux", target_os = "android"))]
        self.mmsg
            .receive(socket, &mut self.requests, &mut self.received)?;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let (len, peer) = socket.recv_from(&mut self.requests[0])?;
            self.received.push((0, len, peer));
        }
        Ok(self.received.len())
    }

    /// Returns the `i`th received request and its source, with the buffer for its
    /// response (cleared: leave it empty to send nothing).
    pub(crate) fn request(&mut self, i: usize) -> (&[u8], SocketAddr, &mut Vec<u8>) {
        let (slot, len, peer) = self.received[i];
        let response = &mut self.responses[i];
        response.clear();
        (&self.requests[slot][..len], peer, response)
    }

    /// Sends every non-empty response of the received requests to its source. A response
    /// the system refuses is logged at debug level and skipped.
    pub(crate) fn send(&mut self, socket: &UdpSocket) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        self.mmsg.send(socket, &self.responses, &self.received);
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        for (response, &(_, _, peer)) in self.responses.iter().zip(&self.received) {
            if !response.is_empty() {
                if let Err(e) = socket.send_to(response, peer) {
                    log::debug!("DNS UDP send to {peer}: {e}");
                }
            }
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod mmsg {
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

    use super::{BATCH, DATAGRAM};

    /// The preallocated message headers of `recvmmsg` and `sendmmsg`.
    pub(super) struct Headers {
        receive: MultiHeaders<SockaddrStorage>,
        send: MultiHeaders<SockaddrStorage>,
        destinations: Vec<Option<SockaddrStorage>>,
        outgoing: Vec<usize>,
    }

    impl Headers {
        pub(super) fn new() -> Self {
            Self {
                receive: MultiHeaders::preallocate(BATCH, None),
                send: MultiHeaders::preallocate(BATCH, None),
                destinations: Vec::with_capacity(BATCH),
                outgoing: Vec::with_capacity(BATCH),
            }
        }

        pub(super) fn receive(
            &mut self,
            socket: &UdpSocket,
            requests: &mut [[u8; DATAGRAM]; BATCH],
            received: &mut Vec<(usize, usize, SocketAddr)>,
        ) -> io::Result<()> {
            let mut slices = requests.each_mut().map(|b| [IoSliceMut::new(b)]);
            let messages = recvmmsg(
                socket.as_raw_fd(),
                &mut self.receive,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            )
            .map_err(io::Error::from)?;
            for (slot, message) in messages.enumerate() {
                // A datagram without a usable source address cannot be answered.
                let peer = message.address.as_ref().and_then(std_addr);
                if let Some(peer) = peer {
                    received.push((slot, message.bytes.min(DATAGRAM), peer));
                }
            }
            Ok(())
        }

        /// Sends every non-empty response to the source of its request, in as few
        /// `sendmmsg` calls as the system allows; a message the system refuses is logged
        /// and skipped.
        pub(super) fn send(
            &mut self,
            socket: &UdpSocket,
            responses: &[Vec<u8>],
            received: &[(usize, usize, SocketAddr)],
        ) {
            self.queue(responses, received);
            let mut start = 0;
            while start < self.outgoing.len() {
                match self.send_from(socket, responses, start) {
                    Ok(0) => break,
                    Ok(n) => start += n,
                    Err(e) => {
                        // The first message of the rest failed: skip it, send the others.
                        let peer = received[self.outgoing[start]].2;
                        log::debug!("DNS UDP send to {peer}: {}", io::Error::from(e));
                        start += 1;
                    }
                }
            }
        }

        /// Notes which received requests have a response, and where each goes.
        #[inline]
        fn queue(&mut self, responses: &[Vec<u8>], received: &[(usize, usize, SocketAddr)]) {
            self.outgoing.clear();
            self.destinations.clear();
            for (i, &(_, _, peer)) in received.iter().enumerate() {
                if !responses[i].is_empty() {
                    self.outgoing.push(i);
                    self.destinations.push(Some(SockaddrStorage::from(peer)));
                }
            }
        }

        /// One `sendmmsg` of the queued responses from the `start`th on; returns how
        /// many the system took.
        #[inline]
        fn send_from(
            &mut self,
            socket: &UdpSocket,
            responses: &[Vec<u8>],
            start: usize,
        ) -> nix::Result<usize> {
            let slices: Vec<[IoSlice<'_>; 1]> = self.outgoing[start..]
                .iter()
                .map(|&i| [IoSlice::new(&responses[i])])
                .collect();
            sendmmsg(
                socket.as_raw_fd(),
                &mut self.send,
                &slices,
                &self.destinations[start..],
                [],
                MsgFlags::empty(),
            )
            .map(Iterator::count)
        }
    }

    fn std_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = addr.as_sockaddr_in() {
            return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
        }
        addr.as_sockaddr_in6()
            .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
    }
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn bound(addr: &str) -> UdpSocket {
        let socket = UdpSocket::bind(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
    }

    /// Datagrams from several sources, more than a batch holds, each answered to its own
    /// source; an empty response sends nothing.
    #[test]
    fn batches_answer_each_datagram_to_its_source() {
        let server = bound("127.0.0.1:0");
        let clients: Vec<UdpSocket> = ["127.0.0.1:0", "127.0.0.2:0", "127.0.0.3:0"]
            .iter()
            .map(|a| bound(a))
            .collect();
        let target = server.local_addr().unwrap();
        let total = BATCH + 13;
        for n in 0..total {
            let message = format!("query {n}");
            clients[n % clients.len()]
                .send_to(message.as_bytes(), target)
                .unwrap();
        }
        let mut batch = Batch::new(64);
        let mut seen = 0;
        let mut calls = 0;
        while seen < total {
            let received = batch.receive(&server).unwrap();
            assert!((1..=BATCH).contains(&received));
            calls += 1;
            for i in 0..received {
                let (request, peer, out) = batch.request(i);
                let text = std::str::from_utf8(request).unwrap().to_owned();
                let n: usize = text["query ".len()..].parse().unwrap();
                let client = clients[n % clients.len()].local_addr().unwrap();
                assert_eq!(peer, client, "{text}");
                // Every third query gets no response.
                if n % 3 != 2 {
                    out.extend_from_slice(format!("answer {n}").as_bytes());
                }
            }
            seen += received;
            batch.send(&server);
        }
        assert_eq!(seen, total);
        if cfg!(any(target_os = "linux", target_os = "android")) {
            assert!(
                calls < total,
                "{calls} receive calls for {total} queued datagrams"
            );
        }
        for (c, client) in clients.iter().enumerate() {
            let mut expected: Vec<String> = (0..total)
                .filter(|n| n % clients.len() == c && n % 3 != 2)
                .map(|n| format!("answer {n}"))
                .collect();
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            for _ in 0..expected.len() {
                let (len, from) = client.recv_from(&mut buf).unwrap();
                assert_eq!(from, target);
                got.push(String::from_utf8(buf[..len].to_vec()).unwrap());
            }
            got.sort();
            expected.sort();
            assert_eq!(got, expected);
            client.set_nonblocking(true).unwrap();
            assert!(client.recv_from(&mut buf).is_err(), "an extra datagram");
        }
    }

    #[test]
    fn ipv6_sources_are_answered() {
        let server = bound("[::1]:0");
        let client = bound("[::1]:0");
        let target = server.local_addr().unwrap();
        for n in 0..3u8 {
            client.send_to(&[n], target).unwrap();
        }
        let mut batch = Batch::new(16);
        let mut seen = 0;
        while seen < 3 {
            let received = batch.receive(&server).unwrap();
            for i in 0..received {
                let (request, peer, out) = batch.request(i);
                assert_eq!(peer, client.local_addr().unwrap());
                out.extend_from_slice(&[request[0], 0xff]);
            }
            seen += received;
            batch.send(&server);
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 8];
        for _ in 0..3 {
            let (len, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!((len, from), (2, target));
            got.push(buf[0]);
        }
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
    }

    #[test]
    fn oversized_datagrams_are_cut_to_the_buffer() {
        let server = bound("127.0.0.1:0");
        let client = bound("127.0.0.1:0");
        client
            .send_to(&[7u8; DATAGRAM + 100], server.local_addr().unwrap())
            .unwrap();
        let mut batch = Batch::new(16);
        assert_eq!(batch.receive(&server).unwrap(), 1);
        let (request, peer, _) = batch.request(0);
        assert_eq!(request.len(), DATAGRAM);
        assert_eq!(peer, client.local_addr().unwrap());
    }
}
