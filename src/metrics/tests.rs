//! Recording on several threads, merging, and both renderings.
//!
//! Every test records on threads it spawns itself, so each starts from a fresh
//! thread-local registry whatever the test harness does with its own threads.

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use regex::Regex;
use simd_json::prelude::*;
use simd_json::OwnedValue;

use super::names::{self, CONSUL_DEFAULTS};
use super::*;

fn on_thread<F: FnOnce() -> Snapshot + Send + 'static>(f: F) -> Snapshot {
    thread::spawn(f).join().expect("recording thread panicked")
}

fn merged(parts: Vec<Snapshot>) -> Snapshot {
    let mut all = Snapshot::new();
    for p in parts {
        all.merge(p);
    }
    all
}

fn route(r: &str) -> Vec<(&'static str, String)> {
    vec![("route", r.to_owned())]
}

/// Four "cores" record overlapping series; the merge must add them up.
fn four_core_snapshot() -> Snapshot {
    let handles: Vec<_> = (0..4u32)
        .map(|core| {
            thread::spawn(move || {
                for i in 0..1000u32 {
                    incr_counter("consul.raft.apply", &[], 1.0);
                    incr_counter(
                        "consul.catalog.service.query",
                        &[("service", format!("svc{}", i % 2))],
                        1.0,
                    );
                    add_sample("consul.kvs.apply", &[], f64::from(core * 1000 + i + 1));
                }
                set_gauge(
                    "muster.mesh.queue_depth",
                    &[("from", core.to_string()), ("to", "0".into())],
                    f64::from(core),
                );
                let h = counter("muster.test.handle", &route("kv"));
                h.incr(2.0);
                snapshot_local()
            })
        })
        .collect();
    merged(handles.into_iter().map(|h| h.join().unwrap()).collect())
}

#[test]
fn snapshot_is_send_and_clone() {
    fn check<T: Send + Clone + 'static>() {}
    check::<Snapshot>();
}

#[test]
fn recording_on_several_threads_merges() {
    let all = four_core_snapshot();
    let apply = all.counter("consul.raft.apply", &[]).unwrap();
    assert_eq!(apply.count(), 4000);
    assert_eq!(apply.sum(), 4000.0);
    for svc in ["svc0", "svc1"] {
        let c = all
            .counter("consul.catalog.service.query", &[("service", svc.into())])
            .unwrap();
        assert_eq!(c.sum(), 2000.0);
    }
    let kvs = all.sample("consul.kvs.apply", &[]).unwrap();
    assert_eq!(kvs.aggregate().count(), 4000);
    assert_eq!(kvs.aggregate().min(), 1.0);
    assert_eq!(kvs.aggregate().max(), 4000.0);
    assert_eq!(kvs.aggregate().sum(), 4000.0 * 4001.0 / 2.0);
    for core in 0..4u32 {
        let g = all
            .gauge(
                "muster.mesh.queue_depth",
                &[("to", "0".into()), ("from", core.to_string())],
            )
            .unwrap();
        assert_eq!(g.value(), f64::from(core));
    }
    assert_eq!(
        all.counter("muster.test.handle", &route("kv"))
            .unwrap()
            .sum(),
        8.0
    );
    assert!(all.since().is_some());
}

#[test]
fn merge_order_does_not_matter_for_counters_and_samples() {
    let parts: Vec<Snapshot> = (0..3)
        .map(|k| {
            on_thread(move || {
                for i in 0..100 {
                    add_sample("s", &[], f64::from(k * 100 + i));
                    incr_counter("c", &[], 0.5);
                }
                snapshot_local()
            })
        })
        .collect();
    let forward = merged(parts.clone());
    let backward = merged(parts.into_iter().rev().collect());
    assert_eq!(forward.counter("c", &[]), backward.counter("c", &[]));
    assert_eq!(forward.sample("s", &[]), backward.sample("s", &[]));
    assert_eq!(forward.to_prometheus(), backward.to_prometheus());
}

#[test]
fn gauge_merge_keeps_latest_set() {
    let early = on_thread(|| {
        set_gauge("consul.server.isLeader", &[], 1.0);
        snapshot_local()
    });
    let late = on_thread(|| {
        set_gauge("consul.server.isLeader", &[], 0.0);
        snapshot_local()
    });
    let mut a = late.clone();
    a.merge(early.clone());
    let mut b = early;
    b.merge(late);
    assert_eq!(a.gauge("consul.server.isLeader", &[]).unwrap().value(), 0.0);
    assert_eq!(b.gauge("consul.server.isLeader", &[]).unwrap().value(), 0.0);
}

#[test]
fn label_order_does_not_split_series() {
    let snap = on_thread(|| {
        let ab = [("a", "1".to_owned()), ("b", "2".to_owned())];
        let ba = [("b", "2".to_owned()), ("a", "1".to_owned())];
        incr_counter("x", &ab, 1.0);
        incr_counter("x", &ba, 1.0);
        counter("x", &ba).incr(1.0);
        snapshot_local()
    });
    assert_eq!(snap.counters().count(), 1);
    assert_eq!(
        snap.counter("x", &[("a", "1".into()), ("b", "2".into())])
            .unwrap()
            .sum(),
        3.0
    );
}

#[test]
fn handles_and_free_functions_share_series() {
    let snap = on_thread(|| {
        let c = counter("consul.raft.apply", &[]);
        let g = gauge("muster.g", &[]);
        let s = sample("consul.raft.commitTime", &[]);
        c.incr(1.0);
        incr_counter("consul.raft.apply", &[], 1.0);
        g.set(7.0);
        s.add(3.0);
        add_sample("consul.raft.commitTime", &[], 5.0);
        s.measure_since(Instant::now());
        measure_since("consul.raft.commitTime", &[], Instant::now());
        snapshot_local()
    });
    assert_eq!(snap.counter("consul.raft.apply", &[]).unwrap().sum(), 2.0);
    assert_eq!(snap.gauge("muster.g", &[]).unwrap().value(), 7.0);
    let s = snap.sample("consul.raft.commitTime", &[]).unwrap();
    assert_eq!(s.aggregate().count(), 4);
    assert!(s.aggregate().min() >= 0.0);
    assert_eq!(s.aggregate().max(), 5.0);
}

#[test]
fn series_cap_drops_and_counts() {
    let snap = on_thread(|| {
        for i in 0..MAX_SERIES_PER_FAMILY + 10 {
            incr_counter("muster.test.cap", &[("k", i.to_string())], 1.0);
        }
        // Existing series keep recording once the family is full.
        incr_counter("muster.test.cap", &[("k", "0".into())], 1.0);
        // A handle on a full family is detached, not a panic.
        counter("muster.test.cap", &[("k", "overflow".into())]).incr(1.0);
        snapshot_local()
    });
    let family = snap
        .counters()
        .filter(|(k, _)| k.name == "muster.test.cap")
        .count();
    assert_eq!(family, MAX_SERIES_PER_FAMILY);
    assert_eq!(
        snap.counter("muster.test.cap", &[("k", "0".into())])
            .unwrap()
            .sum(),
        2.0
    );
    assert_eq!(snap.counter(DROPPED_SERIES, &[]).unwrap().sum(), 11.0);
}

#[test]
fn quantiles_within_tolerance_for_known_distribution() {
    // Two cores each see half of 1..=20000 ms (interleaved); merged P50/P90/P99
    // must match the exact order statistics within the sketch's 1% bound.
    let parts: Vec<Snapshot> = (0..2u32)
        .map(|core| {
            on_thread(move || {
                let h = sample("consul.raft.commitTime", &[]);
                for v in (1..=20_000u32).filter(|v| v % 2 == core) {
                    h.add(f64::from(v));
                }
                snapshot_local()
            })
        })
        .collect();
    let all = merged(parts);
    let s = all.sample("consul.raft.commitTime", &[]).unwrap();
    for (q, exact) in [(0.5, 10_000.0), (0.9, 18_000.0), (0.99, 19_800.0)] {
        let got = s.quantile(q).unwrap();
        assert!(
            (got - exact).abs() <= exact * RELATIVE_ACCURACY,
            "q{q}: got {got}, want {exact}"
        );
    }
    // The exact min/max bound the bucket estimate at both ends.
    assert_eq!(s.quantile(0.0), Some(1.0));
    let top = s.quantile(1.0).unwrap();
    assert!((20_000.0 * (1.0 - RELATIVE_ACCURACY)..=20_000.0).contains(&top));
}

// ---- Consul JSON ----

fn parse_json(mut bytes: Vec<u8>) -> OwnedValue {
    simd_json::to_owned_value(&mut bytes).expect("valid JSON")
}

#[test]
fn consul_json_shape() {
    let all = four_core_snapshot();
    let since = all.since().unwrap();
    let now = since + Duration::from_secs(10);
    let v = parse_json(all.to_consul_json(now));
    let top: BTreeSet<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        top,
        BTreeSet::from(["Timestamp", "Gauges", "Points", "Counters", "Samples"])
    );
    assert_eq!(v["Timestamp"].as_str().unwrap(), go_utc_timestamp(now));
    assert!(v["Points"].as_array().unwrap().is_empty());

    let gauges = v["Gauges"].as_array().unwrap();
    assert_eq!(gauges.len(), 4);
    for g in gauges {
        let keys: BTreeSet<&str> = g.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, BTreeSet::from(["Name", "Value", "Labels"]));
        assert_eq!(g["Name"].as_str(), Some("muster.mesh.queue_depth"));
        assert_eq!(g["Labels"]["to"].as_str(), Some("0"));
        let from: f64 = g["Labels"]["from"].as_str().unwrap().parse().unwrap();
        assert_eq!(g["Value"].cast_f64(), Some(from));
    }

    let sampled_keys = BTreeSet::from([
        "Name", "Count", "Rate", "Sum", "Min", "Max", "Mean", "Stddev", "Labels",
    ]);
    let counters = v["Counters"].as_array().unwrap();
    for c in counters {
        let keys: BTreeSet<&str> = c.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, sampled_keys);
    }
    let apply = counters
        .iter()
        .find(|c| c["Name"].as_str() == Some("consul.raft.apply"))
        .unwrap();
    assert_eq!(apply["Count"].cast_f64(), Some(4000.0));
    assert_eq!(apply["Sum"].cast_f64(), Some(4000.0));
    assert_eq!(apply["Rate"].cast_f64(), Some(400.0));
    assert_eq!(apply["Mean"].cast_f64(), Some(1.0));
    assert_eq!(apply["Stddev"].cast_f64(), Some(0.0));
    assert!(apply["Labels"].as_object().unwrap().is_empty());
    let svc0 = counters
        .iter()
        .find(|c| {
            c["Name"].as_str() == Some("consul.catalog.service.query")
                && c["Labels"]["service"].as_str() == Some("svc0")
        })
        .unwrap();
    assert_eq!(svc0["Sum"].cast_f64(), Some(2000.0));

    let samples = v["Samples"].as_array().unwrap();
    assert_eq!(samples.len(), 1);
    let kvs = &samples[0];
    let keys: BTreeSet<&str> = kvs
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, sampled_keys);
    assert_eq!(kvs["Name"].as_str(), Some("consul.kvs.apply"));
    assert_eq!(kvs["Count"].cast_f64(), Some(4000.0));
    assert_eq!(kvs["Min"].cast_f64(), Some(1.0));
    assert_eq!(kvs["Max"].cast_f64(), Some(4000.0));
    assert_eq!(kvs["Mean"].cast_f64(), Some(2000.5));
    let stddev = kvs["Stddev"].cast_f64().unwrap();
    // Sample stddev of 1..=4000 is sqrt(4000*4001/12).
    assert!((stddev - (4000.0f64 * 4001.0 / 12.0).sqrt()).abs() < 1e-6);
}

#[test]
fn consul_json_is_sorted_and_deterministic() {
    let all = four_core_snapshot();
    let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let a = all.to_consul_json(now);
    assert_eq!(a, all.clone().to_consul_json(now));
    let v = parse_json(a);
    let names: Vec<String> = v["Counters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Name"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn consul_json_escapes_labels_and_survives_non_finite_gauges() {
    let snap = on_thread(|| {
        set_gauge("muster.g", &[("v", "quote\" back\\ nl\n".into())], f64::NAN);
        snapshot_local()
    });
    let v = parse_json(snap.to_consul_json(SystemTime::now()));
    let g = &v["Gauges"][0];
    assert_eq!(g["Labels"]["v"].as_str(), Some("quote\" back\\ nl\n"));
    assert!(g["Value"].is_null());
}

// ---- Prometheus text ----

struct Exposition {
    /// Family name -> TYPE.
    types: BTreeMap<String, String>,
    /// Sample lines (name incl. suffix, labels text, value text).
    samples: Vec<(String, String, String)>,
}

/// Checks every line against the 0.0.4 grammar we promise and collects what
/// the assertions below need. Panics with the offending line on violation.
fn check_exposition(text: &str) -> Exposition {
    let sample_re = Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)( -?[0-9]+)?$"#,
    )
    .unwrap();
    let label_re = Regex::new(r#"^[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"$"#).unwrap();
    let help_re = Regex::new(r"^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (?:[^\\\n]|\\\\|\\n)*$").unwrap();
    let type_re = Regex::new(
        r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|summary|histogram|untyped)$",
    )
    .unwrap();

    assert!(text.ends_with('\n'), "body must end with a newline");
    let mut types = BTreeMap::new();
    let mut helps = BTreeSet::new();
    let mut samples = Vec::new();
    let mut family_order = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(c) = help_re.captures(line) {
            assert!(helps.insert(c[1].to_owned()), "second HELP: {line}");
        } else if let Some(c) = type_re.captures(line) {
            let name = c[1].to_owned();
            assert!(
                types.insert(name.clone(), c[2].to_owned()).is_none(),
                "second TYPE: {line}"
            );
            assert!(helps.contains(&name), "TYPE before HELP: {line}");
            family_order.push(name.clone());
            current = Some((name, c[2].to_owned()));
        } else if let Some(c) = sample_re.captures(line) {
            let (family, kind) = current
                .as_ref()
                .unwrap_or_else(|| panic!("sample before TYPE: {line}"));
            let name = &c[1];
            let ok = name == family
                || (kind == "summary"
                    && (name == format!("{family}_sum") || name == format!("{family}_count")));
            assert!(ok, "sample {name} outside its family {family}");
            let labels = c.get(3).map_or("", |m| m.as_str());
            // Split on commas outside quotes and check each pair.
            let mut pairs = Vec::new();
            let (mut start, mut in_quotes, mut escaped) = (0, false, false);
            for (i, ch) in labels.char_indices() {
                match ch {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_quotes = !in_quotes,
                    ',' if !in_quotes => {
                        pairs.push(&labels[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if !labels.is_empty() {
                pairs.push(&labels[start..]);
            }
            for p in pairs {
                assert!(label_re.is_match(p), "bad label pair {p:?} in {line}");
            }
            samples.push((name.to_owned(), labels.to_owned(), c[4].to_owned()));
        } else {
            panic!("line matches no exposition rule: {line:?}");
        }
    }
    let mut sorted = family_order.clone();
    sorted.sort();
    assert_eq!(family_order, sorted, "families must be sorted");
    Exposition { types, samples }
}

fn value_of(e: &Exposition, name: &str, labels: &str) -> String {
    e.samples
        .iter()
        .find(|(n, l, _)| n == name && l == labels)
        .unwrap_or_else(|| panic!("no sample {name}{{{labels}}}"))
        .2
        .clone()
}

#[test]
fn prometheus_output_is_valid_exposition() {
    let mut all = four_core_snapshot();
    all.merge(on_thread(|| {
        register_defaults(CONSUL_DEFAULTS);
        snapshot_local()
    }));
    let text = all.to_prometheus();
    let e = check_exposition(&text);

    assert_eq!(e.types["consul_raft_apply"], "counter");
    assert_eq!(e.types["consul_raft_commitTime"], "summary");
    assert_eq!(e.types["consul_kvs_apply"], "summary");
    assert_eq!(e.types["consul_server_isLeader"], "gauge");
    assert_eq!(e.types["muster_mesh_queue_depth"], "gauge");
    assert!(!e.types.contains_key("consul_raft_apply_total"));

    assert_eq!(value_of(&e, "consul_raft_apply", ""), "4000");
    assert_eq!(
        value_of(&e, "consul_catalog_service_query", r#"service="svc1""#),
        "2000"
    );
    assert_eq!(
        value_of(&e, "muster_mesh_queue_depth", r#"from="3",to="0""#),
        "3"
    );
    assert_eq!(value_of(&e, "consul_kvs_apply_count", ""), "4000");
    assert_eq!(value_of(&e, "consul_kvs_apply_sum", ""), "8002000");
    let p50: f64 = value_of(&e, "consul_kvs_apply", r#"quantile="0.5""#)
        .parse()
        .unwrap();
    assert!(
        (p50 - 2000.0).abs() <= 2000.0 * RELATIVE_ACCURACY,
        "p50 {p50}"
    );
    let p99: f64 = value_of(&e, "consul_kvs_apply", r#"quantile="0.99""#)
        .parse()
        .unwrap();
    assert!(
        (p99 - 3960.0).abs() <= 3960.0 * RELATIVE_ACCURACY,
        "p99 {p99}"
    );

    // Registered but never recorded: present at zero, quantiles NaN.
    assert_eq!(value_of(&e, "consul_raft_commitTime_count", ""), "0");
    assert_eq!(
        value_of(&e, "consul_raft_commitTime", r#"quantile="0.9""#),
        "NaN"
    );
    assert_eq!(value_of(&e, "consul_server_isLeader", ""), "0");

    assert_eq!(text, all.clone().to_prometheus(), "deterministic");
}

#[test]
fn prometheus_defaults_only() {
    let snap = on_thread(|| {
        register_defaults(CONSUL_DEFAULTS);
        register_defaults(CONSUL_DEFAULTS);
        register_defaults(names::MUSTER_DEFAULTS);
        snapshot_local()
    });
    let text = snap.to_prometheus();
    let e = check_exposition(&text);
    for def in CONSUL_DEFAULTS.iter().chain(names::MUSTER_DEFAULTS) {
        assert!(
            e.types.contains_key(&prometheus_name(def.name)),
            "{} missing",
            def.name
        );
    }
    assert!(text.contains("# HELP consul_raft_apply Raft entries applied by the leader.\n"));
    assert_eq!(value_of(&e, "consul_raft_apply", ""), "0");
    // Counters at zero in JSON too.
    let v = parse_json(snap.to_consul_json(SystemTime::now()));
    let apply = v["Counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Name"].as_str() == Some("consul.raft.apply"))
        .unwrap();
    assert_eq!(apply["Count"].cast_f64(), Some(0.0));
    assert_eq!(apply["Min"].cast_f64(), Some(0.0));
}

#[test]
fn prometheus_escapes_label_values_and_sanitizes_names() {
    let snap = on_thread(|| {
        incr_counter(
            "muster.http.request-errors",
            &[("route", "a\\b\"c\nd".into()), ("odd.label", "x".into())],
            1.0,
        );
        add_sample("muster.http.request", &[("quantile", "user".into())], 1.0);
        snapshot_local()
    });
    let text = snap.to_prometheus();
    let e = check_exposition(&text);
    assert!(
        text.contains(r#"muster_http_request_errors{odd_label="x",route="a\\b\"c\nd"} 1"#),
        "{text}"
    );
    assert_eq!(
        value_of(
            &e,
            "muster_http_request",
            r#"quantile_="user",quantile="0.5""#
        ),
        "1"
    );
}

#[test]
fn prometheus_kind_collision_keeps_one_family() {
    let snap = on_thread(|| {
        set_gauge("muster.clash", &[], 1.0);
        incr_counter("muster.clash", &[], 1.0);
        add_sample("muster_clash", &[], 1.0);
        snapshot_local()
    });
    let e = check_exposition(&snap.to_prometheus());
    assert_eq!(e.types["muster_clash"], "gauge");
    assert_eq!(e.samples.len(), 1);
}

#[test]
fn empty_snapshot_renders() {
    let s = Snapshot::new();
    assert!(s.is_empty());
    assert_eq!(s.to_prometheus(), "");
    let v = parse_json(s.to_consul_json(UNIX_EPOCH));
    assert!(v["Counters"].as_array().unwrap().is_empty());
    assert_eq!(
        v["Timestamp"].as_str(),
        Some("1970-01-01 00:00:00 +0000 UTC")
    );
}

/// Not an assertion (timings vary with the machine): prints the cost of the
/// recording paths so regressions are visible in `cargo test -- --nocapture`.
#[test]
fn print_recording_cost() {
    on_thread(|| {
        const N: u32 = 200_000;
        let labels = route("kv");
        let h = counter("muster.bench.handle", &labels);
        let s = sample("muster.bench.sample", &labels);
        let t = Instant::now();
        for _ in 0..N {
            h.incr(1.0);
        }
        let handle_ns = t.elapsed().as_nanos() as f64 / f64::from(N);
        let t = Instant::now();
        for _ in 0..N {
            incr_counter("muster.bench.free", &labels, 1.0);
        }
        let free_ns = t.elapsed().as_nanos() as f64 / f64::from(N);
        let t = Instant::now();
        for i in 0..N {
            s.add(f64::from(i % 1000));
        }
        let sample_ns = t.elapsed().as_nanos() as f64 / f64::from(N);
        println!(
            "metrics cost (debug build unless --release): CounterHandle::incr {handle_ns:.1} ns, \
             incr_counter with 1 label {free_ns:.1} ns, SampleHandle::add {sample_ns:.1} ns"
        );
        let snap = snapshot_local();
        assert_eq!(
            snap.counter("muster.bench.handle", &labels).unwrap().sum(),
            f64::from(N)
        );
        snap
    });
}
