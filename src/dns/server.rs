//! The DNS loops of the DNS core: UDP, TCP (2-byte length framing, several queries per
//! connection), and forwarding to the recursors.
//!
//! Answers from the view are computed synchronously between two awaits (the view's
//! `RefCell` is never borrowed across one). Forwarding never blocks the loop: a UDP query
//! for the recursors runs in its own task, at most `max_inflight_recursions` at a time
//! (beyond that the client gets SERVFAIL at once), each recursor in turn gets
//! `recursor_timeout`, and SERVFAIL follows when all failed. A TCP client's forwarded
//! query goes to the recursors over TCP, in the connection's own task.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream, UdpSocket};
use glommio::timer::Timer;
use hickory_proto::op::Query;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::answer::{handle, Forward, Outcome, QueryKind, Transport, MAX_UDP_PAYLOAD};
use super::settings::DnsSettings;
use super::view::DnsView;
use crate::config::RecursorStrategy;
use crate::metrics::{self, names, CounterHandle, SampleHandle};

/// A socket error the DNS loops cannot recover from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    #[error("DNS {proto} listener failed: {source}")]
    Listener {
        proto: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Consecutive receive errors after which the UDP loop gives up (each followed by a pause).
const MAX_CONSECUTIVE_ERRORS: u32 = 1000;
/// Pause after a failed receive or accept (out of descriptors, memory...).
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Largest UDP datagram read.
const UDP_BUFFER: usize = u16::MAX as usize;

/// Handles resolved once per loop so the hot path does not look metrics up by name.
struct Metrics {
    domain: SampleHandle,
    ptr: SampleHandle,
    request: SampleHandle,
    malformed: CounterHandle,
    recursion_failed: CounterHandle,
    recursion_rejected: CounterHandle,
    tcp_rejected: CounterHandle,
}

impl Metrics {
    fn new(cfg: &DnsSettings, proto: &'static str) -> Self {
        let node = [("node", cfg.node_name.clone())];
        let proto = [("proto", proto.to_owned())];
        Metrics {
            domain: metrics::sample(names::DNS_DOMAIN_QUERY, &node),
            ptr: metrics::sample(names::DNS_PTR_QUERY, &node),
            request: metrics::sample(names::DNS_REQUEST, &proto),
            malformed: metrics::counter(names::DNS_MALFORMED, &proto),
            recursion_failed: metrics::counter(names::DNS_RECURSION_FAILED, &[]),
            recursion_rejected: metrics::counter(names::DNS_RECURSION_REJECTED, &[]),
            tcp_rejected: metrics::counter(names::DNS_TCP_REJECTED, &[]),
        }
    }

    fn record(&self, kind: QueryKind, start: Instant) {
        match kind {
            QueryKind::Domain => self.domain.measure_since(start),
            QueryKind::Ptr => self.ptr.measure_since(start),
            QueryKind::Malformed => self.malformed.incr(1.0),
            QueryKind::Other => {}
        }
        self.request.measure_since(start);
    }
}

/// Takes a slot of a bounded count; the slot is given back on drop.
struct Slot(Rc<Cell<usize>>);

impl Slot {
    fn take(count: &Rc<Cell<usize>>, max: usize) -> Option<Slot> {
        if count.get() >= max {
            return None;
        }
        count.set(count.get() + 1);
        Some(Slot(Rc::clone(count)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// `f`, or `None` when `d` elapses first.
async fn within<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(f.await) }, async {
        Timer::new(d).await;
        None
    })
    .await
}

/// Answers DNS over UDP on `sock` forever. Returns only when receiving keeps failing.
pub async fn serve_udp(
    sock: UdpSocket,
    view: Rc<RefCell<DnsView>>,
    cfg: Rc<DnsSettings>,
) -> Result<(), DnsError> {
    let sock = Rc::new(sock);
    let stats = Rc::new(Metrics::new(&cfg, "udp"));
    let inflight = Rc::new(Cell::new(0usize));
    let transport = Transport::Udp {
        max_size: MAX_UDP_PAYLOAD,
    };
    let mut buf = vec![0u8; UDP_BUFFER];
    let mut errors = 0u32;
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(got) => {
                errors = 0;
                got
            }
            Err(e) => {
                let e = io::Error::from(e);
                errors += 1;
                if errors >= MAX_CONSECUTIVE_ERRORS {
                    return Err(DnsError::Listener {
                        proto: "udp",
                        source: e,
                    });
                }
                log::debug!("dns: udp receive failed: {e}");
                Timer::new(ERROR_BACKOFF).await;
                continue;
            }
        };
        let start = Instant::now();
        let (outcome, kind) = handle(&view.borrow(), &cfg, &buf[..n], transport);
        match outcome {
            Outcome::Reply(reply) => {
                stats.record(kind, start);
                send_udp(&sock, &reply, peer).await;
            }
            Outcome::Drop => stats.record(kind, start),
            Outcome::Recurse(fwd) => {
                let Some(slot) = Slot::take(&inflight, cfg.max_inflight_recursions) else {
                    stats.recursion_rejected.incr(1.0);
                    stats.record(kind, start);
                    send_udp(&sock, &fwd.servfail(), peer).await;
                    continue;
                };
                let query = buf[..n].to_vec();
                let (sock, cfg, stats) = (Rc::clone(&sock), Rc::clone(&cfg), Rc::clone(&stats));
                glommio::spawn_local(async move {
                    let _slot = slot;
                    let reply = match recurse(&cfg, &query, &fwd, false).await {
                        Some(reply) => reply,
                        None => {
                            stats.recursion_failed.incr(1.0);
                            fwd.servfail()
                        }
                    };
                    stats.record(kind, start);
                    send_udp(&sock, &reply, peer).await;
                })
                .detach();
            }
        }
    }
}

async fn send_udp(sock: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    if let Err(e) = sock.send_to(reply, peer).await {
        log::debug!("dns: udp send to {peer} failed: {e}");
    }
}

/// Answers DNS over TCP on `listener` forever, one task per connection, at most
/// `max_tcp_connections` at a time. Returns only when accepting keeps failing.
pub async fn serve_tcp(
    listener: TcpListener,
    view: Rc<RefCell<DnsView>>,
    cfg: Rc<DnsSettings>,
) -> Result<(), DnsError> {
    let stats = Rc::new(Metrics::new(&cfg, "tcp"));
    let conns = Rc::new(Cell::new(0usize));
    let inflight = Rc::new(Cell::new(0usize));
    let mut errors = 0u32;
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => {
                errors = 0;
                stream
            }
            Err(e) => {
                let e = io::Error::from(e);
                errors += 1;
                if errors >= MAX_CONSECUTIVE_ERRORS {
                    return Err(DnsError::Listener {
                        proto: "tcp",
                        source: e,
                    });
                }
                log::debug!("dns: tcp accept failed: {e}");
                Timer::new(ERROR_BACKOFF).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(&conns, cfg.max_tcp_connections) else {
            stats.tcp_rejected.incr(1.0);
            drop(stream);
            continue;
        };
        let (view, cfg, stats, inflight) = (
            Rc::clone(&view),
            Rc::clone(&cfg),
            Rc::clone(&stats),
            Rc::clone(&inflight),
        );
        glommio::spawn_local(async move {
            let _slot = slot;
            serve_conn(stream, &view, &cfg, &stats, &inflight).await;
        })
        .detach();
    }
}

async fn serve_conn(
    mut stream: TcpStream,
    view: &RefCell<DnsView>,
    cfg: &DnsSettings,
    stats: &Metrics,
    inflight: &Rc<Cell<usize>>,
) {
    let idle = cfg.tcp_idle_timeout;
    let mut len = [0u8; 2];
    let mut msg = Vec::new();
    loop {
        if !matches!(
            within(idle, stream.read_exact(&mut len)).await,
            Some(Ok(()))
        ) {
            return;
        }
        let n = usize::from(u16::from_be_bytes(len));
        msg.resize(n, 0);
        if !matches!(
            within(idle, stream.read_exact(&mut msg)).await,
            Some(Ok(()))
        ) {
            return;
        }
        let start = Instant::now();
        let (outcome, kind) = handle(&view.borrow(), cfg, &msg, Transport::Tcp);
        let reply = match outcome {
            Outcome::Reply(reply) => reply,
            Outcome::Drop => {
                stats.record(kind, start);
                continue;
            }
            Outcome::Recurse(fwd) => match Slot::take(inflight, cfg.max_inflight_recursions) {
                None => {
                    stats.recursion_rejected.incr(1.0);
                    fwd.servfail()
                }
                Some(_slot) => match recurse(cfg, &msg, &fwd, true).await {
                    Some(reply) => reply,
                    None => {
                        stats.recursion_failed.incr(1.0);
                        fwd.servfail()
                    }
                },
            },
        };
        stats.record(kind, start);
        if !matches!(
            within(idle, write_frame(&mut stream, &reply)).await,
            Some(Ok(()))
        ) {
            return;
        }
    }
}

async fn write_frame(stream: &mut TcpStream, body: &[u8]) -> io::Result<()> {
    let len = u16::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "DNS message over 64 KiB"))?;
    let mut frame = Vec::with_capacity(body.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// Forwards `query` to the recursors in turn until one answers it usefully; the reply
/// carries the client's ID. `None` when all failed.
async fn recurse(cfg: &DnsSettings, query: &[u8], fwd: &Forward, tcp: bool) -> Option<Vec<u8>> {
    let mut order: Vec<SocketAddr> = cfg.recursors.clone();
    if cfg.recursor_strategy == RecursorStrategy::Random {
        fastrand::shuffle(&mut order);
    }
    let upstream_id = fastrand::u16(..);
    let mut out = query.to_vec();
    out[..2].copy_from_slice(&upstream_id.to_be_bytes());
    for addr in order {
        let attempt = async {
            if tcp {
                exchange_tcp(addr, &out, upstream_id, fwd.query()).await
            } else {
                exchange_udp(addr, &out, upstream_id, fwd.query()).await
            }
        };
        match within(cfg.recursor_timeout, attempt).await {
            Some(Ok(Some(mut reply))) => {
                reply[..2].copy_from_slice(&fwd.id().to_be_bytes());
                return Some(reply);
            }
            Some(Ok(None)) => log::debug!("dns: recursor {addr} failed the query"),
            Some(Err(e)) => log::debug!("dns: recursor {addr}: {e}"),
            None => log::debug!("dns: recursor {addr} timed out"),
        }
    }
    None
}

/// Why an upstream message is not taken as the answer.
enum Verdict {
    /// Someone else's packet: keep waiting.
    NotOurs,
    /// The recursor answered, but with an error: try the next one.
    Failed,
    Good,
}

/// Consul moves on to the next recursor unless the answer is NOERROR or NXDOMAIN.
fn judge(reply: &[u8], id: u16, question: &Query) -> Verdict {
    if reply.len() < 12 || reply[..2] != id.to_be_bytes() || reply[2] & 0x80 == 0 {
        return Verdict::NotOurs;
    }
    let rcode = reply[3] & 0x0f;
    if rcode != 0 && rcode != 3 {
        return Verdict::Failed;
    }
    let qdcount = u16::from_be_bytes([reply[4], reply[5]]);
    if qdcount != 1 {
        return Verdict::NotOurs;
    }
    let mut dec = BinDecoder::new(&reply[12..]);
    match Query::read(&mut dec) {
        // `Name` equality ignores case.
        Ok(q) if q.name() == question.name() && q.query_type() == question.query_type() => {
            Verdict::Good
        }
        _ => Verdict::NotOurs,
    }
}

async fn exchange_udp(
    addr: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> io::Result<Option<Vec<u8>>> {
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local)?;
    sock.connect(addr).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let n = sock.recv(&mut buf).await?;
        match judge(&buf[..n], id, question) {
            Verdict::NotOurs => continue,
            Verdict::Failed => return Ok(None),
            Verdict::Good => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
        }
    }
}

async fn exchange_tcp(
    addr: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> io::Result<Option<Vec<u8>>> {
    let mut stream = TcpStream::connect(addr).await?;
    write_frame(&mut stream, query).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await?;
    Ok(match judge(&reply, id, question) {
        Verdict::Good => Some(reply),
        Verdict::NotOurs | Verdict::Failed => None,
    })
}
