//! `/v1/catalog/`: register, deregister, datacenters, nodes, services, service/:name,
//! node/:node, node-services/:node. Reads scatter over the shards (the catalog is partitioned
//! by node name); per-service indexes keep blocking queries on one service quiet otherwise.
use std::collections::{BTreeMap, BTreeSet};

use muster_shards::catalog::{Node, Registration, Service};
use muster_shards::command::Command;
use muster_shards::coord::owner_of;
use muster_shards::shard::Table;
use serde::Serialize;

use super::{allow, bool_response, defs, scatter, Ctx};
use crate::http::blocking::{block, with_meta};
use crate::http::body::{self, Obj};
use crate::http::encode::{json_response, NodeOut, ServiceNodeOut, ServiceOut};
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::{Method, Query};
use crate::http::response::Response;
use crate::runtime::core::{core, Polled, Shards};
use crate::runtime::watch::WatchKey;

pub async fn handle(cx: Ctx, tail: &str) -> ApiResult<Response> {
    let (verb, arg) = tail.split_once('/').unwrap_or((tail, ""));
    match verb {
        "register" => {
            allow(&cx, &[Method::Put])?;
            register(cx).await
        }
        "deregister" => {
            allow(&cx, &[Method::Put])?;
            deregister(cx).await
        }
        "datacenters" | "nodes" | "services" | "service" | "node" | "node-services"
        | "gateway-services" | "connect" => {
            allow(&cx, &[Method::Get])?;
            match verb {
                "datacenters" => Ok(json_response(
                    200,
                    &[core().settings.datacenter.clone()],
                    cx.opts.pretty,
                )),
                "nodes" => nodes(cx).await,
                "services" => services(cx).await,
                "service" if !arg.is_empty() => service(cx, arg.to_string()).await,
                "node" if !arg.is_empty() => node(cx, arg.to_string(), false).await,
                "node-services" if !arg.is_empty() => node(cx, arg.to_string(), true).await,
                "connect" if !arg.is_empty() => {
                    super::mesh::catalog_connect(cx, arg.to_string()).await
                }
                "gateway-services" if !arg.is_empty() => {
                    super::mesh::gateway_services(cx, arg.to_string()).await
                }
                "service" | "node" | "node-services" | "connect" => {
                    Err(ApiError::bad(format!("Missing {verb} name")))
                }
                "gateway-services" => Err(ApiError::bad("Missing gateway name")),
                _ => Err(ApiError::unknown_path()),
            }
        }
        _ => Err(ApiError::unknown_path()),
    }
}

async fn register(cx: Ctx) -> ApiResult<Response> {
    let v = body::parse(&cx.req.body)?
        .ok_or_else(|| ApiError::bad("Request decode failed: empty body"))?;
    let o = Obj::of(&v, "registration")?;
    let settings = core().settings.clone();
    if let Some(dc) = o.str("Datacenter")? {
        if !dc.is_empty() && dc != settings.datacenter {
            return Err(ApiError::NoPathToDatacenter);
        }
    }
    let mut reg = Registration {
        node: Node {
            id: o.str("ID")?.unwrap_or_default().to_string(),
            node: o.str("Node")?.unwrap_or_default().to_string(),
            address: o.str("Address")?.unwrap_or_default().to_string(),
            datacenter: settings.datacenter.clone(),
            tagged_addresses: o.string_map("TaggedAddresses")?.unwrap_or_default(),
            meta: o.string_map("NodeMeta")?.unwrap_or_default(),
            ..Node::default()
        },
        skip_node_update: o.bool("SkipNodeUpdate")?.unwrap_or(false),
        service: None,
        checks: Vec::new(),
    };
    if reg.node.node.is_empty() {
        return Err(ApiError::bad("Must provide node"));
    }
    if reg.node.address.is_empty() && !reg.skip_node_update {
        return Err(ApiError::bad("Must provide address"));
    }
    if let Some(s) = o.obj("Service")? {
        let s = defs::service(s, "Service")?;
        if s.service.is_empty() {
            return Err(ApiError::bad("Must provide service name with ID"));
        }
        reg.service = Some(s);
    }
    if let Some(c) = o.obj("Check")? {
        reg.checks.push(defs::catalog_check(c)?);
    }
    if let Some(list) = o
        .get("Checks")
        .and_then(|v| simd_json::prelude::ValueAsArray::as_array(v))
    {
        for c in list {
            reg.checks.push(defs::catalog_check(Obj::of(c, "check")?)?);
        }
    }
    for c in &reg.checks {
        if !c.status.is_empty() && !defs::valid_status(&c.status) {
            return Err(ApiError::bad(format!(
                "Invalid check status {:?}",
                c.status
            )));
        }
    }
    let started = std::time::Instant::now();
    let ok = super::write(Command::Register(Box::new(reg))).await;
    crate::metrics::measure_since("consul.catalog.register", &[], started);
    Ok(bool_response(ok?, cx.opts.pretty))
}

async fn deregister(cx: Ctx) -> ApiResult<Response> {
    let v = body::parse(&cx.req.body)?
        .ok_or_else(|| ApiError::bad("Request decode failed: empty body"))?;
    let o = Obj::of(&v, "deregistration")?;
    let node = o.str("Node")?.unwrap_or_default().to_string();
    if node.is_empty() {
        return Err(ApiError::bad("Must provide node"));
    }
    let service_id = o
        .str("ServiceID")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let check_id = o
        .str("CheckID")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let started = std::time::Instant::now();
    let ok = super::write(Command::Deregister {
        node,
        service_id,
        check_id,
    })
    .await;
    crate::metrics::measure_since("consul.catalog.deregister", &[], started);
    Ok(bool_response(ok?, cx.opts.pretty))
}

async fn nodes(cx: Ctx) -> ApiResult<Response> {
    let meta = node_meta_filter(&cx.req.query)?;
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
    let out: Vec<NodeOut> = nodes
        .iter()
        .filter(|n| meta_matches(&n.meta, &meta))
        .map(NodeOut::from)
        .collect();
    let out = super::apply_filter(&cx, out)?;
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}

async fn services(cx: Ctx) -> ApiResult<Response> {
    let meta = node_meta_filter(&cx.req.query)?;
    let (idx, tags) = block(&cx.opts, |min| {
        let meta = meta.clone();
        scatter(
            min,
            WatchKey::Table(Table::Services),
            |s| s.catalog().services_index(),
            move |s| {
                let c = s.catalog();
                (
                    c.services_index(),
                    c.service_tags_on(|n| meta_matches(&n.meta, &meta)),
                )
            },
            |parts: Vec<(u64, BTreeMap<String, BTreeSet<String>>)>| {
                let mut idx = 0;
                let mut all: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                for (i, m) in parts {
                    idx = idx.max(i);
                    for (k, t) in m {
                        all.entry(k).or_default().extend(t);
                    }
                }
                (idx, all)
            },
        )
    })
    .await?;
    let out: BTreeMap<String, Vec<String>> = tags
        .into_iter()
        .map(|(k, t)| (k, t.into_iter().collect()))
        .collect();
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}

/// `?node-meta=key:value` pairs (all must match).
pub fn node_meta_filter(q: &Query) -> ApiResult<Vec<(String, String)>> {
    q.all("node-meta")
        .map(|kv| match kv.split_once(':') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(ApiError::bad(format!(
                "Invalid node-meta filter {kv:?}: expected key:value"
            ))),
        })
        .collect()
}

pub fn meta_matches(meta: &BTreeMap<String, String>, want: &[(String, String)]) -> bool {
    want.iter().all(|(k, v)| meta.get(k) == Some(v))
}

/// Every `?tag=` must be among the instance's tags.
pub fn tags_match(s: &Service, tags: &[String]) -> bool {
    tags.iter().all(|t| s.tags.contains(t))
}

/// Instances of one service over all shards, with the service's index (Consul: the service's
/// own index, or the services table index once the service is gone).
pub async fn gather_instances<T, G>(
    min: u64,
    name: String,
    gather: G,
) -> ApiResult<Polled<(u64, Vec<T>)>>
where
    T: Send + 'static,
    G: Fn(&muster_shards::shard::Shard, &str) -> Vec<T> + Send + Sync + Clone + 'static,
{
    let (n1, n2) = (name.clone(), name.clone());
    scatter(
        min,
        WatchKey::Service(name),
        move |s| s.catalog().service_index(&n1),
        move |s| {
            (
                s.catalog().service_index(&n2),
                s.catalog().services_index(),
                gather(s, &n2),
            )
        },
        |parts: Vec<(u64, u64, Vec<T>)>| {
            let (mut idx, mut table, mut all) = (0, 0, Vec::new());
            for (i, t, items) in parts {
                idx = idx.max(i);
                table = table.max(t);
                all.extend(items);
            }
            (if idx != 0 { idx } else { table }, all)
        },
    )
    .await
}

async fn service(cx: Ctx, name: String) -> ApiResult<Response> {
    let tags: Vec<String> = cx.req.query.all("tag").map(str::to_string).collect();
    let meta = node_meta_filter(&cx.req.query)?;
    crate::metrics::incr_counter(
        "consul.catalog.service.query",
        &[("service", name.clone())],
        1.0,
    );
    let (idx, mut rows) = block(&cx.opts, |min| {
        gather_instances(min, name.clone(), |s, n| s.catalog().service_instances(n))
    })
    .await?;
    rows.sort_by(|a, b| (&a.0.node, &a.1.id).cmp(&(&b.0.node, &b.1.id)));
    let out: Vec<ServiceNodeOut> = rows
        .iter()
        .filter(|(n, s)| tags_match(s, &tags) && meta_matches(&n.meta, &meta))
        .map(|(n, s)| ServiceNodeOut::new(n, s))
        .collect();
    let out = super::apply_filter(&cx, out)?;
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}

#[derive(Serialize)]
struct NodeServicesMap {
    #[serde(rename = "Node")]
    node: NodeOut,
    #[serde(rename = "Services")]
    services: BTreeMap<String, ServiceOut>,
}

#[derive(Serialize)]
struct NodeServicesList {
    #[serde(rename = "Node")]
    node: NodeOut,
    #[serde(rename = "Services")]
    services: Vec<ServiceOut>,
}

async fn node(cx: Ctx, name: String, as_list: bool) -> ApiResult<Response> {
    let owner = owner_of(&name, core().placement.nshards());
    let (idx, found) = block(&cx.opts, |min| {
        let n = name.clone();
        async move {
            Ok(Shards::shedding()
                .poll(owner, min, WatchKey::Table(Table::Services), move |s| {
                    let c = s.catalog();
                    let idx = c.services_index().max(c.nodes_index());
                    (
                        idx,
                        c.node(&n).cloned().map(|node| (node, c.node_services(&n))),
                    )
                })
                .await?)
        }
    })
    .await?;
    let Some((node, services)) = found else {
        // Consul answers a missing node with null (and 404 for node-services).
        return Ok(with_meta(
            if as_list {
                Response::new(404)
            } else {
                json_response(200, &Option::<()>::None, cx.opts.pretty)
            },
            idx,
        ));
    };
    let r = if as_list {
        json_response(
            200,
            &NodeServicesList {
                node: NodeOut::from(&node),
                services: services.iter().map(ServiceOut::catalog).collect(),
            },
            cx.opts.pretty,
        )
    } else {
        json_response(
            200,
            &NodeServicesMap {
                node: NodeOut::from(&node),
                services: services
                    .iter()
                    .map(|s| (s.id.clone(), ServiceOut::catalog(s)))
                    .collect(),
            },
            cx.opts.pretty,
        )
    };
    Ok(with_meta(r, idx))
}
