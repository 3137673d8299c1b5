//! `/v1/catalog/`: nodes and datacenters (services arrive with service discovery).
use muster_shards::catalog::Node;
use muster_shards::shard::Table;

use super::{allow, scatter, Ctx};
use crate::http::blocking::{block, with_meta};
use crate::http::encode::{json_response, NodeOut};
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::core::core;
use crate::runtime::watch::WatchKey;

pub async fn handle(cx: Ctx, tail: &str) -> ApiResult<Response> {
    allow(&cx, &[Method::Get])?;
    match tail {
        "datacenters" => Ok(json_response(
            200,
            &[core().settings.datacenter.clone()],
            cx.opts.pretty,
        )),
        "nodes" => nodes(cx).await,
        _ => Err(ApiError::NotFound(format!("/v1/catalog/{tail}: not found"))),
    }
}

async fn nodes(cx: Ctx) -> ApiResult<Response> {
    let (idx, nodes) = block(&cx.opts, |min| {
        scatter(
            min,
            WatchKey::Table(Table::Nodes),
            |s| s.catalog().nodes_index(),
            |s| {
                (
                    s.catalog().nodes_index(),
                    s.catalog().nodes().cloned().collect::<Vec<Node>>(),
                )
            },
            |parts: Vec<(u64, Vec<Node>)>| {
                let mut idx = 0;
                let mut all = Vec::new();
                for (i, n) in parts {
                    idx = idx.max(i);
                    all.extend(n);
                }
                all.sort_by(|a, b| a.node.cmp(&b.node));
                (idx, all)
            },
        )
    })
    .await?;
    let out: Vec<NodeOut> = nodes.iter().map(NodeOut::from).collect();
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}
