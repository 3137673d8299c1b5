//! `/v1/internal/ui/`: the summaries Consul's web UI reads — services, nodes, node/:node.
//! Each blocks on the catalog tables it summarises.
use std::collections::{BTreeMap, BTreeSet};

use muster_shards::catalog::{HealthCheck, Node, Service};
use muster_shards::shard::{Shard, Table};
use serde::Serialize;

use super::mesh::scatter_tables;
use super::{allow, Ctx};
use crate::http::blocking::{block, with_meta};
use crate::http::encode::{json_response, CheckOut, ServiceOut};
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::core::core;

const TABLES: &[Table] = &[Table::Nodes, Table::Services, Table::Checks];

pub async fn handle(cx: Ctx, tail: &str) -> ApiResult<Response> {
    let (verb, arg) = tail.split_once('/').unwrap_or((tail, ""));
    match verb {
        "services" | "nodes" | "node" => allow(&cx, &[Method::Get])?,
        _ => return Err(ApiError::unknown_path()),
    }
    match verb {
        "services" => services(cx).await,
        "nodes" => nodes(cx, None).await,
        _ if arg.is_empty() => Err(ApiError::bad("Missing node name")),
        _ => nodes(cx, Some(arg.to_string())).await,
    }
}

/// A node with its services and checks, as one shard holds it.
type NodeRow = (Node, Vec<Service>, Vec<HealthCheck>);

fn node_rows(s: &Shard, only: Option<&str>) -> Vec<NodeRow> {
    let c = s.catalog();
    c.nodes()
        .filter(|n| only.is_none_or(|o| o == n.node))
        .map(|n| (n.clone(), c.node_services(&n.node), c.node_checks(&n.node)))
        .collect()
}

async fn gather(cx: &Ctx, only: Option<String>) -> ApiResult<(u64, Vec<NodeRow>)> {
    block(&cx.opts, |min| {
        let o = only.clone();
        scatter_tables(
            min,
            TABLES,
            move |s| node_rows(s, o.as_deref()),
            |parts| {
                let mut all: Vec<NodeRow> = parts.into_iter().flatten().collect();
                all.sort_by(|a, b| a.0.node.cmp(&b.0.node));
                all
            },
        )
    })
    .await
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeInfoOut {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    datacenter: String,
    tagged_addresses: BTreeMap<String, String>,
    meta: BTreeMap<String, String>,
    services: Vec<ServiceOut>,
    checks: Vec<CheckOut>,
}

fn node_info(row: &NodeRow) -> NodeInfoOut {
    let (n, services, checks) = row;
    NodeInfoOut {
        id: n.id.clone(),
        node: n.node.clone(),
        address: n.address.clone(),
        datacenter: n.datacenter.clone(),
        tagged_addresses: n.tagged_addresses.clone(),
        meta: n.meta.clone(),
        services: services.iter().map(ServiceOut::catalog).collect(),
        checks: checks.iter().map(CheckOut::from).collect(),
    }
}

async fn nodes(cx: Ctx, only: Option<String>) -> ApiResult<Response> {
    let single = only.is_some();
    let (idx, rows) = gather(&cx, only).await?;
    if single {
        return Ok(match rows.first() {
            Some(r) => with_meta(json_response(200, &node_info(r), cx.opts.pretty), idx),
            // Consul's UI endpoint answers a missing node with a bare 404.
            None => with_meta(Response::new(404), idx),
        });
    }
    let out: Vec<NodeInfoOut> = rows.iter().map(node_info).collect();
    let out = super::apply_filter(&cx, out)?;
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceSummaryOut {
    #[serde(skip_serializing_if = "String::is_empty")]
    kind: String,
    name: String,
    datacenter: String,
    tags: Vec<String>,
    nodes: Vec<String>,
    external_sources: Vec<String>,
    instance_count: usize,
    checks_passing: usize,
    checks_warning: usize,
    checks_critical: usize,
    gateway_config: BTreeMap<String, String>,
    transparent_proxy: bool,
    connected_with_proxy: bool,
    connected_with_gateway: bool,
}

#[derive(Default)]
struct Acc {
    kind: String,
    tags: BTreeSet<String>,
    nodes: BTreeSet<String>,
    sources: BTreeSet<String>,
    instances: usize,
    passing: usize,
    warning: usize,
    critical: usize,
}

async fn services(cx: Ctx) -> ApiResult<Response> {
    let (idx, rows) = gather(&cx, None).await?;
    let mut by_name: BTreeMap<String, Acc> = BTreeMap::new();
    let mut proxied: BTreeSet<String> = BTreeSet::new();
    for (node, services, checks) in &rows {
        for s in services {
            if s.kind == "connect-proxy" {
                if let Some(dest) = proxy_destination(s) {
                    proxied.insert(dest);
                }
            }
            let a = by_name.entry(s.service.clone()).or_default();
            a.kind = s.kind.clone();
            a.tags.extend(s.tags.iter().cloned());
            a.nodes.insert(node.node.clone());
            if let Some(src) = s.meta.get("external-source") {
                a.sources.insert(src.clone());
            }
            a.instances += 1;
            // Node checks count for every instance on the node, as in Consul's summary.
            for c in checks
                .iter()
                .filter(|c| c.service_id.is_empty() || c.service_id == s.id)
            {
                match c.status.as_str() {
                    "passing" => a.passing += 1,
                    "warning" => a.warning += 1,
                    _ => a.critical += 1,
                }
            }
        }
    }
    let dc = core().settings.datacenter.clone();
    let out: Vec<ServiceSummaryOut> = by_name
        .into_iter()
        .map(|(name, a)| ServiceSummaryOut {
            connected_with_proxy: proxied.contains(&name),
            kind: a.kind,
            name,
            datacenter: dc.clone(),
            tags: a.tags.into_iter().collect(),
            nodes: a.nodes.into_iter().collect(),
            external_sources: a.sources.into_iter().collect(),
            instance_count: a.instances,
            checks_passing: a.passing,
            checks_warning: a.warning,
            checks_critical: a.critical,
            gateway_config: BTreeMap::new(),
            transparent_proxy: false,
            connected_with_gateway: false,
        })
        .collect();
    let out = super::apply_filter(&cx, out)?;
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}

fn proxy_destination(s: &Service) -> Option<String> {
    let mut b = s.proxy.as_ref()?.clone().into_bytes();
    let v = simd_json::to_owned_value(&mut b).ok()?;
    use simd_json::prelude::*;
    v.as_object()?
        .get("DestinationServiceName")?
        .as_str()
        .map(str::to_string)
}
