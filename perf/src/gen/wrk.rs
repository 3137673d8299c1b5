//! Runs Debian's `wrk` (closed loop, `--latency`) and reads its report: a generator written
//! in C with one event loop per thread, for W5 where the built-in tokio client would be the
//! bottleneck on one core. wrk prints P50/P75/P90/P99 and the max, not P99.9.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::hist::Summary;
use crate::proc::{cpu_count, find_program, pinned_command};

pub fn available() -> Option<PathBuf> {
    find_program("wrk")
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct WrkOut {
    pub requests: u64,
    pub seconds: f64,
    pub socket_errors: u64,
    pub non_2xx: u64,
    /// P50/P90/P99 and max from wrk; `p999_us` is 0 (not reported).
    pub latency: Summary,
}

/// Runs wrk to completion (blocking).
pub fn run(
    bin: &Path,
    url: &str,
    conns: usize,
    duration: Duration,
    cpus: &str,
    out_file: &Path,
) -> Result<WrkOut> {
    let threads = cpu_count(cpus).max(1).min(conns.max(1));
    let out = std::fs::File::create(out_file)?;
    let st = pinned_command(bin, cpus)
        .arg("-t")
        .arg(threads.to_string())
        .arg("-c")
        .arg(conns.max(threads).to_string())
        .arg("-d")
        .arg(format!("{}s", duration.as_secs_f64().max(1.0).round()))
        .arg("--latency")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .status()
        .context("run wrk")?;
    let text = std::fs::read_to_string(out_file)?;
    if !st.success() {
        bail!(
            "wrk exited with {st}: {}",
            text.lines().last().unwrap_or("")
        );
    }
    parse_output(&text)
}

/// `2.31ms` / `850.00us` / `1.20s` / `3.00m` to microseconds.
fn dur_us(s: &str) -> Option<u64> {
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60e6)
    } else if let Some(v) = s.strip_suffix('h') {
        (v, 3600e6)
    } else {
        return None;
    };
    Some((num.parse::<f64>().ok()? * mult).round() as u64)
}

pub fn parse_output(text: &str) -> Result<WrkOut> {
    let mut o = WrkOut::default();
    let mut seen_total = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["Latency", avg, _stdev, max, ..] => {
                o.latency.mean_us = dur_us(avg).unwrap_or(0) as f64;
                o.latency.max_us = dur_us(max).unwrap_or(0);
            }
            ["50%", v] => o.latency.p50_us = dur_us(v).unwrap_or(0),
            ["90%", v] => o.latency.p90_us = dur_us(v).unwrap_or(0),
            ["99%", v] => o.latency.p99_us = dur_us(v).unwrap_or(0),
            [n, "requests", "in", t, ..] => {
                o.requests = n.parse().context("request count")?;
                o.seconds = dur_us(t.trim_end_matches(',')).unwrap_or(0) as f64 / 1e6;
                seen_total = true;
            }
            ["Socket", "errors:", rest @ ..] => {
                o.socket_errors = rest
                    .iter()
                    .filter_map(|t| t.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => o.non_2xx = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    if !seen_total {
        bail!(
            "wrk printed no totals: {}",
            text.lines().last().unwrap_or("")
        );
    }
    o.latency.count = o.requests;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_report() {
        let text = "Running 5s test @ http://127.0.0.1:8080/v1/kv/key\n  1 threads and 5000 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     2.31ms    1.02ms   1.20s    90.12%\n    Req/Sec    50.00k     2.00k   55.00k    70.00%\n  Latency Distribution\n     50%  850.00us\n     75%    2.50ms\n     90%    3.00ms\n     99%    5.00ms\n  250000 requests in 5.00s, 100.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 12\n  Non-2xx or 3xx responses: 5\nRequests/sec:  50000.00\nTransfer/sec:     20.00MB\n";
        let o = parse_output(text).unwrap();
        assert_eq!(o.requests, 250_000);
        assert_eq!(o.seconds, 5.0);
        assert_eq!(o.socket_errors, 14);
        assert_eq!(o.non_2xx, 5);
        assert_eq!(o.latency.p50_us, 850);
        assert_eq!(o.latency.p90_us, 3000);
        assert_eq!(o.latency.p99_us, 5000);
        assert_eq!(o.latency.max_us, 1_200_000);
        assert!(parse_output("wrk: connection refused").is_err());
    }
}
