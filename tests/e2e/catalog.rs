//! The catalog endpoints driven directly (`/v1/catalog/register` and friends), as an external
//! service registrar such as consul-esm would: external nodes, services and checks, the read
//! endpoints and their filters, deregistration at each level, raft indexes and blocking.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{qenc, Agent, Resp};
use crate::kv::u;

per_core!(
    register_and_read_service,
    service_tag_meta_and_filter,
    services_map,
    node_and_node_services,
    service_id_defaults_to_name,
    deregister_check_service_node,
    indexes_and_identical_reregister,
    blocking_service_woken_by_own_registration,
);

/// The registration from Consul's catalog API documentation. The addresses are data only.
pub fn redis_payload() -> Value {
    json!({
        "Datacenter": "dc1",
        "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
        "Node": "foobar",
        "Address": "192.168.10.10",
        "TaggedAddresses": {"lan": "192.168.10.10", "wan": "10.0.10.10"},
        "NodeMeta": {"somekey": "somevalue"},
        "Service": {
            "ID": "redis1",
            "Service": "redis",
            "Tags": ["primary", "v1"],
            "Address": "127.0.0.1",
            "Meta": {"redis_version": "4.0"},
            "Port": 8000
        },
        "Check": {
            "Node": "foobar",
            "CheckID": "service:redis1",
            "Name": "Redis health check",
            "Notes": "Script based health check",
            "Status": "passing",
            "ServiceID": "redis1"
        },
        "SkipNodeUpdate": false
    })
}

#[track_caller]
pub fn register(a: &Agent, body: &Value) {
    let r = a.put_json("/v1/catalog/register", body);
    assert!(r.bool(), "register answers true: {r:?}");
}

#[track_caller]
pub fn deregister(a: &Agent, body: &Value) {
    let r = a.put_json("/v1/catalog/deregister", body);
    assert!(r.bool(), "deregister answers true: {r:?}");
}

/// The body as a JSON array (panicking with the reply otherwise).
#[track_caller]
pub fn arr(r: &Resp) -> Vec<Value> {
    match r.json() {
        Value::Array(v) => v,
        other => panic!("expected a JSON array, got {other}: {r:?}"),
    }
}

/// GET that must answer 200 with an array.
#[track_caller]
pub fn get_arr(a: &Agent, path: &str) -> (Resp, Vec<Value>) {
    let r = a.get(path);
    r.ok();
    let v = arr(&r);
    (r, v)
}

fn strs(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array of strings, got {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn register_and_read_service(a: &Agent) {
    register(a, &redis_payload());
    let (r, list) = get_arr(a, "/v1/catalog/service/redis");
    assert_eq!(list.len(), 1, "{r:?}");
    let s = &list[0];
    assert_eq!(s["ID"], "40e4a748-2192-161a-0510-9bf59fe950b5", "{r:?}");
    assert_eq!(s["Node"], "foobar", "{r:?}");
    assert_eq!(s["Address"], "192.168.10.10", "{r:?}");
    assert_eq!(s["Datacenter"], "dc1", "{r:?}");
    assert_eq!(
        s["TaggedAddresses"],
        json!({"lan": "192.168.10.10", "wan": "10.0.10.10"}),
        "{r:?}"
    );
    assert_eq!(s["NodeMeta"], json!({"somekey": "somevalue"}), "{r:?}");
    assert_eq!(s["ServiceID"], "redis1", "{r:?}");
    assert_eq!(s["ServiceName"], "redis", "{r:?}");
    assert_eq!(s["ServiceTags"], json!(["primary", "v1"]), "{r:?}");
    assert_eq!(s["ServiceAddress"], "127.0.0.1", "{r:?}");
    assert_eq!(s["ServiceMeta"], json!({"redis_version": "4.0"}), "{r:?}");
    assert_eq!(s["ServicePort"], 8000, "{r:?}");
    assert_eq!(s["ServiceEnableTagOverride"], false, "{r:?}");
    assert_eq!(
        s["ServiceWeights"],
        json!({"Passing": 1, "Warning": 1}),
        "weights default to 1/1: {r:?}"
    );
    assert!(u(s, "CreateIndex") > 0, "{r:?}");
    assert!(u(s, "ModifyIndex") >= u(s, "CreateIndex"), "{r:?}");
    assert!(r.index() >= u(s, "ModifyIndex"), "{r:?}");

    // The check arrived too, tied to the service.
    let (r, checks) = get_arr(a, "/v1/health/checks/redis");
    assert_eq!(checks.len(), 1, "{r:?}");
    let c = &checks[0];
    assert_eq!(c["CheckID"], "service:redis1", "{r:?}");
    assert_eq!(c["Name"], "Redis health check", "{r:?}");
    assert_eq!(c["Notes"], "Script based health check", "{r:?}");
    assert_eq!(c["Status"], "passing", "{r:?}");
    assert_eq!(c["ServiceID"], "redis1", "{r:?}");
    assert_eq!(c["ServiceName"], "redis", "{r:?}");
    assert_eq!(c["Node"], "foobar", "{r:?}");

    // The external node is listed with the others.
    let (r, nodes) = get_arr(a, "/v1/catalog/nodes");
    assert!(
        nodes
            .iter()
            .any(|n| n["Node"] == "foobar" && n["Address"] == "192.168.10.10"),
        "{r:?}"
    );

    // An unknown service is an empty list, not an error.
    let (r, none) = get_arr(a, "/v1/catalog/service/no-such-service");
    assert!(none.is_empty(), "{r:?}");
    assert!(r.index() > 0, "reads carry X-Consul-Index: {r:?}");
}

fn service_tag_meta_and_filter(a: &Agent) {
    register(a, &redis_payload());
    // A second instance on another node, differing in tags, meta and node meta.
    register(
        a,
        &json!({
            "Node": "barbaz",
            "Address": "192.168.10.11",
            "NodeMeta": {"somekey": "othervalue"},
            "Service": {
                "ID": "redis2",
                "Service": "redis",
                "Tags": ["replica", "v1"],
                "Meta": {"redis_version": "5.0"},
                "Port": 8001
            }
        }),
    );
    let ids = |path: &str| -> BTreeSet<String> {
        let (_, list) = get_arr(a, path);
        list.iter()
            .map(|s| s["ServiceID"].as_str().expect("ServiceID").to_string())
            .collect()
    };
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };

    assert_eq!(ids("/v1/catalog/service/redis"), set(&["redis1", "redis2"]));
    assert_eq!(
        ids("/v1/catalog/service/redis?tag=v1"),
        set(&["redis1", "redis2"])
    );
    assert_eq!(
        ids("/v1/catalog/service/redis?tag=primary"),
        set(&["redis1"])
    );
    assert_eq!(
        ids("/v1/catalog/service/redis?tag=primary&tag=v1"),
        set(&["redis1"]),
        "every ?tag= must match"
    );
    assert_eq!(
        ids("/v1/catalog/service/redis?tag=primary&tag=replica"),
        set(&[]),
        "every ?tag= must match, none has both"
    );
    assert_eq!(ids("/v1/catalog/service/redis?tag=nosuchtag"), set(&[]));
    assert_eq!(
        ids(&format!(
            "/v1/catalog/service/redis?node-meta={}",
            qenc("somekey:somevalue")
        )),
        set(&["redis1"])
    );
    assert_eq!(
        ids(&format!(
            "/v1/catalog/service/redis?node-meta={}",
            qenc("somekey:nothing")
        )),
        set(&[])
    );
    assert_eq!(
        ids(&format!(
            "/v1/catalog/service/redis?filter={}",
            qenc(r#"ServiceMeta.redis_version == "5.0""#)
        )),
        set(&["redis2"])
    );
    assert_eq!(
        ids(&format!(
            "/v1/catalog/service/redis?filter={}",
            qenc(r#"primary in ServiceTags and ServicePort == 8000"#)
        )),
        set(&["redis1"])
    );
    assert_eq!(
        ids(&format!(
            "/v1/catalog/service/redis?filter={}",
            qenc("Node == barbaz")
        )),
        set(&["redis2"])
    );
    let r = a.get(&format!(
        "/v1/catalog/service/redis?filter={}",
        qenc("ServicePort ==")
    ));
    r.status(400);
}

fn services_map(a: &Agent) {
    register(a, &redis_payload());
    register(
        a,
        &json!({
            "Node": "barbaz",
            "Address": "192.168.10.11",
            "Service": {"ID": "redis2", "Service": "redis", "Tags": ["replica", "v1"], "Port": 8001}
        }),
    );
    register(
        a,
        &json!({
            "Node": "barbaz",
            "Address": "192.168.10.11",
            "Service": {"Service": "untagged", "Port": 9}
        }),
    );
    let r = a.get("/v1/catalog/services");
    let v = r.ok().json();
    assert!(r.index() > 0, "{r:?}");
    let m = v
        .as_object()
        .unwrap_or_else(|| panic!("a map of name -> tags: {r:?}"));
    assert_eq!(
        strs(&m["redis"]),
        ["primary", "replica", "v1"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "tags of every instance, once each: {r:?}"
    );
    assert_eq!(
        m["redis"].as_array().map(Vec::len),
        Some(3),
        "no duplicate tags: {r:?}"
    );
    assert_eq!(m["untagged"], json!([]), "{r:?}");
    assert!(m.contains_key("consul"), "{r:?}");

    // node-meta narrows the listing to services on matching nodes.
    let r = a.get(&format!(
        "/v1/catalog/services?node-meta={}",
        qenc("somekey:somevalue")
    ));
    let v = r.ok().json();
    let keys: BTreeSet<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("{r:?}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["redis"]), "{r:?}");
}

fn node_and_node_services(a: &Agent) {
    register(a, &redis_payload());
    // SkipNodeUpdate keeps the node as it is (a registration otherwise replaces the node
    // entry whole, ID and meta included).
    register(
        a,
        &json!({
            "Node": "foobar",
            "Address": "192.168.99.99",
            "SkipNodeUpdate": true,
            "Service": {"ID": "web1", "Service": "web", "Port": 80}
        }),
    );

    let r = a.get("/v1/catalog/node/foobar");
    let v = r.ok().json();
    assert!(r.index() > 0, "{r:?}");
    let n = &v["Node"];
    assert_eq!(n["Node"], "foobar", "{r:?}");
    assert_eq!(n["ID"], "40e4a748-2192-161a-0510-9bf59fe950b5", "{r:?}");
    assert_eq!(n["Address"], "192.168.10.10", "{r:?}");
    assert_eq!(n["Meta"], json!({"somekey": "somevalue"}), "{r:?}");
    assert_eq!(n["TaggedAddresses"]["wan"], "10.0.10.10", "{r:?}");
    let services = v["Services"]
        .as_object()
        .unwrap_or_else(|| panic!("Services is a map keyed by service ID: {r:?}"));
    assert_eq!(
        services.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["redis1", "web1"]),
        "{r:?}"
    );
    let redis = &services["redis1"];
    assert_eq!(redis["ID"], "redis1", "{r:?}");
    assert_eq!(redis["Service"], "redis", "{r:?}");
    assert_eq!(redis["Tags"], json!(["primary", "v1"]), "{r:?}");
    assert_eq!(redis["Port"], 8000, "{r:?}");
    assert_eq!(redis["Address"], "127.0.0.1", "{r:?}");
    assert_eq!(redis["Meta"], json!({"redis_version": "4.0"}), "{r:?}");
    assert_eq!(services["web1"]["Tags"], json!([]), "no tags is [] {r:?}");

    let r = a.get("/v1/catalog/node-services/foobar");
    let v = r.ok().json();
    assert!(r.index() > 0, "{r:?}");
    assert_eq!(v["Node"]["Node"], "foobar", "{r:?}");
    let list = v["Services"]
        .as_array()
        .unwrap_or_else(|| panic!("Services is a list here: {r:?}"));
    let ids: BTreeSet<&str> = list.iter().filter_map(|s| s["ID"].as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["redis1", "web1"]), "{r:?}");
    let redis = list.iter().find(|s| s["ID"] == "redis1").expect("redis1");
    assert_eq!(redis["Service"], "redis", "{r:?}");
    assert_eq!(redis["Port"], 8000, "{r:?}");

    // An unknown node: Consul answers 200 with `null`.
    let r = a.get("/v1/catalog/node/no-such-node");
    assert_eq!(r.ok().json(), Value::Null, "{r:?}");
}

fn service_id_defaults_to_name(a: &Agent) {
    register(
        a,
        &json!({
            "Node": "cachebox",
            "Address": "192.168.10.20",
            "Service": {"Service": "memcached", "Port": 11211}
        }),
    );
    let (r, list) = get_arr(a, "/v1/catalog/service/memcached");
    assert_eq!(list.len(), 1, "{r:?}");
    assert_eq!(list[0]["ServiceID"], "memcached", "{r:?}");
    assert_eq!(list[0]["ServiceTags"], json!([]), "{r:?}");
    let r = a.get("/v1/catalog/node/cachebox");
    assert!(
        r.ok().json()["Services"].get("memcached").is_some(),
        "keyed by the defaulted ID: {r:?}"
    );
    // Deregistering by that ID works.
    deregister(a, &json!({"Node": "cachebox", "ServiceID": "memcached"}));
    let (r, list) = get_arr(a, "/v1/catalog/service/memcached");
    assert!(list.is_empty(), "{r:?}");
}

fn deregister_check_service_node(a: &Agent) {
    register(a, &redis_payload());
    // A node-level check, to see that it survives the service's deregistration.
    register(
        a,
        &json!({
            "Node": "foobar",
            "Address": "192.168.10.10",
            "Check": {"CheckID": "node-ok", "Name": "node ok", "Status": "passing"}
        }),
    );
    let check_ids = |path: &str| -> BTreeSet<String> {
        let (_, list) = get_arr(a, path);
        list.iter()
            .map(|c| c["CheckID"].as_str().expect("CheckID").to_string())
            .collect()
    };
    assert_eq!(
        check_ids("/v1/health/node/foobar"),
        BTreeSet::from(["node-ok".to_string(), "service:redis1".to_string()])
    );

    // 1. The check only: the service stays.
    deregister(a, &json!({"Node": "foobar", "CheckID": "service:redis1"}));
    assert_eq!(
        check_ids("/v1/health/node/foobar"),
        BTreeSet::from(["node-ok".to_string()])
    );
    let (r, list) = get_arr(a, "/v1/catalog/service/redis");
    assert_eq!(list.len(), 1, "the service outlives its check: {r:?}");

    // 2. The service (with a fresh check of its own): both go, the node stays.
    register(a, &redis_payload());
    deregister(a, &json!({"Node": "foobar", "ServiceID": "redis1"}));
    let (r, list) = get_arr(a, "/v1/catalog/service/redis");
    assert!(list.is_empty(), "{r:?}");
    assert_eq!(
        check_ids("/v1/health/node/foobar"),
        BTreeSet::from(["node-ok".to_string()]),
        "the service's checks go with it"
    );
    let r = a.get("/v1/catalog/services");
    assert!(
        r.ok().json().get("redis").is_none(),
        "no instance left, no entry: {r:?}"
    );
    let r = a.get("/v1/catalog/node/foobar");
    assert_eq!(r.ok().json()["Node"]["Node"], "foobar", "{r:?}");

    // 3. The node: everything on it goes.
    register(a, &redis_payload());
    deregister(a, &json!({"Node": "foobar"}));
    let (r, nodes) = get_arr(a, "/v1/catalog/nodes");
    assert!(nodes.iter().all(|n| n["Node"] != "foobar"), "{r:?}");
    let (r, list) = get_arr(a, "/v1/catalog/service/redis");
    assert!(list.is_empty(), "{r:?}");
    assert!(check_ids("/v1/health/node/foobar").is_empty());
    let r = a.get("/v1/catalog/node/foobar");
    assert_eq!(r.ok().json(), Value::Null, "{r:?}");
}

fn indexes_and_identical_reregister(a: &Agent) {
    register(a, &redis_payload());
    let (r, list) = get_arr(a, "/v1/catalog/service/redis");
    let create = u(&list[0], "CreateIndex");
    let modify = u(&list[0], "ModifyIndex");
    assert!(r.index() >= modify, "{r:?}");
    let node_modify = u(
        &a.get("/v1/catalog/node/foobar").ok().json()["Node"],
        "ModifyIndex",
    );

    // Something else moves the raft index meanwhile.
    a.kv_put("catalog/bump", "x");

    // The same data again: nothing changes, no index moves.
    register(a, &redis_payload());
    let (r, list) = get_arr(a, "/v1/catalog/service/redis");
    assert_eq!(u(&list[0], "CreateIndex"), create, "{r:?}");
    assert_eq!(
        u(&list[0], "ModifyIndex"),
        modify,
        "an identical re-registration does not move ModifyIndex: {r:?}"
    );
    let r = a.get("/v1/catalog/node/foobar");
    assert_eq!(
        u(&r.ok().json()["Node"], "ModifyIndex"),
        node_modify,
        "nor the node's: {r:?}"
    );

    // A real change moves ModifyIndex (and X-Consul-Index) but not CreateIndex.
    let mut changed = redis_payload();
    changed["Service"]["Port"] = json!(8001);
    register(a, &changed);
    let (r, list) = get_arr(a, "/v1/catalog/service/redis");
    assert_eq!(list[0]["ServicePort"], 8001, "{r:?}");
    assert_eq!(u(&list[0], "CreateIndex"), create, "{r:?}");
    let modify2 = u(&list[0], "ModifyIndex");
    assert!(modify2 > modify, "{r:?}");
    assert!(r.index() >= modify2, "{r:?}");

    // A node-level change moves the node's ModifyIndex.
    let mut moved = changed.clone();
    moved["NodeMeta"] = json!({"somekey": "changed"});
    register(a, &moved);
    let r = a.get("/v1/catalog/node/foobar");
    let v = r.ok().json();
    assert!(u(&v["Node"], "ModifyIndex") > node_modify, "{r:?}");
    assert_eq!(v["Node"]["Meta"]["somekey"], "changed", "{r:?}");
}

fn blocking_service_woken_by_own_registration(a: &Agent) {
    register(a, &redis_payload());
    let idx = a.get("/v1/catalog/service/redis").ok().index();

    // Woken by a new instance of the same service.
    let c = a.client();
    let waiter = thread::spawn(move || {
        let start = Instant::now();
        let r = c.get(&format!("/v1/catalog/service/redis?index={idx}&wait=20s"));
        (r, start.elapsed())
    });
    thread::sleep(Duration::from_millis(300));
    register(
        a,
        &json!({
            "Node": "barbaz",
            "Address": "192.168.10.11",
            "Service": {"ID": "redis2", "Service": "redis", "Port": 8001}
        }),
    );
    let (r, took) = waiter.join().expect("waiter");
    r.ok();
    assert!(
        took < Duration::from_secs(15),
        "woken by the registration, not the 20 s wait: {took:?} {r:?}"
    );
    assert!(r.index() > idx, "{r:?}");
    assert_eq!(arr(&r).len(), 2, "the new instance is in the answer: {r:?}");

    // Not woken by another service: the short wait expires with the same index.
    let idx = r.index();
    let c = a.client();
    let waiter =
        thread::spawn(move || c.get(&format!("/v1/catalog/service/redis?index={idx}&wait=2s")));
    thread::sleep(Duration::from_millis(300));
    register(
        a,
        &json!({
            "Node": "pgnode",
            "Address": "192.168.10.12",
            "Service": {"ID": "pg1", "Service": "postgres", "Port": 5432}
        }),
    );
    let r = waiter.join().expect("waiter");
    r.ok();
    assert_eq!(
        r.index(),
        idx,
        "a registration of another service does not change this one's index: {r:?}"
    );
    assert_eq!(arr(&r).len(), 2, "{r:?}");
}
