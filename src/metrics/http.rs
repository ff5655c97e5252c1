//! The HTTP/1.x the metrics endpoint speaks, as pure functions on bytes: a request head
//! read in pieces ([`HeadReader`], at most [`MAX_HEAD`] bytes kept) into a method and a
//! path, and the bytes of a response ([`response`]). No I/O, so every rule here is
//! tested on byte strings, split at every byte, by property tests and by the
//! `http_request` fuzz target.
//!
//! Only what a scraper or a probe sends is understood: a request line `METHOD SP target
//! SP HTTP/1.x` (origin-form, absolute-form or `*`; the query string dropped from the
//! path), then header lines `name: value` that are checked for form and otherwise
//! ignored, up to an empty line (CRLF, or a bare LF as RFC 9112 §2.2 allows). The head
//! is judged as soon as it can be: a malformed request line as soon as its line ends
//! (400), a version other than 1.x (505), a head that has not ended within [`MAX_HEAD`]
//! bytes (431). A body is never read: each response closes its connection.

use thiserror::Error;

/// The longest request head accepted, request line and headers with the empty line.
pub const MAX_HEAD: usize = 8192;

/// The content type of every response: the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The method of a request, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    /// Answered like GET, without the body.
    Head,
    /// Any other token.
    Other,
}

/// A complete request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The target's path, without the query string; `*` for the asterisk form.
    pub path: String,
}

/// What the bytes so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// The head has not ended yet and nothing is wrong with it so far.
    Incomplete,
    Request(Request),
}

/// Why a request head is refused; [`HeadError::status`] is the response's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeadError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request head over {MAX_HEAD} bytes")]
    TooLarge,
    #[error("only HTTP/1.0 and HTTP/1.1 are served")]
    Version,
}

impl HeadError {
    /// The status code the error is answered with.
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed(_) => 400,
            HeadError::TooLarge => 431,
            HeadError::Version => 505,
        }
    }
}

/// A request head arriving in pieces: keeps at most [`MAX_HEAD`] bytes and scans each
/// byte for the end of the head about once, so a client sending a byte at a time costs
/// linear work.
#[derive(Debug, Default)]
pub struct HeadReader {
    buf: Vec<u8>,
    /// Every line feed before this offset has been checked for an empty line after it.
    scanned: usize,
    /// The request line, once its line feed is seen and it is found well formed, and the
    /// offset of that line feed.
    line: Option<(Request, usize)>,
}

impl HeadReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many more bytes the head may take: read no more than this.
    pub fn room(&self) -> usize {
        MAX_HEAD - self.buf.len()
    }

    /// Bytes kept so far (at most [`MAX_HEAD`]).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Adds `bytes` (beyond [`HeadReader::room`], the rest is ignored) and judges the head.
    /// After a request or an error, push no more.
    ///
    /// # Errors
    /// When the head is malformed, too large or not HTTP/1.x.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Head, HeadError> {
        let take = bytes.len().min(self.room());
        self.buf.extend_from_slice(&bytes[..take]);
        let mut at = self.scanned;
        while let Some(lf) = find_lf(&self.buf, at) {
            if self.line.is_none() {
                self.line = Some((parse_request_line(trim_cr(&self.buf[..lf]))?, lf));
            }
            match self.buf.get(lf + 1..) {
                Some([b'\n', ..] | [b'\r', b'\n', ..]) => return self.finish(lf),
                Some([] | [b'\r']) => break,
                _ => at = lf + 1,
            }
        }
        self.scanned = self.buf.len().saturating_sub(2).max(self.scanned);
        if self.buf.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        Ok(Head::Incomplete)
    }

    /// The request whose head's last header line ends at `last_lf`.
    fn finish(&mut self, last_lf: usize) -> Result<Head, HeadError> {
        let (request, line_end) = self
            .line
            .take()
            .ok_or(HeadError::Malformed("no request line"))?;
        if last_lf > line_end {
            let fields = &self.buf[line_end + 1..last_lf];
            fields.split(|&b| b == b'\n').try_for_each(check_field)?;
        }
        Ok(Head::Request(request))
    }
}

/// Judges `bytes` as a whole request head (the first [`MAX_HEAD`] bytes of them).
///
/// # Errors
/// As [`HeadReader::push`].
pub fn parse_head(bytes: &[u8]) -> Result<Head, HeadError> {
    HeadReader::new().push(bytes)
}

/// The first line feed in `buf` at or after `from`.
fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    rest.iter().position(|&b| b == b'\n').map(|i| from + i)
}

/// A line without the carriage return that ends it, if any.
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses `METHOD SP target SP HTTP/x.y` (without its line end).
fn parse_request_line(line: &[u8]) -> Result<Request, HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "the request line is not METHOD target VERSION",
        ));
    };
    if method.is_empty() || !method.iter().copied().all(is_tchar) {
        return Err(HeadError::Malformed("bad method"));
    }
    check_version(version)?;
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => Method::Other,
    };
    let path = target_path(target)?;
    Ok(Request { method, path })
}

/// Accepts `HTTP/1.x`; another `HTTP/d.d` is a version error, anything else malformed.
fn check_version(version: &[u8]) -> Result<(), HeadError> {
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major == b'1' {
                Ok(())
            } else {
                Err(HeadError::Version)
            }
        }
        _ => Err(HeadError::Malformed("bad HTTP version")),
    }
}

/// The path of a request target, without its query string.
fn target_path(target: &[u8]) -> Result<String, HeadError> {
    if target.is_empty() || !target.iter().all(u8::is_ascii_graphic) {
        return Err(HeadError::Malformed("bad request target"));
    }
    // All graphic ASCII: a valid string.
    let target = String::from_utf8_lossy(target);
    let path = if target == "*" || target.starts_with('/') {
        &target[..]
    } else if let Some(rest) = strip_scheme(&target) {
        rest.find(['/', '?']).map_or("/", |i| &rest[i..])
    } else {
        return Err(HeadError::Malformed("bad request target"));
    };
    let path = path.split('?').next().unwrap_or_default();
    Ok(if path.is_empty() { "/" } else { path }.to_owned())
}

/// An absolute-form target (`http://authority/...`) after its scheme.
fn strip_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// Checks a header line `name: value` (its line feed removed): a token for a name, no
/// whitespace before the colon, no folding, no carriage return or NUL inside.
fn check_field(line: &[u8]) -> Result<(), HeadError> {
    let line = trim_cr(line);
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HeadError::Malformed("a header line without a colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().copied().all(is_tchar) {
        return Err(HeadError::Malformed("bad header name"));
    }
    if value.iter().any(|&b| b == b'\r' || b == 0) {
        return Err(HeadError::Malformed("bad header value"));
    }
    Ok(())
}

/// A `tchar` of RFC 9110 §5.6.2: the characters of a method or a header name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A whole response: status line, `Content-Type` ([`CONTENT_TYPE`]), `Content-Length`,
/// `Connection: close` (and `Allow` for a 405), then `body`.
pub fn response(status: u16, body: &str) -> Vec<u8> {
    let mut out = head_response(status, body);
    out.extend_from_slice(body.as_bytes());
    out
}

/// The response to a HEAD request: [`response`] without the body.
pub fn head_response(status: u16, body: &str) -> Vec<u8> {
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
         {allow}Connection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes()
}

/// The reason phrase of the status codes the endpoint uses.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[allow(clippy::unwrap_used)] // tests may unwrap
#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str) -> Result<Head, HeadError> {
        Ok(Head::Request(Request {
            method,
            path: path.to_owned(),
        }))
    }

    fn malformed(bytes: &[u8]) -> bool {
        matches!(parse_head(bytes), Err(HeadError::Malformed(_)))
    }

    /// The verdict on `bytes` fed one byte at a time (stopping at the first verdict).
    fn bytewise(bytes: &[u8]) -> Result<Head, HeadError> {
        let mut reader = HeadReader::new();
        let mut last = Ok(Head::Incomplete);
        for b in bytes.iter().take(MAX_HEAD) {
            last = reader.push(std::slice::from_ref(b));
            if last != Ok(Head::Incomplete) {
                break;
            }
        }
        last
    }

    const SCRAPE: &[u8] = b"GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9333\r\n\
        User-Agent: Prometheus/2.53.0\r\nAccept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n\
        Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";

    #[test]
    fn a_scrape_and_a_probe_are_requests() {
        assert_eq!(parse_head(SCRAPE), request(Method::Get, "/metrics"));
        assert_eq!(
            parse_head(b"GET /health HTTP/1.0\r\n\r\n"),
            request(Method::Get, "/health")
        );
        assert_eq!(
            parse_head(b"HEAD /health HTTP/1.1\nHost: x\n\n"),
            request(Method::Head, "/health")
        );
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
            request(Method::Other, "/metrics")
        );
        assert_eq!(
            parse_head(b"get /metrics HTTP/1.1\r\n\r\n"),
            request(Method::Other, "/metrics"),
            "methods are case-sensitive"
        );
    }

    #[test]
    fn split_at_every_byte_gives_the_same_verdict() {
        let expected = request(Method::Get, "/metrics");
        for cut in 0..=SCRAPE.len() {
            let mut reader = HeadReader::new();
            let first = reader.push(&SCRAPE[..cut]);
            if cut < SCRAPE.len() {
                assert_eq!(first, Ok(Head::Incomplete), "cut at {cut}");
                assert_eq!(reader.push(&SCRAPE[cut..]), expected, "cut at {cut}");
            } else {
                assert_eq!(first, expected);
            }
        }
        assert_eq!(bytewise(SCRAPE), expected);
        for bad in [
            &b"GET /x HTTP/1.1\r\nbad header\r\n\r\n"[..],
            b"GET /x HTTP/2.0\r\n\r\n",
        ] {
            assert_eq!(bytewise(bad), parse_head(bad));
        }
    }

    #[test]
    fn line_ends_may_be_bare_line_feeds_or_mixed() {
        for head in [
            &b"GET /metrics HTTP/1.1\n\n"[..],
            b"GET /metrics HTTP/1.1\r\n\n",
            b"GET /metrics HTTP/1.1\nHost: a\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: a\n\r\n",
        ] {
            assert_eq!(
                parse_head(head),
                request(Method::Get, "/metrics"),
                "{head:?}"
            );
        }
    }

    #[test]
    fn a_head_is_incomplete_until_its_empty_line() {
        for head in [
            &b""[..],
            b"G",
            b"GET /metrics HTT",
            b"GET /metrics HTTP/1.1\r",
            b"GET /metrics HTTP/1.1\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r",
            b"GET /metrics HTTP/1.1\nHost: x\n",
        ] {
            assert_eq!(parse_head(head), Ok(Head::Incomplete), "{head:?}");
        }
    }

    #[test]
    fn a_head_is_at_most_max_head_bytes() {
        let line = b"GET /metrics HTTP/1.1\r\n";
        let pad = |n: usize| {
            let mut head = line.to_vec();
            head.extend(b"X-Pad: ");
            head.resize(n - 4, b'a');
            head.extend(b"\r\n\r\n");
            head
        };
        assert_eq!(parse_head(&pad(MAX_HEAD)), request(Method::Get, "/metrics"));
        assert_eq!(parse_head(&pad(MAX_HEAD + 1)), Err(HeadError::TooLarge));
        let mut reader = HeadReader::new();
        assert_eq!(
            reader.push(&pad(MAX_HEAD)[..MAX_HEAD - 1]),
            Ok(Head::Incomplete)
        );
        assert_eq!(reader.room(), 1);
        assert_eq!(reader.push(&[b'a'; 1 << 20]), Err(HeadError::TooLarge));
        assert_eq!(reader.buffered(), MAX_HEAD);
        // A request line that never ends.
        assert_eq!(parse_head(&[b'A'; MAX_HEAD]), Err(HeadError::TooLarge));
        assert_eq!(bytewise(&[b'A'; MAX_HEAD + 10]), Err(HeadError::TooLarge));
    }

    #[test]
    fn malformed_request_lines_are_refused_as_soon_as_they_end() {
        for line in [
            &b"\r\n"[..],
            b"\n",
            b"GET\r\n",
            b"GET /metrics\r\n",
            b"GET  /metrics HTTP/1.1\r\n",
            b"GET /metrics  HTTP/1.1\r\n",
            b" GET /metrics HTTP/1.1\r\n",
            b"GET /metrics HTTP/1.1 \r\n",
            b"GET\t/metrics HTTP/1.1\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n",
            b"G(T /metrics HTTP/1.1\r\n",
            b"GET metrics HTTP/1.1\r\n",
            b"GET /m\xc3\xa9trics HTTP/1.1\r\n",
            b"GET /metrics HTTP/1.1\r\r\n",
            b"GET /metrics http/1.1\r\n",
            b"GET /metrics HTTP/1\r\n",
            b"GET /metrics HTTP/1.10\r\n",
            b"GET /metrics HTTP/x.1\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",
        ] {
            assert!(malformed(line), "{line:?}: {:?}", parse_head(line));
        }
    }

    #[test]
    fn versions_other_than_1_x_are_505() {
        for version in ["HTTP/1.0", "HTTP/1.1", "HTTP/1.9"] {
            let head = format!("GET /health {version}\r\n\r\n");
            assert_eq!(parse_head(head.as_bytes()), request(Method::Get, "/health"));
        }
        for version in ["HTTP/0.9", "HTTP/2.0", "HTTP/3.0", "HTTP/9.9"] {
            let head = format!("GET /health {version}\r\n");
            assert_eq!(parse_head(head.as_bytes()), Err(HeadError::Version));
        }
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(parse_head(preface), Err(HeadError::Version));
        assert_eq!(HeadError::Version.status(), 505);
        assert_eq!(HeadError::TooLarge.status(), 431);
        assert_eq!(HeadError::Malformed("x").status(), 400);
    }

    #[test]
    fn the_path_drops_the_query_and_the_absolute_form() {
        for (target, path) in [
            ("/metrics", "/metrics"),
            ("/metrics?", "/metrics"),
            ("/metrics?a=1&b=/health", "/metrics"),
            ("/health/", "/health/"),
            ("/", "/"),
            ("*", "*"),
            ("http://127.0.0.1:9333/metrics?x", "/metrics"),
            ("HTTPS://seed.example/health", "/health"),
            ("http://seed.example", "/"),
            ("http://seed.example?x", "/"),
        ] {
            let head = format!("GET {target} HTTP/1.1\r\n\r\n");
            assert_eq!(
                parse_head(head.as_bytes()),
                request(Method::Get, path),
                "{target}"
            );
        }
        for target in ["metrics", "ftp://x/metrics", "seed.example:443", "?"] {
            let head = format!("GET {target} HTTP/1.1\r\n\r\n");
            assert!(malformed(head.as_bytes()), "{target}");
        }
    }

    #[test]
    fn malformed_header_lines_are_400() {
        for field in [
            &b"no colon"[..],
            b": no name",
            b"Bad Name: x",
            b"Host : x",
            b" folded: x",
            b"\tfolded: x",
            b"Host: a\rb",
            b"Host: a\0b",
        ] {
            let mut head = b"GET /metrics HTTP/1.1\r\nHost: ok\r\n".to_vec();
            head.extend(field);
            head.extend(b"\r\n\r\n");
            assert!(malformed(&head), "{field:?}: {:?}", parse_head(&head));
        }
        let lenient = b"GET /metrics HTTP/1.1\r\nX-Empty:\r\nX-Bytes: \xff\x01\t\r\n\r\n";
        assert_eq!(parse_head(lenient), request(Method::Get, "/metrics"));
    }

    #[test]
    fn responses_carry_length_type_and_close() {
        let out = response(200, "ok\n");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\nok\n"
        );
        let head = String::from_utf8(head_response(405, "only GET\n")).unwrap();
        assert!(
            head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nContent-Length: 9\r\n"), "{head}");
        assert!(head.contains("\r\nAllow: GET, HEAD\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        let long = response(431, &HeadError::TooLarge.to_string());
        assert!(long.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(long.ends_with(b"request head over 8192 bytes"));
    }
}
