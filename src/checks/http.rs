//! HTTP checks: a small HTTP/1.1 client on glommio sockets (TLS through rustls), one
//! connection per run (`Connection: close`, as Consul disables keep-alives so a check never
//! fails on a stale pooled connection), redirects followed like Go's client, and Consul's
//! verdicts and output text.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::io::{AsyncReadExt, AsyncWriteExt};

use super::net::{dial_tcp, io_error_text, join_host_port, resolve, within, BoxIo};
use super::output::Tail;
use super::tls::{Alpn, TlsConfigs};
use super::{Status, TlsSettings};

/// Consul's User-Agent for HTTP checks (clients filter their access logs on it).
const USER_AGENT: &str = "Consul Health Check";
const ACCEPT: &str = "text/plain, text/*, */*";
/// Go's client gives up after this many redirects.
const MAX_REDIRECTS: usize = 10;
/// A response head larger than this is treated as malformed.
const MAX_HEAD: usize = 64 * 1024;

pub(crate) struct HttpCheck<'a> {
    pub url: &'a str,
    pub method: &'a str,
    pub headers: &'a BTreeMap<String, Vec<String>>,
    pub body: &'a str,
    pub disable_redirects: bool,
    pub tls: &'a TlsSettings,
    pub timeout: Duration,
    pub max_output: usize,
}

/// Runs one HTTP check: 2xx passing, 429 warning, anything else (or any error) critical.
pub(crate) async fn run(check: &HttpCheck<'_>, tls: &TlsConfigs) -> (Status, String) {
    let method = if check.method.is_empty() {
        "GET".to_string()
    } else {
        check.method.to_string()
    };
    let deadline = Instant::now() + check.timeout;
    let mut url = match Url::parse(check.url, &go_op(&method)) {
        Ok(u) => u,
        Err(e) => return (Status::Critical, e),
    };
    let mut cur_method = method.clone();
    let mut body = check.body.as_bytes().to_vec();
    // Borrowed unless a redirect to another host strips credentials.
    let mut headers = std::borrow::Cow::Borrowed(check.headers);
    let mut redirects = 0;
    loop {
        let req = Request {
            url: &url,
            method: &cur_method,
            headers: &headers,
            body: &body,
        };
        let attempt = within(deadline, exchange(&req, check.tls, tls)).await;
        let (head, mut reader) = match attempt {
            None => {
                return (
                    Status::Critical,
                    format!(
                        "{} {}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                        go_op(&cur_method),
                        super::output::go_quote(&url.original)
                    ),
                )
            }
            Some(Err(e)) => {
                return (
                    Status::Critical,
                    format!(
                        "{} {}: {e}",
                        go_op(&cur_method),
                        super::output::go_quote(&url.original)
                    ),
                )
            }
            Some(Ok(x)) => x,
        };
        if !check.disable_redirects && matches!(head.code, 301 | 302 | 303 | 307 | 308) {
            if let Some(loc) = head.location.as_deref() {
                let next = match url.join(loc, &go_op(&cur_method)) {
                    Ok(u) => u,
                    Err(e) => {
                        return (
                            Status::Critical,
                            format!(
                                "{} {}: failed to parse Location header {}: {e}",
                                go_op(&cur_method),
                                super::output::go_quote(&url.original),
                                super::output::go_quote(loc)
                            ),
                        )
                    }
                };
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return (
                        Status::Critical,
                        format!(
                            "{} {}: stopped after {MAX_REDIRECTS} redirects",
                            go_op(&cur_method),
                            super::output::go_quote(&next.original)
                        ),
                    );
                }
                // Go: 301/302/303 turn into a body-less GET (HEAD stays HEAD); 307/308 replay.
                if matches!(head.code, 301..=303) {
                    if cur_method != "HEAD" {
                        cur_method = "GET".to_string();
                    }
                    body.clear();
                }
                // Credentials are not handed to another host.
                if next.host != url.host || next.port != url.port {
                    headers.to_mut().retain(|k, _| {
                        !k.eq_ignore_ascii_case("authorization")
                            && !k.eq_ignore_ascii_case("cookie")
                            && !k.eq_ignore_ascii_case("www-authenticate")
                    });
                }
                url = next;
                continue;
            }
        }
        let mut out = Tail::new(check.max_output);
        if head.has_body(&cur_method) {
            // Go reads the body under the same client timeout and keeps what it got.
            let _ = within(deadline, reader.read_body(&head, &mut out)).await;
        }
        let result = format!(
            "HTTP {method} {}: {} Output: {}",
            check.url,
            head.status_text(),
            out.text()
        );
        let status = match head.code {
            200..=299 => Status::Passing,
            429 => Status::Warning,
            _ => Status::Critical,
        };
        return (status, result);
    }
}

/// Go's `url.Error` names the operation after the method: "Get", "Post", ...
fn go_op(method: &str) -> String {
    let mut s = String::with_capacity(method.len());
    for (i, c) in method.chars().enumerate() {
        if i == 0 {
            s.extend(c.to_uppercase());
        } else {
            s.extend(c.to_lowercase());
        }
    }
    s
}

#[derive(Debug, Clone)]
struct Url {
    original: String,
    https: bool,
    host: String,
    port: u16,
    /// Path and query, never empty.
    target: String,
    /// `user:password` from the URL, sent as Basic auth like Go does.
    userinfo: Option<String>,
}

impl Url {
    /// `op` is Go's operation name ("Get", "Post") that prefixes request errors.
    fn parse(s: &str, op: &str) -> Result<Url, String> {
        let bad = |why: &str| format!("parse {}: {why}", super::output::go_quote(s));
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("{op} {}: unsupported protocol scheme \"\"", go_q(s)))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "{op} {}: unsupported protocol scheme {}",
                    go_q(s),
                    go_q(other)
                ))
            }
        };
        let rest = rest.split('#').next().unwrap_or("");
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        let target = if target.is_empty() {
            "/".to_string()
        } else if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_string()
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        if hostport.is_empty() {
            return Err(format!("{op} {}: http: no Host in request URL", go_q(s)));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| bad("missing ']' in host"))?;
            let port = match &v6[end + 1..] {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| bad("invalid port"))?,
            };
            (v6[..end].to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse()
                        .map_err(|_| bad(&format!("invalid port \":{p}\" after host")))?,
                ),
                None => (hostport.to_string(), default_port),
            }
        };
        if target.contains([' ', '\r', '\n']) {
            return Err(bad("invalid character in URL"));
        }
        Ok(Url {
            original: s.to_string(),
            https,
            host,
            port,
            target,
            userinfo,
        })
    }

    /// Resolves a Location header against this URL.
    fn join(&self, loc: &str, op: &str) -> Result<Url, String> {
        if loc.contains("://") {
            return Url::parse(loc, op);
        }
        let scheme = if self.https { "https" } else { "http" };
        let authority = self.authority();
        let abs = if let Some(rest) = loc.strip_prefix("//") {
            format!("{scheme}://{rest}")
        } else if loc.starts_with('/') {
            format!("{scheme}://{authority}{loc}")
        } else if loc.starts_with('?') {
            let path = self.target.split('?').next().unwrap_or("/");
            format!("{scheme}://{authority}{path}{loc}")
        } else {
            let path = self.target.split('?').next().unwrap_or("/");
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            format!("{scheme}://{authority}{dir}{loc}")
        };
        Url::parse(&abs, op)
    }

    /// The Host header: the port only when it is not the scheme's default.
    fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            if self.host.contains(':') {
                format!("[{}]", self.host)
            } else {
                self.host.clone()
            }
        } else {
            join_host_port(&self.host, self.port)
        }
    }
}

fn go_q(s: &str) -> String {
    super::output::go_quote(s)
}

struct Request<'a> {
    url: &'a Url,
    method: &'a str,
    headers: &'a BTreeMap<String, Vec<String>>,
    body: &'a [u8],
}

impl Request<'_> {
    fn header<'h>(&'h self, name: &str) -> Option<&'h Vec<String>> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256 + self.body.len());
        out.push_str(self.method);
        out.push(' ');
        out.push_str(&self.url.target);
        out.push_str(" HTTP/1.1\r\n");
        let host = self
            .header("Host")
            .and_then(|v| v.first().cloned())
            .unwrap_or_else(|| self.url.authority());
        push_header(&mut out, "Host", &host);
        if self.header("User-Agent").is_none() {
            push_header(&mut out, "User-Agent", USER_AGENT);
        }
        if self.header("Accept").is_none() {
            push_header(&mut out, "Accept", ACCEPT);
        }
        if let (Some(user), None) = (&self.url.userinfo, self.header("Authorization")) {
            let token = base64::engine::general_purpose::STANDARD.encode(user.as_bytes());
            push_header(&mut out, "Authorization", &format!("Basic {token}"));
        }
        for (k, values) in self.headers {
            // Framing headers are ours to set; Host was sent above.
            if ["host", "content-length", "connection", "transfer-encoding"]
                .iter()
                .any(|h| k.eq_ignore_ascii_case(h))
            {
                continue;
            }
            for v in values {
                push_header(&mut out, k, v);
            }
        }
        // Go sends a length for bodies, and a zero length for methods that expect one.
        if !self.body.is_empty() || matches!(self.method, "POST" | "PUT" | "PATCH") {
            push_header(&mut out, "Content-Length", &self.body.len().to_string());
        }
        push_header(&mut out, "Connection", "close");
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(self.body);
        bytes
    }
}

fn push_header(out: &mut String, k: &str, v: &str) {
    // A header value can never smuggle a line break into the request.
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    out.push_str(&clean(k));
    out.push_str(": ");
    out.push_str(&clean(v));
    out.push_str("\r\n");
}

#[derive(Debug)]
struct Head {
    code: u16,
    reason: String,
    content_length: Option<u64>,
    chunked: bool,
    location: Option<String>,
}

impl Head {
    /// Go's `Response.Status`: "200 OK".
    fn status_text(&self) -> String {
        if self.reason.is_empty() {
            self.code.to_string()
        } else {
            format!("{} {}", self.code, self.reason)
        }
    }

    fn has_body(&self, method: &str) -> bool {
        method != "HEAD" && !matches!(self.code, 100..=199 | 204 | 304)
    }
}

/// Connects, sends the request and reads the response head.
async fn exchange(
    req: &Request<'_>,
    settings: &TlsSettings,
    tls: &TlsConfigs,
) -> Result<(Head, Reader), String> {
    let addrs = resolve(&req.url.host, req.url.port)
        .await
        .map_err(|e| format!("dial tcp: {e}"))?;
    let tcp = dial_tcp(&addrs).await?;
    let mut io: BoxIo = if req.url.https {
        tls.connect(tcp, &req.url.host, settings, Alpn::Http1)
            .await?
    } else {
        Box::pin(tcp)
    };
    io.write_all(&req.encode())
        .await
        .map_err(|e| format!("write: {}", io_error_text(&e)))?;
    io.flush()
        .await
        .map_err(|e| format!("write: {}", io_error_text(&e)))?;
    let mut reader = Reader {
        io,
        buf: Vec::with_capacity(4096),
        eof: false,
    };
    loop {
        let head = reader.read_head().await?;
        // Interim responses (100 Continue, 103 Early Hints) precede the real one.
        if (100..200).contains(&head.code) && head.code != 101 {
            continue;
        }
        return Ok((head, reader));
    }
}

struct Reader {
    io: BoxIo,
    buf: Vec<u8>,
    eof: bool,
}

impl Reader {
    /// Reads more bytes into `buf`; false at end of stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = [0u8; 8192];
        let n = self.io.read(&mut chunk).await?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    async fn read_head(&mut self) -> Result<Head, String> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let code = resp.code.unwrap_or(0);
                    let mut head = Head {
                        code,
                        reason: resp.reason.unwrap_or("").to_string(),
                        content_length: None,
                        chunked: false,
                        location: None,
                    };
                    for h in resp.headers.iter() {
                        let v = String::from_utf8_lossy(h.value).trim().to_string();
                        if h.name.eq_ignore_ascii_case("content-length") {
                            head.content_length = v.parse().ok();
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            head.chunked |= v.to_ascii_lowercase().contains("chunked");
                        } else if h.name.eq_ignore_ascii_case("location") {
                            head.location = Some(v);
                        }
                    }
                    self.buf.drain(..len);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => {
                    return Err(format!(
                    "net/http: HTTP/1.x transport connection broken: malformed HTTP response: {e}"
                ))
                }
            }
            if self.buf.len() > MAX_HEAD {
                return Err(
                    "net/http: HTTP/1.x transport connection broken: response head too large"
                        .to_string(),
                );
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) if self.buf.is_empty() => return Err("EOF".to_string()),
                Ok(false) => return Err("unexpected EOF".to_string()),
                Err(e) => return Err(format!("read: {}", io_error_text(&e))),
            }
        }
    }

    /// Streams the body into `out` (which keeps only its tail). Errors end the body quietly:
    /// Consul reports whatever arrived.
    async fn read_body(&mut self, head: &Head, out: &mut Tail) -> std::io::Result<()> {
        if head.chunked {
            return self.read_chunked(out).await;
        }
        if let Some(mut left) = head.content_length {
            loop {
                let take = (self.buf.len() as u64).min(left) as usize;
                out.push(&self.buf[..take]);
                self.buf.drain(..take);
                left -= take as u64;
                if left == 0 || !self.fill().await? {
                    return Ok(());
                }
            }
        }
        loop {
            out.push(&self.buf);
            self.buf.clear();
            if !self.fill().await? {
                return Ok(());
            }
        }
    }

    async fn read_chunked(&mut self, out: &mut Tail) -> std::io::Result<()> {
        loop {
            let line = self.read_line().await?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let mut left = u64::from_str_radix(size_text, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
            })?;
            if left == 0 {
                return Ok(());
            }
            while left > 0 {
                if self.buf.is_empty() && !self.fill().await? {
                    return Ok(());
                }
                let take = (self.buf.len() as u64).min(left) as usize;
                out.push(&self.buf[..take]);
                self.buf.drain(..take);
                left -= take as u64;
            }
            self.read_line().await?;
        }
    }

    async fn read_line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line = String::from_utf8_lossy(&self.buf[..i])
                    .trim_end_matches('\r')
                    .to_string();
                self.buf.drain(..=i);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD || !self.fill().await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://127.0.0.1:8080/health?x=1#frag", "Get").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.https),
            ("127.0.0.1", 8080, false)
        );
        assert_eq!(u.target, "/health?x=1");
        let u = Url::parse("https://[::1]/", "Get").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.https), ("::1", 443, true));
        assert_eq!(u.authority(), "[::1]");
        let u = Url::parse("http://user:pw@example.com?q", "Get").unwrap();
        assert_eq!(u.target, "/?q");
        assert_eq!(u.userinfo.as_deref(), Some("user:pw"));
        assert_eq!(
            Url::parse("ftp://x/", "Get").unwrap_err(),
            "Get \"ftp://x/\": unsupported protocol scheme \"ftp\""
        );
        assert!(Url::parse("http://h:port/", "Get").is_err());
    }

    #[test]
    fn joins_locations() {
        let u = Url::parse("http://h:81/a/b?q", "Get").unwrap();
        assert_eq!(u.join("/c", "Get").unwrap().original, "http://h:81/c");
        assert_eq!(u.join("c", "Get").unwrap().original, "http://h:81/a/c");
        assert_eq!(u.join("//o/p", "Get").unwrap().original, "http://o/p");
        assert_eq!(u.join("https://x/", "Get").unwrap().original, "https://x/");
    }

    #[test]
    fn encodes_requests_like_consul() {
        let url = Url::parse("http://127.0.0.1:9/h", "Get").unwrap();
        let mut headers = BTreeMap::new();
        headers.insert("X-A".to_string(), vec!["1".to_string(), "2".to_string()]);
        let req = Request {
            url: &url,
            method: "POST",
            headers: &headers,
            body: b"hi",
        };
        let text = String::from_utf8(req.encode()).unwrap();
        assert_eq!(
            text,
            "POST /h HTTP/1.1\r\nHost: 127.0.0.1:9\r\nUser-Agent: Consul Health Check\r\n\
             Accept: text/plain, text/*, */*\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 2\r\n\
             Connection: close\r\n\r\nhi"
        );
    }

    #[test]
    fn go_op_names() {
        assert_eq!(go_op("GET"), "Get");
        assert_eq!(go_op("post"), "Post");
    }
}
