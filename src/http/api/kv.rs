//! `/v1/kv/`: reads from the owning shard (or all shards for listings), writes through raft.
use std::time::Instant;

use bytes::Bytes;
use muster_shards::command::{Command, KvOp, KvVerb};
use muster_shards::coord::owner_of;
use muster_shards::kv::KvEntry;

use super::{bool_response, now_ms, scatter, Ctx};
use crate::http::blocking::{block, with_meta};
use crate::http::encode::{json_response, KvOut};
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::core::{core, Shards};
use crate::runtime::watch::WatchKey;

pub async fn handle(cx: Ctx, key: String) -> ApiResult<Response> {
    match cx.req.method {
        Method::Get => get(cx, key).await,
        Method::Put => put(cx, key).await,
        Method::Delete => delete(cx, key).await,
        _ => super::allow(&cx, &[Method::Get, Method::Put, Method::Delete])
            .map(|()| Response::new(200)),
    }
}

async fn get(cx: Ctx, key: String) -> ApiResult<Response> {
    let q = &cx.req.query;
    if q.has("recurse") {
        let prefix = key;
        let (idx, entries) = block(&cx.opts, |min| {
            let p = prefix.clone();
            let w = p.clone();
            scatter(
                min,
                WatchKey::Prefix(w),
                |s| s.kv().index(),
                move |s| {
                    let (idx, entries) = s.kv().list(&p);
                    (idx, s.kv().index(), entries)
                },
                merge_listing,
            )
        })
        .await?;
        if entries.is_empty() {
            return Ok(with_meta(Response::new(404), idx));
        }
        let out: Vec<KvOut> = entries.iter().map(KvOut::from).collect();
        return Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx));
    }
    if q.has("keys") {
        let prefix = key;
        let sep = q.get("separator").unwrap_or("").to_string();
        let (idx, keys) = block(&cx.opts, |min| {
            let (p, sep) = (prefix.clone(), sep.clone());
            scatter(
                min,
                WatchKey::Prefix(p.clone()),
                |s| s.kv().index(),
                move |s| {
                    let (idx, keys) = s.kv().keys(&p, &sep);
                    (idx, s.kv().index(), keys)
                },
                |parts: Vec<(u64, u64, Vec<String>)>| {
                    let (idx, mut all) = merge_parts(parts);
                    all.sort();
                    all.dedup();
                    (idx, all)
                },
            )
        })
        .await?;
        if keys.is_empty() {
            return Ok(with_meta(Response::new(404), idx));
        }
        return Ok(with_meta(json_response(200, &keys, cx.opts.pretty), idx));
    }
    if key.is_empty() {
        return Err(ApiError::bad("Missing key name"));
    }
    let owner = owner_of(&key, core().placement.nshards());
    let (idx, entry) = block(&cx.opts, |min| {
        let k = key.clone();
        async move {
            let q = k.clone();
            Ok(Shards::shedding()
                .poll(owner, min, WatchKey::Key(k), move |s| {
                    match s.kv().get(&q) {
                        Some(e) => (e.modify_index, Some(e.clone())),
                        None => (s.kv().index(), None),
                    }
                })
                .await?)
        }
    })
    .await?;
    let Some(e) = entry else {
        return Ok(with_meta(Response::new(404), idx));
    };
    if q.has("raw") {
        let ct = if std::str::from_utf8(&e.value).is_ok() {
            "text/plain; charset=utf-8"
        } else {
            "application/octet-stream"
        };
        return Ok(with_meta(
            Response::new(200).with_body(ct, e.value.clone()),
            idx,
        ));
    }
    Ok(with_meta(
        json_response(200, &[KvOut::from(&e)], cx.opts.pretty),
        idx,
    ))
}

fn merge_parts<T>(parts: Vec<(u64, u64, Vec<T>)>) -> (u64, Vec<T>) {
    let (mut lindex, mut table, mut all) = (0, 0, Vec::new());
    for (idx, t, items) in parts {
        lindex = lindex.max(idx);
        table = table.max(t);
        all.extend(items);
    }
    (if lindex != 0 { lindex } else { table }, all)
}

fn merge_listing(parts: Vec<(u64, u64, Vec<KvEntry>)>) -> (u64, Vec<KvEntry>) {
    let (idx, mut all) = merge_parts(parts);
    all.sort_by(|a, b| a.key.cmp(&b.key));
    (idx, all)
}

fn parse_u64(q: &crate::http::request::Query, name: &str, what: &str) -> ApiResult<Option<u64>> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad(format!("Invalid {what}: {v:?}"))),
    }
}

async fn put(cx: Ctx, key: String) -> ApiResult<Response> {
    let started = Instant::now();
    if key.is_empty() {
        return Err(ApiError::bad("Missing key name"));
    }
    let max = core().settings.kv_max_value_size;
    let body: Bytes = cx.req.body.clone();
    if body.len() > max {
        return Err(ApiError::TooLarge(format!(
            "Request body({} bytes) too large, max size: {max} bytes.",
            body.len()
        )));
    }
    let q = &cx.req.query;
    let mut op = KvOp::new(KvVerb::Set, key);
    op.value = body;
    if let Some(f) = parse_u64(q, "flags", "flags")? {
        op.flags = f;
    }
    if let Some(c) = parse_u64(q, "cas", "cas index")? {
        op.index = c;
        op.verb = KvVerb::Cas;
    }
    if let Some(s) = q.get("acquire") {
        op.session = s.to_string();
        op.verb = KvVerb::Lock;
    }
    if let Some(s) = q.get("release") {
        op.session = s.to_string();
        op.verb = KvVerb::Unlock;
    }
    if op.verb == KvVerb::Lock {
        // Lock delay runs on wall time, so (as Consul) it is enforced before raft, by the
        // server taking the write, not by the state machine.
        let k = op.key.clone();
        let now = now_ms();
        let owner = owner_of(&k, core().placement.nshards());
        let delay = Shards::shedding()
            .call(owner, move |s| s.lock_delay_remaining(&k, now))
            .await?;
        if delay > 0 {
            log::warn!(
                "rejecting lock of {:?} due to lock-delay ({delay} ms left)",
                op.key
            );
            return Ok(bool_response(false, cx.opts.pretty));
        }
    }
    let r = super::write(Command::Kv(op)).await;
    crate::metrics::measure_since("consul.kvs.apply", &[], started);
    r.map(|ok| bool_response(ok, cx.opts.pretty))
}

async fn delete(cx: Ctx, key: String) -> ApiResult<Response> {
    let started = Instant::now();
    let q = &cx.req.query;
    let op = if q.has("recurse") {
        KvOp::new(KvVerb::DeleteTree, key)
    } else {
        if key.is_empty() {
            return Err(ApiError::bad("Missing key name"));
        }
        match parse_u64(q, "cas", "cas index")? {
            Some(c) => {
                let mut op = KvOp::new(KvVerb::DeleteCas, key);
                op.index = c;
                op
            }
            None => KvOp::new(KvVerb::Delete, key),
        }
    };
    let r = super::write(Command::Kv(op)).await;
    crate::metrics::measure_since("consul.kvs.apply", &[], started);
    r.map(|ok| bool_response(ok, cx.opts.pretty))
}
