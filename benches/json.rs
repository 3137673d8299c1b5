//! JSON encoding of API answers with simd-json: a `?recurse` KV listing of 100 and 1,000
//! entries with 256-byte values (base64 included), compact and `?pretty`.
//!
//! `cargo bench --bench json -- --quick` for a fast pass.
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use muster::http::encode::{json, KvOut};
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

criterion_group!(benches, kv_listing);
criterion_main!(benches);
