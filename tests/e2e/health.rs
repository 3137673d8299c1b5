//! The health endpoints: instances with their checks, the `?passing` filter (node checks
//! included), per-service and per-node check lists, checks by state, and blocking on a
//! service's health woken by a check transition.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::catalog::{arr, get_arr, register};
use crate::common::{eventually, Agent};

per_core!(
    service_instances_and_passing,
    checks_of_service,
    checks_of_node,
    checks_by_state,
    blocking_woken_by_ttl_pass,
);

/// Four instances of `api` on four external nodes: one healthy, one with a warning service
/// check, one with a critical service check, and one whose only problem is its node check.
fn register_api_fleet(a: &Agent) {
    for (i, status) in [
        (1, "passing"),
        (2, "warning"),
        (3, "critical"),
        (4, "passing"),
    ] {
        register(
            a,
            &json!({
                "Node": format!("n{i}"),
                "Address": format!("192.168.20.{i}"),
                "Service": {"ID": format!("api{i}"), "Service": "api", "Port": 9000 + i},
                "Check": {
                    "CheckID": format!("api{i}-check"),
                    "Name": "api check",
                    "Status": status,
                    "Output": format!("api{i} says {status}"),
                    "ServiceID": format!("api{i}")
                }
            }),
        );
    }
    register(
        a,
        &json!({
            "Node": "n4",
            "Address": "192.168.20.4",
            "Check": {"CheckID": "n4-disk", "Name": "disk", "Status": "critical"}
        }),
    );
}

fn ids_of(entries: &[Value]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|e| e["Service"]["ID"].as_str().expect("Service.ID").to_string())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn check_ids(list: &[Value]) -> BTreeSet<String> {
    list.iter()
        .map(|c| c["CheckID"].as_str().expect("CheckID").to_string())
        .collect()
}

fn service_instances_and_passing(a: &Agent) {
    register_api_fleet(a);
    let (r, all) = get_arr(a, "/v1/health/service/api");
    assert!(r.index() > 0, "{r:?}");
    assert_eq!(
        ids_of(&all),
        set(&["api1", "api2", "api3", "api4"]),
        "without ?passing every instance is listed: {r:?}"
    );
    let e4 = all
        .iter()
        .find(|e| e["Service"]["ID"] == "api4")
        .expect("api4");
    assert_eq!(e4["Node"]["Node"], "n4", "{r:?}");
    assert_eq!(e4["Node"]["Address"], "192.168.20.4", "{r:?}");
    assert_eq!(e4["Service"]["Service"], "api", "{r:?}");
    assert_eq!(e4["Service"]["Port"], 9004, "{r:?}");
    let checks = e4["Checks"]
        .as_array()
        .unwrap_or_else(|| panic!("Checks: {r:?}"));
    assert_eq!(
        check_ids(checks),
        set(&["api4-check", "n4-disk"]),
        "an instance's checks include its node's checks: {r:?}"
    );
    let e2 = all
        .iter()
        .find(|e| e["Service"]["ID"] == "api2")
        .expect("api2");
    assert_eq!(e2["Checks"][0]["Status"], "warning", "{r:?}");
    assert_eq!(e2["Checks"][0]["Output"], "api2 says warning", "{r:?}");

    let (r, passing) = get_arr(a, "/v1/health/service/api?passing");
    assert_eq!(
        ids_of(&passing),
        set(&["api1"]),
        "?passing drops warning and critical instances, node checks included: {r:?}"
    );
    let (r, passing) = get_arr(a, "/v1/health/service/api?passing=true");
    assert_eq!(ids_of(&passing), set(&["api1"]), "{r:?}");

    // The node check recovers: api4 is back.
    register(
        a,
        &json!({
            "Node": "n4",
            "Address": "192.168.20.4",
            "Check": {"CheckID": "n4-disk", "Name": "disk", "Status": "passing"}
        }),
    );
    let (r, passing) = get_arr(a, "/v1/health/service/api?passing");
    assert_eq!(ids_of(&passing), set(&["api1", "api4"]), "{r:?}");

    let (r, none) = get_arr(a, "/v1/health/service/no-such-service");
    assert!(none.is_empty(), "{r:?}");
}

fn checks_of_service(a: &Agent) {
    register_api_fleet(a);
    let (r, checks) = get_arr(a, "/v1/health/checks/api");
    assert!(r.index() > 0, "{r:?}");
    assert_eq!(
        check_ids(&checks),
        set(&["api1-check", "api2-check", "api3-check", "api4-check"]),
        "only the service's own checks, not node checks: {r:?}"
    );
    let c3 = checks
        .iter()
        .find(|c| c["CheckID"] == "api3-check")
        .expect("api3-check");
    assert_eq!(c3["Node"], "n3", "{r:?}");
    assert_eq!(c3["Status"], "critical", "{r:?}");
    assert_eq!(c3["ServiceID"], "api3", "{r:?}");
    assert_eq!(c3["ServiceName"], "api", "{r:?}");
    assert_eq!(c3["Output"], "api3 says critical", "{r:?}");
    let (r, none) = get_arr(a, "/v1/health/checks/no-such-service");
    assert!(none.is_empty(), "{r:?}");
}

fn checks_of_node(a: &Agent) {
    register_api_fleet(a);
    let (r, checks) = get_arr(a, "/v1/health/node/n4");
    assert!(r.index() > 0, "{r:?}");
    assert_eq!(check_ids(&checks), set(&["api4-check", "n4-disk"]), "{r:?}");
    let disk = checks
        .iter()
        .find(|c| c["CheckID"] == "n4-disk")
        .expect("n4-disk");
    assert_eq!(disk["ServiceID"], "", "a node check has no service: {r:?}");
    assert_eq!(disk["Status"], "critical", "{r:?}");

    // The agent's own node carries the gossip health check.
    let (r, own) = get_arr(a, &format!("/v1/health/node/{}", a.node));
    let serf = own
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .unwrap_or_else(|| panic!("serfHealth on the agent's node: {r:?}"));
    assert_eq!(serf["Status"], "passing", "{r:?}");

    let (r, none) = get_arr(a, "/v1/health/node/no-such-node");
    assert!(none.is_empty(), "{r:?}");
}

fn checks_by_state(a: &Agent) {
    register_api_fleet(a);
    let state = |s: &str| -> BTreeSet<String> {
        let (r, list) = get_arr(a, &format!("/v1/health/state/{s}"));
        assert!(r.index() > 0, "{r:?}");
        for c in &list {
            if s != "any" {
                assert_eq!(c["Status"], s, "only {s} checks: {r:?}");
            }
        }
        check_ids(&list)
    };
    let critical = state("critical");
    assert!(critical.contains("api3-check"), "{critical:?}");
    assert!(critical.contains("n4-disk"), "{critical:?}");
    assert!(!critical.contains("api1-check"), "{critical:?}");
    let warning = state("warning");
    assert_eq!(warning, set(&["api2-check"]));
    let passing = state("passing");
    assert!(passing.contains("api1-check"), "{passing:?}");
    assert!(passing.contains("api4-check"), "{passing:?}");
    assert!(passing.contains("serfHealth"), "{passing:?}");
    assert!(!passing.contains("api2-check"), "{passing:?}");
    let any = state("any");
    for id in [
        "api1-check",
        "api2-check",
        "api3-check",
        "api4-check",
        "n4-disk",
        "serfHealth",
    ] {
        assert!(any.contains(id), "{id} in state/any: {any:?}");
    }

    let r = a.get("/v1/health/state/bogus");
    r.status(400);
}

/// The status of `check` inside a health/service entry list, if present.
fn status_in(entries: &[Value], check: &str) -> Option<String> {
    entries
        .iter()
        .flat_map(|e| e["Checks"].as_array().into_iter().flatten())
        .find(|c| c["CheckID"] == check)
        .and_then(|c| c["Status"].as_str().map(str::to_string))
}

fn blocking_woken_by_ttl_pass(a: &Agent) {
    let r = a.put_json(
        "/v1/agent/service/register",
        &json!({"Name": "ttlweb", "ID": "ttlweb1", "Port": 8080, "Check": {"TTL": "60s"}}),
    );
    r.ok();
    // Anti-entropy carries the service and its (initially critical) check to the catalog.
    let idx = eventually(
        Duration::from_secs(15),
        "ttlweb with a critical check in /v1/health/service",
        || {
            let r = a.get("/v1/health/service/ttlweb");
            r.ok();
            (status_in(&arr(&r), "service:ttlweb1").as_deref() == Some("critical"))
                .then(|| r.index())
        },
    );

    let c = a.client();
    let waiter = thread::spawn(move || {
        // Follows the index until the check shows passing: a wake-up for something else
        // would merely go round again.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut idx = idx;
        loop {
            let r = c.get(&format!("/v1/health/service/ttlweb?index={idx}&wait=20s"));
            r.ok();
            if status_in(&arr(&r), "service:ttlweb1").as_deref() == Some("passing") {
                return (r, idx);
            }
            assert!(
                Instant::now() < deadline,
                "no wake-up showing the passing check: {r:?}"
            );
            idx = r.index();
        }
    });
    thread::sleep(Duration::from_millis(300));
    let r = a.put_empty("/v1/agent/check/pass/service:ttlweb1?note=fine");
    r.ok();
    let (r, before) = waiter.join().expect("waiter");
    assert!(r.index() > before, "{r:?}");
    let entries = arr(&r);
    let check = entries[0]["Checks"]
        .as_array()
        .expect("Checks")
        .iter()
        .find(|c| c["CheckID"] == "service:ttlweb1")
        .expect("check")
        .clone();
    assert_eq!(check["Output"], "fine", "the note travels as Output: {r:?}");
}
