//! Parsed HTTP requests as handed to the router: method, decoded path, query, headers, body.
//!
//! Everything here is plain data plus the request-target decoding rules; the connection
//! loop in `server.rs` builds these from `httparse` output.

use bytes::Bytes;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

/// Why a request could not be accepted. Each kind maps to the status the connection
/// answers with before closing (see [`RequestError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("unsupported expectation")]
    ExpectationFailed,
    #[error("unsupported transfer encoding")]
    UnsupportedTransferEncoding,
}

impl RequestError {
    /// The HTTP status answered for this error.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::HeadersTooLarge => 431,
            RequestError::BodyTooLarge => 413,
            RequestError::ExpectationFailed => 417,
            RequestError::UnsupportedTransferEncoding => 501,
        }
    }
}

/// Request method. Method names are case-sensitive (RFC 9110 9.1), so `get` is `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
    Head,
    Options,
    Patch,
    Other(String),
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method's name for an `Allow` header (only known methods are ever allowed).
    pub fn name(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Other(_) => "",
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `key=value` pair as byte ranges into `Query::buf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pair {
    key: (u32, u32),
    val: (u32, u32),
}

/// Decoded query string. Keys and values live in one string so that a request with any
/// number of parameters costs at most two allocations (none without a query).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    buf: String,
    pairs: Vec<Pair>,
}

impl Query {
    /// Parses `a=1&b&c=x+y%21`. A leading `?` is ignored, empty segments are skipped,
    /// `+` means space, and a malformed escape is kept literally (like browsers do) rather
    /// than failing the whole request.
    pub fn parse(raw: &str) -> Query {
        let raw = raw.strip_prefix('?').unwrap_or(raw);
        let mut q = Query::default();
        if raw.is_empty() {
            return q;
        }
        q.buf.reserve(raw.len());
        let mut scratch = Vec::new();
        for part in raw.split('&') {
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let key = push_decoded(&mut q.buf, k, &mut scratch);
            let val = push_decoded(&mut q.buf, v, &mut scratch);
            q.pairs.push(Pair { key, val });
        }
        q
    }

    fn slice(&self, r: (u32, u32)) -> &str {
        &self.buf[r.0 as usize..r.1 as usize]
    }

    /// First value of `k`; `Some("")` for a bare flag such as `?recurse`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|p| self.slice(p.key) == k)
            .map(|p| self.slice(p.val))
    }

    pub fn has(&self, k: &str) -> bool {
        self.pairs.iter().any(|p| self.slice(p.key) == k)
    }

    /// Every value of a repeated key (`?tag=a&tag=b`), in request order.
    pub fn all<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |p| self.slice(p.key) == k)
            .map(move |p| self.slice(p.val))
    }

    /// All pairs in request order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.pairs
            .iter()
            .map(move |p| (self.slice(p.key), self.slice(p.val)))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Appends the form-decoded `s` to `buf` and returns its range there.
fn push_decoded(buf: &mut String, s: &str, scratch: &mut Vec<u8>) -> (u32, u32) {
    let start = buf.len();
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        buf.push_str(s);
    } else {
        scratch.clear();
        percent_decode_lenient(s.as_bytes(), true, scratch);
        buf.push_str(&String::from_utf8_lossy(scratch));
    }
    (offset(start), offset(buf.len()))
}

fn offset(n: usize) -> u32 {
    // Request heads are capped far below 4 GiB, so query offsets always fit.
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (and `+` when `plus_as_space`); an invalid escape is copied as is.
fn percent_decode_lenient(src: &[u8], plus_as_space: bool, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < src.len() {
        let b = src[i];
        if b == b'%' && i + 2 < src.len() {
            if let (Some(h), Some(l)) = (hex_val(src[i + 1]), hex_val(src[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if plus_as_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
}

/// Decodes a request path. Unlike the query, a malformed escape here is a 400 (as Go's
/// `net/url` does), since the path names the resource and must not be guessed at.
pub fn decode_path(raw: &str) -> Result<String, RequestError> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let src = raw.as_bytes();
    let mut out = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        if src[i] == b'%' {
            let h = src.get(i + 1).copied().and_then(hex_val);
            let l = src.get(i + 2).copied().and_then(hex_val);
            match (h, l) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(RequestError::BadRequest("invalid escape in path")),
            }
            i += 3;
        } else {
            out.push(src[i]);
            i += 1;
        }
    }
    Ok(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Splits a request target into its (still encoded) path and query.
///
/// Accepts origin form (`/p?q`), absolute form (`http://host/p?q`, sent through proxies)
/// and the asterisk form of `OPTIONS *`.
pub fn split_target(target: &str) -> Result<(&str, &str), RequestError> {
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    let rest = if target.starts_with('/') || target == "*" {
        target
    } else {
        let after_scheme = strip_prefix_ignore_case(target, "http://")
            .or_else(|| strip_prefix_ignore_case(target, "https://"))
            .ok_or(RequestError::BadRequest("invalid request target"))?;
        match after_scheme.find(['/', '?']) {
            Some(i) if after_scheme.as_bytes()[i] == b'/' => &after_scheme[i..],
            // `http://host?q` has an empty path, which means `/`.
            Some(i) => return Ok(("/", &after_scheme[i + 1..])),
            None => "/",
        }
    };
    Ok(rest.split_once('?').unwrap_or((rest, "")))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// One HTTP request, fully read (body included) before the handler runs.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Percent-decoded path without the query, e.g. `/v1/kv/a b`.
    pub path: String,
    /// The request target exactly as received, query included, e.g. `/v1/kv/a%20b?recurse`.
    /// See [`Request::encoded_path`] and [`Request::raw_query`] for its parts.
    pub raw_path: String,
    pub query: Query,
    /// Header names are lower-cased; values are as received (trimmed by the parser).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub remote: SocketAddr,
}

impl Request {
    /// Builds a request from a method and a target such as `/v1/kv/a?recurse`, for tests
    /// and internal re-dispatch. The remote address is `127.0.0.1:0`.
    pub fn new(method: Method, target: &str) -> Result<Request, RequestError> {
        let (raw, query) = split_target(target)?;
        Ok(Request {
            method,
            path: decode_path(raw)?,
            raw_path: target.to_owned(),
            query: Query::parse(query),
            headers: Vec::new(),
            body: Bytes::new(),
            remote: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        })
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Request {
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

    /// Every value of a repeated header, in request order.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path as received, still percent-encoded, without the query.
    pub fn encoded_path(&self) -> &str {
        split_target(&self.raw_path).map_or("", |(p, _)| p)
    }

    /// The query string as received (without `?`), still encoded.
    pub fn raw_query(&self) -> &str {
        split_target(&self.raw_path).map_or("", |(_, q)| q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_flags_repeats_and_decoding() {
        let q = Query::parse("recurse&tag=a&tag=b%20c&x=1+2&empty=&k%3Dy=v%26w&&bad=%zz%4");
        assert_eq!(q.get("recurse"), Some(""));
        assert!(q.has("recurse"));
        assert!(!q.has("missing"));
        assert_eq!(q.get("missing"), None);
        assert_eq!(q.all("tag").collect::<Vec<_>>(), ["a", "b c"]);
        assert_eq!(q.get("tag"), Some("a"));
        assert_eq!(q.get("x"), Some("1 2"));
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(q.get("k=y"), Some("v&w"));
        assert_eq!(q.get("bad"), Some("%zz%4"));
        assert_eq!(q.len(), 7);
        assert!(Query::parse("").is_empty());
        assert_eq!(Query::parse("?a=1").get("a"), Some("1"));
        assert_eq!(Query::parse("u=%E2%9C%93").get("u"), Some("\u{2713}"));
    }

    #[test]
    fn path_decoding() {
        assert_eq!(decode_path("/v1/kv/a%20b").unwrap(), "/v1/kv/a b");
        assert_eq!(decode_path("/v1/kv/a+b").unwrap(), "/v1/kv/a+b");
        assert_eq!(decode_path("/v1/kv/a%2Fb").unwrap(), "/v1/kv/a/b");
        assert!(decode_path("/v1/kv/%zz").is_err());
        assert!(decode_path("/v1/kv/%4").is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(split_target("/a?b=1").unwrap(), ("/a", "b=1"));
        assert_eq!(split_target("/a").unwrap(), ("/a", ""));
        assert_eq!(split_target("*").unwrap(), ("*", ""));
        assert_eq!(
            split_target("HTTP://host:8500/v1/kv/x?y").unwrap(),
            ("/v1/kv/x", "y")
        );
        assert_eq!(split_target("http://host").unwrap(), ("/", ""));
        assert_eq!(split_target("http://host?z").unwrap(), ("/", "z"));
        assert!(split_target("v1/kv").is_err());
    }

    #[test]
    fn request_helpers() {
        let r = Request::new(Method::Get, "/v1/kv/a%20b?recurse&dc=x")
            .unwrap()
            .with_header("X-Consul-Token", "t");
        assert_eq!(r.path, "/v1/kv/a b");
        assert_eq!(r.encoded_path(), "/v1/kv/a%20b");
        assert_eq!(r.raw_query(), "recurse&dc=x");
        assert_eq!(r.header("x-consul-token"), Some("t"));
        assert_eq!(r.header("X-CONSUL-TOKEN"), Some("t"));
        assert_eq!(r.query.get("dc"), Some("x"));
        assert_eq!(Method::parse("PATCH"), Method::Patch);
        assert_eq!(Method::parse("get"), Method::Other("get".into()));
    }
}
