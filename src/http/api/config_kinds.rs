//! Config entry kinds: decoding a submitted entry as Consul does (either key spelling, Kind and
//! Name checks, Consul's normalisation) and the main per-kind validation, with Consul's texts.
use simd_json::prelude::*;
use simd_json::OwnedValue;

/// Every kind Consul knows (`structs.AllConfigEntryKinds`).
pub const KINDS: [&str; 19] = [
    "service-defaults",
    "proxy-defaults",
    "service-router",
    "service-splitter",
    "service-resolver",
    "ingress-gateway",
    "terminating-gateway",
    "service-intentions",
    "mesh",
    "exported-services",
    "sameness-group",
    "api-gateway",
    "bound-api-gateway",
    "http-route",
    "tcp-route",
    "file-system-certificate",
    "inline-certificate",
    "control-plane-request-limit",
    "jwt-provider",
];

/// Consul's error for a kind it does not know.
pub fn check_kind(kind: &str) -> Result<(), String> {
    if KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(format!("invalid config entry kind: {kind}"))
    }
}

/// A decoded, normalised entry ready to store.
#[derive(Debug)]
pub struct Decoded {
    pub kind: String,
    pub name: String,
    /// The other fields, keys in Consul's spelling, as a JSON object text.
    pub body: String,
}

/// Why an entry is refused: a decode failure is Consul's 400, a validation failure its 500
/// (it comes back from the server's RPC).
#[derive(Debug, PartialEq, Eq)]
pub enum EntryError {
    Decode(String),
    Invalid(String),
}

/// Decodes and validates one entry (the JSON body of `PUT /v1/config` or a `config write`).
pub fn decode(v: &OwnedValue) -> Result<Decoded, EntryError> {
    let obj = v.as_object().ok_or_else(|| {
        EntryError::Decode("Request decoding failed: body must be a JSON object".into())
    })?;
    let kind_v = obj.get("Kind").or_else(|| obj.get("kind")).ok_or_else(|| {
        EntryError::Decode(
            "Request decoding failed: Payload does not contain a kind/Kind key at the top level"
                .into(),
        )
    })?;
    let kind = kind_v.as_str().ok_or_else(|| {
        EntryError::Decode("Request decoding failed: Kind value in payload is not a string".into())
    })?;
    check_kind(kind).map_err(|e| EntryError::Decode(format!("Request decoding failed: {e}")))?;
    let mut fields: Vec<(String, OwnedValue)> = Vec::new();
    let mut name = String::new();
    for (k, val) in obj.iter() {
        let key = canonical_key(k);
        match key.as_str() {
            "Kind" | "CreateIndex" | "ModifyIndex" | "Hash" => {}
            "Name" => {
                name = val
                    .as_str()
                    .ok_or_else(|| {
                        EntryError::Decode(format!(
                            "Request decoding failed: 1 error(s) decoding:\n\n* '{key}' expected type 'string', got unconvertible type '{}'",
                            json_type(val)
                        ))
                    })?
                    .to_string();
            }
            _ => fields.push((key.clone(), normalize_value(&key, val))),
        }
    }
    let kind = kind.to_string();
    normalize(&kind, &mut name, &mut fields);
    validate(&kind, &name, &fields).map_err(EntryError::Invalid)?;
    let mut body = simd_json::owned::Object::with_capacity(fields.len());
    for (k, v) in fields {
        body.insert(k, v);
    }
    let body = simd_json::to_string(&OwnedValue::from(body))
        .map_err(|e| EntryError::Decode(format!("Request decoding failed: {e}")))?;
    Ok(Decoded { kind, name, body })
}

fn json_type(v: &OwnedValue) -> &'static str {
    if v.is_null() {
        "nil"
    } else if v.is_bool() {
        "bool"
    } else if v.is_number() {
        "float64"
    } else if v.is_array() {
        "[]interface {}"
    } else if v.is_object() {
        "map[string]interface {}"
    } else {
        "string"
    }
}

/// Consul's normalisation: fixed names for the singleton kinds, lower-case protocols.
fn normalize(kind: &str, name: &mut String, fields: &mut [(String, OwnedValue)]) {
    match kind {
        "proxy-defaults" if name.is_empty() => *name = "global".into(),
        "mesh" if name.is_empty() => *name = "mesh".into(),
        _ => {}
    }
    if kind == "service-defaults" {
        for (k, v) in fields.iter_mut() {
            if k == "Protocol" {
                if let Some(p) = v.as_str() {
                    *v = OwnedValue::from(p.to_lowercase());
                }
            }
        }
    }
}

/// Maps whose keys are user data: kept as given, not descended into.
const OPAQUE: [&str; 6] = ["Meta", "Config", "Arguments", "Add", "Set", "NodeMeta"];
/// Maps keyed by user names whose values are structures (keys kept, values translated).
const NAMED: [&str; 2] = ["Subsets", "Failover"];

/// Word spellings Consul's field names use for snake_case parts.
fn acronym(part: &str) -> Option<&'static str> {
    Some(match part {
        "tls" => "TLS",
        "http" => "HTTP",
        "http2" => "HTTP2",
        "grpc" => "GRPC",
        "sni" => "SNI",
        "id" => "ID",
        "ttl" => "TTL",
        "url" => "URL",
        "uri" => "URI",
        "ip" => "IP",
        "jwt" => "JWT",
        "jwks" => "JWKS",
        "json" => "JSON",
        "acl" => "ACL",
        "ca" => "CA",
        "dns" => "DNS",
        "sds" => "SDS",
        _ => return None,
    })
}

/// Consul accepts config-file spellings (`mesh_gateway`, `protocol`) for its CamelCase fields.
fn canonical_key(k: &str) -> String {
    if k.starts_with(|c: char| c.is_ascii_uppercase()) && !k.contains('_') {
        return k.to_string();
    }
    match k {
        "jsonwebkeyset" | "json_web_key_set" => return "JSONWebKeySet".into(),
        "cafile" => return "CAFile".into(),
        _ => {}
    }
    k.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| match acronym(&p.to_ascii_lowercase()) {
            Some(a) => a.to_string(),
            None => {
                let mut c = p.chars();
                match c.next() {
                    Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                    None => String::new(),
                }
            }
        })
        .collect()
}

fn normalize_value(key: &str, v: &OwnedValue) -> OwnedValue {
    if OPAQUE.contains(&key) {
        return v.clone();
    }
    if let Some(o) = v.as_object() {
        let named = NAMED.contains(&key);
        let mut out = simd_json::owned::Object::with_capacity(o.len());
        for (k, val) in o.iter() {
            if named {
                out.insert(k.clone(), normalize_value("", val));
            } else {
                let ck = canonical_key(k);
                let nv = normalize_value(&ck, val);
                out.insert(ck, nv);
            }
        }
        return OwnedValue::from(out);
    }
    if let Some(a) = v.as_array() {
        return OwnedValue::from(
            a.iter()
                .map(|x| normalize_value(key, x))
                .collect::<Vec<_>>(),
        );
    }
    v.clone()
}

fn field<'a>(fields: &'a [(String, OwnedValue)], name: &str) -> Option<&'a OwnedValue> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn get<'a>(v: &'a OwnedValue, name: &str) -> Option<&'a OwnedValue> {
    v.as_object().and_then(|o| o.get(name))
}

fn str_of(v: Option<&OwnedValue>) -> &str {
    v.and_then(|v| v.as_str()).unwrap_or("")
}

fn list(v: Option<&OwnedValue>) -> Vec<&OwnedValue> {
    v.and_then(|v| v.as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// Consul's main checks per kind (`structs.*ConfigEntry.Validate`), first failure only.
fn validate(kind: &str, name: &str, f: &[(String, OwnedValue)]) -> Result<(), String> {
    match kind {
        "proxy-defaults" if name != "global" => {
            return Err(format!(
                "invalid name ({name:?}), only \"global\" is supported"
            ))
        }
        "mesh" if name != "mesh" => {
            return Err(format!(
                "invalid name ({name:?}), only \"mesh\" is supported"
            ))
        }
        "proxy-defaults" | "mesh" => {}
        _ if name.is_empty() => return Err("Name is required".into()),
        _ => {}
    }
    if let Some(meta) = field(f, "Meta") {
        if let Some(m) = meta.as_object() {
            if m.len() > 64 {
                return Err("Meta exceeds maximum element count 64".into());
            }
        }
    }
    mode_check(f)?;
    match kind {
        "service-defaults" => {
            if name == "*" {
                return Err(
                    "service-defaults name must be the name of a service, and not a wildcard"
                        .into(),
                );
            }
            let b = str_of(field(f, "BalanceInboundConnections"));
            if !b.is_empty() && b != "exact_balance" {
                return Err(format!(
                    "invalid value for balance_inbound_connections: {b}"
                ));
            }
            if field(f, "UpstreamConfig").is_some() && field(f, "Destination").is_some() {
                return Err(
                    "UpstreamConfig and Destination are mutually exclusive for service defaults"
                        .into(),
                );
            }
            if let Some(d) = field(f, "Destination") {
                if list(get(d, "Addresses")).is_empty() {
                    return Err("Destination must contain at least one valid address".into());
                }
                let port = get(d, "Port").and_then(|p| p.as_i64()).unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    return Err(format!("Invalid Port number {port}"));
                }
            }
        }
        "service-resolver" => {
            let subsets: Vec<String> = field(f, "Subsets")
                .and_then(|s| s.as_object())
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            for s in &subsets {
                if !valid_subset_name(s) {
                    return Err(format!("Subset defined with invalid name {s:?}"));
                }
            }
            let def = str_of(field(f, "DefaultSubset"));
            if !def.is_empty() && !subsets.iter().any(|s| s == def) {
                return Err(format!("Bad DefaultSubset {def:?}: not a valid subset"));
            }
            if field(f, "Redirect").is_some() {
                if !subsets.is_empty() {
                    return Err("Redirect and Subsets cannot both be set".into());
                }
                if field(f, "Failover").is_some() {
                    return Err("Redirect and Failover cannot both be set".into());
                }
            }
            if let Some(ct) = field(f, "ConnectTimeout") {
                if duration_negative(ct) {
                    return Err("Bad ConnectTimeout '-1s', must be >= 0"
                        .replace("-1s", ct.as_str().unwrap_or("negative")));
                }
            }
        }
        "service-router" => {
            for (i, r) in list(field(f, "Routes")).into_iter().enumerate() {
                if let Some(http) = get(r, "Match").and_then(|m| get(m, "HTTP")) {
                    let set = ["PathExact", "PathPrefix", "PathRegex"]
                        .iter()
                        .filter(|k| !str_of(get(http, k)).is_empty())
                        .count();
                    if set > 1 {
                        return Err(format!(
                            "Route[{i}] should only contain at most one of PathExact, PathPrefix, or PathRegex"
                        ));
                    }
                    let exact = str_of(get(http, "PathExact"));
                    if !exact.is_empty() && !exact.starts_with('/') {
                        return Err(format!(
                            "Route[{i}] PathExact doesn't start with '/': {exact:?}"
                        ));
                    }
                    let prefix = str_of(get(http, "PathPrefix"));
                    if !prefix.is_empty() && !prefix.starts_with('/') {
                        return Err(format!(
                            "Route[{i}] PathPrefix doesn't start with '/': {prefix:?}"
                        ));
                    }
                }
            }
        }
        "service-splitter" => {
            let splits = list(field(f, "Splits"));
            if splits.is_empty() {
                return Err("no splits configured".into());
            }
            let total: f64 = splits
                .iter()
                .map(|s| get(s, "Weight").and_then(|w| w.cast_f64()).unwrap_or(0.0))
                .sum();
            // Consul compares in hundredths of a percent.
            if (total * 100.0).round() as i64 != 10000 {
                return Err(format!(
                    "the sum of all split weights must be 100, not {total:.2}"
                ));
            }
        }
        "service-intentions" => {
            let sources = list(field(f, "Sources"));
            for (i, s) in sources.into_iter().enumerate() {
                if str_of(get(s, "Name")).is_empty() {
                    return Err(format!("Sources[{i}].Name is required"));
                }
                let action = str_of(get(s, "Action"));
                let perms = list(get(s, "Permissions"));
                if perms.is_empty() && !matches!(action, "allow" | "deny") {
                    return Err(format!(
                        "Sources[{i}].Action must be set to 'allow' or 'deny'"
                    ));
                }
                if !perms.is_empty() && !action.is_empty() {
                    return Err(format!(
                        "Sources[{i}].Action must be omitted if Permissions are specified"
                    ));
                }
            }
        }
        "ingress-gateway" => {
            for (i, l) in list(field(f, "Listeners")).into_iter().enumerate() {
                let proto = match str_of(get(l, "Protocol")) {
                    "" => "tcp",
                    p => p,
                };
                if !matches!(proto, "tcp" | "http" | "http2" | "grpc") {
                    return Err(format!(
                        "protocol must be 'tcp', 'http', 'http2', or 'grpc'. '{proto}' is an unsupported protocol"
                    ));
                }
                let services = list(get(l, "Services"));
                if proto == "tcp" && services.len() > 1 {
                    let port = get(l, "Port").and_then(|p| p.as_i64()).unwrap_or(0);
                    return Err(format!(
                        "Multiple services per listener are only supported for L7 protocols, 'http', 'grpc' and 'http2' (listener on port {port})"
                    ));
                }
                for s in services {
                    if str_of(get(s, "Name")).is_empty() {
                        return Err(format!("Listener[{i}] service name cannot be blank"));
                    }
                }
            }
        }
        "terminating-gateway" => {
            for s in list(field(f, "Services")) {
                if str_of(get(s, "Name")).is_empty() {
                    return Err("Service name cannot be blank.".into());
                }
            }
        }
        "api-gateway" => {
            for l in list(field(f, "Listeners")) {
                let p = str_of(get(l, "Protocol"));
                if !matches!(p, "http" | "tcp") {
                    return Err(format!(
                        "unsupported listener protocol {p:?}, must be one of 'tcp', or 'http'"
                    ));
                }
            }
        }
        "jwt-provider" => {
            let Some(jwks) = field(f, "JSONWebKeySet") else {
                return Err("JSONWebKeySet is required".into());
            };
            let local = get(jwks, "Local").is_some();
            let remote = get(jwks, "Remote").is_some();
            if local == remote {
                return Err("Must specify exactly one of Local or Remote JSON Web key set".into());
            }
        }
        "control-plane-request-limit" => {
            let m = str_of(field(f, "Mode"));
            if !matches!(m, "" | "permissive" | "enforcing" | "disabled") {
                return Err(format!("mode {m:?} is not valid"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// `MutualTLSMode` and `Mode` (proxy mode) take only Consul's spellings.
fn mode_check(f: &[(String, OwnedValue)]) -> Result<(), String> {
    let m = str_of(field(f, "MutualTLSMode"));
    if !matches!(m, "" | "strict" | "permissive") {
        return Err(format!(
            "Invalid MutualTLSMode {m:?}. Must be one of \"\", \"strict\", or \"permissive\"."
        ));
    }
    Ok(())
}

fn valid_subset_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn duration_negative(v: &OwnedValue) -> bool {
    if let Some(s) = v.as_str() {
        return s.starts_with('-');
    }
    v.as_f64().is_some_and(|n| n < 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(json: &str) -> Result<Decoded, EntryError> {
        let mut b = json.as_bytes().to_vec();
        decode(&simd_json::to_owned_value(&mut b).unwrap())
    }

    #[test]
    fn keys_take_consul_spelling() {
        let d = dec(r#"{"kind":"service-defaults","name":"web","protocol":"HTTP","mesh_gateway":{"mode":"local"},"Meta":{"my_key":"v"}}"#).unwrap();
        assert_eq!(d.name, "web");
        assert!(d.body.contains(r#""Protocol":"http""#), "{}", d.body);
        assert!(
            d.body.contains(r#""MeshGateway":{"Mode":"local"}"#),
            "{}",
            d.body
        );
        assert!(d.body.contains(r#""my_key":"v""#), "{}", d.body);
        assert_eq!(canonical_key("external_sni"), "ExternalSNI");
        assert_eq!(canonical_key("tls"), "TLS");
    }

    #[test]
    fn consul_texts() {
        let e = |j: &str| match dec(j) {
            Err(EntryError::Decode(t)) | Err(EntryError::Invalid(t)) => t,
            Ok(_) => panic!("accepted {j}"),
        };
        assert_eq!(
            e(r#"{"Name":"x"}"#),
            "Request decoding failed: Payload does not contain a kind/Kind key at the top level"
        );
        assert_eq!(
            e(r#"{"Kind":"nope","Name":"x"}"#),
            "Request decoding failed: invalid config entry kind: nope"
        );
        assert_eq!(e(r#"{"Kind":"service-defaults"}"#), "Name is required");
        assert_eq!(
            e(r#"{"Kind":"proxy-defaults","Name":"web"}"#),
            "invalid name (\"web\"), only \"global\" is supported"
        );
        assert_eq!(
            e(r#"{"Kind":"service-splitter","Name":"w","Splits":[{"Weight":50}]}"#),
            "the sum of all split weights must be 100, not 50.00"
        );
        assert!(dec(r#"{"Kind":"proxy-defaults"}"#).unwrap().name == "global");
    }
}
