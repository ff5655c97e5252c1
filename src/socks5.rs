//! Placeholder until the SOCKS5 client lands (branch `socks`).

/// Where the proxy should connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A name sent to the proxy unresolved.
    Domain(String, u16),
    /// An IP address.
    Ip(std::net::SocketAddr),
}

#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    #[error("proxy failed: {0}")]
    Proxy(String),
    #[error("proxy reports {meaning} (code {code:#04x})")]
    Peer { code: u8, meaning: &'static str },
    #[error("no SOCKS5 CONNECT reply before the circuit deadline")]
    Timeout,
}

pub fn connect<C: crate::p2p::Conn>(
    _conn: &mut C,
    _target: &Target,
    _greeting_deadline: std::time::Instant,
    _circuit_deadline: std::time::Instant,
) -> Result<(), SocksError> {
    Err(SocksError::Proxy("placeholder".into()))
}
