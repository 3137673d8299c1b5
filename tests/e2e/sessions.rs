//! `/v1/session/*` and KV locks (`?acquire`, `?release`), lock behaviours and lock delay.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{unb64, Agent};
use crate::kv::{session_of, u};

per_core!(
    create_defaults,
    create_with_options,
    list_and_node,
    renew,
    destroy,
    ttl_and_behavior_validation,
    lock_contention,
    acquire_unknown_session,
    behavior_delete,
    behavior_release,
    lock_delay,
    lock_delay_zero,
);

/// The one session `info` knows under `id`, or None when it answers `[]`.
fn info(a: &Agent, id: &str) -> Option<Value> {
    let r = a.get(&format!("/v1/session/info/{id}"));
    let v = r.ok().json();
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("info answers a JSON array (empty if unknown): {r:?}"));
    assert!(arr.len() <= 1, "{r:?}");
    arr.first().cloned()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array: {v}"))
        .iter()
        .map(|s| s["ID"].as_str().expect("ID").to_string())
        .collect()
}

fn create_defaults(a: &Agent) {
    let r = a.put_empty("/v1/session/create");
    let id = r.ok().json()["ID"]
        .as_str()
        .unwrap_or_else(|| panic!("no ID: {r:?}"))
        .to_string();
    assert_eq!(id.len(), 36, "IDs are UUIDs: {id}");
    assert_eq!(id.matches('-').count(), 4, "IDs are UUIDs: {id}");

    let r = a.get(&format!("/v1/session/info/{id}"));
    let s = r.ok().json()[0].clone();
    assert!(r.index() > 0, "{r:?}");
    assert_eq!(s["ID"], id.as_str(), "{r:?}");
    assert_eq!(
        s["Node"],
        a.node.as_str(),
        "sessions default to the agent's node: {r:?}"
    );
    assert_eq!(
        s["LockDelay"].as_u64(),
        Some(15_000_000_000),
        "LockDelay is 15 s in ns: {r:?}"
    );
    assert_eq!(s["Behavior"], "release", "{r:?}");
    assert_eq!(s["NodeChecks"], json!(["serfHealth"]), "{r:?}");
    assert_eq!(s["TTL"], "", "no TTL by default: {r:?}");
    assert_eq!(s["Name"], "", "{r:?}");
    assert!(u(&s, "CreateIndex") > 0, "{r:?}");
    assert_eq!(s["CreateIndex"], s["ModifyIndex"], "{r:?}");

    // An explicit empty JSON object means the same defaults.
    let id2 = a.session_create(&json!({}));
    let s2 = info(a, &id2).expect("session");
    assert_eq!(s2["Behavior"], "release");
    assert_eq!(s2["LockDelay"].as_u64(), Some(15_000_000_000));
    assert_ne!(id, id2);
}

fn create_with_options(a: &Agent) {
    let id = a.session_create(&json!({
        "Name": "my-service-lock",
        "TTL": "30s",
        "Behavior": "delete",
        "LockDelay": "5s",
    }));
    let s = info(a, &id).expect("session");
    assert_eq!(s["Name"], "my-service-lock", "{s}");
    assert_eq!(
        go_ns(s["TTL"].as_str().expect("TTL")),
        30_000_000_000,
        "{s}"
    );
    assert_eq!(s["Behavior"], "delete", "{s}");
    assert_eq!(s["LockDelay"].as_u64(), Some(5_000_000_000), "{s}");
}

fn list_and_node(a: &Agent) {
    let s1 = a.session_create(&json!({"Name": "one"}));
    let s2 = a.session_create(&json!({"Name": "two"}));
    let r = a.get("/v1/session/list");
    let mut got = ids(&r.ok().json());
    got.sort();
    let mut want = vec![s1.clone(), s2.clone()];
    want.sort();
    assert_eq!(got, want, "{r:?}");
    assert!(r.index() > 0, "{r:?}");

    let r = a.get(&format!("/v1/session/node/{}", a.node));
    let mut got = ids(&r.ok().json());
    got.sort();
    assert_eq!(got, want, "{r:?}");
    assert!(r.index() > 0, "{r:?}");

    let r = a.get("/v1/session/node/no-such-node");
    assert_eq!(r.ok().json(), json!([]), "{r:?}");

    let r = a.get("/v1/session/info/00000000-0000-0000-0000-000000000000");
    assert_eq!(
        r.ok().json(),
        json!([]),
        "unknown session: empty list, not 404: {r:?}"
    );
}

fn renew(a: &Agent) {
    let id = a.session_create(&json!({"TTL": "30s"}));
    let r = a.put_empty(&format!("/v1/session/renew/{id}"));
    let v = r.ok().json();
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("renew answers an array: {r:?}"));
    assert_eq!(arr.len(), 1, "{r:?}");
    assert_eq!(arr[0]["ID"], id.as_str(), "{r:?}");
    assert_eq!(
        go_ns(arr[0]["TTL"].as_str().expect("TTL")),
        30_000_000_000,
        "{r:?}"
    );

    let r = a.put_empty("/v1/session/renew/3c5ac0b2-54c2-4b5b-9e8c-1f0a8b1c7d11");
    r.status(404);
    assert!(
        r.text().contains("3c5ac0b2-54c2-4b5b-9e8c-1f0a8b1c7d11"),
        "the 404 names the session: {r:?}"
    );
}

fn destroy(a: &Agent) {
    let id = a.session_create(&json!({}));
    assert!(info(a, &id).is_some());
    a.session_destroy(&id);
    assert!(info(a, &id).is_none(), "destroyed session is gone");
    let r = a.get("/v1/session/list");
    assert!(!ids(&r.ok().json()).contains(&id), "{r:?}");
    // Destroying an unknown session is not an error in Consul.
    let r = a.put_empty(&format!("/v1/session/destroy/{id}"));
    assert!(r.bool(), "{r:?}");
}

/// A Go duration string in nanoseconds.
fn go_ns(d: &str) -> i64 {
    go_parse_duration::parse_duration(d).unwrap_or_else(|e| panic!("bad duration {d:?}: {e:?}"))
}

fn rejected(status: u16) -> bool {
    status == 400 || status == 500
}

fn ttl_and_behavior_validation(a: &Agent) {
    for body in [
        json!({"TTL": "5s"}),
        json!({"TTL": "9s"}),
        json!({"TTL": "25h"}),
        json!({"TTL": "soon"}),
        json!({"Behavior": "explode"}),
    ] {
        let r = a.put_json("/v1/session/create", &body);
        assert!(rejected(r.status), "{body} must be rejected: {r:?}");
    }
    let r = a.get("/v1/session/list");
    assert_eq!(r.ok().json(), json!([]), "nothing was created: {r:?}");
    for ttl in ["10s", "24h", "15m"] {
        let id = a.session_create(&json!({ "TTL": ttl }));
        let s = info(a, &id).expect("session");
        let got = s["TTL"]
            .as_str()
            .unwrap_or_else(|| panic!("TTL is a string: {s}"));
        assert_eq!(go_ns(got), go_ns(ttl), "TTL {ttl} kept: {s}");
    }
}

fn lock_contention(a: &Agent) {
    let s1 = a.session_create(&json!({"Name": "s1"}));
    let s2 = a.session_create(&json!({"Name": "s2"}));
    let key = "locks/leader";

    assert!(
        a.kv_lock(key, "acquire", &s1, "s1-data"),
        "s1 acquires a free key"
    );
    let e = a.kv_entry(key).expect("acquire creates the key");
    assert_eq!(session_of(&e), Some(s1.as_str()), "{e}");
    assert_eq!(u(&e, "LockIndex"), 1, "{e}");
    assert_eq!(unb64(e["Value"].as_str().expect("Value")), b"s1-data");

    // The holder may re-acquire (update the value) without bumping LockIndex.
    assert!(a.kv_lock(key, "acquire", &s1, "s1-again"));
    let e = a.kv_entry(key).expect("entry");
    assert_eq!(
        u(&e, "LockIndex"),
        1,
        "re-acquire by the holder keeps LockIndex: {e}"
    );
    assert_eq!(unb64(e["Value"].as_str().expect("Value")), b"s1-again");

    assert!(
        !a.kv_lock(key, "acquire", &s2, "s2-data"),
        "s2 cannot take a held lock"
    );
    assert!(
        !a.kv_lock(key, "release", &s2, ""),
        "s2 cannot release s1's lock"
    );
    let e = a.kv_entry(key).expect("entry");
    assert_eq!(session_of(&e), Some(s1.as_str()), "{e}");
    assert_eq!(
        unb64(e["Value"].as_str().expect("Value")),
        b"s1-again",
        "{e}"
    );

    assert!(a.kv_lock(key, "release", &s1, "released"), "s1 releases");
    let e = a.kv_entry(key).expect("entry");
    assert_eq!(session_of(&e), None, "{e}");
    assert_eq!(u(&e, "LockIndex"), 1, "release keeps LockIndex: {e}");
    assert_eq!(unb64(e["Value"].as_str().expect("Value")), b"released");

    // A released lock (not an invalidated session) has no lock delay.
    assert!(
        a.kv_lock(key, "acquire", &s2, "s2-data"),
        "s2 acquires after release"
    );
    let e = a.kv_entry(key).expect("entry");
    assert_eq!(session_of(&e), Some(s2.as_str()), "{e}");
    assert_eq!(u(&e, "LockIndex"), 2, "LockIndex counts acquisitions: {e}");

    // A plain PUT does not disturb the lock holder.
    a.kv_put(key, "plain");
    let e = a.kv_entry(key).expect("entry");
    assert_eq!(session_of(&e), Some(s2.as_str()), "{e}");
}

fn acquire_unknown_session(a: &Agent) {
    let r = a.put(
        "/v1/kv/locks/ghost?acquire=00000000-1111-2222-3333-444444444444",
        "x",
    );
    assert!(
        rejected(r.status) || (r.status == 200 && r.json() == json!(false)),
        "acquire with an unknown session fails: {r:?}"
    );
    assert!(a.kv_entry("locks/ghost").is_none());
}

fn behavior_delete(a: &Agent) {
    let s = a.session_create(&json!({"Behavior": "delete", "LockDelay": "0s"}));
    assert!(a.kv_lock("bdel/held", "acquire", &s, "v"));
    a.kv_put("bdel/unheld", "stays");
    a.session_destroy(&s);
    assert!(
        a.kv_entry("bdel/held").is_none(),
        "behavior=delete removes held keys when the session goes"
    );
    assert!(a.kv_entry("bdel/unheld").is_some());
}

fn behavior_release(a: &Agent) {
    let s = a.session_create(&json!({"Behavior": "release", "LockDelay": "0s"}));
    assert!(a.kv_lock("brel/held", "acquire", &s, "kept value"));
    a.session_destroy(&s);
    let e = a
        .kv_entry("brel/held")
        .expect("behavior=release keeps the key");
    assert_eq!(session_of(&e), None, "the lock is released: {e}");
    assert_eq!(unb64(e["Value"].as_str().expect("Value")), b"kept value");
    assert_eq!(u(&e, "LockIndex"), 1, "{e}");
}

fn lock_delay(a: &Agent) {
    let holder = a.session_create(&json!({"LockDelay": "5s"}));
    let other = a.session_create(&json!({"LockDelay": "0s"}));
    assert!(a.kv_lock("ld/k", "acquire", &holder, "h"));
    a.session_destroy(&holder);
    assert!(
        !a.kv_lock("ld/k", "acquire", &other, "o"),
        "lock delay blocks acquisition right after the holder is invalidated"
    );
    assert_eventually!(
        a.kv_lock("ld/k", "acquire", &other, "o"),
        Duration::from_secs(20),
        "acquire succeeds once the 5 s lock delay has passed"
    );
    let e = a.kv_entry("ld/k").expect("entry");
    assert_eq!(session_of(&e), Some(other.as_str()), "{e}");
    assert_eq!(u(&e, "LockIndex"), 2, "{e}");
}

fn lock_delay_zero(a: &Agent) {
    let holder = a.session_create(&json!({"LockDelay": "0s"}));
    let other = a.session_create(&json!({}));
    assert!(a.kv_lock("ld0/k", "acquire", &holder, "h"));
    a.session_destroy(&holder);
    assert!(
        a.kv_lock("ld0/k", "acquire", &other, "o"),
        "no lock delay: immediate re-acquire"
    );
}

// Takes about 2×TTL (~20 s) per core count; the suite has room for both.
per_core!(ttl_invalidation);

fn ttl_invalidation(a: &Agent) {
    let s = a.session_create(&json!({"TTL": "10s", "LockDelay": "0s"}));
    let keep = a.session_create(&json!({"TTL": "10s", "LockDelay": "0s"}));
    assert!(a.kv_lock("ttl/k", "acquire", &s, "v"));
    let c = a.client();
    // Renew `keep` while `s` runs out, so that expiry is shown to be per session.
    assert_eventually!(
        {
            let r = c.put_empty(&format!("/v1/session/renew/{keep}"));
            r.ok();
            info(a, &s).is_none()
        },
        Duration::from_secs(35),
        "a 10 s TTL session is invalidated within 2×TTL when not renewed"
    );
    let e = a.kv_entry("ttl/k").expect("behavior=release keeps the key");
    assert_eq!(session_of(&e), None, "invalidation releases the lock: {e}");
    assert!(info(a, &keep).is_some(), "the renewed session survives");
}
