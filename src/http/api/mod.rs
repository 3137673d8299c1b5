//! The Consul HTTP API: routing, and helpers shared by the endpoint modules.
mod agent;
mod agent_extra;
mod catalog;
mod config_entry;
mod config_kinds;
pub mod defs;
mod health;
mod kv;
mod mesh;
mod metrics;
mod operator;
mod session;
mod snapshot;
pub use session::SERF_CHECK_ID;
mod status;
mod txn;
mod ui;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::future::{join_all, LocalBoxFuture};
use futures::FutureExt;
use muster_shards::shard::Shard;

use super::blocking::QueryOpts;
use super::encode::json_response;
use super::error::{ApiError, ApiResult};
use super::request::{Method, Request};
use super::response::Response;
use super::server::Handler;
use crate::runtime::core::{core, Polled, Shards};
use crate::runtime::watch::WatchKey;

/// One request with its parsed query options.
pub struct Ctx {
    pub req: Request,
    pub opts: QueryOpts,
}

/// The API's entry point for the HTTP server.
pub struct Api;

impl Handler for Api {
    fn handle(&self, req: Request) -> LocalBoxFuture<'static, Response> {
        async move {
            let started = Instant::now();
            let route = route_label(&req.path);
            let resp = match dispatch(req).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            };
            crate::metrics::measure_since(
                "muster.http.request",
                &[("route", route.to_string())],
                started,
            );
            resp
        }
        .boxed_local()
    }
}

/// A low-cardinality label for request metrics: the API group.
fn route_label(path: &str) -> &'static str {
    const GROUPS: [&str; 14] = [
        "kv",
        "session",
        "txn",
        "status",
        "agent",
        "catalog",
        "operator",
        "health",
        "event",
        "snapshot",
        "config",
        "discovery-chain",
        "internal",
        "acl",
    ];
    let group = path
        .strip_prefix("/v1/")
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    GROUPS
        .iter()
        .find(|g| **g == group)
        .copied()
        .unwrap_or("other")
}

async fn dispatch(req: Request) -> ApiResult<Response> {
    let opts = QueryOpts::parse(&req.query)?;
    let path = req.path.clone();
    let cx = Ctx { req, opts };
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(ApiError::unknown_path());
    };
    if let Some(key) = rest.strip_prefix("kv/") {
        return kv::handle(cx, key.to_string()).await;
    }
    if rest == "kv" {
        return kv::handle(cx, String::new()).await;
    }
    let (group, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if let Some(r) = removed_legacy_acl(group, tail, &path) {
        return Err(r);
    }
    match group {
        "agent" if agent_extra::serves(tail) => agent_extra::handle(cx, tail).await,
        "config" if rest == "config" => config_entry::apply(cx).await,
        "config" => config_entry::handle(cx, tail).await,
        "discovery-chain" => mesh::discovery_chain(cx, tail).await,
        "internal" if tail.starts_with("ui/") => ui::handle(cx, &tail["ui/".len()..]).await,
        "session" => session::handle(cx, tail).await,
        "txn" if tail.is_empty() => txn::handle(cx).await,
        "status" => status::handle(cx, tail).await,
        "agent" => agent::handle(cx, tail).await,
        "catalog" => catalog::handle(cx, tail).await,
        "health" => health::handle(cx, tail).await,
        "operator" => operator::handle(cx, tail).await,
        "snapshot" if tail.is_empty() => snapshot::handle(cx).await,
        _ => Err(ApiError::unknown_path()),
    }
}

/// Consul 1.11 removed the legacy ACL API; its endpoints answer 410 with this text.
fn removed_legacy_acl(group: &str, tail: &str, path: &str) -> Option<ApiError> {
    if group != "acl" {
        return None;
    }
    let verb = tail.split('/').next().unwrap_or("");
    let exact = matches!(tail, "create" | "update" | "list");
    let with_id = matches!(verb, "destroy" | "info" | "clone") && tail.contains('/');
    (exact || with_id).then(|| {
        ApiError::Gone(format!(
            "Endpoint {path} for the legacy ACL system was removed in Consul 1.11."
        ))
    })
}

/// Answers 405 unless the request's method is one of `allowed` (an `OPTIONS` request gets
/// the endpoint's methods, as Consul answers it).
pub fn allow(cx: &Ctx, allowed: &[Method]) -> ApiResult<()> {
    if allowed.contains(&cx.req.method) {
        return Ok(());
    }
    let names: Vec<&'static str> = allowed.iter().map(Method::name).collect();
    if cx.req.method == Method::Options {
        return Err(ApiError::Options(names));
    }
    Err(ApiError::MethodNotAllowed {
        method: cx.req.method.as_str().to_string(),
        allow: names,
    })
}

pub fn bool_response(b: bool, pretty: bool) -> Response {
    json_response(200, &b, pretty)
}

/// Commits a write that answers true/false (`/v1/kv`, `/v1/catalog/register`...); a
/// state-machine refusal is Consul's 500 with its text.
pub async fn write(cmd: muster_shards::command::Command) -> ApiResult<bool> {
    use muster_shards::command::CommandResult;
    match crate::runtime::raftcore::propose(cmd).await?.1 {
        CommandResult::Bool(b) => Ok(b),
        CommandResult::Error(e) => Err(ApiError::Internal(e)),
        other => Err(ApiError::Internal(format!(
            "unexpected apply result {other:?}"
        ))),
    }
}

/// The leader's wall clock for proposals, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A scatter-gather read that can block: `gather` runs on every shard and returns its part;
/// `merge` makes the answer and its index. When the index has not passed `min`, a wait on
/// `key` is registered on every shard whose `version` has not moved since its part was read.
pub async fn scatter<T, R, V, G, M>(
    min: u64,
    key: WatchKey,
    version: V,
    gather: G,
    merge: M,
) -> ApiResult<Polled<(u64, R)>>
where
    T: Send + 'static,
    V: Fn(&Shard) -> u64 + Send + Sync + Clone + 'static,
    G: Fn(&mut Shard) -> T + Send + Sync + Clone + 'static,
    M: FnOnce(Vec<T>) -> (u64, R),
{
    scatter_keys(min, vec![key], version, gather, merge).await
}

/// [`scatter`] for answers that depend on several things: a blocked query wakes when any of
/// `keys` moves on a shard.
pub async fn scatter_keys<T, R, V, G, M>(
    min: u64,
    keys: Vec<WatchKey>,
    version: V,
    gather: G,
    merge: M,
) -> ApiResult<Polled<(u64, R)>>
where
    T: Send + 'static,
    V: Fn(&Shard) -> u64 + Send + Sync + Clone + 'static,
    G: Fn(&mut Shard) -> T + Send + Sync + Clone + 'static,
    M: FnOnce(Vec<T>) -> (u64, R),
{
    let sh = Shards::shedding();
    // One state across shards (the visibility rule), so the index is that of a whole state.
    let (g, v) = (gather.clone(), version.clone());
    let parts = muster_shards::coord::read_all(&sh, move |shard| (v(shard), g(shard))).await?;
    let versions: Vec<u64> = parts.iter().map(|p| p.0).collect();
    let (idx, r) = merge(parts.into_iter().map(|p| p.1).collect());
    if min == 0 || idx > min {
        return Ok(Polled::Ready((idx, r)));
    }
    let regs = join_all(versions.into_iter().enumerate().flat_map(|(s, seen)| {
        let version = version.clone();
        keys.iter().map(move |key| {
            let v = version.clone();
            sh.watch(s, key.clone(), move |shard| v(shard) != seen)
        })
    }))
    .await;
    let mut waits = Vec::with_capacity(regs.len());
    for r in regs {
        match r? {
            Some(rx) => waits.push(rx),
            // That shard moved meanwhile: read again at once.
            None => return Ok(Polled::Wait(Vec::new())),
        }
    }
    Ok(Polled::Wait(waits))
}

/// Applies `?filter=` to result items, evaluated on each item's JSON as the API returns it.
/// A bad expression is a 400 even when there is nothing to filter.
pub fn apply_filter<T: serde::Serialize>(cx: &Ctx, items: Vec<T>) -> ApiResult<Vec<T>> {
    let Some(expr) = &cx.opts.filter else {
        return Ok(items);
    };
    // The filter's errors already carry Consul's "Failed to create boolean expression
    // evaluator:" prefix.
    let f = crate::filter::Filter::parse(expr).map_err(|e| ApiError::bad(e.to_string()))?;
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let mut bytes = super::encode::json(&it, false);
        let v =
            simd_json::to_owned_value(&mut bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
        if f.matches(&v).map_err(|e| ApiError::bad(e.to_string()))? {
            out.push(it);
        }
    }
    Ok(out)
}

/// The shard whose session replica this core reads: its own if it hosts one.
pub fn session_shard() -> usize {
    core().shard.as_ref().map_or(0, |(s, _)| *s)
}
