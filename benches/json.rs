//! JSON encoding of API answers with simd-json: a `?recurse` KV listing of 100 and 1,000
//! entries with 256-byte values (base64 included), compact and `?pretty`; and a
//! `/v1/health/service/web` answer of 50 instances with their node and two checks each.
//!
//! `cargo bench --bench json -- --quick` for a fast pass.
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use muster::http::encode::{json, HealthOut, KvOut};
use muster_shards::catalog::{HealthCheck, HealthEntry, Node, Service};
use muster_shards::kv::KvEntry;

fn listing(n: usize) -> Vec<KvEntry> {
    (0..n)
        .map(|i| KvEntry {
            key: format!("config/app/service-{i:05}/setting"),
            value: Bytes::from(vec![b'v'; 256]),
            flags: 42,
            create_index: 10 + i as u64,
            modify_index: 20 + i as u64,
            lock_index: 0,
            session: String::new(),
        })
        .collect()
}

fn kv_listing(c: &mut Criterion) {
    let mut g = c.benchmark_group("json_kv_listing");
    for n in [100usize, 1_000] {
        let entries = listing(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("compact", n), &entries, |b, e| {
            b.iter(|| {
                let out: Vec<KvOut> = e.iter().map(KvOut::from).collect();
                black_box(json(&out, false))
            })
        });
        g.bench_with_input(BenchmarkId::new("pretty", n), &entries, |b, e| {
            b.iter(|| {
                let out: Vec<KvOut> = e.iter().map(KvOut::from).collect();
                black_box(json(&out, true))
            })
        });
    }
    g.finish();
}

fn health_answer(n: usize) -> Vec<HealthEntry> {
    (0..n)
        .map(|i| {
            let node = format!("node-{i:04}");
            let check = |id: &str, service: &str| HealthCheck {
                node: node.clone(),
                check_id: id.to_string(),
                name: format!("{id} check"),
                status: "passing".into(),
                output: "HTTP GET http://127.0.0.1:8080/health: 200 OK Output: ok".into(),
                service_id: service.to_string(),
                service_name: if service.is_empty() {
                    String::new()
                } else {
                    "web".into()
                },
                check_type: "http".into(),
                create_index: 10,
                modify_index: 20,
                ..HealthCheck::default()
            };
            HealthEntry {
                node: Node {
                    id: format!("00000000-0000-0000-0000-{i:012}"),
                    node: node.clone(),
                    address: format!("10.0.{}.{}", i / 250, i % 250),
                    datacenter: "dc1".into(),
                    meta: [("rack".to_string(), "r1".to_string())]
                        .into_iter()
                        .collect(),
                    create_index: 5,
                    modify_index: 5,
                    ..Node::default()
                },
                service: Service {
                    id: format!("web-{i}"),
                    service: "web".into(),
                    tags: vec!["v1".into(), "production".into()],
                    port: 8080,
                    meta: [("version".to_string(), "1.2.3".to_string())]
                        .into_iter()
                        .collect(),
                    create_index: 7,
                    modify_index: 9,
                    ..Service::default()
                },
                checks: vec![
                    check("serfHealth", ""),
                    check(&format!("service:web-{i}"), &format!("web-{i}")),
                ],
            }
        })
        .collect()
}

fn health_service(c: &mut Criterion) {
    let entries = health_answer(50);
    let mut g = c.benchmark_group("json_health_service");
    g.throughput(Throughput::Elements(50));
    g.bench_function("50_instances", |b| {
        b.iter(|| {
            let out: Vec<HealthOut> = entries.iter().map(HealthOut::from).collect();
            black_box(json(&out, false))
        })
    });
    g.finish();
}

criterion_group!(benches, kv_listing, health_service);
criterion_main!(benches);
