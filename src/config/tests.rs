use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use simd_json::prelude::*;

use super::*;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "muster-config-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Agent args with a data dir and a fixed bind address, so tests do not depend on the
/// host's interfaces or name.
fn base_args(s: &Scratch) -> AgentArgs {
    AgentArgs {
        data_dir: Some(s.path().join("data")),
        bind: Some("127.0.0.1".to_owned()),
        node: Some("test".to_owned()),
        ..AgentArgs::default()
    }
}

fn load_files(s: &Scratch, files: &[&Path]) -> Result<Config, ConfigError> {
    let args = AgentArgs {
        config_paths: files.iter().map(|p| p.to_path_buf()).collect(),
        ..base_args(s)
    };
    Config::load(&args)
}

fn issue_with_key<'a>(e: &'a ConfigError, key: &str) -> &'a ConfigIssue {
    e.issues()
        .iter()
        .find(|i| i.key.as_deref() == Some(key))
        .unwrap_or_else(|| panic!("no issue for {key} in {e}"))
}

#[test]
fn defaults_are_consuls() {
    let s = Scratch::new();
    let c = Config::load(&base_args(&s)).unwrap();
    assert_eq!(c.datacenter, "dc1");
    assert_eq!(c.primary_datacenter, "dc1");
    assert!(!c.server && !c.dev && !c.bootstrap);
    assert_eq!(c.ports.http, Some(8500));
    assert_eq!(c.ports.dns, Some(8600));
    assert_eq!(c.ports.server, Some(8300));
    assert_eq!(c.ports.serf_lan, Some(8301));
    assert_eq!(c.ports.serf_wan, None, "clients are not in the WAN pool");
    assert_eq!(c.ports.https, None);
    assert_eq!(c.client_addrs, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    assert_eq!(c.addresses.http, c.client_addrs);
    assert_eq!(
        c.advertise_addr,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "advertise follows a specific bind"
    );
    assert_eq!(c.limits.kv_max_value_size, 524288);
    assert_eq!(c.session_ttl_min, Duration::from_secs(10));
    assert_eq!(c.raft.snapshot_threshold, 16384);
    assert_eq!(c.performance.raft_multiplier, 5);
    assert_eq!(c.dns.domain, "consul.");
    assert_eq!(c.log.level, LogLevel::Info);
    assert!(
        c.leave_on_terminate && !c.skip_leave_on_interrupt,
        "client leave defaults"
    );
    assert_eq!(c.node_id_source, NodeIdSource::Generated);
    assert!(uuid::Uuid::parse_str(&c.node_id).is_ok());
    assert!(c.cores >= 1);
}

#[test]
fn json_and_hcl_merge_in_order() {
    let s = Scratch::new();
    let a = s.write(
        "a.json",
        r#"{
          "datacenter": "east",
          "server": true,
          "bootstrap_expect": 3,
          "retry_join": ["10.0.0.1"],
          "ports": {"http": 8501, "dns": 8601},
          "telemetry": {"prometheus_retention_time": "24h", "disable_hostname": true}
        }"#,
    );
    let b = s.write(
        "b.hcl",
        r#"
        # later file: overrides scalars, appends lists
        datacenter = "west"
        retry_join = ["10.0.0.2", "10.0.0.3"]
        ports {
          dns = -1
        }
        ui_config {
          enabled = true
        }
        performance {
          raft_multiplier = 1
        }
        "#,
    );
    let c = load_files(&s, &[&a, &b]).unwrap();
    assert_eq!(c.datacenter, "west");
    assert!(c.server);
    assert_eq!(c.bootstrap_expect, 3);
    assert_eq!(c.retry_join, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert_eq!(c.ports.http, Some(8501), "untouched by the HCL file");
    assert_eq!(c.ports.dns, None, "-1 disables");
    assert!(c.ui_config.enabled);
    assert_eq!(c.performance.raft_multiplier, 1);
    assert_eq!(
        c.telemetry.prometheus_retention_time,
        Duration::from_secs(24 * 3600)
    );
    assert!(c.telemetry.disable_hostname);
    assert_eq!(c.sources, vec![a, b]);
    assert!(
        !c.leave_on_terminate && c.skip_leave_on_interrupt,
        "server leave defaults"
    );
    assert_eq!(c.ports.serf_wan, Some(8302));
}

#[test]
fn config_dir_loads_json_and_hcl_in_lexical_order() {
    let s = Scratch::new();
    let d = s.path().join("conf.d");
    s.write(
        "conf.d/20-b.json",
        r#"{"node_name": "from-b", "recursors": ["8.8.8.8"]}"#,
    );
    s.write(
        "conf.d/10-a.hcl",
        "node_name = \"from-a\"\nrecursors = [\"1.1.1.1:5353\"]\n",
    );
    s.write("conf.d/README.txt", "not config");
    s.write("conf.d/sub/99-z.json", r#"{"node_name": "from-subdir"}"#);
    let args = AgentArgs {
        config_paths: vec![d.clone()],
        node: None,
        ..base_args(&s)
    };
    let c = Config::load(&args).unwrap();
    assert_eq!(c.node_name, "from-b");
    assert_eq!(
        c.dns.recursors,
        vec![
            "1.1.1.1:5353".parse::<std::net::SocketAddr>().unwrap(),
            "8.8.8.8:53".parse().unwrap()
        ]
    );
    assert_eq!(c.sources, vec![d.join("10-a.hcl"), d.join("20-b.json")]);
    assert!(
        c.warnings.iter().any(|w| w.contains("README.txt")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn file_then_dir_then_file_keep_command_line_order() {
    let s = Scratch::new();
    let first = s.write("first.json", r#"{"log_level": "warn"}"#);
    s.write("d/x.json", r#"{"log_level": "debug"}"#);
    let last = s.write("last.hcl", "log_level = \"err\"");
    let c = load_files(&s, &[&first, &s.path().join("d"), &last]).unwrap();
    assert_eq!(c.log.level, LogLevel::Error);
    let c = load_files(&s, &[&last, &s.path().join("d")]).unwrap();
    assert_eq!(c.log.level, LogLevel::Debug);
}

#[test]
fn flags_override_files() {
    let s = Scratch::new();
    let f = s.write(
        "a.json",
        r#"{"node_name": "file-node", "ports": {"http": 9000}, "retry_join": ["a"], "log_level": "debug",
            "datacenter": "file-dc", "ui_config": {"enabled": true}}"#,
    );
    let args = AgentArgs {
        config_paths: vec![f],
        node: Some("flag-node".to_owned()),
        http_port: Some(9500),
        retry_join: vec!["b".to_owned()],
        datacenter: Some("FLAG-dc".to_owned()),
        ui: Some(false),
        ..base_args(&s)
    };
    let c = Config::load(&args).unwrap();
    assert_eq!(c.node_name, "flag-node");
    assert_eq!(c.ports.http, Some(9500));
    assert_eq!(c.retry_join, ["a", "b"]);
    assert_eq!(
        c.log.level,
        LogLevel::Debug,
        "not given as a flag: file wins"
    );
    assert_eq!(c.datacenter, "flag-dc", "lower-cased");
    assert!(!c.ui_config.enabled);
}

#[test]
fn hcl_fragments_come_last() {
    let s = Scratch::new();
    let args = AgentArgs {
        node: Some("flag".to_owned()),
        hcl: vec!["node_name = \"hcl\"".to_owned()],
        ..base_args(&s)
    };
    assert_eq!(Config::load(&args).unwrap().node_name, "hcl");
}

#[test]
fn unknown_keys_name_file_and_key_and_all_errors_are_collected() {
    let s = Scratch::new();
    let a = s.write(
        "a.json",
        r#"{"datacenter": "dc1", "bogus_key": 1, "ports": {"htp": 1}}"#,
    );
    let b = s.write("b.hcl", "acl {\n  enabled = true\n  nope = 2\n}\n");
    let e = load_files(&s, &[&a, &b]).unwrap_err();
    let i = issue_with_key(&e, "bogus_key");
    assert_eq!(i.source, a.display().to_string());
    assert_eq!(i.message, "invalid config key bogus_key");
    assert_eq!(
        issue_with_key(&e, "ports.htp").source,
        a.display().to_string()
    );
    assert_eq!(
        issue_with_key(&e, "acl.nope").source,
        b.display().to_string()
    );
    assert_eq!(e.issues().len(), 3, "{e}");
    let text = e.to_string();
    assert!(text.starts_with("3 errors occurred:"), "{text}");
    assert!(
        text.contains(&format!(
            "{}: bogus_key: invalid config key bogus_key",
            a.display()
        )),
        "{text}"
    );
}

#[test]
fn bad_values_name_file_and_key() {
    let s = Scratch::new();
    let a = s.write(
        "a.json",
        r#"{"retry_interval": "30 seconds", "session_ttl_min": 10, "server": "yes",
            "ports": {"http": 70000}, "bind_addr": "not-an-ip", "log_level": "loud",
            "dns_config": {"service_ttl": {"web": "5x"}}}"#,
    );
    let e = load_files(&s, &[&a]).unwrap_err();
    let src = a.display().to_string();
    for key in [
        "retry_interval",
        "session_ttl_min",
        "server",
        "ports.http",
        "bind_addr",
        "log_level",
        "dns_config.service_ttl",
    ] {
        assert_eq!(issue_with_key(&e, key).source, src, "{key}");
    }
    assert!(issue_with_key(&e, "retry_interval")
        .message
        .contains("invalid duration"));
    assert!(issue_with_key(&e, "session_ttl_min")
        .message
        .contains("expected duration string"));
    assert!(issue_with_key(&e, "server")
        .message
        .contains("expected bool, got string"));
}

#[test]
fn bad_flag_values_name_the_flag() {
    let s = Scratch::new();
    let args = AgentArgs {
        retry_interval: Some("often".to_owned()),
        http_port: Some(123456),
        node_meta: vec!["nocolon".to_owned()],
        ..base_args(&s)
    };
    let e = Config::load(&args).unwrap_err();
    assert_eq!(
        issue_with_key(&e, "-retry-interval").source,
        "command-line flags"
    );
    issue_with_key(&e, "-http-port");
    issue_with_key(&e, "-node-meta");
}

#[test]
fn syntax_errors_name_the_file() {
    let s = Scratch::new();
    let a = s.write("a.json", "{\"datacenter\": ");
    let b = s.write("b.hcl", "datacenter = = \"x\"");
    let e = load_files(&s, &[&a, &b]).unwrap_err();
    assert!(e
        .issues()
        .iter()
        .any(|i| i.source == a.display().to_string() && i.message.contains("invalid JSON")));
    assert!(e
        .issues()
        .iter()
        .any(|i| i.source == b.display().to_string() && i.message.contains("invalid HCL")));
}

#[test]
fn missing_path_and_unknown_extension() {
    let s = Scratch::new();
    let e = load_files(&s, &[&s.path().join("nope.json")]).unwrap_err();
    assert!(e.issues()[0].message.starts_with("cannot read"), "{e}");
    let f = s.write("conf", "{}");
    let e = load_files(&s, &[&f]).unwrap_err();
    assert!(
        e.issues()[0]
            .message
            .contains("extension must be .hcl or .json"),
        "{e}"
    );
    let args = AgentArgs {
        config_paths: vec![f],
        config_format: Some("json".to_owned()),
        ..base_args(&s)
    };
    assert!(Config::load(&args).is_ok());
}

#[test]
fn keys_are_case_insensitive() {
    let s = Scratch::new();
    let a = s.write(
        "a.json",
        r#"{"Datacenter": "dc9", "Ports": {"HTTP": 1234}, "Node_Name": "x"}"#,
    );
    let c = load_files(&s, &[&a]).unwrap();
    assert_eq!(c.datacenter, "dc9");
    assert_eq!(c.ports.http, Some(1234));
}

#[test]
fn services_checks_watches_accumulate() {
    let s = Scratch::new();
    let a = s.write(
        "a.json",
        r#"{"service": {"name": "web", "port": 80, "enableTagOverride": false},
            "services": [{"name": "db"}, {"name": "cache"}],
            "check": {"id": "c1", "ttl": "10s"},
            "watches": [{"type": "checks", "handler": "/bin/true"}]}"#,
    );
    let b = s.write(
        "b.hcl",
        r#"
        service {
          name = "api"
          tags = ["v1"]
        }
        service {
          name = "worker"
        }
        checks = [{ id = "c2", http = "http://localhost/health", interval = "10s" }]
        "#,
    );
    let c = load_files(&s, &[&a, &b]).unwrap();
    let names: Vec<&str> = c
        .services
        .iter()
        .map(|v| v.get("name").and_then(|n| n.as_str()).unwrap())
        .collect();
    assert_eq!(names, ["web", "db", "cache", "api", "worker"]);
    assert_eq!(
        c.services[0]
            .get("enableTagOverride")
            .and_then(|x| x.as_bool()),
        Some(false),
        "raw keys keep their spelling"
    );
    assert_eq!(c.checks.len(), 2);
    assert_eq!(c.watches.len(), 1);
}

#[test]
fn acl_tokens_null_and_old_names() {
    let s = Scratch::new();
    let a = s.write(
        "a.json",
        r#"{"acl": {"enabled": true, "default_policy": "deny", "enable_token_persistence": true,
            "tokens": {"master": "b1a2c3d4-0000-0000-0000-000000000001", "agent": null, "initial_management": null}}}"#,
    );
    let c = load_files(&s, &[&a]).unwrap();
    assert!(c.acl.enabled && c.acl.enable_token_persistence);
    assert_eq!(c.acl.default_policy, AclPolicy::Deny);
    assert_eq!(
        c.acl.tokens.initial_management.as_deref(),
        Some("b1a2c3d4-0000-0000-0000-000000000001")
    );
    assert_eq!(c.acl.tokens.agent, None);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("'acl.tokens.master' field is deprecated")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn legacy_keys_from_the_wild_load() {
    // Seed 004's server.json, plus top-level keys old guides use.
    let s = Scratch::new();
    let a = s.write(
        "server.json",
        r#"{
          "datacenter": "dc1", "data_dir": "/opt/consul/data", "log_level": "INFO",
          "node_name": "consul-server01", "server": true, "bootstrap_expect": 1,
          "bind_addr": "192.168.2.210", "client_addr": "192.168.2.210", "ui_dir": "/opt/consul/web",
          "retry_join": ["192.168.2.210","192.168.2.211","192.168.2.212"], "retry_interval": "30s",
          "enable_debug": false, "rejoin_after_leave": true,
          "start_join": ["192.168.2.210","192.168.2.211","192.168.2.212"],
          "enable_syslog": true, "syslog_facility": "local0",
          "acl_datacenter": "dc1", "acl_default_policy": "deny", "ui": true, "protocol": 2,
          "ports": {"rpc": 8400}, "kv_max_value_size": 1048576
        }"#,
    );
    let args = AgentArgs {
        config_paths: vec![a],
        node: None,
        bind: None,
        data_dir: None,
        ..AgentArgs::default()
    };
    let c = Config::load(&args).unwrap();
    assert_eq!(c.node_name, "consul-server01");
    assert!(c.bootstrap, "bootstrap_expect = 1 is bootstrap mode");
    assert_eq!(c.advertise_addr, "192.168.2.210".parse::<IpAddr>().unwrap());
    assert_eq!(c.ui_config.dir, Some(PathBuf::from("/opt/consul/web")));
    assert!(c.ui_config.enabled);
    assert_eq!(c.start_join.len(), 3);
    assert!(c.log.enable_syslog);
    assert_eq!(c.acl.default_policy, AclPolicy::Deny);
    assert_eq!(c.limits.kv_max_value_size, 1048576);
    assert!(
        c.warnings.iter().any(|w| w.contains("'protocol'")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn seed_server_hcl_loads() {
    let s = Scratch::new();
    let a = s.write(
        "server1.hcl",
        r#"
# 数据中心名称
datacenter = "dc1"
data_dir = "/opt/consul/data"
log_level = "INFO"
server = true
bootstrap_expect = 3
bind_addr = "10.0.1.10"
client_addr = "0.0.0.0"
retry_join = ["10.0.1.10", "10.0.1.11", "10.0.1.12"]
ui_config {
  enabled = true
}
performance {
  raft_multiplier = 1
}
telemetry {
  prometheus_retention_time = "24h"
  disable_hostname = true
}
acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = true
}
"#,
    );
    let args = AgentArgs {
        config_paths: vec![a],
        node: Some("s1".to_owned()),
        ..AgentArgs::default()
    };
    let c = Config::load(&args).unwrap();
    assert_eq!(c.bootstrap_expect, 3);
    assert!(!c.bootstrap);
    assert_eq!(c.client_addrs, vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]);
    assert_eq!(c.advertise_addr, "10.0.1.10".parse::<IpAddr>().unwrap());
    assert!(c.warnings.iter().any(|w| w.contains("even number")) || c.bootstrap_expect % 2 == 1);
}

#[test]
fn dev_preset() {
    let c = Config::load(&AgentArgs {
        dev: Some(true),
        node: Some("d".to_owned()),
        ..AgentArgs::default()
    })
    .unwrap();
    assert!(c.dev && c.server && c.bootstrap);
    assert_eq!(c.data_dir, None);
    assert_eq!(c.bind_addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(c.advertise_addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(c.client_addrs, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    assert!(c.ui_config.enabled);
    assert_eq!(c.ports.grpc, Some(DEV_GRPC_PORT));
    assert_eq!(c.performance.raft_multiplier, 1);
    assert_eq!(c.node_id_source, NodeIdSource::Generated);
    // Files and flags still override the preset.
    let c = Config::load(&AgentArgs {
        dev: Some(true),
        node: Some("d".to_owned()),
        client: Some("0.0.0.0".to_owned()),
        log_level: Some("info".to_owned()),
        ..AgentArgs::default()
    })
    .unwrap();
    assert_eq!(c.client_addrs, vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]);
    assert_eq!(c.log.level, LogLevel::Info);
}

#[test]
fn dev_and_dummy_constructors() {
    let d = Config::dev();
    assert!(d.dev && d.server && !d.node_name.is_empty());
    let t = Config::dummy();
    assert_eq!(t.node_name, "test-node");
    assert_eq!(t.ports.http, Some(0));
    assert_eq!(t.cores, 1);
}

#[test]
fn data_dir_is_required_outside_dev() {
    let e = Config::load(&AgentArgs {
        node: Some("n".to_owned()),
        bind: Some("127.0.0.1".to_owned()),
        ..AgentArgs::default()
    })
    .unwrap_err();
    assert!(issue_with_key(&e, "data_dir")
        .message
        .contains("cannot be empty"));
}

#[test]
fn validate_needs_no_data_dir() {
    let s = Scratch::new();
    s.write("d/a.json", r#"{"server": true, "bootstrap_expect": 3}"#);
    let c = Config::validate_paths(&[s.path().join("d")], None).unwrap();
    assert_eq!(c.bootstrap_expect, 3);
    s.write("d/b.json", r#"{"nope": true}"#);
    assert!(Config::validate_paths(&[s.path().join("d")], None).is_err());
}

#[test]
fn bootstrap_expect_one_is_bootstrap_mode_before_the_checks() {
    // Consul turns `bootstrap_expect = 1` into bootstrap mode first, so dev mode (which sets
    // bootstrap) and an explicit `bootstrap = true` both accept it.
    let s = Scratch::new();
    for extra in [
        AgentArgs {
            dev: Some(true),
            ..base_args(&s)
        },
        AgentArgs {
            server: Some(true),
            bootstrap: Some(true),
            ..base_args(&s)
        },
    ] {
        let c = Config::load(&AgentArgs {
            bootstrap_expect: Some(1),
            ..extra
        })
        .unwrap();
        assert!(c.bootstrap);
        assert_eq!(c.bootstrap_expect, 0);
        assert!(c
            .warnings
            .iter()
            .any(|w| w == "BootstrapExpect is set to 1; this is the same as Bootstrap mode."));
    }
    let e = Config::load(&AgentArgs {
        dev: Some(true),
        bootstrap_expect: Some(3),
        ..base_args(&s)
    })
    .unwrap_err();
    assert!(issue_with_key(&e, "bootstrap_expect")
        .message
        .contains("'bootstrap_expect > 0' not allowed in dev mode"));
    // Without `server`, the converted flag is refused as bootstrap mode is.
    let e = Config::load(&AgentArgs {
        bootstrap_expect: Some(1),
        ..base_args(&s)
    })
    .unwrap_err();
    issue_with_key(&e, "bootstrap");
}

#[test]
fn mode_conflicts() {
    let s = Scratch::new();
    let e = Config::load(&AgentArgs {
        bootstrap_expect: Some(3),
        ..base_args(&s)
    })
    .unwrap_err();
    assert!(issue_with_key(&e, "bootstrap_expect")
        .message
        .contains("requires 'server = true'"));
    let e = Config::load(&AgentArgs {
        server: Some(true),
        bootstrap: Some(true),
        bootstrap_expect: Some(3),
        ..base_args(&s)
    })
    .unwrap_err();
    assert!(issue_with_key(&e, "bootstrap_expect")
        .message
        .contains("mutually exclusive"));
    let e = Config::load(&AgentArgs {
        bootstrap: Some(true),
        ..base_args(&s)
    })
    .unwrap_err();
    issue_with_key(&e, "bootstrap");
}

#[test]
fn leave_behaviour_can_be_set() {
    let s = Scratch::new();
    let a = s.write(
        "a.json",
        r#"{"server": true, "leave_on_terminate": true, "skip_leave_on_interrupt": false}"#,
    );
    let c = load_files(&s, &[&a]).unwrap();
    assert!(c.leave_on_terminate && !c.skip_leave_on_interrupt);
}

#[test]
fn addresses_fall_back_to_client_addr() {
    let s = Scratch::new();
    let a = s.write(
        "a.hcl",
        "client_addr = \"127.0.0.2 ::1\"\naddresses {\n  dns = \"127.0.0.53\"\n}\nadvertise_addr = \"10.1.1.1\"\n",
    );
    let c = load_files(&s, &[&a]).unwrap();
    assert_eq!(
        c.addresses.http,
        vec![
            "127.0.0.2".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    assert_eq!(
        c.addresses.dns,
        vec!["127.0.0.53".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(c.advertise_addr, "10.1.1.1".parse::<IpAddr>().unwrap());
    assert_eq!(c.advertise_addr_wan, c.advertise_addr);
    assert_eq!(c.serf_lan_bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn node_id_is_generated_persisted_and_reread() {
    let s = Scratch::new();
    let mut c = Config::load(&base_args(&s)).unwrap();
    assert_eq!(c.node_id_source, NodeIdSource::Generated);
    c.persist_node_id().unwrap();
    let stored = std::fs::read_to_string(s.path().join("data").join(NODE_ID_FILE)).unwrap();
    assert_eq!(stored, c.node_id);
    let again = c.reload().unwrap();
    assert_eq!(again.node_id, c.node_id);
    assert_eq!(again.node_id_source, NodeIdSource::DataDir);
    // A configured ID wins and is normalized.
    let c = Config::load(&AgentArgs {
        node_id: Some("ADC3C8C2-8E3E-4E1B-9F5B-2C1A7D9E0F11".to_owned()),
        ..base_args(&s)
    })
    .unwrap();
    assert_eq!(c.node_id, "adc3c8c2-8e3e-4e1b-9f5b-2c1a7d9e0f11");
    let e = Config::load(&AgentArgs {
        node_id: Some("nope".to_owned()),
        ..base_args(&s)
    })
    .unwrap_err();
    issue_with_key(&e, "node_id");
}

#[test]
fn encrypt_key_is_checked() {
    let s = Scratch::new();
    let good = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    let c = Config::load(&AgentArgs {
        encrypt: Some(good.to_owned()),
        ..base_args(&s)
    })
    .unwrap();
    assert_eq!(c.encrypt.as_ref().map(Vec::len), Some(32));
    let e = Config::load(&AgentArgs {
        encrypt: Some("c2hvcnQ=".to_owned()),
        ..base_args(&s)
    })
    .unwrap_err();
    assert!(issue_with_key(&e, "encrypt").message.contains("key size"));
}

#[test]
fn domain_and_raft_multiplier_checks() {
    let s = Scratch::new();
    let a = s.write("a.json", r#"{"domain": "Example", "alt_domain": "alt.test.", "performance": {"raft_multiplier": 0}}"#);
    let c = load_files(&s, &[&a]).unwrap();
    assert_eq!(c.dns.domain, "example.");
    assert_eq!(c.dns.alt_domain.as_deref(), Some("alt.test."));
    assert_eq!(c.performance.raft_multiplier, DEFAULT_RAFT_MULTIPLIER);
    let b = s.write("b.json", r#"{"performance": {"raft_multiplier": 11}}"#);
    let e = load_files(&s, &[&b]).unwrap_err();
    issue_with_key(&e, "performance.raft_multiplier");
}

#[test]
fn dns_config_and_tls_sections() {
    let s = Scratch::new();
    let a = s.write(
        "a.hcl",
        r#"
dns_config {
  node_ttl = "10s"
  service_ttl = { "*" = "5s", "web" = "30s" }
  only_passing = true
  udp_answer_limit = 5
  soa { min_ttl = 60 }
}
verify_outgoing = true
tls {
  defaults { ca_file = "/etc/ca.pem" }
  https { verify_incoming = false }
}
"#,
    );
    let c = load_files(&s, &[&a]).unwrap();
    assert_eq!(c.dns.node_ttl, Duration::from_secs(10));
    assert_eq!(c.dns.service_ttl.get("web"), Some(&Duration::from_secs(30)));
    assert!(c.dns.only_passing);
    assert_eq!(c.dns.udp_answer_limit, 5);
    assert_eq!(c.dns.soa.min_ttl, 60);
    assert_eq!(c.dns.soa.refresh, DEFAULT_SOA_REFRESH);
    let https = c.tls.effective(TlsListener::Https);
    assert_eq!(https.ca_file, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(https.verify_incoming, Some(false));
    assert_eq!(https.verify_outgoing, Some(true));
}

#[test]
fn cores_flag() {
    let s = Scratch::new();
    assert_eq!(
        Config::load(&AgentArgs {
            cores: Some(3),
            ..base_args(&s)
        })
        .unwrap()
        .cores,
        3
    );
    assert!(Config::load(&AgentArgs {
        cores: Some(0),
        ..base_args(&s)
    })
    .is_err());
}

/// The Consul-style HCL corpus: `agent/` holds agent config files, `other/` other HCL that
/// Consul reads (ACL rules, config entries). Each `NAME.hcl` has its expected tree in
/// `NAME.json`.
fn hcl_corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/config/testdata/hcl")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hcl"))
        .collect();
    files.sort();
    files
}

fn expected_tree(hcl: &Path) -> serde_json::Value {
    let j = hcl.with_extension("json");
    let text = std::fs::read_to_string(&j).unwrap_or_else(|e| panic!("{}: {e}", j.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", j.display()))
}

#[test]
fn hcl_corpus_parses_to_expected_trees() {
    let mut names = Vec::new();
    for (kind, f) in hcl_corpus("agent")
        .into_iter()
        .map(|f| ("agent", f))
        .chain(hcl_corpus("other").into_iter().map(|f| ("other", f)))
    {
        let text = std::fs::read(&f).unwrap();
        // Agent files go through the loader's own entry point (list keys included); the
        // others through the bare parser.
        let doc = if kind == "agent" {
            source::parse(&text, ConfigFormat::Hcl)
        } else {
            hcl1::parse(std::str::from_utf8(&text).unwrap()).map_err(|e| e.to_string())
        }
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(
            serde_json::to_value(&doc).unwrap(),
            expected_tree(&f),
            "{}",
            f.display()
        );
        names.push(f.file_stem().unwrap().to_string_lossy().into_owned());
    }
    // Every HCL snippet of the seeds is in the corpus.
    for seed in [
        "seed-server1",
        "seed-acl",
        "seed-intentions",
        "seed-service-router",
        "seed-service-splitter",
        "seed-service-resolver",
        "seed-web-policy",
        "seed-operator-read-policy",
    ] {
        assert!(names.iter().any(|n| n == seed), "{seed} missing: {names:?}");
    }
    assert!(names.len() >= 14, "{names:?}");
}

#[test]
fn hcl_agent_corpus_loads() {
    let files = hcl_corpus("agent");
    for f in &files {
        if let Err(e) = Config::validate_paths(std::slice::from_ref(f), None) {
            panic!("{} should load: {e}", f.display());
        }
    }
    // And all of them together, in one directory's order.
    Config::validate_paths(&files, None).unwrap();
}

fn corpus_config(name: &str) -> Config {
    let f = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/config/testdata/hcl/agent")
        .join(name);
    Config::validate_paths(&[f], None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn hcl_corpus_values() {
    let c = corpus_config("acl-open-line.hcl");
    assert!(c.acl.enabled);
    assert_eq!(c.acl.default_policy, AclPolicy::Deny);
    assert_eq!(c.acl.down_policy, AclDownPolicy::ExtendCache);
    assert!(c.acl.enable_token_persistence);
    assert_eq!(c.acl.tokens.agent.as_deref(), Some("b1gs33cr3t"));
    assert_eq!(c.acl.tokens.default.as_deref(), Some("d3f4ult"));
    assert_eq!(c.datacenter, "dc1");

    let c = corpus_config("seed-acl.hcl");
    assert!(c.acl.enabled && c.acl.enable_token_persistence);
    assert_eq!(c.acl.default_policy, AclPolicy::Deny);

    let c = corpus_config("seed-server1.hcl");
    assert!(c.server);
    assert_eq!(c.bootstrap_expect, 3);
    assert_eq!(c.retry_join.len(), 3);
    assert!(c.ui_config.enabled);

    let c = corpus_config("services-blocks.hcl");
    let ids: Vec<String> = c
        .services
        .iter()
        .map(|s| {
            s.get_str("id")
                .or(s.get_str("name"))
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["red0", "red1", "cache"]);
    let checks = |i: usize| {
        c.services[i]
            .get("checks")
            .and_then(|x| x.as_array())
            .map(Vec::len)
    };
    assert_eq!(checks(0), Some(1), "one checks block is a list of one");
    assert_eq!(
        checks(1),
        Some(3),
        "a checks list and a checks block add up"
    );

    let c = corpus_config("service-single.hcl");
    assert_eq!(c.services.len(), 1);
    let svc = &c.services[0];
    let checks = svc.get("checks").and_then(|x| x.as_array()).unwrap();
    assert_eq!(
        checks[0].get_str("notes"),
        Some("Fails when the web tier stops reporting.\nSee the runbook.\n")
    );
    assert_eq!(
        svc.get("meta").and_then(|m| m.get_str("team")),
        Some("edge")
    );
    assert_eq!(c.checks.len(), 1);
    assert_eq!(
        c.checks[0].get_str("notes"),
        Some("first line\n  second line\n")
    );

    let c = corpus_config("mixed-style.hcl");
    assert_eq!(c.datacenter, "dc2");
    assert_eq!(c.node_name, "mixed-node");
    assert_eq!(c.log.level, LogLevel::Warn);
    assert_eq!(c.node_meta.len(), 3);
    assert_eq!(c.node_meta["instance-type"], "m5.large");
    assert_eq!((c.ports.http, c.ports.dns), (Some(8501), Some(8601)));
    assert_eq!(c.ports.grpc, None, "-1 disables");
    assert_eq!(c.retry_join, ["10.0.1.20", "10.0.1.21", "10.0.1.22"]);
    assert_eq!(c.limits.http_max_conns_per_client, 256);
    assert_eq!(c.performance.raft_multiplier, 5);
    assert_eq!(c.dns.max_stale, Duration::from_secs(87600 * 3600));

    let c = corpus_config("config-entries.hcl");
    assert_eq!(c.config_entries_bootstrap.len(), 2);

    let c = corpus_config("docs-example.hcl");
    assert_eq!(c.watches.len(), 2, "repeated watches lists add up");
    assert_eq!(c.node_name, "foobar");

    let c = corpus_config("quoted-keys.hcl");
    assert_eq!(c.services.len(), 2);
    assert_eq!(c.node_meta["zone"], "a");
}

#[test]
fn hcl_syntax_errors_give_line_and_column() {
    let s = Scratch::new();
    let cases = [
        (
            "unclosed.hcl",
            "acl { enabled = true\n  default_policy = \"deny\"\n",
            "At 1:5:",
        ),
        (
            "string.hcl",
            "datacenter = \"dc1\nnode_name = \"x\"\n",
            "At 1:14:",
        ),
        ("labels.hcl", "ports http = 8500\n", "At 1:12:"),
        ("bare.hcl", "\n\nlog_level = info\n", "At 3:13:"),
    ];
    for (name, text, at) in cases {
        let f = s.write(name, text);
        let e = load_files(&s, &[&f]).unwrap_err();
        let issue = e
            .issues()
            .iter()
            .find(|i| i.source == f.display().to_string())
            .unwrap_or_else(|| panic!("{name}: {e}"));
        assert!(
            issue.message.starts_with(&format!("invalid HCL: {at}")),
            "{name}: {}",
            issue.message
        );
        // The whole error names the file, the line and the column.
        let shown = e.to_string();
        assert!(
            shown.contains(&format!("{}: invalid HCL: {at}", f.display())),
            "{shown}"
        );
    }
}
