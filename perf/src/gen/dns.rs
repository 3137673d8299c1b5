//! A built-in UDP DNS generator, used when dnsperf is not installed (and by the smoke
//! tests): one query in flight per socket, open- or closed-loop, with a histogram.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::Pace;
use crate::hist::Latency;

/// Encodes a standard query (RD set, no EDNS) for `name` of type `qtype` into `out`.
pub fn encode_query(id: u16, name: &str, qtype: u16, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
}

/// The header fields of a reply the generator checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyHead {
    pub id: u16,
    pub rcode: u8,
    pub truncated: bool,
    pub answers: u16,
}

/// Parses a reply's header; None unless it is a response of at least 12 bytes.
pub fn parse_reply(b: &[u8]) -> Option<ReplyHead> {
    if b.len() < 12 || b[2] & 0x80 == 0 {
        return None;
    }
    Some(ReplyHead {
        id: u16::from_be_bytes([b[0], b[1]]),
        rcode: b[3] & 0x0f,
        truncated: b[2] & 0x02 != 0,
        answers: u16::from_be_bytes([b[6], b[7]]),
    })
}

#[derive(Clone, Debug)]
pub struct DnsSpec {
    pub sockets: usize,
    pub duration: Duration,
    pub pace: Pace,
    pub timeout: Duration,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DnsOut {
    #[serde(skip)]
    pub latency: Latency,
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    pub noerror: u64,
    pub nxdomain: u64,
    pub other_rcode: u64,
    pub truncated: u64,
    pub empty_answers: u64,
    pub elapsed_s: f64,
    /// dnsperf's own mean, when it ran without `-v`.
    pub avg_latency_us: Option<f64>,
}

impl DnsOut {
    fn merge(&mut self, o: DnsOut) {
        self.latency.merge(&o.latency);
        self.sent += o.sent;
        self.completed += o.completed;
        self.lost += o.lost;
        self.noerror += o.noerror;
        self.nxdomain += o.nxdomain;
        self.other_rcode += o.other_rcode;
        self.truncated += o.truncated;
        self.empty_answers += o.empty_answers;
    }

    pub fn qps(&self) -> f64 {
        self.completed as f64 / self.elapsed_s.max(1e-9)
    }
}

/// Sends `queries` (cycled) to `addr` until the spec's duration is over.
pub async fn run(
    addr: SocketAddr,
    queries: Arc<Vec<(String, u16)>>,
    spec: &DnsSpec,
) -> Result<DnsOut> {
    anyhow::ensure!(!queries.is_empty(), "no queries");
    let n = spec.sockets.max(1);
    let mut socks = Vec::with_capacity(n);
    for _ in 0..n {
        let s = UdpSocket::bind("127.0.0.1:0").await?;
        s.connect(addr).await?;
        socks.push(s);
    }
    let start = Instant::now() + Duration::from_millis(10);
    let deadline = start + spec.duration;
    let interval = match spec.pace {
        Pace::Closed => None,
        Pace::Open { rate } => Some(Duration::from_secs_f64(n as f64 / rate)),
    };
    let timeout = spec.timeout;
    let mut tasks = Vec::new();
    for (i, s) in socks.into_iter().enumerate() {
        let queries = queries.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = DnsOut::default();
            let mut q = Vec::with_capacity(128);
            let mut buf = vec![0u8; 4096];
            let mut k = i;
            let mut id: u16 = (i as u16).wrapping_mul(7919);
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
                        let t0 = if Instant::now() < due {
                            tokio::time::sleep_until(due).await;
                            Instant::now()
                        } else {
                            due
                        };
                        due += iv;
                        t0
                    }
                };
                let (name, qtype) = &queries[k % queries.len()];
                k += n;
                id = id.wrapping_add(1);
                encode_query(id, name, *qtype, &mut q);
                if s.send(&q).await.is_err() {
                    out.lost += 1;
                    continue;
                }
                out.sent += 1;
                let wait_until = Instant::now() + timeout;
                loop {
                    match tokio::time::timeout_at(wait_until, s.recv(&mut buf)).await {
                        Ok(Ok(len)) => {
                            // A late answer to an earlier (timed-out) query is skipped.
                            let Some(h) = parse_reply(&buf[..len]).filter(|h| h.id == id) else {
                                continue;
                            };
                            out.latency.record(t0.elapsed());
                            out.completed += 1;
                            match h.rcode {
                                0 => out.noerror += 1,
                                3 => out.nxdomain += 1,
                                _ => out.other_rcode += 1,
                            }
                            out.truncated += u64::from(h.truncated);
                            out.empty_answers += u64::from(h.answers == 0);
                            break;
                        }
                        Ok(Err(_)) | Err(_) => {
                            out.lost += 1;
                            break;
                        }
                    }
                }
            }
            out
        }));
    }
    let mut total = DnsOut::default();
    for t in tasks {
        total.merge(t.await?);
    }
    total.elapsed_s = start.elapsed().as_secs_f64();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_wire_format() {
        let mut q = Vec::new();
        encode_query(0x1234, "web.service.consul", 33, &mut q);
        let mut want = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b"\x03web\x07service\x06consul\x00\x00\x21\x00\x01");
        assert_eq!(q, want);
        // Not a response: the parser refuses our own query.
        assert_eq!(parse_reply(&q), None);
    }

    #[test]
    fn reply_header() {
        let r = [0xab, 0xcd, 0x86, 0x83, 0, 1, 0, 2, 0, 0, 0, 0];
        assert_eq!(
            parse_reply(&r),
            Some(ReplyHead {
                id: 0xabcd,
                rcode: 3,
                truncated: true,
                answers: 2
            })
        );
        assert_eq!(parse_reply(&r[..11]), None);
    }
}
