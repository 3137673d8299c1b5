//! Processes under test: spawn pinned with `taskset`, die with the harness, sample CPU and
//! RSS of a whole process tree from `/proc`, raise the open-files limit.
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::result::ProcStats;

/// Number of CPUs in a `taskset -c` list such as `1`, `0-3` or `0,2`; 0 for an empty list.
pub fn cpu_count(list: &str) -> usize {
    parse_cpus(list).map_or(0, |v| v.len())
}

pub fn parse_cpus(list: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse()?, b.parse()?);
                if b < a {
                    bail!("bad cpu range {part}");
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().with_context(|| format!("bad cpu {part}"))?),
        }
    }
    Ok(out)
}

/// Pins the calling thread, and so every thread it starts later, to `list` (no-op if empty).
pub fn pin_current(list: &str) -> Result<()> {
    let cpus = parse_cpus(list)?;
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity({list}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Raises RLIMIT_NOFILE towards `want` (root may also raise the hard limit); returns the
/// soft limit now in force. Children inherit it, which is how servers get it too.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur >= want {
            return lim.rlim_cur;
        }
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return want;
        }
        // Unprivileged: only up to the hard limit.
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    }
}

/// The soft RLIMIT_NOFILE of this process (and of the servers it starts).
pub fn nofile_limit() -> u64 {
    // SAFETY: getrlimit with a valid pointer.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    }
}

/// `prog args..` run under `taskset -c cpus` when `cpus` is not empty.
pub fn pinned_command(prog: &Path, cpus: &str) -> Command {
    if cpus.trim().is_empty() {
        Command::new(prog)
    } else {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpus).arg(prog);
        c
    }
}

/// Whether `name` is an executable on PATH (or in /usr/sbin, where daemons live).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// A spawned server. Killed (whole tree) on drop; dies with the harness via PDEATHSIG.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout/stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Err with the log's tail if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(st) = c.try_wait()? {
                bail!(
                    "{} exited with {st}; log tail:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
        }
        Ok(())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then SIGKILL (to the whole tree) after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        let tree = tree_pids(pid);
        // SAFETY: signalling our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in tree.into_iter().rev() {
            if p != pid && Path::new(&format!("/proc/{p}")).exists() {
                // SAFETY: plain kill of a descendant we started.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// `(pid, ppid, utime+stime ticks)` from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(i32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((ppid, ticks))
}

fn rss_kib(pid: i32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
        return 0;
    };
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page / 1024
}

/// `root` and all its descendants, parents first.
pub fn tree_pids(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                if let Some((ppid, _)) = stat(pid) {
                    parent_of.push((pid, ppid));
                }
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// CPU ticks and RSS summed over a process tree.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub ticks: u64,
    pub rss_kib: u64,
}

pub fn usage(root: i32) -> Usage {
    let mut u = Usage::default();
    for p in tree_pids(root) {
        if let Some((_, t)) = stat(p) {
            u.ticks += t;
            u.rss_kib += rss_kib(p);
        }
    }
    u
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// Samples a process tree every `interval` on its own thread; [`Sampler::finish`] gives CPU
/// used over the window and the peak RSS seen.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
    root: i32,
    start: Instant,
    start_ticks: u64,
}

impl Sampler {
    pub fn start(root: i32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let first = usage(root);
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = first.rss_kib;
            while !s2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                peak = peak.max(usage(root).rss_kib);
            }
            peak
        });
        Sampler {
            stop,
            thread: Some(thread),
            root,
            start: Instant::now(),
            start_ticks: first.ticks,
        }
    }

    pub fn finish(mut self) -> ProcStats {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0);
        let end = usage(self.root);
        let wall = self.start.elapsed().as_secs_f64().max(1e-9);
        let cpu = end.ticks.saturating_sub(self.start_ticks) as f64 / ticks_per_sec();
        ProcStats {
            cpu_cores: cpu / wall,
            cpu_seconds: cpu,
            rss_peak_kib: peak.max(end.rss_kib),
            rss_end_kib: end.rss_kib,
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut held = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) {
            out.push(port);
            held.push((tcp, udp));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("1").unwrap(), vec![1]);
        assert_eq!(parse_cpus("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(cpu_count(""), 0);
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("x").is_err());
    }

    #[test]
    fn samples_own_process() {
        let me = std::process::id() as i32;
        let u = usage(me);
        assert!(u.rss_kib > 0);
        let s = Sampler::start(me);
        // Burn a little CPU so the window has something to count.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let st = s.finish();
        assert!(st.rss_peak_kib >= st.rss_end_kib.min(st.rss_peak_kib));
        assert!(st.rss_end_kib > 0);
    }
}
