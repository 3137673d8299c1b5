//! W4 blocking-query fan-out: N watchers parked with `?index=X&wait=10m` on
//! `/v1/health/service/web` or on KV keys, then one change; the delay from the change to
//! each watcher's answer, and the server's RSS growth per idle watcher.
use std::time::Duration;

use anyhow::{ensure, Result};
use base64::Engine as _;
use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::time::Instant;

use super::{Common, Env};
use crate::gen::http::{get, with_body};
use crate::gen::{load, sources_for, watch};
use crate::hist::Latency;
use crate::muster::{Mode, Muster};
use crate::proc::{nofile_limit, usage};
use crate::result::{Row, RunResult};
use crate::workloads::w5::web_instance;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchKind {
    /// `/v1/health/service/web`; the change registers one more instance.
    Health,
    /// `/v1/kv/watch/k<i % kv_keys>`; the change writes every watched key in one commit.
    Kv,
}

#[derive(Args, Clone, Debug, Serialize)]
pub struct W4Opts {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Watcher counts, one run each (a fresh server per run).
    #[arg(long, value_delimiter = ',', default_value = "10000,50000")]
    pub watchers: Vec<usize>,
    #[arg(long, value_enum, value_delimiter = ',', default_value = "health,kv")]
    pub kinds: Vec<WatchKind>,
    /// KV keys the watchers are spread over (at most 64: the change is one transaction).
    #[arg(long, default_value_t = 1)]
    pub kv_keys: usize,
    /// Instances of `web` before the change.
    #[arg(long, default_value_t = 50)]
    pub instances: usize,
    /// How long to wait for every watcher to be answered after the change.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// How long to wait for the server to report every watcher parked.
    #[arg(long, default_value_t = 60.0)]
    pub park_timeout: f64,
}

/// File descriptors a server or the generator needs besides one per watcher.
pub const FD_MARGIN: u64 = 1000;

fn kind_name(k: WatchKind) -> &'static str {
    match k {
        WatchKind::Health => "health",
        WatchKind::Kv => "kv",
    }
}

fn kv_key(i: usize, keys: usize) -> String {
    format!("watch/k{}", i % keys.max(1))
}

/// Waits until Muster reports every watcher of `parked` parked, counting those already
/// answered (or the deadline passes, which is recorded: the RSS figure then covers fewer).
pub async fn wait_parked(m: &Muster, parked: &watch::Parked, timeout: Duration) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    let n = parked.len() as u64;
    loop {
        let w = m.blocking_waiters().await?;
        if w + parked.answered() as u64 >= n || Instant::now() > deadline {
            return Ok(w);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn one(
    o: &W4Opts,
    env: &Env,
    kind: WatchKind,
    n: usize,
    notes: &mut Vec<String>,
) -> Result<Row> {
    let c = &o.common;
    let mut m = env
        .start_muster(c, c.muster_mode.unwrap_or(Mode::Dev), notes)
        .await?;
    let target = m.label().to_string();
    let case = format!(
        "{} n={n}",
        match kind {
            WatchKind::Health => "health",
            WatchKind::Kv => "kv",
        }
    );
    let keys = o.kv_keys.clamp(1, 64);
    let regs = (0..o.instances)
        .map(|i| with_body("PUT", "/v1/catalog/register", web_instance(i).as_bytes()))
        .collect();
    load::run_all(m.http, regs, 16, &[]).await?;
    for k in 0..keys {
        m.call(&with_body(
            "PUT",
            &format!("/v1/kv/{}", kv_key(k, keys)),
            b"v0",
        ))
        .await?;
    }
    let index_path = match kind {
        WatchKind::Health => "/v1/health/service/web".to_string(),
        WatchKind::Kv => format!("/v1/kv/{}", kv_key(0, keys)),
    };
    let index = m.call(&get(&index_path)).await?.index.unwrap_or(0);
    ensure!(index > 0, "no X-Consul-Index on {index_path}");

    let pid = m.proc.pid();
    let rss_before = usage(pid).rss_kib;
    let parked = watch::park(m.http, n, &sources_for(n), |i| match kind {
        WatchKind::Health => format!("/v1/health/service/web?index={index}&wait=10m"),
        WatchKind::Kv => format!("/v1/kv/{}?index={index}&wait=10m", kv_key(i, keys)),
    })
    .await?;
    let waiters = wait_parked(&m, &parked, Duration::from_secs_f64(o.park_timeout)).await?;
    // Let the server finish whatever it does after parking before reading its RSS.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_parked = usage(pid).rss_kib;
    let early = parked.answered();

    let t_change = Instant::now();
    let change = match kind {
        WatchKind::Health => with_body(
            "PUT",
            "/v1/catalog/register",
            web_instance(o.instances).as_bytes(),
        ),
        WatchKind::Kv if keys == 1 => {
            with_body("PUT", &format!("/v1/kv/{}", kv_key(0, keys)), b"v1")
        }
        WatchKind::Kv => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(b"v1");
            let ops: Vec<String> = (0..keys)
                .map(|k| {
                    format!(
                        r#"{{"KV":{{"Verb":"set","Key":"{}","Value":"{b64}"}}}}"#,
                        kv_key(k, keys)
                    )
                })
                .collect();
            with_body("PUT", "/v1/txn", format!("[{}]", ops.join(",")).as_bytes())
        }
    };
    m.call(&change).await?;
    let ack = t_change.elapsed();
    let ends = parked
        .collect(t_change + Duration::from_secs_f64(o.timeout))
        .await;

    let mut delays = Latency::new();
    let mut notified = 0u64;
    let mut first_error = None;
    let mut last = Duration::ZERO;
    for e in &ends {
        match (e.at, e.index) {
            (Some(at), Some(ix)) if e.status == 200 && ix > index => {
                let d = at.saturating_duration_since(t_change);
                last = last.max(d);
                delays.record(d);
                notified += 1;
            }
            _ => {
                if first_error.is_none() {
                    first_error = Some(
                        e.error
                            .clone()
                            .unwrap_or_else(|| format!("HTTP {} index {:?}", e.status, e.index)),
                    );
                }
            }
        }
    }
    m.stop();

    let mut row = Row::new(&target, &case);
    row.pacing = "one change".into();
    row.requests = notified;
    row.errors = n as u64 - notified;
    row.seconds = last.as_secs_f64();
    row.throughput = notified as f64 / last.as_secs_f64().max(1e-6);
    row.latency = Some(delays.summary());
    row.set("watchers", n);
    row.set("all_notified", notified == n as u64);
    row.set("answered_before_change", early);
    row.set("parked_reported_by_server", waiters);
    row.set("change_ack_us", ack.as_micros() as u64);
    row.set("rss_before_kib", rss_before);
    row.set("rss_parked_kib", rss_parked);
    row.set(
        "rss_per_watcher_bytes",
        (rss_parked.saturating_sub(rss_before) * 1024) as f64 / n.max(1) as f64,
    );
    if let Some(e) = first_error {
        row.set("first_error", e);
    }
    Ok(row)
}

pub async fn run(o: &W4Opts) -> Result<RunResult> {
    let env = Env::new(&o.common)?;
    let mut res = RunResult::new("W4", o.common.placement(), o);
    res.notes.push(
        "latency = delay from sending the change to each watcher's complete answer; req/s = notified / last delay"
            .into(),
    );
    let limit = nofile_limit();
    for &kind in &o.kinds {
        for &n in &o.watchers {
            let case = format!("{} n={n}", kind_name(kind));
            // One socket per watcher on each side; servers inherit our limit.
            if n as u64 + FD_MARGIN > limit {
                res.rows.push(Row::not_run(
                    crate::muster::label(o.common.muster_mode.unwrap_or(Mode::Dev)),
                    &case,
                    &format!(
                        "RLIMIT_NOFILE is {limit} (hard limit; raising it needs CAP_SYS_RESOURCE), {n} watchers need {}",
                        n as u64 + FD_MARGIN
                    ),
                ));
                continue;
            }
            let row = match one(o, &env, kind, n, &mut res.notes).await {
                Ok(r) => r,
                Err(e) => Row::failed(
                    crate::muster::label(o.common.muster_mode.unwrap_or(Mode::Dev)),
                    &case,
                    &e,
                ),
            };
            res.rows.push(row);
        }
    }
    Ok(res)
}
