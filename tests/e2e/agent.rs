//! Agent, status, catalog, operator and metrics endpoints, and how the process stops.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use regex::Regex;
use serde_json::{json, Value};

use crate::common::Agent;
use crate::kv::u;

per_core!(
    status_leader_and_peers,
    agent_self,
    agent_members,
    catalog_nodes,
    catalog_datacenters,
    catalog_consul_service,
    raft_configuration,
    metrics_json,
    metrics_prometheus,
    leave_endpoint_exits,
    sigterm_exits_cleanly,
);

fn leader(a: &Agent) -> String {
    let r = a.get("/v1/status/leader");
    r.ok()
        .json()
        .as_str()
        .unwrap_or_else(|| panic!("leader is a JSON string: {r:?}"))
        .to_string()
}

fn node_id(a: &Agent) -> String {
    let r = a.get("/v1/agent/self");
    r.ok().json()["Config"]["NodeID"]
        .as_str()
        .unwrap_or_else(|| panic!("Config.NodeID: {r:?}"))
        .to_string()
}

fn status_leader_and_peers(a: &Agent) {
    let l = leader(a);
    let addr: SocketAddr = l
        .parse()
        .unwrap_or_else(|e| panic!("leader {l:?} is ip:port: {e}"));
    assert_eq!(
        addr.port(),
        a.ports.server,
        "the leader is named by its server RPC address"
    );
    let r = a.get("/v1/status/peers");
    assert_eq!(
        r.ok().json(),
        json!([l]),
        "a dev agent is its own only peer: {r:?}"
    );
}

fn agent_self(a: &Agent) {
    let r = a.get("/v1/agent/self");
    let v = r.ok().json();
    let c = &v["Config"];
    assert_eq!(c["Datacenter"], "dc1", "{r:?}");
    assert_eq!(c["NodeName"], a.node.as_str(), "{r:?}");
    assert_eq!(c["Server"], true, "-dev runs a server: {r:?}");
    let version = c["Version"]
        .as_str()
        .unwrap_or_else(|| panic!("Config.Version: {r:?}"));
    assert!(
        Regex::new(r"^1\.\d+\.\d+$").expect("re").is_match(version),
        "Config.Version is a Consul version such as 1.22.0, got {version:?}"
    );
    let id = c["NodeID"]
        .as_str()
        .unwrap_or_else(|| panic!("NodeID: {r:?}"));
    assert_eq!(id.len(), 36, "NodeID is a UUID: {id}");
    assert_eq!(v["Member"]["Name"], a.node.as_str(), "{r:?}");
    let keys: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("object: {r:?}"))
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "Config",
            "Coord",
            "DebugConfig",
            "Member",
            "Meta",
            "Stats",
            "xDS"
        ],
        "exactly Consul's top-level keys: {r:?}"
    );
    let stats = v["Stats"]
        .as_object()
        .unwrap_or_else(|| panic!("Stats: {r:?}"));
    for (section, fields) in stats {
        for (k, val) in fields.as_object().expect("Stats sections are objects") {
            assert!(val.is_string(), "Stats.{section}.{k} is a string: {r:?}");
        }
    }
    let consul = &v["Stats"]["consul"];
    for k in [
        "leader",
        "leader_addr",
        "server",
        "bootstrap",
        "known_datacenters",
    ] {
        assert!(consul[k].is_string(), "Stats.consul.{k}: {r:?}");
    }
    assert_eq!(consul["server"], "true", "{r:?}");
    assert_eq!(consul["leader"], "true", "a dev agent leads: {r:?}");
    assert_eq!(consul["leader_addr"], leader(a).as_str(), "{r:?}");
    assert_eq!(v["Stats"]["raft"]["state"], "Leader", "{r:?}");
    assert_eq!(v["Stats"]["serf_lan"]["members"], "1", "{r:?}");
    assert_eq!(v["Stats"]["build"]["version"], version, "{r:?}");
    for k in ["os", "arch", "cpu_count"] {
        assert!(
            v["Stats"]["runtime"][k].is_string(),
            "Stats.runtime.{k}: {r:?}"
        );
    }
    let muster = &v["Stats"]["muster"];
    assert_eq!(
        muster["executors"],
        a.cores.to_string().as_str(),
        "Stats.muster.executors is the core count: {r:?}"
    );
    assert!(muster["version"].is_string(), "Stats.muster.version: {r:?}");
    assert!(
        !v["DebugConfig"]["Muster"]["Placement"].is_null(),
        "DebugConfig.Muster.Placement: {r:?}"
    );
}

fn agent_members(a: &Agent) {
    let r = a.get("/v1/agent/members");
    let v = r.ok().json();
    let members = v.as_array().unwrap_or_else(|| panic!("array: {r:?}"));
    let me = members
        .iter()
        .find(|m| m["Name"] == a.node.as_str())
        .unwrap_or_else(|| panic!("own node among members: {r:?}"));
    assert_eq!(me["Status"], 1, "alive: {r:?}");
    assert_eq!(me["Addr"], "127.0.0.1", "{r:?}");
    assert_eq!(
        me["Port"].as_u64(),
        Some(u64::from(a.ports.serf_lan)),
        "{r:?}"
    );
    assert_eq!(
        me["Tags"]["role"], "consul",
        "servers carry role=consul: {r:?}"
    );
    assert_eq!(me["Tags"]["dc"], "dc1", "{r:?}");
}

fn catalog_nodes(a: &Agent) {
    let id = node_id(a);
    let r = a.get("/v1/catalog/nodes");
    let v = r.ok().json();
    assert!(r.index() > 0, "{r:?}");
    let me = v
        .as_array()
        .unwrap_or_else(|| panic!("array: {r:?}"))
        .iter()
        .find(|n| n["Node"] == a.node.as_str())
        .unwrap_or_else(|| panic!("the agent registers its own node: {r:?}"))
        .clone();
    assert_eq!(
        me["ID"],
        id.as_str(),
        "catalog ID is the agent's NodeID: {r:?}"
    );
    assert_eq!(me["Address"], "127.0.0.1", "{r:?}");
    assert_eq!(me["Datacenter"], "dc1", "{r:?}");
    let tagged = me["TaggedAddresses"]
        .as_object()
        .unwrap_or_else(|| panic!("TaggedAddresses is an object: {r:?}"));
    assert_eq!(tagged.get("lan"), Some(&json!("127.0.0.1")), "{r:?}");
    assert_eq!(tagged.get("wan"), Some(&json!("127.0.0.1")), "{r:?}");
    assert!(u(&me, "CreateIndex") > 0, "{r:?}");
    assert!(u(&me, "ModifyIndex") >= u(&me, "CreateIndex"), "{r:?}");

    let r = a.get(&format!("/v1/catalog/node/{}", a.node));
    assert_eq!(r.ok().json()["Node"]["Node"], a.node.as_str(), "{r:?}");
}

fn catalog_datacenters(a: &Agent) {
    let r = a.get("/v1/catalog/datacenters");
    assert_eq!(r.ok().json(), json!(["dc1"]), "{r:?}");
}

fn catalog_consul_service(a: &Agent) {
    let r = a.get("/v1/catalog/services");
    let v = r.ok().json();
    assert!(
        v.get("consul").is_some(),
        "servers register the `consul` service: {r:?}"
    );
    let r = a.get("/v1/catalog/service/consul");
    let v = r.ok().json();
    let inst = v.as_array().unwrap_or_else(|| panic!("array: {r:?}"));
    assert_eq!(inst.len(), 1, "{r:?}");
    assert_eq!(inst[0]["Node"], a.node.as_str(), "{r:?}");
    assert_eq!(inst[0]["ServiceName"], "consul", "{r:?}");
    assert_eq!(
        inst[0]["ServicePort"].as_u64(),
        Some(u64::from(a.ports.server)),
        "{r:?}"
    );
}

fn raft_configuration(a: &Agent) {
    let l = leader(a);
    let r = a.get("/v1/operator/raft/configuration");
    let v = r.ok().json();
    let servers = v["Servers"]
        .as_array()
        .unwrap_or_else(|| panic!("Servers: {r:?}"));
    assert_eq!(servers.len(), 1, "{r:?}");
    let s = &servers[0];
    assert_eq!(s["Node"], a.node.as_str(), "{r:?}");
    assert_eq!(s["Address"], l.as_str(), "{r:?}");
    assert_eq!(s["Leader"], true, "{r:?}");
    assert_eq!(s["Voter"], true, "{r:?}");
    assert!(s["ID"].as_str().is_some_and(|id| !id.is_empty()), "{r:?}");
    assert!(v["Index"].is_u64(), "Index: {r:?}");
}

/// Writes some keys so that the raft and KV metrics have samples.
fn make_traffic(a: &Agent) {
    for i in 0..5 {
        a.kv_put(&format!("metrics/k{i}"), "v");
    }
    let _ = a.get("/v1/kv/metrics/?recurse");
}

fn metrics_json(a: &Agent) {
    make_traffic(a);
    let r = a.get("/v1/agent/metrics");
    let v = r.ok().json();
    for field in ["Gauges", "Counters", "Samples"] {
        assert!(v[field].is_array(), "{field} is an array: {r:?}");
    }
    assert!(v["Timestamp"].is_string(), "{r:?}");
    let names: HashSet<&str> = ["Gauges", "Counters", "Samples"]
        .iter()
        .flat_map(|f| v[*f].as_array().into_iter().flatten())
        .filter_map(|m: &Value| m["Name"].as_str())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("consul.raft.")),
        "Consul metric names (dotted) in JSON: {names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("consul.kvs.apply")),
        "consul.kvs.apply after KV writes: {names:?}"
    );
}

fn metrics_prometheus(a: &Agent) {
    make_traffic(a);
    let r = a.get("/v1/agent/metrics?format=prometheus");
    r.ok();
    assert!(
        r.header("Content-Type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{r:?}"
    );
    let text = r.text();
    for family in [
        "consul_raft_apply",
        "consul_raft_commitTime",
        "consul_raft_leader",
        "consul_kvs_apply",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {family}"))),
            "family {family} has a TYPE line: {r:?}"
        );
    }
    let sample =
        Regex::new(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)( -?[0-9]+)?$")
            .expect("re");
    let type_line =
        Regex::new(r"^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|summary|histogram|untyped)$")
            .expect("re");
    let mut typed = HashSet::new();
    let mut samples = 0;
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            assert!(type_line.is_match(line), "malformed TYPE line {line:?}");
            let name = rest.split(' ').next().expect("name");
            assert!(
                typed.insert(name.to_string()),
                "family {name} declared twice"
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        assert!(
            sample.is_match(line),
            "sample line not in exposition format: {line:?}"
        );
        samples += 1;
    }
    assert!(samples > 0, "{r:?}");
}

fn leave_endpoint_exits(a: &Agent) {
    let r = a.put_empty("/v1/agent/leave");
    r.ok();
    let st = a.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "graceful leave exits 0, got {st}");
}

fn sigterm_exits_cleanly(a: &Agent) {
    a.signal(libc::SIGTERM);
    let st = a.wait_exit(Duration::from_secs(30));
    assert_eq!(st.code(), Some(0), "SIGTERM exits 0, got {st}");
}
