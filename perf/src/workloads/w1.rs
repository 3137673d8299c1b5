//! W1 DNS: 50,000 instances over 1,000 services registered in Muster, random
//! `svc-N.service.consul` A and SRV queries at max rate over UDP (dnsperf, or the built-in
//! generator when dnsperf is missing), then the same query file against NSD and Knot
//! serving the same records as a static zone, on the same CPUs.
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::{record_agreement, secs, Common, Env};
use crate::dataset::{parse_queries, query_file, zone_file, Dataset};
use crate::gen::dns::{self, DnsOut, DnsSpec};
use crate::gen::dnsperf::{self, DnsperfSpec};
use crate::gen::http::with_body;
use crate::gen::{load, Pace};
use crate::muster::Mode;
use crate::peers::{self, Peer};
use crate::proc::Sampler;
use crate::result::{Row, RunResult};

/// Which DNS load generator drives the queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsGen {
    /// dnsperf when installed, else the built-in generator.
    Auto,
    Dnsperf,
    Builtin,
}

#[derive(Args, Clone, Debug, Serialize)]
pub struct W1Opts {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Instances per service.
    #[arg(long, default_value_t = 50)]
    pub per_service: usize,
    /// Instances per node (5,000 nodes for 50,000 instances).
    #[arg(long, default_value_t = 10)]
    pub per_node: usize,
    /// Records per name in the peers' static zone; Muster's plain-UDP answers carry
    /// `udp_answer_limit` (3) random instances, so 3 gives answers of equal size.
    #[arg(long, default_value_t = 3)]
    pub records_per_name: usize,
    /// Seconds of load per target.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Lines in the generated query file.
    #[arg(long, default_value_t = 100_000)]
    pub queries: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "auto")]
    pub generator: DnsGen,
    /// dnsperf `-c` (client sockets).
    #[arg(long, default_value_t = 4)]
    pub dnsperf_clients: usize,
    /// dnsperf `-q` (queries outstanding).
    #[arg(long, default_value_t = 100)]
    pub dnsperf_outstanding: usize,
    /// Built-in generator: sockets, one query in flight each.
    #[arg(long, default_value_t = 64)]
    pub sockets: usize,
    /// Open-loop total rate (queries/s); closed-loop at max rate when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Run dnsperf without `-v`: more QPS from the generator core, but only a mean latency
    /// (no percentiles).
    #[arg(long)]
    pub no_percentiles: bool,
}

struct Gen<'a> {
    o: &'a W1Opts,
    dnsperf: Option<std::path::PathBuf>,
    queries: Arc<Vec<(String, u16)>>,
    query_path: &'a Path,
    dir: &'a Path,
}

impl Gen<'_> {
    fn name(&self) -> &'static str {
        if self.dnsperf.is_some() {
            "dnsperf"
        } else {
            "builtin"
        }
    }

    async fn run(&self, target: &str, addr: SocketAddr, pid: i32) -> Result<Row> {
        let pace = Pace::from_rate(self.o.rate);
        let sampler = Sampler::start(pid);
        let out: DnsOut = match &self.dnsperf {
            Some(bin) => {
                let spec = DnsperfSpec {
                    query_file: self.query_path.to_path_buf(),
                    duration: secs(self.o.seconds),
                    clients: self.o.dnsperf_clients,
                    outstanding: self.o.dnsperf_outstanding,
                    pace,
                    cpus: self.o.common.gen_cpus(),
                    out_file: self
                        .dir
                        .join(format!("dnsperf-{}.out", target.replace(' ', "_"))),
                    verbose: !self.o.no_percentiles,
                };
                let bin = bin.clone();
                tokio::task::spawn_blocking(move || dnsperf::run(&bin, addr, &spec)).await??
            }
            None => {
                let spec = DnsSpec {
                    sockets: self.o.sockets,
                    duration: secs(self.o.seconds),
                    pace,
                    timeout: std::time::Duration::from_secs(1),
                };
                dns::run(addr, self.queries.clone(), &spec).await?
            }
        };
        let stats = sampler.finish();
        let mut row = Row::new(target, "A+SRV");
        row.pacing = pace.label();
        row.requests = out.completed;
        row.errors = out.lost + out.other_rcode;
        row.seconds = out.elapsed_s;
        row.throughput = out.qps();
        row.latency = (!out.latency.is_empty()).then(|| out.latency.summary());
        row.server = Some(stats);
        if let Some(avg) = out.avg_latency_us {
            row.set("dnsperf_mean_latency_us", avg.round());
        }
        row.set("generator", self.name());
        row.set("sent", out.sent);
        row.set("lost", out.lost);
        row.set("noerror", out.noerror);
        row.set("nxdomain", out.nxdomain);
        if out.truncated > 0 {
            row.set("truncated", out.truncated);
        }
        Ok(row)
    }
}

async fn peer_row(g: &Gen<'_>, name: &str, started: Result<Option<Peer>>, enabled: bool) -> Row {
    match started {
        Ok(Some(mut p)) => {
            let r = g.run(name, p.addr, p.proc.pid()).await;
            p.proc.stop(std::time::Duration::from_secs(5));
            r.unwrap_or_else(|e| Row::failed(name, "A+SRV", &e))
        }
        Ok(None) if enabled => Row::not_run(name, "A+SRV", &peers::not_installed(name)),
        Ok(None) => Row::not_run(name, "A+SRV", "peers disabled (--peers none)"),
        Err(e) => Row::failed(name, "A+SRV", &e),
    }
}

pub async fn run(o: &W1Opts) -> Result<RunResult> {
    let c = &o.common;
    let env = Env::new(c)?;
    let mut res = RunResult::new("W1", c.placement(), o);
    let ds = Dataset::new(o.services, o.per_service, o.per_node);

    let dnsperf = match o.generator {
        DnsGen::Builtin => None,
        DnsGen::Dnsperf => match dnsperf::available() {
            Some(b) => Some(b),
            None => bail!("{}", peers::not_installed("dnsperf")),
        },
        DnsGen::Auto => dnsperf::available(),
    };
    if dnsperf.is_none() {
        res.notes.push(
            "dnsperf not used: built-in UDP generator (one query in flight per socket)".into(),
        );
    }
    let qtext = query_file(&ds, o.queries.max(1), o.seed);
    let query_path = env.dir.join("queries.txt");
    std::fs::write(&query_path, &qtext)?;
    let zone = zone_file(&ds, o.records_per_name);
    let g = Gen {
        o,
        dnsperf,
        queries: Arc::new(parse_queries(&qtext)),
        query_path: &query_path,
        dir: &env.dir,
    };

    // Muster, loaded through the catalog API.
    let mut m = env
        .start_muster(c, c.muster_mode.unwrap_or(Mode::Dev), &mut res.notes)
        .await?;
    let target = m.label().to_string();
    let regs: Vec<Vec<u8>> = (0..ds.instances())
        .map(|i| {
            with_body(
                "PUT",
                "/v1/catalog/register",
                ds.register_body(i, "passing").as_bytes(),
            )
        })
        .collect();
    let t0 = std::time::Instant::now();
    load::run_all(m.http, regs, 64, &[]).await?;
    let load_s = t0.elapsed().as_secs_f64();
    res.notes.push(format!(
        "registered {} instances ({} services, {} nodes) in {load_s:.2} s",
        ds.instances(),
        ds.services,
        ds.nodes()
    ));
    let before = m.dns_requests().await?;
    let mut mrow = g
        .run(&target, m.dns, m.proc.pid())
        .await
        .unwrap_or_else(|e| Row::failed(&target, "A+SRV", &e));
    if mrow.ran() {
        let counted = m.dns_requests().await? - before;
        let sent = mrow.extra["sent"].as_u64().unwrap_or(0);
        // Muster counts every answer it sent; the generator counts those that came back
        // in time. Lost answers may fall in between.
        let done = mrow.requests;
        record_agreement(&mut mrow, done, counted);
        mrow.set("metrics_agree", done <= counted && counted <= sent);
    }
    m.stop();

    // Peers: the same records as a static zone.
    let probe = format!("{}.service.consul", ds.service_name(0));
    let (nsd, knot) = if c.peers() {
        let nd = env.sub("nsd")?;
        std::fs::write(nd.join("consul.zone"), &zone)?;
        let nsd = peer_row(
            &g,
            "nsd",
            peers::start_nsd(&nd, &c.server_cpus(), &probe).await,
            true,
        )
        .await;
        let kd = env.sub("knot")?;
        std::fs::write(kd.join("consul.zone"), &zone)?;
        let knot = peer_row(
            &g,
            "knot",
            peers::start_knot(&kd, &c.server_cpus(), &probe).await,
            true,
        )
        .await;
        (nsd, knot)
    } else {
        (
            peer_row(&g, "nsd", Ok(None), false).await,
            peer_row(&g, "knot", Ok(None), false).await,
        )
    };
    res.throughput_ratio("muster/nsd", &mrow, &nsd);
    res.throughput_ratio("muster/knot", &mrow, &knot);
    let faster = [&nsd, &knot]
        .into_iter()
        .filter(|r| r.ran())
        .max_by(|a, b| a.throughput.total_cmp(&b.throughput))
        .cloned();
    if let Some(f) = faster {
        res.throughput_ratio("muster/faster peer", &mrow, &f);
    }
    res.rows.extend([mrow, nsd, knot]);
    Ok(res)
}
