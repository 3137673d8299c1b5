//! `muster agent`: its flags, and the process setup around the runtime (logger, pid file).
//!
//! Flag names are Consul's (`consul agent -h`). Every flag is optional so the config
//! loader can tell "not given" from a value, and flags override config files.

use std::path::PathBuf;

use clap::Args;

use super::args::go_bool;

/// Flags of `muster agent` (Consul's, plus `-cores`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct AgentArgs {
    /// Development mode: one in-memory server that elects itself, bound to 127.0.0.1.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub dev: Option<bool>,

    /// Run in server mode.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub server: Option<bool>,

    /// Bootstrap a single-server datacenter (this server elects itself).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub bootstrap: Option<bool>,

    /// Wait for this many servers before bootstrapping the cluster.
    #[arg(long, value_name = "N")]
    pub bootstrap_expect: Option<u32>,

    /// Node name (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,

    /// Node ID, a UUID (default: generated once and kept in the data dir).
    #[arg(long, value_name = "UUID")]
    pub node_id: Option<String>,

    /// Do not derive the node ID from host information.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub disable_host_node_id: Option<bool>,

    /// Arbitrary node metadata, `key:value`; repeatable.
    #[arg(long, value_name = "KEY:VALUE")]
    pub node_meta: Vec<String>,

    /// Datacenter of the agent.
    #[arg(long, alias = "dc", value_name = "NAME")]
    pub datacenter: Option<String>,

    /// Address to bind cluster communication (gossip, server RPC) to.
    #[arg(long, value_name = "IP")]
    pub bind: Option<String>,

    /// Address advertised to the other nodes.
    #[arg(long, value_name = "IP")]
    pub advertise: Option<String>,

    /// Address advertised to the WAN pool.
    #[arg(long, value_name = "IP")]
    pub advertise_wan: Option<String>,

    /// Address(es), space-separated, to bind client interfaces (HTTP, DNS, gRPC) to.
    #[arg(long, value_name = "IPS")]
    pub client: Option<String>,

    /// Address to bind LAN gossip to (default: -bind).
    #[arg(long, value_name = "IP")]
    pub serf_lan_bind: Option<String>,

    /// Address to bind WAN gossip to (default: -bind).
    #[arg(long, value_name = "IP")]
    pub serf_wan_bind: Option<String>,

    /// HTTP API port; -1 disables.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub http_port: Option<i64>,

    /// HTTPS API port; -1 disables.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub https_port: Option<i64>,

    /// DNS port; -1 disables.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub dns_port: Option<i64>,

    /// gRPC port; -1 disables.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub grpc_port: Option<i64>,

    /// gRPC-with-TLS port; -1 disables.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub grpc_tls_port: Option<i64>,

    /// LAN gossip port; -1 disables.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub serf_lan_port: Option<i64>,

    /// WAN gossip port; -1 disables.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub serf_wan_port: Option<i64>,

    /// Server RPC port; -1 disables.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub server_port: Option<i64>,

    /// Directory for persistent state.
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<PathBuf>,

    /// Log level: trace, debug, info, warn, err.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Also write logs to this file (or to a directory when it ends in `/`).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Log as JSON.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub log_json: Option<bool>,

    /// Rotate the log file after this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub log_rotate_bytes: Option<u64>,

    /// Rotate the log file after this long (Go duration).
    #[arg(long, value_name = "DURATION")]
    pub log_rotate_duration: Option<String>,

    /// Keep at most this many rotated log files (0 = all).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub log_rotate_max_files: Option<i64>,

    /// Also log to syslog.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub syslog: Option<bool>,

    /// Write the agent's PID to this file.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,

    /// Serve the web UI.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub ui: Option<bool>,

    /// Serve the web UI from this directory.
    #[arg(long, value_name = "PATH")]
    pub ui_dir: Option<PathBuf>,

    /// URL path prefix of the web UI.
    #[arg(long, value_name = "PATH")]
    pub ui_content_path: Option<String>,

    /// Gossip encryption key (base64, as made by `keygen`).
    #[arg(long, value_name = "KEY")]
    pub encrypt: Option<String>,

    /// A config file or directory; repeatable, read in the order given.
    #[arg(
        long = "config-file",
        visible_alias = "config-dir",
        value_name = "PATH"
    )]
    pub config_paths: Vec<PathBuf>,

    /// Format of config files whatever their extension: json or hcl.
    #[arg(long, value_name = "FORMAT")]
    pub config_format: Option<String>,

    /// An HCL config fragment, applied after files and flags; repeatable.
    #[arg(long = "hcl", value_name = "HCL")]
    pub hcl: Vec<String>,

    /// Address of an agent to join at start; repeatable.
    #[arg(long, value_name = "ADDR")]
    pub join: Vec<String>,

    /// Address of an agent to join, retried until it works; repeatable.
    #[arg(long, value_name = "ADDR")]
    pub retry_join: Vec<String>,

    /// Pause between join attempts (Go duration).
    #[arg(long, value_name = "DURATION")]
    pub retry_interval: Option<String>,

    /// Give up joining after this many attempts (0 = never).
    #[arg(long, value_name = "N")]
    pub retry_max: Option<u32>,

    /// Address of a server in another datacenter to join over the WAN at start; repeatable.
    #[arg(long, value_name = "ADDR")]
    pub join_wan: Vec<String>,

    /// WAN address to join, retried until it works; repeatable.
    #[arg(long, value_name = "ADDR")]
    pub retry_join_wan: Vec<String>,

    /// Pause between WAN join attempts (Go duration).
    #[arg(long, value_name = "DURATION")]
    pub retry_interval_wan: Option<String>,

    /// Give up WAN joining after this many attempts (0 = never).
    #[arg(long, value_name = "N")]
    pub retry_max_wan: Option<u32>,

    /// Rejoin the cluster after a graceful leave.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub rejoin: Option<bool>,

    /// Upstream DNS server for names outside the Consul domain; repeatable.
    #[arg(long, value_name = "ADDR")]
    pub recursor: Vec<String>,

    /// DNS domain to answer for (default "consul").
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,

    /// A second DNS domain to answer for.
    #[arg(long, value_name = "DOMAIN")]
    pub alt_domain: Option<String>,

    /// Allow script checks registered over HTTP and in config files.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub enable_script_checks: Option<bool>,

    /// Allow script checks from config files and the local agent API only.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub enable_local_script_checks: Option<bool>,

    /// Do not store the gossip keyring in the data dir.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub disable_keyring_file: Option<bool>,

    /// Raft protocol version (only 3 is supported).
    #[arg(long, value_name = "N")]
    pub raft_protocol: Option<i64>,

    /// Join as a non-voting server (read replica).
    #[arg(long, alias = "non-voting-server", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub read_replica: Option<bool>,

    /// Default wait of blocking queries (Go duration).
    #[arg(long, value_name = "DURATION")]
    pub default_query_time: Option<String>,

    /// Upper bound of `?wait` on blocking queries (Go duration).
    #[arg(long, value_name = "DURATION")]
    pub max_query_time: Option<String>,

    /// Largest check output kept, in bytes.
    #[arg(long = "check_output_max_size", value_name = "BYTES")]
    pub check_output_max_size: Option<i64>,

    /// Number of executor cores to run (Muster only; default: the CPUs available).
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
}
