//! W6 memory on one server: the W1/W3 catalog (instances with a check each), then KV keys
//! of 256 bytes, then idle blocking queries; the server's RSS after each stage against the
//! raw size of the data loaded (registration JSON bodies; KV key + value bytes).
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::w4::{wait_parked, FD_MARGIN};
use super::{Common, Env};
use crate::dataset::Dataset;
use crate::gen::http::{get, with_body};
use crate::gen::{load, sources_for, watch};
use crate::hist::Latency;
use crate::muster::Mode;
use crate::proc::{nofile_limit, usage};
use crate::result::{Row, RunResult};

#[derive(Args, Clone, Debug, Serialize)]
pub struct W6Opts {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    #[arg(long, default_value_t = 50)]
    pub per_service: usize,
    #[arg(long, default_value_t = 10)]
    pub per_node: usize,
    #[arg(long, default_value_t = 100_000)]
    pub kv_keys: usize,
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Idle blocking queries (on KV keys, spread over them); capped by RLIMIT_NOFILE.
    #[arg(long, default_value_t = 50_000)]
    pub watchers: usize,
    /// Concurrent connections used to load data.
    #[arg(long, default_value_t = 64)]
    pub load_conns: usize,
}

fn stage(
    target: &str,
    case: &str,
    lat: Option<&Latency>,
    secs: f64,
    rss_kib: u64,
    base_kib: u64,
    raw: u64,
) -> Row {
    let mut r = Row::new(target, case);
    r.pacing = if lat.is_some() { "load" } else { "-" }.into();
    if let Some(l) = lat {
        r.requests = l.len();
        r.seconds = secs;
        r.throughput = l.len() as f64 / secs.max(1e-9);
        r.latency = Some(l.summary());
    }
    r.set("rss_kib", rss_kib);
    r.set("raw_bytes_total", raw);
    let grown = rss_kib.saturating_sub(base_kib) * 1024;
    r.set("rss_growth_bytes", grown);
    r.set("rss_growth_over_raw", grown as f64 / raw.max(1) as f64);
    r.set("rss_over_raw", (rss_kib * 1024) as f64 / raw.max(1) as f64);
    r
}

/// RSS after the server had a moment to finish what the last stage started.
async fn settled_rss(pid: i32) -> u64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    usage(pid).rss_kib
}

pub async fn run(o: &W6Opts) -> Result<RunResult> {
    let c = &o.common;
    let env = Env::new(c)?;
    let mut res = RunResult::new("W6", c.placement(), o);
    let ds = Dataset::new(o.services, o.per_service, o.per_node);
    let mut m = env
        .start_muster(c, c.muster_mode.unwrap_or(Mode::Dev), &mut res.notes)
        .await?;
    let target = m.label().to_string();
    let pid = m.proc.pid();
    let base = usage(pid).rss_kib;
    let mut empty = Row::new(&target, "empty");
    empty.pacing = "-".into();
    empty.set("rss_kib", base);
    res.rows.push(empty);

    let regs: Vec<Vec<u8>> = (0..ds.instances())
        .map(|i| {
            with_body(
                "PUT",
                "/v1/catalog/register",
                ds.register_body(i, "passing").as_bytes(),
            )
        })
        .collect();
    let t = std::time::Instant::now();
    let lat = load::run_all(m.http, regs, o.load_conns, &[]).await?;
    let raw_catalog = ds.raw_bytes();
    let rss = settled_rss(pid).await;
    res.rows.push(stage(
        &target,
        &format!("+{} instances", ds.instances()),
        Some(&lat),
        t.elapsed().as_secs_f64(),
        rss,
        base,
        raw_catalog,
    ));

    let value: Vec<u8> = (0..o.value_size).map(|i| b'a' + (i % 26) as u8).collect();
    let key = |i: usize| format!("mem/k{i:06}");
    let puts: Vec<Vec<u8>> = (0..o.kv_keys)
        .map(|i| with_body("PUT", &format!("/v1/kv/{}", key(i)), &value))
        .collect();
    let raw_kv: u64 = (0..o.kv_keys)
        .map(|i| (key(i).len() + value.len()) as u64)
        .sum();
    let t = std::time::Instant::now();
    let lat = if o.kv_keys > 0 {
        Some(load::run_all(m.http, puts, o.load_conns, &[]).await?)
    } else {
        None
    };
    let rss = settled_rss(pid).await;
    res.rows.push(stage(
        &target,
        &format!("+{} kv keys", o.kv_keys),
        lat.as_ref(),
        t.elapsed().as_secs_f64(),
        rss,
        base,
        raw_catalog + raw_kv,
    ));

    let limit = nofile_limit();
    let watchers = (o.watchers as u64).min(limit.saturating_sub(FD_MARGIN)) as usize;
    if watchers < o.watchers {
        res.notes.push(format!(
            "RLIMIT_NOFILE is {limit}: parked {watchers} watchers instead of {}",
            o.watchers
        ));
    }
    if watchers > 0 {
        let keys = o.kv_keys.max(1);
        // Block at the newest index, so that no key has changed after it.
        let index = [
            format!("/v1/kv/{}", key(keys - 1)),
            "/v1/kv/mem/?keys".to_string(),
        ]
        .iter()
        .map(|p| get(p))
        .collect::<Vec<_>>();
        let mut newest = 1;
        for r in &index {
            if let Ok(r) = m.call(r).await {
                newest = newest.max(r.index.unwrap_or(1));
            }
        }
        let index = newest;
        let rss_before = usage(pid).rss_kib;
        let parked = watch::park(m.http, watchers, &sources_for(watchers), |i| {
            format!("/v1/kv/{}?index={index}&wait=10m", key(i % keys))
        })
        .await?;
        let reported = wait_parked(&m, &parked, Duration::from_secs(60)).await?;
        let early = parked.answered();
        let rss = settled_rss(pid).await;
        let mut row = stage(
            &target,
            &format!("+{watchers} idle watchers"),
            None,
            0.0,
            rss,
            base,
            raw_catalog + raw_kv,
        );
        row.set("watchers", watchers);
        row.set("parked_reported_by_server", reported);
        row.set("answered_early", early);
        row.set(
            "rss_per_watcher_bytes",
            (rss.saturating_sub(rss_before) * 1024) as f64 / watchers as f64,
        );
        res.rows.push(row);
        drop(parked);
    }
    m.stop();
    res.notes.push(
        "raw data = catalog registration JSON bodies + KV key and value bytes; rss_over_raw = server RSS / raw".into(),
    );
    Ok(res)
}
