//! The checks the `socks5_reply` fuzz target and its property tests share: the SOCKS5
//! reply parser's invariants on any bytes, and the whole exchange (`socks5::connect`) over
//! the in-memory [`ScriptedPeer`], against an oracle of what it must accept.

use std::time::{Duration, Instant};

use super::ScriptedPeer;
use crate::socks5::{ReplyLength, SocksError, Target, check_reply, connect, reply_length, request};

/// The longest CONNECT reply: VER REP RSV ATYP, a length byte, a 255-byte name, the port.
pub const MAX_REPLY: usize = 4 + 1 + 255 + 2;

/// Checks `reply_length` and `check_reply` on `data`: no length over [`MAX_REPLY`], a
/// `NeedMore` always asks for more than it was given, an error on a prefix stays an error
/// on the whole, and `check_reply` accepts exactly a complete reply of the announced length.
///
/// # Panics
/// When one of these breaks.
pub fn check_socks5_reply(data: &[u8]) {
    let whole = reply_length(data);
    match &whole {
        Ok(ReplyLength::NeedMore(n)) => assert!(*n > data.len() && *n <= MAX_REPLY, "{n}"),
        Ok(ReplyLength::Complete(n)) => {
            assert!((7..=MAX_REPLY).contains(n), "{n}");
            if let Some(reply) = data.get(..*n) {
                check_reply(reply).unwrap_or_else(|e| panic!("complete reply refused: {e}"));
            }
        }
        Err(_) => {}
    }
    for k in 0..data.len().min(5) {
        if reply_length(&data[..k]).is_err() {
            assert!(
                whole.is_err(),
                "an error at {k} bytes, none at {}",
                data.len()
            );
        }
    }
    let complete = matches!(whole, Ok(ReplyLength::Complete(n)) if n == data.len());
    assert_eq!(check_reply(data).is_ok(), complete, "{data:?}");
}

/// Whether `script` (the proxy's side) must get `connect` through: the method reply
/// `[5, 0]`, then a complete success reply. Its length (the bytes `connect` must read).
fn accepted_length(script: &[u8]) -> Option<usize> {
    let rest = script.strip_prefix(&[5, 0])?;
    match reply_length(rest) {
        Ok(ReplyLength::Complete(n)) if rest.len() >= n => Some(2 + n),
        _ => None,
    }
}

/// Runs `socks5::connect` to `target` over a proxy saying `script`, at most `chunk` bytes
/// per read, then closing; checks that it succeeds exactly when the script holds a valid
/// method reply and success reply, reads no byte past that reply, sends the greeting then
/// (after a valid method reply) the request, and fails only as the proxy or with a peer
/// code the script holds (never a timeout: the deadlines are a minute away).
///
/// # Panics
/// When one of these breaks, or when `request` refuses `target`.
pub fn check_socks5_connect(
    script: &[u8],
    chunk: usize,
    target: &Target,
) -> Result<(), SocksError> {
    let mut conn = ScriptedPeer {
        chunk,
        ..ScriptedPeer::new(script)
    };
    let later = Instant::now() + Duration::from_secs(60);
    let result = connect(&mut conn, target, later, later);
    let read = script.len() - conn.input.len();
    assert!(read <= 2 + MAX_REPLY, "read {read} bytes");
    let mut sent = vec![5, 1, 0];
    if script.starts_with(&[5, 0]) {
        sent.extend(request(target).expect("a target `request` accepts"));
    }
    match (&result, accepted_length(script)) {
        (Ok(()), Some(n)) => assert_eq!(read, n, "read past the reply"),
        (Err(e), None) => check_failure(e, script),
        (result, want) => panic!("{result:?} where the script says {want:?}: {script:?}"),
    }
    assert_eq!(conn.output, sent);
    result
}

fn check_failure(e: &SocksError, script: &[u8]) {
    match e {
        SocksError::Proxy(_) => {}
        SocksError::Peer { code, .. } => {
            assert!(matches!(code, 0x03..=0x06 | 0xF0..=0xF7), "{e}");
            assert_eq!(script.get(2..4), Some(&[5, *code][..]), "{e}");
        }
        SocksError::Timeout => panic!("a timeout with the deadlines a minute away"),
    }
}
