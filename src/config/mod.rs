//! Agent configuration: Consul's config files (JSON and HCL) and agent flags.
//!
//! Sources are applied in Consul's order onto one builder: built-in defaults, the `-dev`
//! preset, each `-config-file`/`-config-dir` path in command-line order (a directory
//! gives its `*.json`/`*.hcl` files in lexical order), the command-line flags, then `-hcl`
//! fragments. A later source overrides earlier scalars; lists (`retry_join`, `recursors`,
//! `services`, `checks`, `watches`, ...) accumulate. Every problem is collected, named by
//! file and key, before [`Config::load`] fails. Values that depend on others (advertise
//! address, leave behaviour, node ID, ...) are resolved last.
//!
//! Loading reads files and interfaces with blocking calls: it runs before executors start.

mod error;
pub mod hcl1;
mod net;
mod schema;
mod source;
mod types;
pub mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use hcl::Value;

use crate::cli::agent::AgentArgs;

pub use error::{ConfigError, ConfigIssue};
pub use source::ConfigFormat;
pub use types::*;

/// The Consul version whose HTTP API, CLI and config Muster implements. Reported where
/// Consul reports its own version (`/v1/agent/self` `Config.Version`, `muster version`),
/// because clients decide which features exist from it.
pub const CONSUL_COMPAT_VERSION: &str = "1.22.0";

/// Muster's own version.
pub const MUSTER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Name of the node-ID file inside `data_dir` (same name as Consul's).
pub const NODE_ID_FILE: &str = "node-id";

/// Source name used in errors about command-line flags.
const FLAGS_SOURCE: &str = "command-line flags";
/// Source name used in errors found when checking the merged configuration.
const FINAL_SOURCE: &str = "configuration";

/// The complete, resolved agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The agent's flags, kept so [`Config::reload`] can rebuild from the same sources.
    pub args: AgentArgs,
    /// Config files read, in order.
    pub sources: Vec<PathBuf>,
    /// Deprecations and ignored keys, to be logged once the logger is up.
    pub warnings: Vec<String>,

    /// Executors to run (`-cores`, default: CPUs available to the process).
    pub cores: usize,
    /// In-memory server that elects itself (`-dev`); nothing is written to disk.
    pub dev: bool,
    pub server: bool,
    /// This server may elect itself alone. Also set by `bootstrap_expect = 1`.
    pub bootstrap: bool,
    /// Servers to wait for before bootstrapping (0 = not set).
    pub bootstrap_expect: u32,
    /// Non-voting server.
    pub read_replica: bool,

    /// Lower case.
    pub datacenter: String,
    /// Authoritative datacenter for ACLs (defaults to `datacenter`), lower case.
    pub primary_datacenter: String,
    pub node_name: String,
    /// Lower-case UUID.
    pub node_id: String,
    pub node_id_source: NodeIdSource,
    pub disable_host_node_id: bool,
    pub node_meta: BTreeMap<String, String>,
    /// `None` only in `-dev` (or for `validate`).
    pub data_dir: Option<PathBuf>,

    /// Cluster listeners bind here (0.0.0.0 = all interfaces).
    pub bind_addr: IpAddr,
    /// Address other nodes use to reach us (never unspecified).
    pub advertise_addr: IpAddr,
    pub advertise_addr_wan: IpAddr,
    /// LAN gossip bind address (`serf_lan`, `-serf-lan-bind`), default `bind_addr`.
    pub serf_lan_bind: IpAddr,
    /// WAN gossip bind address (`serf_wan`, `-serf-wan-bind`), default `bind_addr`.
    pub serf_wan_bind: IpAddr,
    /// `client_addr` (space-separated list), default 127.0.0.1.
    pub client_addrs: Vec<IpAddr>,
    /// Per-listener addresses, already defaulted to `client_addrs`.
    pub addresses: Addresses,
    pub ports: Ports,
    pub translate_wan_addrs: bool,

    /// Joined at start, retried every `retry_interval`, at most `retry_max` times (0 = forever).
    pub retry_join: Vec<String>,
    pub retry_interval: Duration,
    pub retry_max: u32,
    /// `-join` / `start_join`: joined once at start; failure is fatal (Consul < 1.15).
    pub start_join: Vec<String>,
    pub retry_join_wan: Vec<String>,
    pub retry_interval_wan: Duration,
    pub retry_max_wan: u32,
    pub start_join_wan: Vec<String>,
    pub rejoin_after_leave: bool,
    /// Leave gracefully on SIGTERM (default: true for clients, false for servers).
    pub leave_on_terminate: bool,
    /// Do NOT leave on SIGINT (default: true for servers, false for clients).
    pub skip_leave_on_interrupt: bool,
    pub reconnect_timeout: Duration,
    pub reconnect_timeout_wan: Duration,
    pub gossip_lan: Gossip,
    pub gossip_wan: Gossip,
    /// Decoded gossip key (16, 24 or 32 bytes).
    pub encrypt: Option<Vec<u8>>,
    pub encrypt_verify_incoming: bool,
    pub encrypt_verify_outgoing: bool,
    pub disable_keyring_file: bool,

    pub log: LogConfig,
    pub pid_file: Option<PathBuf>,
    pub ui_config: UiConfig,
    pub performance: Performance,
    pub telemetry: Telemetry,
    pub acl: AclConfig,
    pub dns: DnsConfig,
    pub limits: Limits,
    pub raft: RaftConfig,
    pub autopilot: Autopilot,
    pub tls: TlsConfig,
    pub connect: ConnectConfig,
    pub http_config: HttpConfig,

    pub session_ttl_min: Duration,
    pub default_query_time: Duration,
    pub max_query_time: Duration,
    /// Longest staleness accepted for `?stale` service discovery (0 = unlimited).
    pub discovery_max_stale: Duration,
    pub check_update_interval: Duration,
    pub check_output_max_size: u64,
    pub discard_check_output: bool,
    pub enable_script_checks: bool,
    pub enable_local_script_checks: bool,
    pub enable_central_service_config: bool,
    pub enable_debug: bool,
    pub disable_remote_exec: bool,
    pub disable_update_check: bool,
    pub disable_anonymous_signature: bool,
    pub disable_coordinates: bool,
    pub disable_http_unprintable_char_filter: bool,

    /// Service definitions (`service{}` and `services[]`), as written; validated by the
    /// agent when it registers them.
    pub services: Vec<simd_json::OwnedValue>,
    /// Check definitions (`check{}` and `checks[]`), as written.
    pub checks: Vec<simd_json::OwnedValue>,
    /// Watch definitions (`watches[]`), as written.
    pub watches: Vec<simd_json::OwnedValue>,
    /// `config_entries.bootstrap[]`, as written.
    pub config_entries_bootstrap: Vec<simd_json::OwnedValue>,
}

/// Values whose defaults depend on other values; resolved by `finish`.
#[derive(Debug, Default)]
struct Pending {
    advertise_addr: Option<IpAddr>,
    advertise_addr_wan: Option<IpAddr>,
    serf_lan_bind: Option<IpAddr>,
    serf_wan_bind: Option<IpAddr>,
    client_addr: Option<Vec<IpAddr>>,
    addr_http: Option<Vec<IpAddr>>,
    addr_https: Option<Vec<IpAddr>>,
    addr_dns: Option<Vec<IpAddr>>,
    addr_grpc: Option<Vec<IpAddr>>,
    addr_grpc_tls: Option<Vec<IpAddr>>,
    leave_on_terminate: Option<bool>,
    skip_leave_on_interrupt: Option<bool>,
    primary_datacenter: Option<String>,
    node_name: Option<String>,
    node_id: Option<String>,
    domain: Option<String>,
    alt_domain: Option<String>,
    encrypt: Option<String>,
}

/// Accumulates sources; see the module docs.
struct Builder {
    cfg: Config,
    p: Pending,
    issues: Vec<ConfigIssue>,
}

/// What `finish` must insist on.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// `validate` checks files without a data dir; the agent needs one.
    require_data_dir: bool,
    /// Read `data_dir/node-id` (the agent does; `validate` need not).
    read_node_id: bool,
    /// Detect the advertise address from interfaces when binding 0.0.0.0.
    detect_advertise: bool,
}

impl Config {
    /// Built-in defaults before any source: a client agent with nothing resolved yet.
    fn defaults() -> Config {
        Config {
            args: AgentArgs::default(),
            sources: Vec::new(),
            warnings: Vec::new(),
            cores: available_cores(),
            dev: false,
            server: false,
            bootstrap: false,
            bootstrap_expect: 0,
            read_replica: false,
            datacenter: DEFAULT_DATACENTER.to_owned(),
            primary_datacenter: String::new(),
            node_name: String::new(),
            node_id: String::new(),
            node_id_source: NodeIdSource::Generated,
            disable_host_node_id: true,
            node_meta: BTreeMap::new(),
            data_dir: None,
            bind_addr: DEFAULT_BIND_ADDR,
            advertise_addr: DEFAULT_BIND_ADDR,
            advertise_addr_wan: DEFAULT_BIND_ADDR,
            serf_lan_bind: DEFAULT_BIND_ADDR,
            serf_wan_bind: DEFAULT_BIND_ADDR,
            client_addrs: vec![DEFAULT_CLIENT_ADDR],
            addresses: Addresses::default(),
            ports: Ports::default(),
            translate_wan_addrs: false,
            retry_join: Vec::new(),
            retry_interval: DEFAULT_RETRY_INTERVAL,
            retry_max: 0,
            start_join: Vec::new(),
            retry_join_wan: Vec::new(),
            retry_interval_wan: DEFAULT_RETRY_INTERVAL,
            retry_max_wan: 0,
            start_join_wan: Vec::new(),
            rejoin_after_leave: false,
            leave_on_terminate: true,
            skip_leave_on_interrupt: false,
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
            reconnect_timeout_wan: DEFAULT_RECONNECT_TIMEOUT,
            gossip_lan: Gossip::lan_default(),
            gossip_wan: Gossip::wan_default(),
            encrypt: None,
            encrypt_verify_incoming: true,
            encrypt_verify_outgoing: true,
            disable_keyring_file: false,
            log: LogConfig::default(),
            pid_file: None,
            ui_config: UiConfig::default(),
            performance: Performance::default(),
            telemetry: Telemetry::default(),
            acl: AclConfig::default(),
            dns: DnsConfig::default(),
            limits: Limits::default(),
            raft: RaftConfig::default(),
            autopilot: Autopilot::default(),
            tls: TlsConfig::default(),
            connect: ConnectConfig::default(),
            http_config: HttpConfig::default(),
            session_ttl_min: DEFAULT_SESSION_TTL_MIN,
            default_query_time: DEFAULT_QUERY_TIME,
            max_query_time: DEFAULT_MAX_QUERY_TIME,
            discovery_max_stale: Duration::ZERO,
            check_update_interval: DEFAULT_CHECK_UPDATE_INTERVAL,
            check_output_max_size: DEFAULT_CHECK_OUTPUT_MAX_SIZE,
            discard_check_output: false,
            enable_script_checks: false,
            enable_local_script_checks: false,
            enable_central_service_config: true,
            enable_debug: false,
            disable_remote_exec: true,
            disable_update_check: false,
            disable_anonymous_signature: false,
            disable_coordinates: false,
            disable_http_unprintable_char_filter: false,
            services: Vec::new(),
            checks: Vec::new(),
            watches: Vec::new(),
            config_entries_bootstrap: Vec::new(),
        }
    }

    /// Loads the configuration of `muster agent` from its flags and the files they name.
    pub fn load(args: &AgentArgs) -> Result<Config, ConfigError> {
        let mode = Mode {
            require_data_dir: true,
            read_node_id: true,
            detect_advertise: true,
        };
        Config::load_with(args, mode)
    }

    /// Re-reads the same sources (SIGHUP, `/v1/agent/reload`). The caller decides which
    /// changes take effect live (Consul: services, checks, watches, log level, ...).
    pub fn reload(&self) -> Result<Config, ConfigError> {
        Config::load(&self.args)
    }

    /// `muster validate`: loads these files/directories as an agent would, without
    /// needing a data dir or touching the network configuration.
    pub fn validate_paths(
        paths: &[PathBuf],
        format: Option<ConfigFormat>,
    ) -> Result<Config, ConfigError> {
        let args = AgentArgs {
            config_paths: paths.to_vec(),
            config_format: format.map(|f| match f {
                ConfigFormat::Json => "json".to_owned(),
                ConfigFormat::Hcl => "hcl".to_owned(),
            }),
            ..AgentArgs::default()
        };
        let mode = Mode {
            require_data_dir: false,
            read_node_id: false,
            detect_advertise: false,
        };
        Config::load_with(&args, mode)
    }

    /// What `muster agent -dev` gives with no other flag or file.
    pub fn dev() -> Config {
        let args = AgentArgs {
            dev: Some(true),
            ..AgentArgs::default()
        };
        let mode = Mode {
            require_data_dir: false,
            read_node_id: false,
            detect_advertise: false,
        };
        match Config::load_with(&args, mode) {
            Ok(c) => c,
            // The dev preset only fails if the host name is unusable; fall back to a fixed one.
            Err(_) => {
                let args = AgentArgs {
                    node: Some("muster-dev".to_owned()),
                    ..args
                };
                Config::load_with(&args, mode).unwrap_or_else(|_| Config::dummy())
            }
        }
    }

    /// A deterministic dev server for tests: fixed node name and ID, every listener on
    /// 127.0.0.1 with port 0 ("any free port"; the runtime reports what it bound), WAN off.
    pub fn dummy() -> Config {
        let mut c = Config::defaults();
        apply_dev_preset(&mut c);
        c.cores = 1;
        c.node_name = "test-node".to_owned();
        c.node_id = "11111111-2222-3333-4444-555555555555".to_owned();
        c.node_id_source = NodeIdSource::Configured;
        c.primary_datacenter = c.datacenter.clone();
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        c.bind_addr = lo;
        c.advertise_addr = lo;
        c.advertise_addr_wan = lo;
        c.serf_lan_bind = lo;
        c.serf_wan_bind = lo;
        c.ports.http = Some(0);
        c.ports.dns = Some(0);
        c.ports.server = Some(0);
        c.ports.serf_lan = Some(0);
        c.ports.serf_wan = None;
        c.ports.grpc = None;
        c.leave_on_terminate = false;
        c.skip_leave_on_interrupt = true;
        c
    }

    fn load_with(args: &AgentArgs, mode: Mode) -> Result<Config, ConfigError> {
        let mut b = Builder {
            cfg: Config::defaults(),
            p: Pending::default(),
            issues: Vec::new(),
        };
        b.cfg.args = args.clone();
        if args.dev == Some(true) {
            apply_dev_preset(&mut b.cfg);
        }
        let forced = match args.config_format.as_deref().map(ConfigFormat::parse) {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                b.issue(FLAGS_SOURCE, Some("-config-format".to_owned()), e);
                None
            }
        };
        for path in &args.config_paths {
            b.load_path(path, forced);
        }
        b.apply_flags(args);
        for (i, frag) in args.hcl.iter().enumerate() {
            b.load_fragment(
                &format!("-hcl fragment #{}", i + 1),
                frag,
                ConfigFormat::Hcl,
            );
        }
        b.finish(mode)
    }

    /// Writes a generated node ID to `data_dir/node-id` so it survives restarts.
    /// Call once before the runtime starts (it uses blocking file I/O). No-op in `-dev`,
    /// without a data dir, or when the ID was configured or read from the file.
    pub fn persist_node_id(&mut self) -> std::io::Result<()> {
        if self.dev || self.node_id_source != NodeIdSource::Generated {
            return Ok(());
        }
        let Some(dir) = &self.data_dir else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)?;
        let path = dir.join(NODE_ID_FILE);
        let tmp = dir.join(format!("{NODE_ID_FILE}.tmp"));
        // Durable before the agent uses it: a crash must not leave an empty or missing ID that
        // a restart would replace with a new one.
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, self.node_id.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        self.node_id_source = NodeIdSource::DataDir;
        Ok(())
    }

    /// The address a client-facing listener is reachable on from this host, for CLI
    /// defaults and logs: the first configured HTTP address, or loopback when it is 0.0.0.0.
    pub fn http_addr_for_local_clients(&self) -> Option<std::net::SocketAddr> {
        let port = self.ports.http?;
        let ip = self
            .addresses
            .http
            .first()
            .copied()
            .unwrap_or(DEFAULT_CLIENT_ADDR);
        let ip = if ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            ip
        };
        Some(std::net::SocketAddr::new(ip, port))
    }
}

/// Consul's dev preset; later sources may still override any of it.
fn apply_dev_preset(c: &mut Config) {
    c.dev = true;
    c.server = true;
    c.bootstrap = true;
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    c.bind_addr = lo;
    c.ui_config.enabled = true;
    // Consul's dev agent logs at DEBUG.
    c.log.level = LogLevel::Debug;
    c.connect.enabled = true;
    c.performance.raft_multiplier = 1;
    c.ports.grpc = Some(DEV_GRPC_PORT);
    c.disable_anonymous_signature = true;
    c.disable_keyring_file = true;
    c.enable_debug = true;
    c.gossip_lan = Gossip::dev_default();
    c.gossip_wan = Gossip::dev_default();
}

fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Builder {
    fn issue(&mut self, source: &str, key: Option<String>, message: String) {
        self.issues.push(ConfigIssue {
            source: source.to_owned(),
            key,
            message,
        });
    }

    fn warn(&mut self, w: String) {
        if !self.cfg.warnings.contains(&w) {
            self.cfg.warnings.push(w);
        }
    }

    fn issue_count(&self) -> usize {
        self.issues.len()
    }

    fn rename_issue_keys(&mut self, from: usize, key: &str) {
        for i in &mut self.issues[from..] {
            i.key = Some(key.to_owned());
        }
    }

    /// Command-line flags, applied through the config table (see `schema`).
    fn apply_flags(&mut self, a: &AgentArgs) {
        let s = |x: &String| Value::String(x.clone());
        let p = |x: &PathBuf| Value::String(x.to_string_lossy().into_owned());
        let list = |xs: &[String]| Value::Array(xs.iter().cloned().map(Value::String).collect());
        let strs: &[(&str, &str, &Option<String>)] = &[
            ("-node", "node_name", &a.node),
            ("-node-id", "node_id", &a.node_id),
            ("-datacenter", "datacenter", &a.datacenter),
            ("-bind", "bind_addr", &a.bind),
            ("-advertise", "advertise_addr", &a.advertise),
            ("-advertise-wan", "advertise_addr_wan", &a.advertise_wan),
            ("-client", "client_addr", &a.client),
            ("-serf-lan-bind", "serf_lan", &a.serf_lan_bind),
            ("-serf-wan-bind", "serf_wan", &a.serf_wan_bind),
            ("-log-level", "log_level", &a.log_level),
            (
                "-log-rotate-duration",
                "log_rotate_duration",
                &a.log_rotate_duration,
            ),
            (
                "-ui-content-path",
                "ui_config.content_path",
                &a.ui_content_path,
            ),
            ("-encrypt", "encrypt", &a.encrypt),
            ("-retry-interval", "retry_interval", &a.retry_interval),
            (
                "-retry-interval-wan",
                "retry_interval_wan",
                &a.retry_interval_wan,
            ),
            ("-domain", "domain", &a.domain),
            ("-alt-domain", "alt_domain", &a.alt_domain),
            (
                "-default-query-time",
                "default_query_time",
                &a.default_query_time,
            ),
            ("-max-query-time", "max_query_time", &a.max_query_time),
        ];
        for (flag, key, v) in strs {
            if let Some(v) = v {
                self.apply_flag(flag, key, s(v));
            }
        }
        let bools: &[(&str, &str, Option<bool>)] = &[
            ("-server", "server", a.server),
            ("-bootstrap", "bootstrap", a.bootstrap),
            (
                "-disable-host-node-id",
                "disable_host_node_id",
                a.disable_host_node_id,
            ),
            ("-log-json", "log_json", a.log_json),
            ("-syslog", "enable_syslog", a.syslog),
            ("-ui", "ui_config.enabled", a.ui),
            ("-rejoin", "rejoin_after_leave", a.rejoin),
            (
                "-enable-script-checks",
                "enable_script_checks",
                a.enable_script_checks,
            ),
            (
                "-enable-local-script-checks",
                "enable_local_script_checks",
                a.enable_local_script_checks,
            ),
            (
                "-disable-keyring-file",
                "disable_keyring_file",
                a.disable_keyring_file,
            ),
            ("-read-replica", "read_replica", a.read_replica),
        ];
        for (flag, key, v) in bools {
            if let Some(v) = v {
                self.apply_flag(flag, key, Value::Bool(*v));
            }
        }
        let ints: &[(&str, &str, Option<i64>)] = &[
            (
                "-bootstrap-expect",
                "bootstrap_expect",
                a.bootstrap_expect.map(i64::from),
            ),
            ("-http-port", "ports.http", a.http_port),
            ("-https-port", "ports.https", a.https_port),
            ("-dns-port", "ports.dns", a.dns_port),
            ("-grpc-port", "ports.grpc", a.grpc_port),
            ("-grpc-tls-port", "ports.grpc_tls", a.grpc_tls_port),
            ("-serf-lan-port", "ports.serf_lan", a.serf_lan_port),
            ("-serf-wan-port", "ports.serf_wan", a.serf_wan_port),
            ("-server-port", "ports.server", a.server_port),
            (
                "-log-rotate-bytes",
                "log_rotate_bytes",
                a.log_rotate_bytes.map(|b| b.min(i64::MAX as u64) as i64),
            ),
            (
                "-log-rotate-max-files",
                "log_rotate_max_files",
                a.log_rotate_max_files,
            ),
            ("-retry-max", "retry_max", a.retry_max.map(i64::from)),
            (
                "-retry-max-wan",
                "retry_max_wan",
                a.retry_max_wan.map(i64::from),
            ),
            ("-raft-protocol", "raft_protocol", a.raft_protocol),
            (
                "-check_output_max_size",
                "check_output_max_size",
                a.check_output_max_size,
            ),
        ];
        for (flag, key, v) in ints {
            if let Some(v) = v {
                self.apply_flag(flag, key, Value::from(*v));
            }
        }
        let paths: &[(&str, &str, &Option<PathBuf>)] = &[
            ("-data-dir", "data_dir", &a.data_dir),
            ("-log-file", "log_file", &a.log_file),
            ("-pid-file", "pid_file", &a.pid_file),
            ("-ui-dir", "ui_config.dir", &a.ui_dir),
        ];
        for (flag, key, v) in paths {
            if let Some(v) = v {
                self.apply_flag(flag, key, p(v));
            }
        }
        let lists: &[(&str, &str, &Vec<String>)] = &[
            ("-join", "start_join", &a.join),
            ("-retry-join", "retry_join", &a.retry_join),
            ("-join-wan", "start_join_wan", &a.join_wan),
            ("-retry-join-wan", "retry_join_wan", &a.retry_join_wan),
            ("-recursor", "recursors", &a.recursor),
        ];
        for (flag, key, v) in lists {
            if !v.is_empty() {
                self.apply_flag(flag, key, list(v));
            }
        }
        for kv in &a.node_meta {
            match kv.split_once(':') {
                Some((k, v)) if !k.is_empty() => {
                    let mut m = hcl::Map::new();
                    m.insert(k.to_owned(), Value::String(v.to_owned()));
                    self.apply_flag("-node-meta", "node_meta", Value::Object(m));
                }
                _ => self.issue(
                    FLAGS_SOURCE,
                    Some("-node-meta".to_owned()),
                    format!("{kv:?} is not in key:value form"),
                ),
            }
        }
        if let Some(n) = a.cores {
            if n == 0 {
                self.issue(
                    FLAGS_SOURCE,
                    Some("-cores".to_owned()),
                    "must be at least 1".to_owned(),
                );
            } else {
                self.cfg.cores = n;
            }
        }
    }

    /// Resolves dependent values and checks the merged configuration.
    fn finish(mut self, mode: Mode) -> Result<Config, ConfigError> {
        let p = std::mem::take(&mut self.p);
        let fin = |b: &mut Builder, key: &str, msg: String| {
            b.issue(FINAL_SOURCE, Some(key.to_owned()), msg)
        };

        // Identity.
        let dc = self.cfg.datacenter.to_ascii_lowercase();
        if !valid_dc(&dc) {
            let msg = format!("{:?} is invalid; use only [a-z0-9-_]", self.cfg.datacenter);
            fin(&mut self, "datacenter", msg);
        }
        self.cfg.datacenter = dc;
        self.cfg.primary_datacenter = match p.primary_datacenter {
            Some(pd) => {
                let pd = pd.to_ascii_lowercase();
                if !valid_dc(&pd) {
                    fin(
                        &mut self,
                        "primary_datacenter",
                        format!("{pd:?} is invalid; use only [a-z0-9-_]"),
                    );
                }
                pd
            }
            None => self.cfg.datacenter.clone(),
        };
        self.cfg.node_name = match p.node_name {
            Some(n) => n,
            None => gethostname::gethostname().to_string_lossy().into_owned(),
        };
        if self.cfg.node_name.is_empty() {
            fin(
                &mut self,
                "node_name",
                "cannot be empty (and the host name is empty)".to_owned(),
            );
        } else if !valid_dns_label(&self.cfg.node_name) {
            self.warn(format!(
                "Node name {:?} will not be discoverable via DNS due to invalid characters. \
                 Valid characters include all alpha-numerics and dashes.",
                self.cfg.node_name
            ));
        }
        self.resolve_node_id(p.node_id, mode);

        // Modes, in Consul's order: `bootstrap_expect = 1` becomes bootstrap mode first (so
        // `-dev -bootstrap-expect 1` is accepted), then the remaining combinations are checked.
        if self.cfg.bootstrap_expect == 1 {
            self.cfg.bootstrap_expect = 0;
            self.cfg.bootstrap = true;
            self.warn(
                "BootstrapExpect is set to 1; this is the same as Bootstrap mode.".to_owned(),
            );
        }
        if self.cfg.bootstrap && !self.cfg.server {
            fin(
                &mut self,
                "bootstrap",
                "'bootstrap = true' requires 'server = true'".to_owned(),
            );
        }
        if self.cfg.bootstrap_expect > 0 {
            if !self.cfg.server {
                fin(
                    &mut self,
                    "bootstrap_expect",
                    "'bootstrap_expect > 0' requires 'server = true'".to_owned(),
                );
            }
            if self.cfg.dev {
                fin(
                    &mut self,
                    "bootstrap_expect",
                    "'bootstrap_expect > 0' not allowed in dev mode".to_owned(),
                );
            } else if self.cfg.bootstrap {
                fin(
                    &mut self,
                    "bootstrap_expect",
                    "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive"
                        .to_owned(),
                );
            } else if self.cfg.bootstrap_expect == 2 {
                self.warn(
                    "bootstrap_expect = 2: A cluster with 2 servers will provide no failure \
                     tolerance."
                        .to_owned(),
                );
            } else if self.cfg.bootstrap_expect.is_multiple_of(2) {
                self.warn(
                    "bootstrap_expect is even number: A cluster with an even number of servers \
                     does not achieve optimum fault tolerance."
                        .to_owned(),
                );
            }
        } else if self.cfg.server && self.cfg.bootstrap {
            self.warn("bootstrap = true: do not enable unless necessary".to_owned());
        }
        if self.cfg.read_replica && !self.cfg.server {
            fin(
                &mut self,
                "read_replica",
                "'read_replica = true' requires 'server = true'".to_owned(),
            );
        }
        // Consul: servers stay in the cluster on SIGTERM/SIGINT unless told otherwise; clients leave.
        self.cfg.leave_on_terminate = p.leave_on_terminate.unwrap_or(!self.cfg.server);
        self.cfg.skip_leave_on_interrupt = p.skip_leave_on_interrupt.unwrap_or(self.cfg.server);

        // Storage.
        match &self.cfg.data_dir {
            Some(d) if d.as_os_str().is_empty() => {
                fin(&mut self, "data_dir", "cannot be empty".to_owned())
            }
            Some(d) if d.exists() && !d.is_dir() => {
                let msg = format!("{} exists and is not a directory", d.display());
                fin(&mut self, "data_dir", msg)
            }
            None if mode.require_data_dir && !self.cfg.dev => fin(
                &mut self,
                "data_dir",
                "cannot be empty: set data_dir / -data-dir, or run with -dev".to_owned(),
            ),
            _ => {}
        }

        // Addresses.
        self.cfg.client_addrs = p.client_addr.unwrap_or_else(|| vec![DEFAULT_CLIENT_ADDR]);
        let ca = self.cfg.client_addrs.clone();
        self.cfg.addresses = Addresses {
            http: p.addr_http.unwrap_or_else(|| ca.clone()),
            https: p.addr_https.unwrap_or_else(|| ca.clone()),
            dns: p.addr_dns.unwrap_or_else(|| ca.clone()),
            grpc: p.addr_grpc.unwrap_or_else(|| ca.clone()),
            grpc_tls: p.addr_grpc_tls.unwrap_or(ca),
        };
        self.cfg.advertise_addr = match p.advertise_addr {
            Some(a) if a.is_unspecified() => {
                fin(
                    &mut self,
                    "advertise_addr",
                    format!("{a} cannot be advertised; give a routable address"),
                );
                a
            }
            Some(a) => a,
            None if !self.cfg.bind_addr.is_unspecified() => self.cfg.bind_addr,
            None if !mode.detect_advertise => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => match net::detect_advertise(self.cfg.bind_addr) {
                Ok(ip) => ip,
                Err(e) => {
                    fin(&mut self, "bind_addr", e);
                    self.cfg.bind_addr
                }
            },
        };
        self.cfg.advertise_addr_wan = p.advertise_addr_wan.unwrap_or(self.cfg.advertise_addr);
        self.cfg.serf_lan_bind = p.serf_lan_bind.unwrap_or(self.cfg.bind_addr);
        self.cfg.serf_wan_bind = p.serf_wan_bind.unwrap_or(self.cfg.bind_addr);
        if !self.cfg.server {
            // Clients are not in the WAN pool.
            self.cfg.ports.serf_wan = None;
        }
        self.check_port_ranges();

        // DNS.
        if let Some(d) = p.domain {
            match fqdn(&d) {
                Ok(d) => self.cfg.dns.domain = d,
                Err(e) => fin(&mut self, "domain", e),
            }
        }
        if let Some(d) = p.alt_domain {
            match fqdn(&d) {
                Ok(d) if d == self.cfg.dns.domain => fin(
                    &mut self,
                    "alt_domain",
                    format!("{d:?} must differ from domain"),
                ),
                Ok(d) => self.cfg.dns.alt_domain = Some(d),
                Err(e) => fin(&mut self, "alt_domain", e),
            }
        }

        // Gossip key.
        if let Some(k) = p.encrypt {
            match base64::engine::general_purpose::STANDARD.decode(k.trim()) {
                Ok(bytes) if matches!(bytes.len(), 16 | 24 | 32) => self.cfg.encrypt = Some(bytes),
                Ok(bytes) => fin(
                    &mut self,
                    "encrypt",
                    format!(
                        "invalid key: key size is {} bytes; must be 16, 24 or 32",
                        bytes.len()
                    ),
                ),
                Err(e) => fin(
                    &mut self,
                    "encrypt",
                    format!("invalid key: not base64: {e}"),
                ),
            }
        }

        if self
            .cfg
            .acl
            .tokens
            .initial_management
            .as_deref()
            .is_some_and(|t| uuid::Uuid::parse_str(t).is_err())
        {
            self.warn(
                "acl.tokens.initial_management is not a UUID; Consul requires one.".to_owned(),
            );
        }
        if self.cfg.default_query_time > self.cfg.max_query_time {
            fin(
                &mut self,
                "default_query_time",
                "cannot be longer than max_query_time".to_owned(),
            );
        }

        if self.issues.is_empty() {
            Ok(self.cfg)
        } else {
            Err(ConfigError::Invalid(self.issues))
        }
    }

    fn resolve_node_id(&mut self, configured: Option<String>, mode: Mode) {
        if let Some(id) = configured {
            match uuid::Uuid::parse_str(&id) {
                Ok(u) => {
                    self.cfg.node_id = u.hyphenated().to_string();
                    self.cfg.node_id_source = NodeIdSource::Configured;
                }
                Err(e) => self.issue(
                    FINAL_SOURCE,
                    Some("node_id".to_owned()),
                    format!("{id:?} is not a UUID: {e}"),
                ),
            }
            return;
        }
        if mode.read_node_id && !self.cfg.dev {
            if let Some(dir) = self.cfg.data_dir.clone() {
                let path = dir.join(NODE_ID_FILE);
                match read_node_id_file(&path) {
                    Ok(Some(id)) => {
                        self.cfg.node_id = id;
                        self.cfg.node_id_source = NodeIdSource::DataDir;
                        return;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.issue(&path.display().to_string(), None, e);
                        return;
                    }
                }
            }
        }
        self.cfg.node_id = uuid::Uuid::new_v4().hyphenated().to_string();
        self.cfg.node_id_source = NodeIdSource::Generated;
    }

    fn check_port_ranges(&mut self) {
        let p = &self.cfg.ports;
        let mut errs = Vec::new();
        if p.sidecar_min_port > p.sidecar_max_port {
            errs.push((
                "ports.sidecar_min_port",
                "must not be greater than ports.sidecar_max_port",
            ));
        }
        if p.expose_min_port > p.expose_max_port {
            errs.push((
                "ports.expose_min_port",
                "must not be greater than ports.expose_max_port",
            ));
        }
        for (k, m) in errs {
            self.issue(FINAL_SOURCE, Some(k.to_owned()), m.to_owned());
        }
    }
}

fn read_node_id_file(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => match uuid::Uuid::parse_str(s.trim()) {
            Ok(u) => Ok(Some(u.hyphenated().to_string())),
            Err(e) => Err(format!("node ID file does not hold a UUID: {e}")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read node ID file: {e}")),
    }
}

fn valid_dc(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn valid_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// "Consul", ".consul", "consul." -> "consul.".
fn fqdn(d: &str) -> Result<String, String> {
    let t = d.trim().trim_matches('.').to_ascii_lowercase();
    if t.is_empty() {
        return Err("cannot be empty".to_owned());
    }
    let ok = t.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !ok {
        return Err(format!("{d:?} is not a valid DNS domain"));
    }
    Ok(format!("{t}."))
}
