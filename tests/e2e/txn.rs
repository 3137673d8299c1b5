//! `/v1/txn`: atomic multi-key KV operations across shards.

use serde_json::{json, Value};

use crate::common::{b64, unb64, Agent};
use crate::kv::u;

per_core!(
    set_many_atomically,
    failing_op_writes_nothing,
    read_and_check_ops,
    too_many_ops,
    malformed_body,
);

fn set_op(key: &str, value: &str) -> Value {
    json!({"KV": {"Verb": "set", "Key": key, "Value": b64(value.as_bytes())}})
}

/// Keys spread enough that with several shards some land on each.
fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}/key-{i}-{}", i * 7919))
        .collect()
}

fn set_many_atomically(a: &Agent) {
    let ks = keys("txset", 8);
    let ops: Vec<Value> = ks.iter().map(|k| set_op(k, &format!("val:{k}"))).collect();
    let r = a.put_json("/v1/txn", &Value::Array(ops));
    let v = r.ok().json();
    assert_eq!(
        v.get("Errors"),
        Some(&Value::Null),
        "Errors is null on success: {r:?}"
    );
    let results = v["Results"]
        .as_array()
        .unwrap_or_else(|| panic!("Results is an array: {r:?}"));
    assert_eq!(results.len(), ks.len(), "{r:?}");
    let index = u(&results[0]["KV"], "ModifyIndex");
    assert!(index > 0, "{r:?}");
    for (res, k) in results.iter().zip(&ks) {
        let e = &res["KV"];
        assert_eq!(e["Key"], k.as_str(), "results are in op order: {r:?}");
        assert!(e["Value"].is_null(), "write results carry no value: {r:?}");
        assert_eq!(e["Flags"], 0, "{r:?}");
        assert_eq!(e["LockIndex"], 0, "{r:?}");
        assert_eq!(
            u(e, "CreateIndex"),
            index,
            "one raft index for the whole txn: {r:?}"
        );
        assert_eq!(
            u(e, "ModifyIndex"),
            index,
            "one raft index for the whole txn: {r:?}"
        );
    }
    for k in &ks {
        let e = a.kv_entry(k).unwrap_or_else(|| panic!("{k} not written"));
        assert_eq!(
            unb64(e["Value"].as_str().expect("Value")),
            format!("val:{k}").as_bytes()
        );
        assert_eq!(u(&e, "ModifyIndex"), index, "{e}");
    }
}

fn failing_op_writes_nothing(a: &Agent) {
    a.kv_put("txfail/existing", "original");
    let idx = u(
        &a.kv_entry("txfail/existing").expect("entry"),
        "ModifyIndex",
    );
    let ks = keys("txfail", 8);
    let mut ops: Vec<Value> = ks.iter().map(|k| set_op(k, "should-not-exist")).collect();
    let bad_at = 5;
    ops.insert(
        bad_at,
        json!({"KV": {"Verb": "cas", "Key": "txfail/existing", "Value": b64(b"new"), "Index": idx + 100}}),
    );
    ops.push(json!({"KV": {"Verb": "delete", "Key": "txfail/existing"}}));
    let r = a.put_json("/v1/txn", &Value::Array(ops));
    r.status(409);
    let v = r.json();
    assert!(
        v["Results"].is_null(),
        "no results on a rolled back txn: {r:?}"
    );
    let errors = v["Errors"]
        .as_array()
        .unwrap_or_else(|| panic!("Errors is an array: {r:?}"));
    assert_eq!(errors.len(), 1, "{r:?}");
    assert_eq!(
        errors[0]["OpIndex"], bad_at,
        "the failing op is named: {r:?}"
    );
    let what = errors[0]["What"]
        .as_str()
        .unwrap_or_else(|| panic!("What: {r:?}"));
    assert!(!what.is_empty(), "{r:?}");

    for k in &ks {
        assert!(a.kv_entry(k).is_none(), "{k} was written by a failed txn");
    }
    let e = a
        .kv_entry("txfail/existing")
        .expect("the delete was rolled back too");
    assert_eq!(unb64(e["Value"].as_str().expect("Value")), b"original");
    assert_eq!(u(&e, "ModifyIndex"), idx, "{e}");
    let r = a.get("/v1/kv/txfail/?keys");
    assert_eq!(r.ok().json(), json!(["txfail/existing"]), "{r:?}");
}

fn read_and_check_ops(a: &Agent) {
    a.kv_put("txread/a", "alpha");
    a.kv_put("txread/gone", "bye");
    let e = a.kv_entry("txread/a").expect("entry");
    let idx = u(&e, "ModifyIndex");

    let ops = json!([
        {"KV": {"Verb": "get", "Key": "txread/a"}},
        {"KV": {"Verb": "check-index", "Key": "txread/a", "Index": idx}},
        {"KV": {"Verb": "delete", "Key": "txread/gone"}},
        {"KV": {"Verb": "check-not-exists", "Key": "txread/never"}},
        {"KV": {"Verb": "cas", "Key": "txread/a", "Value": b64(b"beta"), "Index": idx}},
        {"KV": {"Verb": "get-tree", "Key": "txread/"}},
    ]);
    let r = a.put_json("/v1/txn", &ops);
    let v = r.ok().json();
    assert_eq!(v.get("Errors"), Some(&Value::Null), "{r:?}");
    let results = v["Results"].as_array().unwrap_or_else(|| panic!("{r:?}"));
    // get, check-index and cas give one result each, get-tree one per key; delete and
    // check-not-exists give none.
    assert_eq!(results.len(), 4, "{r:?}");
    assert_eq!(results[0]["KV"]["Key"], "txread/a", "{r:?}");
    assert_eq!(
        unb64(
            results[0]["KV"]["Value"]
                .as_str()
                .expect("get returns the Value")
        ),
        b"alpha",
        "{r:?}"
    );
    assert_eq!(results[1]["KV"]["Key"], "txread/a", "{r:?}");
    assert_eq!(results[2]["KV"]["Key"], "txread/a", "{r:?}");
    assert!(u(&results[2]["KV"], "ModifyIndex") > idx, "{r:?}");
    assert_eq!(results[3]["KV"]["Key"], "txread/a", "{r:?}");
    assert_eq!(
        unb64(
            results[3]["KV"]["Value"]
                .as_str()
                .expect("get-tree returns Values")
        ),
        b"beta",
        "get-tree sees the txn's own earlier write: {r:?}"
    );

    assert!(a.kv_entry("txread/gone").is_none());
    assert_eq!(a.kv_raw("txread/a").as_deref(), Some(&b"beta"[..]));

    // A get of a missing key fails the txn.
    let r = a.put_json(
        "/v1/txn",
        &json!([{"KV": {"Verb": "get", "Key": "txread/never"}}]),
    );
    r.status(409);
    assert_eq!(r.json()["Errors"][0]["OpIndex"], 0, "{r:?}");
}

fn too_many_ops(a: &Agent) {
    let ops: Vec<Value> = keys("txbig", 65).iter().map(|k| set_op(k, "x")).collect();
    let r = a.put_json("/v1/txn", &Value::Array(ops));
    r.status(413);
    a.get("/v1/kv/txbig/?keys").status(404);

    let ops: Vec<Value> = keys("txbig", 64).iter().map(|k| set_op(k, "x")).collect();
    let r = a.put_json("/v1/txn", &Value::Array(ops));
    let v = r.ok().json();
    assert_eq!(
        v["Results"].as_array().map(Vec::len),
        Some(64),
        "64 ops are allowed: {r:?}"
    );
    let r = a.get("/v1/kv/txbig/?keys");
    assert_eq!(r.ok().json().as_array().map(Vec::len), Some(64), "{r:?}");
}

fn malformed_body(a: &Agent) {
    for body in [
        &b"[{\"KV\": {\"Verb\": \"set\", \"Key\": \"x\""[..],
        b"not json at all",
        b"{\"KV\": 3}",
    ] {
        let r = a.put("/v1/txn", body);
        r.status(400);
    }
    a.get("/v1/kv/x").status(404);
}
