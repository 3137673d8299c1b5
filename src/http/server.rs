//! The HTTP/1.1 connection loop on glommio sockets.
//!
//! One local task per connection owns the socket and two reusable buffers. Requests are
//! parsed with `httparse` straight out of the read buffer and handled strictly in order;
//! responses are queued in the write buffer and only written when the loop would otherwise
//! wait (for more input or for a slow handler), so a pipelined burst read in one `recv`
//! is answered with one `send`.
//!
//! While a handler is pending (a blocking query can park for ten minutes) the loop keeps
//! reading: bytes of pipelined requests are buffered, a reset drops the handler future at
//! once, and an EOF drops it after a short grace. The grace exists because a client may
//! half-close after sending (`nc -N`, some scripts) and still expect its answer, while a
//! Go client abandoning a blocking query also sends a FIN; the two look identical here.

use super::request::{decode_path, split_target, Method, Query, Request, RequestError};
use super::response::{has_token, ConnHeader, Response};
use bytes::{Buf, Bytes, BytesMut};
use futures::future::{select, Either, LocalBoxFuture};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use futures::FutureExt;
use glommio::net::{TcpListener, TcpStream};
use glommio::timer::Timer;
use glommio::TaskQueueHandle;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

/// Application entry point: turns one fully read request into a response.
///
/// The future must be `'static` because it may outlive nothing but the connection task;
/// it is dropped (cancelled) when the client goes away before it completes.
pub trait Handler: 'static {
    fn handle(&self, req: Request) -> LocalBoxFuture<'static, Response>;
}

impl<F> Handler for F
where
    F: Fn(Request) -> LocalBoxFuture<'static, Response> + 'static,
{
    fn handle(&self, req: Request) -> LocalBoxFuture<'static, Response> {
        self(req)
    }
}

/// Go's `net/http` default for header bytes is 1 MiB; 64 KiB fits any Consul client
/// (tokens, tags and consistency flags are small) and bounds per-connection memory.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Consul's own default `kv_max_value_size` is 512 KiB and txn payloads are bigger;
/// 8 MiB leaves room for both and for snapshot-sized JSON bodies.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest snapshot accepted for restore.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: usize = 4 << 30;
/// Only counted while waiting for client bytes (or socket space), never while a handler
/// runs, so blocking queries are not affected. Longer than Go's client-side idle pool
/// timeout (90 s) so the client, not us, retires idle keep-alive connections.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Responses held back for one batched write when a pipelined burst is being answered.
pub const DEFAULT_MAX_PIPELINED: usize = 32;
/// How long a handler may still finish after the client half-closed its side.
pub const DEFAULT_HALF_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Per-connection limits. Build with `Limits { max_body_bytes: .., ..Limits::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus headers (and chunked trailers); larger heads get 431.
    pub max_header_bytes: usize,
    /// Decoded body size; larger bodies get 413 without being buffered.
    pub max_body_bytes: usize,
    /// The same for `PUT /v1/snapshot`, whose body is a whole snapshot file.
    pub max_snapshot_bytes: usize,
    /// Longest wait for the client to send (or accept) bytes; then the connection closes.
    pub idle_timeout: Duration,
    /// At most this many responses are queued before they are written.
    pub max_pipelined: usize,
    /// See [`DEFAULT_HALF_CLOSE_GRACE`].
    pub half_close_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_pipelined: DEFAULT_MAX_PIPELINED,
            half_close_grace: DEFAULT_HALF_CLOSE_GRACE,
        }
    }
}

/// Smallest read; also the initial buffer size.
const READ_CHUNK: usize = 16 * 1024;
/// Largest single read while receiving a big body.
const MAX_READ: usize = 1024 * 1024;
/// A read buffer this large is replaced by a fresh small one once it is empty again.
const SHRINK_ABOVE: usize = 256 * 1024;
/// Read-ahead bound while a handler is pending.
const BACKGROUND_READ_CAP: usize = 64 * 1024;
/// Queued response bytes that force a write even inside a pipelined burst.
const WBUF_FLUSH: usize = 64 * 1024;
/// Bodies at least this large are written from the handler's buffer instead of copied.
const LARGE_BODY: usize = 32 * 1024;
/// More header lines than this get 431, like too many header bytes.
const MAX_HEADERS: usize = 128;
/// A chunk-size line (with extensions) longer than this is malformed.
const MAX_CHUNK_LINE: usize = 4096;
/// After an error response we keep reading (and discarding) for this long before the
/// socket is closed: closing with unread input makes the kernel send RST, which can
/// destroy the error response before the client has read it.
const LINGER: Duration = Duration::from_secs(1);
/// Pause after the process ran out of descriptors or memory while accepting.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

// Linux errno values for resource exhaustion on accept(2); std has no stable ErrorKind
// for them. glommio only runs on Linux.
const ENOMEM: i32 = 12;
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
const ENOBUFS: i32 = 105;

/// Accepts connections forever, serving each in its own local task (in `tq` when given).
///
/// Returns only on a listener error that retrying cannot fix; per-connection errors never
/// reach here.
pub async fn serve(
    listener: TcpListener,
    handler: Rc<dyn Handler>,
    limits: Limits,
    tq: Option<TaskQueueHandle>,
) -> io::Result<()> {
    let limits = Rc::new(limits);
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                let e = io::Error::from(e);
                match (e.kind(), e.raw_os_error()) {
                    (
                        io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock,
                        _,
                    ) => {}
                    (_, Some(ENOMEM | ENFILE | EMFILE | ENOBUFS)) => {
                        log::warn!("http accept: {e}; backing off");
                        glommio::timer::sleep(ACCEPT_BACKOFF).await;
                    }
                    _ => return Err(e),
                }
                continue;
            }
        };
        let task = run_connection(stream, handler.clone(), limits.clone());
        match tq {
            Some(tq) => {
                glommio::spawn_local_into(task, tq)
                    .map_err(io::Error::from)?
                    .detach();
            }
            None => {
                glommio::spawn_local(task).detach();
            }
        }
    }
}

async fn run_connection(stream: TcpStream, handler: Rc<dyn Handler>, limits: Rc<Limits>) {
    // peer_addr fails only if the peer is already gone.
    let Ok(remote) = stream.peer_addr() else {
        return;
    };
    // Responses are written whole; Nagle would only delay the last segment.
    let _ = stream.set_nodelay(true);
    let conn = Conn {
        stream,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        wbuf: BytesMut::with_capacity(READ_CHUNK),
        queued: 0,
        limits,
        remote,
        peer_eof: false,
    };
    conn.run(&*handler).await;
}

/// Why the request loop stopped.
#[derive(Debug)]
enum Stop {
    /// The peer went away, timed out or a write failed: nothing more can be said.
    Closed,
    /// The request is unacceptable: answer with its status, then close.
    Reject(RequestError),
}

impl From<RequestError> for Stop {
    fn from(e: RequestError) -> Self {
        Stop::Reject(e)
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
}

/// A parsed request head plus what the connection needs to know about it.
#[derive(Debug)]
struct Head {
    req: Request,
    http10: bool,
    keep_alive: bool,
    framing: Framing,
    expect_continue: bool,
}

struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Responses in `wbuf` not yet written.
    queued: usize,
    limits: Rc<Limits>,
    remote: SocketAddr,
    peer_eof: bool,
}

impl Conn {
    async fn run(mut self, handler: &dyn Handler) {
        loop {
            // An endless pipelined stream never makes a read wait; let other tasks run.
            glommio::yield_if_needed().await;
            match self.serve_one(handler).await {
                Ok(true) => {}
                Ok(false) => return self.close_gracefully().await,
                Err(Stop::Closed) => return,
                Err(Stop::Reject(e)) => return self.reject(e).await,
            }
        }
    }

    /// Reads, handles and queues one request. `Ok(false)` means close after writing.
    async fn serve_one(&mut self, handler: &dyn Handler) -> Result<bool, Stop> {
        let head = self.read_head().await?;
        let body = self.read_body(&head).await?;
        let mut req = head.req;
        req.body = body;
        let head_only = req.method == Method::Head;
        let resp = self
            .run_handler(handler.handle(req))
            .await
            .ok_or(Stop::Closed)?;
        // A streamed body ends only when the peer goes away: the connection ends with it.
        let keep_alive = head.keep_alive && !resp.wants_close() && resp.stream.is_none();
        let conn = if !keep_alive {
            ConnHeader::Close
        } else if head.http10 {
            ConnHeader::KeepAlive
        } else {
            ConnHeader::None
        };
        self.queue_response(&resp, head_only, conn).await?;
        if keep_alive && (self.queued >= self.limits.max_pipelined || self.wbuf.len() >= WBUF_FLUSH)
        {
            self.flush().await?;
        }
        Ok(keep_alive)
    }

    async fn read_head(&mut self) -> Result<Head, Stop> {
        if self.rbuf.is_empty() && self.rbuf.capacity() > SHRINK_ABOVE {
            self.rbuf = BytesMut::with_capacity(READ_CHUNK);
        }
        loop {
            if !self.rbuf.is_empty() {
                if let Some((head, len)) = parse_head(&self.rbuf, self.remote, &self.limits)? {
                    self.rbuf.advance(len);
                    return Ok(head);
                }
                if self.rbuf.len() >= self.limits.max_header_bytes {
                    return Err(RequestError::HeadersTooLarge.into());
                }
            }
            self.read_more(0).await?;
        }
    }

    fn body_limit(&self, head: &Head) -> u64 {
        if head.req.path == "/v1/snapshot" {
            self.limits.max_snapshot_bytes as u64
        } else {
            self.limits.max_body_bytes as u64
        }
    }

    async fn read_body(&mut self, head: &Head) -> Result<Bytes, Stop> {
        match head.framing {
            Framing::Empty => Ok(Bytes::new()),
            Framing::Length(n) => {
                // Checked before any 100 Continue, so an oversized upload is never sent.
                if n > self.body_limit(head) {
                    return Err(RequestError::BodyTooLarge.into());
                }
                let n = n as usize;
                if head.expect_continue && self.rbuf.len() < n {
                    self.wbuf
                        .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                while self.rbuf.len() < n {
                    self.read_more(n - self.rbuf.len()).await?;
                }
                Ok(self.take_body(n))
            }
            Framing::Chunked => {
                if head.expect_continue && self.rbuf.is_empty() {
                    self.wbuf
                        .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                let max = self.body_limit(head);
                self.read_chunked(max).await
            }
        }
    }

    /// Splits the first `n` buffered bytes off as the body.
    fn take_body(&mut self, n: usize) -> Bytes {
        // A split shares the read buffer's allocation; handlers may keep bodies for a long
        // time (KV values), so a small body must not pin a large buffer: copy it instead.
        if n * 2 >= self.rbuf.capacity() {
            self.rbuf.split_to(n).freeze()
        } else {
            let body = Bytes::copy_from_slice(&self.rbuf[..n]);
            self.rbuf.advance(n);
            body
        }
    }

    async fn read_chunked(&mut self, max: u64) -> Result<Bytes, Stop> {
        let mut body = BytesMut::new();
        loop {
            let (line, size) = loop {
                match httparse::parse_chunk_size(&self.rbuf) {
                    Ok(httparse::Status::Complete(v)) => break v,
                    Ok(httparse::Status::Partial) => {
                        if self.rbuf.len() > MAX_CHUNK_LINE {
                            return Err(RequestError::BadRequest("chunk size line too long").into());
                        }
                        self.read_more(0).await?;
                    }
                    Err(_) => return Err(RequestError::BadRequest("invalid chunk size").into()),
                }
            };
            if size == 0 {
                self.rbuf.advance(line);
                self.skip_trailers().await?;
                return Ok(body.freeze());
            }
            if body.len() as u64 + size > max {
                return Err(RequestError::BodyTooLarge.into());
            }
            let size = size as usize;
            let need = line + size + 2;
            while self.rbuf.len() < need {
                self.read_more(need - self.rbuf.len()).await?;
            }
            if &self.rbuf[line + size..need] != b"\r\n" {
                return Err(RequestError::BadRequest("chunk not terminated by CRLF").into());
            }
            body.extend_from_slice(&self.rbuf[line..line + size]);
            self.rbuf.advance(need);
        }
    }

    /// Consumes the trailer section after the last chunk; trailers are not exposed.
    async fn skip_trailers(&mut self) -> Result<(), Stop> {
        let mut seen = 0;
        loop {
            match self.rbuf.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.rbuf.advance(2);
                    return Ok(());
                }
                Some(i) => {
                    seen += i + 2;
                    self.rbuf.advance(i + 2);
                    if seen > self.limits.max_header_bytes {
                        return Err(RequestError::HeadersTooLarge.into());
                    }
                }
                None => {
                    if seen + self.rbuf.len() > self.limits.max_header_bytes {
                        return Err(RequestError::HeadersTooLarge.into());
                    }
                    self.read_more(0).await?;
                }
            }
        }
    }

    /// Waits until more bytes arrived, writing queued output first so the peer is never
    /// left waiting for answers to requests it already sent.
    async fn read_more(&mut self, want: usize) -> Result<usize, Stop> {
        if !self.wbuf.is_empty() {
            self.flush().await?;
        }
        if self.peer_eof {
            return Err(Stop::Closed);
        }
        let len = self.rbuf.len();
        self.rbuf.resize(len + want.clamp(READ_CHUNK, MAX_READ), 0);
        let res = read_timeout(
            &mut self.stream,
            &mut self.rbuf[len..],
            self.limits.idle_timeout,
        )
        .await;
        match res {
            Ok(0) => {
                self.rbuf.truncate(len);
                self.peer_eof = true;
                Err(Stop::Closed)
            }
            Ok(n) => {
                self.rbuf.truncate(len + n);
                Ok(n)
            }
            Err(e) => {
                log::trace!("http read from {}: {e}", self.remote);
                self.rbuf.truncate(len);
                Err(Stop::Closed)
            }
        }
    }

    /// Drives the handler; `None` means the peer is gone and the handler was dropped.
    async fn run_handler(&mut self, fut: LocalBoxFuture<'static, Response>) -> Option<Response> {
        let mut fut = AssertUnwindSafe(fut).catch_unwind();
        if let Poll::Ready(r) = futures::poll!(&mut fut) {
            return Some(unpanic(r));
        }
        // The handler waits (shard hop, blocking query): answers queued for earlier
        // pipelined requests must not wait with it.
        if !self.wbuf.is_empty() && self.flush().await.is_err() {
            return None;
        }
        loop {
            if self.peer_eof {
                let grace = Timer::new(self.limits.half_close_grace);
                return match select(fut, grace).await {
                    Either::Left((r, _)) => Some(unpanic(r)),
                    Either::Right(_) => None,
                };
            }
            if self.rbuf.len() >= BACKGROUND_READ_CAP {
                return Some(unpanic(fut.await));
            }
            let len = self.rbuf.len();
            self.rbuf.resize(len + READ_CHUNK, 0);
            let outcome = {
                let read = self.stream.read(&mut self.rbuf[len..]);
                match select(&mut fut, read).await {
                    Either::Left((r, _)) => Ok(r),
                    Either::Right((res, _)) => Err(res),
                }
            };
            match outcome {
                Ok(r) => {
                    self.rbuf.truncate(len);
                    return Some(unpanic(r));
                }
                Err(Ok(0)) => {
                    self.rbuf.truncate(len);
                    self.peer_eof = true;
                }
                Err(Ok(n)) => self.rbuf.truncate(len + n),
                Err(Err(e)) => {
                    log::trace!("http peer {} lost during handler: {e}", self.remote);
                    self.rbuf.truncate(len);
                    return None;
                }
            }
        }
    }

    async fn queue_response(
        &mut self,
        resp: &Response,
        head_only: bool,
        conn: ConnHeader,
    ) -> Result<(), Stop> {
        let with_body = resp.encode_head(&mut self.wbuf, head_only, conn);
        self.queued += 1;
        if let Some(rx) = resp.stream.as_ref().and_then(|s| s.take()) {
            return if with_body {
                self.stream_body(rx).await
            } else {
                Ok(())
            };
        }
        if with_body {
            if resp.body.len() >= LARGE_BODY {
                self.flush().await?;
                write_all_timeout(&mut self.stream, &resp.body, self.limits.idle_timeout)
                    .await
                    .map_err(|_| Stop::Closed)?;
            } else {
                self.wbuf.extend_from_slice(&resp.body);
            }
        }
        Ok(())
    }

    /// Writes each chunk as it arrives until the sender closes (then the last chunk) or a
    /// write fails (the peer left: dropping `rx` tells the sender).
    async fn stream_body(
        &mut self,
        mut rx: futures::channel::mpsc::Receiver<Bytes>,
    ) -> Result<(), Stop> {
        use futures::StreamExt;
        self.flush().await?;
        let mut scratch = [0u8; 512];
        loop {
            // Watch the socket while idle, so a client that leaves a quiet stream is noticed.
            let chunk = match select(rx.next(), self.stream.read(&mut scratch)).await {
                Either::Left((Some(c), _)) => c,
                Either::Left((None, _)) => break,
                Either::Right((Ok(0) | Err(_), _)) => return Err(Stop::Closed),
                Either::Right((Ok(_), _)) => continue,
            };
            if chunk.is_empty() {
                continue;
            }
            self.wbuf
                .extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            self.wbuf.extend_from_slice(&chunk);
            self.wbuf.extend_from_slice(b"\r\n");
            self.flush().await?;
        }
        self.wbuf.extend_from_slice(b"0\r\n\r\n");
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if !self.wbuf.is_empty() {
            if let Err(e) =
                write_all_timeout(&mut self.stream, &self.wbuf, self.limits.idle_timeout).await
            {
                log::trace!("http write to {}: {e}", self.remote);
                return Err(Stop::Closed);
            }
            self.wbuf.clear();
        }
        self.queued = 0;
        Ok(())
    }

    async fn reject(mut self, e: RequestError) {
        log::debug!("http request from {} rejected: {e}", self.remote);
        let resp =
            Response::new(e.status()).with_body("text/plain; charset=utf-8", format!("{e}\n"));
        resp.encode_head(&mut self.wbuf, false, ConnHeader::Close);
        self.wbuf.extend_from_slice(&resp.body);
        self.close_gracefully().await;
    }

    /// Writes what is queued, sends FIN, and discards input until the peer closes (or
    /// [`LINGER`] passes) so our last response is not lost to a RST.
    async fn close_gracefully(mut self) {
        if self.flush().await.is_err() {
            return;
        }
        let _ = self.stream.shutdown(Shutdown::Write).await;
        if self.peer_eof {
            return;
        }
        self.rbuf.clear();
        self.rbuf.resize(READ_CHUNK, 0);
        let stream = &mut self.stream;
        let buf = &mut self.rbuf[..];
        let drain = pin!(async move {
            while let Ok(n) = stream.read(buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        select(drain, Timer::new(LINGER)).await;
    }
}

fn unpanic(r: std::thread::Result<Response>) -> Response {
    r.unwrap_or_else(|_| {
        log::error!("http handler panicked");
        Response::new(500).with_body("text/plain; charset=utf-8", "internal error\n")
    })
}

/// Parses a request head from the front of `buf`; `Ok(None)` when incomplete.
fn parse_head(
    buf: &[u8],
    remote: SocketAddr,
    limits: &Limits,
) -> Result<Option<(Head, usize)>, RequestError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadersTooLarge),
        Err(_) => return Err(RequestError::BadRequest("malformed request head")),
    };
    if len > limits.max_header_bytes {
        return Err(RequestError::HeadersTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(RequestError::BadRequest("malformed request line"));
    };
    let http10 = minor == 0;
    let (raw_path, raw_query) = split_target(target)?;
    let path = decode_path(raw_path)?;

    let mut headers = Vec::with_capacity(parsed.headers.len());
    let mut content_length: Option<u64> = None;
    let mut te_seen = false;
    let mut te_last_chunked = false;
    let mut te_other = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    for h in parsed.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = match std::str::from_utf8(h.value) {
            Ok(v) => v.to_owned(),
            Err(_) => String::from_utf8_lossy(h.value).into_owned(),
        };
        match name.as_str() {
            "content-length" => {
                // Repeated equal values are tolerated (RFC 9112 6.3); differing ones are
                // a smuggling attempt or a broken client.
                for part in value.split(',') {
                    let part = part.trim();
                    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(RequestError::BadRequest("invalid content-length"));
                    }
                    let n: u64 = part
                        .parse()
                        .map_err(|_| RequestError::BadRequest("invalid content-length"))?;
                    if content_length.is_some_and(|prev| prev != n) {
                        return Err(RequestError::BadRequest("conflicting content-length"));
                    }
                    content_length = Some(n);
                }
            }
            "transfer-encoding" => {
                for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    if te_last_chunked {
                        // `chunked` must be the final coding, applied once.
                        return Err(RequestError::BadRequest(
                            "chunked is not the final encoding",
                        ));
                    }
                    te_seen = true;
                    if coding.eq_ignore_ascii_case("chunked") {
                        te_last_chunked = true;
                    } else {
                        te_other = true;
                    }
                }
            }
            "connection" => {
                conn_close |= has_token(&value, "close");
                conn_keep_alive |= has_token(&value, "keep-alive");
            }
            // HTTP/1.0 has no 100 Continue; RFC 9110 10.1.1 says to ignore it there.
            "expect" if !http10 => {
                if value.trim().eq_ignore_ascii_case("100-continue") {
                    expect_continue = true;
                } else {
                    return Err(RequestError::ExpectationFailed);
                }
            }
            _ => {}
        }
        headers.push((name, value));
    }

    let framing = if te_seen {
        if !te_last_chunked {
            return Err(RequestError::BadRequest("body length cannot be determined"));
        }
        if te_other {
            return Err(RequestError::UnsupportedTransferEncoding);
        }
        Framing::Chunked
    } else {
        match content_length {
            None | Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    let mut keep_alive = if http10 {
        conn_keep_alive && !conn_close
    } else {
        !conn_close
    };
    // Both framings present (or chunked from a 1.0 client): the body was read by the
    // Transfer-Encoding rule, but an intermediary may disagree, so do not reuse the
    // connection (RFC 9112 6.1, 6.3).
    if te_seen && (content_length.is_some() || http10) {
        keep_alive = false;
    }

    let req = Request {
        method: Method::parse(method),
        path,
        raw_path: target.to_owned(),
        query: Query::parse(raw_query),
        headers,
        body: Bytes::new(),
        remote,
    };
    Ok(Some((
        Head {
            req,
            http10,
            keep_alive,
            framing,
            expect_continue,
        },
        len,
    )))
}

/// One read that fails with `TimedOut` if no byte arrives within `dur`.
async fn read_timeout(stream: &mut TcpStream, buf: &mut [u8], dur: Duration) -> io::Result<usize> {
    // The timer is only created when the read actually has to wait.
    let mut timer: Option<Timer> = None;
    poll_fn(|cx| {
        if let Poll::Ready(r) = Pin::new(&mut *stream).poll_read(cx, buf) {
            return Poll::Ready(r);
        }
        let timer = timer.get_or_insert_with(|| Timer::new(dur));
        match Pin::new(timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Writes all of `data`, failing with `TimedOut` if the socket stays full for `dur`.
async fn write_all_timeout(
    stream: &mut TcpStream,
    mut data: &[u8],
    dur: Duration,
) -> io::Result<()> {
    while !data.is_empty() {
        let mut timer: Option<Timer> = None;
        let n = poll_fn(|cx| {
            if let Poll::Ready(r) = Pin::new(&mut *stream).poll_write(cx, data) {
                return Poll::Ready(r);
            }
            let timer = timer.get_or_insert_with(|| Timer::new(dur));
            match Pin::new(timer).poll(cx) {
                Poll::Ready(_) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::oneshot;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Instant;

    /// Client-side safety net so a broken server fails a test instead of hanging it.
    const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Flags the test thread can observe from handler futures on the server thread.
    #[derive(Default)]
    struct Probe {
        forever_dropped: AtomicBool,
        handled: AtomicUsize,
    }

    struct DropFlag(Arc<Probe>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.forever_dropped.store(true, Ordering::SeqCst);
        }
    }

    fn describe(req: &Request) -> String {
        let query: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "{} {} raw={} q=[{}] body={}",
            req.method,
            req.path,
            req.raw_path,
            query.join(","),
            String::from_utf8_lossy(&req.body)
        )
    }

    fn test_handler(probe: Arc<Probe>) -> Rc<dyn Handler> {
        Rc::new(move |req: Request| -> LocalBoxFuture<'static, Response> {
            probe.handled.fetch_add(1, Ordering::SeqCst);
            let probe = probe.clone();
            async move {
                match req.path.as_str() {
                    "/sleep" => glommio::timer::sleep(Duration::from_millis(30)).await,
                    "/forever" => {
                        let _flag = DropFlag(probe);
                        futures::future::pending::<()>().await;
                    }
                    "/panic" => panic!("handler panic (expected by the test)"),
                    "/close" => {
                        return Response::new(200)
                            .with_header("Connection", "close")
                            .with_body("text/plain", "bye");
                    }
                    "/big" => {
                        return Response::new(200).with_body("text/plain", vec![b'x'; 100_000])
                    }
                    _ => {}
                }
                let text = describe(&req);
                Response::new(200)
                    .with_header("X-Test", "1")
                    .with_body("text/plain", text)
            }
            .boxed_local()
        })
    }

    struct TestServer {
        addr: SocketAddr,
        probe: Arc<Probe>,
        stop: Option<oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl TestServer {
        fn start(limits: Limits) -> TestServer {
            let probe = Arc::new(Probe::default());
            let (addr_tx, addr_rx) = mpsc::channel();
            let (stop, stop_rx) = oneshot::channel::<()>();
            let server_probe = probe.clone();
            let thread = std::thread::spawn(move || {
                let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                    .io_memory(1 << 20)
                    .make()
                    .expect("executor");
                ex.run(async move {
                    let listener =
                        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind");
                    addr_tx.send(listener.local_addr().expect("addr")).unwrap();
                    let server = pin!(serve(listener, test_handler(server_probe), limits, None));
                    match select(server, stop_rx).await {
                        Either::Left((res, _)) => panic!("serve returned: {res:?}"),
                        Either::Right(_) => {}
                    }
                });
            });
            let addr = addr_rx.recv().expect("server address");
            TestServer {
                addr,
                probe,
                stop: Some(stop),
                thread: Some(thread),
            }
        }

        fn connect(&self) -> Client {
            let stream = std::net::TcpStream::connect(self.addr).expect("connect");
            stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            stream.set_nodelay(true).unwrap();
            Client {
                stream,
                buf: Vec::new(),
            }
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    struct Client {
        stream: std::net::TcpStream,
        buf: Vec<u8>,
    }

    impl Client {
        fn send(&mut self, data: &[u8]) {
            self.stream.write_all(data).expect("write");
        }

        fn fill(&mut self) -> usize {
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read");
            self.buf.extend_from_slice(&chunk[..n]);
            n
        }

        /// Reads exactly the bytes of one response (head, then Content-Length bytes).
        fn response(&mut self, head_only: bool) -> Reply {
            let head_end = loop {
                if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                assert!(self.fill() > 0, "connection closed before a response");
            };
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut slots);
            assert!(parsed.parse(&self.buf[..head_end]).unwrap().is_complete());
            let status = parsed.code.unwrap();
            let headers: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.parse().unwrap());
            let len = if head_only || status == 100 { 0 } else { len };
            while self.buf.len() < head_end + len {
                assert!(self.fill() > 0, "connection closed inside a body");
            }
            let body = self.buf[head_end..head_end + len].to_vec();
            self.buf.drain(..head_end + len);
            Reply {
                status,
                headers,
                body,
            }
        }

        /// True when the server closed the connection and sent nothing more.
        fn at_eof(&mut self) -> bool {
            self.buf.is_empty() && matches!(self.fill(), 0)
        }
    }

    fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
    }

    #[test]
    fn simple_get() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        c.send(&get("/v1/agent/self"));
        let r = c.response(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-test"), Some("1"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.text(), "GET /v1/agent/self raw=/v1/agent/self q=[] body=");
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        assert_eq!(r.header("connection"), None);
    }

    #[test]
    fn query_and_path_decoding_over_the_wire() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        c.send(&get(
            "/v1/kv/a%20b/c+d?recurse&tag=a&tag=b%2Fc&x=1+2%21&dc=",
        ));
        let r = c.response(false);
        assert_eq!(
            r.text(),
            "GET /v1/kv/a b/c+d raw=/v1/kv/a%20b/c+d?recurse&tag=a&tag=b%2Fc&x=1+2%21&dc= \
             q=[recurse=,tag=a,tag=b/c,x=1 2!,dc=] body="
        );
        c.send(&get("/v1/kv/%zz"));
        assert_eq!(c.response(false).status, 400);
        assert!(c.at_eof());
    }

    #[test]
    fn keep_alive_sequential_requests() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        for i in 0..5 {
            c.send(&get(&format!("/seq/{i}")));
            let r = c.response(false);
            assert_eq!(r.status, 200);
            assert!(r.text().starts_with(&format!("GET /seq/{i} ")));
        }
        c.send(b"GET /last HTTP/1.1\r\nConnection: close\r\n\r\n");
        let r = c.response(false);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.at_eof());
    }

    #[test]
    fn pipelined_requests_answered_in_order() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        let mut burst = get("/one");
        burst.extend(get("/sleep"));
        burst.extend(b"PUT /three?x=y HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        burst.extend(get("/four"));
        c.send(&burst);
        assert!(c.response(false).text().starts_with("GET /one "));
        assert!(c.response(false).text().starts_with("GET /sleep "));
        assert_eq!(
            c.response(false).text(),
            "PUT /three raw=/three?x=y q=[x=y] body=hello"
        );
        assert!(c.response(false).text().starts_with("GET /four "));
    }

    #[test]
    fn large_response_body() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        let mut burst = get("/big");
        burst.extend(get("/after"));
        c.send(&burst);
        let r = c.response(false);
        assert_eq!(r.body.len(), 100_000);
        assert!(r.body.iter().all(|&b| b == b'x'));
        assert!(c.response(false).text().starts_with("GET /after "));
    }

    #[test]
    fn chunked_body() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        c.send(b"POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n");
        c.send(b"7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n");
        c.send(&get("/after"));
        assert_eq!(
            c.response(false).text(),
            "POST /chunked raw=/chunked q=[] body=hello, world"
        );
        assert!(c.response(false).text().starts_with("GET /after "));
        c.send(b"POST /bad HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert_eq!(c.response(false).status, 400);
        assert!(c.at_eof());
    }

    #[test]
    fn expect_100_continue() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        c.send(b"PUT /v1/kv/k HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
        // The body is withheld until the interim answer arrives, as curl does.
        let interim = c.response(false);
        assert_eq!(interim.status, 100);
        c.send(b"abc");
        assert_eq!(
            c.response(false).text(),
            "PUT /v1/kv/k raw=/v1/kv/k q=[] body=abc"
        );

        c.send(b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-Continue\r\n\r\n");
        assert_eq!(c.response(false).status, 100);
        c.send(b"2\r\nok\r\n0\r\n\r\n");
        assert_eq!(c.response(false).text(), "PUT /c raw=/c q=[] body=ok");

        c.send(b"PUT /x HTTP/1.1\r\nContent-Length: 1\r\nExpect: something-else\r\n\r\n");
        assert_eq!(c.response(false).status, 417);
        assert!(c.at_eof());
    }

    #[test]
    fn oversized_bodies_get_413_and_close() {
        let srv = TestServer::start(Limits {
            max_body_bytes: 1024,
            ..Limits::default()
        });
        let mut c = srv.connect();
        // No body is sent at all: the 413 must come from the header alone.
        c.send(b"PUT /v1/kv/big HTTP/1.1\r\nContent-Length: 1025\r\nExpect: 100-continue\r\n\r\n");
        let r = c.response(false);
        assert_eq!(r.status, 413);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.at_eof());

        let mut c = srv.connect();
        c.send(b"PUT /v1/kv/big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        c.send(b"400\r\n");
        c.send(&[b'a'; 1024]);
        c.send(b"\r\n1\r\nb\r\n");
        assert_eq!(c.response(false).status, 413);
        assert!(c.at_eof());
        assert_eq!(srv.probe.handled.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn garbage_gets_400_and_close() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        c.send(b"\x01\x02 nonsense\r\n\r\n");
        let r = c.response(false);
        assert_eq!(r.status, 400);
        assert!(c.at_eof());

        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
        assert_eq!(c.response(false).status, 400);
        assert!(c.at_eof());

        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(c.response(false).status, 501);
        assert!(c.at_eof());
        assert_eq!(srv.probe.handled.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn oversized_head_gets_431() {
        let srv = TestServer::start(Limits {
            max_header_bytes: 4096,
            ..Limits::default()
        });
        let mut c = srv.connect();
        let mut req = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 5000));
        c.send(&req);
        assert_eq!(c.response(false).status, 431);
        assert!(c.at_eof());
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        c.send(b"GET /old HTTP/1.0\r\n\r\n");
        let r = c.response(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.at_eof());

        let mut c = srv.connect();
        c.send(b"GET /ka HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        let r = c.response(false);
        assert_eq!(r.header("connection"), Some("keep-alive"));
        c.send(b"GET /ka2 HTTP/1.0\r\n\r\n");
        assert!(c.response(false).text().starts_with("GET /ka2 "));
        assert!(c.at_eof());
    }

    #[test]
    fn handler_requested_close() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        c.send(&get("/close"));
        let r = c.response(false);
        assert_eq!(r.text(), "bye");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.at_eof());
    }

    #[test]
    fn head_has_length_but_no_body() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        let mut burst = b"HEAD /h HTTP/1.1\r\n\r\n".to_vec();
        burst.extend(get("/h"));
        c.send(&burst);
        let head = c.response(true);
        let full = c.response(false);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        // The GET answer parses right after the HEAD one, so no body bytes leaked.
        assert!(full.text().starts_with("GET /h "));
        let head_len: usize = head.header("content-length").unwrap().parse().unwrap();
        assert_eq!(head_len, "HEAD /h raw=/h q=[] body=".len());
    }

    #[test]
    fn panicking_handler_gets_500_and_connection_survives() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        c.send(&get("/panic"));
        assert_eq!(c.response(false).status, 500);
        c.send(&get("/fine"));
        assert_eq!(c.response(false).status, 200);
    }

    #[test]
    fn half_closed_client_still_gets_its_answer() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        let mut burst = get("/sleep");
        burst.extend(get("/second"));
        c.send(&burst);
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(c.response(false).text().starts_with("GET /sleep "));
        assert!(c.response(false).text().starts_with("GET /second "));
        assert!(c.at_eof());
    }

    #[test]
    fn disconnect_mid_handler_drops_the_handler() {
        let srv = TestServer::start(Limits {
            half_close_grace: Duration::from_millis(50),
            ..Limits::default()
        });
        let mut c = srv.connect();
        c.send(&get("/forever"));
        while srv.probe.handled.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(c);
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        while !srv.probe.forever_dropped.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "handler future was never dropped"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // The server keeps serving others.
        let mut c = srv.connect();
        c.send(&get("/still-up"));
        assert_eq!(c.response(false).status, 200);
    }

    #[test]
    fn disconnect_mid_request_is_harmless() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        c.send(b"PUT /x HTTP/1.1\r\nContent-Length: 100\r\n\r\npartial");
        drop(c);
        let mut c = srv.connect();
        c.send(b"GET /x HTTP/1.1\r\nHost: a");
        drop(c);
        let mut c = srv.connect();
        c.send(&get("/ok"));
        assert_eq!(c.response(false).status, 200);
        assert_eq!(srv.probe.handled.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn idle_connection_times_out() {
        let srv = TestServer::start(Limits {
            idle_timeout: Duration::from_millis(50),
            ..Limits::default()
        });
        let mut c = srv.connect();
        c.send(&get("/a"));
        assert_eq!(c.response(false).status, 200);
        // Nothing more is sent: the server must hang up on its own.
        assert!(c.at_eof());
    }

    /// Prints requests/s for a trivial handler with pipelining; asserts only correctness.
    #[test]
    fn micro_pipelined_throughput() {
        let srv = TestServer::start(Limits::default());
        let mut c = srv.connect();
        const DEPTH: usize = 32;
        const ROUNDS: usize = 1000;
        let burst: Vec<u8> = (0..DEPTH).flat_map(|_| get("/v1/status/leader")).collect();
        let start = Instant::now();
        for _ in 0..ROUNDS {
            c.send(&burst);
            for _ in 0..DEPTH {
                assert_eq!(c.response(false).status, 200);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "http micro: {} pipelined requests (depth {DEPTH}) in {secs:.3}s = {:.0} req/s",
            DEPTH * ROUNDS,
            (DEPTH * ROUNDS) as f64 / secs
        );
    }

    #[test]
    fn parse_head_framing_rules() {
        let limits = Limits::default();
        let remote = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
        let parse = |s: &str| parse_head(s.as_bytes(), remote, &limits);
        let (h, len) = parse("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(len, "GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n".len());
        assert!(h.keep_alive && h.framing == Framing::Empty && !h.http10);
        assert_eq!(h.req.header("HOST"), Some("x"));
        assert!(parse("GET /a HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let (h, _) = parse("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        let (h, _) =
            parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(h.framing == Framing::Chunked && !h.keep_alive);
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
        let (h, _) = parse("GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.expect_continue && !h.keep_alive);
        let (h, _) = parse("OPTIONS * HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.req.path, "*");
        assert_eq!(h.req.method, Method::Options);
    }
}
