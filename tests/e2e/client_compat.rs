//! What real Consul clients do and expect on start-up and registration: `-bootstrap-expect 1`,
//! a register call visible the moment it returns, Go-style request bodies (lower-case and
//! snake_case keys, unknown fields refused), node checks and the fields checks report.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{cli_at, leader_ready, Agent, TempDir};

/// Fresh starts of the readiness loop in a default run; `MUSTER_E2E_READINESS_STARTS` asks
/// for more (100 is the acceptance figure).
const DEFAULT_READINESS_STARTS: usize = 20;
/// A start whose leader takes longer than this is a failure of its own.
const LEADER_DEADLINE: Duration = Duration::from_secs(30);

per_core!(
    lower_and_snake_case_bodies,
    unknown_fields_are_refused,
    node_checks,
    check_fields_and_definition,
    alias_checks_follow_local_targets,
);

per_core_custom!(bootstrap_expect_one_is_bootstrap_mode, scripts_and_docker);

/// `-bootstrap-expect 1` is bootstrap mode (Consul turns it into `bootstrap = true` with a
/// warning before it refuses `bootstrap_expect > 0` in dev mode), from a flag or a file;
/// more than one is still refused in dev mode.
fn bootstrap_expect_one_is_bootstrap_mode(cores: usize) {
    let a = Agent::start_with("bootstrap-expect-flag", cores, &["-bootstrap-expect", "1"]);
    let v = a.get("/v1/agent/self").ok().json();
    assert_eq!(v["Stats"]["consul"]["bootstrap"], "true", "{v}");
    assert_eq!(v["DebugConfig"]["BootstrapExpect"], 0, "{v}");
    drop(a);

    let dir = TempDir::new("bootstrap-expect");
    let f = dir.write("server.json", r#"{"server": true, "bootstrap_expect": 1}"#);
    let a = Agent::start_with(
        "bootstrap-expect-file",
        cores,
        &["-config-file", &f.display().to_string()],
    );
    assert_eq!(
        a.get("/v1/agent/self").ok().json()["Stats"]["consul"]["bootstrap"],
        "true"
    );
    drop(a);

    let out = cli_at(
        "127.0.0.1:1",
        &[
            "agent",
            "-dev",
            "-bootstrap-expect",
            "3",
            "-http-port",
            "-1",
        ],
        b"",
    );
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("'bootstrap_expect > 0' not allowed in dev mode"),
        "{out:?}"
    );
}

/// A client's start-up: wait until `/v1/status/leader` is non-empty, register a service,
/// then read it back from the health endpoint at once, several times, with no pause. Every
/// fresh start must show the instance on every read.
#[test]
fn register_is_visible_right_after_leader() {
    let starts = std::env::var("MUSTER_E2E_READINESS_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_READINESS_STARTS);
    let t0 = Instant::now();
    let mut misses = Vec::new();
    for i in 0..starts {
        let cores = 1 + i % 2;
        let a = match Agent::spawn("readiness", cores, &[]) {
            Ok(a) => a,
            Err(e) => panic!("start {i}: {e}"),
        };
        let client = a.client();
        let deadline = Instant::now() + LEADER_DEADLINE;
        while !leader_ready(&client) {
            if let Some(st) = a.try_wait() {
                panic!("start {i}: agent exited with {st}:\n{}", a.log_tail());
            }
            assert!(Instant::now() < deadline, "start {i}: no leader");
            std::thread::sleep(Duration::from_millis(2));
        }
        let r = client.put_json(
            "/v1/agent/service/register",
            &json!({"Name": "ready", "ID": "ready-1", "Port": 8080}),
        );
        r.ok();
        for read in 0..3 {
            let r = client.get("/v1/health/service/ready");
            let v = r.ok().json();
            let seen = v
                .as_array()
                .is_some_and(|l| l.iter().any(|e| e["Service"]["ID"] == "ready-1"));
            if !seen {
                misses.push(format!("start {i} (cores {cores}), read {read}: {r:?}"));
            }
        }
    }
    assert!(
        misses.is_empty(),
        "{} reads over {starts} starts missed the registration:\n{}",
        misses.len(),
        misses.join("\n")
    );
    eprintln!("{starts} fresh starts in {:?}", t0.elapsed());
}

fn agent_check<'a>(checks: &'a Value, id: &str) -> &'a Value {
    checks
        .get(id)
        .unwrap_or_else(|| panic!("check {id} in /v1/agent/checks: {checks}"))
}

/// Go matches JSON keys case-insensitively, and Consul translates its snake_case aliases.
fn lower_and_snake_case_bodies(a: &Agent) {
    a.put_json(
        "/v1/agent/service/register",
        &json!({
            "name": "web", "id": "web-1", "port": 80, "tags": ["v1"],
            "enable_tag_override": true,
            "tagged_addresses": {"lan": {"address": "10.0.1.20", "port": 8080}},
            "meta": {"team": "a"},
            "check": {"ttl": "30s", "status": "passing",
                      "deregister_critical_service_after": "90m"}
        }),
    )
    .ok();
    let r = a.get("/v1/agent/service/web-1");
    let s = r.ok().json();
    assert_eq!(s["Service"], "web", "{r:?}");
    assert_eq!(s["Port"], 80, "{r:?}");
    assert_eq!(s["Tags"], json!(["v1"]), "{r:?}");
    assert_eq!(s["EnableTagOverride"], true, "{r:?}");
    assert_eq!(s["TaggedAddresses"]["lan"]["Address"], "10.0.1.20", "{r:?}");
    assert_eq!(s["TaggedAddresses"]["lan"]["Port"], 8080, "{r:?}");
    assert_eq!(s["Meta"]["team"], "a", "{r:?}");

    a.put_json(
        "/v1/agent/check/register",
        &json!({"name": "web-ttl", "service_id": "web-1", "ttl": "10s",
                "notes": "lower-case keys", "status": "warning"}),
    )
    .ok();
    let checks = a.get("/v1/agent/checks").ok().json();
    let c = agent_check(&checks, "service:web-1");
    assert_eq!(c["Status"], "passing", "{checks}");
    assert_eq!(c["Definition"]["TTL"], "30s", "{checks}");
    assert_eq!(
        c["Definition"]["DeregisterCriticalServiceAfter"], "1h30m0s",
        "{checks}"
    );
    let c = agent_check(&checks, "web-ttl");
    assert_eq!(c["ServiceID"], "web-1", "service_id is ServiceID: {checks}");
    assert_eq!(c["ServiceName"], "web", "{checks}");
    assert_eq!(c["Notes"], "lower-case keys", "{checks}");
    assert_eq!(c["Status"], "warning", "{checks}");

    // In the catalog as soon as the calls returned.
    let r = a.get("/v1/health/service/web");
    let v = r.ok().json();
    let ids: Vec<&str> = v[0]["Checks"]
        .as_array()
        .unwrap_or_else(|| panic!("checks: {r:?}"))
        .iter()
        .filter_map(|c| c["CheckID"].as_str())
        .collect();
    assert!(
        ids.contains(&"service:web-1") && ids.contains(&"web-ttl"),
        "{r:?}"
    );

    // Check updates take lower-case keys too.
    a.put_json(
        "/v1/agent/check/update/web-ttl",
        &json!({"status": "passing", "output": "ok"}),
    )
    .ok();
    let checks = a.get("/v1/agent/checks").ok().json();
    assert_eq!(agent_check(&checks, "web-ttl")["Output"], "ok", "{checks}");
}

/// Consul decodes these bodies with unknown fields disallowed.
fn unknown_fields_are_refused(a: &Agent) {
    for (path, body, field) in [
        (
            "/v1/agent/service/register",
            json!({"Name": "x", "Bogus": 1}),
            "Bogus",
        ),
        (
            "/v1/agent/service/register",
            json!({"Name": "x", "Check": {"TTL": "10s", "tcp_use_tls": true}}),
            "tcp_use_tls",
        ),
        (
            "/v1/agent/service/register",
            json!({"Name": "x", "Weights": {"Passing": 1, "Critical": 1}}),
            "Critical",
        ),
        (
            "/v1/agent/check/register",
            json!({"Name": "x", "TTL": "10s", "Frequency": "1s"}),
            "Frequency",
        ),
    ] {
        let r = a.put_json(path, &body);
        r.status(400);
        assert_eq!(
            r.text().trim(),
            format!("Request decode failed: json: unknown field \"{field}\""),
            "{r:?}"
        );
    }
    assert_eq!(
        a.get("/v1/agent/services").ok().json(),
        json!({}),
        "nothing registered"
    );
}

/// A check without a ServiceID belongs to the node: it is in the catalog under the node at
/// once, and it applies to every service of the node.
fn node_checks(a: &Agent) {
    a.put_json(
        "/v1/agent/service/register",
        &json!({"Name": "db", "Port": 5432}),
    )
    .ok();
    a.put_json(
        "/v1/agent/check/register",
        &json!({"Name": "disk", "TTL": "30s", "Notes": "root fs", "Status": "warning"}),
    )
    .ok();
    let checks = a.get("/v1/agent/checks").ok().json();
    let c = agent_check(&checks, "disk");
    assert_eq!(c["ServiceID"], "", "{checks}");
    assert_eq!(c["Node"], a.node.as_str(), "{checks}");

    let r = a.get(&format!("/v1/health/node/{}", a.node));
    let v = r.ok().json();
    let disk = v
        .as_array()
        .and_then(|l| l.iter().find(|c| c["CheckID"] == "disk"))
        .unwrap_or_else(|| panic!("disk among the node's checks: {r:?}"));
    assert_eq!(disk["Status"], "warning", "{r:?}");
    assert_eq!(disk["Notes"], "root fs", "{r:?}");
    assert_eq!(disk["ServiceID"], "", "{r:?}");

    let r = a.get("/v1/health/service/db");
    let v = r.ok().json();
    assert!(
        v[0]["Checks"]
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["CheckID"] == "disk")),
        "a node check applies to the node's services: {r:?}"
    );
    let r = a.get("/v1/health/service/db?passing");
    assert_eq!(r.ok().json(), json!([]), "warning is not passing: {r:?}");

    // A ServiceID this agent does not have: 404, as Consul answers.
    let r = a.put_json(
        "/v1/agent/check/register",
        &json!({"Name": "orphan", "TTL": "30s", "ServiceID": "nope"}),
    );
    r.status(404);
    assert!(
        r.text().contains("ServiceID \"nope\" does not exist"),
        "{r:?}"
    );

    a.put_empty("/v1/agent/check/deregister/disk").ok();
    let r = a.get(&format!("/v1/health/node/{}", a.node));
    assert!(
        !r.ok()
            .json()
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["CheckID"] == "disk")),
        "deregistered at once: {r:?}"
    );
}

/// `Type`, `Notes`, `Status` and the `Definition` a check reports, in the agent and catalog.
fn check_fields_and_definition(a: &Agent) {
    a.put_json(
        "/v1/agent/check/register",
        &json!({"ID": "web-http", "Name": "HTTP", "HTTP": "http://127.0.0.1:1/health",
                "Method": "HEAD", "Header": {"X-A": ["b"]}, "Interval": "15s",
                "Timeout": "2s", "TLSSkipVerify": true, "Notes": "probe"}),
    )
    .ok();
    a.put_json(
        "/v1/agent/check/register",
        &json!({"ID": "tcp", "Name": "TCP", "TCP": "127.0.0.1:1", "Interval": "1m"}),
    )
    .ok();
    let checks = a.get("/v1/agent/checks").ok().json();
    let c = agent_check(&checks, "web-http");
    assert_eq!(c["Type"], "http", "{checks}");
    assert_eq!(c["Notes"], "probe", "{checks}");
    assert_eq!(c["Status"], "critical", "Consul's initial status: {checks}");
    assert_eq!(
        c["Definition"],
        json!({"HTTP": "http://127.0.0.1:1/health", "Method": "HEAD",
               "Header": {"X-A": ["b"]}, "Interval": "15s", "Timeout": "2s",
               "TLSSkipVerify": true}),
        "{checks}"
    );
    let c = agent_check(&checks, "tcp");
    assert_eq!(c["Type"], "tcp", "{checks}");
    assert_eq!(
        c["Definition"],
        json!({"TCP": "127.0.0.1:1", "Interval": "1m0s"}),
        "{checks}"
    );
    let r = a.get(&format!("/v1/health/node/{}", a.node));
    let v = r.ok().json();
    let c = v
        .as_array()
        .and_then(|l| l.iter().find(|c| c["CheckID"] == "web-http"))
        .unwrap_or_else(|| panic!("web-http in the catalog: {r:?}"));
    assert_eq!(
        c["Definition"]["HTTP"], "http://127.0.0.1:1/health",
        "{r:?}"
    );
    assert_eq!(c["Type"], "http", "{r:?}");
}

/// An alias check of a local service mirrors that service's checks.
fn alias_checks_follow_local_targets(a: &Agent) {
    a.put_json(
        "/v1/agent/service/register",
        &json!({"Name": "api", "Check": {"CheckID": "api-ttl", "TTL": "30s", "Status": "passing"}}),
    )
    .ok();
    a.put_json(
        "/v1/agent/check/register",
        &json!({"ID": "api-alias", "Name": "alias of api", "AliasService": "api"}),
    )
    .ok();
    let checks = a.get("/v1/agent/checks").ok().json();
    let c = agent_check(&checks, "api-alias");
    assert_eq!(c["Type"], "alias", "{checks}");
    assert_eq!(c["Status"], "passing", "{checks}");
    assert_eq!(c["Definition"], json!({"AliasService": "api"}), "{checks}");

    a.put_empty("/v1/agent/check/fail/api-ttl?note=down").ok();
    let checks = a.get("/v1/agent/checks").ok().json();
    let c = agent_check(&checks, "api-alias");
    assert_eq!(c["Status"], "critical", "{checks}");
    assert!(
        c["Output"].as_str().is_some_and(|o| o.contains("down")),
        "{checks}"
    );
    let r = a.get(&format!("/v1/health/node/{}", a.node));
    let v = r.ok().json();
    assert!(
        v.as_array().is_some_and(|l| l
            .iter()
            .any(|c| c["CheckID"] == "api-alias" && c["Status"] == "critical")),
        "synced with the change: {r:?}"
    );

    a.put_empty("/v1/agent/service/deregister/api").ok();
    let checks = a.get("/v1/agent/checks").ok().json();
    assert_eq!(
        agent_check(&checks, "api-alias")["Status"],
        "critical",
        "alias of a missing service: {checks}"
    );
}

/// Script checks need `enable_script_checks`; Docker checks are refused with a clear reason.
fn scripts_and_docker(cores: usize) {
    let a = Agent::start("scripts-off", cores);
    let r = a.put_json(
        "/v1/agent/check/register",
        &json!({"Name": "s", "Args": ["true"], "Interval": "10s"}),
    );
    r.status(400);
    assert!(r.text().contains("Scripts are disabled"), "{r:?}");
    drop(a);

    let a = Agent::start_with("scripts-on", cores, &["-enable-script-checks"]);
    a.put_json(
        "/v1/agent/check/register",
        &json!({"ID": "s", "Name": "script", "args": ["true"], "Interval": "10s"}),
    )
    .ok();
    let checks = a.get("/v1/agent/checks").ok().json();
    let c = agent_check(&checks, "s");
    assert_eq!(c["Type"], "script", "{checks}");
    assert_eq!(
        c["Definition"],
        json!({"ScriptArgs": ["true"], "Interval": "10s"}),
        "{checks}"
    );
    let r = a.put_json(
        "/v1/agent/check/register",
        &json!({"Name": "d", "DockerContainerID": "abc", "Args": ["true"], "Interval": "10s"}),
    );
    r.status(400);
    assert!(r.text().contains("Docker"), "{r:?}");
}
