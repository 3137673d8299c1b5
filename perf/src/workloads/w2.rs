//! W2 KV writes on a single server: `PUT /v1/kv/bench/k<random>` with 256-byte values
//! against Muster (durable when available) and the same client code against a single-node
//! etcd 3.4's JSON gateway (`POST /v3/kv/put`), both with fsync, at 1, 64 and 1,000
//! concurrent clients (one keep-alive connection each).
use std::sync::Arc;

use anyhow::Result;
use base64::Engine as _;
use clap::Args;
use serde::Serialize;

use super::{http_row, record_agreement, secs, Common, Env};
use crate::gen::http::with_body;
use crate::gen::load::{LoadSpec, MakeReq};
use crate::gen::{sources_for, Pace};
use crate::muster::Mode;
use crate::peers;
use crate::result::{Row, RunResult};

#[derive(Args, Clone, Debug, Serialize)]
pub struct W2Opts {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Concurrent clients (connections), one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1000")]
    pub clients: Vec<usize>,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct keys written (`bench/k<n>`).
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
    /// Open-loop total rate (req/s); closed-loop at max rate when absent.
    #[arg(long)]
    pub rate: Option<f64>,
}

fn value(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

pub async fn run(o: &W2Opts) -> Result<RunResult> {
    let c = &o.common;
    let env = Env::new(c)?;
    let mut res = RunResult::new("W2", c.placement(), o);
    let pace = Pace::from_rate(o.rate);
    let keys = o.keys.max(1);
    let val = Arc::new(value(o.value_size));

    // Muster.
    let mode = c.muster_mode.unwrap_or(Mode::Durable);
    let mut m = env.start_muster(c, mode, &mut res.notes).await?;
    let target = m.label().to_string();
    let mut muster_rows = Vec::new();
    for &clients in &o.clients {
        let case = format!("put c={clients}");
        let spec = LoadSpec {
            conns: clients,
            duration: secs(o.seconds),
            pace,
            sources: sources_for(clients),
            extra_ok: vec![],
        };
        let v = val.clone();
        let make: MakeReq = Arc::new(move |_, rng, buf| {
            let k = rng.usize(0..keys);
            buf.extend_from_slice(&with_body("PUT", &format!("/v1/kv/bench/k{k}"), &v));
        });
        let before = m.http_requests("kv").await?;
        let row = match http_row(&target, &case, m.http, m.proc.pid(), &spec, make).await {
            Ok((mut row, out)) => {
                let after = m.http_requests("kv").await?;
                record_agreement(&mut row, out.sent, after - before);
                row
            }
            Err(e) => Row::failed(&target, &case, &e),
        };
        muster_rows.push(row);
    }
    let on_disk = m.data_dir_bytes();
    m.stop();
    let written: u64 = muster_rows.iter().map(|r| r.requests).sum::<u64>() * o.value_size as u64;
    if m.mode == Mode::Durable && on_disk < written / 4 {
        // Started with a data dir, but the writes did not reach it: not durable yet.
        res.notes.push(format!(
            "muster ran with -server -bootstrap -data-dir but its data dir holds {on_disk} bytes after {written} bytes of values were written: its raft log is not on disk (in-memory)"
        ));
        for r in &mut muster_rows {
            r.target = crate::muster::label(Mode::Dev).to_string();
        }
    }
    if m.mode == Mode::Dev {
        res.notes.push(
            "muster ran with -dev: in-memory, no fsync; not comparable to etcd's durable writes"
                .into(),
        );
    }

    // etcd.
    let mut etcd_rows = Vec::new();
    let etcd = if c.peers() {
        peers::start_etcd(&env.sub("etcd")?, &c.server_cpus()).await
    } else {
        Ok(None)
    };
    match etcd {
        Ok(Some(mut peer)) => {
            for &clients in &o.clients {
                let case = format!("put c={clients}");
                let spec = LoadSpec {
                    conns: clients,
                    duration: secs(o.seconds),
                    pace,
                    sources: sources_for(clients),
                    extra_ok: vec![],
                };
                let b64 = base64::engine::general_purpose::STANDARD;
                let v = b64.encode(val.as_slice());
                let make: MakeReq = Arc::new(move |_, rng, buf| {
                    let k = rng.usize(0..keys);
                    let key = b64.encode(format!("bench/k{k}"));
                    let body = format!(r#"{{"key":"{key}","value":"{v}"}}"#);
                    buf.extend_from_slice(&with_body("POST", "/v3/kv/put", body.as_bytes()));
                });
                etcd_rows.push(
                    match http_row("etcd", &case, peer.addr, peer.proc.pid(), &spec, make).await {
                        Ok((row, _)) => row,
                        Err(e) => Row::failed("etcd", &case, &e),
                    },
                );
            }
            peer.proc.stop(std::time::Duration::from_secs(5));
        }
        Ok(None) => {
            let why = if c.peers() {
                peers::not_installed("etcd")
            } else {
                "peers disabled (--peers none)".to_string()
            };
            for &clients in &o.clients {
                etcd_rows.push(Row::not_run("etcd", &format!("put c={clients}"), &why));
            }
        }
        Err(e) => {
            for &clients in &o.clients {
                etcd_rows.push(Row::failed("etcd", &format!("put c={clients}"), &e));
            }
        }
    }
    for (a, b) in muster_rows.iter().zip(&etcd_rows) {
        res.throughput_ratio(&format!("muster/etcd {}", a.case), a, b);
    }
    res.rows.extend(muster_rows);
    res.rows.extend(etcd_rows);
    Ok(res)
}
