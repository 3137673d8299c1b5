//! The command line, run as Consul's is: same subcommands, flags, output and exit codes,
//! talking HTTP to the agent named by `CONSUL_HTTP_ADDR` or `-http-addr`.

use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde_json::Value;

use crate::common::{cli_at, free_ports, unb64, Agent};
use crate::kv::u;

per_core!(
    kv_put_and_get,
    kv_get_missing,
    kv_get_recurse_and_keys,
    kv_flags_and_detailed,
    kv_put_from_stdin,
    kv_put_from_file,
    kv_delete,
    kv_delete_recurse,
    kv_cas,
    kv_export_import,
    http_addr_flag,
    members,
    raft_list_peers,
    leave,
    catalog_datacenters,
    catalog_nodes,
    catalog_services,
    services_register_flags,
    services_register_files,
    services_deregister,
    maint,
);

/// A scratch file removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, contents: &[u8]) -> TempFile {
        TempFile::with_ext(tag, "", contents)
    }
    /// `ext` (e.g. ".json") ends the name: config loaders pick the format by extension.
    fn with_ext(tag: &str, ext: &str, contents: &[u8]) -> TempFile {
        let p = std::env::temp_dir().join(format!(
            "muster-e2e-{}-{tag}-{}{ext}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::write(&p, contents).expect("write temp file");
        TempFile(p)
    }
    fn at(&self) -> String {
        format!("@{}", self.0.display())
    }
    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

fn kv_put_and_get(a: &Agent) {
    let out = a.cli(&["kv", "put", "cli/k", "v"]);
    out.success();
    assert_eq!(out.stdout, "Success! Data written to: cli/k\n", "{out:?}");
    assert_eq!(a.kv_raw("cli/k").as_deref(), Some(&b"v"[..]));

    let out = a.cli(&["kv", "get", "cli/k"]);
    out.success();
    assert_eq!(out.stdout, "v\n", "{out:?}");

    // Values with spaces and a key with unicode go through unharmed.
    a.cli(&["kv", "put", "cli/ünï key", "two words"]).success();
    assert_eq!(a.kv_raw("cli/ünï key").as_deref(), Some(&b"two words"[..]));
    let out = a.cli(&["kv", "get", "cli/ünï key"]);
    assert_eq!(out.success().stdout, "two words\n", "{out:?}");
}

fn kv_get_missing(a: &Agent) {
    let out = a.cli(&["kv", "get", "cli/missing"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("Error! No key exists at: cli/missing"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
}

fn kv_get_recurse_and_keys(a: &Agent) {
    for (k, v) in [("cli/r/b", "2"), ("cli/r/a", "1"), ("cli/r/sub/c", "3")] {
        a.kv_put(k, v);
    }
    let out = a.cli(&["kv", "get", "-recurse", "cli/r/"]);
    assert_eq!(
        out.success().stdout,
        "cli/r/a:1\ncli/r/b:2\ncli/r/sub/c:3\n",
        "{out:?}"
    );
    let out = a.cli(&["kv", "get", "-keys", "cli/r/"]);
    assert_eq!(
        out.success().stdout,
        "cli/r/a\ncli/r/b\ncli/r/sub/\n",
        "-keys lists one level (separator / by default): {out:?}"
    );
}

fn kv_flags_and_detailed(a: &Agent) {
    a.cli(&["kv", "put", "-flags=42", "cli/flags", "v"])
        .success();
    let e = a.kv_entry("cli/flags").expect("entry");
    assert_eq!(e["Flags"], 42, "{e}");

    let out = a.cli(&["kv", "get", "-detailed", "cli/flags"]);
    out.success();
    let want = [
        format!(r"^CreateIndex\s+{}$", u(&e, "CreateIndex")),
        r"^Flags\s+42$".to_string(),
        r"^Key\s+cli/flags$".to_string(),
        r"^LockIndex\s+0$".to_string(),
        format!(r"^ModifyIndex\s+{}$", u(&e, "ModifyIndex")),
        r"^Session\s+-$".to_string(),
        r"^Value\s+v$".to_string(),
    ];
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), want.len(), "{out:?}");
    for (line, re) in lines.iter().zip(&want) {
        assert!(
            Regex::new(re).expect("re").is_match(line),
            "line {line:?} should match {re}: {out:?}"
        );
    }
}

fn kv_put_from_stdin(a: &Agent) {
    let data = b"line one\nline two\n\x01\x02 binary-ish";
    let out = a.cli_stdin(&["kv", "put", "cli/stdin", "-"], data);
    out.success();
    assert_eq!(
        out.stdout, "Success! Data written to: cli/stdin\n",
        "{out:?}"
    );
    assert_eq!(a.kv_raw("cli/stdin").as_deref(), Some(&data[..]));
}

fn kv_put_from_file(a: &Agent) {
    let data = b"{\"from\": \"a file\"}\n";
    let f = TempFile::new("put", data);
    let out = a.cli(&["kv", "put", "cli/file", &f.at()]);
    out.success();
    assert_eq!(
        out.stdout, "Success! Data written to: cli/file\n",
        "{out:?}"
    );
    assert_eq!(a.kv_raw("cli/file").as_deref(), Some(&data[..]));
}

fn kv_delete(a: &Agent) {
    a.kv_put("cli/del", "x");
    let out = a.cli(&["kv", "delete", "cli/del"]);
    out.success();
    assert_eq!(out.stdout, "Success! Deleted key: cli/del\n", "{out:?}");
    assert!(a.kv_entry("cli/del").is_none());
}

fn kv_delete_recurse(a: &Agent) {
    for k in ["cli/tree/a", "cli/tree/b/c", "cli/tree/d"] {
        a.kv_put(k, "x");
    }
    a.kv_put("cli/treehouse", "stays");
    let out = a.cli(&["kv", "delete", "-recurse", "cli/tree/"]);
    out.success();
    assert_eq!(
        out.stdout, "Success! Deleted keys with prefix: cli/tree/\n",
        "{out:?}"
    );
    a.get("/v1/kv/cli/tree/?keys").status(404);
    assert!(a.kv_entry("cli/treehouse").is_some());
}

fn kv_cas(a: &Agent) {
    a.kv_put("cli/cas", "v1");
    let idx = u(&a.kv_entry("cli/cas").expect("entry"), "ModifyIndex");

    let stale = format!("-modify-index={}", idx + 50);
    let out = a.cli(&["kv", "put", "-cas", &stale, "cli/cas", "nope"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("Error! Did not write to cli/cas: CAS failed"),
        "{out:?}"
    );
    assert_eq!(a.kv_raw("cli/cas").as_deref(), Some(&b"v1"[..]));

    let good = format!("-modify-index={idx}");
    let out = a.cli(&["kv", "put", "-cas", &good, "cli/cas", "v2"]);
    out.success();
    assert_eq!(out.stdout, "Success! Data written to: cli/cas\n", "{out:?}");
    assert_eq!(a.kv_raw("cli/cas").as_deref(), Some(&b"v2"[..]));

    // -cas with index 0 is create-only.
    let out = a.cli(&["kv", "put", "-cas", "-modify-index=0", "cli/cas", "v3"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let out = a.cli(&["kv", "put", "-cas", "-modify-index=0", "cli/cas-new", "n"]);
    out.success();
    assert_eq!(a.kv_raw("cli/cas-new").as_deref(), Some(&b"n"[..]));
}

fn kv_export_import(a: &Agent) {
    let entries: [(&str, &[u8], u64); 3] = [
        ("cli/exp/a", b"alpha", 0),
        ("cli/exp/b/c", b"\x00\xffbinary", 7),
        ("cli/exp/d", b"", 0),
    ];
    for (k, v, f) in entries {
        let r = a.put(&format!("/v1/kv/{k}?flags={f}"), v);
        assert!(r.bool(), "{r:?}");
    }
    a.kv_put("cli/expo", "not under the prefix");

    let out = a.cli(&["kv", "export", "cli/exp/"]);
    out.success();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("export prints JSON ({e}): {out:?}"));
    let arr = v.as_array().unwrap_or_else(|| panic!("array: {out:?}"));
    assert_eq!(arr.len(), entries.len(), "{out:?}");
    for (item, (k, val, f)) in arr.iter().zip(entries) {
        assert_eq!(item["key"], k, "{out:?}");
        assert_eq!(item["flags"], f, "{out:?}");
        assert_eq!(
            unb64(item["value"].as_str().expect("value")),
            val,
            "{out:?}"
        );
    }

    // Wipe and restore from the export.
    assert!(a.delete("/v1/kv/cli/exp/?recurse").bool());
    let f = TempFile::new("export", out.stdout.as_bytes());
    let imp = a.cli(&["kv", "import", &f.at()]);
    imp.success();
    for (k, _, _) in entries {
        assert!(imp.stdout.contains(&format!("Imported: {k}")), "{imp:?}");
    }
    for (k, val, fl) in entries {
        let e = a.kv_entry(k).unwrap_or_else(|| panic!("{k} not imported"));
        assert_eq!(e["Flags"], fl, "{e}");
        let got = e["Value"].as_str().map(unb64).unwrap_or_default();
        assert_eq!(got, val, "{e}");
    }

    // Import from stdin too, under a new prefix.
    let renamed = out.stdout.replace("cli/exp/", "cli/imp/");
    let imp = a.cli_stdin(&["kv", "import", "-"], renamed.as_bytes());
    imp.success();
    assert_eq!(a.kv_raw("cli/imp/a").as_deref(), Some(&b"alpha"[..]));
}

fn http_addr_flag(a: &Agent) {
    a.kv_put("cli/flagaddr", "via flag");
    let dead = format!("127.0.0.1:{}", free_ports().http);
    let flag = format!("-http-addr=http://{}", a.addr());
    let out = cli_at(&dead, &["kv", "get", &flag, "cli/flagaddr"], b"");
    out.success();
    assert_eq!(
        out.stdout, "via flag\n",
        "-http-addr wins over CONSUL_HTTP_ADDR: {out:?}"
    );
}

fn members(a: &Agent) {
    let out = a.cli(&["members"]);
    out.success();
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert!(
        header.starts_with(&["Node", "Address", "Status", "Type"]),
        "members header: {out:?}"
    );
    let row: Vec<&str> = lines
        .find(|l| l.split_whitespace().next() == Some(a.node.as_str()))
        .unwrap_or_else(|| panic!("a row for the node: {out:?}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row[1],
        format!("127.0.0.1:{}", a.ports.serf_lan),
        "Address is the serf LAN address: {out:?}"
    );
    assert_eq!(row[2], "alive", "{out:?}");
    assert_eq!(row[3], "server", "{out:?}");
}

fn raft_list_peers(a: &Agent) {
    let out = a.cli(&["operator", "raft", "list-peers"]);
    out.success();
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert!(
        header.starts_with(&["Node", "ID", "Address", "State", "Voter"]),
        "list-peers header: {out:?}"
    );
    let row: Vec<&str> = lines
        .find(|l| l.split_whitespace().next() == Some(a.node.as_str()))
        .unwrap_or_else(|| panic!("a row for the node: {out:?}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[2], format!("127.0.0.1:{}", a.ports.server), "{out:?}");
    assert_eq!(row[3], "leader", "{out:?}");
    assert_eq!(row[4], "true", "{out:?}");
}

fn leave(a: &Agent) {
    let out = a.cli(&["leave"]);
    out.success();
    assert!(out.stdout.contains("Graceful leave complete"), "{out:?}");
    let st = a.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "agent exits 0 after leave: {st}");
}

#[test]
fn version() {
    let out = cli_at("127.0.0.1:1", &["version"], b"");
    out.success();
    assert!(
        Regex::new(r"v\d+\.\d+\.\d+")
            .expect("re")
            .is_match(&out.stdout),
        "version prints a version: {out:?}"
    );
}

#[test]
fn connection_refused() {
    let dead = format!("127.0.0.1:{}", free_ports().http);
    for args in [
        &["kv", "get", "k"][..],
        &["kv", "put", "k", "v"],
        &["members"],
        &["catalog", "nodes"],
        &["catalog", "services"],
        &["catalog", "datacenters"],
        &["services", "register", "-name=x"],
        &["services", "deregister", "-id=x"],
        &["maint"],
    ] {
        let out = cli_at(&dead, args, b"");
        assert!(
            matches!(out.code, Some(c) if c != 0),
            "a refused connection fails the command: {out:?}"
        );
        assert!(out.stderr.contains("Error"), "and says why: {out:?}");
    }
}

/// How long the agent may take to sync a local registration into the catalog.
const SYNC: Duration = Duration::from_secs(10);

fn node_id(a: &Agent) -> String {
    let me = a.get("/v1/agent/self").ok().json();
    me["Config"]["NodeID"]
        .as_str()
        .unwrap_or_else(|| panic!("agent/self has Config.NodeID: {me}"))
        .to_string()
}

fn register_via_api(a: &Agent, body: Value) {
    a.put_json("/v1/agent/service/register", &body).ok();
}

fn in_catalog(a: &Agent, service: &str) -> bool {
    let r = a.get(&format!("/v1/catalog/service/{service}"));
    r.status == 200 && r.json().as_array().is_some_and(|v| !v.is_empty())
}

fn catalog_datacenters(a: &Agent) {
    let out = a.cli(&["catalog", "datacenters"]);
    assert_eq!(out.success().stdout, "dc1\n", "{out:?}");

    let out = a.cli(&["catalog", "datacenters", "extra"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("Too many arguments (expected 0, got 1)"),
        "{out:?}"
    );
}

fn catalog_nodes(a: &Agent) {
    let id = node_id(a);
    let short = id.split('-').next().expect("id").to_string();
    assert_eq!(short.len(), 8, "node IDs are UUIDs: {id}");

    let out = a.cli(&["catalog", "nodes"]);
    out.success();
    let w = a.node.len().max(4);
    let want = format!(
        "{:<w$}  ID        Address    DC\n{:<w$}  {short}  127.0.0.1  dc1\n",
        "Node", a.node
    );
    assert_eq!(out.stdout, want, "{out:?}");

    let out = a.cli(&["catalog", "nodes", "-detailed"]);
    out.success();
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"],
        "{out:?}"
    );
    let row = lines
        .next()
        .unwrap_or_else(|| panic!("a node row: {out:?}"));
    let cols: Vec<&str> = row.split("  ").filter(|c| !c.is_empty()).collect();
    assert_eq!(cols[0].trim(), a.node, "{out:?}");
    assert_eq!(cols[1].trim(), id, "-detailed shows the whole ID: {out:?}");
    assert!(
        row.contains("lan=127.0.0.1") && row.contains(", wan=127.0.0.1"),
        "tagged addresses as sorted k=v joined by \", \": {out:?}"
    );

    // Metadata filter: no node matches -> message on stderr, still exit 0.
    let out = a.cli(&["catalog", "nodes", "-node-meta", "nope=nothing"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr
            .contains("No nodes match the given query - try expanding your search."),
        "{out:?}"
    );
    let out = a.cli(&["catalog", "nodes", "-node-meta", "missing-equals"]);
    assert_eq!(
        out.code,
        Some(1),
        "a malformed -node-meta is a usage error: {out:?}"
    );

    // -service: only nodes providing it.
    register_via_api(a, serde_json::json!({"Name": "cat-web", "Port": 80}));
    assert_eventually!(in_catalog(a, "cat-web"), SYNC, "cat-web synced");
    let out = a.cli(&["catalog", "nodes", "-service=cat-web"]);
    assert_eq!(out.success().stdout, want, "{out:?}");
    let out = a.cli(&["catalog", "nodes", "-service", "no-such-service"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("No nodes match"), "{out:?}");

    // -filter goes to the agent; a bad expression fails the command.
    let f = format!("-filter=Node == \"{}\"", a.node);
    let out = a.cli(&["catalog", "nodes", &f]);
    assert_eq!(out.success().stdout, want, "{out:?}");
    let out = a.cli(&["catalog", "nodes", "-filter", "Node ==="]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("Error listing nodes"), "{out:?}");
}

fn catalog_services(a: &Agent) {
    register_via_api(
        a,
        serde_json::json!({"Name": "svc-redis", "ID": "redis-1", "Tags": ["v1", "primary"]}),
    );
    register_via_api(
        a,
        serde_json::json!({"Name": "svc-redis", "ID": "redis-2", "Tags": ["replica"]}),
    );
    register_via_api(a, serde_json::json!({"Name": "svc-a"}));
    assert_eventually!(
        in_catalog(a, "svc-redis") && in_catalog(a, "svc-a"),
        SYNC,
        "services synced"
    );

    // Whatever else the catalog holds, the CLI prints exactly its names, sorted.
    let all = a.get("/v1/catalog/services").ok().json();
    let all = all.as_object().expect("object").clone();
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    let out = a.cli(&["catalog", "services"]);
    out.success();
    let want: String = names.iter().map(|n| format!("{n}\n")).collect();
    assert_eq!(out.stdout, want, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let pos = |n: &str| lines.iter().position(|l| *l == n);
    assert!(
        pos("svc-a").is_some() && pos("svc-a") < pos("svc-redis"),
        "{out:?}"
    );

    // -tags: tags sorted and comma-joined, the name column padded to its widest + 6.
    let out = a.cli(&["catalog", "services", "-tags"]);
    out.success();
    let width = names.iter().map(|n| n.len()).max().expect("names") + 6;
    let rows: Vec<String> = names
        .iter()
        .map(|n| {
            let mut tags: Vec<&str> = all[n.as_str()]
                .as_array()
                .map(|t| t.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            tags.sort();
            format!("{n:<width$}{}", tags.join(","))
        })
        .collect();
    let want = format!("{}\n", rows.join("\n").trim());
    assert_eq!(out.stdout, want, "{out:?}");
    assert!(
        out.stdout.lines().any(
            |l| l.split_whitespace().collect::<Vec<_>>() == ["svc-redis", "primary,replica,v1"]
        ),
        "{out:?}"
    );

    // -node: that node's services.
    let out = a.cli(&["catalog", "services", "-node", &a.node]);
    out.success();
    assert!(
        out.stdout.lines().any(|l| l == "svc-redis") && out.stdout.lines().any(|l| l == "svc-a"),
        "{out:?}"
    );
    let out = a.cli(&["catalog", "services", "-node", "no-such-node"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr
            .contains("No services match the given query - try expanding your search."),
        "{out:?}"
    );

    let out = a.cli(&["catalog", "services", "stray"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("Too many arguments"), "{out:?}");
}

fn services_register_flags(a: &Agent) {
    let out = a.cli(&[
        "services",
        "register",
        "-name=flagged",
        "-id",
        "flagged-1",
        "-address=10.1.2.3",
        "-port",
        "8080",
        "-tag=v1",
        "-tag",
        "v2",
        "-meta",
        "team=core",
        "-tagged-address",
        "lan=10.1.2.3:8080",
    ]);
    assert_eq!(
        out.success().stdout,
        "Registered service: flagged\n",
        "{out:?}"
    );
    let s = a.get("/v1/agent/service/flagged-1").ok().json();
    assert_eq!(s["Service"], "flagged", "{s}");
    assert_eq!(s["Address"], "10.1.2.3", "{s}");
    assert_eq!(s["Port"], 8080, "{s}");
    assert_eq!(s["Tags"], serde_json::json!(["v1", "v2"]), "{s}");
    assert_eq!(s["Meta"]["team"], "core", "{s}");
    assert_eq!(s["TaggedAddresses"]["lan"]["Port"], 8080, "{s}");

    // Without -id the name is the ID.
    a.cli(&["services", "register", "-name", "plain"]).success();
    a.get("/v1/agent/service/plain").ok();

    let out = a.cli(&["services", "register"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("Service registration requires at least one argument or flags."),
        "{out:?}"
    );
    let out = a.cli(&["services", "register", "-name=x", "some.json"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("not both"), "{out:?}");
    let out = a.cli(&[
        "services",
        "register",
        "-name=x",
        "-tagged-address",
        "lan=noport",
    ]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("Invalid Tagged Address"), "{out:?}");
    a.get("/v1/agent/service/x").status(404);
}

fn services_register_files(a: &Agent) {
    let json = TempFile::with_ext(
        "svc",
        ".json",
        br#"{"Service": {"Name": "file-web", "Port": 80, "Tags": ["a"]}}"#,
    );
    let hcl = TempFile::with_ext(
        "svc",
        ".hcl",
        br#"
service {
  name = "file-db"
  id   = "file-db-1"
  port = 5432
  check {
    ttl = "30s"
  }
}
services = [{ name = "file-cache" }]
"#,
    );
    let out = a.cli(&["services", "register", &json.path(), &hcl.path()]);
    assert_eq!(
        out.success().stdout,
        "Registered service: file-web\nRegistered service: file-db\nRegistered service: file-cache\n",
        "{out:?}"
    );
    let s = a.get("/v1/agent/service/file-web").ok().json();
    assert_eq!(s["Port"], 80, "{s}");
    let s = a.get("/v1/agent/service/file-db-1").ok().json();
    assert_eq!(s["Service"], "file-db", "{s}");
    assert_eq!(s["Port"], 5432, "{s}");
    a.get("/v1/agent/service/file-cache").ok();
    let checks = a.get("/v1/agent/checks").ok().json();
    assert_eq!(
        checks["service:file-db-1"]["Type"], "ttl",
        "the file's check came along: {checks}"
    );

    // Flags complete file definitions: -id and extra tags, but the file's port stays.
    let out = a.cli(&[
        "services",
        "register",
        "-id=file-web-2",
        "-port=81",
        "-tag=b",
        &json.path(),
    ]);
    assert_eq!(
        out.success().stdout,
        "Registered service: file-web\n",
        "{out:?}"
    );
    let s = a.get("/v1/agent/service/file-web-2").ok().json();
    assert_eq!(s["Port"], 80, "{s}");
    assert_eq!(s["Tags"], serde_json::json!(["a", "b"]), "{s}");

    // A broken file registers nothing.
    let bad = TempFile::with_ext("svc", ".json", b"{\"service\": {\"name\": ");
    let out = a.cli(&["services", "register", &bad.path()]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with("Error: "), "{out:?}");
    let missing = format!("{}-missing.json", json.path());
    let out = a.cli(&["services", "register", &missing]);
    assert_eq!(out.code, Some(1), "{out:?}");

    // The agent's refusal is reported with the service's name.
    let nameless = TempFile::with_ext("svc", ".json", br#"{"service": {"port": 1}}"#);
    let out = a.cli(&["services", "register", &nameless.path()]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("Error registering service \"\"")
            && out.stderr.contains("Missing service name"),
        "{out:?}"
    );
}

fn services_deregister(a: &Agent) {
    register_via_api(a, serde_json::json!({"Name": "gone", "ID": "gone-1"}));
    let out = a.cli(&["services", "deregister", "-id", "gone-1"]);
    assert_eq!(
        out.success().stdout,
        "Deregistered service: gone-1\n",
        "{out:?}"
    );
    a.get("/v1/agent/service/gone-1").status(404);

    // From files: the ID, or the name when the definition has no ID.
    register_via_api(a, serde_json::json!({"Name": "fweb"}));
    register_via_api(a, serde_json::json!({"Name": "fdb", "ID": "fdb-1"}));
    let f = TempFile::with_ext(
        "dereg",
        ".hcl",
        b"service {\n  name = \"fweb\"\n}\nservice {\n  name = \"fdb\"\n  id = \"fdb-1\"\n}\n",
    );
    let out = a.cli(&["services", "deregister", &f.path()]);
    assert_eq!(
        out.success().stdout,
        "Deregistered service: fweb\nDeregistered service: fdb-1\n",
        "{out:?}"
    );
    a.get("/v1/agent/service/fweb").status(404);
    a.get("/v1/agent/service/fdb-1").status(404);

    let out = a.cli(&["services", "deregister", "-id", "never-was"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("never-was"), "{out:?}");
    let out = a.cli(&["services", "deregister"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("Service deregistration requires at least one argument or -id."),
        "{out:?}"
    );
    let out = a.cli(&["services", "deregister", "-id=x", &f.path()]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("Service deregistration requires arguments or -id, not both."),
        "{out:?}"
    );
}

fn maint(a: &Agent) {
    register_via_api(a, serde_json::json!({"Name": "mweb", "ID": "mweb-1"}));

    let out = a.cli(&["maint"]);
    out.success();
    assert_eq!(
        out.stdout, "",
        "nothing in maintenance prints nothing: {out:?}"
    );

    let out = a.cli(&["maint", "-enable", "-reason", "kernel upgrade"]);
    assert_eq!(
        out.success().stdout,
        "Node maintenance is now enabled\n",
        "{out:?}"
    );
    let out = a.cli(&["maint", "-enable", "-service=mweb-1"]);
    assert_eq!(
        out.success().stdout,
        "Service maintenance is now enabled for \"mweb-1\"\n",
        "{out:?}"
    );
    let checks = a.get("/v1/agent/checks").ok().json();
    assert_eq!(
        checks["_node_maintenance"]["Notes"], "kernel upgrade",
        "{checks}"
    );
    assert_eq!(
        checks["_node_maintenance"]["Status"], "critical",
        "{checks}"
    );
    let service_reason = checks["_service_maintenance:mweb-1"]["Notes"]
        .as_str()
        .unwrap_or_else(|| panic!("service maintenance check: {checks}"))
        .to_string();

    let out = a.cli(&["maint"]);
    out.success();
    assert_eq!(
        out.stdout,
        format!(
            "Node:\n  Name:   {}\n  Reason: kernel upgrade\n\nService:\n  ID:     mweb-1\n  Reason: {service_reason}\n\n",
            a.node
        ),
        "{out:?}"
    );

    let out = a.cli(&["maint", "-disable", "-service", "mweb-1"]);
    assert_eq!(
        out.success().stdout,
        "Service maintenance is now disabled for \"mweb-1\"\n",
        "{out:?}"
    );
    let out = a.cli(&["maint", "-disable"]);
    assert_eq!(
        out.success().stdout,
        "Node maintenance is now disabled\n",
        "{out:?}"
    );
    let checks = a.get("/v1/agent/checks").ok().json();
    assert!(
        checks.get("_node_maintenance").is_none()
            && checks.get("_service_maintenance:mweb-1").is_none(),
        "{checks}"
    );
    assert_eq!(a.cli(&["maint"]).success().stdout, "");

    let out = a.cli(&["maint", "-enable", "-service", "no-such-id"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("Error enabling service maintenance"),
        "{out:?}"
    );
    for (args, msg) in [
        (
            &["maint", "-enable", "-disable"][..],
            "Only one of -enable or -disable may be provided",
        ),
        (
            &["maint", "-disable", "-reason=x"],
            "Reason may only be provided with -enable",
        ),
        (
            &["maint", "-service=mweb-1"],
            "Service requires either -enable or -disable",
        ),
    ] {
        let out = a.cli(args);
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(out.stderr.contains(msg), "{out:?}");
    }
}
