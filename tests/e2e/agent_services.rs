//! The local agent's services and checks: registration in Consul's JSON (and its lowercase and
//! snake_case spellings), the agent's own views, anti-entropy to the catalog (and its repair
//! of catalog changes made behind the agent's back), TTL checks, the agent health endpoints
//! and maintenance mode.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::catalog::{arr, get_arr};
use crate::common::{eventually, qenc, Agent};

per_core!(
    register_full_definition,
    register_lowercase_and_snake_case,
    services_filter,
    deregister_service,
    anti_entropy_repairs_catalog,
    ttl_check_lifecycle,
    agent_health_by_name,
    agent_health_text_format,
    node_maintenance,
    service_maintenance,
);

/// How long anti-entropy may take to carry a local change to the catalog.
const SYNC: Duration = Duration::from_secs(15);

#[track_caller]
pub fn agent_register(a: &Agent, def: &Value) {
    let r = a.put_json("/v1/agent/service/register", def);
    r.ok();
}

/// The agent's local checks, keyed by CheckID.
pub fn agent_checks(a: &Agent) -> serde_json::Map<String, Value> {
    let r = a.get("/v1/agent/checks");
    match r.ok().json() {
        Value::Object(m) => m,
        other => panic!("/v1/agent/checks is a map, got {other}: {r:?}"),
    }
}

/// Waits until local check `id` has `status`, returning the check.
pub fn wait_check(a: &Agent, id: &str, status: &str, within: Duration) -> Value {
    wait_check_output(a, id, status, "", within)
}

/// Waits until local check `id` has `status` and an Output containing `needle` (checks start
/// out critical with no output, so a status alone may be the initial one).
pub fn wait_check_output(
    a: &Agent,
    id: &str,
    status: &str,
    needle: &str,
    within: Duration,
) -> Value {
    let mut last = Value::Null;
    let found = crate::common::eventually_or(within, || {
        let c = agent_checks(a).get(id).cloned()?;
        let ok = c["Status"] == status && c["Output"].as_str().is_some_and(|o| o.contains(needle));
        last = c.clone();
        ok.then_some(c)
    });
    found.unwrap_or_else(|| {
        panic!("check {id} not {status} with output containing {needle:?} within {within:?}; last seen: {last}")
    })
}

/// Polls `/v1/catalog/service/:name` until `pred` holds for the instance list.
fn wait_catalog(a: &Agent, name: &str, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    eventually(SYNC, what, || {
        let (_, list) = get_arr(a, &format!("/v1/catalog/service/{name}"));
        pred(&list).then_some(list)
    })
}

fn register_full_definition(a: &Agent) {
    agent_register(
        a,
        &json!({
            "ID": "web1",
            "Name": "web",
            "Tags": ["primary", "v1"],
            "Address": "127.0.0.1",
            "Port": 8080,
            "Meta": {"version": "1.2"},
            "TaggedAddresses": {
                "lan": {"Address": "127.0.0.1", "Port": 8080},
                "wan": {"Address": "127.0.0.2", "Port": 80}
            },
            "Weights": {"Passing": 10, "Warning": 1},
            "EnableTagOverride": true,
            "Check": {"Name": "web ttl", "TTL": "60s", "Notes": "first"}
        }),
    );
    agent_register(
        a,
        &json!({
            "ID": "web2",
            "Name": "web",
            "Port": 8081,
            "Checks": [
                {"Name": "one", "TTL": "60s"},
                {"Name": "two", "TTL": "60s", "Status": "passing"}
            ]
        }),
    );

    let r = a.get("/v1/agent/services");
    let v = r.ok().json();
    let m = v
        .as_object()
        .unwrap_or_else(|| panic!("a map keyed by ID: {r:?}"));
    assert!(m.contains_key("web1") && m.contains_key("web2"), "{r:?}");
    let s = &m["web1"];
    assert_eq!(s["ID"], "web1", "{r:?}");
    assert_eq!(s["Service"], "web", "{r:?}");
    assert_eq!(s["Tags"], json!(["primary", "v1"]), "{r:?}");
    assert_eq!(s["Address"], "127.0.0.1", "{r:?}");
    assert_eq!(s["Port"], 8080, "{r:?}");
    assert_eq!(s["Meta"], json!({"version": "1.2"}), "{r:?}");
    assert_eq!(
        s["TaggedAddresses"]["lan"],
        json!({"Address": "127.0.0.1", "Port": 8080}),
        "{r:?}"
    );
    assert_eq!(
        s["TaggedAddresses"]["wan"],
        json!({"Address": "127.0.0.2", "Port": 80}),
        "{r:?}"
    );
    assert_eq!(s["Weights"], json!({"Passing": 10, "Warning": 1}), "{r:?}");
    assert_eq!(s["EnableTagOverride"], true, "{r:?}");
    assert_eq!(s["Datacenter"], "dc1", "{r:?}");
    assert_eq!(
        m["web2"]["Weights"],
        json!({"Passing": 1, "Warning": 1}),
        "weights default to 1/1: {r:?}"
    );
    assert_eq!(m["web2"]["Tags"], json!([]), "{r:?}");

    let r = a.get("/v1/agent/service/web1");
    let v = r.ok().json();
    assert_eq!(v["ID"], "web1", "{r:?}");
    assert_eq!(v["Service"], "web", "{r:?}");
    assert_eq!(v["Port"], 8080, "{r:?}");
    assert!(
        v["ContentHash"].as_str().is_some_and(|h| !h.is_empty()),
        "the single-service view carries a ContentHash: {r:?}"
    );
    a.get("/v1/agent/service/no-such-id").status(404);

    // Check IDs: one check is service:<id>, several are numbered from 1.
    let checks = agent_checks(a);
    let c = checks
        .get("service:web1")
        .unwrap_or_else(|| panic!("service:web1 in {checks:?}"));
    assert_eq!(c["Name"], "web ttl", "{c}");
    assert_eq!(c["Notes"], "first", "{c}");
    assert_eq!(c["ServiceID"], "web1", "{c}");
    assert_eq!(c["ServiceName"], "web", "{c}");
    assert_eq!(c["Status"], "critical", "TTL checks start critical: {c}");
    assert_eq!(c["Node"], a.node.as_str(), "{c}");
    assert!(checks.contains_key("service:web2:1"), "{checks:?}");
    assert_eq!(
        checks
            .get("service:web2:2")
            .unwrap_or_else(|| panic!("service:web2:2 in {checks:?}"))["Status"],
        "passing",
        "an initial Status is honoured"
    );

    // Anti-entropy puts both instances in the catalog with their details.
    let list = wait_catalog(a, "web", "web1 and web2 in the catalog", |l| l.len() == 2);
    let w1 = list
        .iter()
        .find(|s| s["ServiceID"] == "web1")
        .unwrap_or_else(|| panic!("web1 in {list:?}"));
    assert_eq!(w1["Node"], a.node.as_str(), "{w1}");
    assert_eq!(w1["ServiceName"], "web", "{w1}");
    assert_eq!(w1["ServiceTags"], json!(["primary", "v1"]), "{w1}");
    assert_eq!(w1["ServicePort"], 8080, "{w1}");
    assert_eq!(w1["ServiceAddress"], "127.0.0.1", "{w1}");
    assert_eq!(w1["ServiceMeta"], json!({"version": "1.2"}), "{w1}");
    assert_eq!(w1["ServiceEnableTagOverride"], true, "{w1}");
    assert_eq!(
        w1["ServiceWeights"],
        json!({"Passing": 10, "Warning": 1}),
        "{w1}"
    );
    assert_eq!(
        w1["ServiceTaggedAddresses"]["wan"],
        json!({"Address": "127.0.0.2", "Port": 80}),
        "{w1}"
    );
    // ... and their checks.
    eventually(SYNC, "the three service checks in the catalog", || {
        let (_, l) = get_arr(a, "/v1/health/checks/web");
        (l.len() == 3).then_some(())
    });
}

fn register_lowercase_and_snake_case(a: &Agent) {
    agent_register(
        a,
        &json!({
            "id": "snake1",
            "name": "snake",
            "tags": ["s"],
            "address": "127.0.0.1",
            "port": 9090,
            "meta": {"Keep_Case": "yes"},
            "enable_tag_override": true,
            "tagged_addresses": {"lan": {"address": "127.0.0.1", "port": 9090}},
            "weights": {"passing": 3, "warning": 2},
            "check": {"name": "snake ttl", "ttl": "60s", "notes": "lower"}
        }),
    );
    let r = a.get("/v1/agent/service/snake1");
    let s = r.ok().json();
    assert_eq!(s["Service"], "snake", "{r:?}");
    assert_eq!(s["Tags"], json!(["s"]), "{r:?}");
    assert_eq!(s["Port"], 9090, "{r:?}");
    assert_eq!(
        s["Meta"],
        json!({"Keep_Case": "yes"}),
        "meta keys are data, kept as given: {r:?}"
    );
    assert_eq!(s["EnableTagOverride"], true, "{r:?}");
    assert_eq!(
        s["TaggedAddresses"]["lan"],
        json!({"Address": "127.0.0.1", "Port": 9090}),
        "{r:?}"
    );
    assert_eq!(s["Weights"], json!({"Passing": 3, "Warning": 2}), "{r:?}");
    let checks = agent_checks(a);
    let c = checks
        .get("service:snake1")
        .unwrap_or_else(|| panic!("service:snake1 in {checks:?}"));
    assert_eq!(c["Name"], "snake ttl", "{c}");
    assert_eq!(c["Notes"], "lower", "{c}");

    // Mixed: a Consul-cased body with snake_case check fields.
    agent_register(
        a,
        &json!({
            "Name": "mixed",
            "Port": 1,
            "Check": {"checkId": "mixed-ttl", "name": "m", "ttl": "60s", "deregister_critical_service_after": "90m"}
        }),
    );
    let r = a.get("/v1/agent/service/mixed");
    assert_eq!(
        r.ok().json()["ID"],
        "mixed",
        "ID defaults to the name: {r:?}"
    );
    assert!(
        agent_checks(a).contains_key("mixed-ttl"),
        "CheckID matches case-insensitively"
    );
}

fn services_filter(a: &Agent) {
    agent_register(
        a,
        &json!({"ID": "web1", "Name": "web", "Port": 80, "Tags": ["x"]}),
    );
    agent_register(a, &json!({"ID": "web2", "Name": "web", "Port": 81}));
    agent_register(a, &json!({"ID": "db1", "Name": "db", "Port": 5432}));
    let keys = |filter: &str| -> BTreeSet<String> {
        let r = a.get(&format!("/v1/agent/services?filter={}", qenc(filter)));
        let v = r.ok().json();
        v.as_object()
            .unwrap_or_else(|| panic!("{r:?}"))
            .keys()
            .cloned()
            .collect()
    };
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };
    assert_eq!(keys("Service == web"), set(&["web1", "web2"]));
    assert_eq!(keys(r#"Service == "db""#), set(&["db1"]));
    assert_eq!(keys("Port == 81"), set(&["web2"]));
    assert_eq!(keys("Service != web"), set(&["db1"]));
    assert_eq!(keys("x in Tags"), set(&["web1"]));
    assert_eq!(keys("Service == nothing"), set(&[]));
    for bad in ["Service ==", "((", "Port > 80"] {
        let r = a.get(&format!("/v1/agent/services?filter={}", qenc(bad)));
        r.status(400);
    }
}

fn deregister_service(a: &Agent) {
    agent_register(
        a,
        &json!({"ID": "gone1", "Name": "gone", "Port": 80, "Check": {"TTL": "60s"}}),
    );
    wait_catalog(a, "gone", "gone1 in the catalog", |l| l.len() == 1);
    eventually(SYNC, "gone1's check in the catalog", || {
        let (_, l) = get_arr(a, "/v1/health/checks/gone");
        (l.len() == 1).then_some(())
    });
    a.put_empty("/v1/agent/service/deregister/gone1").ok();
    a.get("/v1/agent/service/gone1").status(404);
    let r = a.get("/v1/agent/services");
    assert!(r.ok().json().get("gone1").is_none(), "{r:?}");
    assert!(
        !agent_checks(a).contains_key("service:gone1"),
        "the service's checks go with it"
    );
    wait_catalog(a, "gone", "gone1 out of the catalog", |l| l.is_empty());
    eventually(SYNC, "gone1's check out of the catalog", || {
        let (_, l) = get_arr(a, "/v1/health/checks/gone");
        l.is_empty().then_some(())
    });
    // Unknown IDs are an error.
    let r = a.put_empty("/v1/agent/service/deregister/never-was");
    assert_eq!(r.status, 404, "{r:?}");
}

fn anti_entropy_repairs_catalog(a: &Agent) {
    agent_register(a, &json!({"ID": "ae1", "Name": "ae", "Port": 80}));
    wait_catalog(a, "ae", "ae1 in the catalog", |l| l.len() == 1);

    // Behind the agent's back.
    let r = a.put_json(
        "/v1/catalog/deregister",
        &json!({"Node": a.node, "ServiceID": "ae1"}),
    );
    assert!(r.bool(), "{r:?}");
    let (r, list) = get_arr(a, "/v1/catalog/service/ae");
    assert!(list.is_empty(), "deregistered for now: {r:?}");

    // A local change starts a sync, which compares with the catalog and restores ae1
    // (the periodic full sync would too, but only after up to a minute).
    agent_register(
        a,
        &json!({"ID": "ae-trigger", "Name": "ae-trigger", "Port": 81}),
    );
    let within = Duration::from_secs(65);
    eventually(
        within,
        "ae1 restored in the catalog by anti-entropy",
        || {
            let (_, l) = get_arr(a, "/v1/catalog/service/ae");
            (l.len() == 1 && l[0]["ServiceID"] == "ae1").then_some(())
        },
    );
}

fn ttl_check_lifecycle(a: &Agent) {
    let r = a.put_json(
        "/v1/agent/check/register",
        &json!({"ID": "mem", "Name": "Memory utilization", "Notes": "ttl", "TTL": "60s"}),
    );
    r.ok();
    let c = wait_check(a, "mem", "critical", Duration::from_secs(5));
    assert_eq!(c["Name"], "Memory utilization", "{c}");
    assert_eq!(c["Notes"], "ttl", "{c}");
    assert_eq!(c["ServiceID"], "", "{c}");
    assert_eq!(c["Type"], "ttl", "{c}");

    a.put_empty(&format!("/v1/agent/check/pass/mem?note={}", qenc("all ok")))
        .ok();
    let c = wait_check(a, "mem", "passing", Duration::from_secs(5));
    assert_eq!(c["Output"], "all ok", "{c}");
    a.put_empty("/v1/agent/check/warn/mem?note=hmm").ok();
    let c = wait_check(a, "mem", "warning", Duration::from_secs(5));
    assert_eq!(c["Output"], "hmm", "{c}");
    a.put_empty("/v1/agent/check/fail/mem?note=bad").ok();
    let c = wait_check(a, "mem", "critical", Duration::from_secs(5));
    assert_eq!(c["Output"], "bad", "{c}");
    a.put_json(
        "/v1/agent/check/update/mem",
        &json!({"Status": "passing", "Output": "updated output"}),
    )
    .ok();
    let c = wait_check(a, "mem", "passing", Duration::from_secs(5));
    assert_eq!(c["Output"], "updated output", "{c}");
    let r = a.put_json("/v1/agent/check/update/mem", &json!({"Status": "sideways"}));
    r.status(400);

    // The catalog follows.
    eventually(SYNC, "mem passing in the catalog", || {
        let (_, l) = get_arr(a, &format!("/v1/health/node/{}", a.node));
        l.iter()
            .any(|c| {
                c["CheckID"] == "mem" && c["Status"] == "passing" && c["Output"] == "updated output"
            })
            .then_some(())
    });

    // A check bound to a service, with an initial status.
    agent_register(a, &json!({"ID": "web1", "Name": "web", "Port": 80}));
    a.put_json(
        "/v1/agent/check/register",
        &json!({"ID": "web-extra", "Name": "extra", "ServiceID": "web1", "TTL": "60s", "Status": "warning"}),
    )
    .ok();
    let c = wait_check(a, "web-extra", "warning", Duration::from_secs(5));
    assert_eq!(c["ServiceID"], "web1", "{c}");
    assert_eq!(c["ServiceName"], "web", "{c}");
    // ... to an unknown service: refused.
    let r = a.put_json(
        "/v1/agent/check/register",
        &json!({"Name": "orphan", "ServiceID": "no-such-service", "TTL": "60s"}),
    );
    assert_ne!(r.status, 200, "{r:?}");

    a.put_empty("/v1/agent/check/deregister/mem").ok();
    assert!(!agent_checks(a).contains_key("mem"));
    eventually(SYNC, "mem out of the catalog", || {
        let (_, l) = get_arr(a, &format!("/v1/health/node/{}", a.node));
        l.iter().all(|c| c["CheckID"] != "mem").then_some(())
    });
}

fn agent_health_by_name(a: &Agent) {
    for id in ["hs1", "hs2"] {
        agent_register(
            a,
            &json!({"ID": id, "Name": "hs", "Port": 80, "Check": {"TTL": "60s"}}),
        );
    }
    let health = |path: &str| {
        let r = a.get(path);
        let st = r.status;
        (st, r)
    };
    let (st, r) = health("/v1/agent/health/service/name/hs");
    assert_eq!(st, 503, "TTL checks start critical: {r:?}");
    let list = arr(&r);
    assert_eq!(list.len(), 2, "{r:?}");
    assert_eq!(list[0]["AggregatedStatus"], "critical", "{r:?}");
    assert_eq!(list[0]["Service"]["Service"], "hs", "{r:?}");
    assert!(list[0]["Checks"].is_array(), "{r:?}");

    for id in ["hs1", "hs2"] {
        a.put_empty(&format!("/v1/agent/check/pass/service:{id}"))
            .ok();
    }
    let (st, r) = health("/v1/agent/health/service/name/hs");
    assert_eq!(st, 200, "all passing: {r:?}");
    assert!(
        arr(&r).iter().all(|e| e["AggregatedStatus"] == "passing"),
        "{r:?}"
    );

    a.put_empty("/v1/agent/check/warn/service:hs2").ok();
    let (st, r) = health("/v1/agent/health/service/name/hs");
    assert_eq!(st, 429, "a warning, nothing critical: {r:?}");

    // By ID: one instance at a time.
    let r = a.get("/v1/agent/health/service/id/hs1");
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["AggregatedStatus"], "passing", "{r:?}");
    assert_eq!(v["Service"]["ID"], "hs1", "{r:?}");
    assert_eq!(a.get("/v1/agent/health/service/id/hs2").status, 429);

    a.put_empty("/v1/agent/check/fail/service:hs1").ok();
    let (st, r) = health("/v1/agent/health/service/name/hs");
    assert_eq!(st, 503, "critical wins over warning: {r:?}");

    assert_eq!(
        a.get("/v1/agent/health/service/name/no-such-service")
            .status,
        404
    );
    assert_eq!(a.get("/v1/agent/health/service/id/no-such-id").status, 404);
}

fn agent_health_text_format(a: &Agent) {
    agent_register(
        a,
        &json!({"ID": "tx1", "Name": "tx", "Port": 80, "Check": {"TTL": "60s"}}),
    );
    let text = |path: &str| {
        let r = a.get(path);
        (r.status, r.text(), r)
    };
    for (verb, code, status) in [
        ("pass", 200, "passing"),
        ("warn", 429, "warning"),
        ("fail", 503, "critical"),
    ] {
        a.put_empty(&format!("/v1/agent/check/{verb}/service:tx1"))
            .ok();
        for path in [
            "/v1/agent/health/service/name/tx?format=text",
            "/v1/agent/health/service/id/tx1?format=text",
        ] {
            let (st, body, r) = text(path);
            assert_eq!((st, body.as_str()), (code, status), "{r:?}");
        }
    }
}

/// The IDs of the passing instances of `name` in the catalog's health view.
fn passing_ids(a: &Agent, name: &str) -> BTreeSet<String> {
    let (_, l) = get_arr(a, &format!("/v1/health/service/{name}?passing"));
    l.iter()
        .map(|e| e["Service"]["ID"].as_str().expect("ID").to_string())
        .collect()
}

fn register_healthy(a: &Agent, id: &str, name: &str) {
    agent_register(
        a,
        &json!({"ID": id, "Name": name, "Port": 80, "Check": {"TTL": "600s", "Status": "passing"}}),
    );
}

fn node_maintenance(a: &Agent) {
    register_healthy(a, "mw1", "mw");
    eventually(SYNC, "mw1 passing in the catalog", || {
        (passing_ids(a, "mw").len() == 1).then_some(())
    });

    a.put_empty("/v1/agent/maintenance?enable=true&reason=patching")
        .ok();
    let checks = agent_checks(a);
    let m = checks
        .get("_node_maintenance")
        .unwrap_or_else(|| panic!("_node_maintenance in {checks:?}"));
    assert_eq!(m["Status"], "critical", "{m}");
    assert_eq!(
        m["Notes"], "patching",
        "the reason is the check's notes: {m}"
    );
    assert_eq!(m["ServiceID"], "", "{m}");
    eventually(SYNC, "no passing mw instance in maintenance", || {
        passing_ids(a, "mw").is_empty().then_some(())
    });
    let (r, all) = get_arr(a, "/v1/health/service/mw");
    assert_eq!(all.len(), 1, "still listed without ?passing: {r:?}");
    assert!(
        all[0]["Checks"]
            .as_array()
            .expect("Checks")
            .iter()
            .any(|c| c["CheckID"] == "_node_maintenance"),
        "{r:?}"
    );

    a.put_empty("/v1/agent/maintenance?enable=false").ok();
    assert!(!agent_checks(a).contains_key("_node_maintenance"));
    eventually(SYNC, "mw1 passing again", || {
        (passing_ids(a, "mw").len() == 1).then_some(())
    });

    let r = a.put_empty("/v1/agent/maintenance");
    r.status(400);
}

fn service_maintenance(a: &Agent) {
    register_healthy(a, "sm1", "sm");
    register_healthy(a, "sm2", "sm");
    eventually(SYNC, "sm1 and sm2 passing", || {
        (passing_ids(a, "sm").len() == 2).then_some(())
    });

    a.put_empty("/v1/agent/service/maintenance/sm1?enable=true&reason=upgrade")
        .ok();
    let checks = agent_checks(a);
    let m = checks
        .get("_service_maintenance:sm1")
        .unwrap_or_else(|| panic!("_service_maintenance:sm1 in {checks:?}"));
    assert_eq!(m["Status"], "critical", "{m}");
    assert_eq!(m["Notes"], "upgrade", "{m}");
    assert_eq!(m["ServiceID"], "sm1", "{m}");
    let want: BTreeSet<String> = ["sm2".to_string()].into();
    eventually(SYNC, "only sm2 passing", || {
        (passing_ids(a, "sm") == want).then_some(())
    });

    a.put_empty("/v1/agent/service/maintenance/sm1?enable=false")
        .ok();
    assert!(!agent_checks(a).contains_key("_service_maintenance:sm1"));
    eventually(SYNC, "both passing again", || {
        (passing_ids(a, "sm").len() == 2).then_some(())
    });

    assert_eq!(
        a.put_empty("/v1/agent/service/maintenance/sm1").status,
        400,
        "enable is required"
    );
    assert_eq!(
        a.put_empty("/v1/agent/service/maintenance/no-such?enable=true")
            .status,
        404
    );
}
