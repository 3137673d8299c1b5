//! `/v1/agent/`: self, members, metrics, leave, reload.
use std::collections::BTreeMap;

use serde::Serialize;

use super::{allow, metrics, Ctx};
use crate::agent::{agent, Source};
use crate::checks::Status;
use crate::http::body::{self, Obj};
use crate::http::encode::{json_response, CheckOut, ServiceOut};
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

impl From<crate::agent::AgentError> for ApiError {
    fn from(e: crate::agent::AgentError) -> ApiError {
        use crate::agent::AgentError as E;
        match e {
            E::UnknownService(_) | E::UnknownCheck(_) => ApiError::NotFound(e.to_string()),
            E::Invalid(t) => ApiError::BadRequest(t),
            E::Check(crate::checks::CheckError::UnknownCheck(_)) => {
                ApiError::NotFound(e.to_string())
            }
            E::Check(c) => ApiError::Internal(c.to_string()),
        }
    }
}

fn body_value(cx: &Ctx) -> ApiResult<simd_json::OwnedValue> {
    body::parse(&cx.req.body)?.ok_or_else(|| ApiError::bad("Request decode failed: empty body"))
}

fn flag(cx: &Ctx, name: &str) -> ApiResult<bool> {
    match cx.req.query.get(name) {
        None => Err(ApiError::bad(format!("Missing value for {name}"))),
        Some(v) => crate::cli::args::go_bool(v)
            .map_err(|_| ApiError::bad(format!("Invalid value for {name}"))),
    }
}

fn agent_checks_map(
    cx: &Ctx,
    checks: Vec<muster_shards::catalog::HealthCheck>,
) -> ApiResult<Response> {
    let items: Vec<(String, CheckOut)> = checks
        .iter()
        .map(|c| (c.check_id.clone(), CheckOut::from(c)))
        .collect();
    let kept = filter_pairs(cx, items)?;
    let map: BTreeMap<String, CheckOut> = kept.into_iter().collect();
    Ok(json_response(200, &map, cx.opts.pretty))
}

/// `?filter=` on a map result applies to each value, as Consul does.
fn filter_pairs<T: Serialize>(cx: &Ctx, items: Vec<(String, T)>) -> ApiResult<Vec<(String, T)>> {
    if cx.opts.filter.is_none() {
        return Ok(items);
    }
    let (keys, values): (Vec<String>, Vec<T>) = items.into_iter().unzip();
    let wrapped: Vec<Keyed<T>> = keys
        .into_iter()
        .zip(values)
        .map(|(k, v)| Keyed(k, v))
        .collect();
    Ok(super::apply_filter(cx, wrapped)?
        .into_iter()
        .map(|Keyed(k, v)| (k, v))
        .collect())
}

/// A map entry that serializes as its value only, so filters see the value.
struct Keyed<T>(String, T);

impl<T: Serialize> Serialize for Keyed<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.1.serialize(s)
    }
}

/// A service followed by its `ContentHash`, as `/v1/agent/service/:id` answers.
#[derive(Serialize)]
struct WithHash {
    #[serde(flatten)]
    service: ServiceOut,
    #[serde(rename = "ContentHash")]
    content_hash: String,
}

/// 16 hex digits of a 64-bit FNV-1a over the service's JSON: stable while it is unchanged.
fn content_hash(bytes: &[u8]) -> String {
    format!("{:016x}", muster_shards::route::fnv1a(bytes))
}

#[derive(Serialize)]
struct AgentHealthOut {
    #[serde(rename = "AggregatedStatus")]
    aggregated_status: &'static str,
    #[serde(rename = "Service")]
    service: ServiceOut,
    #[serde(rename = "Checks")]
    checks: Vec<CheckOut>,
}

/// Consul's aggregation: maintenance beats critical beats warning beats passing.
fn aggregate(checks: &[muster_shards::catalog::HealthCheck]) -> &'static str {
    let has = |s: &str| checks.iter().any(|c| c.status == s);
    if checks.iter().any(|c| c.check_type == "maintenance") {
        "maintenance"
    } else if has("critical") {
        "critical"
    } else if has("warning") {
        "warning"
    } else {
        "passing"
    }
}

fn status_code(agg: &str) -> u16 {
    match agg {
        "passing" => 200,
        "warning" => 429,
        _ => 503,
    }
}

fn local_health(cx: &Ctx, by_name: Option<&str>, by_id: Option<&str>) -> ApiResult<Response> {
    let a = agent();
    let dc = core().settings.datacenter.clone();
    let services: Vec<muster_shards::catalog::Service> = a
        .services()
        .into_iter()
        .filter(|s| by_name.is_none_or(|n| s.service == n) && by_id.is_none_or(|i| s.id == i))
        .collect();
    if services.is_empty() {
        let what = by_name.or(by_id).unwrap_or_default();
        return Err(ApiError::NotFound(format!("ServiceName {what} Not Found")));
    }
    let rows: Vec<AgentHealthOut> = services
        .iter()
        .map(|s| {
            let checks = a.service_checks(&s.id);
            AgentHealthOut {
                aggregated_status: aggregate(&checks),
                service: ServiceOut::agent(s, Some(&dc)),
                checks: checks.iter().map(CheckOut::from).collect(),
            }
        })
        .collect();
    let worst = rows
        .iter()
        .map(|r| status_code(r.aggregated_status))
        .max()
        .unwrap_or(200);
    if cx.req.query.get("format") == Some("text") {
        let text = rows
            .iter()
            .max_by_key(|r| status_code(r.aggregated_status))
            .map_or("passing", |r| r.aggregated_status);
        return Ok(Response::new(worst).with_body("text/plain; charset=utf-8", text));
    }
    if by_id.is_some() {
        return Ok(json_response(worst, &rows[0], cx.opts.pretty));
    }
    Ok(json_response(worst, &rows, cx.opts.pretty))
}

async fn agent_routes(cx: Ctx, tail: &str) -> ApiResult<Option<Response>> {
    let a = agent();
    let pretty = cx.opts.pretty;
    let ok = || Ok(Some(Response::new(200)));
    if tail == "services" {
        allow(&cx, &[Method::Get])?;
        let dc = core().settings.datacenter.clone();
        let items: Vec<(String, ServiceOut)> = a
            .services()
            .iter()
            .map(|s| (s.id.clone(), ServiceOut::agent(s, Some(&dc))))
            .collect();
        let map: BTreeMap<String, ServiceOut> = filter_pairs(&cx, items)?.into_iter().collect();
        return Ok(Some(json_response(200, &map, pretty)));
    }
    if tail == "service/register" {
        allow(&cx, &[Method::Put])?;
        let v = body_value(&cx)?;
        let (svc, checks) = crate::agent::defs::service_registration(&v, false)?;
        let replace = cx.req.query.has("replace-existing-checks")
            && cx.req.query.get("replace-existing-checks") != Some("false");
        a.add_service(svc, checks, replace, Source::Api)?;
        return ok();
    }
    if let Some(id) = tail.strip_prefix("service/deregister/") {
        allow(&cx, &[Method::Put])?;
        a.remove_service(id)?;
        return ok();
    }
    if let Some(id) = tail.strip_prefix("service/maintenance/") {
        allow(&cx, &[Method::Put])?;
        let enable = flag(&cx, "enable")?;
        let reason = cx.req.query.get("reason").unwrap_or("");
        a.service_maintenance(id, enable, reason)?;
        return ok();
    }
    if let Some(id) = tail.strip_prefix("service/") {
        allow(&cx, &[Method::Get])?;
        let Some(s) = a.service(id) else {
            return Err(ApiError::NotFound(format!("unknown service ID: {id}")));
        };
        let dc = core().settings.datacenter.clone();
        let out = ServiceOut::agent(&s, Some(&dc));
        // Consul's ContentHash: a digest of the definition, for clients that block on `?hash=`.
        let hash = content_hash(&crate::http::encode::json(&out, false));
        let body = WithHash {
            service: out,
            content_hash: hash.clone(),
        };
        return Ok(Some(
            json_response(200, &body, pretty).with_header("X-Consul-ContentHash", hash),
        ));
    }
    if tail == "checks" {
        allow(&cx, &[Method::Get])?;
        return agent_checks_map(&cx, a.checks()).map(Some);
    }
    if tail == "check/register" {
        allow(&cx, &[Method::Put])?;
        let v = body_value(&cx)?;
        let c = crate::agent::defs::check_registration(&v, "", "", false)?;
        a.add_check(c, Source::Api)?;
        return ok();
    }
    if let Some(id) = tail.strip_prefix("check/deregister/") {
        allow(&cx, &[Method::Put])?;
        a.remove_check(id)?;
        return ok();
    }
    for (verb, status) in [
        ("pass", Status::Passing),
        ("warn", Status::Warning),
        ("fail", Status::Critical),
    ] {
        if let Some(id) = tail.strip_prefix(&format!("check/{verb}/")) {
            allow(&cx, &[Method::Put])?;
            let note = cx.req.query.get("note").unwrap_or("").to_string();
            a.update_ttl(id, status, note)?;
            return ok();
        }
    }
    if let Some(id) = tail.strip_prefix("check/update/") {
        allow(&cx, &[Method::Put])?;
        let v = body_value(&cx)?;
        let o = Obj::of(&v, "update")?;
        let status = o.str("Status")?.unwrap_or("");
        let status = Status::parse(status)
            .ok_or_else(|| ApiError::bad(format!("Invalid status {status:?}")))?;
        let output = o.str("Output")?.unwrap_or("").to_string();
        a.update_ttl(id, status, output)?;
        return ok();
    }
    if tail == "maintenance" {
        allow(&cx, &[Method::Put])?;
        let enable = flag(&cx, "enable")?;
        a.node_maintenance(enable, cx.req.query.get("reason").unwrap_or(""));
        return ok();
    }
    if let Some(name) = tail.strip_prefix("health/service/name/") {
        allow(&cx, &[Method::Get])?;
        return local_health(&cx, Some(name), None).map(Some);
    }
    if let Some(id) = tail.strip_prefix("health/service/id/") {
        allow(&cx, &[Method::Get])?;
        return local_health(&cx, None, Some(id)).map(Some);
    }
    Ok(None)
}

pub async fn handle(cx: Ctx, tail: &str) -> ApiResult<Response> {
    let tail = tail.to_string();
    let cx = match tail.as_str() {
        "self" | "members" | "metrics" | "leave" | "reload" => cx,
        _ => {
            return match agent_routes(cx, &tail).await? {
                Some(r) => Ok(r),
                None => Err(ApiError::unknown_path()),
            }
        }
    };
    match tail.as_str() {
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
        _ => Err(ApiError::unknown_path()),
    }
}
