//! Responses produced by handlers and their HTTP/1.1 wire encoding.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::channel::mpsc;

/// A complete response. The connection adds `Content-Length` (and `Connection` when it
/// matters) itself; handler-supplied framing headers are ignored so they can never
/// disagree with the body actually sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// A body streamed after the head with chunked framing until the sender closes or the
    /// peer goes away (`/v1/agent/monitor`); `body` is ignored then.
    pub stream: Option<BodyStream>,
}

/// The receiving end of a streamed body. Shared so `Response` stays `Clone`; the connection
/// takes it out once.
#[derive(Clone)]
pub struct BodyStream(Rc<RefCell<Option<mpsc::Receiver<Bytes>>>>);

impl BodyStream {
    pub fn new(rx: mpsc::Receiver<Bytes>) -> BodyStream {
        BodyStream(Rc::new(RefCell::new(Some(rx))))
    }

    pub(crate) fn take(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.0.borrow_mut().take()
    }
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyStream")
    }
}

impl PartialEq for BodyStream {
    fn eq(&self, o: &BodyStream) -> bool {
        Rc::ptr_eq(&self.0, &o.0)
    }
}

impl Eq for BodyStream {}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            stream: None,
        }
    }

    /// A streamed body of `content_type` fed by `rx`.
    pub fn with_stream(mut self, content_type: &str, rx: mpsc::Receiver<Bytes>) -> Self {
        self = self.with_body(content_type, Bytes::new());
        self.stream = Some(BodyStream::new(rx));
        self
    }

    pub fn with_header(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// Sets the body and its `Content-Type`, replacing any earlier content type.
    pub fn with_body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("Content-Type".to_owned(), content_type.to_owned()));
        self.body = body.into();
        self
    }

    /// First value of header `name` (matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the handler asked for the connection to be closed after this response.
    pub(crate) fn wants_close(&self) -> bool {
        self.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("connection") && has_token(v, "close"))
    }

    /// Whether this status may carry a body and `Content-Length` (RFC 9110 8.6, 15.3.5).
    fn has_body(&self) -> bool {
        !(100..200).contains(&self.status) && self.status != 204 && self.status != 304
    }

    /// Appends the status line and headers. Returns whether the body must follow.
    pub(crate) fn encode_head(
        &self,
        out: &mut BytesMut,
        head_only: bool,
        conn: ConnHeader,
    ) -> bool {
        let reason = reason_phrase(self.status);
        out.reserve(64 + reason.len() + self.headers_len());
        out.put_slice(b"HTTP/1.1 ");
        let status = self.status.clamp(100, 999);
        put_decimal(out, u64::from(status));
        out.put_u8(b' ');
        out.put_slice(reason.as_bytes());
        out.put_slice(b"\r\n");
        for (k, v) in &self.headers {
            if is_framing_header(k) || !is_safe_header(k, v) {
                continue;
            }
            out.put_slice(k.as_bytes());
            out.put_slice(b": ");
            out.put_slice(v.as_bytes());
            out.put_slice(b"\r\n");
        }
        match conn {
            ConnHeader::None => {}
            ConnHeader::Close => out.put_slice(b"Connection: close\r\n"),
            ConnHeader::KeepAlive => out.put_slice(b"Connection: keep-alive\r\n"),
        }
        let body = self.has_body();
        if body && self.stream.is_some() {
            out.put_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            return !head_only;
        }
        if body {
            // HEAD advertises the length the GET would have had (RFC 9110 9.3.2).
            out.put_slice(b"Content-Length: ");
            put_decimal(out, self.body.len() as u64);
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
        body && !head_only
    }

    fn headers_len(&self) -> usize {
        self.headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum()
    }
}

/// Which `Connection` header the connection loop wants on a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnHeader {
    None,
    Close,
    KeepAlive,
}

fn is_framing_header(k: &str) -> bool {
    k.eq_ignore_ascii_case("content-length")
        || k.eq_ignore_ascii_case("transfer-encoding")
        || k.eq_ignore_ascii_case("connection")
}

/// Rejects names/values that would let handler data inject extra header lines.
fn is_safe_header(k: &str, v: &str) -> bool {
    !k.is_empty()
        && k.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && !v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// Case-insensitive membership test for a comma-separated token list such as `Connection`.
pub(crate) fn has_token(list: &str, token: &str) -> bool {
    list.split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn put_decimal(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// Standard reason phrase; clients ignore it, but humans reading curl -v do not.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(r: &Response, head_only: bool, conn: ConnHeader) -> (String, bool) {
        let mut out = BytesMut::new();
        let body = r.encode_head(&mut out, head_only, conn);
        (String::from_utf8(out.to_vec()).unwrap(), body)
    }

    #[test]
    fn head_encoding() {
        let r = Response::new(200)
            .with_header("X-Consul-Index", "42")
            .with_header("Content-Length", "999")
            .with_header("Bad", "a\r\nInjected: 1")
            .with_body("text/plain", "hi")
            .with_body("application/json", "{}");
        let (s, body) = encode(&r, false, ConnHeader::None);
        assert_eq!(
            s,
            "HTTP/1.1 200 OK\r\nX-Consul-Index: 42\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"
        );
        assert!(body);
        let (s, body) = encode(&r, true, ConnHeader::Close);
        assert!(s.ends_with("Connection: close\r\nContent-Length: 2\r\n\r\n"));
        assert!(!body);
        let (s, body) = encode(&Response::new(204), false, ConnHeader::KeepAlive);
        assert_eq!(
            s,
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
        assert!(!body);
        let (s, _) = encode(&Response::new(599), false, ConnHeader::None);
        assert!(s.starts_with("HTTP/1.1 599 Unknown\r\n"));
    }

    #[test]
    fn decimal_and_tokens() {
        let mut out = BytesMut::new();
        put_decimal(&mut out, 0);
        put_decimal(&mut out, 1234567890123);
        assert_eq!(&out[..], b"01234567890123");
        assert!(has_token("keep-alive, Close", "close"));
        assert!(!has_token("keep-alive", "close"));
        assert!(Response::new(200)
            .with_header("connection", "close")
            .wants_close());
    }
}
