//! Service and check definitions in request bodies (agent and catalog registration).
use std::collections::BTreeMap;

use muster_shards::catalog::{HealthCheck, Service, ServiceAddress, Weights};
use simd_json::prelude::*;

use crate::http::body::Obj;
use crate::http::error::{ApiError, ApiResult};

fn port(o: &Obj, name: &str) -> ApiResult<u16> {
    match o.u64(name)? {
        None => Ok(0),
        Some(p) => u16::try_from(p).map_err(|_| {
            ApiError::bad(format!("Request decode failed: {name} {p} is not a valid port"))
        }),
    }
}

/// The service fields shared by the agent (`Name`) and catalog (`Service`) forms.
pub fn service(o: Obj, name_field: &str) -> ApiResult<Service> {
    let mut s = Service {
        id: o.str("ID")?.unwrap_or_default().to_string(),
        service: o.str(name_field)?.unwrap_or_default().to_string(),
        kind: o.str("Kind")?.unwrap_or_default().to_string(),
        tags: o.strings("Tags")?.unwrap_or_default(),
        address: o.str("Address")?.unwrap_or_default().to_string(),
        meta: o.string_map("Meta")?.unwrap_or_default(),
        port: port(&o, "Port")?,
        enable_tag_override: o.bool("EnableTagOverride")?.unwrap_or(false),
        proxy: o.raw("Proxy"),
        connect: o.raw("Connect"),
        ..Service::default()
    };
    if let Some(w) = o.obj("Weights")? {
        let get = |k: &str| -> ApiResult<i32> {
            Ok(match w.get(k).and_then(|v| v.as_i64()) {
                Some(n) => i32::try_from(n).unwrap_or(i32::MAX),
                None => 0,
            })
        };
        s.weights = Weights {
            passing: get("Passing")?,
            warning: get("Warning")?,
        };
        if s.weights.passing <= 0 {
            return Err(ApiError::bad("Passing must be greater than 0"));
        }
    }
    if let Some(t) = o.obj("TaggedAddresses")? {
        let mut out = BTreeMap::new();
        for (k, v) in t.iter() {
            let a = Obj::of(v, "TaggedAddresses entry")?;
            out.insert(
                k.to_string(),
                ServiceAddress {
                    address: a.str("Address")?.unwrap_or_default().to_string(),
                    port: port(&a, "Port")?,
                },
            );
        }
        s.tagged_addresses = out;
    }
    Ok(s)
}

/// A check as `/v1/catalog/register` carries it: plain data, nothing to run.
pub fn catalog_check(o: Obj) -> ApiResult<HealthCheck> {
    Ok(HealthCheck {
        node: o.str("Node")?.unwrap_or_default().to_string(),
        check_id: o.str("CheckID")?.unwrap_or_default().to_string(),
        name: o.str("Name")?.unwrap_or_default().to_string(),
        status: o.str("Status")?.unwrap_or_default().to_string(),
        notes: o.str("Notes")?.unwrap_or_default().to_string(),
        output: o.str("Output")?.unwrap_or_default().to_string(),
        service_id: o.str("ServiceID")?.unwrap_or_default().to_string(),
        check_type: o.str("Type")?.unwrap_or_default().to_string(),
        definition: o.raw("Definition"),
        ..HealthCheck::default()
    })
}

/// Consul's check statuses.
pub fn valid_status(s: &str) -> bool {
    matches!(s, "passing" | "warning" | "critical" | "maintenance")
}
