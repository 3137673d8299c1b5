//! Consul check definitions (the JSON of `/v1/agent/check/register`, a service's `Check` /
//! `Checks`, and `check{}` / `checks[]` in config files) into a [`CheckDef`], with Consul's
//! validation and messages.
//!
//! Keys match case-insensitively and with or without underscores, so both the API's
//! `TLSSkipVerify` and the config files' `tls_skip_verify` work. Durations are Go strings
//! ("10s") or numbers of nanoseconds, as Consul accepts.
use std::collections::BTreeMap;
use std::time::Duration;

use simd_json::prelude::*;
use simd_json::OwnedValue;

use super::{
    CheckDef, CheckError, CheckKind, Status, TlsSettings, DEFAULT_OUTPUT_MAX_SIZE, MIN_INTERVAL,
};

/// Consul's refusal of a script check defined in the agent's own configuration.
pub const SCRIPTS_DISABLED_LOCAL: &str = "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true";
/// Consul's refusal of a script check registered over the HTTP API.
pub const SCRIPTS_DISABLED_REMOTE: &str = "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true";

/// What the agent's configuration contributes to a definition.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// The agent's `check_output_max_size`; a check may only lower it.
    pub output_max_size: usize,
    /// Intervals below this are raised to it (with a warning), as Consul does.
    pub min_interval: Duration,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            output_max_size: DEFAULT_OUTPUT_MAX_SIZE,
            min_interval: MIN_INTERVAL,
        }
    }
}

/// A parsed definition: what the registry runs, plus the fields the integrator keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCheck {
    /// `ID` / `CheckID` as given.
    pub id: Option<String>,
    pub name: Option<String>,
    pub notes: Option<String>,
    /// `ServiceID` as given.
    pub service_id: Option<String>,
    /// `Status` as given (the check's initial status; Consul defaults to critical).
    pub status: Option<Status>,
    pub deregister_critical_service_after: Option<Duration>,
    /// `def.id` is the given id, else the name, else empty: the integrator fills Consul's
    /// defaults (`service:<id>[:n]`) before adding it to [`super::Checks`].
    pub def: CheckDef,
}

/// A JSON object seen with Consul's lenient key matching.
struct Obj<'a>(&'a simd_json::owned::Object);

fn norm(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl<'a> Obj<'a> {
    /// The first present, non-null value among `names` (already normalized).
    fn get(&self, names: &[&str]) -> Option<(&'a str, &'a OwnedValue)> {
        for want in names {
            for (k, v) in self.0.iter() {
                if norm(k) == *want && !v.is_null() {
                    return Some((k.as_str(), v));
                }
            }
        }
        None
    }

    fn string(&self, names: &[&str], field: &str) -> Result<Option<String>, CheckError> {
        match self.get(names) {
            None => Ok(None),
            Some((_, v)) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| wrong(field, "a string", v)),
        }
    }

    fn non_empty(&self, names: &[&str], field: &str) -> Result<Option<String>, CheckError> {
        Ok(self.string(names, field)?.filter(|s| !s.is_empty()))
    }

    fn bool(&self, names: &[&str], field: &str) -> Result<Option<bool>, CheckError> {
        match self.get(names) {
            None => Ok(None),
            Some((_, v)) => {
                if let Some(b) = v.as_bool() {
                    return Ok(Some(b));
                }
                match v.as_str() {
                    Some("true") => Ok(Some(true)),
                    Some("false") => Ok(Some(false)),
                    _ => Err(wrong(field, "a boolean", v)),
                }
            }
        }
    }

    /// An integer; negative values mean "off" (zero), as Go's ints compare.
    fn count(&self, names: &[&str], field: &str) -> Result<Option<i64>, CheckError> {
        match self.get(names) {
            None => Ok(None),
            Some((_, v)) => {
                if let Some(n) = v.as_i64() {
                    return Ok(Some(n));
                }
                if let Some(f) = v.cast_f64() {
                    if f.fract() == 0.0 {
                        return Ok(Some(f as i64));
                    }
                }
                v.as_str()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .map(Some)
                    .ok_or_else(|| wrong(field, "an integer", v))
            }
        }
    }

    fn duration(&self, names: &[&str], field: &str) -> Result<Option<Duration>, CheckError> {
        match self.get(names) {
            None => Ok(None),
            Some((_, v)) => {
                if let Some(s) = v.as_str() {
                    if s.is_empty() {
                        return Ok(None);
                    }
                    let ns =
                        go_parse_duration::parse_duration(s).map_err(|_| CheckError::Field {
                            field: field.to_string(),
                            message: format!(
                                "time: invalid duration {}",
                                super::output::go_quote(s)
                            ),
                        })?;
                    return Ok(Some(Duration::from_nanos(ns.max(0) as u64)));
                }
                if let Some(n) = v.cast_f64() {
                    return Ok(Some(Duration::from_nanos(n.max(0.0) as u64)));
                }
                Err(wrong(field, "a duration", v))
            }
        }
    }

    fn strings(&self, names: &[&str], field: &str) -> Result<Option<Vec<String>>, CheckError> {
        match self.get(names) {
            None => Ok(None),
            Some((_, v)) => as_strings(v)
                .map(Some)
                .ok_or_else(|| wrong(field, "a list of strings", v)),
        }
    }
}

fn as_strings(v: &OwnedValue) -> Option<Vec<String>> {
    if let Some(s) = v.as_str() {
        return Some(vec![s.to_string()]);
    }
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn wrong(field: &str, want: &str, got: &OwnedValue) -> CheckError {
    let kind = match got.value_type() {
        ValueType::Bool => "bool",
        ValueType::String => "string",
        ValueType::Array => "array",
        ValueType::Object => "object",
        ValueType::Null => "null",
        _ => "number",
    };
    CheckError::Field {
        field: field.to_string(),
        message: format!("expected {want}, got {kind}"),
    }
}

/// Parses one check definition object.
pub fn parse_check_definition(
    json: &OwnedValue,
    opts: &ParseOptions,
) -> Result<ParsedCheck, CheckError> {
    let obj = json
        .as_object()
        .map(Obj)
        .ok_or_else(|| CheckError::Invalid("check definition must be a JSON object".into()))?;

    let id = obj.non_empty(&["id", "checkid"], "CheckID")?;
    let name = obj.non_empty(&["name"], "Name")?;
    let notes = obj.non_empty(&["notes"], "Notes")?;
    let service_id = obj.non_empty(&["serviceid"], "ServiceID")?;
    let status = match obj.non_empty(&["status"], "Status")? {
        None => None,
        Some(s) => Some(Status::parse(&s).ok_or(CheckError::BadStatus)?),
    };
    let deregister = obj.duration(
        &["deregistercriticalserviceafter"],
        "DeregisterCriticalServiceAfter",
    )?;

    if obj.get(&["script"]).is_some() && obj.get(&["args", "scriptargs"]).is_none() {
        return Err(CheckError::Invalid(
            "The 'script' field is no longer supported; use 'args'".into(),
        ));
    }
    let args = obj
        .strings(&["args", "scriptargs"], "Args")?
        .unwrap_or_default();
    let http = obj.non_empty(&["http"], "HTTP")?;
    let tcp = obj.non_empty(&["tcp"], "TCP")?;
    let udp = obj.non_empty(&["udp"], "UDP")?;
    let grpc = obj.non_empty(&["grpc"], "GRPC")?;
    let h2ping = obj.non_empty(&["h2ping"], "H2PING")?;
    let os_service = obj.non_empty(&["osservice"], "OSService")?;
    let docker = obj.non_empty(&["dockercontainerid"], "DockerContainerID")?;
    let alias_node = obj.non_empty(&["aliasnode"], "AliasNode")?;
    let alias_service = obj.non_empty(&["aliasservice"], "AliasService")?;
    let interval = obj.duration(&["interval"], "Interval")?.unwrap_or_default();
    let timeout = obj.duration(&["timeout"], "Timeout")?.unwrap_or_default();
    let ttl = obj.duration(&["ttl"], "TTL")?.unwrap_or_default();
    let output_max_size = obj.count(&["outputmaxsize"], "OutputMaxSize")?.unwrap_or(0);
    let success_before_passing = obj
        .count(&["successbeforepassing"], "SuccessBeforePassing")?
        .unwrap_or(0);
    let failures_before_warning = obj
        .count(&["failuresbeforewarning"], "FailuresBeforeWarning")?
        .unwrap_or(0);
    let failures_before_critical = obj
        .count(&["failuresbeforecritical"], "FailuresBeforeCritical")?
        .unwrap_or(0);

    let interval_check = !args.is_empty()
        || http.is_some()
        || tcp.is_some()
        || udp.is_some()
        || grpc.is_some()
        || h2ping.is_some()
        || os_service.is_some();
    let is_alias = alias_node.is_some() || alias_service.is_some();
    let invalid = |m: &str| Err(CheckError::Invalid(m.to_string()));
    if !interval.is_zero() && !ttl.is_zero() {
        return invalid("Interval and TTL cannot both be specified");
    }
    if interval_check && interval.is_zero() {
        return invalid(
            "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
        );
    }
    if interval_check && is_alias {
        return invalid("Interval cannot be set for Alias checks");
    }
    if is_alias && !ttl.is_zero() {
        return invalid("TTL must be not be set for Alias checks");
    }
    if !interval_check && !is_alias && ttl.is_zero() {
        return invalid("TTL must be > 0 for TTL checks");
    }
    if output_max_size < 0 {
        return invalid("MaxOutputMaxSize must be positive");
    }
    if failures_before_warning > failures_before_critical {
        return invalid("FailuresBeforeWarning can't be higher than FailuresBeforeCritical");
    }

    let tls = TlsSettings {
        skip_verify: obj
            .bool(&["tlsskipverify"], "TLSSkipVerify")?
            .unwrap_or(false),
        server_name: obj.non_empty(&["tlsservername"], "TLSServerName")?,
    };
    // Consul's agent picks the runner in this order.
    let kind = if !ttl.is_zero() {
        CheckKind::Ttl { ttl }
    } else if let Some(url) = http {
        CheckKind::Http {
            url,
            method: obj.string(&["method"], "Method")?.unwrap_or_default(),
            headers: parse_headers(&obj)?,
            body: obj.string(&["body"], "Body")?.unwrap_or_default(),
            disable_redirects: obj
                .bool(&["disableredirects"], "DisableRedirects")?
                .unwrap_or(false),
            tls,
        }
    } else if let Some(addr) = tcp {
        CheckKind::Tcp {
            addr,
            use_tls: obj.bool(&["tcpusetls"], "TCPUseTLS")?.unwrap_or(false),
            tls,
        }
    } else if let Some(addr) = udp {
        CheckKind::Udp { addr }
    } else if let Some(target) = grpc {
        CheckKind::Grpc {
            target,
            use_tls: obj.bool(&["grpcusetls"], "GRPCUseTLS")?.unwrap_or(false),
            tls,
        }
    } else if docker.is_some() {
        return Err(CheckError::Unsupported("Docker"));
    } else if os_service.is_some() {
        return Err(CheckError::Unsupported("OSService"));
    } else if !args.is_empty() {
        CheckKind::Script { args }
    } else if let Some(addr) = h2ping {
        CheckKind::H2Ping {
            addr,
            // H2PING defaults to TLS, unlike every other kind.
            use_tls: obj.bool(&["h2pingusetls"], "H2PingUseTLS")?.unwrap_or(true),
            tls,
        }
    } else {
        CheckKind::Alias {
            node: alias_node,
            service_id: alias_service,
        }
    };

    let mut interval = interval;
    if kind.is_interval() && interval < opts.min_interval {
        log::warn!(
            "check {:?} has interval below minimum of {:?}; using the minimum",
            id.as_deref().or(name.as_deref()).unwrap_or(""),
            opts.min_interval
        );
        interval = opts.min_interval;
    }
    let agent_max = if opts.output_max_size == 0 {
        DEFAULT_OUTPUT_MAX_SIZE
    } else {
        opts.output_max_size
    };
    let output_max_size = match usize::try_from(output_max_size) {
        Ok(n) if n > 0 && n < agent_max => n,
        _ => agent_max,
    };
    let to_u32 = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
    let def = CheckDef {
        id: id.clone().or_else(|| name.clone()).unwrap_or_default(),
        kind,
        interval,
        timeout,
        initial_status: status.unwrap_or(Status::Critical),
        initial_output: String::new(),
        success_before_passing: to_u32(success_before_passing),
        failures_before_warning: to_u32(failures_before_warning),
        failures_before_critical: to_u32(failures_before_critical),
        output_max_size,
    };
    Ok(ParsedCheck {
        id,
        name,
        notes,
        service_id,
        status,
        deregister_critical_service_after: deregister,
        def,
    })
}

/// `Header`: names to lists of values (a lone string is taken as a one-value list).
fn parse_headers(obj: &Obj<'_>) -> Result<BTreeMap<String, Vec<String>>, CheckError> {
    let mut out = BTreeMap::new();
    let Some((_, v)) = obj.get(&["header"]) else {
        return Ok(out);
    };
    let map = v
        .as_object()
        .ok_or_else(|| wrong("Header", "an object of string lists", v))?;
    for (k, vals) in map.iter() {
        if vals.is_null() {
            continue;
        }
        let list = as_strings(vals)
            .ok_or_else(|| wrong(&format!("Header.{k}"), "a list of strings", vals))?;
        out.insert(k.to_string(), list);
    }
    Ok(out)
}
