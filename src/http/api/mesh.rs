//! Service-mesh read endpoints, answered as Consul answers them while no mesh runs:
//! `/v1/catalog/connect/:service`, `/v1/health/connect/:service` (the service's Connect proxies
//! and Connect-native instances), `/v1/health/ingress/:service` (instances of the ingress
//! gateways that expose it), `/v1/catalog/gateway-services/:gateway` (from the gateway's config
//! entry) and `/v1/discovery-chain/:service` (the chain compiled from config entries).
use std::collections::BTreeSet;

use muster_shards::catalog::{HealthEntry, Node, Service};
use muster_shards::config_entry::ConfigEntry;
use muster_shards::shard::{Shard, Table};
use serde::Serialize;
use simd_json::prelude::*;
use simd_json::OwnedValue;

use super::{allow, Ctx};
use crate::http::blocking::{block, with_meta};
use crate::http::encode::{json_response, HealthOut, ServiceNodeOut};
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::core::{core, Polled};
use crate::runtime::watch::WatchKey;

/// A table's index on one shard.
pub fn table_index(s: &Shard, t: Table) -> u64 {
    let c = s.catalog();
    match t {
        Table::Nodes => c.nodes_index(),
        Table::Services => c.services_index(),
        Table::Checks => c.checks_index(),
        Table::ConfigEntries => s.config().index(),
        Table::Kv => s.kv().index(),
        Table::Sessions => s.sessions().index(),
    }
}

/// [`super::scatter_keys`] over several tables: the index is the highest of them, and a
/// blocked query wakes when any of them moves.
pub async fn scatter_tables<T, R, G, M>(
    min: u64,
    tables: &'static [Table],
    gather: G,
    merge: M,
) -> ApiResult<Polled<(u64, R)>>
where
    T: Send + 'static,
    G: Fn(&mut Shard) -> T + Send + Sync + Clone + 'static,
    M: FnOnce(Vec<T>) -> R,
{
    let version = move |s: &Shard| tables.iter().map(|t| table_index(s, *t)).max().unwrap_or(0);
    let keys = tables.iter().map(|t| WatchKey::Table(*t)).collect();
    super::scatter_keys(
        min,
        keys,
        version,
        move |s| (version(s), gather(s)),
        |parts: Vec<(u64, T)>| {
            let idx = parts.iter().map(|p| p.0).max().unwrap_or(0);
            (idx, merge(parts.into_iter().map(|p| p.1).collect()))
        },
    )
    .await
}

fn parse_json(text: &Option<String>) -> Option<OwnedValue> {
    let mut b = text.as_ref()?.clone().into_bytes();
    simd_json::to_owned_value(&mut b).ok()
}

fn json_str<'a>(v: &'a OwnedValue, key: &str) -> Option<&'a str> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v.as_str())
}

fn json_bool(v: &OwnedValue, key: &str) -> bool {
    v.as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
        .and_then(|(_, v)| v.as_bool())
        .unwrap_or(false)
}

/// Whether the instance serves `name` over Connect: a proxy for it, or a native instance.
fn serves_connect(s: &Service, name: &str) -> bool {
    if s.kind == "connect-proxy" {
        return parse_json(&s.proxy)
            .as_ref()
            .and_then(|p| json_str(p, "DestinationServiceName").map(|d| d == name))
            .unwrap_or(false);
    }
    s.kind.is_empty()
        && s.service == name
        && parse_json(&s.connect)
            .as_ref()
            .is_some_and(|c| json_bool(c, "Native"))
}

/// Instances on this shard matching `pick`, with their node and applicable checks.
fn entries_where(sh: &Shard, pick: impl Fn(&Service) -> bool) -> Vec<HealthEntry> {
    let c = sh.catalog();
    let mut out = Vec::new();
    for node in c.nodes() {
        let services = c.node_services(&node.node);
        if !services.iter().any(&pick) {
            continue;
        }
        let checks = c.node_checks(&node.node);
        for s in services.into_iter().filter(|s| pick(s)) {
            out.push(HealthEntry {
                node: node.clone(),
                checks: checks
                    .iter()
                    .filter(|ch| ch.service_id.is_empty() || ch.service_id == s.id)
                    .cloned()
                    .collect(),
                service: s,
            });
        }
    }
    out
}

fn merge_entries(parts: Vec<Vec<HealthEntry>>) -> Vec<HealthEntry> {
    let mut all: Vec<HealthEntry> = parts.into_iter().flatten().collect();
    all.sort_by(|a, b| (&a.node.node, &a.service.id).cmp(&(&b.node.node, &b.service.id)));
    all
}

const CATALOG_TABLES: &[Table] = &[Table::Nodes, Table::Services, Table::Checks];
const MESH_TABLES: &[Table] = &[
    Table::Nodes,
    Table::Services,
    Table::Checks,
    Table::ConfigEntries,
];

/// `?peer=`: no peerings exist, so nothing is imported from one; Consul answers such a read
/// with an empty list.
pub fn names_unknown_peer(cx: &Ctx) -> bool {
    cx.req.query.get("peer").is_some_and(|p| !p.is_empty())
}

pub async fn catalog_connect(cx: Ctx, name: String) -> ApiResult<Response> {
    let peer = names_unknown_peer(&cx);
    let (idx, rows) = block(&cx.opts, |min| {
        let n = name.clone();
        scatter_tables(
            min,
            CATALOG_TABLES,
            move |s| {
                if peer {
                    return Vec::new();
                }
                entries_where(s, |svc| serves_connect(svc, &n))
                    .into_iter()
                    .map(|e| (e.node, e.service))
                    .collect::<Vec<(Node, Service)>>()
            },
            |parts| {
                let mut all: Vec<(Node, Service)> = parts.into_iter().flatten().collect();
                all.sort_by(|a, b| (&a.0.node, &a.1.id).cmp(&(&b.0.node, &b.1.id)));
                all
            },
        )
    })
    .await?;
    let out: Vec<ServiceNodeOut> = rows
        .iter()
        .map(|(n, s)| ServiceNodeOut::new(n, s))
        .collect();
    let out = super::apply_filter(&cx, out)?;
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}

/// `/v1/health/connect/:service` and `/v1/health/ingress/:service`.
pub async fn health_mesh(cx: Ctx, name: String) -> ApiResult<Response> {
    let ingress = cx.req.path.starts_with("/v1/health/ingress/");
    let q = &cx.req.query;
    let passing = q.has("passing") && q.get("passing") != Some("false");
    let peer = names_unknown_peer(&cx);
    let (idx, rows) = if ingress {
        // The gateways that expose the service come from ingress-gateway config entries.
        let (_, entries) = super::config_entry::read(&cx, "ingress-gateway".into(), None).await?;
        let gateways: BTreeSet<String> = entries
            .iter()
            .filter(|e| ingress_exposes(e, &name))
            .map(|e| e.name.clone())
            .collect();
        block(&cx.opts, |min| {
            let g = gateways.clone();
            scatter_tables(
                min,
                MESH_TABLES,
                move |s| {
                    entries_where(s, |svc| {
                        svc.kind == "ingress-gateway" && g.contains(&svc.service)
                    })
                },
                merge_entries,
            )
        })
        .await?
    } else {
        block(&cx.opts, |min| {
            let n = name.clone();
            scatter_tables(
                min,
                CATALOG_TABLES,
                move |s| {
                    if peer {
                        return Vec::new();
                    }
                    entries_where(s, |svc| serves_connect(svc, &n))
                },
                merge_entries,
            )
        })
        .await?
    };
    let out: Vec<HealthOut> = rows
        .iter()
        .filter(|e| !passing || e.checks.iter().all(|c| c.status == "passing"))
        .map(HealthOut::from)
        .collect();
    let out = super::apply_filter(&cx, out)?;
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}

fn entry_json(e: &ConfigEntry) -> Option<OwnedValue> {
    let mut b = e.body.clone().into_bytes();
    simd_json::to_owned_value(&mut b).ok()
}

fn arr<'a>(v: &'a OwnedValue, key: &str) -> Vec<&'a OwnedValue> {
    v.as_object()
        .and_then(|o| o.get(key))
        .and_then(|a| a.as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn ingress_exposes(e: &ConfigEntry, service: &str) -> bool {
    let Some(v) = entry_json(e) else {
        return false;
    };
    arr(&v, "Listeners").into_iter().any(|l| {
        arr(l, "Services")
            .into_iter()
            .any(|s| matches!(json_str(s, "Name"), Some(n) if n == service || n == "*"))
    })
}

#[derive(Serialize)]
struct NameOut {
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GatewayServiceOut {
    gateway: NameOut,
    service: NameOut,
    gateway_kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    protocol: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<String>,
    #[serde(rename = "CAFile", skip_serializing_if = "String::is_empty")]
    ca_file: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    cert_file: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    key_file: String,
    #[serde(rename = "SNI", skip_serializing_if = "String::is_empty")]
    sni: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    from_wildcard: bool,
    create_index: u64,
    modify_index: u64,
}

fn gateway_rows(e: &ConfigEntry) -> Vec<GatewayServiceOut> {
    let Some(v) = entry_json(e) else {
        return Vec::new();
    };
    let s = |x: &OwnedValue, k: &str| json_str(x, k).unwrap_or("").to_string();
    let row = |svc: &OwnedValue| GatewayServiceOut {
        gateway: NameOut {
            name: e.name.clone(),
        },
        service: NameOut {
            name: s(svc, "Name"),
        },
        gateway_kind: e.kind.clone(),
        port: None,
        protocol: String::new(),
        hosts: Vec::new(),
        ca_file: String::new(),
        cert_file: String::new(),
        key_file: String::new(),
        sni: String::new(),
        from_wildcard: s(svc, "Name") == "*",
        create_index: e.modify_index,
        modify_index: e.modify_index,
    };
    if e.kind == "terminating-gateway" {
        return arr(&v, "Services")
            .into_iter()
            .map(|svc| GatewayServiceOut {
                ca_file: s(svc, "CAFile"),
                cert_file: s(svc, "CertFile"),
                key_file: s(svc, "KeyFile"),
                sni: s(svc, "SNI"),
                ..row(svc)
            })
            .collect();
    }
    let mut out = Vec::new();
    for l in arr(&v, "Listeners") {
        let protocol = match s(l, "Protocol") {
            p if p.is_empty() => "tcp".to_string(),
            p => p,
        };
        let port = l
            .as_object()
            .and_then(|o| o.get("Port"))
            .and_then(|p| p.as_i64());
        for svc in arr(l, "Services") {
            let hosts = arr(svc, "Hosts")
                .into_iter()
                .filter_map(|h| h.as_str().map(str::to_string))
                .collect();
            out.push(GatewayServiceOut {
                port,
                protocol: protocol.clone(),
                hosts,
                ..row(svc)
            });
        }
    }
    out
}

pub async fn gateway_services(cx: Ctx, gateway: String) -> ApiResult<Response> {
    let (idx, entries) = super::config_entry::read(&cx, String::new(), None).await?;
    let mut out: Vec<GatewayServiceOut> = entries
        .iter()
        .filter(|e| {
            e.name == gateway
                && matches!(e.kind.as_str(), "terminating-gateway" | "ingress-gateway")
        })
        .flat_map(gateway_rows)
        .collect();
    out.sort_by(|a, b| a.service.name.cmp(&b.service.name));
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}

/// Consul's default connect timeout for a resolver without one.
const DEFAULT_CONNECT_TIMEOUT: &str = "5s";

/// `/v1/discovery-chain/:service`: the chain of a service, compiled from its resolver and
/// protocol config entries (routers and splitters are not compiled into nodes yet).
pub async fn discovery_chain(cx: Ctx, tail: &str) -> ApiResult<Response> {
    allow(&cx, &[Method::Get, Method::Post])?;
    if tail.is_empty() {
        return Err(ApiError::bad("Missing chain name"));
    }
    let service = tail.to_string();
    let settings = core().settings.clone();
    let dc = match cx.req.query.get("compile-dc") {
        Some(d) if !d.is_empty() => d.to_string(),
        _ => settings.datacenter.clone(),
    };
    let (idx, entries) = super::config_entry::read(&cx, String::new(), None).await?;
    let find = |kind: &str, name: &str| {
        entries
            .iter()
            .find(|e| e.kind == kind && e.name == name)
            .and_then(entry_json)
    };
    let proxy_protocol = find("proxy-defaults", "global").and_then(|v| {
        v.as_object()
            .and_then(|o| o.get("Config"))
            .and_then(|c| json_str(c, "protocol").map(str::to_lowercase))
    });
    let protocol = find("service-defaults", &service)
        .and_then(|v| json_str(&v, "Protocol").map(str::to_string))
        .filter(|p| !p.is_empty())
        .or(proxy_protocol)
        .unwrap_or_else(|| "tcp".into());
    let resolver = find("service-resolver", &service);
    let timeout = resolver
        .as_ref()
        .and_then(|r| json_str(r, "ConnectTimeout").map(str::to_string))
        .unwrap_or_else(|| DEFAULT_CONNECT_TIMEOUT.into());
    let target = format!("{service}.default.default.{dc}");
    let trust = trust_domain(&settings.datacenter);
    let sni = format!("{service}.default.{dc}.internal.{trust}");
    let node_name = format!("resolver:{target}");
    let chain = simd_json::json!({
        "Chain": {
            "ServiceName": service.clone(),
            "Namespace": "default",
            "Partition": "default",
            "Datacenter": dc.clone(),
            "CustomizationHash": "",
            "Default": resolver.is_none(),
            "Protocol": protocol,
            "ServiceMeta": null,
            "EnvoyExtensions": null,
            "StartNode": node_name.clone(),
            "Nodes": {
                node_name.clone(): {
                    "Type": "resolver",
                    "Name": target.clone(),
                    "Resolver": {
                        "ConnectTimeout": timeout.clone(),
                        "Default": resolver.is_none(),
                        "Target": target.clone(),
                    }
                }
            },
            "Targets": {
                target.clone(): {
                    "ID": target.clone(),
                    "Service": service.clone(),
                    "Namespace": "default",
                    "Partition": "default",
                    "Datacenter": dc.clone(),
                    "MeshGateway": {},
                    "Subset": {},
                    "ConnectTimeout": timeout,
                    "SNI": sni.clone(),
                    "Name": sni,
                }
            }
        }
    });
    Ok(with_meta(json_response(200, &chain, cx.opts.pretty), idx))
}

/// A stable stand-in for the Connect CA's trust domain (Consul: `<cluster id>.consul`) until
/// a CA exists: derived from the datacenter so every server answers the same.
fn trust_domain(dc: &str) -> String {
    let a = muster_shards::route::fnv1a(dc.as_bytes());
    let b = muster_shards::route::fnv1a(format!("{dc}/trust-domain").as_bytes());
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}.consul",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}
