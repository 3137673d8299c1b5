//! The config keys Muster accepts, as one table per object.
//!
//! Every source (file, `-hcl` fragment, flags) is applied onto the [`Builder`] in order,
//! through this table, so later sources override earlier scalars and lists accumulate
//! (Consul's merge rules). Keys match case-insensitively, as in Consul. Unknown keys,
//! wrong types and bad values become issues naming the source and the dotted key; the
//! walk goes on so every issue is reported at once.

use std::net::SocketAddr;
use std::path::PathBuf;

use hcl::Value;

use super::types::{AclDownPolicy, AclPolicy, LogLevel, RecursorStrategy};
use super::value::{
    as_bool, as_duration, as_i64, as_int_in, as_string, as_string_list, as_string_map, as_u32,
    as_u64, objects, parse_ip, parse_ip_list, to_raw,
};
use super::Builder;

/// Applies one value to the builder.
pub(super) type Setter = fn(&mut Builder, &Value) -> Result<(), String>;

pub(super) enum Kind {
    Leaf(Setter),
    Object(&'static [Field]),
    /// An older or alternative spelling of another key, given as a dotted path from the root.
    Alias {
        target: &'static str,
        deprecated: bool,
    },
    /// Accepted so Consul configs load, but it does nothing in Muster (a warning says so).
    Ignored,
}

pub(super) struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

const fn alias(name: &'static str, target: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Alias {
            target,
            deprecated: true,
        },
    }
}

const fn ignored(name: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Ignored,
    }
}

macro_rules! leaf {
    ($b:ident, $v:ident => $body:expr) => {
        Kind::Leaf(|$b: &mut Builder, $v: &Value| -> Result<(), String> {
            $body;
            Ok(())
        })
    };
}

fn port(v: &Value) -> Result<Option<u16>, String> {
    // Consul: a port <= 0 disables its listener.
    let p = as_int_in(v, -1, 65535)?;
    Ok(if p <= 0 { None } else { Some(p as u16) })
}

fn real_port(v: &Value) -> Result<u16, String> {
    as_int_in(v, 1, 65535).map(|p| p as u16)
}

fn path(v: &Value) -> Result<PathBuf, String> {
    as_string(v).map(PathBuf::from)
}

fn opt_string(v: &Value) -> Result<Option<String>, String> {
    let s = as_string(v)?;
    Ok(if s.is_empty() { None } else { Some(s) })
}

fn ip_list(v: &Value) -> Result<Vec<std::net::IpAddr>, String> {
    parse_ip_list(&as_string(v)?)
}

fn raw_list(v: &Value) -> Result<Vec<simd_json::OwnedValue>, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::Object(_) => to_raw(x),
                other => Err(format!(
                    "[{i}]: expected object, got {}",
                    super::value::type_name(other)
                )),
            })
            .collect(),
        Value::Object(_) => Ok(vec![to_raw(v)?]),
        other => Err(format!(
            "expected object or list of objects, got {}",
            super::value::type_name(other)
        )),
    }
}

/// `recursors` entries: an IP, optionally with a port (default 53).
pub(super) fn recursor(s: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    parse_ip(s)
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("invalid recursor address {s:?} (expected IP or IP:port)"))
}

fn recursors(v: &Value) -> Result<Vec<SocketAddr>, String> {
    as_string_list(v)?.iter().map(|s| recursor(s)).collect()
}

fn log_level(v: &Value) -> Result<LogLevel, String> {
    LogLevel::parse(&as_string(v)?)
}

fn acl_policy(v: &Value) -> Result<AclPolicy, String> {
    match as_string(v)?.as_str() {
        "allow" => Ok(AclPolicy::Allow),
        "deny" => Ok(AclPolicy::Deny),
        other => Err(format!(
            "invalid ACL policy {other:?} (expected \"allow\" or \"deny\")"
        )),
    }
}

fn acl_down_policy(v: &Value) -> Result<AclDownPolicy, String> {
    match as_string(v)?.as_str() {
        "allow" => Ok(AclDownPolicy::Allow),
        "deny" => Ok(AclDownPolicy::Deny),
        "extend-cache" => Ok(AclDownPolicy::ExtendCache),
        "async-cache" => Ok(AclDownPolicy::AsyncCache),
        other => Err(format!(
            "invalid ACL down policy {other:?} (expected allow, deny, extend-cache or async-cache)"
        )),
    }
}

fn token(v: &Value) -> Result<Option<String>, String> {
    opt_string(v)
}

pub(super) static TOP: &[Field] = &[
    f("acl", Kind::Object(ACL)),
    alias("acl_agent_master_token", "acl.tokens.agent_recovery"),
    alias("acl_agent_token", "acl.tokens.agent"),
    alias("acl_datacenter", "primary_datacenter"),
    alias("acl_default_policy", "acl.default_policy"),
    alias("acl_down_policy", "acl.down_policy"),
    alias("acl_enable_key_list_policy", "acl.enable_key_list_policy"),
    ignored("acl_enforce_version_8"),
    alias("acl_master_token", "acl.tokens.initial_management"),
    alias("acl_replication_token", "acl.tokens.replication"),
    alias("acl_token", "acl.tokens.default"),
    alias("acl_ttl", "acl.token_ttl"),
    f("addresses", Kind::Object(ADDRESSES)),
    f(
        "advertise_addr",
        leaf!(b, v => b.p.advertise_addr = Some(parse_ip(&as_string(v)?)?)),
    ),
    ignored("advertise_addr_ipv4"),
    ignored("advertise_addr_ipv6"),
    f(
        "advertise_addr_wan",
        leaf!(b, v => b.p.advertise_addr_wan = Some(parse_ip(&as_string(v)?)?)),
    ),
    ignored("advertise_addr_wan_ipv4"),
    ignored("advertise_addr_wan_ipv6"),
    ignored("advertise_reconnect_timeout"),
    f(
        "alt_domain",
        leaf!(b, v => b.p.alt_domain = Some(as_string(v)?)),
    ),
    ignored("audit"),
    ignored("auto_config"),
    ignored("auto_encrypt"),
    ignored("auto_reload_config"),
    f("autopilot", Kind::Object(AUTOPILOT)),
    // Not a Consul key, but some published examples use it for `bind_addr`.
    f(
        "bind",
        Kind::Alias {
            target: "bind_addr",
            deprecated: true,
        },
    ),
    f(
        "bind_addr",
        leaf!(b, v => b.cfg.bind_addr = parse_ip(&as_string(v)?)?),
    ),
    f("bootstrap", leaf!(b, v => b.cfg.bootstrap = as_bool(v)?)),
    f(
        "bootstrap_expect",
        leaf!(b, v => b.cfg.bootstrap_expect = as_u32(v)?),
    ),
    alias("ca_file", "tls.defaults.ca_file"),
    alias("ca_path", "tls.defaults.ca_path"),
    ignored("cache"),
    alias("cert_file", "tls.defaults.cert_file"),
    f(
        "check",
        Kind::Alias {
            target: "checks",
            deprecated: false,
        },
    ),
    f(
        "check_output_max_size",
        leaf!(b, v => b.cfg.check_output_max_size = as_int_in(v, 1, i64::MAX)? as u64),
    ),
    f(
        "check_update_interval",
        leaf!(b, v => b.cfg.check_update_interval = as_duration(v)?),
    ),
    f("checks", leaf!(b, v => b.cfg.checks.extend(raw_list(v)?))),
    // Not a Consul key, but some published examples use it for `client_addr`.
    f(
        "client",
        Kind::Alias {
            target: "client_addr",
            deprecated: true,
        },
    ),
    f(
        "client_addr",
        leaf!(b, v => b.p.client_addr = Some(ip_list(v)?)),
    ),
    ignored("cloud"),
    f("config_entries", Kind::Object(CONFIG_ENTRIES)),
    f("connect", Kind::Object(CONNECT)),
    f("data_dir", leaf!(b, v => b.cfg.data_dir = Some(path(v)?))),
    f(
        "datacenter",
        leaf!(b, v => b.cfg.datacenter = as_string(v)?),
    ),
    f(
        "default_query_time",
        leaf!(b, v => b.cfg.default_query_time = as_duration(v)?),
    ),
    f(
        "disable_anonymous_signature",
        leaf!(b, v => b.cfg.disable_anonymous_signature = as_bool(v)?),
    ),
    f(
        "disable_coordinates",
        leaf!(b, v => b.cfg.disable_coordinates = as_bool(v)?),
    ),
    f(
        "disable_host_node_id",
        leaf!(b, v => b.cfg.disable_host_node_id = as_bool(v)?),
    ),
    f(
        "disable_http_unprintable_char_filter",
        leaf!(b, v => b.cfg.disable_http_unprintable_char_filter = as_bool(v)?),
    ),
    f(
        "disable_keyring_file",
        leaf!(b, v => b.cfg.disable_keyring_file = as_bool(v)?),
    ),
    f(
        "disable_remote_exec",
        leaf!(b, v => b.cfg.disable_remote_exec = as_bool(v)?),
    ),
    f(
        "disable_update_check",
        leaf!(b, v => b.cfg.disable_update_check = as_bool(v)?),
    ),
    f(
        "discard_check_output",
        leaf!(b, v => b.cfg.discard_check_output = as_bool(v)?),
    ),
    f(
        "discovery_max_stale",
        leaf!(b, v => b.cfg.discovery_max_stale = as_duration(v)?),
    ),
    f("dns_config", Kind::Object(DNS)),
    f("domain", leaf!(b, v => b.p.domain = Some(as_string(v)?))),
    ignored("enable_agent_tls_for_checks"),
    alias("enable_acl_replication", "acl.enable_token_replication"),
    f(
        "enable_central_service_config",
        leaf!(b, v => b.cfg.enable_central_service_config = as_bool(v)?),
    ),
    f(
        "enable_debug",
        leaf!(b, v => b.cfg.enable_debug = as_bool(v)?),
    ),
    f(
        "enable_local_script_checks",
        leaf!(b, v => b.cfg.enable_local_script_checks = as_bool(v)?),
    ),
    f(
        "enable_script_checks",
        leaf!(b, v => b.cfg.enable_script_checks = as_bool(v)?),
    ),
    f(
        "enable_syslog",
        leaf!(b, v => b.cfg.log.enable_syslog = as_bool(v)?),
    ),
    f("encrypt", leaf!(b, v => b.p.encrypt = Some(as_string(v)?))),
    f(
        "encrypt_verify_incoming",
        leaf!(b, v => b.cfg.encrypt_verify_incoming = as_bool(v)?),
    ),
    f(
        "encrypt_verify_outgoing",
        leaf!(b, v => b.cfg.encrypt_verify_outgoing = as_bool(v)?),
    ),
    ignored("experiments"),
    f("gossip_lan", Kind::Object(GOSSIP_LAN)),
    f("gossip_wan", Kind::Object(GOSSIP_WAN)),
    f("http_config", Kind::Object(HTTP_CONFIG)),
    alias("key_file", "tls.defaults.key_file"),
    alias("kv_max_value_size", "limits.kv_max_value_size"),
    f(
        "leave_on_terminate",
        leaf!(b, v => b.p.leave_on_terminate = Some(as_bool(v)?)),
    ),
    ignored("license_path"),
    f("limits", Kind::Object(LIMITS)),
    ignored("locality"),
    f("log_file", leaf!(b, v => b.cfg.log.file = Some(path(v)?))),
    f("log_json", leaf!(b, v => b.cfg.log.json = as_bool(v)?)),
    f("log_level", leaf!(b, v => b.cfg.log.level = log_level(v)?)),
    f(
        "log_rotate_bytes",
        leaf!(b, v => b.cfg.log.rotate_bytes = as_u64(v)?),
    ),
    f(
        "log_rotate_duration",
        leaf!(b, v => b.cfg.log.rotate_duration = as_duration(v)?),
    ),
    f(
        "log_rotate_max_files",
        leaf!(b, v => b.cfg.log.rotate_max_files = as_int_in(v, -1, i64::MAX)?),
    ),
    f(
        "max_query_time",
        leaf!(b, v => b.cfg.max_query_time = as_duration(v)?),
    ),
    f("node_id", leaf!(b, v => b.p.node_id = opt_string(v)?)),
    f(
        "node_meta",
        leaf!(b, v => b.cfg.node_meta.extend(as_string_map(v)?)),
    ),
    f("node_name", leaf!(b, v => b.p.node_name = opt_string(v)?)),
    alias("non_voting_server", "read_replica"),
    ignored("partition"),
    ignored("peering"),
    f("performance", Kind::Object(PERFORMANCE)),
    f("pid_file", leaf!(b, v => b.cfg.pid_file = Some(path(v)?))),
    f("ports", Kind::Object(PORTS)),
    f(
        "primary_datacenter",
        leaf!(b, v => b.p.primary_datacenter = opt_string(v)?),
    ),
    ignored("primary_gateways"),
    ignored("primary_gateways_interval"),
    ignored("protocol"),
    ignored("raft_boltdb"),
    ignored("raft_logstore"),
    f(
        "raft_protocol",
        leaf!(b, v => b.cfg.raft.protocol = as_int_in(v, 3, 3)? as u32),
    ),
    f(
        "raft_snapshot_interval",
        leaf!(b, v => b.cfg.raft.snapshot_interval = as_duration(v)?),
    ),
    f(
        "raft_snapshot_threshold",
        leaf!(b, v => b.cfg.raft.snapshot_threshold = as_u64(v)?),
    ),
    f(
        "raft_trailing_logs",
        leaf!(b, v => b.cfg.raft.trailing_logs = as_u64(v)?),
    ),
    f(
        "read_replica",
        leaf!(b, v => b.cfg.read_replica = as_bool(v)?),
    ),
    f(
        "reconnect_timeout",
        leaf!(b, v => b.cfg.reconnect_timeout = as_duration(v)?),
    ),
    f(
        "reconnect_timeout_wan",
        leaf!(b, v => b.cfg.reconnect_timeout_wan = as_duration(v)?),
    ),
    f(
        "recursor",
        leaf!(b, v => b.cfg.dns.recursors.push(recursor(&as_string(v)?)?)),
    ),
    f(
        "recursors",
        leaf!(b, v => b.cfg.dns.recursors.extend(recursors(v)?)),
    ),
    f(
        "rejoin_after_leave",
        leaf!(b, v => b.cfg.rejoin_after_leave = as_bool(v)?),
    ),
    f(
        "retry_interval",
        leaf!(b, v => b.cfg.retry_interval = as_duration(v)?),
    ),
    f(
        "retry_interval_wan",
        leaf!(b, v => b.cfg.retry_interval_wan = as_duration(v)?),
    ),
    f(
        "retry_join",
        leaf!(b, v => b.cfg.retry_join.extend(as_string_list(v)?)),
    ),
    f(
        "retry_join_wan",
        leaf!(b, v => b.cfg.retry_join_wan.extend(as_string_list(v)?)),
    ),
    f("retry_max", leaf!(b, v => b.cfg.retry_max = as_u32(v)?)),
    f(
        "retry_max_wan",
        leaf!(b, v => b.cfg.retry_max_wan = as_u32(v)?),
    ),
    ignored("rpc"),
    ignored("segment"),
    ignored("segments"),
    f(
        "serf_lan",
        leaf!(b, v => b.p.serf_lan_bind = Some(parse_ip(&as_string(v)?)?)),
    ),
    ignored("serf_lan_allowed_cidrs"),
    f(
        "serf_wan",
        leaf!(b, v => b.p.serf_wan_bind = Some(parse_ip(&as_string(v)?)?)),
    ),
    ignored("serf_wan_allowed_cidrs"),
    f("server", leaf!(b, v => b.cfg.server = as_bool(v)?)),
    ignored("server_name"),
    ignored("server_rejoin_age_max"),
    f(
        "service",
        Kind::Alias {
            target: "services",
            deprecated: false,
        },
    ),
    f(
        "services",
        leaf!(b, v => b.cfg.services.extend(raw_list(v)?)),
    ),
    f(
        "session_ttl_min",
        leaf!(b, v => b.cfg.session_ttl_min = as_duration(v)?),
    ),
    f(
        "skip_leave_on_interrupt",
        leaf!(b, v => b.p.skip_leave_on_interrupt = Some(as_bool(v)?)),
    ),
    f(
        "start_join",
        leaf!(b, v => b.cfg.start_join.extend(as_string_list(v)?)),
    ),
    f(
        "start_join_wan",
        leaf!(b, v => b.cfg.start_join_wan.extend(as_string_list(v)?)),
    ),
    f(
        "syslog_facility",
        leaf!(b, v => b.cfg.log.syslog_facility = as_string(v)?),
    ),
    f("telemetry", Kind::Object(TELEMETRY)),
    f("tls", Kind::Object(TLS)),
    alias("tls_cipher_suites", "tls.defaults.tls_cipher_suites"),
    alias("tls_min_version", "tls.defaults.tls_min_version"),
    ignored("tls_prefer_server_cipher_suites"),
    f(
        "translate_wan_addrs",
        leaf!(b, v => b.cfg.translate_wan_addrs = as_bool(v)?),
    ),
    alias("txn_max_req_len", "limits.txn_max_req_len"),
    alias("ui", "ui_config.enabled"),
    f("ui_config", Kind::Object(UI_CONFIG)),
    alias("ui_content_path", "ui_config.content_path"),
    alias("ui_dir", "ui_config.dir"),
    ignored("unix_sockets"),
    ignored("use_streaming_backend"),
    alias("verify_incoming", "tls.defaults.verify_incoming"),
    alias("verify_incoming_https", "tls.https.verify_incoming"),
    alias("verify_incoming_rpc", "tls.internal_rpc.verify_incoming"),
    alias("verify_outgoing", "tls.defaults.verify_outgoing"),
    alias(
        "verify_server_hostname",
        "tls.internal_rpc.verify_server_hostname",
    ),
    f("watches", leaf!(b, v => b.cfg.watches.extend(raw_list(v)?))),
    ignored("xds"),
];

static ACL: &[Field] = &[
    f(
        "default_policy",
        leaf!(b, v => b.cfg.acl.default_policy = acl_policy(v)?),
    ),
    f(
        "down_policy",
        leaf!(b, v => b.cfg.acl.down_policy = acl_down_policy(v)?),
    ),
    f(
        "enable_key_list_policy",
        leaf!(b, v => b.cfg.acl.enable_key_list_policy = as_bool(v)?),
    ),
    f(
        "enable_token_persistence",
        leaf!(b, v => b.cfg.acl.enable_token_persistence = as_bool(v)?),
    ),
    f(
        "enable_token_replication",
        leaf!(b, v => b.cfg.acl.enable_token_replication = as_bool(v)?),
    ),
    f("enabled", leaf!(b, v => b.cfg.acl.enabled = as_bool(v)?)),
    ignored("msp_disable_bootstrap"),
    f(
        "policy_ttl",
        leaf!(b, v => b.cfg.acl.policy_ttl = as_duration(v)?),
    ),
    f(
        "role_ttl",
        leaf!(b, v => b.cfg.acl.role_ttl = as_duration(v)?),
    ),
    f(
        "token_ttl",
        leaf!(b, v => b.cfg.acl.token_ttl = as_duration(v)?),
    ),
    f("tokens", Kind::Object(ACL_TOKENS)),
    alias("ttl", "acl.token_ttl"),
];

static ACL_TOKENS: &[Field] = &[
    f("agent", leaf!(b, v => b.cfg.acl.tokens.agent = token(v)?)),
    alias("agent_master", "acl.tokens.agent_recovery"),
    f(
        "agent_recovery",
        leaf!(b, v => b.cfg.acl.tokens.agent_recovery = token(v)?),
    ),
    f(
        "config_file_service_registration",
        leaf!(b, v => b.cfg.acl.tokens.config_file_service_registration = token(v)?),
    ),
    f(
        "default",
        leaf!(b, v => b.cfg.acl.tokens.default = token(v)?),
    ),
    f("dns", leaf!(b, v => b.cfg.acl.tokens.dns = token(v)?)),
    f(
        "initial_management",
        leaf!(b, v => b.cfg.acl.tokens.initial_management = token(v)?),
    ),
    ignored("managed_service_provider"),
    alias("master", "acl.tokens.initial_management"),
    f(
        "replication",
        leaf!(b, v => b.cfg.acl.tokens.replication = token(v)?),
    ),
];

static ADDRESSES: &[Field] = &[
    f("dns", leaf!(b, v => b.p.addr_dns = Some(ip_list(v)?))),
    f("grpc", leaf!(b, v => b.p.addr_grpc = Some(ip_list(v)?))),
    f(
        "grpc_tls",
        leaf!(b, v => b.p.addr_grpc_tls = Some(ip_list(v)?)),
    ),
    f("http", leaf!(b, v => b.p.addr_http = Some(ip_list(v)?))),
    f("https", leaf!(b, v => b.p.addr_https = Some(ip_list(v)?))),
    ignored("rpc"),
];

static AUTOPILOT: &[Field] = &[
    f(
        "cleanup_dead_servers",
        leaf!(b, v => b.cfg.autopilot.cleanup_dead_servers = as_bool(v)?),
    ),
    ignored("disable_upgrade_migration"),
    f(
        "last_contact_threshold",
        leaf!(b, v => b.cfg.autopilot.last_contact_threshold = as_duration(v)?),
    ),
    f(
        "max_trailing_logs",
        leaf!(b, v => b.cfg.autopilot.max_trailing_logs = as_u64(v)?),
    ),
    f(
        "min_quorum",
        leaf!(b, v => b.cfg.autopilot.min_quorum = as_u32(v)?),
    ),
    ignored("redundancy_zone_tag"),
    f(
        "server_stabilization_time",
        leaf!(b, v => b.cfg.autopilot.server_stabilization_time = as_duration(v)?),
    ),
    ignored("upgrade_version_tag"),
];

static CONFIG_ENTRIES: &[Field] = &[f(
    "bootstrap",
    leaf!(b, v => b.cfg.config_entries_bootstrap.extend(raw_list(v)?)),
)];

static CONNECT: &[Field] = &[
    f(
        "ca_config",
        leaf!(b, v => b.cfg.connect.ca_config = Some(to_raw(v)?)),
    ),
    f(
        "ca_provider",
        leaf!(b, v => b.cfg.connect.ca_provider = opt_string(v)?),
    ),
    ignored("enable_mesh_gateway_wan_federation"),
    ignored("enable_serverless_plugin"),
    f(
        "enabled",
        leaf!(b, v => b.cfg.connect.enabled = as_bool(v)?),
    ),
];

static DNS: &[Field] = &[
    f(
        "a_record_limit",
        leaf!(b, v => b.cfg.dns.a_record_limit = as_u32(v)?),
    ),
    f(
        "allow_stale",
        leaf!(b, v => b.cfg.dns.allow_stale = as_bool(v)?),
    ),
    f(
        "cache_max_age",
        leaf!(b, v => b.cfg.dns.cache_max_age = as_duration(v)?),
    ),
    f(
        "disable_compression",
        leaf!(b, v => b.cfg.dns.disable_compression = as_bool(v)?),
    ),
    f(
        "enable_additional_node_meta_txt",
        leaf!(b, v => b.cfg.dns.enable_additional_node_meta_txt = as_bool(v)?),
    ),
    f(
        "enable_truncate",
        leaf!(b, v => b.cfg.dns.enable_truncate = as_bool(v)?),
    ),
    f(
        "max_stale",
        leaf!(b, v => b.cfg.dns.max_stale = as_duration(v)?),
    ),
    f(
        "node_ttl",
        leaf!(b, v => b.cfg.dns.node_ttl = as_duration(v)?),
    ),
    f(
        "only_passing",
        leaf!(b, v => b.cfg.dns.only_passing = as_bool(v)?),
    ),
    ignored("prefer_namespace"),
    f(
        "recursor_strategy",
        leaf!(b, v => b.cfg.dns.recursor_strategy = match as_string(v)?.as_str() {
            "sequential" => RecursorStrategy::Sequential,
            "random" => RecursorStrategy::Random,
            other => return Err(format!("invalid recursor strategy {other:?} (expected \"sequential\" or \"random\")")),
        }),
    ),
    f(
        "recursor_timeout",
        leaf!(b, v => b.cfg.dns.recursor_timeout = as_duration(v)?),
    ),
    f(
        "service_ttl",
        leaf!(b, v => {
            for obj in objects(v)? {
                for (name, ttl) in obj {
                    let d = as_duration(ttl).map_err(|e| format!("{name}: {e}"))?;
                    b.cfg.dns.service_ttl.insert(name.clone(), d);
                }
            }
        }),
    ),
    f("soa", Kind::Object(SOA)),
    f(
        "udp_answer_limit",
        leaf!(b, v => b.cfg.dns.udp_answer_limit = as_int_in(v, 1, i64::from(u32::MAX))? as u32),
    ),
    f(
        "use_cache",
        leaf!(b, v => b.cfg.dns.use_cache = as_bool(v)?),
    ),
];

static SOA: &[Field] = &[
    f("expire", leaf!(b, v => b.cfg.dns.soa.expire = as_u32(v)?)),
    f("min_ttl", leaf!(b, v => b.cfg.dns.soa.min_ttl = as_u32(v)?)),
    f("refresh", leaf!(b, v => b.cfg.dns.soa.refresh = as_u32(v)?)),
    f("retry", leaf!(b, v => b.cfg.dns.soa.retry = as_u32(v)?)),
];

macro_rules! gossip_fields {
    ($g:ident) => {
        &[
            f("gossip_interval", leaf!(b, v => b.cfg.$g.gossip_interval = as_duration(v)?)),
            f("gossip_nodes", leaf!(b, v => b.cfg.$g.gossip_nodes = as_int_in(v, 1, 1024)? as u32)),
            f("probe_interval", leaf!(b, v => b.cfg.$g.probe_interval = as_duration(v)?)),
            f("probe_timeout", leaf!(b, v => b.cfg.$g.probe_timeout = as_duration(v)?)),
            f("retransmit_mult", leaf!(b, v => b.cfg.$g.retransmit_mult = as_int_in(v, 1, 1024)? as u32)),
            f("suspicion_mult", leaf!(b, v => b.cfg.$g.suspicion_mult = as_int_in(v, 1, 1024)? as u32)),
        ]
    };
}

static GOSSIP_LAN: &[Field] = gossip_fields!(gossip_lan);
static GOSSIP_WAN: &[Field] = gossip_fields!(gossip_wan);

static HTTP_CONFIG: &[Field] = &[
    f(
        "allow_write_http_from",
        leaf!(b, v => b.cfg.http_config.allow_write_http_from.extend(as_string_list(v)?)),
    ),
    f(
        "block_endpoints",
        leaf!(b, v => b.cfg.http_config.block_endpoints.extend(as_string_list(v)?)),
    ),
    f(
        "max_header_bytes",
        leaf!(b, v => b.cfg.http_config.max_header_bytes = as_u64(v)?),
    ),
    f(
        "response_headers",
        leaf!(b, v => b.cfg.http_config.response_headers.extend(as_string_map(v)?)),
    ),
    f(
        "use_cache",
        leaf!(b, v => b.cfg.http_config.use_cache = as_bool(v)?),
    ),
];

static LIMITS: &[Field] = &[
    f(
        "http_max_conns_per_client",
        leaf!(b, v => b.cfg.limits.http_max_conns_per_client = as_u32(v)?),
    ),
    ignored("https_handshake_timeout"),
    f(
        "kv_max_value_size",
        leaf!(b, v => b.cfg.limits.kv_max_value_size = as_int_in(v, 1, i64::MAX)? as u64),
    ),
    ignored("request_limits"),
    ignored("rpc_client_timeout"),
    ignored("rpc_handshake_timeout"),
    ignored("rpc_max_burst"),
    f(
        "rpc_max_conns_per_client",
        leaf!(b, v => b.cfg.limits.rpc_max_conns_per_client = as_u32(v)?),
    ),
    ignored("rpc_rate"),
    f(
        "txn_max_req_len",
        leaf!(b, v => b.cfg.limits.txn_max_req_len = as_int_in(v, 1, i64::MAX)? as u64),
    ),
];

static PERFORMANCE: &[Field] = &[
    ignored("grpc_keepalive_interval"),
    ignored("grpc_keepalive_timeout"),
    f(
        "leave_drain_time",
        leaf!(b, v => b.cfg.performance.leave_drain_time = as_duration(v)?),
    ),
    f(
        "raft_multiplier",
        leaf!(b, v => {
            let m = as_i64(v)?;
            // Consul: 0 means the default; the upper bound keeps timeouts sane.
            b.cfg.performance.raft_multiplier = match m {
                0 => super::types::DEFAULT_RAFT_MULTIPLIER,
                1..=10 => m as u32,
                _ => return Err(format!("cannot be {m}; must be between 1 and {}", super::types::MAX_RAFT_MULTIPLIER)),
            }
        }),
    ),
    f(
        "rpc_hold_timeout",
        leaf!(b, v => b.cfg.performance.rpc_hold_timeout = as_duration(v)?),
    ),
];

static PORTS: &[Field] = &[
    f("dns", leaf!(b, v => b.cfg.ports.dns = port(v)?)),
    f(
        "expose_max_port",
        leaf!(b, v => b.cfg.ports.expose_max_port = real_port(v)?),
    ),
    f(
        "expose_min_port",
        leaf!(b, v => b.cfg.ports.expose_min_port = real_port(v)?),
    ),
    f("grpc", leaf!(b, v => b.cfg.ports.grpc = port(v)?)),
    f("grpc_tls", leaf!(b, v => b.cfg.ports.grpc_tls = port(v)?)),
    f("http", leaf!(b, v => b.cfg.ports.http = port(v)?)),
    f("https", leaf!(b, v => b.cfg.ports.https = port(v)?)),
    ignored("rpc"),
    f("serf_lan", leaf!(b, v => b.cfg.ports.serf_lan = port(v)?)),
    f("serf_wan", leaf!(b, v => b.cfg.ports.serf_wan = port(v)?)),
    f("server", leaf!(b, v => b.cfg.ports.server = port(v)?)),
    f(
        "sidecar_max_port",
        leaf!(b, v => b.cfg.ports.sidecar_max_port = real_port(v)?),
    ),
    f(
        "sidecar_min_port",
        leaf!(b, v => b.cfg.ports.sidecar_min_port = real_port(v)?),
    ),
];

static TELEMETRY: &[Field] = &[
    ignored("circonus_api_app"),
    ignored("circonus_api_token"),
    ignored("circonus_api_url"),
    ignored("circonus_broker_id"),
    ignored("circonus_broker_select_tag"),
    ignored("circonus_check_display_name"),
    ignored("circonus_check_force_metric_activation"),
    ignored("circonus_check_id"),
    ignored("circonus_check_instance_id"),
    ignored("circonus_check_search_tag"),
    ignored("circonus_check_tags"),
    ignored("circonus_submission_interval"),
    ignored("circonus_submission_url"),
    ignored("disable_compat_1.9"),
    f(
        "disable_hostname",
        leaf!(b, v => b.cfg.telemetry.disable_hostname = as_bool(v)?),
    ),
    f(
        "dogstatsd_addr",
        leaf!(b, v => b.cfg.telemetry.dogstatsd_addr = opt_string(v)?),
    ),
    f(
        "dogstatsd_tags",
        leaf!(b, v => b.cfg.telemetry.dogstatsd_tags.extend(as_string_list(v)?)),
    ),
    ignored("enable_host_metrics"),
    f(
        "filter_default",
        leaf!(b, v => b.cfg.telemetry.filter_default = as_bool(v)?),
    ),
    f(
        "metrics_prefix",
        leaf!(b, v => b.cfg.telemetry.metrics_prefix = as_string(v)?),
    ),
    f(
        "prefix_filter",
        leaf!(b, v => b.cfg.telemetry.prefix_filter.extend(as_string_list(v)?)),
    ),
    f(
        "prometheus_retention_time",
        leaf!(b, v => b.cfg.telemetry.prometheus_retention_time = as_duration(v)?),
    ),
    ignored("retry_failed_connection"),
    f(
        "statsd_address",
        leaf!(b, v => b.cfg.telemetry.statsd_address = opt_string(v)?),
    ),
    f(
        "statsite_address",
        leaf!(b, v => b.cfg.telemetry.statsite_address = opt_string(v)?),
    ),
    ignored("statsite_prefix"),
];

macro_rules! tls_fields {
    ($s:ident) => {
        &[
            f("ca_file", leaf!(b, v => b.cfg.tls.$s.ca_file = Some(path(v)?))),
            f("ca_path", leaf!(b, v => b.cfg.tls.$s.ca_path = Some(path(v)?))),
            f("cert_file", leaf!(b, v => b.cfg.tls.$s.cert_file = Some(path(v)?))),
            f("key_file", leaf!(b, v => b.cfg.tls.$s.key_file = Some(path(v)?))),
            f("tls_cipher_suites", leaf!(b, v => b.cfg.tls.$s.tls_cipher_suites = opt_string(v)?)),
            f("tls_min_version", leaf!(b, v => b.cfg.tls.$s.tls_min_version = opt_string(v)?)),
            ignored("use_auto_cert"),
            f("verify_incoming", leaf!(b, v => b.cfg.tls.$s.verify_incoming = Some(as_bool(v)?))),
            f("verify_outgoing", leaf!(b, v => b.cfg.tls.$s.verify_outgoing = Some(as_bool(v)?))),
            f(
                "verify_server_hostname",
                leaf!(b, v => b.cfg.tls.$s.verify_server_hostname = Some(as_bool(v)?)),
            ),
        ]
    };
}

static TLS_DEFAULTS: &[Field] = tls_fields!(defaults);
static TLS_HTTPS: &[Field] = tls_fields!(https);
static TLS_INTERNAL_RPC: &[Field] = tls_fields!(internal_rpc);
static TLS_GRPC: &[Field] = tls_fields!(grpc);

static TLS: &[Field] = &[
    f("defaults", Kind::Object(TLS_DEFAULTS)),
    f("grpc", Kind::Object(TLS_GRPC)),
    f("https", Kind::Object(TLS_HTTPS)),
    f("internal_rpc", Kind::Object(TLS_INTERNAL_RPC)),
];

static UI_CONFIG: &[Field] = &[
    f(
        "content_path",
        leaf!(b, v => b.cfg.ui_config.content_path = as_string(v)?),
    ),
    f(
        "dashboard_url_templates",
        leaf!(b, v => b.cfg.ui_config.dashboard_url_templates.extend(as_string_map(v)?)),
    ),
    f("dir", leaf!(b, v => b.cfg.ui_config.dir = Some(path(v)?))),
    f(
        "enabled",
        leaf!(b, v => b.cfg.ui_config.enabled = as_bool(v)?),
    ),
    f(
        "metrics_provider",
        leaf!(b, v => b.cfg.ui_config.metrics_provider = opt_string(v)?),
    ),
    ignored("metrics_provider_files"),
    ignored("metrics_provider_options_json"),
    ignored("metrics_proxy"),
];

/// Finds a field by dotted canonical path ("acl.tokens.agent").
pub(super) fn lookup(path: &str) -> Option<&'static Field> {
    let mut fields = TOP;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = fields.iter().find(|f| f.name == part)?;
        if parts.peek().is_none() {
            return Some(field);
        }
        match field.kind {
            Kind::Object(sub) => fields = sub,
            _ => return None,
        }
    }
    None
}

impl Builder {
    /// Applies every key of a parsed source document.
    pub(super) fn apply_document(&mut self, source: &str, doc: &Value) {
        match doc {
            Value::Object(map) => self.apply_object(source, TOP, "", map),
            other => self.issue(
                source,
                None,
                format!(
                    "the top level must be an object, got {}",
                    super::value::type_name(other)
                ),
            ),
        }
    }

    fn apply_object(
        &mut self,
        source: &str,
        fields: &'static [Field],
        prefix: &str,
        map: &hcl::Map<String, Value>,
    ) {
        for (key, value) in map {
            let shown = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let Some(field) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(key)) else {
                self.issue(
                    source,
                    Some(shown.clone()),
                    format!("invalid config key {shown}"),
                );
                continue;
            };
            let canonical = if prefix.is_empty() {
                field.name.to_owned()
            } else {
                format!("{prefix}.{}", field.name)
            };
            self.apply_field(source, field, &canonical, &shown, value);
        }
    }

    fn apply_field(
        &mut self,
        source: &str,
        field: &'static Field,
        canonical: &str,
        shown: &str,
        value: &Value,
    ) {
        // `null` means "not set" (seen in the wild for ACL tokens).
        if matches!(value, Value::Null) {
            return;
        }
        match &field.kind {
            Kind::Leaf(set) => {
                if let Err(e) = set(self, value) {
                    self.issue(source, Some(shown.to_owned()), e);
                }
            }
            Kind::Object(sub) => match objects(value) {
                Ok(objs) => {
                    for obj in objs {
                        self.apply_object(source, sub, canonical, obj);
                    }
                }
                Err(e) => self.issue(source, Some(shown.to_owned()), e),
            },
            Kind::Alias { target, deprecated } => {
                if *deprecated {
                    self.warn(format!(
                        "{source}: the '{shown}' field is deprecated. Use the '{target}' field instead."
                    ));
                }
                match lookup(target) {
                    Some(t) => self.apply_field(source, t, target, shown, value),
                    None => self.issue(source, Some(shown.to_owned()), format!("internal: bad alias to {target}")),
                }
            }
            Kind::Ignored => self.warn(format!(
                "{source}: config key '{shown}' is accepted for Consul compatibility but has no effect in Muster"
            )),
        }
    }

    /// Applies one command-line flag through the same setters as files, so flags and files
    /// are validated alike. `flag` names the flag in errors.
    pub(super) fn apply_flag(&mut self, flag: &str, path: &str, value: Value) {
        match lookup(path) {
            Some(field) => {
                let before = self.issue_count();
                self.apply_field(super::FLAGS_SOURCE, field, path, flag, &value);
                // Errors name the flag the user typed, not the config key behind it.
                self.rename_issue_keys(before, flag);
            }
            None => self.issue(
                super::FLAGS_SOURCE,
                Some(flag.to_owned()),
                format!("internal: no key {path}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(fields: &'static [Field], prefix: &str) {
        let mut seen = std::collections::BTreeSet::new();
        for field in fields {
            assert!(
                seen.insert(field.name),
                "duplicate key {prefix}{}",
                field.name
            );
            assert_eq!(
                field.name,
                field.name.to_ascii_lowercase(),
                "keys are lower case"
            );
            match &field.kind {
                Kind::Object(sub) => check(sub, &format!("{prefix}{}.", field.name)),
                Kind::Alias { target, .. } => {
                    let t = lookup(target)
                        .unwrap_or_else(|| panic!("alias {} -> {target} dangles", field.name));
                    assert!(
                        !matches!(t.kind, Kind::Alias { .. }),
                        "alias {} -> alias",
                        field.name
                    );
                }
                _ => {}
            }
        }
    }

    #[test]
    fn table_is_consistent() {
        check(TOP, "");
    }
}
