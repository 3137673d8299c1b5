//! A small keep-alive HTTP/1.1 client over tokio: one request in flight per connection,
//! responses framed by Content-Length or chunked encoding (httparse). It keeps no read
//! buffer while idle, so 50,000 parked connections cost little on the generator side.
use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// The parts of a response the harness uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resp {
    pub status: u16,
    /// `X-Consul-Index`, when present.
    pub index: Option<u64>,
    pub body_len: usize,
    /// The (de-chunked) body, only when asked for.
    pub body: Option<Vec<u8>>,
}

/// One parsed response and how many buffer bytes it used.
#[derive(Debug, PartialEq)]
pub struct Parsed {
    pub resp: Resp,
    pub consumed: usize,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parses one complete response from `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_response(buf: &[u8], keep_body: bool) -> io::Result<Option<Parsed>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let head = match r.parse(buf).map_err(|e| bad(e.to_string()))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = r.code.unwrap_or(0);
    let mut len = None;
    let mut chunked = false;
    let mut index = None;
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).map_err(|e| bad(e.to_string()))?;
            len = Some(v.trim().parse::<usize>().map_err(|e| bad(e.to_string()))?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h.value.eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("x-consul-index") {
            index = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        }
    }
    let mut resp = Resp {
        status,
        index,
        ..Resp::default()
    };
    if chunked {
        let mut pos = head;
        let mut body = Vec::new();
        loop {
            let (start, size) =
                match httparse::parse_chunk_size(&buf[pos..]).map_err(|_| bad("bad chunk size"))? {
                    httparse::Status::Complete(v) => v,
                    httparse::Status::Partial => return Ok(None),
                };
            let size = size as usize;
            let data = pos + start;
            if size == 0 {
                // Last chunk: skip (empty) trailers up to the final CRLF.
                let rest = &buf[data..];
                let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                if end != 0 {
                    let Some(t) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
                        return Ok(None);
                    };
                    pos = data + t + 4;
                } else {
                    pos = data + 2;
                }
                break;
            }
            if buf.len() < data + size + 2 {
                return Ok(None);
            }
            resp.body_len += size;
            if keep_body {
                body.extend_from_slice(&buf[data..data + size]);
            }
            pos = data + size + 2;
        }
        resp.body = keep_body.then_some(body);
        return Ok(Some(Parsed {
            resp,
            consumed: pos,
        }));
    }
    let len = len.unwrap_or(0);
    if buf.len() < head + len {
        return Ok(None);
    }
    resp.body_len = len;
    if keep_body {
        resp.body = Some(buf[head..head + len].to_vec());
    }
    Ok(Some(Parsed {
        resp,
        consumed: head + len,
    }))
}

/// `GET path` with the headers every request carries.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: perf\r\n\r\n").into_bytes()
}

/// `METHOD path` with a body.
pub fn with_body(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: perf\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A keep-alive connection.
pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to `addr`, from `src` (port chosen by the kernel) when given.
    pub async fn connect(addr: SocketAddr, src: Option<IpAddr>) -> io::Result<Conn> {
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = src {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        let s = sock.connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn { s, buf: Vec::new() })
    }

    /// Sends `req` and reads one response.
    pub async fn send(&mut self, req: &[u8], keep_body: bool) -> io::Result<Resp> {
        self.s.write_all(req).await?;
        self.read_response(keep_body).await
    }

    /// Reads one response (for a request already written).
    pub async fn read_response(&mut self, keep_body: bool) -> io::Result<Resp> {
        loop {
            if !self.buf.is_empty() {
                if let Some(p) = parse_response(&self.buf, keep_body)? {
                    self.buf.drain(..p.consumed);
                    if self.buf.is_empty() {
                        // Give the memory back: idle connections should hold none.
                        self.buf = Vec::new();
                    }
                    return Ok(p.resp);
                }
            }
            // Wait for bytes before growing the buffer, so parked connections stay small.
            self.s.readable().await?;
            self.buf.reserve(16 * 1024);
            match self.s.try_read_buf(&mut self.buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes a request without waiting for the answer.
    pub async fn write(&mut self, req: &[u8]) -> io::Result<()> {
        self.s.write_all(req).await
    }
}

/// One-shot request on a fresh connection (setup and checks, not load).
pub async fn request(addr: SocketAddr, req: &[u8]) -> io::Result<Resp> {
    let mut c = Conn::connect(addr, None).await?;
    c.send(req, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_response() {
        let raw =
            b"HTTP/1.1 200 OK\r\nX-Consul-Index: 42\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1";
        let p = parse_response(raw, true).unwrap().unwrap();
        assert_eq!(p.resp.status, 200);
        assert_eq!(p.resp.index, Some(42));
        assert_eq!(p.resp.body.as_deref(), Some(&b"hello"[..]));
        assert_eq!(p.consumed, raw.len() - 8);
        // Every prefix is incomplete, never an error.
        for n in 0..p.consumed {
            assert_eq!(parse_response(&raw[..n], true).unwrap(), None, "prefix {n}");
        }
    }

    #[test]
    fn chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let p = parse_response(raw, true).unwrap().unwrap();
        assert_eq!(p.resp.body.as_deref(), Some(&b"abcde"[..]));
        assert_eq!(p.resp.body_len, 5);
        assert_eq!(p.consumed, raw.len());
        for n in 0..raw.len() {
            assert_eq!(
                parse_response(&raw[..n], false).unwrap(),
                None,
                "prefix {n}"
            );
        }
        let p = parse_response(raw, false).unwrap().unwrap();
        assert_eq!(p.resp.body, None);
        assert_eq!(p.resp.body_len, 5);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
    }

    #[test]
    fn request_bytes() {
        assert_eq!(
            get("/v1/kv/a"),
            b"GET /v1/kv/a HTTP/1.1\r\nHost: perf\r\n\r\n"
        );
        let r = String::from_utf8(with_body("PUT", "/v1/kv/a", b"xyz")).unwrap();
        assert!(r.starts_with("PUT /v1/kv/a HTTP/1.1\r\n"));
        assert!(r.ends_with("Content-Length: 3\r\n\r\nxyz"));
    }
}
