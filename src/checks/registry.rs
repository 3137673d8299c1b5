//! The per-executor registry: one local task per interval check, one timer task per TTL
//! check, change detection, and the calls to `notify`.
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use glommio::timer::Timer;
use glommio::{Task, TaskQueueHandle};
use rand::Rng;

use super::grpc::{self, GrpcCheck};
use super::http::{self, HttpCheck};
use super::net::{resolve, split_host_port, within};
use super::output::truncate_ttl_output;
use super::script::{self, Outcome};
use super::status::StatusHandler;
use super::tls::{Alpn, TlsConfigs};
use super::{CheckDef, CheckError, CheckKind, Notify, Status, MIN_INTERVAL};

/// What every task of this registry shares. Deliberately not the check map: tasks must not
/// keep the registry alive, so dropping [`Checks`] cancels them all.
struct Ctx {
    notify: Notify,
    tls: TlsConfigs,
}

/// One registered check's reporting state.
struct Shared {
    id: String,
    ctx: Rc<Ctx>,
    /// Last (status, output) reported, or the initial one.
    last: RefCell<(Status, String)>,
    handler: RefCell<StatusHandler>,
    /// Cleared on removal so a task that is finishing its run reports nothing more.
    live: Cell<bool>,
    /// TTL checks: the last output set through an update, for the "TTL expired" text.
    ttl_last_output: RefCell<String>,
}

impl Shared {
    /// A result of an interval check: through the thresholds, then change detection.
    fn report_counted(&self, status: Status, output: String) {
        let decided = self.handler.borrow_mut().apply(status, output);
        if let Some((status, output)) = decided {
            self.report(status, output);
        }
    }

    /// Reports if the status or output changed. No borrow is held while `notify` runs, so the
    /// callback may call back into the registry.
    fn report(&self, status: Status, output: String) {
        if !self.live.get() {
            return;
        }
        {
            let mut last = self.last.borrow_mut();
            if last.0 == status && last.1 == output {
                return;
            }
            *last = (status, output.clone());
        }
        (self.ctx.notify)(&self.id, status, output);
    }
}

struct Entry {
    def: Rc<CheckDef>,
    shared: Rc<Shared>,
    /// The running task; dropping it cancels the task.
    task: Option<Task<()>>,
}

/// The health checks of one executor. `!Send`: create it on the executor that runs the checks.
/// Cloning gives another handle to the same registry.
#[derive(Clone)]
pub struct Checks {
    inner: Rc<Inner>,
}

struct Inner {
    ctx: Rc<Ctx>,
    tq: Option<TaskQueueHandle>,
    entries: RefCell<HashMap<String, Entry>>,
}

impl Checks {
    /// A registry reporting through `notify`, running its tasks in `tq` (glommio's default
    /// queue when `None`). HTTPS and TLS checks verify against the webpki root set.
    pub fn new(notify: Notify, tq: Option<TaskQueueHandle>) -> Checks {
        Checks::with_roots(notify, tq, None)
    }

    /// Like [`Checks::new`], verifying TLS checks against `roots` instead (e.g. the agent's
    /// `ca_file` plus the system store, loaded before the executors start).
    pub fn with_roots(
        notify: Notify,
        tq: Option<TaskQueueHandle>,
        roots: Option<rustls::RootCertStore>,
    ) -> Checks {
        Checks {
            inner: Rc::new(Inner {
                ctx: Rc::new(Ctx {
                    notify,
                    tls: TlsConfigs::new(roots),
                }),
                tq,
                entries: RefCell::new(HashMap::new()),
            }),
        }
    }

    /// Registers and starts a check; a check with the same id is stopped and replaced.
    pub fn add(&self, mut def: CheckDef) {
        if def.kind.is_interval() && def.interval.is_zero() {
            def.interval = MIN_INTERVAL;
        }
        let shared = Rc::new(Shared {
            id: def.id.clone(),
            ctx: self.inner.ctx.clone(),
            last: RefCell::new((def.initial_status, def.initial_output.clone())),
            handler: RefCell::new(StatusHandler::new(
                def.success_before_passing,
                def.failures_before_warning,
                def.failures_before_critical,
            )),
            live: Cell::new(true),
            ttl_last_output: RefCell::new(String::new()),
        });
        let def = Rc::new(def);
        let task = match &def.kind {
            CheckKind::Ttl { ttl } => Some(self.spawn(ttl_expiry(shared.clone(), *ttl))),
            CheckKind::Alias { .. } => None,
            _ => Some(self.spawn(interval_loop(shared.clone(), def.clone()))),
        };
        let old = self
            .inner
            .entries
            .borrow_mut()
            .insert(def.id.clone(), Entry { def, shared, task });
        // Dropped outside the borrow: cancelling may drop futures that hold registry handles.
        if let Some(old) = old {
            old.shared.live.set(false);
            drop(old);
        }
    }

    /// Stops and forgets a check; unknown ids are ignored.
    pub fn remove(&self, id: &str) {
        let old = self.inner.entries.borrow_mut().remove(id);
        if let Some(old) = old {
            old.shared.live.set(false);
            drop(old);
        }
    }

    /// Sets a TTL check's status (`/v1/agent/check/pass|warn|fail|update`) and restarts its
    /// TTL. The output is cut to the check's maximum with Consul's note; returns the output
    /// as stored.
    pub fn ttl_update(
        &self,
        id: &str,
        status: Status,
        output: String,
    ) -> Result<String, CheckError> {
        let (shared, ttl, max) = {
            let entries = self.inner.entries.borrow();
            let e = entries
                .get(id)
                .ok_or_else(|| CheckError::UnknownCheck(id.to_string()))?;
            let CheckKind::Ttl { ttl } = e.def.kind else {
                return Err(CheckError::NotTtl(id.to_string()));
            };
            (e.shared.clone(), ttl, e.def.effective_output_max_size())
        };
        let output = truncate_ttl_output(output, max);
        *shared.ttl_last_output.borrow_mut() = output.clone();
        let task = self.spawn(ttl_expiry(shared.clone(), ttl));
        let old = self
            .inner
            .entries
            .borrow_mut()
            .get_mut(id)
            .and_then(|e| e.task.replace(task));
        drop(old);
        shared.report(status, output.clone());
        Ok(output)
    }

    /// Sets an alias check's result (computed with [`super::alias_result`]).
    pub fn alias_update(&self, id: &str, status: Status, output: String) -> Result<(), CheckError> {
        let shared = {
            let entries = self.inner.entries.borrow();
            let e = entries
                .get(id)
                .ok_or_else(|| CheckError::UnknownCheck(id.to_string()))?;
            if !matches!(e.def.kind, CheckKind::Alias { .. }) {
                return Err(CheckError::NotAlias(id.to_string()));
            }
            e.shared.clone()
        };
        shared.report(status, output);
        Ok(())
    }

    /// The last (status, output) reported for a check, or its initial one.
    pub fn last(&self, id: &str) -> Option<(Status, String)> {
        self.inner
            .entries
            .borrow()
            .get(id)
            .map(|e| e.shared.last.borrow().clone())
    }

    /// The definition a check runs with.
    pub fn definition(&self, id: &str) -> Option<CheckDef> {
        self.inner
            .entries
            .borrow()
            .get(id)
            .map(|e| (*e.def).clone())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.inner.entries.borrow().contains_key(id)
    }

    pub fn ids(&self) -> Vec<String> {
        self.inner.entries.borrow().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.inner.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn spawn(&self, fut: impl std::future::Future<Output = ()> + 'static) -> Task<()> {
        match self.inner.tq {
            Some(tq) => match glommio::spawn_local_into(fut, tq) {
                Ok(t) => t,
                Err(e) => {
                    // A stale queue handle: the task is lost, say so loudly.
                    log::error!("health checks: cannot spawn into task queue: {e}");
                    glommio::spawn_local(async {})
                }
            },
            None => glommio::spawn_local(fut),
        }
    }
}

/// Consul staggers a check's first run randomly over one interval so that checks registered
/// together do not fire together.
fn stagger(interval: Duration) -> Duration {
    let nanos = interval.as_nanos().min(u128::from(u64::MAX)) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..nanos))
}

async fn interval_loop(shared: Rc<Shared>, def: Rc<CheckDef>) {
    Timer::new(stagger(def.interval)).await;
    loop {
        run_once(&shared, &def).await;
        Timer::new(def.interval).await;
    }
}

/// One run of an interval check, reported through the thresholds (or, for the outcomes
/// Consul reports directly, straight to change detection).
async fn run_once(shared: &Shared, def: &CheckDef) {
    let timeout = def.effective_timeout();
    let tls = &shared.ctx.tls;
    match &def.kind {
        CheckKind::Http {
            url,
            method,
            headers,
            body,
            disable_redirects,
            tls: settings,
        } => {
            let check = HttpCheck {
                url,
                method,
                headers,
                body,
                disable_redirects: *disable_redirects,
                tls: settings,
                timeout,
                max_output: def.effective_output_max_size(),
            };
            let (status, output) = http::run(&check, tls).await;
            shared.report_counted(status, output);
        }
        CheckKind::Tcp {
            addr,
            use_tls,
            tls: settings,
        } => {
            let (status, output) = run_tcp(addr, *use_tls, settings, timeout, tls).await;
            shared.report_counted(status, output);
        }
        CheckKind::Udp { addr } => {
            let (status, output) = run_udp(addr, timeout).await;
            shared.report_counted(status, output);
        }
        CheckKind::Grpc {
            target,
            use_tls,
            tls: settings,
        } => {
            let check = GrpcCheck {
                target,
                use_tls: *use_tls,
                tls: settings,
                timeout,
            };
            let (status, output) = grpc::run(&check, tls).await;
            shared.report_counted(status, output);
        }
        CheckKind::H2Ping {
            addr,
            use_tls,
            tls: settings,
        } => {
            let (status, output) = grpc::run_h2ping(addr, *use_tls, settings, timeout, tls).await;
            shared.report_counted(status, output);
        }
        CheckKind::Script { args } => {
            match script::run(args, timeout, def.effective_output_max_size()).await {
                Outcome::Exited { code, output } => {
                    let status = match code {
                        Some(0) => Status::Passing,
                        Some(1) => Status::Warning,
                        _ => Status::Critical,
                    };
                    shared.report_counted(status, output);
                }
                Outcome::TimedOut { output } => {
                    let mut msg = format!(
                        "Timed out ({}) running check",
                        crate::config::value::format_go_duration(timeout)
                    );
                    if !output.is_empty() {
                        msg.push_str("\n\n");
                        msg.push_str(&output);
                    }
                    shared.report(Status::Critical, msg);
                }
                Outcome::StartFailed(e) => shared.report(Status::Critical, e),
            }
        }
        CheckKind::Ttl { .. } | CheckKind::Alias { .. } => {}
    }
}

/// Fires once, `ttl` after the check was added or last updated (an update replaces this task).
async fn ttl_expiry(shared: Rc<Shared>, ttl: Duration) {
    Timer::new(ttl).await;
    let last = shared.ttl_last_output.borrow().clone();
    let output = if last.is_empty() {
        "TTL expired".to_string()
    } else {
        format!("TTL expired (last output before timeout follows): {last}")
    };
    log::warn!("check {:?} missed its TTL, now critical", shared.id);
    shared.report(Status::Critical, output);
}

async fn run_tcp(
    addr: &str,
    use_tls: bool,
    settings: &super::TlsSettings,
    timeout: Duration,
    tls: &TlsConfigs,
) -> (Status, String) {
    let label = if use_tls { "TCP+TLS" } else { "TCP" };
    let deadline = std::time::Instant::now() + timeout;
    let attempt = async {
        let tcp = super::net::resolve_and_dial(addr).await?;
        if use_tls {
            let host = split_host_port(addr).map(|(h, _)| h).unwrap_or_default();
            tls.connect(tcp, &host, settings, Alpn::None).await?;
        }
        Ok::<(), String>(())
    };
    match within(deadline, attempt).await {
        Some(Ok(())) => (Status::Passing, format!("{label} connect {addr}: Success")),
        Some(Err(e)) => (Status::Critical, e),
        None => (Status::Critical, format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Consul's UDP semantics: send a datagram and read; a reply or silence until the timeout is
/// passing, an error (an ICMP port unreachable shows up as "connection refused") critical.
async fn run_udp(addr: &str, timeout: Duration) -> (Status, String) {
    let success = || (Status::Passing, format!("UDP connect {addr}: Success"));
    let deadline = std::time::Instant::now() + timeout;
    let target = match split_host_port(addr) {
        Ok((host, port)) => match within(deadline, resolve(&host, port)).await {
            Some(Ok(addrs)) => addrs[0],
            Some(Err(e)) => return (Status::Critical, format!("dial udp: {e}")),
            None => return success(),
        },
        Err(e) => return (Status::Critical, format!("dial udp: {e}")),
    };
    let local: std::net::SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = match glommio::net::UdpSocket::bind(local) {
        Ok(s) => s,
        Err(e) => {
            let e: std::io::Error = e.into();
            return (
                Status::Critical,
                format!("dial udp {target}: {}", super::net::io_error_text(&e)),
            );
        }
    };
    let exchange = async {
        sock.connect(target).await.map_err(|e| {
            let e: std::io::Error = e.into();
            format!("dial udp {target}: {}", super::net::io_error_text(&e))
        })?;
        let local = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let io_text = |op: &str, e: glommio::GlommioError<()>| {
            let e: std::io::Error = e.into();
            format!(
                "{op} udp {local}->{target}: {op}: {}",
                super::net::io_error_text(&e)
            )
        };
        sock.send(&[]).await.map_err(|e| io_text("write", e))?;
        let mut buf = [0u8; 512];
        sock.recv(&mut buf).await.map_err(|e| io_text("read", e))?;
        Ok::<(), String>(())
    };
    match within(deadline, exchange).await {
        Some(Err(e)) => (Status::Critical, e),
        Some(Ok(())) | None => success(),
    }
}
