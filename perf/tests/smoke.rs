//! One tiny run of every workload against a debug `muster -dev` (seconds each, no peers),
//! so the harness cannot rot. The muster binary is the debug build in the workspace's
//! target dir (`$CARGO_TARGET_DIR/debug/muster` or `target/debug/muster`), which
//! `cargo test --workspace` builds; it is built here when missing. Nothing is timed.
use std::path::PathBuf;
use std::sync::OnceLock;

use muster_perf::muster::debug_bin_for_tests;
use muster_perf::result::{Row, RunResult, Status};
use muster_perf::workloads::{self, Common};

fn bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| debug_bin_for_tests().expect("muster debug binary"))
        .clone()
}

fn common() -> Common {
    Common::for_tests(bin())
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The result file parses back to the same value.
fn round_trip(res: &RunResult) {
    let dir = tempfile::tempdir().unwrap();
    let path = res.write(dir.path()).unwrap();
    assert_eq!(&RunResult::read(&path).unwrap(), res);
    print!("{}", muster_perf::report::render(res));
}

fn muster_rows(res: &RunResult) -> Vec<&Row> {
    res.rows
        .iter()
        .filter(|r| r.target.starts_with("muster"))
        .collect()
}

fn extra_u64(r: &Row, k: &str) -> u64 {
    r.extra
        .get(k)
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("{} {}: no {k} in {:?}", r.target, r.case, r.extra))
}

fn extra_bool(r: &Row, k: &str) -> bool {
    r.extra[k]
        .as_bool()
        .unwrap_or_else(|| panic!("{k} not a bool"))
}

fn assert_ran_and_counted(r: &Row) {
    assert_eq!(r.status, Status::Ran, "{} {}", r.target, r.case);
    assert!(r.requests > 0, "{} {}: no requests", r.target, r.case);
    assert_eq!(r.errors, 0, "{} {}: errors {:?}", r.target, r.case, r.extra);
    // The harness and the server's own metrics count the same requests.
    assert!(
        extra_bool(r, "metrics_agree"),
        "{} {}: {:?}",
        r.target,
        r.case,
        r.extra
    );
    assert_eq!(r.latency.as_ref().unwrap().count, r.requests);
}

fn assert_peers_not_run(res: &RunResult, peer: &str) {
    let rows: Vec<_> = res.rows.iter().filter(|r| r.target == peer).collect();
    assert!(!rows.is_empty(), "no {peer} rows");
    for r in rows {
        assert!(
            matches!(r.status, Status::NotRun { .. }),
            "{peer}: {:?}",
            r.status
        );
    }
    assert!(
        res.ratios.is_empty(),
        "ratio without a peer: {:?}",
        res.ratios
    );
}

#[test]
fn w1_dns_smoke() {
    let o = workloads::w1::W1Opts {
        common: common(),
        services: 20,
        per_service: 5,
        per_node: 4,
        records_per_name: 3,
        seconds: 0.5,
        queries: 500,
        seed: 1,
        generator: workloads::w1::DnsGen::Builtin,
        dnsperf_clients: 1,
        dnsperf_outstanding: 10,
        sockets: 4,
        rate: None,
        no_percentiles: false,
    };
    let res = block_on(workloads::w1::run(&o)).unwrap();
    round_trip(&res);
    let m = muster_rows(&res);
    assert_eq!(m.len(), 1);
    assert_ran_and_counted(m[0]);
    // Every queried name is registered and passing: all answers are NOERROR with records.
    assert_eq!(extra_u64(m[0], "noerror"), m[0].requests);
    assert_peers_not_run(&res, "nsd");
    assert_peers_not_run(&res, "knot");
}

#[test]
fn w2_kv_writes_smoke() {
    let o = workloads::w2::W2Opts {
        common: common(),
        clients: vec![1, 4],
        seconds: 0.5,
        value_size: 256,
        keys: 100,
        rate: None,
    };
    let res = block_on(workloads::w2::run(&o)).unwrap();
    round_trip(&res);
    let m = muster_rows(&res);
    assert_eq!(m.len(), 2);
    for r in m {
        assert_eq!(r.target, "muster (in-memory)");
        assert_ran_and_counted(r);
    }
    assert_peers_not_run(&res, "etcd");
}

#[test]
fn w2_open_loop_smoke() {
    let o = workloads::w2::W2Opts {
        common: common(),
        clients: vec![2],
        seconds: 0.5,
        value_size: 16,
        keys: 10,
        rate: Some(100.0),
    };
    let res = block_on(workloads::w2::run(&o)).unwrap();
    let r = muster_rows(&res)[0];
    assert_ran_and_counted(r);
    assert_eq!(r.pacing, "open@100/s");
    // 100/s for 0.5 s: the schedule, not the server, sets the count.
    assert!((40..=60).contains(&r.requests), "{}", r.requests);
}

#[test]
fn w3_registration_storm_smoke() {
    let o = workloads::w3::W3Opts {
        common: common(),
        agents: 20,
        per_agent: 5,
        services: 10,
        flap_percent: 20.0,
        flap_seconds: 1.0,
    };
    let res = block_on(workloads::w3::run(&o)).unwrap();
    round_trip(&res);
    let storm = &res.rows[0];
    assert_eq!(storm.requests, 100);
    assert_eq!(extra_u64(storm, "catalog_instances"), 100);
    assert!(extra_bool(storm, "all_registered"));
    let flap = &res.rows[1];
    assert_ran_and_counted(flap);
    assert_eq!(flap.requests, extra_u64(flap, "scheduled"));
}

#[test]
fn w4_blocking_fanout_smoke() {
    let o = workloads::w4::W4Opts {
        common: common(),
        watchers: vec![50],
        kinds: vec![
            workloads::w4::WatchKind::Health,
            workloads::w4::WatchKind::Kv,
        ],
        kv_keys: 1,
        instances: 3,
        timeout: 30.0,
        park_timeout: 30.0,
    };
    let res = block_on(workloads::w4::run(&o)).unwrap();
    round_trip(&res);
    assert_eq!(res.rows.len(), 2);
    for r in &res.rows {
        assert_eq!(r.status, Status::Ran, "{}: {:?}", r.case, r.status);
        // Every watcher was parked, none answered early, all were notified of the change.
        assert_eq!(extra_u64(r, "parked_reported_by_server"), 50, "{}", r.case);
        assert_eq!(extra_u64(r, "answered_before_change"), 0, "{}", r.case);
        assert_eq!(r.requests, 50, "{}: {:?}", r.case, r.extra);
        assert!(extra_bool(r, "all_notified"));
    }
}

#[test]
fn w5_http_reads_smoke() {
    let o = workloads::w5::W5Opts {
        common: common(),
        conns: 8,
        seconds: 0.5,
        instances: 5,
        value_size: 64,
        rate: None,
        generator: workloads::w5::HttpGen::Builtin,
    };
    let res = block_on(workloads::w5::run(&o)).unwrap();
    round_trip(&res);
    let m = muster_rows(&res);
    assert_eq!(m.len(), 2);
    for r in m {
        assert_ran_and_counted(r);
        assert!(extra_u64(r, "body_bytes") > 0);
    }
    assert_peers_not_run(&res, "nginx");
}

#[test]
fn w6_memory_smoke() {
    let o = workloads::w6::W6Opts {
        common: common(),
        services: 10,
        per_service: 5,
        per_node: 5,
        kv_keys: 50,
        value_size: 256,
        watchers: 20,
        load_conns: 4,
    };
    let res = block_on(workloads::w6::run(&o)).unwrap();
    round_trip(&res);
    assert_eq!(res.rows.len(), 4, "{:?}", res.rows);
    for r in &res.rows {
        assert!(extra_u64(r, "rss_kib") > 0);
    }
    assert_eq!(res.rows[1].requests, 50);
    assert_eq!(res.rows[2].requests, 50);
    let w = &res.rows[3];
    assert_eq!(extra_u64(w, "parked_reported_by_server"), 20);
    assert_eq!(extra_u64(w, "answered_early"), 0);
    assert_eq!(
        extra_u64(w, "raw_bytes_total"),
        extra_u64(&res.rows[2], "raw_bytes_total")
    );
}
