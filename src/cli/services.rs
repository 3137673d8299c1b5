//! `muster services register|deregister`: services of the local agent, from flags or from
//! service definition files (the `service {}` / `services []` of agent config files).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use simd_json::prelude::*;
use simd_json::{OwnedValue, StaticNode};

use super::args::key_value;
use super::http::{encode_path, Client, HttpFlags, Method, ServerFlags};
use super::{error_line, go_quote, info_line};
use crate::config::Config;

#[derive(Debug, Clone, Subcommand)]
pub enum ServicesCommand {
    /// Register services with the local agent
    Register(RegisterArgs),
    /// Deregister services with the local agent
    Deregister(DeregisterArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RegisterArgs {
    /// ID of the service (default: the -name value).
    #[arg(long, default_value = "")]
    pub id: String,
    /// Name of the service.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Address of the service.
    #[arg(long, default_value = "")]
    pub address: String,
    /// Port of the service.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub port: i64,
    /// Unix domain socket of the service (instead of address and port).
    #[arg(long, default_value = "")]
    pub socket: String,
    /// Metadata as `key=value` (repeatable).
    #[arg(long, value_name = "key=value", value_parser = key_value)]
    pub meta: Vec<(String, String)>,
    /// A tag of the service (repeatable).
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Tagged address as `key=host:port` (repeatable).
    #[arg(long = "tagged-address", value_name = "key=value", value_parser = key_value)]
    pub tagged_address: Vec<(String, String)>,
    /// The service's kind.
    #[arg(long, default_value = "")]
    pub kind: String,
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub server: ServerFlags,
    /// Service definition files (HCL or JSON).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DeregisterArgs {
    /// ID of the service to deregister (not with FILE arguments).
    #[arg(long, default_value = "")]
    pub id: String,
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub server: ServerFlags,
    /// Service definition files (HCL or JSON) naming the services to deregister.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn run(cmd: ServicesCommand) -> i32 {
    match cmd {
        ServicesCommand::Register(a) => register(a),
        ServicesCommand::Deregister(a) => deregister(a),
    }
}

/// Go's encoding/json field matching, plus Consul's snake_case translation: `Name`,
/// `name` and `socket_path`/`SocketPath` are the same field.
fn same_key(k: &str, name: &str) -> bool {
    let a = k.bytes().filter(|b| *b != b'_');
    let b = name.bytes().filter(|b| *b != b'_');
    a.map(|x| x.to_ascii_lowercase())
        .eq(b.map(|x| x.to_ascii_lowercase()))
}

/// The field's key as spelled in `o`.
fn key_in(o: &simd_json::owned::Object, name: &str) -> Option<String> {
    if o.contains_key(name) {
        return Some(name.to_owned());
    }
    o.keys().find(|k| same_key(k, name)).cloned()
}

fn field<'a>(v: &'a OwnedValue, name: &str) -> Option<&'a OwnedValue> {
    let o = v.as_object()?;
    o.get(key_in(o, name)?.as_str())
}

/// A string field, "" when absent or of another type (Go's zero value).
fn str_field<'a>(v: &'a OwnedValue, name: &str) -> &'a str {
    field(v, name).and_then(|x| x.as_str()).unwrap_or("")
}

/// True when the field is absent or holds its zero value.
fn is_zero(v: &OwnedValue, name: &str) -> bool {
    match field(v, name) {
        None => true,
        Some(x) => {
            x.is_null()
                || x.as_str() == Some("")
                || x.as_i64() == Some(0)
                || x.as_u64() == Some(0)
                || x.as_f64() == Some(0.0)
        }
    }
}

fn null() -> OwnedValue {
    OwnedValue::Static(StaticNode::Null)
}

/// The object behind field `name` of `v`, created (or replacing a null) when missing.
fn object_field<'a>(v: &'a mut OwnedValue, name: &str) -> Option<&'a mut simd_json::owned::Object> {
    let o = v.as_object_mut()?;
    let key = key_in(o, name).unwrap_or_else(|| name.to_owned());
    let slot = o.entry(key).or_insert_with(null);
    if slot.is_null() {
        *slot = OwnedValue::object();
    }
    slot.as_object_mut()
}

fn set(v: &mut OwnedValue, name: &str, value: OwnedValue) {
    if let Some(o) = v.as_object_mut() {
        let key = key_in(o, name).unwrap_or_else(|| name.to_owned());
        o.insert(key, value);
    }
}

/// `host:port` as Go's `net.SplitHostPort` splits it, for `-tagged-address`.
pub fn split_host_port(s: &str) -> Result<(String, i64), String> {
    let bad = |why: &str| format!("address {s}: {why}");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("missing ']' in address"))?;
        let p = after
            .strip_prefix(':')
            .ok_or_else(|| bad("missing port in address"))?;
        (h, p)
    } else {
        let (h, p) = s
            .rsplit_once(':')
            .ok_or_else(|| bad("missing port in address"))?;
        if h.contains(':') {
            return Err(bad("too many colons in address"));
        }
        (h, p)
    };
    let port = port
        .parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {}: invalid syntax", go_quote(port)))?;
    Ok((host.to_owned(), port))
}

fn tagged_addresses(pairs: &[(String, String)]) -> Result<Vec<(String, OwnedValue)>, String> {
    let mut out: Vec<(String, OwnedValue)> = Vec::new();
    for (k, v) in pairs {
        let (host, port) = split_host_port(v)?;
        let mut addr = OwnedValue::object();
        set(&mut addr, "Address", OwnedValue::from(host));
        set(&mut addr, "Port", OwnedValue::from(port));
        // A repeated key keeps its last value, as Consul's map-valued flags do.
        out.retain(|(x, _)| x != k);
        out.push((k.clone(), addr));
    }
    Ok(out)
}

/// The registration the flags describe, with Go's `omitempty` (only set fields are sent).
pub fn service_from_flags(a: &RegisterArgs, tagged: &[(String, OwnedValue)]) -> OwnedValue {
    let mut v = OwnedValue::object();
    for (name, val) in [
        ("Kind", &a.kind),
        ("ID", &a.id),
        ("Name", &a.name),
        ("Address", &a.address),
        ("SocketPath", &a.socket),
    ] {
        if !val.is_empty() {
            set(&mut v, name, OwnedValue::from(val.clone()));
        }
    }
    if !a.tag.is_empty() {
        let tags: Vec<OwnedValue> = a.tag.iter().cloned().map(OwnedValue::from).collect();
        set(&mut v, "Tags", OwnedValue::from(tags));
    }
    if a.port != 0 {
        set(&mut v, "Port", OwnedValue::from(a.port));
    }
    if !a.meta.is_empty() {
        let m = object_field(&mut v, "Meta").expect("object");
        for (k, val) in &a.meta {
            m.insert(k.clone(), OwnedValue::from(val.clone()));
        }
    }
    if !tagged.is_empty() {
        let m = object_field(&mut v, "TaggedAddresses").expect("object");
        for (k, addr) in tagged {
            m.insert(k.clone(), addr.clone());
        }
    }
    v
}

/// Fills a file's definition with what the flags give and the file does not (Consul lets
/// flags complete file definitions): scalars only when unset, meta and tagged addresses
/// merged (flags win), tags appended.
pub fn combine(file: &mut OwnedValue, a: &RegisterArgs, tagged: &[(String, OwnedValue)]) {
    for (name, val) in [
        ("ID", &a.id),
        ("Name", &a.name),
        ("Address", &a.address),
        ("Kind", &a.kind),
        ("SocketPath", &a.socket),
    ] {
        if !val.is_empty() && is_zero(file, name) {
            set(file, name, OwnedValue::from(val.clone()));
        }
    }
    if a.port != 0 && is_zero(file, "Port") {
        set(file, "Port", OwnedValue::from(a.port));
    }
    if !a.meta.is_empty() {
        if let Some(m) = object_field(file, "Meta") {
            for (k, val) in &a.meta {
                m.insert(k.clone(), OwnedValue::from(val.clone()));
            }
        }
    }
    if !tagged.is_empty() {
        if let Some(m) = object_field(file, "TaggedAddresses") {
            for (k, addr) in tagged {
                m.insert(k.clone(), addr.clone());
            }
        }
    }
    if !a.tag.is_empty() {
        let Some(o) = file.as_object_mut() else {
            return;
        };
        let key = key_in(o, "Tags").unwrap_or_else(|| "Tags".to_owned());
        let slot = o.entry(key).or_insert_with(null);
        if !slot.is_array() {
            *slot = OwnedValue::array();
        }
        if let Some(arr) = slot.as_array_mut() {
            arr.extend(a.tag.iter().cloned().map(OwnedValue::from));
        }
    }
}

/// The service definitions of config files, loaded as the agent loads its config.
pub fn services_from_files(files: &[PathBuf]) -> Result<Vec<OwnedValue>, String> {
    Config::validate_paths(files, None)
        .map(|c| c.services)
        .map_err(|e| e.to_string())
}

fn connect(http: &HttpFlags) -> Result<Client, i32> {
    Client::new(http).map_err(|e| {
        error_line(&format!("Error connecting to Consul agent: {e}"));
        1
    })
}

fn register(a: RegisterArgs) -> i32 {
    let tagged = match tagged_addresses(&a.tagged_address) {
        Ok(t) => t,
        Err(e) => {
            error_line(&format!("Invalid Tagged Address: {e}"));
            return 1;
        }
    };
    if a.files.is_empty() && a.name.is_empty() {
        error_line("Service registration requires at least one argument or flags.");
        return 1;
    }
    if !a.files.is_empty() && !a.name.is_empty() {
        // Consul's wording, although the flag it checks is -name.
        error_line("Service registration requires arguments or -id, not both.");
        return 1;
    }
    let svcs = if a.files.is_empty() {
        vec![service_from_flags(&a, &tagged)]
    } else {
        match services_from_files(&a.files) {
            Ok(mut v) => {
                for s in &mut v {
                    combine(s, &a, &tagged);
                }
                v
            }
            Err(e) => {
                error_line(&format!("Error: {e}"));
                return 1;
            }
        }
    };
    let client = match connect(&a.http) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for svc in &svcs {
        let name = str_field(svc, "Name");
        let body = match simd_json::to_vec(svc) {
            Ok(b) => b,
            Err(e) => {
                error_line(&format!(
                    "Error registering service {}: {e}",
                    go_quote(name)
                ));
                return 1;
            }
        };
        if let Err(e) = client.send_ok(Method::Put, "/v1/agent/service/register", &[], Some(&body))
        {
            error_line(&format!(
                "Error registering service {}: {e}",
                go_quote(name)
            ));
            return 1;
        }
        info_line(&format!("Registered service: {name}"));
    }
    0
}

fn deregister(a: DeregisterArgs) -> i32 {
    if a.files.is_empty() && a.id.is_empty() {
        error_line("Service deregistration requires at least one argument or -id.");
        return 1;
    }
    if !a.files.is_empty() && !a.id.is_empty() {
        error_line("Service deregistration requires arguments or -id, not both.");
        return 1;
    }
    let ids: Vec<String> = if a.files.is_empty() {
        vec![a.id.clone()]
    } else {
        match services_from_files(&a.files) {
            Ok(v) => v
                .iter()
                .map(|s| match str_field(s, "ID") {
                    "" => str_field(s, "Name").to_owned(),
                    id => id.to_owned(),
                })
                .collect(),
            Err(e) => {
                error_line(&format!("Error: {e}"));
                return 1;
            }
        }
    };
    let client = match connect(&a.http) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for id in ids.iter().filter(|id| !id.is_empty()) {
        let path = format!("/v1/agent/service/deregister/{}", encode_path(id));
        if let Err(e) = client.send_ok(Method::Put, &path, &[], None) {
            // Consul names the service's Name here (empty with -id); the ID is what we know.
            error_line(&format!(
                "Error deregistering service {}: {e}",
                go_quote(id)
            ));
            return 1;
        }
        info_line(&format!("Deregistered service: {id}"));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> RegisterArgs {
        let mut v = vec!["muster", "services", "register"];
        v.extend_from_slice(argv);
        match super::super::parse(v).unwrap().command {
            super::super::Command::Services {
                cmd: ServicesCommand::Register(a),
            } => a,
            other => panic!("{other:?}"),
        }
    }

    fn json(v: &OwnedValue) -> serde_json::Value {
        serde_json::from_slice(&simd_json::to_vec(v).unwrap()).unwrap()
    }

    fn parse(s: &str) -> OwnedValue {
        let mut b = s.as_bytes().to_vec();
        simd_json::to_owned_value(&mut b).unwrap()
    }

    #[test]
    fn flags_make_a_registration_with_only_set_fields() {
        let a = args(&[
            "-name=web",
            "-port",
            "8080",
            "-tag",
            "v1",
            "-tag=v2",
            "-meta",
            "a=1",
            "-meta=b=2=3",
            "-tagged-address",
            "lan=10.0.0.1:80",
            "-tagged-address",
            "v6=[::1]:81",
        ]);
        let t = tagged_addresses(&a.tagged_address).unwrap();
        let v = json(&service_from_flags(&a, &t));
        assert_eq!(
            v,
            serde_json::json!({
                "Name": "web",
                "Port": 8080,
                "Tags": ["v1", "v2"],
                "Meta": {"a": "1", "b": "2=3"},
                "TaggedAddresses": {
                    "lan": {"Address": "10.0.0.1", "Port": 80},
                    "v6": {"Address": "::1", "Port": 81}
                }
            })
        );
    }

    #[test]
    fn bad_tagged_address() {
        assert_eq!(
            split_host_port("10.0.0.1").unwrap_err(),
            "address 10.0.0.1: missing port in address"
        );
        assert!(split_host_port("a:b:c").is_err());
        assert!(split_host_port("h:x").is_err());
        assert_eq!(split_host_port(":0").unwrap(), (String::new(), 0));
    }

    #[test]
    fn flags_complete_file_definitions() {
        let a = args(&[
            "-id=web-1",
            "-address=10.0.0.9",
            "-port=99",
            "-tag=extra",
            "-meta=k=flag",
            "f.json",
        ]);
        let mut file =
            parse(r#"{"name":"web","port":80,"tags":["a"],"meta":{"k":"file","x":"y"}}"#);
        combine(&mut file, &a, &[]);
        assert_eq!(
            json(&file),
            serde_json::json!({
                "name": "web",
                "ID": "web-1",
                "Address": "10.0.0.9",
                "port": 80,
                "tags": ["a", "extra"],
                "meta": {"k": "flag", "x": "y"}
            })
        );
        // snake_case spellings are the same fields.
        let mut file = parse(r#"{"Name":"db","socket_path":"","Tags":null}"#);
        let a = args(&["-socket=/tmp/s", "-tag=t", "f.json"]);
        combine(&mut file, &a, &[]);
        assert_eq!(
            json(&file),
            serde_json::json!({"Name": "db", "socket_path": "/tmp/s", "Tags": ["t"]})
        );
    }

    #[test]
    fn fields_match_like_go() {
        let v = parse(r#"{"name":"n","Id":"i","enable_tag_override":true}"#);
        assert_eq!(str_field(&v, "Name"), "n");
        assert_eq!(str_field(&v, "ID"), "i");
        assert!(field(&v, "EnableTagOverride").is_some());
        assert_eq!(str_field(&v, "Address"), "");
    }

    #[test]
    fn file_definitions_json_and_hcl() {
        let dir = std::env::temp_dir().join(format!(
            "muster-services-unit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let j = dir.join("web.json");
        std::fs::write(&j, r#"{"Service": {"Name": "web", "Port": 80}}"#).unwrap();
        let h = dir.join("more.hcl");
        std::fs::write(
            &h,
            "services = [{ name = \"a\" }, { name = \"b\", id = \"b1\" }]\n",
        )
        .unwrap();
        let svcs = services_from_files(&[j.clone(), h.clone()]).unwrap();
        let names: Vec<&str> = svcs.iter().map(|s| str_field(s, "Name")).collect();
        assert_eq!(names, ["web", "a", "b"]);
        assert_eq!(str_field(&svcs[2], "ID"), "b1");
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "{ not json").unwrap();
        assert!(services_from_files(&[bad]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
