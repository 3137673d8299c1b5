//! Service and check definitions from agent requests and config files.
use muster_shards::catalog::{HealthCheck, Service};
use simd_json::prelude::*;
use simd_json::OwnedValue;

use super::CheckRegistration;
use crate::checks::{parse_check_definition, CheckKind, ParseOptions};
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
    let runnable = !matches!(def.kind, CheckKind::Alias { .. });
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
            ..HealthCheck::default()
        },
        def: runnable.then_some(def),
        deregister_after: p.deregister_critical_service_after,
    })
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
