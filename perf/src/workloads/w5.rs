//! W5 HTTP reads: `GET /v1/health/service/web?passing` (50 instances) and `GET /v1/kv/key`
//! from many keep-alive connections, against Muster and against nginx serving the very
//! bytes Muster answered as static files, on the same CPUs.
use std::sync::Arc;

use anyhow::{ensure, Result};
use clap::Args;
use serde::Serialize;

use super::{http_row, record_agreement, secs, Common, Env};
use crate::gen::http::{get, with_body};
use crate::gen::load::{self, LoadSpec, MakeReq};
use crate::gen::{sources_for, wrk, Pace};
use crate::muster::Mode;
use crate::peers;
use crate::result::{Row, RunResult};

#[derive(Args, Clone, Debug, Serialize)]
pub struct W5Opts {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 5000)]
    pub conns: usize,
    /// Seconds of load per case.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Instances of `web`.
    #[arg(long, default_value_t = 50)]
    pub instances: usize,
    /// Size of the value at `key`.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Open-loop total rate (req/s, built-in generator); closed-loop at max rate when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, value_enum, default_value = "auto")]
    pub generator: HttpGen,
}

/// Which HTTP load generator drives W5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpGen {
    /// wrk when installed and no `--rate` is given, else the built-in generator.
    Auto,
    /// The built-in tokio client (open or closed loop, P99.9).
    Builtin,
    /// Debian's wrk (closed loop; P50/P90/P99/max only). Cheaper per request than the
    /// built-in client, so one generator core can saturate the server.
    Wrk,
}

/// Runs one case with wrk into a row; `(row, completed, slack)` where the server may count
/// up to `slack` more requests than wrk completed (in flight at the end, timed out).
async fn wrk_row(
    bin: &std::path::Path,
    target: &str,
    case: &str,
    url: String,
    o: &W5Opts,
    pid: i32,
    out_file: std::path::PathBuf,
) -> Result<(Row, u64, u64)> {
    let sampler = crate::proc::Sampler::start(pid);
    let (bin, conns, dur, cpus) = (
        bin.to_path_buf(),
        o.conns,
        secs(o.seconds),
        o.common.gen_cpus(),
    );
    let w = tokio::task::spawn_blocking(move || wrk::run(&bin, &url, conns, dur, &cpus, &out_file))
        .await??;
    let stats = sampler.finish();
    let mut row = Row::new(target, case);
    row.requests = w.requests.saturating_sub(w.non_2xx);
    row.errors = w.socket_errors + w.non_2xx;
    row.seconds = w.seconds;
    row.throughput = row.requests as f64 / w.seconds.max(1e-9);
    row.latency = Some(w.latency.clone());
    row.server = Some(stats);
    row.set("generator", "wrk");
    row.set("connections", o.conns);
    Ok((row, w.requests, o.conns as u64 + w.socket_errors))
}

/// (case, request path, metrics route, static file path for nginx)
const CASES: [(&str, &str, &str, &str); 2] = [
    (
        "health web?passing",
        "/v1/health/service/web?passing",
        "health",
        "/v1/health/service/web",
    ),
    ("kv key", "/v1/kv/key", "kv", "/v1/kv/key"),
];

/// Catalog registration of `web` instance `i` with a passing check.
pub fn web_instance(i: usize) -> String {
    format!(
        concat!(
            r#"{{"Node":"web-node-{i}","Address":"10.200.{hi}.{lo}","Service":{{"ID":"web-{i}","Service":"web","Port":8080,"Tags":["v1","primary"]}},"#,
            r#""Checks":[{{"CheckID":"service:web-{i}","Name":"web health","Status":"passing","ServiceID":"web-{i}"}}]}}"#
        ),
        i = i,
        hi = i / 256,
        lo = i % 256
    )
}

pub async fn run(o: &W5Opts) -> Result<RunResult> {
    let c = &o.common;
    let env = Env::new(c)?;
    let mut res = RunResult::new("W5", c.placement(), o);
    let pace = Pace::from_rate(o.rate);
    let spec = LoadSpec {
        conns: o.conns,
        duration: secs(o.seconds),
        pace,
        sources: sources_for(o.conns),
        extra_ok: vec![],
    };

    let wrk_bin = match o.generator {
        HttpGen::Builtin => None,
        HttpGen::Wrk => match wrk::available() {
            Some(b) => Some(b),
            None => anyhow::bail!("{}", peers::not_installed("wrk")),
        },
        HttpGen::Auto if o.rate.is_none() => wrk::available(),
        HttpGen::Auto => None,
    };
    if wrk_bin.is_some() {
        res.notes
            .push("generator: wrk (closed loop; p999 not reported, shown as 0)".into());
    }
    let mut m = env
        .start_muster(c, c.muster_mode.unwrap_or(Mode::Dev), &mut res.notes)
        .await?;
    let target = m.label().to_string();
    let regs = (0..o.instances)
        .map(|i| with_body("PUT", "/v1/catalog/register", web_instance(i).as_bytes()))
        .collect();
    load::run_all(m.http, regs, 16, &[]).await?;
    let value: Vec<u8> = (0..o.value_size).map(|i| b'a' + (i % 26) as u8).collect();
    m.call(&with_body("PUT", "/v1/kv/key", &value)).await?;

    let mut files = Vec::new();
    let mut muster_rows = Vec::new();
    for (case, path, route, file) in CASES {
        let body = Arc::new(m.call(&get(path)).await?.body.unwrap_or_default());
        if route == "health" {
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            ensure!(
                v.as_array().map(Vec::len) == Some(o.instances),
                "health answer lists {:?} instances, want {}",
                v.as_array().map(Vec::len),
                o.instances
            );
        }
        files.push((file, body.clone()));
        let req = Arc::new(get(path));
        let make: MakeReq = Arc::new(move |_, _, buf| buf.extend_from_slice(&req));
        let before = m.http_requests(route).await?;
        let row = match &wrk_bin {
            Some(bin) => {
                let url = format!("http://{}{path}", m.http);
                let out = env.dir.join(format!("wrk-muster-{route}.out"));
                match wrk_row(bin, &target, case, url, o, m.proc.pid(), out).await {
                    Ok((mut row, done, slack)) => {
                        let counted = m.http_requests(route).await? - before;
                        record_agreement(&mut row, done, counted);
                        row.set("metrics_agree", done <= counted && counted <= done + slack);
                        row.set("body_bytes", body.len());
                        row
                    }
                    Err(e) => Row::failed(&target, case, &e),
                }
            }
            None => match http_row(&target, case, m.http, m.proc.pid(), &spec, make).await {
                Ok((mut row, out)) => {
                    let after = m.http_requests(route).await?;
                    record_agreement(&mut row, out.sent, after - before);
                    row.set("body_bytes", body.len());
                    row
                }
                Err(e) => Row::failed(&target, case, &e),
            },
        };
        muster_rows.push(row);
    }
    m.stop();

    let mut nginx_rows = Vec::new();
    let nginx = if c.peers() {
        peers::start_nginx(&env.sub("nginx")?, &c.server_cpus(), &files).await
    } else {
        Ok(None)
    };
    match nginx {
        Ok(Some(mut peer)) => {
            for ((case, path, route, _), (_, body)) in CASES.iter().zip(&files) {
                let req = Arc::new(get(path));
                let make: MakeReq = Arc::new(move |_, _, buf| buf.extend_from_slice(&req));
                if let Some(bin) = &wrk_bin {
                    let url = format!("http://{}{path}", peer.addr);
                    let out = env.dir.join(format!("wrk-nginx-{route}.out"));
                    nginx_rows.push(
                        match wrk_row(bin, "nginx", case, url, o, peer.proc.pid(), out).await {
                            Ok((mut row, _, _)) => {
                                row.set("body_bytes", body.len());
                                row
                            }
                            Err(e) => Row::failed("nginx", case, &e),
                        },
                    );
                    continue;
                }
                nginx_rows.push(
                    match http_row("nginx", case, peer.addr, peer.proc.pid(), &spec, make).await {
                        Ok((mut row, out)) => {
                            let avg = out.body_bytes / out.ok.max(1);
                            row.set("body_bytes", avg);
                            if avg != body.len() as u64 {
                                row.set("body_mismatch", true);
                            }
                            row
                        }
                        Err(e) => Row::failed("nginx", case, &e),
                    },
                );
            }
            peer.proc.stop(std::time::Duration::from_secs(5));
        }
        Ok(None) => {
            let why = if c.peers() {
                peers::not_installed("nginx")
            } else {
                "peers disabled (--peers none)".to_string()
            };
            for (case, ..) in CASES {
                nginx_rows.push(Row::not_run("nginx", case, &why));
            }
        }
        Err(e) => {
            for (case, ..) in CASES {
                nginx_rows.push(Row::failed("nginx", case, &e));
            }
        }
    }
    for (a, b) in muster_rows.iter().zip(&nginx_rows) {
        res.throughput_ratio(&format!("muster/nginx {}", a.case), a, b);
    }
    res.rows.extend(muster_rows);
    res.rows.extend(nginx_rows);
    Ok(res)
}
