//! Muster's load generators. For now: closed-loop KV PUT/GET load over keep-alive HTTP/1.1
//! connections, with HDR-histogram latency percentiles. The full P99 harness (W1-W9, peers,
//! result files) builds on this.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;

#[derive(Parser)]
#[command(name = "muster-perf", about = "Load generators for Muster")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum KvOp {
    Put,
    Get,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop KV load: each client sends its next request when the previous one answered.
    Kv {
        #[arg(long, default_value = "127.0.0.1:8500")]
        addr: String,
        #[arg(long, value_enum, default_value = "put")]
        op: KvOp,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 256)]
        value_size: usize,
        /// Distinct keys written/read (`bench/k<n>`).
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
    },
}

/// One keep-alive connection that sends a request and reads one response.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> Result<Conn> {
        let s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    fn request(&mut self, head: &str, body: &[u8]) -> Result<u16> {
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("bad status line")?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse()?;
                }
            }
        }
        let mut buf = vec![0u8; len];
        self.reader.read_exact(&mut buf)?;
        Ok(status)
    }
}

fn kv_load(
    addr: &str,
    op: KvOp,
    clients: usize,
    seconds: u64,
    value_size: usize,
    keys: usize,
) -> Result<()> {
    let value = vec![b'x'; value_size];
    if op == KvOp::Get {
        let mut c = Conn::open(addr)?;
        for k in 0..keys {
            let head = format!("PUT /v1/kv/bench/k{k} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {value_size}\r\n\r\n");
            c.request(&head, &value)?;
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..clients {
        let (addr, value, stop) = (addr.to_string(), value.clone(), stop.clone());
        threads.push(std::thread::spawn(move || -> Result<(Histogram<u64>, u64)> {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut c = Conn::open(&addr)?;
            let mut errors = 0u64;
            let mut n = t as u64;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let k = (n >> 33) as usize % keys;
                let t0 = Instant::now();
                let status = match op {
                    KvOp::Put => c.request(
                        &format!("PUT /v1/kv/bench/k{k} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n", value.len()),
                        &value,
                    )?,
                    KvOp::Get => c.request(&format!("GET /v1/kv/bench/k{k} HTTP/1.1\r\nHost: {addr}\r\n\r\n"), &[])?,
                };
                h.record(t0.elapsed().as_micros().max(1) as u64)?;
                if status != 200 {
                    errors += 1;
                }
            }
            Ok((h, errors))
        }));
    }
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for t in threads {
        let (h, e) = t
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        total.add(h)?;
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    if total.is_empty() {
        bail!("no request completed");
    }
    let ms = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "kv {}: clients={clients} value={value_size}B requests={} errors={errors} throughput={:.0} req/s",
        if op == KvOp::Put { "PUT" } else { "GET" },
        total.len(),
        total.len() as f64 / secs
    );
    println!(
        "latency ms: p50={:.3} p90={:.3} p99={:.3} p999={:.3} max={:.3}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        total.max() as f64 / 1000.0
    );
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Kv {
            addr,
            op,
            clients,
            seconds,
            value_size,
            keys,
        } => kv_load(&addr, op, clients, seconds, value_size, keys),
    }
}
