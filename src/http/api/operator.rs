//! `/v1/operator/`: raft configuration, peer removal and leadership transfer, usage, keyring.
use std::collections::{BTreeMap, BTreeSet};

use muster_shards::shard::Table;
use serde::Serialize;

use super::{allow, scatter, Ctx};
use crate::http::blocking::{block, with_meta};
use crate::http::encode::json_response;
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::core::core;
use crate::runtime::raftcore;
use crate::runtime::watch::WatchKey;

#[derive(Serialize)]
struct ServerOut {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Node")]
    node: String,
    #[serde(rename = "Address")]
    address: String,
    #[serde(rename = "Leader")]
    leader: bool,
    #[serde(rename = "ProtocolVersion")]
    protocol_version: &'static str,
    #[serde(rename = "Voter")]
    voter: bool,
    #[serde(rename = "LastIndex")]
    last_index: u64,
}

#[derive(Serialize)]
struct ConfigurationOut {
    #[serde(rename = "Servers")]
    servers: Vec<ServerOut>,
    #[serde(rename = "Index")]
    index: u64,
}

pub async fn handle(cx: Ctx, tail: &str) -> ApiResult<Response> {
    match tail {
        "raft/configuration" => {
            allow(&cx, &[Method::Get])?;
            let servers = raftcore::servers().await?;
            let index = servers.iter().map(|s| s.last_index).max().unwrap_or(0);
            let out = ConfigurationOut {
                servers: servers
                    .into_iter()
                    .map(|s| ServerOut {
                        id: s.id,
                        node: s.node,
                        address: s.address,
                        leader: s.leader,
                        protocol_version: "3",
                        voter: s.voter,
                        last_index: s.last_index,
                    })
                    .collect(),
                index,
            };
            Ok(json_response(200, &out, cx.opts.pretty))
        }
        "raft/peer" => {
            allow(&cx, &[Method::Delete])?;
            remove_peer(&cx).await
        }
        "raft/transfer-leader" => {
            allow(&cx, &[Method::Post])?;
            transfer_leader(&cx).await
        }
        "usage" => {
            allow(&cx, &[Method::Get])?;
            usage(cx).await
        }
        "keyring" => {
            allow(
                &cx,
                &[Method::Get, Method::Post, Method::Put, Method::Delete],
            )?;
            keyring(&cx)
        }
        _ => Err(ApiError::unknown_path()),
    }
}

async fn remove_peer(cx: &Ctx) -> ApiResult<Response> {
    let q = &cx.req.query;
    let (id, address) = (q.get("id"), q.get("address"));
    let (what, value, known) = match (id, address) {
        (None, None) => {
            return Err(ApiError::bad(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad("Must specify only one of ?id or ?address"))
        }
        (Some(i), None) => {
            let servers = raftcore::servers().await?;
            ("id", i, servers.iter().any(|s| s.id == i))
        }
        (None, Some(a)) => {
            let servers = raftcore::servers().await?;
            ("address", a, servers.iter().any(|s| s.address == a))
        }
    };
    if !known {
        return Err(ApiError::Internal(format!(
            "{what} {value:?} was not found in the Raft configuration"
        )));
    }
    Err(ApiError::Internal(
        "removing a server from the Raft configuration is not supported yet".into(),
    ))
}

async fn transfer_leader(cx: &Ctx) -> ApiResult<Response> {
    let servers = raftcore::servers().await?;
    let others = servers.iter().filter(|s| !s.leader && s.voter).count();
    if let Some(id) = cx.req.query.get("id").filter(|i| !i.is_empty()) {
        if !servers.iter().any(|s| s.id == id) {
            return Err(ApiError::Internal(format!(
                "rpc error: code = Unknown desc = cannot find server with id {id:?}"
            )));
        }
    }
    if others == 0 {
        // Raft's own refusal when no other voter could take over, as Consul passes it on.
        return Err(ApiError::Internal(
            "rpc error: code = Unknown desc = cannot find peer".into(),
        ));
    }
    Err(ApiError::Internal(
        "leadership transfer is not supported yet".into(),
    ))
}

/// Gossip encryption does not exist here, so every keyring operation fails the way Consul's
/// does on an agent without `encrypt`: each pool reports the empty keyring.
fn keyring(cx: &Ctx) -> ApiResult<Response> {
    if cx.req.method != Method::Get {
        let v = crate::http::body::parse(&cx.req.body)?
            .ok_or_else(|| ApiError::bad("Request decode failed: EOF"))?;
        crate::http::body::Obj::of(&v, "keyring request")?;
    }
    let s = &core().settings;
    let msg = "Keyring is empty (encryption not enabled)";
    let mut errs = Vec::new();
    if s.server {
        errs.push("WAN error: 1/1 nodes reported failure".to_string());
        errs.push(format!("{}.{}: {msg}", s.node_name, s.datacenter));
    }
    errs.push(format!(
        "{} (LAN) error: 1/1 nodes reported failure",
        s.datacenter
    ));
    errs.push(format!("{}: {msg}", s.node_name));
    let mut text = format!("{} errors occurred:\n", errs.len());
    for e in &errs {
        text.push_str(&format!("\t* {e}\n"));
    }
    text.push('\n');
    Err(ApiError::Internal(text))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceUsageOut {
    services: usize,
    service_instances: usize,
    connect_service_instances: BTreeMap<&'static str, usize>,
    billable_service_instances: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UsageOut {
    usage: BTreeMap<String, ServiceUsageOut>,
    index: u64,
}

/// (service name, kind, Connect-native) of one instance.
type UsageRow = (String, String, bool);

const CONNECT_KINDS: [&str; 5] = [
    "connect-proxy",
    "ingress-gateway",
    "mesh-gateway",
    "terminating-gateway",
    "api-gateway",
];

/// `/v1/operator/usage`: service counts for this datacenter.
async fn usage(cx: Ctx) -> ApiResult<Response> {
    let (idx, rows) = block(&cx.opts, |min| {
        scatter(
            min,
            WatchKey::Table(Table::Services),
            |s| s.catalog().services_index(),
            |s| {
                let c = s.catalog();
                let rows: Vec<UsageRow> = c
                    .nodes()
                    .flat_map(|n| c.node_services(&n.node))
                    .map(|svc| {
                        let native = svc
                            .connect
                            .as_deref()
                            .is_some_and(|t| t.replace(' ', "").contains("\"Native\":true"));
                        (svc.service, svc.kind, native)
                    })
                    .collect();
                (c.services_index(), rows)
            },
            |parts: Vec<(u64, Vec<UsageRow>)>| {
                let mut idx = 0;
                let mut all = Vec::new();
                for (i, r) in parts {
                    idx = idx.max(i);
                    all.extend(r);
                }
                (idx, all)
            },
        )
    })
    .await?;
    let mut connect: BTreeMap<&'static str, usize> =
        CONNECT_KINDS.iter().map(|k| (*k, 0)).collect();
    connect.insert("connect-native", 0);
    let mut names = BTreeSet::new();
    let mut billable = 0;
    for (name, kind, native) in &rows {
        names.insert(name.clone());
        if let Some(k) = CONNECT_KINDS.iter().find(|k| **k == kind) {
            *connect.entry(k).or_default() += 1;
        } else if name != "consul" {
            billable += 1;
        }
        if *native {
            *connect.entry("connect-native").or_default() += 1;
        }
    }
    let dc = core().settings.datacenter.clone();
    let out = UsageOut {
        usage: BTreeMap::from([(
            dc,
            ServiceUsageOut {
                services: names.len(),
                service_instances: rows.len(),
                connect_service_instances: connect,
                billable_service_instances: billable,
            },
        )]),
        index: idx,
    };
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}
