//! One session of an emulated proxy: the SOCKS5 exchange (RFC 1928, no authentication
//! only), the circuit to the node's hidden listener, and the relay of bytes both ways until
//! either side closes.

use std::io::{self, ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use super::Network;
use super::proxy::{ProxyShared, SESSION_STACK, Slot, Target};
use super::wire::{Conn, POLL_INTERVAL, is_retry};

/// SOCKS protocol version.
const VERSION: u8 = 5;
/// The only method offered: no authentication.
const NO_AUTH: u8 = 0;
/// The answer when the client offers no acceptable method.
const NO_METHOD: u8 = 0xFF;
/// The only command served.
const CONNECT: u8 = 1;
/// Reply codes of RFC 1928.
const SUCCEEDED: u8 = 0x00;
const NOT_ALLOWED: u8 = 0x02;
const HOST_UNREACHABLE: u8 = 0x04;
const CONNECTION_REFUSED: u8 = 0x05;
const COMMAND_NOT_SUPPORTED: u8 = 0x07;
const ATYP_NOT_SUPPORTED: u8 = 0x08;
/// Tor's extended errors for onion services: descriptor not found, introduction failed.
const TOR_NO_DESCRIPTOR: u8 = 0xF0;
const TOR_INTRO_FAILED: u8 = 0xF2;
/// How long the proxy waits for a node's listener to accept.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes relayed per read.
const RELAY_CHUNK: usize = 16 * 1024;

/// What a client asked to connect to.
#[derive(Debug)]
enum Request {
    /// A host name (ATYP 3) and port.
    Domain(String, u16),
    /// An IPv4 or IPv6 address (ATYP 1 or 4).
    Ip,
    /// An address type RFC 1928 does not define.
    Unsupported,
}

/// Serves one accepted client until it or the node closes, or the network stops.
pub(crate) fn serve(stream: TcpStream, shared: &Arc<ProxyShared>, slot: &Arc<Slot>) {
    let client = Conn::new(stream, &shared.stop, shared.idle);
    if client.setup().is_err() {
        return;
    }
    // Errors only mean the client went away or misbehaved: the session just ends.
    let _ = session(client, shared, slot);
}

/// Greeting, request, reply; then the relay if the circuit was built.
fn session(mut client: Conn<'_>, shared: &Arc<ProxyShared>, slot: &Arc<Slot>) -> io::Result<()> {
    if !greet(&mut client)? {
        return Ok(());
    }
    let Some((command, request)) = read_request(&mut client)? else {
        return Ok(());
    };
    count(shared, &request);
    let (name, port) = match request {
        _ if command != CONNECT => return fail(&mut client, slot, COMMAND_NOT_SUPPORTED),
        Request::Domain(name, port) => (name, port),
        Request::Ip => return fail(&mut client, slot, NOT_ALLOWED),
        Request::Unsupported => return fail(&mut client, slot, ATYP_NOT_SUPPORTED),
    };
    let Some(target) = shared.targets.get(&name.to_ascii_lowercase()) else {
        return fail(&mut client, slot, unknown_name(shared.network));
    };
    if !client.pause(shared.circuit_delay) {
        return Ok(());
    }
    let Ok(upstream) = dial(shared.source(), target, port) else {
        return fail(&mut client, slot, refused(shared.network));
    };
    reply(&mut client, SUCCEEDED)?;
    relay(client.stream, upstream, shared, slot)
}

/// Ends the session with a failure reply, out of the count of sessions first.
fn fail(client: &mut Conn<'_>, slot: &Slot, code: u8) -> io::Result<()> {
    slot.leave();
    reply(client, code)
}

/// Reads the greeting and answers it. `Ok(false)` if the client is not speaking SOCKS5 or
/// does not offer "no authentication".
fn greet(client: &mut Conn<'_>) -> io::Result<bool> {
    let mut head = [0u8; 2];
    if !client.read_exact(&mut head)? || head[0] != VERSION {
        return Ok(false);
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    if !client.read_exact(&mut methods)? {
        return Ok(false);
    }
    if !methods.contains(&NO_AUTH) {
        client.write_all(&[VERSION, NO_METHOD])?;
        return Ok(false);
    }
    client.write_all(&[VERSION, NO_AUTH])?;
    Ok(true)
}

/// Reads a request: its command and what it names. `None` if the stream is not SOCKS5.
fn read_request(client: &mut Conn<'_>) -> io::Result<Option<(u8, Request)>> {
    let mut head = [0u8; 4];
    if !client.read_exact(&mut head)? || head[0] != VERSION {
        return Ok(None);
    }
    let request = match head[3] {
        1 => skip(client, 4 + 2)?.then_some(Request::Ip),
        4 => skip(client, 16 + 2)?.then_some(Request::Ip),
        3 => read_domain(client)?,
        _ => Some(Request::Unsupported),
    };
    Ok(request.map(|r| (head[1], r)))
}

/// Reads and drops `len` bytes; `Ok(false)` on EOF.
fn skip(client: &mut Conn<'_>, len: usize) -> io::Result<bool> {
    client.read_exact(&mut vec![0u8; len])
}

/// Reads a length-prefixed name and a port.
fn read_domain(client: &mut Conn<'_>) -> io::Result<Option<Request>> {
    let mut len = [0u8; 1];
    if !client.read_exact(&mut len)? {
        return Ok(None);
    }
    let mut rest = vec![0u8; usize::from(len[0]) + 2];
    if !client.read_exact(&mut rest)? {
        return Ok(None);
    }
    let (name, port) = rest.split_at(usize::from(len[0]));
    let name = String::from_utf8_lossy(name).into_owned();
    Ok(Some(Request::Domain(
        name,
        u16::from_be_bytes([port[0], port[1]]),
    )))
}

/// Counts a request by its kind.
fn count(shared: &ProxyShared, request: &Request) {
    let bump = |counter: &AtomicU64| counter.fetch_add(1, Ordering::Relaxed);
    bump(&shared.requests);
    match request {
        Request::Domain(..) => bump(&shared.domain_requests),
        Request::Ip => bump(&shared.ip_requests),
        Request::Unsupported => 0,
    };
}

/// The reply to a name the proxy does not know.
fn unknown_name(network: Network) -> u8 {
    match network {
        Network::Onion => TOR_NO_DESCRIPTOR,
        _ => HOST_UNREACHABLE,
    }
}

/// The reply when the node does not accept the connection.
fn refused(network: Network) -> u8 {
    match network {
        Network::Onion => TOR_INTRO_FAILED,
        _ => CONNECTION_REFUSED,
    }
}

/// Sends a reply with `code` and a zero IPv4 bound address.
fn reply(client: &mut Conn<'_>, code: u8) -> io::Result<()> {
    client.write_all(&[VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0])
}

/// Connects to the target's listener from `source`, if the name is served on `port`.
fn dial(source: SocketAddr, target: &Target, port: u16) -> io::Result<TcpStream> {
    if target.port.is_some_and(|p| p != port) {
        return Err(ErrorKind::ConnectionRefused.into());
    }
    let socket = Socket::new(Domain::for_address(target.listener), Type::STREAM, None)?;
    socket.bind(&source.into())?;
    socket.connect_timeout(&target.listener.into(), DIAL_TIMEOUT)?;
    Ok(socket.into())
}

/// Copies bytes both ways (a helper thread takes node to client) until either side closes
/// or the network stops; then both sockets are shut down, as Tor closes the whole stream.
fn relay(
    client: TcpStream,
    upstream: TcpStream,
    shared: &Arc<ProxyShared>,
    slot: &Arc<Slot>,
) -> io::Result<()> {
    upstream.set_nodelay(true)?;
    upstream.set_read_timeout(Some(POLL_INTERVAL))?;
    upstream.set_write_timeout(Some(POLL_INTERVAL))?;
    let (to_client, from_upstream) = (client.try_clone()?, upstream.try_clone()?);
    let (back, back_slot) = (Arc::clone(shared), Arc::clone(slot));
    let helper = crate::thread::spawn_with_stack("sim-relay", SESSION_STACK, move || {
        pump(from_upstream, to_client, &back, &back_slot);
        Ok(())
    })
    .map_err(io::Error::other)?;
    pump(client, upstream, shared, slot);
    if helper.join().is_err() {
        log::warn!("simulated proxy: a relay thread panicked");
    }
    Ok(())
}

/// Copies from `from` to `to` until EOF, an error or stop; then ends the session (its
/// slot first) and shuts both down.
fn pump(mut from: TcpStream, to: TcpStream, shared: &ProxyShared, slot: &Slot) {
    let mut to = Conn::new(to, &shared.stop, shared.idle);
    let mut buf = vec![0u8; RELAY_CHUNK];
    while !shared.stop.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if to.write_all(&buf[..n]).is_err() => break,
            Ok(_) => {}
            Err(e) if is_retry(&e) => {}
            Err(_) => break,
        }
    }
    slot.leave();
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.stream.shutdown(Shutdown::Both);
}
