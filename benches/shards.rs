//! Criterion benches of the shard API (`muster-shards`), no I/O involved:
//!
//! - `shard_apply_kv_set`: one shard applying 100k KV sets: inserts, updates, no-op rewrites,
//!   and the same inserts through `coord::apply` over one local shard (coordinator overhead).
//! - `route_shard_for`: the key -> shard hash on typical keys.
//! - `local_reads_1k`: `coord::kv_get` / `kv_list` / `kv_keys` over 1,000 keys in
//!   `LocalShards` of 1 and 4 shards.
//! - `kv_list_merge`: a 4-shard listing with and without the coordinator's merge, so the cost of
//!   merging per-shard parts (no JSON involved) is the difference.
//!
//! `cargo bench --bench shards -- --quick` for a fast pass.
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use futures::executor::block_on;
use muster_shards::command::{Command, KvOp, KvVerb};
use muster_shards::coord::{self, Backend};
use muster_shards::local::LocalShards;
use muster_shards::route::shard_for;
use muster_shards::shard::Shard;

const APPLY_KEYS: usize = 100_000;
const READ_KEYS: usize = 1_000;

fn set_op(key: String, value: &'static [u8]) -> KvOp {
    KvOp {
        value: Bytes::from_static(value),
        ..KvOp::new(KvVerb::Set, key)
    }
}

/// Keys shaped like real KV usage: a few levels of prefix, then a leaf.
fn app_key(i: usize) -> String {
    format!("app/service-{}/config/key-{i:06}", i % 37)
}

fn sets(n: usize, value: &'static [u8]) -> Vec<KvOp> {
    (0..n).map(|i| set_op(app_key(i), value)).collect()
}

/// Applies `ops` on `shard` at raft indexes following its last applied one.
fn apply_all(shard: &mut Shard, ops: &[KvOp]) {
    let base = shard.applied();
    for (i, op) in ops.iter().enumerate() {
        shard.kv_write(base + 1 + i as u64, op).unwrap();
    }
}

fn shard_apply_kv_set(c: &mut Criterion) {
    let mut g = c.benchmark_group("shard_apply_kv_set");
    g.sample_size(10);
    g.throughput(Throughput::Elements(APPLY_KEYS as u64));
    let inserts = sets(APPLY_KEYS, b"v1");
    let updates = sets(APPLY_KEYS, b"v2");
    let mut filled = Shard::new(0, 1);
    apply_all(&mut filled, &inserts);

    g.bench_function("insert_100k_keys", |b| {
        b.iter_batched(
            || Shard::new(0, 1),
            |mut s| {
                apply_all(&mut s, &inserts);
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("update_100k_keys", |b| {
        b.iter_batched(
            || filled.clone(),
            |mut s| {
                apply_all(&mut s, &updates);
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("noop_rewrite_100k_keys", |b| {
        b.iter_batched(
            || filled.clone(),
            |mut s| {
                apply_all(&mut s, &inserts);
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("coord_apply_insert_100k_keys", |b| {
        b.iter_batched(
            || (LocalShards::new(1), inserts.clone()),
            |(shards, ops)| {
                for (i, op) in ops.into_iter().enumerate() {
                    let r = block_on(coord::apply(&shards, 1 + i as u64, 0, Command::Kv(op)));
                    black_box(r.unwrap());
                }
                shards
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn route_shard_for(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_shard_for");
    let keys = [
        ("short", "web".to_string()),
        ("kv_path", "config/app/database/host".to_string()),
        (
            "lock_key",
            "service/payments/leader/3f1c2c5e-8b9a-4d7e-9f10-6a2b4c8d0e12".to_string(),
        ),
        (
            "node_name",
            "ip-10-0-12-34.eu-west-1.compute.internal".to_string(),
        ),
    ];
    for (name, key) in &keys {
        g.throughput(Throughput::Bytes(key.len() as u64));
        for n in [4usize, 16] {
            g.bench_with_input(BenchmarkId::new(*name, n), key, |b, key| {
                b.iter(|| shard_for(black_box(key.as_bytes()), black_box(n)))
            });
        }
    }
    g.finish();
}

fn filled_local(n: usize) -> LocalShards {
    let shards = LocalShards::new(n);
    for (i, op) in sets(READ_KEYS, b"some value of a typical size, ~40 bytes")
        .into_iter()
        .enumerate()
    {
        block_on(coord::apply(&shards, 1 + i as u64, 0, Command::Kv(op))).unwrap();
    }
    shards
}

fn local_reads_1k(c: &mut Criterion) {
    let mut g = c.benchmark_group("local_reads_1k");
    let keys: Vec<String> = (0..READ_KEYS).map(app_key).collect();
    for n in [1usize, 4] {
        let shards = filled_local(n);
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("kv_get_hit", n), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % READ_KEYS;
                block_on(coord::kv_get(&shards, &keys[i])).unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("kv_get_miss", n), |b| {
            b.iter(|| block_on(coord::kv_get(&shards, black_box("app/nope"))).unwrap())
        });
        g.throughput(Throughput::Elements(READ_KEYS as u64));
        g.bench_function(BenchmarkId::new("kv_list_1000", n), |b| {
            b.iter(|| {
                let (_, entries) = block_on(coord::kv_list(&shards, black_box("app/"))).unwrap();
                assert_eq!(entries.len(), READ_KEYS);
                entries
            })
        });
        g.bench_function(BenchmarkId::new("kv_keys_1000", n), |b| {
            b.iter(|| block_on(coord::kv_keys(&shards, black_box("app/"), "")).unwrap())
        });
        g.bench_function(BenchmarkId::new("kv_keys_folded", n), |b| {
            b.iter(|| block_on(coord::kv_keys(&shards, black_box("app/"), "/")).unwrap())
        });
    }
    g.finish();
}

fn kv_list_merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("kv_list_merge");
    g.throughput(Throughput::Elements(READ_KEYS as u64));
    let shards = filled_local(4);
    g.bench_function("scan_only_4_shards", |b| {
        b.iter(|| {
            (0..shards.nshards())
                .map(|s| shards.shard(s).kv().list(black_box("app/")))
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("scan_and_merge_4_shards", |b| {
        b.iter(|| block_on(coord::kv_list(&shards, black_box("app/"))).unwrap())
    });
    g.finish();
}

criterion_group!(
    benches,
    shard_apply_kv_set,
    route_shard_for,
    local_reads_1k,
    kv_list_merge
);
criterion_main!(benches);
