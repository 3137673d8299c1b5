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

/// A Serf network coordinate; a lone agent keeps Vivaldi's initial one.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CoordOut {
    vec: [f64; 8],
    error: f64,
    adjustment: f64,
    height: f64,
}

impl Default for CoordOut {
    fn default() -> Self {
        CoordOut {
            vec: [0.0; 8],
            error: 1.5,
            adjustment: 0.0,
            height: 1e-5,
        }
    }
}

#[derive(Serialize)]
struct GrpcPortsOut {
    #[serde(rename = "Plaintext")]
    plaintext: i64,
    #[serde(rename = "TLS")]
    tls: i64,
}

#[derive(Serialize)]
struct XdsOut {
    /// Empty: Muster serves no xDS, so it vouches for no proxy version.
    #[serde(rename = "SupportedProxies")]
    supported_proxies: BTreeMap<String, Vec<String>>,
    #[serde(rename = "Port")]
    port: i64,
    #[serde(rename = "Ports")]
    ports: GrpcPortsOut,
}

/// Exactly Consul's top-level keys: clients compare the set. Muster's own facts are under
/// `Stats.muster` and `DebugConfig.Muster`.
#[derive(Serialize)]
struct SelfOut {
    #[serde(rename = "Config")]
    config: ConfigOut,
    #[serde(rename = "DebugConfig")]
    debug_config: debug_config::Map,
    #[serde(rename = "Coord")]
    coord: CoordOut,
    #[serde(rename = "Member")]
    member: MemberOut,
    #[serde(rename = "Stats")]
    stats: BTreeMap<&'static str, BTreeMap<&'static str, String>>,
    #[serde(rename = "Meta")]
    meta: BTreeMap<String, String>,
    #[serde(rename = "xDS")]
    xds: XdsOut,
}

/// `DebugConfig`: Consul prints its sanitized runtime configuration there, keyed by the
/// runtime field names; Muster reports the fields it has, plus its own section.
mod debug_config {
    use std::collections::BTreeMap;

    use serde::Serialize;

    #[derive(Serialize)]
    #[serde(untagged)]
    pub enum Val {
        Bool(bool),
        Int(i64),
        Str(String),
        List(Vec<String>),
        Map(BTreeMap<String, Val>),
    }

    pub type Map = BTreeMap<String, Val>;
}

use debug_config::Val;

fn stats_section(pairs: Vec<(&'static str, String)>) -> BTreeMap<&'static str, String> {
    pairs.into_iter().collect()
}

async fn agent_self(cx: &Ctx) -> ApiResult<Response> {
    let c = core();
    let s = &c.settings;
    let p = &c.placement;
    let view = c.raft_view.borrow().clone();
    let raft = crate::runtime::raftcore::stats().await.ok();
    let a = agent();
    let (n_services, n_checks) = (a.services().len(), a.checks().len());
    let (monitors, ttls) = a.runner_counts();
    let b = |v: bool| v.to_string();
    let mut stats = BTreeMap::new();
    stats.insert(
        "agent",
        stats_section(vec![
            ("check_monitors", monitors.to_string()),
            ("check_ttls", ttls.to_string()),
            ("services", n_services.to_string()),
            ("checks", n_checks.to_string()),
        ]),
    );
    stats.insert(
        "build",
        stats_section(vec![
            ("revision", String::new()),
            ("version", CONSUL_COMPAT_VERSION.to_string()),
            ("version_metadata", String::new()),
            ("prerelease", String::new()),
        ]),
    );
    if s.server {
        stats.insert(
            "consul",
            stats_section(vec![
                ("server", b(true)),
                ("leader", b(view.is_leader)),
                ("leader_addr", view.leader_addr.clone()),
                ("bootstrap", b(s.bootstrap)),
                ("known_datacenters", "1".to_string()),
                ("acl", "disabled".to_string()),
            ]),
        );
    } else {
        stats.insert(
            "consul",
            stats_section(vec![
                ("server", b(false)),
                (
                    "known_servers",
                    usize::from(view.known_leader()).to_string(),
                ),
            ]),
        );
    }
    let (num_peers, latest_configuration) = match crate::runtime::raftcore::servers().await {
        Ok(servers) => {
            let conf: Vec<String> = servers
                .iter()
                .map(|v| {
                    format!(
                        "{{Suffrage:{} ID:{} Address:{}}}",
                        if v.voter { "Voter" } else { "Nonvoter" },
                        v.id,
                        v.address
                    )
                })
                .collect();
            (
                servers.len().saturating_sub(1),
                format!("[{}]", conf.join(" ")),
            )
        }
        Err(_) => (0, "[]".to_string()),
    };
    if let Some(r) = &raft {
        let last_contact = if view.is_leader {
            "0".to_string()
        } else if view.known_leader() {
            format!("{}ms", view.last_contact_ms)
        } else {
            "never".to_string()
        };
        stats.insert(
            "raft",
            stats_section(vec![
                ("state", r.state.to_string()),
                ("term", r.term.to_string()),
                ("last_log_index", r.last_log_index.to_string()),
                ("last_log_term", r.term.to_string()),
                ("commit_index", r.commit_index.to_string()),
                ("applied_index", r.applied_index.to_string()),
                ("fsm_pending", "0".to_string()),
                ("last_snapshot_index", r.last_snapshot_index.to_string()),
                ("last_snapshot_term", "0".to_string()),
                ("protocol_version", "3".to_string()),
                ("protocol_version_min", "0".to_string()),
                ("protocol_version_max", "3".to_string()),
                ("snapshot_version_min", "0".to_string()),
                ("snapshot_version_max", "1".to_string()),
                ("latest_configuration_index", "0".to_string()),
                ("latest_configuration", latest_configuration),
                ("last_contact", last_contact),
                ("num_peers", num_peers.to_string()),
            ]),
        );
    }
    let serf = || {
        stats_section(vec![
            ("members", "1".to_string()),
            ("failed", "0".to_string()),
            ("left", "0".to_string()),
            ("health_score", "0".to_string()),
            ("member_time", "1".to_string()),
            ("event_time", "1".to_string()),
            ("query_time", "1".to_string()),
            ("intent_queue", "0".to_string()),
            ("event_queue", "0".to_string()),
            ("query_queue", "0".to_string()),
            ("encrypted", b(false)),
            ("coordinate_resets", "0".to_string()),
        ])
    };
    stats.insert("serf_lan", serf());
    if s.server {
        stats.insert("serf_wan", serf());
    }
    stats.insert(
        "runtime",
        stats_section(vec![
            ("arch", std::env::consts::ARCH.to_string()),
            ("os", std::env::consts::OS.to_string()),
            ("version", format!("muster{}", env!("CARGO_PKG_VERSION"))),
            ("max_procs", p.executors.to_string()),
            ("goroutines", "0".to_string()),
            (
                "cpu_count",
                std::thread::available_parallelism()
                    .map_or(p.executors, usize::from)
                    .to_string(),
            ),
        ]),
    );
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let roles: Vec<String> = crate::runtime::placement::Role::ALL
        .iter()
        .map(|r| format!("{}={}", r.name(), p.executor_of(*r)))
        .collect();
    stats.insert(
        "muster",
        stats_section(vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("executors", p.executors.to_string()),
            ("cpus", list(&p.cpus)),
            ("roles", roles.join(",")),
            ("shards", list(&p.shards)),
        ]),
    );
    let cfg = c.config.borrow().clone();
    let port = |p: Option<u16>| p.map_or(-1, i64::from);
    let grpc = cfg.ports.grpc.map_or(-1, i64::from);
    let addrs = |v: &[std::net::IpAddr]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let mut placement = BTreeMap::new();
    placement.insert("Executors".to_string(), Val::Int(p.executors as i64));
    placement.insert(
        "CPUs".to_string(),
        Val::List(p.cpus.iter().map(usize::to_string).collect()),
    );
    placement.insert(
        "Roles".to_string(),
        Val::Map(
            crate::runtime::placement::Role::ALL
                .iter()
                .map(|r| (r.name().to_string(), Val::Int(p.executor_of(*r) as i64)))
                .collect(),
        ),
    );
    placement.insert(
        "Shards".to_string(),
        Val::List(p.shards.iter().map(usize::to_string).collect()),
    );
    let mut muster = BTreeMap::new();
    muster.insert(
        "Version".to_string(),
        Val::Str(env!("CARGO_PKG_VERSION").to_string()),
    );
    muster.insert("Placement".to_string(), Val::Map(placement));
    let debug: debug_config::Map = [
        ("Datacenter", Val::Str(s.datacenter.clone())),
        ("PrimaryDatacenter", Val::Str(s.datacenter.clone())),
        ("NodeName", Val::Str(s.node_name.clone())),
        ("NodeID", Val::Str(s.node_id.clone())),
        ("ServerMode", Val::Bool(s.server)),
        ("Bootstrap", Val::Bool(s.bootstrap)),
        ("BootstrapExpect", Val::Int(i64::from(cfg.bootstrap_expect))),
        ("DevMode", Val::Bool(s.dev)),
        (
            "DataDir",
            Val::Str(
                s.data_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
            ),
        ),
        ("AdvertiseAddrLAN", Val::Str(s.advertise_addr.to_string())),
        ("ClientAddrs", Val::List(addrs(&s.client_addrs))),
        ("HTTPPort", Val::Int(port(s.http_port))),
        ("DNSPort", Val::Int(port(s.dns_port))),
        ("GRPCPort", Val::Int(grpc)),
        ("SerfPortLAN", Val::Int(i64::from(s.serf_lan_port))),
        ("SerfPortWAN", Val::Int(i64::from(s.serf_wan_port))),
        ("ServerPort", Val::Int(i64::from(s.server_port))),
        ("EnableScriptChecks", Val::Bool(s.enable_script_checks)),
        (
            "EnableLocalScriptChecks",
            Val::Bool(s.enable_local_script_checks),
        ),
        ("Revision", Val::Str(String::new())),
        ("Version", Val::Str(CONSUL_COMPAT_VERSION.to_string())),
        ("Muster", Val::Map(muster)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let out = SelfOut {
        config: ConfigOut {
            datacenter: s.datacenter.clone(),
            primary_datacenter: s.datacenter.clone(),
            node_name: s.node_name.clone(),
            node_id: s.node_id.clone(),
            revision: "",
            server: s.server,
            version: CONSUL_COMPAT_VERSION,
            build_date: "",
        },
        debug_config: debug,
        coord: CoordOut::default(),
        member: local_member(s),
        stats,
        meta: crate::runtime::raftcore::self_node().meta,
        xds: XdsOut {
            supported_proxies: BTreeMap::new(),
            port: grpc,
            ports: GrpcPortsOut {
                plaintext: grpc,
                tls: -1,
            },
        },
    };
    Ok(json_response(200, &out, cx.opts.pretty))
}

impl From<crate::agent::AgentError> for ApiError {
    fn from(e: crate::agent::AgentError) -> ApiError {
        use crate::agent::AgentError as E;
        match e {
            E::UnknownService(_) | E::UnknownCheck(_) | E::NoSuchService(_) => {
                ApiError::NotFound(e.to_string())
            }
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
        crate::agent::defs::service_body_fields(&v)?;
        let (svc, checks) = crate::agent::defs::service_registration(&v, false)?;
        let replace = cx.req.query.has("replace-existing-checks")
            && cx.req.query.get("replace-existing-checks") != Some("false");
        a.add_service(svc, checks, replace, Source::Api)?;
        a.sync_changes().await;
        return ok();
    }
    if let Some(id) = tail.strip_prefix("service/deregister/") {
        allow(&cx, &[Method::Put])?;
        a.remove_service(id)?;
        a.sync_changes().await;
        return ok();
    }
    if let Some(id) = tail.strip_prefix("service/maintenance/") {
        allow(&cx, &[Method::Put])?;
        let enable = flag(&cx, "enable")?;
        let reason = cx.req.query.get("reason").unwrap_or("");
        a.service_maintenance(id, enable, reason)?;
        a.sync_changes().await;
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
        crate::agent::defs::check_body_fields(&v)?;
        let c = crate::agent::defs::check_registration(&v, "", "", false)?;
        a.add_check(c, Source::Api)?;
        a.sync_changes().await;
        return ok();
    }
    if let Some(id) = tail.strip_prefix("check/deregister/") {
        allow(&cx, &[Method::Put])?;
        a.remove_check(id)?;
        a.sync_changes().await;
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
            a.sync_changes().await;
            return ok();
        }
    }
    if let Some(id) = tail.strip_prefix("check/update/") {
        allow(&cx, &[Method::Put])?;
        let v = body_value(&cx)?;
        crate::agent::defs::known_fields(&v, "update", &[&["Status", "Output"]])?;
        let o = Obj::of(&v, "update")?;
        let status = o.str("Status")?.unwrap_or("");
        let status = Status::parse(status)
            .ok_or_else(|| ApiError::bad(format!("Invalid status {status:?}")))?;
        let output = o.str("Output")?.unwrap_or("").to_string();
        a.update_ttl(id, status, output)?;
        a.sync_changes().await;
        return ok();
    }
    if tail == "maintenance" {
        allow(&cx, &[Method::Put])?;
        let enable = flag(&cx, "enable")?;
        a.node_maintenance(enable, cx.req.query.get("reason").unwrap_or(""));
        a.sync_changes().await;
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
            agent_self(&cx).await
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
