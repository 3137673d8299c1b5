//! The table printed at the end of a run.
use std::fmt::Write as _;

use crate::result::{RunResult, Status};

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// Renders `r` as a fixed-width table plus ratios and notes.
pub fn render(r: &RunResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} | commit {}{} | {} cores | server cpus [{}] (muster -cores {}) | generator cpus [{}] | {}",
        r.workload,
        r.git_commit.chars().take(10).collect::<String>(),
        if r.git_dirty { "+dirty" } else { "" },
        r.cores,
        r.placement.server_cpus,
        r.placement.muster_cores,
        r.placement.generator_cpus,
        r.started_at
    );
    let _ = writeln!(
        s,
        "{:<20} {:<24} {:<12} {:>9} {:>6} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9}",
        "target",
        "case",
        "pacing",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p999 ms",
        "max ms",
        "cpu",
        "rss MiB"
    );
    for row in &r.rows {
        match &row.status {
            Status::Ran => {
                let l = row.latency.clone().unwrap_or_default();
                let (cpu, rss) = row.server.as_ref().map_or(("-".into(), "-".into()), |p| {
                    (
                        format!("{:.2}", p.cpu_cores),
                        format!("{:.1}", p.rss_peak_kib as f64 / 1024.0),
                    )
                });
                let _ = writeln!(
                    s,
                    "{:<20} {:<24} {:<12} {:>9} {:>6} {:>11.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9}",
                    row.target,
                    row.case,
                    row.pacing,
                    row.requests,
                    row.errors,
                    row.throughput,
                    ms(l.p50_us),
                    ms(l.p90_us),
                    ms(l.p99_us),
                    ms(l.p999_us),
                    ms(l.max_us),
                    cpu,
                    rss
                );
            }
            Status::NotRun { reason } => {
                let _ = writeln!(s, "{:<20} {:<24} not run: {reason}", row.target, row.case);
            }
            Status::Failed { error } => {
                let first = error.lines().next().unwrap_or("");
                let _ = writeln!(s, "{:<20} {:<24} FAILED: {first}", row.target, row.case);
            }
        }
        if !row.extra.is_empty() {
            let kv: Vec<String> = row.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(s, "{:<20}   {}", "", kv.join(" "));
        }
    }
    for ratio in &r.ratios {
        let _ = writeln!(s, "ratio {}: {:.2}", ratio.name, ratio.value);
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Placement, Row};

    #[test]
    fn table_shows_every_row_kind() {
        let mut r = RunResult::new("W5", Placement::default(), ());
        let mut a = Row::new("muster", "health");
        a.requests = 10;
        a.throughput = 1234.0;
        a.set("metrics_requests", 10);
        r.rows.push(a);
        r.rows
            .push(Row::not_run("nginx", "health", "nginx is not installed"));
        r.rows
            .push(Row::failed("etcd", "put", &anyhow::anyhow!("boom\nmore")));
        let t = render(&r);
        assert!(t.contains("1234"));
        assert!(t.contains("metrics_requests=10"));
        assert!(t.contains("not run: nginx is not installed"));
        assert!(t.contains("FAILED: boom"));
    }
}
