//! `/v1/kv`: reads, writes, deletes, listings, flags, check-and-set, indexes.

use std::sync::Barrier;

use serde_json::Value;

use crate::common::{enc, unb64, Agent};

per_core!(
    put_get_delete,
    indexes,
    raw,
    binary_value,
    empty_value,
    unicode_and_space_keys,
    recurse_in_key_order,
    keys_listing,
    flags,
    cas_create_only,
    cas_modify_index,
    delete_recurse,
    delete_cas,
    cas_race,
    consistency_modes,
);

/// The `Session` field of an entry: Consul omits it when no session holds the key.
pub fn session_of(e: &Value) -> Option<&str> {
    match e.get("Session") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => panic!("Session is not a string: {other} in {e}"),
    }
}

pub fn u(e: &Value, field: &str) -> u64 {
    e[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not an unsigned integer in {e}"))
}

fn put_get_delete(a: &Agent) {
    let r = a.put("/v1/kv/basic/greeting", "hello");
    assert!(r.bool(), "{r:?}");

    let r = a.get("/v1/kv/basic/greeting");
    let v = r.ok().json();
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), 1, "{r:?}");
    let e = &arr[0];
    assert_eq!(e["Key"], "basic/greeting", "{r:?}");
    assert_eq!(e["Flags"], 0, "{r:?}");
    assert_eq!(e["LockIndex"], 0, "{r:?}");
    assert_eq!(
        unb64(e["Value"].as_str().expect("Value")),
        b"hello",
        "{r:?}"
    );
    assert_eq!(session_of(e), None, "{r:?}");
    assert!(
        r.header("Content-Type")
            .is_some_and(|c| c.starts_with("application/json")),
        "JSON replies say so: {r:?}"
    );

    // Overwrite.
    a.kv_put("basic/greeting", "bonjour");
    assert_eq!(a.kv_raw("basic/greeting").as_deref(), Some(&b"bonjour"[..]));

    let r = a.delete("/v1/kv/basic/greeting");
    assert!(r.bool(), "{r:?}");
    let r = a.get("/v1/kv/basic/greeting");
    r.status(404);
    assert!(r.index() > 0, "404 still carries an index: {r:?}");

    // Deleting what is not there is not an error.
    let r = a.delete("/v1/kv/basic/never-was");
    assert!(r.bool(), "{r:?}");

    let r = a.get("/v1/kv/basic/never-was");
    r.status(404);
    assert!(r.body.is_empty(), "404 for a key has an empty body: {r:?}");
}

fn indexes(a: &Agent) {
    a.kv_put("idx/k", "1");
    let r = a.get("/v1/kv/idx/k");
    let e = r.ok().json()[0].clone();
    let create = u(&e, "CreateIndex");
    let modify = u(&e, "ModifyIndex");
    assert!(create > 0, "{r:?}");
    assert_eq!(
        create, modify,
        "a new key is created and modified at one index: {r:?}"
    );
    assert!(r.index() > 0, "{r:?}");
    assert_eq!(
        r.index(),
        modify,
        "a single-key read reports the key's ModifyIndex as X-Consul-Index: {r:?}"
    );

    a.kv_put("idx/k", "2");
    let r = a.get("/v1/kv/idx/k");
    let e2 = r.ok().json()[0].clone();
    assert_eq!(
        u(&e2, "CreateIndex"),
        create,
        "CreateIndex never changes: {r:?}"
    );
    assert!(u(&e2, "ModifyIndex") > modify, "ModifyIndex grows: {r:?}");
    assert_eq!(u(&e2, "LockIndex"), 0, "{r:?}");
    assert_eq!(r.index(), u(&e2, "ModifyIndex"), "{r:?}");

    // A write elsewhere moves the raft index forward; a later new key gets a higher index.
    a.kv_put("idx/other", "x");
    let o = a.kv_entry("idx/other").expect("idx/other");
    assert!(u(&o, "CreateIndex") > u(&e2, "ModifyIndex"), "{o} vs {e2}");

    // A recursive read reports an index at least as high as every entry in it.
    let r = a.get("/v1/kv/idx/?recurse");
    let items = r.ok().json();
    let max = items
        .as_array()
        .expect("array")
        .iter()
        .map(|e| u(e, "ModifyIndex"))
        .max()
        .expect("non-empty");
    assert!(r.index() >= max, "{r:?}");
}

fn raw(a: &Agent) {
    a.kv_put("raw/k", "just the bytes");
    let r = a.get("/v1/kv/raw/k?raw");
    r.ok();
    assert_eq!(r.body, b"just the bytes", "{r:?}");
    assert!(r.index() > 0, "{r:?}");
    a.get("/v1/kv/raw/missing?raw").status(404);
}

fn binary_value(a: &Agent) {
    let value: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    a.kv_put("bin/all-bytes", &value);
    assert_eq!(
        a.kv_raw("bin/all-bytes").as_deref(),
        Some(&value[..]),
        "raw"
    );
    let e = a.kv_entry("bin/all-bytes").expect("entry");
    assert_eq!(
        unb64(e["Value"].as_str().expect("Value")),
        value,
        "base64 round trip"
    );
}

fn empty_value(a: &Agent) {
    let r = a.put_empty("/v1/kv/empty/k");
    assert!(r.bool(), "{r:?}");
    let e = a.kv_entry("empty/k").expect("entry");
    assert!(
        e["Value"].is_null(),
        "an empty value reads back as null: {e}"
    );
    assert_eq!(a.kv_raw("empty/k").as_deref(), Some(&b""[..]));
}

fn unicode_and_space_keys(a: &Agent) {
    let keys = [
        "uni/with space",
        "uni/ünïcödé/ключ",
        "uni/键 值?&=#%+",
        "uni/emoji 🦀",
    ];
    for (i, k) in keys.iter().enumerate() {
        a.kv_put(k, format!("v{i}"));
    }
    for (i, k) in keys.iter().enumerate() {
        let e = a
            .kv_entry(k)
            .unwrap_or_else(|| panic!("key {k:?} not found after PUT"));
        assert_eq!(e["Key"], *k, "key comes back decoded");
        assert_eq!(
            unb64(e["Value"].as_str().expect("Value")),
            format!("v{i}").as_bytes()
        );
    }
    let r = a.get("/v1/kv/uni/?keys");
    let mut want: Vec<&str> = keys.to_vec();
    want.sort();
    assert_eq!(r.ok().json(), serde_json::json!(want), "{r:?}");
    let r = a.delete(&format!("/v1/kv/{}", enc(keys[1])));
    assert!(r.bool(), "{r:?}");
    assert!(a.kv_entry(keys[1]).is_none());
}

fn recurse_in_key_order(a: &Agent) {
    // Written out of order, and many of them, so that with two cores they land on both shards.
    let mut keys: Vec<String> = vec![
        "rec/b".into(),
        "rec/a/x".into(),
        "rec/c".into(),
        "rec/a".into(),
        "rec/ab".into(),
        "rec/".into(),
    ];
    for i in (0..20).rev() {
        keys.push(format!("rec/n/{i:02}"));
    }
    for k in &keys {
        a.kv_put(k, k.as_bytes());
    }
    a.kv_put("rec", "not under rec/");
    a.kv_put("recz", "not under rec/");

    let r = a.get("/v1/kv/rec/?recurse");
    let v = r.ok().json();
    let got: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["Key"].as_str().expect("Key"))
        .collect();
    let mut want: Vec<&str> = keys.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(
        got, want,
        "recurse returns every key under the prefix, sorted: {r:?}"
    );
    for e in v.as_array().expect("array") {
        let k = e["Key"].as_str().expect("Key");
        assert_eq!(unb64(e["Value"].as_str().expect("Value")), k.as_bytes());
    }
    assert!(r.index() > 0, "{r:?}");

    // Recurse with an empty prefix lists everything.
    let r = a.get("/v1/kv/?recurse");
    let n = r.ok().json().as_array().expect("array").len();
    assert_eq!(n, keys.len() + 2, "{r:?}");

    let r = a.get("/v1/kv/nothing-here/?recurse");
    r.status(404);
    assert!(r.index() > 0, "{r:?}");
}

fn keys_listing(a: &Agent) {
    for k in ["ks/h", "ks/b/d", "ks/a", "ks/e/f/g", "ks/b/c", "ks/b/"] {
        a.kv_put(k, "x");
    }
    a.kv_put("ksx", "outside");

    let r = a.get("/v1/kv/ks/?keys");
    assert_eq!(
        r.ok().json(),
        serde_json::json!(["ks/a", "ks/b/", "ks/b/c", "ks/b/d", "ks/e/f/g", "ks/h"]),
        "{r:?}"
    );
    assert!(r.index() > 0, "{r:?}");

    let r = a.get("/v1/kv/ks/?keys&separator=/");
    assert_eq!(
        r.ok().json(),
        serde_json::json!(["ks/a", "ks/b/", "ks/e/", "ks/h"]),
        "keys are cut after the first separator past the prefix and deduplicated: {r:?}"
    );

    let r = a.get("/v1/kv/ks/b/?keys&separator=/");
    assert_eq!(
        r.ok().json(),
        serde_json::json!(["ks/b/", "ks/b/c", "ks/b/d"]),
        "{r:?}"
    );

    // A prefix without the trailing slash matches by string prefix.
    let r = a.get("/v1/kv/ks?keys&separator=/");
    assert_eq!(r.ok().json(), serde_json::json!(["ks/", "ksx"]), "{r:?}");

    a.get("/v1/kv/nope/?keys").status(404);
}

fn flags(a: &Agent) {
    let r = a.put("/v1/kv/flags/k?flags=42", "v");
    assert!(r.bool(), "{r:?}");
    let e = a.kv_entry("flags/k").expect("entry");
    assert_eq!(e["Flags"], 42, "{e}");

    // Flags are replaced, not kept, by a later PUT without ?flags.
    let r = a.put("/v1/kv/flags/k?flags=18446744073709551615", "v");
    assert!(r.bool(), "{r:?}");
    let e = a.kv_entry("flags/k").expect("entry");
    assert_eq!(
        e["Flags"].as_u64(),
        Some(u64::MAX),
        "flags are a uint64: {e}"
    );
    a.kv_put("flags/k", "v2");
    let e = a.kv_entry("flags/k").expect("entry");
    assert_eq!(e["Flags"], 0, "{e}");
}

fn cas_create_only(a: &Agent) {
    let r = a.put("/v1/kv/cas0/k?cas=0", "first");
    assert!(r.bool(), "cas=0 creates a missing key: {r:?}");
    let r = a.put("/v1/kv/cas0/k?cas=0", "second");
    assert!(!r.bool(), "cas=0 refuses an existing key: {r:?}");
    assert_eq!(a.kv_raw("cas0/k").as_deref(), Some(&b"first"[..]));
}

fn cas_modify_index(a: &Agent) {
    a.kv_put("cas/k", "v1");
    let idx = u(&a.kv_entry("cas/k").expect("entry"), "ModifyIndex");

    let r = a.put(&format!("/v1/kv/cas/k?cas={}", idx + 1000), "wrong");
    assert!(!r.bool(), "stale cas fails: {r:?}");
    let r = a.put(
        &format!("/v1/kv/cas/k?cas={}", idx.saturating_sub(1)),
        "wrong",
    );
    assert!(!r.bool(), "stale cas fails: {r:?}");
    assert_eq!(a.kv_raw("cas/k").as_deref(), Some(&b"v1"[..]));

    let r = a.put(&format!("/v1/kv/cas/k?cas={idx}"), "v2");
    assert!(r.bool(), "matching cas succeeds: {r:?}");
    let e = a.kv_entry("cas/k").expect("entry");
    assert_eq!(unb64(e["Value"].as_str().expect("Value")), b"v2");
    assert!(u(&e, "ModifyIndex") > idx, "{e}");

    // The old index is now stale.
    let r = a.put(&format!("/v1/kv/cas/k?cas={idx}"), "v3");
    assert!(!r.bool(), "{r:?}");

    // cas on a missing key with a non-zero index fails.
    let r = a.put(&format!("/v1/kv/cas/missing?cas={idx}"), "x");
    assert!(!r.bool(), "{r:?}");
    assert!(a.kv_entry("cas/missing").is_none());
}

fn delete_recurse(a: &Agent) {
    let keys = ["del/x/1", "del/x/2", "del/x/deep/3", "del/x/"];
    for k in keys {
        a.kv_put(k, "v");
    }
    for i in 0..16 {
        a.kv_put(&format!("del/x/many/{i}"), "v");
    }
    a.kv_put("del/xy", "sibling");
    a.kv_put("del/y/1", "other");

    let r = a.delete("/v1/kv/del/x/?recurse");
    assert!(r.bool(), "{r:?}");
    a.get("/v1/kv/del/x/?recurse").status(404);
    for k in keys {
        assert!(a.kv_entry(k).is_none(), "{k} survived a recursive delete");
    }
    assert_eq!(a.kv_raw("del/xy").as_deref(), Some(&b"sibling"[..]));
    assert_eq!(a.kv_raw("del/y/1").as_deref(), Some(&b"other"[..]));
}

fn delete_cas(a: &Agent) {
    a.kv_put("delcas/k", "v");
    let idx = u(&a.kv_entry("delcas/k").expect("entry"), "ModifyIndex");
    let r = a.delete(&format!("/v1/kv/delcas/k?cas={}", idx + 1));
    assert!(!r.bool(), "stale delete-cas fails: {r:?}");
    assert!(
        a.kv_entry("delcas/k").is_some(),
        "key survives a failed delete-cas"
    );
    let r = a.delete(&format!("/v1/kv/delcas/k?cas={idx}"));
    assert!(r.bool(), "{r:?}");
    assert!(a.kv_entry("delcas/k").is_none());
}

fn cas_race(a: &Agent) {
    const N: usize = 8;
    a.kv_put("race/k", "start");
    let idx = u(&a.kv_entry("race/k").expect("entry"), "ModifyIndex");
    let barrier = Barrier::new(N);
    let results: Vec<(usize, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let c = a.client();
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let r = c.put(&format!("/v1/kv/race/k?cas={idx}"), format!("writer-{i}"));
                    (i, r.bool())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    });
    let winners: Vec<usize> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
    assert_eq!(winners.len(), 1, "exactly one cas wins: {results:?}");
    let value = a.kv_raw("race/k").expect("value");
    assert_eq!(value, format!("writer-{}", winners[0]).as_bytes());
}

fn consistency_modes(a: &Agent) {
    a.kv_put("modes/k", "v");
    for q in ["", "?consistent", "?stale"] {
        let r = a.get(&format!("/v1/kv/modes/k{q}"));
        r.ok();
        assert_eq!(
            unb64(r.json()[0]["Value"].as_str().expect("Value")),
            b"v",
            "{r:?}"
        );
        assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"), "{r:?}");
        assert!(
            r.header("X-Consul-LastContact")
                .is_some_and(|v| v.parse::<u64>().is_ok()),
            "{r:?}"
        );
    }
    let r = a.get("/v1/kv/modes/k?stale&consistent");
    r.status(400);
}
