//! `/v1/agent/`: self, members, metrics, leave, reload.
use std::collections::BTreeMap;

use serde::Serialize;

use super::{allow, metrics, Ctx};
use crate::http::encode::json_response;
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::core::core;
use crate::runtime::{Settings, CONSUL_COMPAT_VERSION};

/// Serf member status codes as Consul reports them.
const MEMBER_ALIVE: u8 = 1;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MemberOut {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub status: u8,
    pub protocol_min: u8,
    pub protocol_max: u8,
    pub protocol_cur: u8,
    pub delegate_min: u8,
    pub delegate_max: u8,
    pub delegate_cur: u8,
}

/// This agent as a LAN member (the only one until gossip exists).
pub fn local_member(s: &Settings) -> MemberOut {
    let mut tags = BTreeMap::new();
    let mut tag = |k: &str, v: String| {
        tags.insert(k.to_string(), v);
    };
    tag("acls", "0".into());
    tag(
        "build",
        format!(
            "{CONSUL_COMPAT_VERSION}:muster-{}",
            env!("CARGO_PKG_VERSION")
        ),
    );
    tag("dc", s.datacenter.clone());
    tag("id", s.node_id.clone());
    tag("segment", String::new());
    tag("vsn", "2".into());
    tag("vsn_min", "2".into());
    tag("vsn_max", "3".into());
    if s.server {
        tag("role", "consul".into());
        tag("port", s.server_port.to_string());
        tag("raft_vsn", "3".into());
        tag("expect", "0".into());
        tag("wan_join_port", s.serf_wan_port.to_string());
        if s.bootstrap {
            tag("bootstrap", "1".into());
        }
    } else {
        tag("role", "node".into());
    }
    MemberOut {
        name: s.node_name.clone(),
        addr: s.advertise_addr.to_string(),
        port: s.serf_lan_port,
        tags,
        status: MEMBER_ALIVE,
        protocol_min: 1,
        protocol_max: 5,
        protocol_cur: 2,
        delegate_min: 2,
        delegate_max: 5,
        delegate_cur: 4,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigOut {
    datacenter: String,
    primary_datacenter: String,
    node_name: String,
    #[serde(rename = "NodeID")]
    node_id: String,
    revision: &'static str,
    server: bool,
    version: &'static str,
    build_date: &'static str,
}

#[derive(Serialize)]
struct PlacementOut {
    #[serde(rename = "Executors")]
    executors: usize,
    #[serde(rename = "CPUs")]
    cpus: Vec<usize>,
    #[serde(rename = "Roles")]
    roles: BTreeMap<&'static str, usize>,
    #[serde(rename = "Shards")]
    shards: Vec<usize>,
}

#[derive(Serialize)]
struct MusterOut {
    #[serde(rename = "Version")]
    version: &'static str,
    #[serde(rename = "Placement")]
    placement: PlacementOut,
}

#[derive(Serialize)]
struct SelfOut {
    #[serde(rename = "Config")]
    config: ConfigOut,
    #[serde(rename = "Member")]
    member: MemberOut,
    #[serde(rename = "Meta")]
    meta: BTreeMap<String, String>,
    #[serde(rename = "Stats")]
    stats: BTreeMap<&'static str, BTreeMap<&'static str, String>>,
    #[serde(rename = "Muster")]
    muster: MusterOut,
}

fn agent_self(cx: &Ctx) -> Response {
    let c = core();
    let s = &c.settings;
    let p = &c.placement;
    let view = c.raft_view.borrow().clone();
    let mut roles = BTreeMap::new();
    for r in crate::runtime::placement::Role::ALL {
        roles.insert(r.name(), p.executor_of(r));
    }
    let mut stats = BTreeMap::new();
    stats.insert(
        "agent",
        BTreeMap::from([
            ("check_monitors", "0".to_string()),
            ("check_ttls", "0".to_string()),
        ]),
    );
    stats.insert(
        "raft",
        BTreeMap::from([
            (
                "state",
                if view.is_leader { "Leader" } else { "Follower" }.to_string(),
            ),
            ("term", view.term.to_string()),
        ]),
    );
    stats.insert(
        "runtime",
        BTreeMap::from([
            ("arch", std::env::consts::ARCH.to_string()),
            ("os", std::env::consts::OS.to_string()),
            ("cpu_count", p.executors.to_string()),
        ]),
    );
    let out = SelfOut {
        config: ConfigOut {
            datacenter: s.datacenter.clone(),
            primary_datacenter: s.datacenter.clone(),
            node_name: s.node_name.clone(),
            node_id: s.node_id.clone(),
            revision: "muster",
            server: s.server,
            version: CONSUL_COMPAT_VERSION,
            build_date: "",
        },
        member: local_member(s),
        meta: BTreeMap::from([("consul-network-segment".to_string(), String::new())]),
        stats,
        muster: MusterOut {
            version: env!("CARGO_PKG_VERSION"),
            placement: PlacementOut {
                executors: p.executors,
                cpus: p.cpus.clone(),
                roles,
                shards: p.shards.clone(),
            },
        },
    };
    json_response(200, &out, cx.opts.pretty)
}

pub async fn handle(cx: Ctx, tail: &str) -> ApiResult<Response> {
    match tail {
        "self" => {
            allow(&cx, &[Method::Get])?;
            Ok(agent_self(&cx))
        }
        "members" => {
            allow(&cx, &[Method::Get])?;
            if cx.req.query.has("wan") && !core().settings.server {
                return Ok(json_response(200, &Vec::<MemberOut>::new(), cx.opts.pretty));
            }
            Ok(json_response(
                200,
                &[local_member(&core().settings)],
                cx.opts.pretty,
            ))
        }
        "metrics" => {
            allow(&cx, &[Method::Get])?;
            metrics::handle(cx).await
        }
        "leave" => {
            allow(&cx, &[Method::Put])?;
            log::info!("leave requested over HTTP; shutting down");
            core().control.request_shutdown();
            Ok(Response::new(200))
        }
        "reload" => {
            allow(&cx, &[Method::Put])?;
            crate::runtime::reload().await.map_err(ApiError::Internal)?;
            Ok(Response::new(200))
        }
        _ => Err(ApiError::NotFound(format!("/v1/agent/{tail}: not found"))),
    }
}
