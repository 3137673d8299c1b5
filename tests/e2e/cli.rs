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
);

/// A scratch file removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, contents: &[u8]) -> TempFile {
        let p = std::env::temp_dir().join(format!(
            "muster-e2e-{}-{tag}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::write(&p, contents).expect("write temp file");
        TempFile(p)
    }
    fn at(&self) -> String {
        format!("@{}", self.0.display())
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
    ] {
        let out = cli_at(&dead, args, b"");
        assert!(
            matches!(out.code, Some(c) if c != 0),
            "a refused connection fails the command: {out:?}"
        );
        assert!(out.stderr.contains("Error"), "and says why: {out:?}");
    }
}
