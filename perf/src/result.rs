//! The JSON record of one run, written under `perf/results/` so that regressions show over
//! time: git commit, core count, placement, the workload's options, one row per measured
//! (target, case), and the ratios the goals are stated in.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::hist::Summary;

/// Bump when a field changes meaning, so old files are not misread.
pub const SCHEMA: u32 = 1;

/// Where the harness's own `perf/results/` directory is (next to this crate's manifest).
pub fn default_results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// Which CPUs each role was given (`taskset -c` lists; empty = not pinned).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub server_cpus: String,
    pub generator_cpus: String,
    /// Executor cores Muster was started with (`-cores`).
    pub muster_cores: usize,
}

/// Whether a row was measured. A missing peer is `NotRun`, never a made-up number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    Ran,
    NotRun { reason: String },
    Failed { error: String },
}

/// CPU and memory of the server under test (its whole process tree) during the load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcStats {
    /// CPU time used during the window divided by its wall time (1.0 = one core busy).
    pub cpu_cores: f64,
    pub cpu_seconds: f64,
    pub rss_peak_kib: u64,
    pub rss_end_kib: u64,
}

/// One measured (target, case).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `muster`, `muster (in-memory)`, `nsd`, `knot`, `etcd`, `nginx`.
    pub target: String,
    /// What was measured, e.g. `put c=64` or `A+SRV`.
    pub case: String,
    #[serde(flatten)]
    pub status: Status,
    /// `closed` (max rate) or `open@<rate>/s`.
    pub pacing: String,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Completed requests per second.
    pub throughput: f64,
    pub latency: Option<Summary>,
    pub server: Option<ProcStats>,
    /// Workload-specific numbers (e.g. `metrics_requests`, `rss_per_watcher_bytes`).
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Row {
    pub fn new(target: &str, case: &str) -> Row {
        Row {
            target: target.to_string(),
            case: case.to_string(),
            status: Status::Ran,
            pacing: "closed".to_string(),
            requests: 0,
            errors: 0,
            seconds: 0.0,
            throughput: 0.0,
            latency: None,
            server: None,
            extra: BTreeMap::new(),
        }
    }

    pub fn not_run(target: &str, case: &str, reason: &str) -> Row {
        Row {
            status: Status::NotRun {
                reason: reason.to_string(),
            },
            ..Row::new(target, case)
        }
    }

    pub fn failed(target: &str, case: &str, error: &anyhow::Error) -> Row {
        Row {
            status: Status::Failed {
                error: format!("{error:#}"),
            },
            ..Row::new(target, case)
        }
    }

    pub fn ran(&self) -> bool {
        self.status == Status::Ran
    }

    pub fn set(&mut self, key: &str, v: impl Serialize) {
        self.extra.insert(
            key.to_string(),
            serde_json::to_value(v).expect("plain values serialize"),
        );
    }
}

/// `name = a / b` of some row metric, e.g. Muster's QPS over NSD's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub name: String,
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub schema: u32,
    pub workload: String,
    /// UTC, RFC 3339.
    pub started_at: String,
    pub git_commit: String,
    pub git_dirty: bool,
    /// CPUs online on the machine.
    pub cores: usize,
    pub placement: Placement,
    pub options: serde_json::Value,
    pub rows: Vec<Row>,
    pub ratios: Vec<Ratio>,
    pub notes: Vec<String>,
}

impl RunResult {
    pub fn new(workload: &str, placement: Placement, options: impl Serialize) -> RunResult {
        let (git_commit, git_dirty) = git_state();
        RunResult {
            schema: SCHEMA,
            workload: workload.to_string(),
            started_at: rfc3339(SystemTime::now()),
            git_commit,
            git_dirty,
            cores: online_cpus(),
            placement,
            options: serde_json::to_value(options).expect("options serialize"),
            rows: Vec::new(),
            ratios: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&self, target: &str, case: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.target == target && r.case == case)
    }

    /// Adds `name = num.throughput / den.throughput` when both rows ran.
    pub fn throughput_ratio(&mut self, name: &str, num: &Row, den: &Row) {
        if num.ran() && den.ran() && den.throughput > 0.0 {
            self.ratios.push(Ratio {
                name: name.to_string(),
                value: num.throughput / den.throughput,
            });
        }
    }

    /// File name: `<workload>-<UTC time>-<short commit>.json`.
    pub fn file_name(&self) -> String {
        let t: String = self
            .started_at
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let commit: String = self.git_commit.chars().take(10).collect();
        format!("{}-{t}-{commit}.json", self.workload.to_lowercase())
    }

    /// Writes the result as pretty JSON into `dir` (created if needed); returns the path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join(self.file_name());
        let mut body = serde_json::to_vec_pretty(self)?;
        body.push(b'\n');
        std::fs::write(&path, body).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    pub fn read(path: &Path) -> Result<RunResult> {
        let body = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        Ok(serde_json::from_slice(&body)?)
    }
}

pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(
            // available_parallelism honours our own affinity mask; the machine's count is
            // what results are compared by.
            // SAFETY: sysconf has no preconditions.
            unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize,
        )
}

/// The commit of the checkout this harness was built from, and whether it had local changes.
fn git_state() -> (String, bool) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = run(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_string());
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    (commit, dirty)
}

/// `2026-11-20T14:03:59Z` for a system time (UTC, whole seconds).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::hist::Latency;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_190_639);
        assert_eq!(rfc3339(t), "2026-11-20T16:03:59Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn result_round_trips_through_json_file() {
        let dir = tempfile::tempdir().unwrap();
        let placement = Placement {
            server_cpus: "1".into(),
            generator_cpus: "0".into(),
            muster_cores: 1,
        };
        let mut res = RunResult::new("W2", placement, serde_json::json!({"clients": [1, 64]}));
        let mut h = Latency::new();
        h.record_us(250);
        h.record_us(900);
        let mut a = Row::new("muster", "put c=64");
        a.requests = 2;
        a.throughput = 200.0;
        a.latency = Some(h.summary());
        a.server = Some(ProcStats {
            cpu_cores: 0.5,
            ..ProcStats::default()
        });
        a.set("metrics_requests", 2u64);
        let mut b = Row::new("etcd", "put c=64");
        b.throughput = 100.0;
        res.throughput_ratio("muster/etcd put c=64", &a, &b);
        res.rows.push(a);
        res.rows.push(b);
        res.rows
            .push(Row::not_run("nginx", "x", "nginx is not installed"));
        res.notes.push("a note".into());

        let path = res.write(dir.path()).unwrap();
        assert!(path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("w2-"));
        let back = RunResult::read(&path).unwrap();
        assert_eq!(back, res);
        assert_eq!(back.ratios[0].value, 2.0);
        assert!(back.cores >= 1);

        // The status is flattened into the row, so files are easy to query with jq.
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["rows"][2]["status"], "not_run");
        assert_eq!(v["rows"][2]["reason"], "nginx is not installed");
        assert_eq!(v["rows"][0]["latency"]["count"], 2);
    }

    #[test]
    fn ratio_needs_both_rows_measured() {
        let mut res = RunResult::new("W1", Placement::default(), ());
        let a = Row::new("muster", "q");
        let b = Row::not_run("nsd", "q", "missing");
        res.throughput_ratio("muster/nsd", &a, &b);
        assert!(res.ratios.is_empty());
    }
}
