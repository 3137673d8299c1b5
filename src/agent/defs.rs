//! Service and check definitions from agent requests and config files.
use muster_shards::catalog::{HealthCheck, Service};
use simd_json::prelude::*;
use simd_json::OwnedValue;

use super::CheckRegistration;
use std::time::Duration;

use crate::checks::{
    parse_check_definition, CheckDef, CheckKind, ParseOptions, TlsSettings, DEFAULT_OUTPUT_MAX_SIZE,
};
use crate::config::value::format_go_duration;
use crate::http::api::defs;
use crate::http::body::Obj;
use crate::http::error::{ApiError, ApiResult};
use crate::runtime::core::core;

/// Parses a check definition; `default_id`/`default_name` apply when the definition has none.
pub fn check_registration(
    v: &OwnedValue,
    default_id: &str,
    default_name: &str,
    from_config: bool,
) -> ApiResult<CheckRegistration> {
    let p = parse_check_definition(v, &ParseOptions::default())
        .map_err(|e| ApiError::bad(format!("Invalid check: {e}")))?;
    if p.def.kind.is_script() {
        let s = &core().settings;
        let allowed = s.enable_script_checks || (from_config && s.enable_local_script_checks);
        if !allowed {
            return Err(ApiError::bad(
                "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true",
            ));
        }
    }
    let id =
        p.id.clone()
            .filter(|i| !i.is_empty())
            .or_else(|| (!default_id.is_empty()).then(|| default_id.to_string()))
            .or_else(|| p.name.clone())
            .unwrap_or_default();
    if id.is_empty() {
        return Err(ApiError::bad("Missing check name"));
    }
    let name = p.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| {
        if default_name.is_empty() {
            id.clone()
        } else {
            default_name.to_string()
        }
    });
    let mut def = p.def;
    def.id = id.clone();
    let definition = definition_json(&def, p.deregister_critical_service_after);
    Ok(CheckRegistration {
        check: HealthCheck {
            check_id: id,
            name,
            notes: p.notes.unwrap_or_default(),
            status: p
                .status
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "critical".into()),
            service_id: p.service_id.unwrap_or_default(),
            check_type: def.kind.type_name().to_string(),
            definition: Some(definition),
            ..HealthCheck::default()
        },
        def: Some(def),
        deregister_after: p.deregister_critical_service_after,
    })
}

/// The check's `Definition` as Consul reports it in check listings: the probe's fields, only
/// those that are set, durations as Go duration strings.
fn definition_json(def: &CheckDef, deregister_after: Option<Duration>) -> String {
    use definition::Field;
    let mut out: Vec<(&str, Field)> = Vec::new();
    let tls = |out: &mut Vec<(&str, Field)>, t: &TlsSettings| {
        if let Some(n) = &t.server_name {
            out.push(("TLSServerName", Field::Str(n.clone())));
        }
        if t.skip_verify {
            out.push(("TLSSkipVerify", Field::Bool(true)));
        }
    };
    match &def.kind {
        CheckKind::Http {
            url,
            method,
            headers,
            body,
            disable_redirects,
            tls: t,
        } => {
            out.push(("HTTP", Field::Str(url.clone())));
            tls(&mut out, t);
            if !headers.is_empty() {
                out.push(("Header", Field::Headers(headers.clone())));
            }
            if !method.is_empty() {
                out.push(("Method", Field::Str(method.clone())));
            }
            if !body.is_empty() {
                out.push(("Body", Field::Str(body.clone())));
            }
            if *disable_redirects {
                out.push(("DisableRedirects", Field::Bool(true)));
            }
        }
        CheckKind::Tcp {
            addr,
            use_tls,
            tls: t,
        } => {
            out.push(("TCP", Field::Str(addr.clone())));
            if *use_tls {
                out.push(("TCPUseTLS", Field::Bool(true)));
            }
            tls(&mut out, t);
        }
        CheckKind::Udp { addr } => out.push(("UDP", Field::Str(addr.clone()))),
        CheckKind::Grpc {
            target,
            use_tls,
            tls: t,
        } => {
            out.push(("GRPC", Field::Str(target.clone())));
            if *use_tls {
                out.push(("GRPCUseTLS", Field::Bool(true)));
            }
            tls(&mut out, t);
        }
        CheckKind::H2Ping {
            addr,
            use_tls,
            tls: t,
        } => {
            out.push(("H2PING", Field::Str(addr.clone())));
            if *use_tls {
                out.push(("H2PingUseTLS", Field::Bool(true)));
            }
            tls(&mut out, t);
        }
        CheckKind::Script { args } => out.push(("ScriptArgs", Field::List(args.clone()))),
        CheckKind::Ttl { ttl } => out.push(("TTL", Field::Str(format_go_duration(*ttl)))),
        CheckKind::Alias { node, service_id } => {
            if let Some(n) = node {
                out.push(("AliasNode", Field::Str(n.clone())));
            }
            if let Some(s) = service_id {
                out.push(("AliasService", Field::Str(s.clone())));
            }
        }
    }
    if def.kind.is_interval() {
        out.push(("Interval", Field::Str(format_go_duration(def.interval))));
    }
    if !def.timeout.is_zero() {
        out.push(("Timeout", Field::Str(format_go_duration(def.timeout))));
    }
    if def.output_max_size > 0 && def.output_max_size != DEFAULT_OUTPUT_MAX_SIZE {
        out.push(("OutputMaxSize", Field::Int(def.output_max_size as u64)));
    }
    if let Some(d) = deregister_after.filter(|d| !d.is_zero()) {
        out.push((
            "DeregisterCriticalServiceAfter",
            Field::Str(format_go_duration(d)),
        ));
    }
    let map: std::collections::BTreeMap<&str, Field> = out.into_iter().collect();
    String::from_utf8(crate::http::encode::json(&map, false)).unwrap_or_else(|_| "{}".into())
}

mod definition {
    use std::collections::BTreeMap;

    #[derive(serde::Serialize)]
    #[serde(untagged)]
    pub enum Field {
        Str(String),
        Bool(bool),
        Int(u64),
        List(Vec<String>),
        Headers(BTreeMap<String, Vec<String>>),
    }
}

/// Fields of Consul's `ServiceDefinition` (the body of `/v1/agent/service/register`), plus the
/// snake_case aliases its JSON decoder translates.
const SERVICE_FIELDS: &[&str] = &[
    "Kind",
    "ID",
    "Name",
    "Tags",
    "Address",
    "TaggedAddresses",
    "Meta",
    "Port",
    "Ports",
    "SocketPath",
    "Check",
    "Checks",
    "Weights",
    "Token",
    "EnableTagOverride",
    "Locality",
    "Proxy",
    "Connect",
    "enable_tag_override",
    "tagged_addresses",
];

/// Probe fields shared by `CheckType` (a service's checks) and `CheckDefinition`.
const PROBE_FIELDS: &[&str] = &[
    "Name",
    "Status",
    "Notes",
    "ScriptArgs",
    "HTTP",
    "H2PING",
    "H2PingUseTLS",
    "Header",
    "Method",
    "Body",
    "DisableRedirects",
    "TCP",
    "TCPUseTLS",
    "UDP",
    "Interval",
    "AliasNode",
    "AliasService",
    "DockerContainerID",
    "Shell",
    "GRPC",
    "GRPCUseTLS",
    "OSService",
    "TLSServerName",
    "TLSSkipVerify",
    "Timeout",
    "TTL",
    "SuccessBeforePassing",
    "FailuresBeforeWarning",
    "FailuresBeforeCritical",
    "DeregisterCriticalServiceAfter",
    "OutputMaxSize",
    // The snake_case aliases Consul's decoders translate.
    "args",
    "script_args",
    "deregister_critical_service_after",
    "docker_container_id",
    "tls_server_name",
    "tls_skip_verify",
    "grpc_use_tls",
    "h2ping_use_tls",
    "service_id",
    "ServiceID",
];

/// `CheckType` (a service's `Check` / `Checks`) adds these to the probe fields.
const SERVICE_CHECK_FIELDS: &[&str] = &["CheckID", "ProxyHTTP", "ProxyGRPC"];

/// `CheckDefinition` (the body of `/v1/agent/check/register`) adds these.
const CHECK_FIELDS: &[&str] = &["ID", "Token", "disable_redirects"];

/// Go's decoder with unknown fields disallowed, as Consul decodes these bodies: a key must name
/// a field (case-insensitively) or one of the aliases; anything else is refused.
pub fn known_fields(v: &OwnedValue, what: &str, lists: &[&[&str]]) -> ApiResult<()> {
    let o = Obj::of(v, what)?;
    for (k, _) in o.iter() {
        let known = lists
            .iter()
            .flat_map(|l| l.iter())
            .any(|f| f.eq_ignore_ascii_case(k));
        if !known {
            return Err(ApiError::bad(format!(
                "Request decode failed: json: unknown field {k:?}"
            )));
        }
    }
    Ok(())
}

/// Checks an agent check registration body the way Consul decodes it (see [`known_fields`]).
pub fn check_body_fields(v: &OwnedValue) -> ApiResult<()> {
    known_fields(v, "check", &[PROBE_FIELDS, CHECK_FIELDS])
}

/// Checks an agent service registration body the way Consul decodes it (see [`known_fields`]).
pub fn service_body_fields(v: &OwnedValue) -> ApiResult<()> {
    known_fields(v, "service", &[SERVICE_FIELDS])?;
    let o = Obj::of(v, "service")?;
    let mut checks: Vec<&OwnedValue> = Vec::new();
    if let Some(c) = o.get("Check").filter(|c| !c.is_null()) {
        checks.push(c);
    }
    if let Some(arr) = o.get("Checks").and_then(|c| c.as_array()) {
        checks.extend(arr.iter());
    }
    for c in checks {
        known_fields(c, "check", &[PROBE_FIELDS, SERVICE_CHECK_FIELDS])?;
    }
    if let Some(w) = o.get("Weights").filter(|w| !w.is_null()) {
        known_fields(w, "Weights", &[&["Passing", "Warning"]])?;
    }
    if let Some(t) = o.obj("TaggedAddresses")? {
        for (_, a) in t.iter() {
            known_fields(a, "TaggedAddresses entry", &[&["Address", "Port"]])?;
        }
    }
    Ok(())
}

/// Parses an agent service registration (`/v1/agent/service/register` or a config `service`).
pub fn service_registration(
    v: &OwnedValue,
    from_config: bool,
) -> ApiResult<(Service, Vec<CheckRegistration>)> {
    let o = Obj::of(v, "service")?;
    let mut s = defs::service(o, "Name")?;
    if s.service.is_empty() {
        return Err(ApiError::bad("Missing service name"));
    }
    if s.id.is_empty() {
        s.id = s.service.clone();
    }
    let mut raw: Vec<&OwnedValue> = Vec::new();
    if let Some(c) = o.get("Check").filter(|c| !c.is_null()) {
        raw.push(c);
    }
    if let Some(list) = o.get("Checks").filter(|c| !c.is_null()) {
        let arr = list
            .as_array()
            .ok_or_else(|| ApiError::bad("Request decode failed: Checks must be an array"))?;
        raw.extend(arr.iter());
    }
    let n = raw.len();
    let mut checks = Vec::with_capacity(n);
    for (i, c) in raw.into_iter().enumerate() {
        let default_id = if n == 1 {
            format!("service:{}", s.id)
        } else {
            format!("service:{}:{}", s.id, i + 1)
        };
        let default_name = format!("Service '{}' check", s.service);
        checks.push(check_registration(
            c,
            &default_id,
            &default_name,
            from_config,
        )?);
    }
    Ok((s, checks))
}
