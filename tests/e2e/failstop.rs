//! Fail-stop: a panic on any executor stops the whole process with a reason, and a shutdown
//! with writes in flight answers or fails every one of them instead of hanging.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::common::{eventually, Server, TempDir};

/// What a panicking process exits with (`muster::runtime::PANIC_EXIT_CODE`).
const PANIC_EXIT_CODE: i32 = 101;

/// `MUSTER_FAULT=panic-on-write` panics the raft executor on a KV write. With two executors
/// the HTTP executor would live on; the whole process must stop instead, saying why.
fn panic_on_raft_executor_stops_the_process(cores: usize) {
    let tmp = TempDir::new("failstop-panic");
    let mut srv = Server::dev_in(&format!("failstop-panic-{cores}"), &tmp.0, cores);
    srv.env("MUSTER_FAULT", "panic-on-write");
    srv.start();
    let c = srv.client();
    let put = thread::spawn(move || c.try_put("/v1/kv/failstop", "x"));
    // Well under the 30 s raft write timeout that used to hide a dead raft executor.
    let st = srv.wait_exit(Duration::from_secs(10));
    assert_eq!(
        st.code(),
        Some(PANIC_EXIT_CODE),
        "exit {st}; stderr:\n{}",
        srv.stderr()
    );
    let log = srv.stderr();
    assert!(
        log.contains("MUSTER_FAULT=panic-on-write: KV write on raft executor"),
        "no panic message; stderr:\n{log}"
    );
    assert!(
        log.contains("panicked") && log.contains("stopping the process"),
        "no fail-stop reason; stderr:\n{log}"
    );
    let r = put.join().expect("PUT thread");
    assert!(
        !matches!(&r, Ok(r) if r.status == 200),
        "the write that panicked was acknowledged: {r:?}"
    );
}

#[test]
fn panic_on_raft_executor_stops_the_process_cores_1() {
    panic_on_raft_executor_stops_the_process(1);
}

#[test]
fn panic_on_raft_executor_stops_the_process_cores_2() {
    panic_on_raft_executor_stops_the_process(2);
}

/// SIGTERM while writers keep a durable server busy: the process exits cleanly and promptly,
/// every write in flight gets an answer or a transport error (none hangs), raft stops without
/// the shutdown timeout, and every acknowledged write is there after a restart.
fn shutdown_with_writes_in_flight(cores: usize) {
    const WRITERS: usize = 6;
    let tmp = TempDir::new("failstop-shutdown");
    let mut srv = Server::durable(&format!("failstop-shutdown-{cores}"), &tmp.0, cores, &[]);
    srv.start();
    let acked: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let ended = AtomicUsize::new(0);
    let st = thread::scope(|s| {
        for w in 0..WRITERS {
            let (c, acked, done, ended) = (srv.client(), &acked, &done, &ended);
            s.spawn(move || {
                for i in 0.. {
                    let key = format!("inflight/{w}/{i}");
                    match c.try_put(&format!("/v1/kv/{key}"), key.as_bytes()) {
                        Ok(r) if r.status == 200 => acked.lock().unwrap().push(key),
                        // A write failed or refused by a stopping server ends this writer.
                        Ok(_) | Err(_) => break,
                    }
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                }
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
        eventually(Duration::from_secs(30), "writes to be acknowledged", || {
            (acked.lock().unwrap().len() >= 200).then_some(())
        });
        let st = srv.stop();
        done.store(true, Ordering::SeqCst);
        eventually(Duration::from_secs(10), "every writer to end", || {
            (ended.load(Ordering::SeqCst) == WRITERS).then_some(())
        });
        st
    });
    let log = srv.stderr();
    assert!(st.success(), "exit {st}; stderr:\n{log}");
    assert!(
        !log.contains("raft did not stop within"),
        "raft shutdown timed out; stderr:\n{log}"
    );
    srv.start();
    let c = srv.client();
    for key in acked.into_inner().unwrap() {
        assert_eq!(
            c.kv_raw(&key).as_deref(),
            Some(key.as_bytes()),
            "acknowledged write {key} lost"
        );
    }
}

#[test]
fn shutdown_with_writes_in_flight_cores_1() {
    shutdown_with_writes_in_flight(1);
}

#[test]
fn shutdown_with_writes_in_flight_cores_2() {
    shutdown_with_writes_in_flight(2);
}
