//! HTTP load over keep-alive connections, open- or closed-loop, one task per connection.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::http::Conn;
use super::Pace;
use crate::hist::Latency;

/// Connects at most this many sockets at once: a burst of 50,000 SYNs overflows the
/// server's accept backlog and turns into 1-second SYN retransmits.
pub const CONNECT_PARALLEL: usize = 256;

/// Builds request `n` of connection `conn` into the buffer (cleared by the caller).
pub type MakeReq = Arc<dyn Fn(usize, &mut fastrand::Rng, &mut Vec<u8>) + Send + Sync>;

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub conns: usize,
    pub duration: Duration,
    pub pace: Pace,
    pub sources: Vec<Ipv4Addr>,
    /// Statuses counted as success besides 2xx (none by default).
    pub extra_ok: Vec<u16>,
}

#[derive(Clone, Debug, Default)]
pub struct LoadOut {
    pub latency: Latency,
    /// Requests written to a socket.
    pub sent: u64,
    /// Responses with a 2xx status.
    pub ok: u64,
    /// Responses with another status.
    pub bad_status: u64,
    /// Transport errors (connection reset, EOF...); the connection is reopened.
    pub io_errors: u64,
    pub elapsed: Duration,
    pub body_bytes: u64,
    pub first_error: Option<String>,
}

impl LoadOut {
    pub fn errors(&self) -> u64 {
        self.bad_status + self.io_errors
    }

    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, o: LoadOut) {
        self.latency.merge(&o.latency);
        self.sent += o.sent;
        self.ok += o.ok;
        self.bad_status += o.bad_status;
        self.io_errors += o.io_errors;
        self.body_bytes += o.body_bytes;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// Opens `n` connections to `addr`, spread over `sources`, at most [`CONNECT_PARALLEL`] at once.
pub async fn connect_many(addr: SocketAddr, n: usize, sources: &[Ipv4Addr]) -> Result<Vec<Conn>> {
    let sem = Arc::new(Semaphore::new(CONNECT_PARALLEL));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let src = sources
            .get(i % sources.len().max(1))
            .map(|ip| IpAddr::V4(*ip));
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.expect("semaphore open");
            Conn::connect(addr, src).await
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        match t.await? {
            Ok(c) => conns.push(c),
            Err(e) => bail!("connect {addr} ({} connected so far): {e}", conns.len()),
        }
    }
    Ok(conns)
}

/// Runs the load and merges every connection's histogram.
pub async fn run(addr: SocketAddr, spec: &LoadSpec, make: MakeReq) -> Result<LoadOut> {
    let conns = connect_many(addr, spec.conns.max(1), &spec.sources).await?;
    let n = conns.len();
    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + spec.duration;
    let interval = match spec.pace {
        Pace::Closed => None,
        Pace::Open { rate } => Some(Duration::from_secs_f64(n as f64 / rate)),
    };
    let mut tasks = Vec::with_capacity(n);
    for (i, conn) in conns.into_iter().enumerate() {
        let make = make.clone();
        let extra_ok = spec.extra_ok.clone();
        let sources = spec.sources.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = conn;
            let mut out = LoadOut::default();
            let mut rng = fastrand::Rng::with_seed(0x5eed ^ i as u64);
            let mut req = Vec::with_capacity(512);
            // Stagger open-loop connections across one interval so requests do not come in waves.
            let mut due =
                start + interval.map_or(Duration::ZERO, |iv| iv.mul_f64(i as f64 / n as f64));
            tokio::time::sleep_until(start).await;
            loop {
                let t0 = match interval {
                    None => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        now
                    }
                    Some(iv) => {
                        if due >= deadline {
                            break;
                        }
                        let now = Instant::now();
                        let t0 = if now < due {
                            // Idle until due: any timer lateness is the generator's, not the
                            // server's, so the clock starts when we actually send.
                            tokio::time::sleep_until(due).await;
                            Instant::now()
                        } else {
                            // Behind schedule because the server was slow: count from when the
                            // request was due (no coordinated omission).
                            due
                        };
                        due += iv;
                        t0
                    }
                };
                req.clear();
                make(i, &mut rng, &mut req);
                out.sent += 1;
                match c.send(&req, false).await {
                    Ok(r) => {
                        out.latency.record(t0.elapsed());
                        out.body_bytes += r.body_len as u64;
                        if (200..300).contains(&r.status) || extra_ok.contains(&r.status) {
                            out.ok += 1;
                        } else {
                            out.bad_status += 1;
                            if out.first_error.is_none() {
                                out.first_error = Some(format!("HTTP {}", r.status));
                            }
                        }
                    }
                    Err(e) => {
                        out.io_errors += 1;
                        if out.first_error.is_none() {
                            out.first_error = Some(e.to_string());
                        }
                        let src = sources
                            .get(i % sources.len().max(1))
                            .map(|ip| IpAddr::V4(*ip));
                        match Conn::connect(addr, src).await {
                            Ok(nc) => c = nc,
                            Err(_) => break,
                        }
                    }
                }
            }
            out
        }));
    }
    let mut total = LoadOut::default();
    for t in tasks {
        total.merge(t.await?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Sends `reqs` with `conc` connections (closed-loop), for setup work such as loading
/// data; fails on the first non-2xx answer. Returns the latency of each request.
pub async fn run_all(
    addr: SocketAddr,
    reqs: Vec<Vec<u8>>,
    conc: usize,
    sources: &[Ipv4Addr],
) -> Result<Latency> {
    let conc = conc.clamp(1, reqs.len().max(1));
    let conns = connect_many(addr, conc, sources).await?;
    let reqs = Arc::new(reqs);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for mut c in conns {
        let (reqs, next) = (reqs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Latency::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(r) = reqs.get(i) else {
                    return Ok(h);
                };
                let t0 = Instant::now();
                let resp = c.send(r, true).await?;
                h.record(t0.elapsed());
                if !(200..300).contains(&resp.status) {
                    let body = String::from_utf8_lossy(resp.body.as_deref().unwrap_or_default())
                        .into_owned();
                    let head = String::from_utf8_lossy(&r[..r.len().min(120)]).into_owned();
                    bail!("HTTP {} for {head:?}: {body}", resp.status);
                }
            }
        }));
    }
    let mut all = Latency::new();
    for t in tasks {
        all.merge(&t.await??);
    }
    Ok(all)
}
