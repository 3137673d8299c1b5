//! W3 registration storm: simulated agents (one keep-alive connection each, named like
//! their node) all start at once and register their instances with a service check through
//! `PUT /v1/catalog/register`; then a fixed share of instances flaps per second, each flap
//! being the owning agent re-registering the instance with its check status flipped
//! (passing <-> critical), as an agent's anti-entropy sync of a TTL check would.
//! Reports time to a full catalog, flap-update latency (open-loop), server CPU and RSS.
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use clap::Args;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{record_agreement, secs, Common, Env};
use crate::dataset::Dataset;
use crate::gen::http::{get, with_body, Conn};
use crate::gen::load::connect_many;
use crate::gen::sources_for;
use crate::hist::Latency;
use crate::muster::Mode;
use crate::proc::{usage, Sampler};
use crate::result::{Row, RunResult};

#[derive(Args, Clone, Debug, Serialize)]
pub struct W3Opts {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Simulated agents (nodes), one connection each.
    #[arg(long, default_value_t = 5000)]
    pub agents: usize,
    /// Instances each agent registers.
    #[arg(long, default_value_t = 10)]
    pub per_agent: usize,
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Percent of all instances whose check flips each second.
    #[arg(long, default_value_t = 1.0)]
    pub flap_percent: f64,
    /// Seconds of flapping.
    #[arg(long, default_value_t = 10.0)]
    pub flap_seconds: f64,
}

/// The dataset W3 registers: agent `a` is node `node-a` holding `per_agent` instances.
pub fn dataset(o: &W3Opts) -> Dataset {
    let instances = o.agents.max(1) * o.per_agent.max(1);
    let services = o.services.clamp(1, instances);
    Dataset::new(services, instances.div_ceil(services), o.per_agent)
}

/// Every agent registers its instances back to back, all agents at once. Returns the
/// registration latencies, the time until the last acknowledgement, and the connections.
async fn storm_owned(
    conns: Vec<Conn>,
    ds: &Dataset,
    per_agent: usize,
) -> Result<(Latency, Duration, Vec<Conn>)> {
    let total = ds.instances();
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(conns.len());
    for (a, mut conn) in conns.into_iter().enumerate() {
        let bodies: Vec<Vec<u8>> = (a * per_agent..((a + 1) * per_agent).min(total))
            .map(|i| {
                with_body(
                    "PUT",
                    "/v1/catalog/register",
                    ds.register_body(i, "passing").as_bytes(),
                )
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start).await;
            let mut h = Latency::new();
            for b in bodies {
                let t0 = Instant::now();
                let r = conn.send(&b, false).await?;
                h.record(t0.elapsed());
                ensure!(r.status == 200, "register: HTTP {}", r.status);
            }
            Ok::<_, anyhow::Error>((conn, h, Instant::now()))
        }));
    }
    let mut all = Latency::new();
    let mut last = start;
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (conn, h, done) = t.await??;
        back.push(conn);
        all.merge(&h);
        last = last.max(done);
    }
    Ok((all, last.duration_since(start), back))
}

pub async fn run(o: &W3Opts) -> Result<RunResult> {
    let c = &o.common;
    let env = Env::new(c)?;
    let mut res = RunResult::new("W3", c.placement(), o);
    let ds = dataset(o);
    let total = ds.instances();
    let mut m = env
        .start_muster(c, c.muster_mode.unwrap_or(Mode::Dev), &mut res.notes)
        .await?;
    let target = m.label().to_string();
    let pid = m.proc.pid();
    let rss0 = usage(pid).rss_kib;
    let before = m.http_requests("catalog").await?;

    let conns = connect_many(m.http, o.agents.max(1), &sources_for(o.agents)).await?;
    let storm_sampler = Sampler::start(pid);
    let (storm_lat, storm_time, conns) = storm_owned(conns, &ds, o.per_agent.max(1)).await?;
    let storm_stats = storm_sampler.finish();
    let sampler_note = usage(pid);
    // The catalog is full when every instance's check is visible.
    let checks = m.call(&get("/v1/health/state/any")).await?;
    let v: serde_json::Value = serde_json::from_slice(checks.body.as_deref().unwrap_or_default())
        .context("health/state/any")?;
    let visible = v.as_array().map_or(0, |a| {
        a.iter()
            .filter(|c| c["ServiceID"].as_str().is_some_and(|s| !s.is_empty()))
            .count()
    });

    let mut srow = Row::new(&target, &format!("register {} agents", o.agents));
    srow.requests = storm_lat.len();
    srow.seconds = storm_time.as_secs_f64();
    srow.throughput = total as f64 / storm_time.as_secs_f64().max(1e-9);
    srow.latency = Some(storm_lat.summary());
    srow.server = Some(storm_stats);
    srow.set("time_to_full_catalog_s", storm_time.as_secs_f64());
    srow.set("catalog_instances", visible);
    srow.set("all_registered", visible == total);
    let raw = ds.raw_bytes();
    srow.set("raw_data_bytes", raw);
    srow.set("rss_after_kib", sampler_note.rss_kib);
    srow.set(
        "rss_over_raw",
        (sampler_note.rss_kib.saturating_sub(rss0) * 1024) as f64 / raw.max(1) as f64,
    );

    // Flapping: open-loop at flap_percent of instances per second.
    let rate = (o.flap_percent / 100.0 * total as f64).max(1.0);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let per_agent = o.per_agent.max(1);
    let ds = Arc::new(ds);
    let mut senders = Vec::with_capacity(conns.len());
    let mut tasks = Vec::with_capacity(conns.len());
    for mut conn in conns {
        let (tx, mut rx) = mpsc::channel::<(usize, bool, Instant)>(1024);
        senders.push(tx);
        let ds = ds.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Latency::new();
            let (mut sent, mut bad) = (0u64, 0u64);
            while let Some((i, passing, t0)) = rx.recv().await {
                let body = ds.register_body(i, if passing { "passing" } else { "critical" });
                sent += 1;
                match conn
                    .send(
                        &with_body("PUT", "/v1/catalog/register", body.as_bytes()),
                        false,
                    )
                    .await
                {
                    Ok(r) if r.status == 200 => h.record(t0.elapsed()),
                    _ => bad += 1,
                }
            }
            (h, sent, bad)
        }));
    }
    let sampler = Sampler::start(pid);
    let mut status = vec![true; total];
    let mut rng = fastrand::Rng::with_seed(3);
    let start = Instant::now();
    let deadline = start + secs(o.flap_seconds);
    let mut due = start;
    let mut scheduled = 0u64;
    while due < deadline {
        let t0 = if Instant::now() < due {
            tokio::time::sleep_until(due).await;
            Instant::now()
        } else {
            due
        };
        let i = rng.usize(0..total);
        status[i] = !status[i];
        senders[(i / per_agent).min(senders.len() - 1)]
            .send((i, status[i], t0))
            .await
            .ok();
        scheduled += 1;
        due += interval;
    }
    drop(senders);
    let mut flap = Latency::new();
    let (mut sent, mut bad) = (0, 0);
    for t in tasks {
        let (h, s, b) = t.await?;
        flap.merge(&h);
        sent += s;
        bad += b;
    }
    let elapsed = start.elapsed();
    let stats = sampler.finish();
    let after = m.http_requests("catalog").await?;
    m.stop();

    let mut frow = Row::new(&target, &format!("flap {}%/s", o.flap_percent));
    frow.pacing = format!("open@{rate:.0}/s");
    frow.requests = flap.len();
    frow.errors = bad;
    frow.seconds = elapsed.as_secs_f64();
    frow.throughput = flap.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    frow.latency = Some(flap.summary());
    frow.server = Some(stats);
    frow.set("scheduled", scheduled);
    record_agreement(&mut frow, total as u64 + sent, after - before);
    res.rows.push(srow);
    res.rows.push(frow);
    res.notes.push(format!(
        "{} agents = nodes, {} instances over {} services; flaps re-register the instance with its check flipped",
        o.agents, total, ds.services
    ));
    Ok(res)
}
