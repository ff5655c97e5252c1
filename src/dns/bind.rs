//! Binding the server's sockets: UDP and TCP on the same port for each listen address,
//! and the errors that name the remedy when that fails.
//!
//! It exists apart from the serving loops because binding happens once, before any
//! thread starts, and is where the operator's mistakes show (a privileged port, a port
//! in use): its errors say what to do about them.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use super::config::ConfigError;

/// Attempts to find a port free for both UDP and TCP when the listen port is 0.
const PORT_ATTEMPTS: usize = 8;
/// Receive buffer asked for the UDP sockets, to absorb bursts.
const UDP_RECV_BUFFER: usize = 1 << 20;
/// Connections the kernel queues for the TCP acceptor.
const TCP_BACKLOG: i32 = 1024;

/// Why the server could not bind its sockets.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The configuration is unusable.
    #[error("invalid DNS configuration")]
    Config(#[from] ConfigError),
    /// Binding needs a privilege the process lacks (ports below 1024).
    #[error(
        "cannot bind DNS port {addr}: permission denied; run as root, grant \
         CAP_NET_BIND_SERVICE (setcap 'cap_net_bind_service=+ep' {binary}), or choose \
         another port with --dns-listen"
    )]
    PermissionDenied {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The path of this program, for the `setcap` hint.
        binary: String,
    },
    /// Another socket holds the address.
    #[error(
        "cannot bind DNS port {addr} ({protocol}): address already in use; stop the other \
         DNS server or choose another port with --dns-listen"
    )]
    AddrInUse {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        protocol: &'static str,
    },
    /// Any other failure to create or bind a socket.
    #[error("cannot bind DNS port {addr} ({protocol})")]
    Io {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        protocol: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

impl BindError {
    /// Classifies the failure to bind `addr` over `protocol` (`udp` or `tcp`).
    pub(super) fn from_io(addr: SocketAddr, protocol: &'static str, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::PermissionDenied => Self::PermissionDenied {
                addr,
                binary: std::env::current_exe()
                    .map_or_else(|_| "dnsseeder".to_owned(), |p| p.display().to_string()),
            },
            io::ErrorKind::AddrInUse => Self::AddrInUse { addr, protocol },
            _ => Self::Io {
                addr,
                protocol,
                source,
            },
        }
    }
}

/// Binds UDP, then TCP on the port UDP got; with port 0, retries when TCP's is taken.
pub(super) fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), BindError> {
    let attempts = if addr.port() == 0 { PORT_ATTEMPTS } else { 1 };
    let mut attempt = 1;
    loop {
        let udp = bind_udp(addr).map_err(|e| BindError::from_io(addr, "udp", e))?;
        let port = udp
            .local_addr()
            .map_err(|e| BindError::from_io(addr, "udp", e))?
            .port();
        let tcp_addr = SocketAddr::new(addr.ip(), port);
        match bind_tcp(tcp_addr) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < attempts => {
                log::debug!("TCP port {port} taken, trying another for {addr}");
                attempt += 1;
            }
            Err(e) => return Err(BindError::from_io(tcp_addr, "tcp", e)),
        }
    }
}

/// A socket for `addr`; IPv6 sockets are `IPV6_V6ONLY`.
fn new_socket(addr: SocketAddr, ty: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() {
        // So that [::]:53 and 0.0.0.0:53 can both be bound.
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// A UDP socket bound to `addr`, with a large receive buffer where the system allows it.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    if let Err(e) = socket.set_recv_buffer_size(UDP_RECV_BUFFER) {
        log::debug!("cannot enlarge the UDP receive buffer of {addr}: {e}");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A TCP listener bound to `addr`.
fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    Ok(socket.into())
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_names_the_address_flag_and_capability() {
        let addr: SocketAddr = "0.0.0.0:53".parse().unwrap();
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let message = BindError::from_io(addr, "udp", denied).to_string();
        assert!(message.starts_with("cannot bind DNS port 0.0.0.0:53: permission denied;"));
        for part in [
            "CAP_NET_BIND_SERVICE",
            "setcap 'cap_net_bind_service=+ep' ",
            "--dns-listen",
        ] {
            assert!(message.contains(part), "{message}");
        }
        let in_use = io::Error::from(io::ErrorKind::AddrInUse);
        let message = BindError::from_io(addr, "tcp", in_use).to_string();
        assert!(
            message.contains("0.0.0.0:53 (tcp): address already in use"),
            "{message}"
        );
    }
}
