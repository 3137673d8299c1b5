//! Blocking queries (`?index=&wait=`). Durations are only bounded loosely: a lower bound for
//! "did it actually wait" and generous upper bounds for "was it woken at all".

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{unb64, Agent, Resp};

per_core!(
    wait_expires_with_same_index,
    stale_index_returns_at_once,
    key_woken_by_put,
    key_woken_by_delete,
    recurse_woken_by_new_key_and_delete,
    session_list_woken_by_create,
);

/// Lets a blocking request reach the server before the write that should wake it. Not an
/// assertion: if the write wins the race, the query returns at once with the new index,
/// which the tests accept just the same.
fn let_it_park() {
    thread::sleep(Duration::from_millis(300));
}

const WAKE_BOUND: Duration = Duration::from_secs(15);

fn timed(f: impl FnOnce() -> Resp) -> (Resp, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}

fn wait_expires_with_same_index(a: &Agent) {
    a.kv_put("blk/still", "v");
    let r = a.get("/v1/kv/blk/still");
    let idx = r.ok().index();
    let (r, took) = timed(|| a.get(&format!("/v1/kv/blk/still?index={idx}&wait=1s")));
    r.ok();
    assert!(
        took >= Duration::from_millis(800),
        "a blocking query with the current index waits for `wait` (took {took:?}): {r:?}"
    );
    assert_eq!(r.index(), idx, "nothing changed, same index: {r:?}");
    assert_eq!(unb64(r.json()[0]["Value"].as_str().expect("Value")), b"v");

    // The same holds for a listing.
    let r = a.get("/v1/kv/blk/?keys");
    let idx = r.ok().index();
    let (r, took) = timed(|| a.get(&format!("/v1/kv/blk/?keys&index={idx}&wait=1s")));
    r.ok();
    assert!(took >= Duration::from_millis(800), "took {took:?}: {r:?}");
    assert_eq!(r.index(), idx, "{r:?}");
}

fn stale_index_returns_at_once(a: &Agent) {
    a.kv_put("blk/stale", "1");
    a.kv_put("blk/stale", "2");
    let idx = a.get("/v1/kv/blk/stale").ok().index();
    assert!(idx > 1);
    let (r, took) = timed(|| a.get(&format!("/v1/kv/blk/stale?index={}&wait=30s", idx - 1)));
    r.ok();
    assert!(
        took < WAKE_BOUND,
        "an index behind the current one answers at once: {took:?}"
    );
    assert_eq!(r.index(), idx, "{r:?}");
}

fn key_woken_by_put(a: &Agent) {
    a.kv_put("blk/wake", "old");
    let idx = a.get("/v1/kv/blk/wake").ok().index();
    let c = a.client();
    let waiter =
        thread::spawn(move || timed(|| c.get(&format!("/v1/kv/blk/wake?index={idx}&wait=20s"))));
    let_it_park();
    a.kv_put("blk/wake", "new");
    let (r, took) = waiter.join().expect("waiter");
    r.ok();
    assert!(
        took < WAKE_BOUND,
        "woken by the PUT, not by the 20 s wait: {took:?}"
    );
    assert!(r.index() > idx, "{r:?}");
    assert_eq!(
        unb64(r.json()[0]["Value"].as_str().expect("Value")),
        b"new",
        "{r:?}"
    );
}

fn key_woken_by_delete(a: &Agent) {
    a.kv_put("blk/doomed", "v");
    let idx = a.get("/v1/kv/blk/doomed").ok().index();
    let c = a.client();
    let waiter =
        thread::spawn(move || timed(|| c.get(&format!("/v1/kv/blk/doomed?index={idx}&wait=20s"))));
    let_it_park();
    assert!(a.delete("/v1/kv/blk/doomed").bool());
    let (r, took) = waiter.join().expect("waiter");
    assert!(took < WAKE_BOUND, "woken by the DELETE: {took:?}");
    r.status(404);
    assert!(r.index() > idx, "the delete's index is reported: {r:?}");
}

fn recurse_woken_by_new_key_and_delete(a: &Agent) {
    a.kv_put("blkr/first", "1");
    let idx = a.get("/v1/kv/blkr/?recurse").ok().index();
    let c = a.client();
    let waiter = thread::spawn(move || {
        timed(|| c.get(&format!("/v1/kv/blkr/?recurse&index={idx}&wait=20s")))
    });
    let_it_park();
    a.kv_put("blkr/second", "2");
    let (r, took) = waiter.join().expect("waiter");
    r.ok();
    assert!(
        took < WAKE_BOUND,
        "woken by a new key under the prefix: {took:?}"
    );
    assert!(r.index() > idx, "{r:?}");
    let keys: Vec<String> = r
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["Key"].as_str().expect("Key").to_string())
        .collect();
    assert_eq!(keys, ["blkr/first", "blkr/second"], "{r:?}");

    let idx = r.index();
    let c = a.client();
    let waiter = thread::spawn(move || {
        timed(|| c.get(&format!("/v1/kv/blkr/?recurse&index={idx}&wait=20s")))
    });
    let_it_park();
    assert!(a.delete("/v1/kv/blkr/first").bool());
    let (r, took) = waiter.join().expect("waiter");
    r.ok();
    assert!(
        took < WAKE_BOUND,
        "woken by a delete under the prefix: {took:?}"
    );
    assert!(r.index() > idx, "a delete moves the prefix's index: {r:?}");
    let keys: Vec<String> = r
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["Key"].as_str().expect("Key").to_string())
        .collect();
    assert_eq!(keys, ["blkr/second"], "{r:?}");
}

fn session_list_woken_by_create(a: &Agent) {
    let r = a.get("/v1/session/list");
    let idx = r.ok().index();
    assert!(idx > 0, "{r:?}");
    let c = a.client();
    let waiter =
        thread::spawn(move || timed(|| c.get(&format!("/v1/session/list?index={idx}&wait=20s"))));
    let_it_park();
    let id = a.session_create(&json!({"Name": "wake-up"}));
    let (r, took) = waiter.join().expect("waiter");
    r.ok();
    assert!(took < WAKE_BOUND, "woken by the session create: {took:?}");
    assert!(r.index() > idx, "{r:?}");
    let v = r.json();
    assert!(
        v.as_array()
            .expect("array")
            .iter()
            .any(|s| s["ID"] == id.as_str()),
        "the new session is in the woken answer: {r:?}"
    );
}
