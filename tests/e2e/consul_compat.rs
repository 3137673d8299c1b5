//! Where real Consul clients look: Consul's errors for unknown paths and wrong methods, the
//! agent and operator endpoints tools call (monitor, host, version, token, usage, raft peer and
//! leadership, keyring, snapshot headers), config entries (`/v1/config`, stored through raft,
//! CAS, validation, blocking, kept by snapshots), the service-mesh reads answered as Consul
//! answers them without a mesh, and the web UI's summaries.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{Agent, Client};

per_core!(
    errors_like_consul,
    legacy_acl_endpoints_are_gone,
    agent_monitor_streams_logs,
    agent_host_version_token,
    operator_endpoints,
    snapshot_headers,
    config_entries_crud_and_cas,
    config_entries_validation,
    config_entries_block,
    config_entries_survive_snapshot_restore,
    connect_and_ingress_reads,
    gateway_services_and_discovery_chain,
    ui_endpoints,
    config_cli,
);

const WAKE_BOUND: Duration = Duration::from_secs(15);

/// One raw HTTP/1.1 exchange (for methods the shared client lacks), read to the end.
fn raw(a: &Agent, method: &str, path: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(a.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn errors_like_consul(a: &Agent) {
    let r = a.delete("/v1/status/leader");
    r.status(405);
    assert_eq!(r.text(), "method DELETE not allowed", "{r:?}");
    assert_eq!(r.header("Allow"), Some("OPTIONS,GET"), "{r:?}");
    let r = a.get("/v1/session/create");
    r.status(405);
    assert_eq!(r.header("Allow"), Some("OPTIONS,PUT"), "{r:?}");
    let r = a.put("/v1/config/service-defaults/x", "{}");
    r.status(405);
    assert_eq!(r.header("Allow"), Some("OPTIONS,GET,DELETE"), "{r:?}");
    let r = a.get("/v1/config");
    r.status(405);
    assert_eq!(r.header("Allow"), Some("OPTIONS,PUT"), "{r:?}");

    // OPTIONS on a known endpoint: 200, the methods, no body.
    let (status, headers, body) = raw(a, "OPTIONS", "/v1/kv/some/key", "");
    assert_eq!(status, 200, "{headers:?} {body}");
    assert_eq!(header(&headers, "Allow"), Some("OPTIONS,GET,PUT,DELETE"));
    assert!(body.is_empty(), "{body:?}");

    // Unknown paths: 404 with no body, whatever the method.
    for path in [
        "/v1/does/not/exist",
        "/v1/agent/nothing",
        "/v1/catalog/nope",
    ] {
        let r = a.get(path);
        r.status(404);
        assert!(r.body.is_empty(), "{r:?}");
    }
    let r = a.delete("/v1/health/nothing/x");
    r.status(404);
}

fn legacy_acl_endpoints_are_gone(a: &Agent) {
    for (method, path) in [
        ("PUT", "/v1/acl/create"),
        ("PUT", "/v1/acl/update"),
        ("GET", "/v1/acl/list"),
        (
            "PUT",
            "/v1/acl/destroy/4b1a8a4e-0000-0000-0000-000000000000",
        ),
        ("GET", "/v1/acl/info/4b1a8a4e-0000-0000-0000-000000000000"),
        ("PUT", "/v1/acl/clone/4b1a8a4e-0000-0000-0000-000000000000"),
    ] {
        let (status, _, body) = raw(a, method, path, "");
        assert_eq!(status, 410, "{method} {path}: {body}");
        assert_eq!(
            body,
            format!("Endpoint {path} for the legacy ACL system was removed in Consul 1.11.")
        );
    }
}

/// A monitor stream: the raw bytes received so far.
struct Monitor {
    sock: TcpStream,
    seen: String,
}

impl Monitor {
    fn open(a: &Agent, query: &str) -> Monitor {
        let mut sock = TcpStream::connect(a.addr()).expect("connect");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(
            sock,
            "GET /v1/agent/monitor?{query} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        let mut m = Monitor {
            sock,
            seen: String::new(),
        };
        // The head is sent as soon as the tap exists: after it, every log line reaches us.
        m.until("\r\n\r\n");
        assert!(m.seen.starts_with("HTTP/1.1 200"), "{}", m.seen);
        assert!(
            m.seen
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{}",
            m.seen
        );
        m
    }

    /// Reads until `what` has been received; returns everything received before it.
    fn until(&mut self, what: &str) -> String {
        let deadline = Instant::now() + WAKE_BOUND;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(at) = self.seen.find(what) {
                return self.seen[..at].to_string();
            }
            assert!(
                Instant::now() < deadline,
                "never received {what:?}; got: {}",
                self.seen
            );
            match self.sock.read(&mut buf) {
                Ok(0) => panic!("stream ended before {what:?}: {}", self.seen),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
        }
    }
}

fn agent_monitor_streams_logs(a: &Agent) {
    let r = a.get("/v1/agent/monitor?loglevel=verbose");
    r.status(400);
    assert_eq!(r.text(), "Unknown log level: verbose", "{r:?}");

    let mut warn = Monitor::open(a, "loglevel=warn");
    let mut info = Monitor::open(a, "loglevel=info&logjson");

    // An INFO line, then a WARN line (a lock refused under lock-delay).
    a.put_json("/v1/agent/token/default", &json!({"Token": "abc"}))
        .ok();
    let s1 = a.session_create(&json!({"LockDelay": "30s"}));
    assert!(a.kv_lock("mon/lock", "acquire", &s1, "x"));
    a.session_destroy(&s1);
    let s2 = a.session_create(&json!({}));
    assert!(!a.kv_lock("mon/lock", "acquire", &s2, "y"));

    let before = warn.until("rejecting lock of \"mon/lock\" due to lock-delay");
    assert!(
        !before.contains("Updated agent's ACL token"),
        "a WARN monitor gets no INFO lines: {before}"
    );
    assert!(
        before.contains("[WARN]") || warn.seen.contains("[WARN]"),
        "{}",
        warn.seen
    );

    let line_start = info.until("Updated agent's ACL token");
    let line = &line_start[line_start.rfind('{').expect("a JSON line")..];
    assert!(
        line.starts_with("{\"@level\":\"info\",\"@message\":\""),
        "{line}"
    );
    info.until("rejecting lock");
    drop(warn);
    drop(info);
    // The agent keeps serving after its monitors went away.
    a.get("/v1/status/leader").ok();
}

fn agent_host_version_token(a: &Agent) {
    let h = a.get("/v1/agent/host").ok().json();
    assert!(h["Memory"]["total"].as_u64().unwrap_or(0) > 0, "{h}");
    assert!(h["CPU"].as_array().is_some_and(|c| !c.is_empty()), "{h}");
    assert!(
        h["Host"]["hostname"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{h}"
    );
    assert_eq!(h["Host"]["os"], "linux", "{h}");
    assert!(h["Disk"]["total"].as_u64().unwrap_or(0) > 0, "{h}");
    assert!(h["CollectionTime"].as_u64().unwrap_or(0) > 0, "{h}");

    let v = a.get("/v1/agent/version").ok().json();
    let self_version = a.get("/v1/agent/self").ok().json()["Config"]["Version"].clone();
    assert_eq!(v["HumanVersion"], self_version, "{v}");
    for k in ["SHA", "BuildDate", "FIPS"] {
        assert!(v.get(k).is_some(), "{k} in {v}");
    }

    for kind in [
        "default",
        "agent",
        "agent_recovery",
        "replication",
        "acl_token",
    ] {
        let r = a.put_json(&format!("/v1/agent/token/{kind}"), &json!({"Token": "t"}));
        r.ok();
        assert!(r.body.is_empty(), "{r:?}");
    }
    let r = a.put_json("/v1/agent/token/bogus", &json!({"Token": "t"}));
    r.status(404);
    assert_eq!(r.text(), "Token \"bogus\" is unknown", "{r:?}");
    a.get("/v1/agent/token/default").status(405);
}

fn operator_endpoints(a: &Agent) {
    settle(a);
    a.put_json(
        "/v1/catalog/register",
        &json!({"Node": "u1", "Address": "10.0.1.20",
                "Service": {"Service": "billing", "ID": "billing-1", "Port": 80}}),
    )
    .ok();
    a.put_json(
        "/v1/catalog/register",
        &json!({"Node": "u1", "Address": "10.0.1.20",
                "Service": {"Service": "billing-sidecar-proxy", "ID": "billing-proxy",
                            "Kind": "connect-proxy", "Port": 21000,
                            "Proxy": {"DestinationServiceName": "billing"}}}),
    )
    .ok();
    let r = a.get("/v1/operator/usage");
    let u = r.ok().json();
    let idx = r.index();
    let dc = &u["Usage"]["dc1"];
    assert!(dc["Services"].as_u64().unwrap() >= 2, "{u}");
    assert!(dc["ServiceInstances"].as_u64().unwrap() >= 2, "{u}");
    assert_eq!(dc["ConnectServiceInstances"]["connect-proxy"], 1, "{u}");
    assert_eq!(u["Index"], idx, "{u}");
    let billable = dc["BillableServiceInstances"].as_u64().unwrap();
    a.put_json(
        "/v1/catalog/register",
        &json!({"Node": "u1", "Address": "10.0.1.20",
                "Service": {"Service": "billing", "ID": "billing-2", "Port": 81}}),
    )
    .ok();
    let r = a.get("/v1/operator/usage");
    assert!(r.ok().index() > idx, "{r:?}");
    assert_eq!(
        r.json()["Usage"]["dc1"]["BillableServiceInstances"],
        billable + 1
    );

    let (status, _, body) = raw(a, "POST", "/v1/operator/raft/transfer-leader", "");
    assert_eq!(status, 500, "{body}");
    assert!(body.ends_with("cannot find peer"), "{body}");
    a.put_empty("/v1/operator/raft/transfer-leader").status(405);

    let r = a.delete("/v1/operator/raft/peer?address=10.0.1.20:8300");
    r.status(500);
    assert_eq!(
        r.text(),
        "address \"10.0.1.20:8300\" was not found in the Raft configuration"
    );
    let r = a.delete("/v1/operator/raft/peer?id=nope");
    r.status(500);
    assert_eq!(
        r.text(),
        "id \"nope\" was not found in the Raft configuration"
    );
    let r = a.delete("/v1/operator/raft/peer");
    r.status(400);
    assert_eq!(
        r.text(),
        "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove"
    );

    let r = a.get("/v1/operator/keyring");
    r.status(500);
    assert!(
        r.text()
            .contains("Keyring is empty (encryption not enabled)"),
        "{r:?}"
    );
}

fn snapshot_headers(a: &Agent) {
    a.kv_put("snap/h", "v");
    let kv_idx = a.get("/v1/kv/snap/h").ok().index();
    let r = a.get("/v1/snapshot");
    r.ok();
    assert!(r.index() >= kv_idx, "{r:?}");
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"), "{r:?}");
    assert!(r.header("X-Consul-LastContact").is_some(), "{r:?}");
    assert!(r.header("Content-Type").is_some(), "{r:?}");
    assert!(!r.body.is_empty());
}

fn entry(a: &Client, kind: &str, name: &str) -> crate::common::Resp {
    a.get(&format!("/v1/config/{kind}/{name}"))
}

fn config_entries_crud_and_cas(a: &Agent) {
    // Missing: 404 with Consul's text, and an index.
    let r = entry(a, "service-defaults", "web");
    r.status(404);
    assert_eq!(
        r.text(),
        "Config entry not found for \"service-defaults\" / \"web\""
    );
    r.index();

    // Create, with config-file key spellings.
    let r = a.put(
        "/v1/config",
        r#"{"kind": "service-defaults", "name": "web", "protocol": "HTTP",
            "mesh_gateway": {"mode": "local"}, "Meta": {"team_key": "a"}}"#,
    );
    assert!(r.bool(), "{r:?}");
    let r = entry(a, "service-defaults", "web");
    let e = r.ok().json();
    let idx = r.index();
    assert_eq!(e["Kind"], "service-defaults");
    assert_eq!(e["Name"], "web");
    assert_eq!(e["Protocol"], "http", "normalised: {e}");
    assert_eq!(e["MeshGateway"]["Mode"], "local", "{e}");
    assert_eq!(e["Meta"]["team_key"], "a", "user keys kept: {e}");
    let created = e["CreateIndex"].as_u64().unwrap();
    assert_eq!(e["ModifyIndex"].as_u64().unwrap(), created);
    assert!(idx >= created);

    // CAS: a stale index is refused and changes nothing; the current one wins.
    let body = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"});
    assert!(!a
        .put_json(&format!("/v1/config?cas={}", created + 1000), &body)
        .bool());
    assert!(
        !a.put_json("/v1/config?cas=0", &body).bool(),
        "cas=0 only creates"
    );
    assert_eq!(
        entry(a, "service-defaults", "web").json()["Protocol"],
        "http"
    );
    assert!(a
        .put_json(&format!("/v1/config?cas={created}"), &body)
        .bool());
    let e = entry(a, "service-defaults", "web").ok().json();
    assert_eq!(e["Protocol"], "grpc");
    assert_eq!(e["CreateIndex"].as_u64().unwrap(), created);
    let modified = e["ModifyIndex"].as_u64().unwrap();
    assert!(modified > created);
    assert!(a
        .put_json(
            "/v1/config?cas=0",
            &json!({"Kind": "service-defaults", "Name": "api"})
        )
        .bool());

    // proxy-defaults is always named "global"; mesh "mesh".
    assert!(a
        .put_json(
            "/v1/config",
            &json!({"Kind": "proxy-defaults", "Config": {"protocol": "http"}})
        )
        .bool());
    assert_eq!(
        entry(a, "proxy-defaults", "global").ok().json()["Config"]["protocol"],
        "http"
    );

    // List by kind, in name order, with the table index.
    let r = a.get("/v1/config/service-defaults");
    let list = r.ok().json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "web"]);
    assert!(r.index() >= modified);
    assert_eq!(a.get("/v1/config/mesh").ok().json(), json!([]));
    let r = a.get("/v1/config/nope");
    r.status(500);
    assert_eq!(r.text(), "invalid config entry kind: nope");

    // Delete: CAS answers a boolean, a plain delete `{}`.
    let r = a.delete(&format!("/v1/config/service-defaults/web?cas={created}"));
    assert!(!r.bool(), "{r:?}");
    entry(a, "service-defaults", "web").ok();
    let r = a.delete(&format!("/v1/config/service-defaults/web?cas={modified}"));
    assert!(r.bool(), "{r:?}");
    entry(a, "service-defaults", "web").status(404);
    let r = a.delete("/v1/config/service-defaults/api");
    assert_eq!(r.ok().json(), json!({}));
    assert_eq!(a.get("/v1/config/service-defaults").ok().json(), json!([]));
    let r = a.delete("/v1/config/service-defaults");
    r.status(404);
    assert_eq!(r.text(), "Must provide both a kind and name to delete");
    let r = a.delete("/v1/config/nope/x");
    r.status(400);
    assert_eq!(r.text(), "invalid config entry kind: nope");
}

fn config_entries_validation(a: &Agent) {
    let cases: [(&str, u16, &str); 10] = [
        (
            r#"{"Name": "x", "Protocol": "tcp"}"#,
            400,
            "Request decoding failed: Payload does not contain a kind/Kind key at the top level",
        ),
        (
            r#"{"Kind": 123, "Name": "x"}"#,
            400,
            "Request decoding failed: Kind value in payload is not a string",
        ),
        (
            r#"{"Kind": "bogus", "Name": "x"}"#,
            400,
            "Request decoding failed: invalid config entry kind: bogus",
        ),
        (r#"{"Kind": "service-defaults"}"#, 500, "Name is required"),
        (
            r#"{"Kind": "proxy-defaults", "Name": "web"}"#,
            500,
            "invalid name (\"web\"), only \"global\" is supported",
        ),
        (
            r#"{"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 90}]}"#,
            500,
            "the sum of all split weights must be 100, not 90.00",
        ),
        (
            r#"{"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "Action": "maybe"}]}"#,
            500,
            "Sources[0].Action must be set to 'allow' or 'deny'",
        ),
        (
            r#"{"Kind": "ingress-gateway", "Name": "ig", "Listeners": [{"Port": 8080, "Protocol": "udp", "Services": [{"Name": "web"}]}]}"#,
            500,
            "protocol must be 'tcp', 'http', 'http2', or 'grpc'. 'udp' is an unsupported protocol",
        ),
        (
            r#"{"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v9", "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}}}"#,
            500,
            "Bad DefaultSubset \"v9\": not a valid subset",
        ),
        (
            r#"{"Kind": "jwt-provider", "Name": "okta"}"#,
            500,
            "JSONWebKeySet is required",
        ),
    ];
    for (body, status, text) in cases {
        let r = a.put("/v1/config", body);
        r.status(status);
        assert_eq!(r.text(), text, "{body}");
    }
    // None of them was written.
    for kind in [
        "service-defaults",
        "proxy-defaults",
        "service-splitter",
        "jwt-provider",
    ] {
        assert_eq!(a.get(&format!("/v1/config/{kind}")).ok().json(), json!([]));
    }
    // Valid entries of the other kinds are accepted.
    for body in [
        json!({"Kind": "mesh", "TransparentProxy": {"MeshDestinationsOnly": true}}),
        json!({"Kind": "service-router", "Name": "web",
               "Routes": [{"Match": {"HTTP": {"PathPrefix": "/admin"}},
                           "Destination": {"Service": "admin"}}]}),
        json!({"Kind": "service-splitter", "Name": "web",
               "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]}),
        json!({"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1",
               "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}}}),
        json!({"Kind": "service-intentions", "Name": "db",
               "Sources": [{"Name": "web", "Action": "allow"}]}),
        json!({"Kind": "terminating-gateway", "Name": "tg", "Services": [{"Name": "legacy"}]}),
        json!({"Kind": "exported-services", "Name": "default",
               "Services": [{"Name": "web", "Consumers": [{"Peer": "other"}]}]}),
        json!({"Kind": "sameness-group", "Name": "sg", "Members": [{"Peer": "other"}]}),
        json!({"Kind": "jwt-provider", "Name": "okta",
               "JSONWebKeySet": {"Remote": {"URI": "https://example.invalid/jwks"}}}),
        json!({"Kind": "control-plane-request-limit", "Name": "global", "Mode": "permissive"}),
        json!({"Kind": "api-gateway", "Name": "apigw",
               "Listeners": [{"Name": "l1", "Port": 9090, "Protocol": "http"}]}),
    ] {
        let r = a.put_json("/v1/config", &body);
        assert!(r.bool(), "{body}: {r:?}");
    }
    assert_eq!(
        entry(a, "mesh", "mesh").ok().json()["TransparentProxy"]["MeshDestinationsOnly"],
        true
    );
}

/// Sum of the parked blocking queries over all shards (the server's own gauge).
fn parked(a: &Agent) -> f64 {
    let m = a.get("/v1/agent/metrics").ok().json();
    m["Gauges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["Name"] == "muster.shard.blocking_waiters")
        .filter_map(|g| g["Value"].as_f64())
        .sum()
}

fn config_entries_block(a: &Agent) {
    let r = a.get("/v1/config/service-defaults");
    let idx = r.ok().index();
    let base = parked(a);
    let c = a.client();
    let waiter = thread::spawn(move || {
        let t = Instant::now();
        let r = c.get(&format!("/v1/config/service-defaults?index={idx}&wait=30s"));
        (r, t.elapsed())
    });
    assert_eventually!(parked(a) > base, WAKE_BOUND, "the list query parks");
    assert!(a
        .put_json(
            "/v1/config",
            &json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"})
        )
        .bool());
    let (r, took) = waiter.join().expect("waiter");
    assert!(took < WAKE_BOUND, "woken by the write: {took:?}");
    assert!(r.ok().index() > idx, "{r:?}");
    assert_eq!(r.json()[0]["Name"], "web");

    // A single entry blocks too, and a delete wakes it.
    let r = entry(a, "service-defaults", "web");
    let idx = r.ok().index();
    let base = parked(a);
    let c = a.client();
    let waiter = thread::spawn(move || {
        c.get(&format!(
            "/v1/config/service-defaults/web?index={idx}&wait=30s"
        ))
    });
    assert_eventually!(parked(a) > base, WAKE_BOUND, "the entry query parks");
    a.delete("/v1/config/service-defaults/web").ok();
    let r = waiter.join().expect("waiter");
    r.status(404);
    assert!(r.index() > idx, "{r:?}");

    // An index that is already passed answers at once.
    let r = a.get("/v1/config/service-defaults?index=1&wait=30s");
    assert!(r.ok().index() > 1);
}

fn config_entries_survive_snapshot_restore(a: &Agent) {
    for (kind, name, extra) in [
        ("service-defaults", "web", json!({"Protocol": "http"})),
        ("service-resolver", "web", json!({"ConnectTimeout": "7s"})),
        (
            "proxy-defaults",
            "global",
            json!({"Config": {"protocol": "grpc"}}),
        ),
    ] {
        let mut body = extra;
        body["Kind"] = json!(kind);
        body["Name"] = json!(name);
        assert!(a.put_json("/v1/config", &body).bool());
    }
    let before = a.get("/v1/config/service-defaults/web").ok().json();
    let snap = a.get("/v1/snapshot");
    let file = snap.ok().body.clone();
    a.delete("/v1/config/service-defaults/web").ok();
    a.delete("/v1/config/service-resolver/web").ok();
    assert!(a
        .put_json(
            "/v1/config",
            &json!({"Kind": "service-defaults", "Name": "later"})
        )
        .bool());
    let idx = a.get("/v1/config/service-defaults").ok().index();

    a.put("/v1/snapshot", &file).ok();
    let after = a.get("/v1/config/service-defaults/web").ok().json();
    assert_eq!(after, before, "the entry comes back as it was");
    assert_eq!(
        a.get("/v1/config/service-resolver/web").ok().json()["ConnectTimeout"],
        "7s"
    );
    a.get("/v1/config/service-defaults/later").status(404);
    let r = a.get("/v1/config/service-defaults");
    assert!(
        r.ok().index() > idx,
        "a restore moves the table index: {r:?}"
    );

    // The CLI's inspect counts them.
    let dir = crate::common::TempDir::new("cfgsnap");
    let path = dir.write("s.snap", "");
    std::fs::write(&path, &file).unwrap();
    let out = a.cli(&["snapshot", "inspect", path.to_str().unwrap()]);
    out.success();
    let count = out.stdout.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("ConfigEntry")).then(|| w.next()?.parse::<u64>().ok())?
    });
    assert_eq!(count, Some(3), "inspect counts config entries: {out:?}");
}

/// Waits until the agent has registered its own node (anti-entropy), so that write does not
/// move the catalog indexes under a blocking query of the test.
fn settle(a: &Agent) {
    let me = a.get("/v1/agent/self").ok().json()["Config"]["NodeName"]
        .as_str()
        .expect("NodeName")
        .to_string();
    assert_eventually!(
        a.get(&format!("/v1/health/node/{me}"))
            .ok()
            .json()
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        WAKE_BOUND,
        "the agent registers its node"
    );
}

fn register(a: &Agent, node: &str, svc: Value) {
    a.put_json(
        "/v1/catalog/register",
        &json!({"Node": node, "Address": "10.0.1.20", "Service": svc,
                "Check": {"CheckID": format!("{}-check", svc["ID"].as_str().unwrap()),
                          "Name": "alive", "Status": "passing",
                          "ServiceID": svc["ID"]}}),
    )
    .ok();
}

fn connect_and_ingress_reads(a: &Agent) {
    settle(a);
    register(
        a,
        "n1",
        json!({"Service": "web", "ID": "web-1", "Port": 80}),
    );
    for path in [
        "/v1/catalog/connect/web",
        "/v1/health/connect/web",
        "/v1/health/ingress/web",
    ] {
        let r = a.get(path);
        assert_eq!(r.ok().json(), json!([]), "{path}");
        r.index();
    }

    // A sidecar proxy appears in both connect reads; blocking on health/connect wakes for it.
    let r = a.get("/v1/health/connect/web");
    let idx = r.index();
    let base = parked(a);
    let c = a.client();
    let waiter =
        thread::spawn(move || c.get(&format!("/v1/health/connect/web?index={idx}&wait=30s")));
    assert_eventually!(parked(a) > base, WAKE_BOUND, "health/connect parks");
    register(
        a,
        "n1",
        json!({"Service": "web-sidecar-proxy", "ID": "web-proxy", "Kind": "connect-proxy",
               "Port": 21000, "Proxy": {"DestinationServiceName": "web"}}),
    );
    let r = waiter.join().expect("waiter");
    assert!(r.ok().index() > idx, "{r:?}");
    let rows = r.json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["Service"]["ID"], "web-proxy");
    assert_eq!(rows[0]["Service"]["Kind"], "connect-proxy");
    assert_eq!(rows[0]["Checks"][0]["CheckID"], "web-proxy-check");
    let rows = a.get("/v1/catalog/connect/web").ok().json();
    assert_eq!(rows[0]["ServiceID"], "web-proxy", "{rows}");
    assert_eq!(rows[0]["ServiceProxy"]["DestinationServiceName"], "web");
    // A connect-native instance counts too; the plain instance never does.
    register(
        a,
        "n2",
        json!({"Service": "web", "ID": "web-native", "Port": 81, "Connect": {"Native": true}}),
    );
    let ids: Vec<String> = a
        .get("/v1/catalog/connect/web")
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ServiceID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["web-proxy", "web-native"]);

    // ?peer= names no known peer: nothing is imported from it.
    assert_eq!(
        a.get("/v1/health/connect/web?peer=other").ok().json(),
        json!([])
    );

    // Ingress: the gateway's instances once its config entry exposes the service.
    register(
        a,
        "n3",
        json!({"Service": "ig", "ID": "ig-1", "Kind": "ingress-gateway", "Port": 8080}),
    );
    assert_eq!(a.get("/v1/health/ingress/web").ok().json(), json!([]));
    assert!(a
        .put_json(
            "/v1/config",
            &json!({"Kind": "ingress-gateway", "Name": "ig",
                    "Listeners": [{"Port": 8080, "Protocol": "http",
                                   "Services": [{"Name": "web"}]}]})
        )
        .bool());
    let rows = a.get("/v1/health/ingress/web").ok().json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["Service"]["ID"], "ig-1");
    assert_eq!(a.get("/v1/health/ingress/other").ok().json(), json!([]));
}

fn gateway_services_and_discovery_chain(a: &Agent) {
    let r = a.get("/v1/catalog/gateway-services/tg");
    assert_eq!(r.ok().json(), json!([]));
    let idx = r.index();
    assert!(a
        .put_json(
            "/v1/config",
            &json!({"Kind": "terminating-gateway", "Name": "tg",
                    "Services": [{"Name": "legacy", "CAFile": "/etc/ca.pem", "SNI": "legacy.local"},
                                 {"Name": "billing"}]})
        )
        .bool());
    let r = a.get("/v1/catalog/gateway-services/tg");
    assert!(r.ok().index() > idx);
    let rows = r.json();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    assert_eq!(rows[0]["Service"]["Name"], "billing");
    assert_eq!(rows[1]["Service"]["Name"], "legacy");
    assert_eq!(rows[1]["Gateway"]["Name"], "tg");
    assert_eq!(rows[1]["GatewayKind"], "terminating-gateway");
    assert_eq!(rows[1]["CAFile"], "/etc/ca.pem");
    assert_eq!(rows[1]["SNI"], "legacy.local");

    // The default chain of a service without config entries.
    let r = a.get("/v1/discovery-chain/web");
    let c = &r.ok().json()["Chain"];
    r.index();
    assert_eq!(c["ServiceName"], "web");
    assert_eq!(c["Datacenter"], "dc1");
    assert_eq!(c["Protocol"], "tcp");
    assert_eq!(c["StartNode"], "resolver:web.default.default.dc1");
    let node = &c["Nodes"]["resolver:web.default.default.dc1"];
    assert_eq!(node["Type"], "resolver");
    assert_eq!(node["Resolver"]["Default"], true);
    assert_eq!(node["Resolver"]["ConnectTimeout"], "5s");
    let t = &c["Targets"]["web.default.default.dc1"];
    assert_eq!(t["Service"], "web");
    assert!(t["SNI"]
        .as_str()
        .is_some_and(|s| s.starts_with("web.default.dc1.internal.") && s.ends_with(".consul")));

    // Config entries shape it: the protocol and the resolver's timeout.
    assert!(a
        .put_json(
            "/v1/config",
            &json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"})
        )
        .bool());
    assert!(a
        .put_json(
            "/v1/config",
            &json!({"Kind": "service-resolver", "Name": "web", "ConnectTimeout": "9s"})
        )
        .bool());
    let c = &a.get("/v1/discovery-chain/web").ok().json()["Chain"];
    assert_eq!(c["Protocol"], "http");
    let node = &c["Nodes"]["resolver:web.default.default.dc1"];
    assert_eq!(node["Resolver"]["ConnectTimeout"], "9s");
    assert_eq!(node["Resolver"]["Default"], false);
}

fn ui_endpoints(a: &Agent) {
    settle(a);
    register(
        a,
        "ui-1",
        json!({"Service": "web", "ID": "web-1", "Port": 80, "Tags": ["a"]}),
    );
    register(
        a,
        "ui-2",
        json!({"Service": "web", "ID": "web-2", "Port": 80, "Tags": ["b"]}),
    );
    let r = a.get("/v1/internal/ui/services");
    let list = r.ok().json();
    let idx = r.index();
    let web = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "web")
        .unwrap_or_else(|| panic!("web in {list}"));
    assert_eq!(web["InstanceCount"], 2);
    assert_eq!(web["Nodes"], json!(["ui-1", "ui-2"]));
    assert_eq!(web["Tags"], json!(["a", "b"]));
    assert_eq!(web["ChecksPassing"], 2);
    assert_eq!(web["Datacenter"], "dc1");

    let nodes = a.get("/v1/internal/ui/nodes").ok().json();
    let n1 = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["Node"] == "ui-1")
        .unwrap_or_else(|| panic!("ui-1 in {nodes}"));
    assert_eq!(n1["Services"][0]["ID"], "web-1");
    assert_eq!(n1["Checks"][0]["CheckID"], "web-1-check");

    let n = a.get("/v1/internal/ui/node/ui-2").ok().json();
    assert_eq!(n["Node"], "ui-2");
    assert_eq!(n["Services"][0]["Service"], "web");
    let r = a.get("/v1/internal/ui/node/missing");
    r.status(404);

    // A check turning critical moves the summary's index and counts.
    a.put_json(
        "/v1/catalog/register",
        &json!({"Node": "ui-2", "Address": "10.0.1.20",
                "Check": {"CheckID": "web-2-check", "Name": "alive", "Status": "critical",
                          "ServiceID": "web-2"}}),
    )
    .ok();
    let r = a.get(&format!("/v1/internal/ui/services?index={idx}&wait=30s"));
    assert!(r.ok().index() > idx);
    let web = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "web")
        .cloned()
        .unwrap();
    assert_eq!(web["ChecksCritical"], 1, "{web}");
    assert_eq!(web["ChecksPassing"], 1, "{web}");
}

fn config_cli(a: &Agent) {
    let dir = crate::common::TempDir::new("cfgcli");
    let hcl = dir.write(
        "web.hcl",
        "Kind = \"service-defaults\"\nName = \"web\"\nProtocol = \"http\"\n",
    );
    let out = a.cli(&["config", "write", hcl.to_str().unwrap()]);
    out.success();
    assert_eq!(
        out.stdout.trim(),
        "Config entry written: service-defaults/web"
    );
    assert_eq!(
        entry(a, "service-defaults", "web").ok().json()["Protocol"],
        "http"
    );

    let json_file = dir.write(
        "api.json",
        r#"{"Kind": "service-defaults", "Name": "api", "Protocol": "grpc"}"#,
    );
    a.cli(&["config", "write", json_file.to_str().unwrap()])
        .success();
    let out = a.cli(&["config", "list", "-kind", "service-defaults"]);
    out.success();
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), ["api", "web"]);

    let out = a.cli(&[
        "config",
        "read",
        "-kind",
        "service-defaults",
        "-name",
        "api",
    ]);
    out.success();
    let v: Value = serde_json::from_str(&out.stdout).expect("read prints JSON");
    assert_eq!(v["Protocol"], "grpc");
    let modified = v["ModifyIndex"].as_u64().unwrap();

    // A stale -cas write changes nothing and fails.
    let out = a.cli(&[
        "config",
        "write",
        "-cas",
        "-modify-index",
        "1",
        json_file.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("Config entry not updated: service-defaults/api"),
        "{out:?}"
    );

    let out = a.cli(&[
        "config",
        "delete",
        "-kind",
        "service-defaults",
        "-name",
        "api",
        "-cas",
        "-modify-index",
        &modified.to_string(),
    ]);
    out.success();
    assert_eq!(
        out.stdout.trim(),
        "Config entry deleted: service-defaults/api"
    );
    entry(a, "service-defaults", "api").status(404);

    let out = a.cli(&["config", "read", "-kind", "service-defaults"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("Must specify the -name parameter"),
        "{out:?}"
    );
    let out = a.cli(&[
        "config",
        "read",
        "-kind",
        "service-defaults",
        "-name",
        "gone",
    ]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("Config entry not found"), "{out:?}");
    let bad = dir.write("bad.json", r#"{"Kind": "proxy-defaults", "Name": "web"}"#);
    let out = a.cli(&["config", "write", bad.to_str().unwrap()]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("only \"global\" is supported"),
        "{out:?}"
    );
}
