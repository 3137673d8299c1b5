//! `/v1/health/`: service/:name, checks/:service, node/:node, state/:state.
use muster_shards::catalog::{HealthCheck, HealthEntry};
use muster_shards::coord::owner_of;
use muster_shards::shard::Table;

use super::catalog::{gather_instances, meta_matches, node_meta_filter, tags_match};
use super::{allow, scatter, Ctx};
use crate::http::blocking::{block, with_meta};
use crate::http::encode::{json_response, CheckOut, HealthOut};
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::core::{core, Shards};
use crate::runtime::watch::WatchKey;

pub async fn handle(cx: Ctx, tail: &str) -> ApiResult<Response> {
    let (verb, arg) = tail.split_once('/').unwrap_or((tail, ""));
    if !matches!(
        verb,
        "service" | "checks" | "node" | "state" | "connect" | "ingress"
    ) {
        return Err(ApiError::unknown_path());
    }
    allow(&cx, &[Method::Get])?;
    if arg.is_empty() {
        return Err(ApiError::bad(format!("Missing {verb} name")));
    }
    match verb {
        "service" => service(cx, arg.to_string()).await,
        "checks" => service_checks(cx, arg.to_string()).await,
        "node" => node(cx, arg.to_string()).await,
        "state" => state(cx, arg.to_string()).await,
        "connect" | "ingress" => super::mesh::health_mesh(cx, arg.to_string()).await,
        _ => Err(ApiError::unknown_path()),
    }
}

/// Consul's `?passing`: every check of the instance (node checks included) is passing.
fn all_passing(e: &HealthEntry) -> bool {
    e.checks.iter().all(|c| c.status == "passing")
}

async fn service(cx: Ctx, name: String) -> ApiResult<Response> {
    let q = &cx.req.query;
    let passing = q.has("passing") && q.get("passing") != Some("false");
    let tags: Vec<String> = q.all("tag").map(str::to_string).collect();
    let meta = node_meta_filter(q)?;
    let (idx, mut rows) = block(&cx.opts, |min| {
        gather_instances(min, name.clone(), |s, n| s.catalog().health_instances(n))
    })
    .await?;
    rows.sort_by(|a, b| (&a.node.node, &a.service.id).cmp(&(&b.node.node, &b.service.id)));
    let out: Vec<HealthOut> = rows
        .iter()
        .filter(|e| !passing || all_passing(e))
        .filter(|e| tags_match(&e.service, &tags) && meta_matches(&e.node.meta, &meta))
        .map(HealthOut::from)
        .collect();
    let out = super::apply_filter(&cx, out)?;
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}

fn checks_response(cx: &Ctx, idx: u64, mut checks: Vec<HealthCheck>) -> ApiResult<Response> {
    checks.sort_by(|a, b| (&a.node, &a.check_id).cmp(&(&b.node, &b.check_id)));
    let out: Vec<CheckOut> = checks.iter().map(CheckOut::from).collect();
    let out = super::apply_filter(cx, out)?;
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}

async fn service_checks(cx: Ctx, name: String) -> ApiResult<Response> {
    let (idx, checks) = block(&cx.opts, |min| {
        gather_instances(min, name.clone(), |s, n| s.catalog().service_checks(n))
    })
    .await?;
    checks_response(&cx, idx, checks)
}

async fn node(cx: Ctx, name: String) -> ApiResult<Response> {
    let owner = owner_of(&name, core().placement.nshards());
    let (idx, checks) = block(&cx.opts, |min| {
        let n = name.clone();
        async move {
            Ok(Shards::shedding()
                .poll(owner, min, WatchKey::Table(Table::Checks), move |s| {
                    (s.catalog().checks_index(), s.catalog().node_checks(&n))
                })
                .await?)
        }
    })
    .await?;
    checks_response(&cx, idx, checks)
}

async fn state(cx: Ctx, state: String) -> ApiResult<Response> {
    if !matches!(state.as_str(), "any" | "passing" | "warning" | "critical") {
        return Err(ApiError::bad("Invalid check state"));
    }
    let (idx, checks) = block(&cx.opts, |min| {
        let st = state.clone();
        scatter(
            min,
            WatchKey::Table(Table::Checks),
            |s| s.catalog().checks_index(),
            move |s| (s.catalog().checks_index(), s.catalog().checks_in_state(&st)),
            |parts: Vec<(u64, Vec<HealthCheck>)>| {
                let mut idx = 0;
                let mut all = Vec::new();
                for (i, c) in parts {
                    idx = idx.max(i);
                    all.extend(c);
                }
                (idx, all)
            },
        )
    })
    .await?;
    checks_response(&cx, idx, checks)
}
