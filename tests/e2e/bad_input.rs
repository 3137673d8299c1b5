//! Malformed and out-of-bounds requests are refused with Consul's status codes, nothing is
//! written, and the agent keeps serving.

use crate::common::Agent;

per_core!(
    malformed_session_json,
    bad_query_parameters,
    value_size_limit,
    unknown_path,
    wrong_method,
);

/// The agent still answers after whatever the test threw at it.
fn still_serving(a: &Agent) {
    let r = a.get("/v1/status/leader");
    let v = r.ok().json();
    assert!(v.as_str().is_some_and(|s| !s.is_empty()), "{r:?}");
}

fn malformed_session_json(a: &Agent) {
    for body in [
        &b"{\"Name\": "[..],
        b"{bad json}",
        b"[1, 2, 3]",
        b"{\"LockDelay\": \"not a duration\"}",
    ] {
        let r = a.put("/v1/session/create", body);
        r.status(400);
    }
    let r = a.get("/v1/session/list");
    assert_eq!(
        r.ok().json(),
        serde_json::json!([]),
        "nothing created: {r:?}"
    );
    still_serving(a);
}

fn bad_query_parameters(a: &Agent) {
    a.kv_put("bad/k", "v");
    for path in [
        "/v1/kv/bad/k?index=notanumber",
        "/v1/kv/bad/k?index=-1",
        "/v1/kv/bad/k?index=1&wait=soon",
        "/v1/kv/bad/k?wait=10",
        "/v1/session/list?index=abc",
    ] {
        a.get(path).status(400);
    }
    for path in ["/v1/kv/bad/k?flags=abc", "/v1/kv/bad/k?cas=xyz"] {
        a.put(path, "changed").status(400);
    }
    a.delete("/v1/kv/bad/k?cas=xyz").status(400);
    assert_eq!(
        a.kv_raw("bad/k").as_deref(),
        Some(&b"v"[..]),
        "nothing changed"
    );
    still_serving(a);
}

fn value_size_limit(a: &Agent) {
    const LIMIT: usize = 512 * 1024;
    let too_big = vec![b'x'; LIMIT + 1];
    let r = a.put("/v1/kv/big/too", &too_big);
    r.status(413);
    a.get("/v1/kv/big/too").status(404);

    let exact: Vec<u8> = (0..LIMIT).map(|i| (i % 251) as u8).collect();
    let r = a.put("/v1/kv/big/exact", &exact);
    assert!(r.bool(), "a value of exactly 512 KiB is accepted: {r:?}");
    assert_eq!(
        a.kv_raw("big/exact"),
        Some(exact),
        "512 KiB value reads back intact"
    );
    still_serving(a);
}

fn unknown_path(a: &Agent) {
    for path in [
        "/v1/does/not/exist",
        "/v1/agent/nothing",
        "/nope",
        "/v2/kv/x",
    ] {
        a.get(path).status(404);
    }
    still_serving(a);
}

fn wrong_method(a: &Agent) {
    a.delete("/v1/status/leader").status(405);
    a.put_empty("/v1/status/peers").status(405);
    a.get("/v1/session/create").status(405);
    a.get("/v1/txn").status(405);
    a.delete("/v1/session/list").status(405);
    still_serving(a);
}
