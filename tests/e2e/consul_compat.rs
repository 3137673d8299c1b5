//! Where real Consul clients look: Consul's errors for unknown paths and wrong methods, the
//! agent and operator endpoints tools call (monitor, host, version, token, usage, raft peer and
//! leadership, keyring, snapshot headers), config entries (`/v1/config`, stored through raft,
//! CAS, validation, blocking, kept by snapshots), the service-mesh reads answered as Consul
//! answers them without a mesh, and the web UI's summaries.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::Agent;

per_core!(
    errors_like_consul,
    legacy_acl_endpoints_are_gone,
    agent_monitor_streams_logs,
    agent_host_version_token,
    operator_endpoints,
    snapshot_headers,
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
