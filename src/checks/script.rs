//! Script checks, run off the reactor.
//!
//! Starting a process (fork/exec), reading its pipe and reaping it are blocking syscalls, so
//! they happen on a small process-wide pool of helper threads, fed through a bounded queue;
//! each executor's check task only awaits a oneshot reply (glommio wakers accept wakes from
//! foreign threads). A worker handles one script at a time: it spawns `args` directly (no
//! shell) in a new process group with stdout and stderr on one pipe, keeps the output's tail,
//! and at the deadline, or when the check is removed, kills the whole group.
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Sender, TrySendError};
use futures::channel::oneshot;
use glommio::timer::Timer;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::net::io_error_text;
use super::output::Tail;

/// Scripts that may run at the same time, process-wide. Scripts mostly wait on children, so
/// this bounds child processes rather than CPU.
const WORKERS: usize = 8;
/// Script runs waiting for a worker; when full, a check waits (on a timer) for room.
const QUEUE: usize = 1024;
/// How often a waiting worker looks at the cancel flag.
const SLICE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The script ran to the end. `code` is `None` when a signal ended it.
    Exited { code: Option<i32>, output: String },
    /// Killed at the deadline; the output captured so far.
    TimedOut { output: String },
    /// It could not be started (the text is Go's exec error, as Consul shows it).
    StartFailed(String),
}

struct Job {
    args: Vec<String>,
    timeout: Duration,
    max_output: usize,
    cancel: Arc<AtomicBool>,
    reply: oneshot::Sender<Outcome>,
}

fn pool() -> &'static Sender<Job> {
    static POOL: OnceLock<Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = bounded::<Job>(QUEUE);
        for i in 0..WORKERS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("muster-script-{i}"))
                .spawn(move || {
                    for job in rx.iter() {
                        let outcome = run_job(&job);
                        let _ = job.reply.send(outcome);
                    }
                });
            if let Err(e) = spawned {
                log::error!("cannot start script worker {i}: {e}");
            }
        }
        tx
    })
}

/// Sets the cancel flag when the awaiting check task goes away (removed or replaced).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs a script on the pool and waits for its outcome without blocking the reactor.
pub(crate) async fn run(args: &[String], timeout: Duration, max_output: usize) -> Outcome {
    if args.is_empty() {
        return Outcome::StartFailed("exec: no command".to_string());
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let (tx, rx) = oneshot::channel();
    let mut job = Job {
        args: args.to_vec(),
        timeout,
        max_output,
        cancel,
        reply: tx,
    };
    let started = Instant::now();
    loop {
        match pool().try_send(job) {
            Ok(()) => break,
            Err(TrySendError::Full(j)) => {
                if started.elapsed() >= timeout {
                    return Outcome::StartFailed(format!(
                        "Timed out ({}) waiting for a free script runner",
                        crate::config::value::format_go_duration(timeout)
                    ));
                }
                job = j;
                Timer::new(Duration::from_millis(20)).await;
            }
            Err(TrySendError::Disconnected(_)) => {
                return Outcome::StartFailed("script runners are not available".to_string())
            }
        }
    }
    rx.await
        .unwrap_or_else(|_| Outcome::StartFailed("script runner stopped".to_string()))
}

fn start_error(arg0: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound && !arg0.contains('/') {
        format!(
            "exec: {}: executable file not found in $PATH",
            super::output::go_quote(arg0)
        )
    } else {
        format!("fork/exec {arg0}: {}", io_error_text(e))
    }
}

fn run_job(job: &Job) -> Outcome {
    if job.cancel.load(Ordering::Relaxed) {
        return Outcome::StartFailed("canceled".to_string());
    }
    let deadline = Instant::now() + job.timeout;
    let (mut reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::StartFailed(format!("pipe: {}", io_error_text(&e))),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return Outcome::StartFailed(format!("pipe: {}", io_error_text(&e))),
    };
    let mut cmd = Command::new(&job.args[0]);
    cmd.args(&job.args[1..])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0);
    let spawned = cmd.spawn();
    // The command holds our copies of the pipe's write end; EOF needs them closed.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Outcome::StartFailed(start_error(&job.args[0], &e)),
    };
    let mut out = Tail::new(job.max_output);
    let mut buf = [0u8; 8192];
    // Read until every holder of the pipe closed it (the script and anything it started).
    loop {
        if job.cancel.load(Ordering::Relaxed) {
            kill_group(&mut child);
            return Outcome::StartFailed("canceled".to_string());
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group(&mut child);
            drain(&mut reader, &mut out);
            return Outcome::TimedOut {
                output: out.text_with_note(),
            };
        }
        let wait = (deadline - now).min(SLICE);
        let ready = {
            let mut fds = [PollFd::new(&reader, PollFlags::POLLIN)];
            match poll(&mut fds, wait.as_millis().max(1) as i32) {
                Ok(n) => n > 0,
                Err(nix::errno::Errno::EINTR) => false,
                Err(e) => {
                    kill_group(&mut child);
                    return Outcome::StartFailed(format!("poll: {e}"));
                }
            }
        };
        if !ready {
            continue;
        }
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // The pipe is closed; the script may still be running (it closed its outputs).
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Outcome::Exited {
                    code: status.code().or_else(|| status.signal().map(|s| 128 + s)),
                    output: out.text_with_note(),
                };
            }
            Ok(None) => {}
            Err(e) => return Outcome::StartFailed(format!("wait: {}", io_error_text(&e))),
        }
        if job.cancel.load(Ordering::Relaxed) {
            kill_group(&mut child);
            return Outcome::StartFailed("canceled".to_string());
        }
        if Instant::now() >= deadline {
            kill_group(&mut child);
            return Outcome::TimedOut {
                output: out.text_with_note(),
            };
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(SLICE);
    }
}

/// Kills the script's whole process group and reaps the script.
fn kill_group(child: &mut Child) {
    if let Err(e) = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL) {
        log::debug!("killing script process group {}: {e}", child.id());
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Takes what is already in the pipe without waiting for more.
fn drain(reader: &mut std::io::PipeReader, out: &mut Tail) {
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [PollFd::new(&*reader, PollFlags::POLLIN)];
        match poll(&mut fds, 0) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => out.push(&buf[..n]),
        }
    }
}
