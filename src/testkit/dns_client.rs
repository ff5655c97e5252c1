//! A DNS client over real sockets, shared by the DNS server's socket tests
//! (`src/dns/tests/sockets.rs`) and the integration tests that query the real binary:
//! queries built and answers decoded with hickory-proto, every read bounded by [`TIMEOUT`].

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use socket2::{Domain, Protocol, Socket, Type};

/// How long a client waits for an answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// A query with ID `id` for `name` (absolute, e.g. `seed.example.com.`), with an OPT
/// record advertising `edns` bytes if given.
pub fn query(id: u16, name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(
        Name::from_ascii(name).expect("a valid name"),
        rtype,
    ));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().expect("the query encodes")
}

/// A UDP socket bound to `bind` (e.g. `127.0.0.1:0`) whose reads time out after
/// [`TIMEOUT`].
pub fn client(bind: &str) -> UdpSocket {
    let socket = UdpSocket::bind(bind).expect("the client socket binds");
    socket
        .set_read_timeout(Some(TIMEOUT))
        .expect("the read timeout is set");
    socket
}

/// Sends `packet` from `socket` and returns the decoded response, if one comes before
/// the socket's read timeout. The response must come from `server` and parse.
pub fn exchange(socket: &UdpSocket, server: SocketAddr, packet: &[u8]) -> Option<Message> {
    socket.send_to(packet, server).expect("the query is sent");
    let mut buf = [0u8; 2048];
    match socket.recv_from(&mut buf) {
        Ok((n, from)) => {
            assert_eq!(from, server);
            Some(Message::from_vec(&buf[..n]).expect("the response parses"))
        }
        Err(_) => None,
    }
}

/// A TCP connection to `server` whose reads time out after [`TIMEOUT`].
pub fn tcp_connect(server: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&server, TIMEOUT).expect("the server accepts");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("the read timeout is set");
    stream
}

/// A TCP connection to `server` from the address `source` (any port), such as one of
/// 127.0.0.0/8 to appear as another client; its reads time out after [`TIMEOUT`].
///
/// # Errors
/// When the socket cannot be bound to `source` or the server does not accept in time.
pub fn tcp_connect_from(source: IpAddr, server: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&server.into(), TIMEOUT)?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// Reads one length-prefixed response from `stream` and decodes it.
pub fn tcp_read(stream: &mut TcpStream) -> Message {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).expect("a length prefix");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).expect("a whole response");
    Message::from_vec(&buf).expect("the response parses")
}

/// `packet` with its two-byte length prefix, as DNS over TCP sends it.
pub fn framed(packet: &[u8]) -> Vec<u8> {
    let len = u16::try_from(packet.len()).expect("a DNS message fits 64 KiB");
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(packet);
    v
}

/// Sends `packet` over a new TCP connection and returns the decoded response.
pub fn tcp(server: SocketAddr, packet: &[u8]) -> Message {
    let mut stream = tcp_connect(server);
    stream
        .write_all(&framed(packet))
        .expect("the query is sent");
    tcp_read(&mut stream)
}

/// The addresses of the A and AAAA records among the answers.
pub fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// Whether the authority section is one SOA record (NODATA and NXDOMAIN answers).
pub fn has_soa_authority(m: &Message) -> bool {
    m.authorities.len() == 1 && matches!(m.authorities[0].data, RData::SOA(_))
}
