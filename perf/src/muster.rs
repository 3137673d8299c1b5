//! Starting the `muster` under test on loopback, and reading its `/v1/agent/metrics`.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde::Serialize;
use tokio::time::Instant;

use crate::gen::http;
use crate::proc::{free_ports, pinned_command, Proc};

/// How the server under test keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `agent -dev`: in memory.
    Dev,
    /// `agent -server -bootstrap -data-dir DIR`: raft log on disk with fsync.
    Durable,
}

#[derive(Clone, Debug)]
pub struct MusterSpec {
    pub bin: PathBuf,
    pub mode: Mode,
    /// `taskset -c` list for the server.
    pub cpus: String,
    /// `-cores`.
    pub cores: usize,
    /// Logs and data directories go here.
    pub work_dir: PathBuf,
}

/// A running muster agent.
pub struct Muster {
    pub proc: Proc,
    pub http: SocketAddr,
    pub dns: SocketAddr,
    pub mode: Mode,
    /// `-data-dir` in durable mode.
    pub data_dir: Option<PathBuf>,
}

/// How long a fresh agent may take to elect itself.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The release `muster` next to this harness's own binary (`target/release/muster` when
/// run through `cargo run --release -p muster-perf`).
pub fn default_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("muster")))
        .unwrap_or_else(|| PathBuf::from("muster"))
}

impl Muster {
    pub fn label(&self) -> &'static str {
        label(self.mode)
    }

    /// Starts an agent on fresh loopback ports and waits for its leader.
    pub async fn start(spec: &MusterSpec) -> Result<Muster> {
        if !spec.bin.is_file() {
            bail!(
                "no muster binary at {} (build it: cargo build --release --bin muster)",
                spec.bin.display()
            );
        }
        let mut last = None;
        // A port probed free may be taken before muster binds it: retry on fresh ones.
        for attempt in 0..3 {
            match Self::try_start(spec, attempt).await {
                Ok(m) => return Ok(m),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn try_start(spec: &MusterSpec, attempt: u32) -> Result<Muster> {
        let p = free_ports(5)?;
        let tag = format!("{}-{attempt}-{}", std::process::id(), fastrand::u32(..));
        let node = format!("perf-{}", fastrand::u32(..));
        let mut cmd = pinned_command(&spec.bin, &spec.cpus);
        cmd.arg("agent");
        let mut data_dir = None;
        match spec.mode {
            Mode::Dev => {
                cmd.arg("-dev");
            }
            Mode::Durable => {
                let data = spec.work_dir.join(format!("muster-data-{tag}"));
                std::fs::create_dir_all(&data)?;
                cmd.args([
                    "-server",
                    "-bootstrap",
                    "-bind",
                    "127.0.0.1",
                    "-client",
                    "127.0.0.1",
                ])
                .arg("-data-dir")
                .arg(&data);
                data_dir = Some(data);
            }
        }
        cmd.args(["-node", &node, "-log-level", "warn"])
            .args(["-http-port", &p[0].to_string()])
            .args(["-dns-port", &p[1].to_string()])
            .args(["-serf-lan-port", &p[2].to_string()])
            .args(["-serf-wan-port", &p[3].to_string()])
            .args(["-server-port", &p[4].to_string()])
            .args(["-cores", &spec.cores.max(1).to_string()]);
        std::fs::create_dir_all(&spec.work_dir)?;
        let log = spec.work_dir.join(format!("muster-{tag}.log"));
        let mut proc = Proc::spawn("muster", cmd, &log)?;
        let http_addr: SocketAddr = ([127, 0, 0, 1], p[0]).into();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            proc.check_alive()?;
            if let Ok(r) = http::request(http_addr, &http::get("/v1/status/leader")).await {
                let body = r.body.unwrap_or_default();
                if r.status == 200 && body.len() > 2 && body.starts_with(b"\"") {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "muster had no leader within {START_DEADLINE:?}; log tail:\n{}",
                    proc.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Muster {
            proc,
            http: http_addr,
            dns: ([127, 0, 0, 1], p[1]).into(),
            mode: spec.mode,
            data_dir,
        })
    }

    /// `/v1/agent/metrics?format=prometheus`, parsed.
    pub async fn metrics(&self) -> Result<Metrics> {
        let r = http::request(self.http, &http::get("/v1/agent/metrics?format=prometheus"))
            .await
            .context("GET /v1/agent/metrics")?;
        if r.status != 200 {
            bail!("/v1/agent/metrics: HTTP {}", r.status);
        }
        Ok(Metrics::parse(&String::from_utf8_lossy(
            r.body.as_deref().unwrap_or_default(),
        )))
    }

    /// Completed HTTP requests of one API group (`muster.http.request` count, label `route`).
    pub async fn http_requests(&self, route: &str) -> Result<u64> {
        Ok(self
            .metrics()
            .await?
            .sum("muster_http_request_count", &[("route", route)]) as u64)
    }

    /// UDP DNS requests answered (`muster.dns.request` count, label `proto="udp"`).
    pub async fn dns_requests(&self) -> Result<u64> {
        Ok(self
            .metrics()
            .await?
            .sum("muster_dns_request_count", &[("proto", "udp")]) as u64)
    }

    /// Blocking queries parked on all shards (`muster.shard.blocking_waiters`).
    pub async fn blocking_waiters(&self) -> Result<u64> {
        Ok(self
            .metrics()
            .await?
            .sum("muster_shard_blocking_waiters", &[]) as u64)
    }

    /// PUT/GET helper for setup; fails on non-2xx.
    pub async fn call(&self, req: &[u8]) -> Result<http::Resp> {
        let r = http::request(self.http, req).await?;
        if !(200..300).contains(&r.status) {
            bail!(
                "HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(r.body.as_deref().unwrap_or_default())
            );
        }
        Ok(r)
    }

    /// Bytes under the data dir (0 in dev mode): whether writes really reach the disk.
    pub fn data_dir_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = std::fs::read_dir(p) else {
                return 0;
            };
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        self.data_dir.as_deref().map_or(0, walk)
    }

    pub fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(5));
    }
}

pub fn label(mode: Mode) -> &'static str {
    match mode {
        Mode::Dev => "muster (in-memory)",
        Mode::Durable => "muster",
    }
}

/// `(label, value)` pairs of one series.
pub type Labels = Vec<(String, String)>;

/// Prometheus text: `(name, labels, value)` samples.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub samples: Vec<(String, Labels, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(v) => v,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            samples.push((name.to_string(), labels, value));
        }
        Metrics { samples }
    }

    /// Sum of every series of `name` carrying all of `want` labels.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

fn parse_labels(s: &str) -> Labels {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((k, r)) = rest.split_once("=\"") {
        let mut val = String::new();
        let mut chars = r.char_indices();
        let mut end = r.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        val.push(if e == 'n' { '\n' } else { e });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => val.push(c),
            }
        }
        out.push((k.trim_start_matches(',').trim().to_string(), val));
        rest = &r[end..];
    }
    out
}

/// The `muster` a debug build leaves in the target directory, for smoke tests: under
/// `$CARGO_TARGET_DIR` when set, else the workspace's `target/`. `cargo test --workspace`
/// builds it (the root package has integration tests); when missing it is built here.
pub fn debug_bin_for_tests() -> Result<PathBuf> {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace dir")?
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_relative() { ws.join(p) } else { p })
        .unwrap_or_else(|| ws.join("target"));
    let bin = target.join("debug").join("muster");
    if !bin.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let st = std::process::Command::new(cargo)
            .args(["build", "--bin", "muster"])
            .current_dir(&ws)
            .status()
            .context("cargo build --bin muster")?;
        if !st.success() || !bin.is_file() {
            bail!("could not build {}", bin.display());
        }
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let text = "# HELP muster_http_request HTTP request time per route, in ms.\n\
# TYPE muster_http_request summary\n\
muster_http_request{route=\"kv\",quantile=\"0.5\"} 0.1\n\
muster_http_request_sum{route=\"kv\"} 12.5\n\
muster_http_request_count{route=\"kv\"} 125\n\
muster_http_request_count{route=\"agent\"} 3\n\
muster_shard_blocking_waiters{shard=\"0\"} 10\n\
muster_shard_blocking_waiters{shard=\"1\"} 5\n\
consul_raft_leader 1\n\
weird{a=\"x\\\"y,z\",b=\"2\"} NaN\n";
        let m = Metrics::parse(text);
        assert_eq!(
            m.sum("muster_http_request_count", &[("route", "kv")]),
            125.0
        );
        assert_eq!(m.sum("muster_http_request_count", &[]), 128.0);
        assert_eq!(m.sum("muster_shard_blocking_waiters", &[]), 15.0);
        assert_eq!(m.sum("consul_raft_leader", &[]), 1.0);
        let w = m.samples.iter().find(|s| s.0 == "weird").unwrap();
        assert_eq!(
            w.1,
            vec![("a".into(), "x\"y,z".into()), ("b".into(), "2".into())]
        );
    }
}
