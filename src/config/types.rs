//! The sub-configs that make up [`super::Config`], with their defaults.
//!
//! Defaults are Consul's (its documentation is the spec); each `DEFAULT_*` says where a
//! value matters.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// Datacenter name when none is configured.
pub const DEFAULT_DATACENTER: &str = "dc1";
/// DNS domain served (always stored fully qualified, lower case).
pub const DEFAULT_DOMAIN: &str = "consul.";
/// HTTP API port.
pub const DEFAULT_HTTP_PORT: u16 = 8500;
/// DNS port (UDP and TCP).
pub const DEFAULT_DNS_PORT: u16 = 8600;
/// Server RPC port: raft traffic and client-to-server forwarding.
pub const DEFAULT_SERVER_PORT: u16 = 8300;
/// LAN gossip port (UDP and TCP).
pub const DEFAULT_SERF_LAN_PORT: u16 = 8301;
/// WAN gossip port; servers only.
pub const DEFAULT_SERF_WAN_PORT: u16 = 8302;
/// gRPC (xDS) port; Consul enables it by default only in `-dev`.
pub const DEV_GRPC_PORT: u16 = 8502;
/// Range of ports handed to sidecar proxies registered without a port.
pub const DEFAULT_SIDECAR_MIN_PORT: u16 = 21000;
pub const DEFAULT_SIDECAR_MAX_PORT: u16 = 21255;
/// Range of ports used by `expose` paths of proxies.
pub const DEFAULT_EXPOSE_MIN_PORT: u16 = 21500;
pub const DEFAULT_EXPOSE_MAX_PORT: u16 = 21755;
/// Client listeners (HTTP, DNS, gRPC) bind here unless `client_addr`/`addresses` say otherwise.
pub const DEFAULT_CLIENT_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Cluster listeners bind to all interfaces; the advertised address is then detected.
pub const DEFAULT_BIND_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// Pause between `retry_join` attempts (LAN and WAN).
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// How long a failed node is kept before being reaped from the member list.
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(72 * 3600);
/// Raft timeouts are Consul's minimal values multiplied by this (1 = fastest, 10 = slowest).
pub const DEFAULT_RAFT_MULTIPLIER: u32 = 5;
pub const MAX_RAFT_MULTIPLIER: u32 = 10;
/// Raft protocol version reported in `list-peers` and member tags.
pub const DEFAULT_RAFT_PROTOCOL: u32 = 3;
/// Take a snapshot after this many log entries since the last one...
pub const DEFAULT_RAFT_SNAPSHOT_THRESHOLD: u64 = 16384;
/// ...checked this often.
pub const DEFAULT_RAFT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(30);
/// Log entries kept after a snapshot so slow followers can catch up without one.
pub const DEFAULT_RAFT_TRAILING_LOGS: u64 = 10240;
/// Largest KV value accepted by `PUT /v1/kv` (bytes).
pub const DEFAULT_KV_MAX_VALUE_SIZE: u64 = 512 * 1024;
/// Largest `/v1/txn` request body (bytes).
pub const DEFAULT_TXN_MAX_REQ_LEN: u64 = 512 * 1024;
/// Shortest session TTL accepted by `/v1/session/create`.
pub const DEFAULT_SESSION_TTL_MIN: Duration = Duration::from_secs(10);
/// Blocking queries without `?wait` wait this long...
pub const DEFAULT_QUERY_TIME: Duration = Duration::from_secs(300);
/// ...and `?wait` is capped at this.
pub const DEFAULT_MAX_QUERY_TIME: Duration = Duration::from_secs(600);
/// Anti-entropy: a check whose output alone changed is synced at most this often.
pub const DEFAULT_CHECK_UPDATE_INTERVAL: Duration = Duration::from_secs(300);
/// Maximum bytes of check output kept.
pub const DEFAULT_CHECK_OUTPUT_MAX_SIZE: u64 = 4096;
/// Concurrent HTTP connections accepted from one client IP.
pub const DEFAULT_HTTP_MAX_CONNS_PER_CLIENT: u32 = 200;
/// Concurrent RPC connections accepted from one client IP.
pub const DEFAULT_RPC_MAX_CONNS_PER_CLIENT: u32 = 100;
/// Time a leaving server keeps serving while its departure propagates.
pub const DEFAULT_LEAVE_DRAIN_TIME: Duration = Duration::from_secs(5);
/// How long an RPC is retried while there is no leader.
pub const DEFAULT_RPC_HOLD_TIMEOUT: Duration = Duration::from_secs(7);
/// TTL of cached ACL policies, roles and tokens on agents.
pub const DEFAULT_ACL_TTL: Duration = Duration::from_secs(30);
/// Oldest data a stale DNS answer may use (Consul: 10 years, i.e. "any").
pub const DEFAULT_DNS_MAX_STALE: Duration = Duration::from_secs(87600 * 3600);
/// Records per UDP DNS answer.
pub const DEFAULT_DNS_UDP_ANSWER_LIMIT: u32 = 3;
/// Time allowed to each recursor.
pub const DEFAULT_RECURSOR_TIMEOUT: Duration = Duration::from_secs(2);
/// SOA record timers (seconds).
pub const DEFAULT_SOA_REFRESH: u32 = 3600;
pub const DEFAULT_SOA_RETRY: u32 = 600;
pub const DEFAULT_SOA_EXPIRE: u32 = 86400;
pub const DEFAULT_SOA_MIN_TTL: u32 = 0;
/// Where the web UI is served.
pub const DEFAULT_UI_CONTENT_PATH: &str = "/ui/";
/// Prefix of every metric name (Consul's names are part of the API).
pub const DEFAULT_METRICS_PREFIX: &str = "consul";
/// Log file rotation period.
pub const DEFAULT_LOG_ROTATE_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Syslog facility used with `-syslog`.
pub const DEFAULT_SYSLOG_FACILITY: &str = "LOCAL0";
/// Autopilot: a server is healthy if it heard from the leader within this...
pub const DEFAULT_AUTOPILOT_LAST_CONTACT_THRESHOLD: Duration = Duration::from_millis(200);
/// ...and trails it by at most this many log entries...
pub const DEFAULT_AUTOPILOT_MAX_TRAILING_LOGS: u64 = 250;
/// ...for this long before it is promoted to voter.
pub const DEFAULT_AUTOPILOT_SERVER_STABILIZATION_TIME: Duration = Duration::from_secs(10);

/// The agent's log level (`log_level`, `-log-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// Accepts Consul's spellings, case-insensitively: trace, debug, info, warn, err/error.
    pub fn parse(s: &str) -> Result<LogLevel, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "err" | "error" => Ok(LogLevel::Error),
            _ => Err(format!(
                "invalid log level {s:?}; valid log levels are: [TRACE DEBUG INFO WARN ERR]"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERR",
        }
    }

    pub fn to_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Trace => log::LevelFilter::Trace,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Error => log::LevelFilter::Error,
        }
    }
}

/// Logging (`log_level`, `log_file`, `log_json`, `log_rotate_*`, `enable_syslog`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub level: LogLevel,
    /// `-log-file`: a file, or a directory when it ends in `/`.
    pub file: Option<PathBuf>,
    pub json: bool,
    /// 0 = no size-based rotation.
    pub rotate_bytes: u64,
    pub rotate_duration: Duration,
    /// 0 = keep all rotated files.
    pub rotate_max_files: i64,
    pub enable_syslog: bool,
    pub syslog_facility: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::Info,
            file: None,
            json: false,
            rotate_bytes: 0,
            rotate_duration: DEFAULT_LOG_ROTATE_DURATION,
            rotate_max_files: 0,
            enable_syslog: false,
            syslog_facility: DEFAULT_SYSLOG_FACILITY.to_owned(),
        }
    }
}

/// `ports{}`. `None` means disabled (`-1` in Consul's syntax).
/// `Some(0)` is never produced by files or flags; tests use it for "any free port".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    pub http: Option<u16>,
    pub https: Option<u16>,
    pub dns: Option<u16>,
    pub grpc: Option<u16>,
    pub grpc_tls: Option<u16>,
    pub server: Option<u16>,
    pub serf_lan: Option<u16>,
    pub serf_wan: Option<u16>,
    pub sidecar_min_port: u16,
    pub sidecar_max_port: u16,
    pub expose_min_port: u16,
    pub expose_max_port: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            http: Some(DEFAULT_HTTP_PORT),
            https: None,
            dns: Some(DEFAULT_DNS_PORT),
            grpc: None,
            grpc_tls: None,
            server: Some(DEFAULT_SERVER_PORT),
            serf_lan: Some(DEFAULT_SERF_LAN_PORT),
            serf_wan: Some(DEFAULT_SERF_WAN_PORT),
            sidecar_min_port: DEFAULT_SIDECAR_MIN_PORT,
            sidecar_max_port: DEFAULT_SIDECAR_MAX_PORT,
            expose_min_port: DEFAULT_EXPOSE_MIN_PORT,
            expose_max_port: DEFAULT_EXPOSE_MAX_PORT,
        }
    }
}

/// Resolved listen addresses of the client-facing listeners (`addresses{}` falling back
/// to `client_addr`). Each listener binds every address of its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    pub http: Vec<IpAddr>,
    pub https: Vec<IpAddr>,
    pub dns: Vec<IpAddr>,
    pub grpc: Vec<IpAddr>,
    pub grpc_tls: Vec<IpAddr>,
}

impl Default for Addresses {
    fn default() -> Self {
        let d = vec![DEFAULT_CLIENT_ADDR];
        Addresses {
            http: d.clone(),
            https: d.clone(),
            dns: d.clone(),
            grpc: d.clone(),
            grpc_tls: d,
        }
    }
}

/// `ui_config{}` (and the older `ui`, `ui_dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiConfig {
    pub enabled: bool,
    /// Serve the UI from this directory instead of the built-in assets.
    pub dir: Option<PathBuf>,
    pub content_path: String,
    pub metrics_provider: Option<String>,
    pub dashboard_url_templates: BTreeMap<String, String>,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: false,
            dir: None,
            content_path: DEFAULT_UI_CONTENT_PATH.to_owned(),
            metrics_provider: None,
            dashboard_url_templates: BTreeMap::new(),
        }
    }
}

/// `performance{}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Performance {
    /// 1..=10; scales raft election/heartbeat/lease timeouts.
    pub raft_multiplier: u32,
    pub leave_drain_time: Duration,
    pub rpc_hold_timeout: Duration,
}

impl Default for Performance {
    fn default() -> Self {
        Performance {
            raft_multiplier: DEFAULT_RAFT_MULTIPLIER,
            leave_drain_time: DEFAULT_LEAVE_DRAIN_TIME,
            rpc_hold_timeout: DEFAULT_RPC_HOLD_TIMEOUT,
        }
    }
}

/// `telemetry{}`. Only the Prometheus endpoint is served; sink addresses are kept so a
/// later exporter can use them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telemetry {
    /// 0 disables `?format=prometheus` (Consul's rule).
    pub prometheus_retention_time: Duration,
    /// Do not prefix gauge names with the host name.
    pub disable_hostname: bool,
    pub metrics_prefix: String,
    pub filter_default: bool,
    pub prefix_filter: Vec<String>,
    pub statsd_address: Option<String>,
    pub statsite_address: Option<String>,
    pub dogstatsd_addr: Option<String>,
    pub dogstatsd_tags: Vec<String>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            prometheus_retention_time: Duration::ZERO,
            disable_hostname: false,
            metrics_prefix: DEFAULT_METRICS_PREFIX.to_owned(),
            filter_default: true,
            prefix_filter: Vec::new(),
            statsd_address: None,
            statsite_address: None,
            dogstatsd_addr: None,
            dogstatsd_tags: Vec::new(),
        }
    }
}

/// `acl.default_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AclPolicy {
    Allow,
    Deny,
}

/// `acl.down_policy`: what to do when the ACL datacenter cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AclDownPolicy {
    Allow,
    Deny,
    ExtendCache,
    AsyncCache,
}

/// `acl.tokens{}`. Any of them may be `null` in a file, which means "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclTokens {
    /// Bootstrap (management) token; `master` is its old name.
    pub initial_management: Option<String>,
    /// Token the agent uses for its own registrations.
    pub agent: Option<String>,
    /// Agent-local recovery token; `agent_master` is its old name.
    pub agent_recovery: Option<String>,
    /// Token used for requests that carry none (instead of anonymous).
    pub default: Option<String>,
    pub replication: Option<String>,
    pub config_file_service_registration: Option<String>,
    pub dns: Option<String>,
}

/// `acl{}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclConfig {
    pub enabled: bool,
    pub default_policy: AclPolicy,
    pub down_policy: AclDownPolicy,
    pub policy_ttl: Duration,
    pub role_ttl: Duration,
    pub token_ttl: Duration,
    pub enable_key_list_policy: bool,
    pub enable_token_persistence: bool,
    pub enable_token_replication: bool,
    pub tokens: AclTokens,
}

impl Default for AclConfig {
    fn default() -> Self {
        AclConfig {
            enabled: false,
            default_policy: AclPolicy::Allow,
            down_policy: AclDownPolicy::ExtendCache,
            policy_ttl: DEFAULT_ACL_TTL,
            role_ttl: DEFAULT_ACL_TTL,
            token_ttl: DEFAULT_ACL_TTL,
            enable_key_list_policy: false,
            enable_token_persistence: false,
            enable_token_replication: false,
            tokens: AclTokens::default(),
        }
    }
}

/// `dns_config.recursor_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecursorStrategy {
    Sequential,
    Random,
}

/// `dns_config.soa{}` (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Soa {
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub min_ttl: u32,
}

impl Default for Soa {
    fn default() -> Self {
        Soa {
            refresh: DEFAULT_SOA_REFRESH,
            retry: DEFAULT_SOA_RETRY,
            expire: DEFAULT_SOA_EXPIRE,
            min_ttl: DEFAULT_SOA_MIN_TTL,
        }
    }
}

/// Everything the DNS responder needs: `domain`, `alt_domain`, `recursors` and `dns_config{}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Fully qualified and lower case, e.g. "consul.".
    pub domain: String,
    /// Fully qualified and lower case when set.
    pub alt_domain: Option<String>,
    /// Upstream resolvers for names outside our domains, port 53 unless given.
    pub recursors: Vec<std::net::SocketAddr>,
    pub recursor_strategy: RecursorStrategy,
    pub recursor_timeout: Duration,
    pub allow_stale: bool,
    pub max_stale: Duration,
    pub node_ttl: Duration,
    /// Service name (or "*" wildcard / "prefix*") to TTL.
    pub service_ttl: BTreeMap<String, Duration>,
    pub enable_truncate: bool,
    pub only_passing: bool,
    pub disable_compression: bool,
    /// 0 = no limit.
    pub a_record_limit: u32,
    pub udp_answer_limit: u32,
    pub enable_additional_node_meta_txt: bool,
    pub soa: Soa,
    pub use_cache: bool,
    pub cache_max_age: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            domain: DEFAULT_DOMAIN.to_owned(),
            alt_domain: None,
            recursors: Vec::new(),
            recursor_strategy: RecursorStrategy::Sequential,
            recursor_timeout: DEFAULT_RECURSOR_TIMEOUT,
            allow_stale: true,
            max_stale: DEFAULT_DNS_MAX_STALE,
            node_ttl: Duration::ZERO,
            service_ttl: BTreeMap::new(),
            enable_truncate: false,
            only_passing: false,
            disable_compression: false,
            a_record_limit: 0,
            udp_answer_limit: DEFAULT_DNS_UDP_ANSWER_LIMIT,
            enable_additional_node_meta_txt: true,
            soa: Soa::default(),
            use_cache: false,
            cache_max_age: Duration::ZERO,
        }
    }
}

/// `limits{}` (and the top-level `kv_max_value_size`/`txn_max_req_len` spellings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub kv_max_value_size: u64,
    pub txn_max_req_len: u64,
    pub http_max_conns_per_client: u32,
    pub rpc_max_conns_per_client: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            kv_max_value_size: DEFAULT_KV_MAX_VALUE_SIZE,
            txn_max_req_len: DEFAULT_TXN_MAX_REQ_LEN,
            http_max_conns_per_client: DEFAULT_HTTP_MAX_CONNS_PER_CLIENT,
            rpc_max_conns_per_client: DEFAULT_RPC_MAX_CONNS_PER_CLIENT,
        }
    }
}

/// Raft tuning keys that Consul keeps at the top level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    pub protocol: u32,
    pub snapshot_threshold: u64,
    pub snapshot_interval: Duration,
    pub trailing_logs: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            protocol: DEFAULT_RAFT_PROTOCOL,
            snapshot_threshold: DEFAULT_RAFT_SNAPSHOT_THRESHOLD,
            snapshot_interval: DEFAULT_RAFT_SNAPSHOT_INTERVAL,
            trailing_logs: DEFAULT_RAFT_TRAILING_LOGS,
        }
    }
}

/// `autopilot{}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autopilot {
    pub cleanup_dead_servers: bool,
    pub last_contact_threshold: Duration,
    pub max_trailing_logs: u64,
    pub min_quorum: u32,
    pub server_stabilization_time: Duration,
}

impl Default for Autopilot {
    fn default() -> Self {
        Autopilot {
            cleanup_dead_servers: true,
            last_contact_threshold: DEFAULT_AUTOPILOT_LAST_CONTACT_THRESHOLD,
            max_trailing_logs: DEFAULT_AUTOPILOT_MAX_TRAILING_LOGS,
            min_quorum: 0,
            server_stabilization_time: DEFAULT_AUTOPILOT_SERVER_STABILIZATION_TIME,
        }
    }
}

/// SWIM timings (`gossip_lan{}`, `gossip_wan{}`), memberlist's LAN/WAN defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gossip {
    pub gossip_nodes: u32,
    pub gossip_interval: Duration,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub retransmit_mult: u32,
    pub suspicion_mult: u32,
}

impl Gossip {
    pub fn lan_default() -> Gossip {
        Gossip {
            gossip_nodes: 3,
            gossip_interval: Duration::from_millis(200),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            retransmit_mult: 4,
            suspicion_mult: 4,
        }
    }

    pub fn wan_default() -> Gossip {
        Gossip {
            gossip_nodes: 4,
            gossip_interval: Duration::from_millis(500),
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            retransmit_mult: 4,
            suspicion_mult: 6,
        }
    }

    /// `-dev` gossips fast so a local cluster converges at once.
    pub fn dev_default() -> Gossip {
        Gossip {
            gossip_nodes: 3,
            gossip_interval: Duration::from_millis(100),
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(100),
            retransmit_mult: 4,
            suspicion_mult: 3,
        }
    }
}

/// One TLS section (`tls.defaults`, `tls.https`, `tls.internal_rpc`, `tls.grpc`).
/// Unset fields of a specific section fall back to `tls.defaults` (see [`TlsConfig::effective`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSection {
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub verify_incoming: Option<bool>,
    pub verify_outgoing: Option<bool>,
    pub verify_server_hostname: Option<bool>,
    pub tls_min_version: Option<String>,
    pub tls_cipher_suites: Option<String>,
}

impl TlsSection {
    fn or(&self, d: &TlsSection) -> TlsSection {
        TlsSection {
            ca_file: self.ca_file.clone().or_else(|| d.ca_file.clone()),
            ca_path: self.ca_path.clone().or_else(|| d.ca_path.clone()),
            cert_file: self.cert_file.clone().or_else(|| d.cert_file.clone()),
            key_file: self.key_file.clone().or_else(|| d.key_file.clone()),
            verify_incoming: self.verify_incoming.or(d.verify_incoming),
            verify_outgoing: self.verify_outgoing.or(d.verify_outgoing),
            verify_server_hostname: self.verify_server_hostname.or(d.verify_server_hostname),
            tls_min_version: self
                .tls_min_version
                .clone()
                .or_else(|| d.tls_min_version.clone()),
            tls_cipher_suites: self
                .tls_cipher_suites
                .clone()
                .or_else(|| d.tls_cipher_suites.clone()),
        }
    }
}

/// Which listener a TLS section applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsListener {
    Https,
    InternalRpc,
    Grpc,
}

/// `tls{}` plus the deprecated top-level `ca_file`, `verify_incoming`, ... keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub defaults: TlsSection,
    pub https: TlsSection,
    pub internal_rpc: TlsSection,
    pub grpc: TlsSection,
}

impl TlsConfig {
    /// The settings of one listener with `tls.defaults` filled in.
    pub fn effective(&self, which: TlsListener) -> TlsSection {
        match which {
            TlsListener::Https => self.https.or(&self.defaults),
            TlsListener::InternalRpc => self.internal_rpc.or(&self.defaults),
            TlsListener::Grpc => self.grpc.or(&self.defaults),
        }
    }
}

/// `connect{}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectConfig {
    pub enabled: bool,
    pub ca_provider: Option<String>,
    /// Provider-specific settings, kept as given.
    pub ca_config: Option<simd_json::OwnedValue>,
}

/// `http_config{}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub response_headers: BTreeMap<String, String>,
    /// CIDRs allowed to make non-GET requests; empty = everyone.
    pub allow_write_http_from: Vec<String>,
    /// Path prefixes answered with 403.
    pub block_endpoints: Vec<String>,
    pub use_cache: bool,
    pub max_header_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            response_headers: BTreeMap::new(),
            allow_write_http_from: Vec::new(),
            block_endpoints: Vec::new(),
            use_cache: true,
            max_header_bytes: 0,
        }
    }
}

/// Where the node ID came from; decides whether it still has to be written to `data_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeIdSource {
    /// `node_id` / `-node-id`.
    Configured,
    /// Read from `data_dir/node-id`.
    DataDir,
    /// Freshly generated; [`super::Config::persist_node_id`] stores it.
    Generated,
}
