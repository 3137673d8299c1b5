//! Configuration files: services and checks from a `-config-dir` (JSON and HCL), reload by
//! `PUT /v1/agent/reload` and by SIGHUP, `muster validate`, and refusal of unknown keys.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::agent_services::agent_checks;
use crate::common::{cli_at, eventually, free_ports, Agent, TempDir, BIN};

per_core_custom!(
    services_from_config_dir,
    reload_endpoint_adds_and_removes,
    sighup_adds_service,
    unknown_key_refuses_to_start,
    hcl1_config_file,
);

const RELOAD: Duration = Duration::from_secs(15);

const WEB_JSON: &str = r#"{"service":{"name":"confweb","tags":["master"],"port":8080}}"#;

const DB_HCL: &str = r#"
service {
  name = "confdb"
  id   = "confdb1"
  port = 5432
  tags = ["primary"]
  check {
    id   = "confdb-ttl"
    name = "db ttl"
    ttl  = "60s"
  }
}

check {
  id   = "conf-node"
  name = "node ttl"
  ttl  = "60s"
}
"#;

/// HCL as Consul (HCL 1) reads it and an HCL 2 parser refuses: blocks whose first attribute
/// shares the `{` line, items separated by commas, repeated `services` blocks, a heredoc.
/// The agent refuses to start if any of it fails to parse.
const HCL1_FILE: &str = r#"
acl { enabled = true
  default_policy = "allow"
  down_policy = "extend-cache"
}
node_meta { rack = "r1"
  "env" = "e2e" }
services {
  name = "hclone"
  id = "hclone1", port = 7101
  checks { id = "hclone-ttl", ttl = "60s" }
}
services { name = "hcltwo"
  port = 7102
  tags = ["a", "b",]
  check {
    id = "hcltwo-ttl"
    ttl = "60s"
    notes = <<-EOT
      two lines
      of notes
      EOT
  }
}
"#;

fn hcl1_config_file(cores: usize) {
    let dir = TempDir::new("confhcl1");
    let file = dir.write("consul.hcl", HCL1_FILE);
    let file = file.display().to_string();
    let out = cli_at("127.0.0.1:1", &["validate", &file], b"");
    out.success();
    assert!(out.stdout.contains("Configuration is valid!"), "{out:?}");

    let a = Agent::start_with("hcl1_config_file", cores, &["-config-file", &file]);
    let r = a.get("/v1/agent/services");
    let v = r.ok().json();
    assert_eq!(v["hclone1"]["Service"], "hclone", "{r:?}");
    assert_eq!(v["hclone1"]["Port"], 7101, "{r:?}");
    assert_eq!(v["hcltwo"]["Port"], 7102, "{r:?}");
    assert_eq!(v["hcltwo"]["Tags"], serde_json::json!(["a", "b"]), "{r:?}");
    let checks = agent_checks(&a);
    assert_eq!(checks["hclone-ttl"]["ServiceID"], "hclone1", "{checks:?}");
    assert_eq!(checks["hcltwo-ttl"]["ServiceID"], "hcltwo", "{checks:?}");
    assert_eq!(
        checks["hcltwo-ttl"]["Notes"], "two lines\nof notes\n",
        "{checks:?}"
    );
}

fn config_dir() -> TempDir {
    let dir = TempDir::new("confdir");
    dir.write("web.json", WEB_JSON);
    dir.write("db.hcl", DB_HCL);
    dir
}

fn start(scenario: &str, cores: usize, dir: &TempDir) -> Agent {
    let path = dir.path();
    Agent::start_with(scenario, cores, &["-config-dir", &path])
}

fn service_ids(a: &Agent) -> BTreeSet<String> {
    let r = a.get("/v1/agent/services");
    match r.ok().json() {
        Value::Object(m) => m.keys().cloned().collect(),
        other => panic!("a map, got {other}: {r:?}"),
    }
}

fn wait_services(a: &Agent, what: &str, pred: impl Fn(&BTreeSet<String>) -> bool) {
    let mut last = BTreeSet::new();
    eventually(RELOAD, &format!("{what} (services: {last:?})"), || {
        let ids = service_ids(a);
        let ok = pred(&ids);
        last = ids;
        ok.then_some(())
    });
}

fn services_from_config_dir(cores: usize) {
    let dir = config_dir();
    let a = start("services_from_config_dir", cores, &dir);
    let r = a.get("/v1/agent/services");
    let v = r.ok().json();
    let web = v
        .get("confweb")
        .unwrap_or_else(|| panic!("confweb from web.json (ID defaults to the name): {r:?}"));
    assert_eq!(web["Service"], "confweb", "{r:?}");
    assert_eq!(web["Tags"], serde_json::json!(["master"]), "{r:?}");
    assert_eq!(web["Port"], 8080, "{r:?}");
    let db = v
        .get("confdb1")
        .unwrap_or_else(|| panic!("confdb1 from db.hcl: {r:?}"));
    assert_eq!(db["Service"], "confdb", "{r:?}");
    assert_eq!(db["Port"], 5432, "{r:?}");
    assert_eq!(db["Tags"], serde_json::json!(["primary"]), "{r:?}");

    let checks = agent_checks(&a);
    let c = checks
        .get("confdb-ttl")
        .unwrap_or_else(|| panic!("the service's check: {checks:?}"));
    assert_eq!(c["ServiceID"], "confdb1", "{c}");
    assert_eq!(c["Name"], "db ttl", "{c}");
    let c = checks
        .get("conf-node")
        .unwrap_or_else(|| panic!("the top-level check: {checks:?}"));
    assert_eq!(c["ServiceID"], "", "{c}");

    // And they reach the catalog.
    eventually(RELOAD, "confweb in the catalog", || {
        let r = a.get("/v1/catalog/service/confweb");
        (r.ok().json().as_array().map(Vec::len) == Some(1)).then_some(())
    });
}

fn reload_endpoint_adds_and_removes(cores: usize) {
    let dir = config_dir();
    let a = start("reload_endpoint_adds_and_removes", cores, &dir);
    assert!(service_ids(&a).contains("confweb"));

    dir.write(
        "extra.json",
        r#"{"services":[{"name":"confextra","port":9000},{"name":"confextra2","port":9001}]}"#,
    );
    a.put_empty("/v1/agent/reload").ok();
    wait_services(&a, "confextra and confextra2 after reload", |ids| {
        ids.contains("confextra") && ids.contains("confextra2")
    });
    assert!(
        service_ids(&a).contains("confweb"),
        "unchanged services stay"
    );

    dir.remove("web.json");
    a.put_empty("/v1/agent/reload").ok();
    wait_services(&a, "confweb gone after its file is removed", |ids| {
        !ids.contains("confweb")
    });
    let ids = service_ids(&a);
    assert!(
        ids.contains("confdb1") && ids.contains("confextra"),
        "{ids:?}"
    );
    eventually(RELOAD, "confweb out of the catalog", || {
        let r = a.get("/v1/catalog/service/confweb");
        (r.ok().json().as_array().map(Vec::len) == Some(0)).then_some(())
    });

    // A broken file: the reload fails and the running configuration stays.
    dir.write("broken.json", "{ not json");
    let r = a.put_empty("/v1/agent/reload");
    assert_ne!(r.status, 200, "a reload with a broken file fails: {r:?}");
    let ids = service_ids(&a);
    assert!(
        ids.contains("confdb1") && ids.contains("confextra"),
        "{ids:?}"
    );
    assert!(a.try_wait().is_none(), "the agent keeps running");
}

fn sighup_adds_service(cores: usize) {
    let dir = config_dir();
    let a = start("sighup_adds_service", cores, &dir);
    dir.write(
        "hup.hcl",
        "service {\n  name = \"confhup\"\n  port = 7000\n}\n",
    );
    a.signal(libc::SIGHUP);
    wait_services(&a, "confhup after SIGHUP", |ids| ids.contains("confhup"));
    dir.remove("hup.hcl");
    a.signal(libc::SIGHUP);
    wait_services(&a, "confhup gone after SIGHUP", |ids| {
        !ids.contains("confhup")
    });
    assert!(a.try_wait().is_none(), "SIGHUP does not stop the agent");
    assert!(service_ids(&a).contains("confweb"));
}

#[test]
fn validate_good_and_bad_dirs() {
    let good = config_dir();
    let out = cli_at("127.0.0.1:1", &["validate", &good.path()], b"");
    out.success();
    assert!(out.stdout.contains("Configuration is valid!"), "{out:?}");

    let bad = TempDir::new("confbad");
    bad.write("web.json", WEB_JSON);
    bad.write("broken.json", r#"{"service": {"name": "x", "port": }"#);
    let out = cli_at("127.0.0.1:1", &["validate", &bad.path()], b"");
    assert_eq!(out.code, Some(1), "invalid JSON: {out:?}");
    assert!(!out.stdout.contains("Configuration is valid!"), "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("broken.json"),
        "the error names the file: {out:?}"
    );

    let unknown = TempDir::new("confunknown");
    unknown.write("odd.json", r#"{"bogus_setting": true}"#);
    let out = cli_at("127.0.0.1:1", &["validate", &unknown.path()], b"");
    assert_eq!(out.code, Some(1), "unknown key: {out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("bogus_setting"),
        "the error names the key: {out:?}"
    );

    let hcl = TempDir::new("confbadhcl");
    hcl.write("x.hcl", "service {\n  name = \n");
    let out = cli_at("127.0.0.1:1", &["validate", &hcl.path()], b"");
    assert_eq!(out.code, Some(1), "invalid HCL: {out:?}");
    // The error names the file, the line and the column (the value missing at the end).
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("x.hcl: invalid HCL: At 3:1: expected a value"),
        "{out:?}"
    );
}

fn unknown_key_refuses_to_start(cores: usize) {
    let dir = TempDir::new("confkey");
    let file = dir.write(
        "odd.json",
        r#"{"service": {"name": "x"}, "bogus_setting": 1}"#,
    );
    let file = file.display().to_string();
    let p = free_ports();
    let args: Vec<String> = [
        "agent",
        "-dev",
        "-node",
        "e2e-unknown-key",
        "-http-port",
        &p.http.to_string(),
        "-dns-port",
        &p.dns.to_string(),
        "-serf-lan-port",
        &p.serf_lan.to_string(),
        "-serf-wan-port",
        &p.serf_wan.to_string(),
        "-server-port",
        &p.server.to_string(),
        "-cores",
        &cores.to_string(),
        "-config-file",
        &file,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // cli_at kills and fails the test if the agent were to start and keep running.
    let out = cli_at("127.0.0.1:1", &args, b"");
    assert_ne!(out.code, Some(0), "{BIN} must refuse to start: {out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("odd.json"),
        "the error names the file: {out:?}"
    );
    assert!(
        all.contains("bogus_setting"),
        "the error names the key: {out:?}"
    );
}
