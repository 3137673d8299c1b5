//! The thread-per-core runtime: one pinned glommio executor per core, roles placed on them by
//! the placement table, state shards owned one per executor, and a bounded mesh between them.
pub mod core;
pub mod dnsview;
pub mod mesh;
pub mod placement;
pub mod raftcore;
pub mod watch;

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::{Latency, LocalExecutorBuilder, Shares};
use muster_shards::shard::Shard;

use self::core::{Core, Queues, RaftView};
use self::placement::Placement;

pub use crate::config::CONSUL_COMPAT_VERSION;

/// glommio wants at least 512 KiB of lockable memory per executor; 1 MiB fits the default
/// memlock limit of most systems without `cap_ipc_lock`.
const IO_MEMORY: usize = 1 << 20;

/// What the runtime needs to know, derived from the agent configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_name: String,
    pub node_id: String,
    pub datacenter: String,
    pub advertise_addr: IpAddr,
    pub client_addrs: Vec<IpAddr>,
    pub dns_addrs: Vec<IpAddr>,
    /// None: listener disabled (`ports.http = -1`).
    pub http_port: Option<u16>,
    pub dns_port: Option<u16>,
    pub serf_lan_port: u16,
    pub serf_wan_port: u16,
    pub server_port: u16,
    pub server: bool,
    pub bootstrap: bool,
    pub dev: bool,
    /// Executors to run; None = every online CPU.
    pub cores: Option<usize>,
    pub kv_max_value_size: usize,
    pub session_ttl_min: Duration,
    pub raft_snapshot_threshold: u64,
    pub raft_snapshot_interval: Duration,
    pub raft_trailing_logs: u64,
    /// Durable state lives here unless `dev` (the raft log, snapshots).
    pub data_dir: Option<std::path::PathBuf>,
    pub enable_script_checks: bool,
    pub enable_local_script_checks: bool,
}

impl Settings {
    /// The runtime's view of a loaded agent configuration.
    pub fn from_config(c: &crate::config::Config) -> Settings {
        Settings {
            node_name: c.node_name.clone(),
            node_id: c.node_id.clone(),
            datacenter: c.datacenter.clone(),
            advertise_addr: c.advertise_addr,
            client_addrs: if c.addresses.http.is_empty() {
                c.client_addrs.clone()
            } else {
                c.addresses.http.clone()
            },
            dns_addrs: if c.addresses.dns.is_empty() {
                c.client_addrs.clone()
            } else {
                c.addresses.dns.clone()
            },
            http_port: c.ports.http,
            dns_port: c.ports.dns,
            serf_lan_port: c.ports.serf_lan.unwrap_or(8301),
            serf_wan_port: c.ports.serf_wan.unwrap_or(8302),
            server_port: c.ports.server.unwrap_or(8300),
            server: c.server,
            bootstrap: c.bootstrap,
            dev: c.dev,
            cores: Some(c.cores),
            kv_max_value_size: usize::try_from(c.limits.kv_max_value_size).unwrap_or(usize::MAX),
            session_ttl_min: c.session_ttl_min,
            raft_snapshot_threshold: c.raft.snapshot_threshold,
            raft_snapshot_interval: c.raft.snapshot_interval,
            raft_trailing_logs: c.raft.trailing_logs,
            data_dir: c.data_dir.clone(),
            enable_script_checks: c.enable_script_checks,
            enable_local_script_checks: c.enable_local_script_checks,
        }
    }

    /// The data dir when state must survive restarts (not `-dev`).
    pub fn durable_dir(&self) -> Option<&std::path::Path> {
        if self.dev {
            None
        } else {
            self.data_dir.as_deref()
        }
    }

    pub fn server_addr(&self) -> SocketAddr {
        SocketAddr::new(self.advertise_addr, self.server_port)
    }
}

/// Process-wide switches flipped by signals and `/v1/agent/leave|reload`, polled by each core.
#[derive(Debug, Default)]
pub struct Control {
    /// The epoch of multi-shard writes (`muster_shards::visibility`): written by the apply
    /// loop, read by every core that reads more than one shard.
    pub epoch: muster_shards::visibility::WriteEpoch,
    /// Test-only fault (`MUSTER_FAULT=torn-reads`): multi-shard reads skip the visibility
    /// rule, as before it existed, so the linearizability checker can be shown to catch it.
    pub fault_torn_reads: bool,
    /// Test-only fault (`MUSTER_FAULT=panic-on-write`): the raft executor panics on the next
    /// write, to show that a panic anywhere stops the whole process.
    pub fault_panic_on_write: bool,
    shutdown: AtomicBool,
    /// Set by the raft executor once raft has stopped; the other executors stop after it.
    raft_stopped: AtomicBool,
    reloads: AtomicU64,
    /// Why the agent cannot run (set once, then shutdown); the process exits with it.
    fatal: std::sync::OnceLock<String>,
}

impl Control {
    /// Stops the agent because it cannot run; `run` returns this as its error.
    pub fn fail(&self, why: String) {
        let _ = self.fatal.set(why);
        self.request_shutdown();
    }

    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    pub fn request_reload(&self) {
        self.reloads.fetch_add(1, Ordering::SeqCst);
    }

    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::SeqCst)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("cannot start executor {0}: {1}")]
    Executor(usize, String),
    #[error("cannot listen on {addr}: {err}")]
    Listen { addr: SocketAddr, err: String },
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

fn online_cpus() -> Vec<usize> {
    match glommio::CpuSet::online() {
        Ok(set) => {
            let mut v: Vec<usize> = set.into_iter().map(|l| l.cpu).collect();
            v.sort_unstable();
            v.dedup();
            v
        }
        Err(_) => vec![0],
    }
}

fn spawn_signal_thread(control: Arc<Control>) -> Result<(), RuntimeError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(RuntimeError::Signals)?;
    std::thread::Builder::new()
        .name("muster-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    log::info!("SIGHUP: reloading configuration");
                    control.request_reload();
                } else {
                    log::info!("caught signal {sig}; shutting down");
                    control.request_shutdown();
                }
            }
        })
        .map_err(RuntimeError::Signals)?;
    Ok(())
}

/// Refuses ports another process already listens on. glommio sets `SO_REUSEPORT` on its
/// sockets, so a second agent on the same ports would otherwise start and share the traffic
/// (Consul's bind fails with "address already in use"). A trial bind cannot tell: the
/// connections of an agent killed a moment ago linger on the port and block a plain bind. So
/// this asks whether anything accepts connections there. A process that just died may still
/// accept for a moment (io_uring closes its sockets from a kernel worker), hence the retries.
/// Runs on the main thread before any executor exists.
fn probe_ports(s: &Settings) -> Result<(), RuntimeError> {
    const ATTEMPTS: u32 = 20;
    const PAUSE: Duration = Duration::from_millis(100);
    let mut probes: Vec<SocketAddr> = Vec::new();
    if let Some(port) = s.http_port {
        probes.extend(s.client_addrs.iter().map(|ip| SocketAddr::new(*ip, port)));
    }
    if let Some(port) = s.dns_port {
        probes.extend(s.dns_addrs.iter().map(|ip| SocketAddr::new(*ip, port)));
    }
    for addr in probes {
        let mut target = addr;
        if target.ip().is_unspecified() {
            target.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let mut attempt = 1;
        while std::net::TcpStream::connect_timeout(&target, PAUSE).is_ok() {
            if attempt == ATTEMPTS {
                return Err(RuntimeError::Listen {
                    addr,
                    err: "address already in use: another process accepts connections there".into(),
                });
            }
            attempt += 1;
            std::thread::sleep(PAUSE);
        }
    }
    Ok(())
}

/// Exit status of a process stopped by a panic (Rust's own for a panicking main thread).
pub const PANIC_EXIT_CODE: i32 = 101;

/// Fail-stop: a panic on any thread stops the whole process with a logged reason and
/// [`PANIC_EXIT_CODE`]. Without it a panicking executor thread dies alone and leaves the
/// process half alive, with calls to that core never answered.
pub fn install_fail_stop() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The standard report first (location, message, backtrace when asked for).
        report(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        log::error!("fatal: thread {name} panicked ({info}); stopping the process");
        std::process::exit(PANIC_EXIT_CODE);
    }));
}

/// Runs the agent until shutdown.
pub fn start(config: crate::config::Config) -> Result<(), RuntimeError> {
    let settings = Settings::from_config(&config);
    run(settings, config)
}

/// Runs an agent with the given settings until shutdown. `config`, when given, is what a
/// reload re-reads.
pub fn run(settings: Settings, config: crate::config::Config) -> Result<(), RuntimeError> {
    let config = Arc::new(config);
    let mut cpus = online_cpus();
    let want = settings.cores.unwrap_or(cpus.len()).max(1);
    // More executors than CPUs is allowed (tests run -cores 2 anywhere); they then share CPUs.
    let base = cpus.clone();
    while cpus.len() < want {
        cpus.push(base[cpus.len() % base.len()]);
    }
    cpus.truncate(want);
    let placement = Arc::new(Placement::new(cpus));
    log::info!(
        "placement ({} executors):\n{placement}",
        placement.executors
    );
    probe_ports(&settings)?;
    let settings = Arc::new(settings);
    let fault_torn_reads = std::env::var("MUSTER_FAULT").is_ok_and(|v| v == "torn-reads");
    if fault_torn_reads {
        log::warn!(
            "MUSTER_FAULT=torn-reads: multi-shard reads may see part of a write (test only)"
        );
    }
    let fault_panic_on_write = std::env::var("MUSTER_FAULT").is_ok_and(|v| v == "panic-on-write");
    if fault_panic_on_write {
        log::warn!("MUSTER_FAULT=panic-on-write: a KV write panics the raft executor (test only)");
    }
    let control = Arc::new(Control {
        fault_torn_reads,
        fault_panic_on_write,
        ..Control::default()
    });
    spawn_signal_thread(control.clone())?;

    let mut handles = Vec::new();
    for (i, ends) in mesh::build(placement.executors).into_iter().enumerate() {
        let (p, s, c) = (placement.clone(), settings.clone(), control.clone());
        let cfg = config.clone();
        let cpu = placement.cpus[i];
        let h = LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
            .name(&format!("muster-{i}"))
            .io_memory(IO_MEMORY)
            .spawn(move || async move {
                let r = core_main(i, ends, p, s, c.clone(), cfg).await;
                if let Err(e) = &r {
                    log::error!("executor {i}: {e}");
                    c.request_shutdown();
                }
                r
            })
            .map_err(|e| RuntimeError::Executor(i, e.to_string()))?;
        handles.push(h);
    }
    let mut first_err = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(RuntimeError::Executor(i, e.to_string()));
            }
        }
    }
    if let Some(why) = control.fatal.get() {
        return Err(RuntimeError::Raft(why.clone()));
    }
    match first_err {
        Some(e) => Err(e),
        None => {
            log::info!("shutdown complete");
            Ok(())
        }
    }
}

/// Re-reads the configuration sources and applies what can change without a restart (the log
/// level today; services, checks and watches with their issue). The files are read on
/// glommio's blocking pool, never on the reactor.
pub async fn reload() -> Result<(), String> {
    let c = self::core::core();
    let current = c.config.borrow().clone();
    let fresh = glommio::executor()
        .spawn_blocking(move || current.reload())
        .await
        .map_err(|e| e.to_string())?;
    crate::cli::logger::set_level(fresh.log.level);
    load_config_definitions(&fresh);
    log::info!("configuration reloaded");
    *c.config.borrow_mut() = Arc::new(fresh);
    Ok(())
}

/// Builds the DNS answer view on this executor and starts the UDP and TCP responders.
fn start_dns(core: &Rc<Core>, settings: &Settings) -> Result<(), RuntimeError> {
    use crate::dns::{DnsSettings, DnsView};
    let cfg = DnsSettings::from_config(
        &core.config.borrow().dns,
        &settings.datacenter,
        &settings.node_name,
    );
    let domain = cfg.domain.to_string();
    let view = Rc::new(RefCell::new(DnsView::new(
        &settings.datacenter,
        &domain,
        cfg.alt_domain.as_ref().map(|d| d.to_string()).as_deref(),
    )));
    dnsview::install(view.clone());
    let Some(port) = settings.dns_port else {
        return Ok(());
    };
    let cfg = Rc::new(cfg);
    let tq = core.queues.dns;
    for ip in &settings.dns_addrs {
        let addr = SocketAddr::new(*ip, port);
        let udp = glommio::net::UdpSocket::bind(addr).map_err(|e| RuntimeError::Listen {
            addr,
            err: e.to_string(),
        })?;
        let tcp = glommio::net::TcpListener::bind(addr).map_err(|e| RuntimeError::Listen {
            addr,
            err: e.to_string(),
        })?;
        log::info!("DNS on {addr} (udp and tcp)");
        let (v, c) = (view.clone(), cfg.clone());
        glommio::spawn_local_into(
            async move {
                if let Err(e) = crate::dns::serve_udp(udp, v, c).await {
                    log::error!("DNS over UDP on {addr} stopped: {e}");
                }
            },
            tq,
        )
        .expect("dns task queue exists")
        .detach();
        let (v, c) = (view.clone(), cfg.clone());
        glommio::spawn_local_into(
            async move {
                if let Err(e) = crate::dns::serve_tcp(tcp, v, c).await {
                    log::error!("DNS over TCP on {addr} stopped: {e}");
                }
            },
            tq,
        )
        .expect("dns task queue exists")
        .detach();
    }
    Ok(())
}

/// Hands the services and checks of the config files to the agent (replacing earlier ones).
fn load_config_definitions(cfg: &crate::config::Config) {
    let mut services = Vec::new();
    for v in &cfg.services {
        match crate::agent::defs::service_registration(v, true) {
            Ok(s) => services.push(s),
            Err(e) => log::error!("service definition in config not loaded: {e}"),
        }
    }
    let mut checks = Vec::new();
    for v in &cfg.checks {
        match crate::agent::defs::check_registration(v, "", "", true) {
            Ok(c) => checks.push(c),
            Err(e) => log::error!("check definition in config not loaded: {e}"),
        }
    }
    crate::agent::agent().load_config(services, checks);
}

async fn core_main(
    id: usize,
    ends: mesh::MeshEnds,
    placement: Arc<Placement>,
    settings: Arc<Settings>,
    control: Arc<Control>,
    config: Arc<crate::config::Config>,
) -> Result<(), RuntimeError> {
    let ex = glommio::executor();
    let queues = Queues {
        http: ex.create_task_queue(
            Shares::Static(1000),
            Latency::Matters(Duration::from_millis(1)),
            "http",
        ),
        dns: ex.create_task_queue(
            Shares::Static(1000),
            Latency::Matters(Duration::from_millis(1)),
            "dns",
        ),
        raft: ex.create_task_queue(
            Shares::Static(1000),
            Latency::Matters(Duration::from_millis(2)),
            "raft",
        ),
        mesh: ex.create_task_queue(
            Shares::Static(1000),
            Latency::Matters(Duration::from_millis(1)),
            "mesh",
        ),
        background: ex.create_task_queue(Shares::Static(100), Latency::NotImportant, "background"),
    };
    let mesh = ends.connect(queues.mesh).await;
    let nshards = placement.nshards();
    let shard = placement
        .shards
        .iter()
        .position(|e| *e == id)
        .map(|s| (s, RefCell::new(Shard::new(s, nshards))));
    let core = Rc::new(Core {
        id,
        placement: placement.clone(),
        settings: settings.clone(),
        control: control.clone(),
        mesh,
        queues,
        shard,
        watchers: RefCell::default(),
        fence: Rc::default(),
        raft_view: RefCell::new(RaftView::default()),
        config: RefCell::new(config),
        dns_pending: RefCell::default(),
    });
    self::core::install(core.clone());

    if id == 0 {
        crate::metrics::register_defaults(crate::metrics::names::CONSUL_DEFAULTS);
        crate::metrics::register_defaults(crate::metrics::names::MUSTER_DEFAULTS);
    }
    let mut result = Ok(());
    if id == placement.raft {
        glommio::spawn_local_into(raftcore::run(), queues.raft)
            .expect("raft task queue exists")
            .detach();
    }
    if id == placement.dns {
        if let Err(e) = start_dns(&core, &settings) {
            result = Err(e);
            control.request_shutdown();
        }
    }
    if id == placement.http {
        crate::agent::start();
        let cfg = core.config.borrow().clone();
        load_config_definitions(&cfg);
        if let Some(port) = settings.http_port {
            for ip in &settings.client_addrs {
                let addr = SocketAddr::new(*ip, port);
                match glommio::net::TcpListener::bind(addr) {
                    Ok(l) => {
                        log::info!("HTTP API on http://{addr}");
                        let handler: Rc<dyn crate::http::server::Handler> =
                            Rc::new(crate::http::api::Api);
                        let tq = queues.http;
                        glommio::spawn_local_into(
                            async move {
                                if let Err(e) = crate::http::server::serve(
                                    l,
                                    handler,
                                    crate::http::server::Limits::default(),
                                    Some(tq),
                                )
                                .await
                                {
                                    log::error!("HTTP server on {addr} stopped: {e}");
                                }
                            },
                            tq,
                        )
                        .expect("http task queue exists")
                        .detach();
                    }
                    Err(e) => {
                        result = Err(RuntimeError::Listen {
                            addr,
                            err: e.to_string(),
                        });
                        control.request_shutdown();
                    }
                }
            }
        }
    }
    let mut reloads_seen = control.reloads();
    while !control.shutting_down() {
        glommio::timer::sleep(Duration::from_millis(50)).await;
        // SIGHUP is handled by the HTTP executor, which also serves `/v1/agent/reload`.
        if id == placement.http && control.reloads() != reloads_seen {
            reloads_seen = control.reloads();
            if let Err(e) = reload().await {
                log::error!("reload failed: {e}");
            }
        }
    }
    if id == placement.raft {
        raftcore::shutdown().await;
        control.raft_stopped.store(true, Ordering::SeqCst);
    } else {
        // Writes in flight finish on the shards (or fail) while raft stops: the shard cores
        // keep serving the apply loop until then.
        while !control.raft_stopped.load(Ordering::SeqCst) {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
    }
    // Calls still queued to this executor, or made from now on, fail at once. The core
    // context stays installed: jobs already running may finish and must find it.
    core.mesh.stop_receiving();
    result
}
