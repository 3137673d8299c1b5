//! Runs Debian's `dnsperf` against a server and reads its report. dnsperf 2.10 prints no
//! percentiles, so it runs with `-v` (one `> RCODE name type seconds` line per answer) and
//! the latencies go into a [`Latency`] histogram; stdout goes to a file, which costs the
//! generator core less than a pipe being read during the run.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::dns::DnsOut;
use super::Pace;
use crate::hist::Latency;
use crate::proc::{find_program, pinned_command};

#[derive(Clone, Debug)]
pub struct DnsperfSpec {
    pub query_file: PathBuf,
    pub duration: Duration,
    /// `-c`: client sockets.
    pub clients: usize,
    /// `-q`: queries outstanding.
    pub outstanding: usize,
    pub pace: Pace,
    /// `taskset -c` list for dnsperf itself.
    pub cpus: String,
    pub out_file: PathBuf,
    /// `-v`: per-query latencies (percentiles) at the price of generator CPU.
    pub verbose: bool,
}

pub fn available() -> Option<PathBuf> {
    find_program("dnsperf")
}

/// Runs dnsperf to completion (blocking; call from `spawn_blocking`).
pub fn run(bin: &Path, addr: SocketAddr, spec: &DnsperfSpec) -> Result<DnsOut> {
    let out = std::fs::File::create(&spec.out_file)?;
    let mut cmd = pinned_command(bin, &spec.cpus);
    cmd.arg("-s")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .arg("-d")
        .arg(&spec.query_file)
        .arg("-l")
        .arg(format!("{}", spec.duration.as_secs_f64().max(1.0).round()))
        .arg("-c")
        .arg(spec.clients.to_string())
        .arg("-q")
        .arg(spec.outstanding.to_string())
        .arg("-t")
        .arg("2");
    if spec.verbose {
        cmd.arg("-v");
    }
    if let Pace::Open { rate } = spec.pace {
        cmd.arg("-Q").arg(format!("{}", rate.round() as u64));
    }
    let st = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .status()
        .context("run dnsperf")?;
    let text = std::fs::read_to_string(&spec.out_file)?;
    if !st.success() {
        let tail: Vec<&str> = text.lines().rev().take(10).collect();
        bail!("dnsperf exited with {st}: {}", tail.join(" | "));
    }
    parse_output(&text)
}

/// Reads dnsperf's `-v` lines and its statistics block.
pub fn parse_output(text: &str) -> Result<DnsOut> {
    let mut out = DnsOut {
        latency: Latency::new(),
        ..DnsOut::default()
    };
    let mut run_time = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("> ") {
            let mut it = rest.split_whitespace();
            let rcode = it.next().unwrap_or("");
            if let Some(secs) = it.last().and_then(|s| s.parse::<f64>().ok()) {
                out.latency.record_us((secs * 1e6).round() as u64);
                match rcode {
                    "NOERROR" => out.noerror += 1,
                    "NXDOMAIN" => out.nxdomain += 1,
                    _ => out.other_rcode += 1,
                }
            }
            continue;
        }
        let l = line.trim();
        let num = |prefix: &str| -> Option<f64> {
            l.strip_prefix(prefix)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        if let Some(v) = num("Queries sent:") {
            out.sent = v as u64;
        } else if let Some(v) = num("Queries completed:") {
            out.completed = v as u64;
        } else if let Some(v) = num("Queries lost:") {
            out.lost = v as u64;
        } else if let Some(v) = num("Average Latency (s):") {
            out.avg_latency_us = Some(v * 1e6);
        } else if let Some(v) = num("Run time (s):") {
            run_time = Some(v);
        }
    }
    let Some(rt) = run_time else {
        bail!("dnsperf printed no statistics");
    };
    out.elapsed_s = rt;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_verbose_output() {
        let text = "DNS Performance Testing Tool\nVersion 2.10.0\n\n\
[Status] Command line: dnsperf -s 127.0.0.1 -p 5300 -v\n\
> NOERROR svc-1.service.consul A 0.000250\n\
> NOERROR svc-2.service.consul SRV 0.001000\n\
> NXDOMAIN nope.service.consul A 0.000100\n\
[Timeout] Query timed out: msg id 7\n\
Statistics:\n\n  Queries sent:         4\n  Queries completed:    3 (75.00%)\n  Queries lost:         1 (25.00%)\n\n\
  Response codes:       NOERROR 2 (66.67%), NXDOMAIN 1 (33.33%)\n  Run time (s):         2.000100\n  Queries per second:   1.499925\n";
        let o = parse_output(text).unwrap();
        assert_eq!((o.sent, o.completed, o.lost), (4, 3, 1));
        assert_eq!((o.noerror, o.nxdomain), (2, 1));
        assert_eq!(o.latency.len(), 3);
        let s = o.latency.summary();
        assert_eq!(s.max_us, 1000);
        assert!((o.elapsed_s - 2.0001).abs() < 1e-9);
        let quiet = "  Queries sent:         10\n  Queries completed:    10 (100.00%)\n  Average Latency (s):  0.000772 (min 0.000402, max 0.019581)\n  Run time (s):         1.0\n";
        let o = parse_output(quiet).unwrap();
        assert_eq!(o.completed, 10);
        assert!(o.latency.is_empty());
        assert!((o.avg_latency_us.unwrap() - 772.0).abs() < 1e-6);
        assert!(parse_output("garbage").is_err());
    }
}
