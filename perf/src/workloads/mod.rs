//! The workloads of `docs/performance.md`. Each has an options struct (clap + serde, so
//! the options land in the result file) and `async fn run(&Opts) -> Result<RunResult>`.
/// Not a P99 workload: issue 9's torn-read count.
pub mod torn;
pub mod w1;
pub mod w2;
pub mod w3;
pub mod w4;
pub mod w5;
pub mod w6;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::gen::load::{self, LoadSpec, MakeReq};
use crate::muster::{self, Mode, Muster, MusterSpec};
use crate::proc::{cpu_count, Sampler};
use crate::result::{online_cpus, Placement, Row};

/// Whether to start peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeersOpt {
    /// Run every installed peer; missing ones are reported as not run.
    Auto,
    /// Muster only (peers reported as not run).
    None,
}

/// Options every workload takes.
#[derive(Args, Clone, Debug, Serialize)]
pub struct Common {
    /// `taskset -c` CPUs of the server under test, Muster and peer alike [default: 1 on a
    /// machine with 2+ CPUs, else unpinned]. "" = unpinned.
    #[arg(long)]
    pub server_cpus: Option<String>,
    /// `taskset -c` CPUs of the load generator (this process, dnsperf) [default: 0 on a
    /// machine with 2+ CPUs, else unpinned]. "" = unpinned.
    #[arg(long)]
    pub gen_cpus: Option<String>,
    /// Muster's `-cores` [default: the number of server CPUs].
    #[arg(long)]
    pub cores: Option<usize>,
    /// Muster's storage: `dev` (in memory) or `durable` (`-server -bootstrap -data-dir`).
    #[arg(long, value_enum)]
    pub muster_mode: Option<Mode>,
    /// The muster binary [default: `muster` next to this binary, i.e. target/release/muster].
    #[arg(long)]
    pub muster_bin: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub peers: PeersOpt,
    /// Where the JSON result goes [default: perf/results/].
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
    /// Scratch directory for logs, zone files, data dirs [default: a fresh temp dir].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

impl Common {
    /// Unpinned, dev-mode defaults with the given binary (smoke tests).
    pub fn for_tests(bin: PathBuf) -> Common {
        Common {
            server_cpus: Some(String::new()),
            gen_cpus: Some(String::new()),
            cores: Some(1),
            muster_mode: Some(Mode::Dev),
            muster_bin: Some(bin),
            peers: PeersOpt::None,
            results_dir: None,
            work_dir: None,
        }
    }

    pub fn server_cpus(&self) -> String {
        self.server_cpus.clone().unwrap_or_else(|| {
            if online_cpus() >= 2 {
                "1".into()
            } else {
                String::new()
            }
        })
    }

    pub fn gen_cpus(&self) -> String {
        self.gen_cpus.clone().unwrap_or_else(|| {
            if online_cpus() >= 2 {
                "0".into()
            } else {
                String::new()
            }
        })
    }

    pub fn cores(&self) -> usize {
        self.cores
            .unwrap_or_else(|| cpu_count(&self.server_cpus()).max(1))
    }

    pub fn placement(&self) -> Placement {
        Placement {
            server_cpus: self.server_cpus(),
            generator_cpus: self.gen_cpus(),
            muster_cores: self.cores(),
        }
    }

    pub fn peers(&self) -> bool {
        self.peers == PeersOpt::Auto
    }
}

/// The scratch directory of one run (deleted at the end unless `--work-dir` was given).
pub struct Env {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Env {
    pub fn new(c: &Common) -> Result<Env> {
        Ok(match &c.work_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                Env {
                    dir: d.clone(),
                    _tmp: None,
                }
            }
            None => {
                let t = tempfile::Builder::new().prefix("muster-perf-").tempdir()?;
                Env {
                    dir: t.path().to_path_buf(),
                    _tmp: Some(t),
                }
            }
        })
    }

    /// A sub-directory for one peer or server.
    pub fn sub(&self, name: &str) -> Result<PathBuf> {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    pub fn muster_spec(&self, c: &Common, mode: Mode) -> MusterSpec {
        MusterSpec {
            bin: c.muster_bin.clone().unwrap_or_else(muster::default_bin),
            mode,
            cpus: c.server_cpus(),
            cores: c.cores(),
            work_dir: self.dir.clone(),
        }
    }

    /// Starts Muster in `mode`; a durable start that fails falls back to dev mode, with a
    /// note, so the row is labelled in-memory instead of being missing.
    pub async fn start_muster(
        &self,
        c: &Common,
        mode: Mode,
        notes: &mut Vec<String>,
    ) -> Result<Muster> {
        match Muster::start(&self.muster_spec(c, mode)).await {
            Ok(m) => Ok(m),
            Err(e) if mode == Mode::Durable => {
                notes.push(format!(
                    "durable muster did not start ({}); measured -dev (in-memory) instead",
                    e.to_string().lines().next().unwrap_or("")
                ));
                Muster::start(&self.muster_spec(c, Mode::Dev)).await
            }
            Err(e) => Err(e),
        }
    }
}

/// Runs an HTTP load against `addr` while sampling the server process, into a row.
pub async fn http_row(
    target: &str,
    case: &str,
    addr: SocketAddr,
    server_pid: i32,
    spec: &LoadSpec,
    make: MakeReq,
) -> Result<(Row, load::LoadOut)> {
    let sampler = Sampler::start(server_pid);
    let out = load::run(addr, spec, make).await?;
    let stats = sampler.finish();
    let mut row = Row::new(target, case);
    row.pacing = spec.pace.label();
    row.requests = out.ok;
    row.errors = out.errors();
    row.seconds = out.elapsed.as_secs_f64();
    row.throughput = out.throughput();
    row.latency = Some(out.latency.summary());
    row.server = Some(stats);
    row.set("connections", spec.conns);
    if let Some(e) = &out.first_error {
        row.set("first_error", e);
    }
    Ok((row, out))
}

/// Compares the harness's count with Muster's own (`/v1/agent/metrics`) and records both.
pub fn record_agreement(row: &mut Row, harness: u64, metrics: u64) {
    row.set("harness_requests", harness);
    row.set("metrics_requests", metrics);
    row.set("metrics_agree", harness == metrics);
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.05))
}
