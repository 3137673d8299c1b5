//! Issue 9's measurement: are transactions atomic to recursive readers? Writers each set
//! every key under `torn/` to one value per `/v1/txn` (the value names the writer and its
//! sequence number); readers read `torn/?recurse`, some as blocking queries (`?index=`), and
//! count the reads that mix values of different transactions or miss keys.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Args;
use serde::Serialize;

use super::{Common, Env};
use crate::gen::http::{get, with_body, Conn};
use crate::muster::Mode;

#[derive(Args, Clone, Debug, Serialize)]
pub struct TornOpts {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Transaction writers.
    #[arg(long, default_value_t = 3)]
    pub writers: usize,
    /// Recursive readers, of which `--blocking` use blocking queries.
    #[arg(long, default_value_t = 4)]
    pub readers: usize,
    #[arg(long, default_value_t = 2)]
    pub blocking: usize,
    /// Keys each transaction sets (at most 64, Consul's limit per transaction).
    #[arg(long, default_value_t = 16)]
    pub keys: usize,
}

/// What the readers saw.
#[derive(Debug, Default, Serialize)]
pub struct TornOut {
    pub reads: u64,
    pub torn: u64,
    pub blocking_reads: u64,
    pub blocking_torn: u64,
    pub txns: u64,
}

#[derive(Default)]
struct Counts {
    reads: AtomicU64,
    torn: AtomicU64,
    blocking_reads: AtomicU64,
    blocking_torn: AtomicU64,
    txns: AtomicU64,
}

fn txn_body(keys: usize, value: &str) -> Vec<u8> {
    let v = base64::engine::general_purpose::STANDARD.encode(value);
    let ops: Vec<serde_json::Value> = (0..keys)
        .map(|i| serde_json::json!({"KV": {"Verb": "set", "Key": format!("torn/k{i:02}"), "Value": v}}))
        .collect();
    serde_json::Value::Array(ops).to_string().into_bytes()
}

async fn writer(
    addr: SocketAddr,
    id: usize,
    keys: usize,
    stop: Arc<AtomicBool>,
    c: Arc<Counts>,
) -> Result<()> {
    let mut conn = Conn::connect(addr, None).await?;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let r = conn
            .send(
                &with_body("PUT", "/v1/txn", &txn_body(keys, &format!("w{id}-{seq}"))),
                true,
            )
            .await?;
        if r.status != 200 {
            bail!(
                "txn: HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(r.body.as_deref().unwrap_or_default())
            );
        }
        c.txns.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Whether a recursive read is torn: its keys do not all carry one value, or some are
/// missing although every transaction writes all of them.
fn torn(body: &[u8], keys: usize) -> Result<bool> {
    let v: serde_json::Value = serde_json::from_slice(body).context("recursive read body")?;
    let entries = v.as_array().context("recursive read is not an array")?;
    let mut values = entries
        .iter()
        .map(|e| e["Value"].as_str().unwrap_or_default());
    let first = values.next();
    Ok(entries.len() != keys || values.any(|x| Some(x) != first))
}

async fn reader(
    addr: SocketAddr,
    blocking: bool,
    keys: usize,
    stop: Arc<AtomicBool>,
    c: Arc<Counts>,
) -> Result<()> {
    let mut conn = Conn::connect(addr, None).await?;
    let mut index = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let path = if blocking && index > 0 {
            format!("/v1/kv/torn/?recurse&index={index}&wait=1s")
        } else {
            "/v1/kv/torn/?recurse".to_string()
        };
        let r = conn.send(&get(&path), true).await?;
        index = r.index.unwrap_or(index);
        // Nothing written yet.
        if r.status == 404 {
            continue;
        }
        if r.status != 200 {
            bail!("recursive read: HTTP {}", r.status);
        }
        let t = torn(r.body.as_deref().unwrap_or_default(), keys)?;
        let (reads, torn) = if blocking {
            (&c.blocking_reads, &c.blocking_torn)
        } else {
            (&c.reads, &c.torn)
        };
        reads.fetch_add(1, Ordering::Relaxed);
        if t {
            torn.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Runs the scenario against a fresh Muster and prints `torn reads: X of Y`.
pub async fn run(o: &TornOpts) -> Result<TornOut> {
    let c = &o.common;
    if o.keys == 0 || o.keys > 64 {
        bail!("--keys must be 1..=64");
    }
    let env = Env::new(c)?;
    let mut notes = Vec::new();
    let m = env
        .start_muster(c, c.muster_mode.unwrap_or(Mode::Dev), &mut notes)
        .await?;
    for n in &notes {
        eprintln!("note: {n}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let mut tasks = Vec::new();
    for id in 0..o.writers {
        tasks.push(tokio::spawn(writer(
            m.http,
            id,
            o.keys,
            stop.clone(),
            counts.clone(),
        )));
    }
    for i in 0..o.readers {
        tasks.push(tokio::spawn(reader(
            m.http,
            i < o.blocking,
            o.keys,
            stop.clone(),
            counts.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(o.seconds.max(0.1))).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let out = TornOut {
        reads: l(&counts.reads),
        torn: l(&counts.torn),
        blocking_reads: l(&counts.blocking_reads),
        blocking_torn: l(&counts.blocking_torn),
        txns: l(&counts.txns),
    };
    let (torn, reads) = (out.torn + out.blocking_torn, out.reads + out.blocking_reads);
    println!(
        "{} -cores {}, {} s: {} txns of {} keys, {} recursive readers ({} blocking)",
        m.label(),
        c.cores(),
        o.seconds,
        out.txns,
        o.keys,
        o.readers,
        o.blocking.min(o.readers)
    );
    println!(
        "torn reads: {torn} of {reads} ({:.2}%); plain {} of {}, blocking {} of {}",
        100.0 * torn as f64 / reads.max(1) as f64,
        out.torn,
        out.reads,
        out.blocking_torn,
        out.blocking_reads
    );
    Ok(out)
}
