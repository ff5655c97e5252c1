//! The checks the `http_request` fuzz target and its property tests share: the metrics
//! endpoint's request-head parser (`metrics::http`) on any bytes, whole and in pieces.

use crate::metrics::http::{Head, HeadError, HeadReader, MAX_HEAD, parse_head, response};

/// Checks `parse_head` and [`HeadReader`] on `data`, fed whole and `chunk` bytes at a time
/// (at least 1): the same verdict both ways; no request without an empty line (`\n\n` or
/// `\n\r\n`) in the first [`MAX_HEAD`] bytes; a request's path starts with `/` (or is
/// `*`) and holds no `?`; `Incomplete` only below [`MAX_HEAD`] bytes, `TooLarge` only at
/// it; never more than [`MAX_HEAD`] bytes kept. Returns the verdict.
///
/// # Panics
/// When one of these breaks.
pub fn check_http_head(data: &[u8], chunk: usize) -> Result<Head, HeadError> {
    let whole = parse_head(data);
    assert_eq!(pieces(data, chunk.max(1)), whole, "{data:?} by {chunk}");
    let window = &data[..data.len().min(MAX_HEAD)];
    let ended =
        window.windows(2).any(|w| w == b"\n\n") || window.windows(3).any(|w| w == b"\n\r\n");
    match &whole {
        Ok(Head::Request(request)) => {
            assert!(ended, "a request without an empty line: {data:?}");
            let path = &request.path;
            assert!(path == "*" || path.starts_with('/'), "{path:?}");
            assert!(!path.contains('?'), "{path:?}");
        }
        Ok(Head::Incomplete) => assert!(data.len() < MAX_HEAD, "{} bytes", data.len()),
        Err(HeadError::TooLarge) => assert!(data.len() >= MAX_HEAD && !ended),
        Err(e) => {
            let status = e.status().to_string();
            let reply = response(e.status(), &e.to_string());
            assert!(reply.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
        }
    }
    whole
}

/// The first verdict other than `Incomplete` of `data` fed `chunk` bytes at a time.
fn pieces(data: &[u8], chunk: usize) -> Result<Head, HeadError> {
    let mut reader = HeadReader::new();
    let mut verdict = Ok(Head::Incomplete);
    let mut rest = data;
    while !rest.is_empty() && verdict == Ok(Head::Incomplete) {
        let (piece, tail) = rest.split_at(chunk.min(rest.len()).min(reader.room()));
        verdict = reader.push(piece);
        assert!(reader.buffered() <= MAX_HEAD);
        rest = tail;
    }
    verdict
}
