//! `muster config write|read|list|delete`: config entries through `/v1/config`, with Consul's
//! CLI messages. `write` takes a JSON or HCL file (or `-` for stdin).
use std::io::Read;

use clap::{Args, Subcommand};
use simd_json::prelude::*;

use super::http::{encode_path, Client, HttpFlags, Method};
use super::{error_line, info_line};

#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Create or update a centralized config entry
    Write(WriteArgs),
    /// Read a centralized config entry
    Read(ReadArgs),
    /// List centralized config entries of a given kind
    List(ListArgs),
    /// Delete a centralized config entry
    Delete(DeleteArgs),
}

#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// Perform a Check-And-Set operation with -modify-index.
    #[arg(long, default_value_t = false)]
    pub cas: bool,
    /// The ModifyIndex the entry must have for a -cas write to succeed.
    #[arg(long = "modify-index", default_value_t = 0)]
    pub modify_index: u64,
    #[command(flatten)]
    pub http: HttpFlags,
    /// The file (JSON or HCL) holding the entry, or "-" for stdin.
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// The kind of the entry.
    #[arg(long, default_value = "")]
    pub kind: String,
    /// The name of the entry.
    #[arg(long, default_value = "")]
    pub name: String,
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// The kind of entries to list.
    #[arg(long, default_value = "")]
    pub kind: String,
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// The kind of the entry.
    #[arg(long, default_value = "")]
    pub kind: String,
    /// The name of the entry.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Perform a Check-And-Set operation with -modify-index.
    #[arg(long, default_value_t = false)]
    pub cas: bool,
    /// The ModifyIndex the entry must have for a -cas delete to succeed.
    #[arg(long = "modify-index", default_value_t = 0)]
    pub modify_index: u64,
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

pub fn run(cmd: ConfigCommand) -> i32 {
    match cmd {
        ConfigCommand::Write(a) => write(&a),
        ConfigCommand::Read(a) => read(&a),
        ConfigCommand::List(a) => list(&a),
        ConfigCommand::Delete(a) => delete(&a),
    }
}

fn client(flags: &HttpFlags) -> Option<Client> {
    match Client::new(flags) {
        Ok(c) => Some(c),
        Err(e) => {
            error_line(&format!("Error connecting to Consul agent: {e}"));
            None
        }
    }
}

/// A config entry file as JSON text: JSON as given, HCL converted.
pub fn entry_json(text: &str) -> Result<String, String> {
    let mut bytes = text.as_bytes().to_vec();
    if let Ok(v) = simd_json::to_owned_value(&mut bytes) {
        return Ok(v.encode());
    }
    let v: hcl::Value = hcl::from_str(text).map_err(|e| e.to_string())?;
    simd_json::to_string(&v).map_err(|e| e.to_string())
}

fn write(a: &WriteArgs) -> i32 {
    let [src] = a.args.as_slice() else {
        error_line(
            "Must provide exactly one positional argument to specify the config entry to write",
        );
        return 1;
    };
    let text = if src == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            error_line(&format!("Failed to read stdin: {e}"));
            return 1;
        }
        s
    } else {
        match std::fs::read_to_string(src) {
            Ok(s) => s,
            Err(e) => {
                error_line(&format!(
                    "Failed to load data: Failed to read file: {}",
                    super::kv::go_io_error("open", src, &e)
                ));
                return 1;
            }
        }
    };
    let body = match entry_json(&text) {
        Ok(b) => b,
        Err(e) => {
            error_line(&format!("Failed to decode config entry input: {e}"));
            return 1;
        }
    };
    let (kind, name) = kind_and_name(&body);
    let Some(c) = client(&a.http) else {
        return 1;
    };
    let q: Vec<(&str, String)> = if a.cas {
        vec![("cas", a.modify_index.to_string())]
    } else {
        Vec::new()
    };
    match c.send_ok(Method::Put, "/v1/config", &q, Some(body.as_bytes())) {
        Ok(r) if r.body.trim_ascii() == b"true" => {
            info_line(&format!("Config entry written: {kind}/{name}"));
            0
        }
        Ok(_) => {
            error_line(&format!("Config entry not updated: {kind}/{name}"));
            1
        }
        Err(e) => {
            error_line(&format!("Error writing config entry {kind}/{name}: {e}"));
            1
        }
    }
}

/// Kind and Name of an entry body (either key spelling), for messages.
fn kind_and_name(body: &str) -> (String, String) {
    let mut b = body.as_bytes().to_vec();
    let Ok(v) = simd_json::to_owned_value(&mut b) else {
        return (String::new(), String::new());
    };
    let get = |k: &str| {
        v.as_object()
            .and_then(|o| o.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (kind, mut name) = (get("Kind"), get("Name"));
    if name.is_empty() {
        name = match kind.as_str() {
            "proxy-defaults" => "global".into(),
            "mesh" => "mesh".into(),
            _ => name,
        };
    }
    (kind, name)
}

fn need(kind: &str, name: Option<&str>) -> bool {
    if kind.is_empty() {
        error_line("Must specify the -kind parameter");
        return false;
    }
    if name.is_some_and(str::is_empty) {
        error_line("Must specify the -name parameter");
        return false;
    }
    true
}

fn read(a: &ReadArgs) -> i32 {
    if !need(&a.kind, Some(&a.name)) {
        return 1;
    }
    let Some(c) = client(&a.http) else {
        return 1;
    };
    let path = format!(
        "/v1/config/{}/{}",
        encode_path(&a.kind),
        encode_path(&a.name)
    );
    match c.send_ok(Method::Get, &path, &[], None) {
        Ok(r) => {
            let mut body = r.body;
            match simd_json::to_owned_value(&mut body) {
                Ok(v) => {
                    info_line(&simd_json::to_string_pretty(&v).unwrap_or_default());
                    0
                }
                Err(e) => {
                    error_line(&format!("Error decoding config entry: {e}"));
                    1
                }
            }
        }
        Err(e) => {
            error_line(&format!(
                "Error reading config entry {}/{}: {e}",
                a.kind, a.name
            ));
            1
        }
    }
}

fn list(a: &ListArgs) -> i32 {
    if !need(&a.kind, None) {
        return 1;
    }
    let Some(c) = client(&a.http) else {
        return 1;
    };
    let path = format!("/v1/config/{}", encode_path(&a.kind));
    let entries: Result<Vec<simd_json::OwnedValue>, _> = c
        .send_ok(Method::Get, &path, &[], None)
        .and_then(|r| r.json());
    match entries {
        Ok(list) => {
            for e in list {
                if let Some(n) = e.get("Name").and_then(|n| n.as_str()) {
                    info_line(n);
                }
            }
            0
        }
        Err(e) => {
            error_line(&format!(
                "Error listing config entries for kind {:?}: {e}",
                a.kind
            ));
            1
        }
    }
}

fn delete(a: &DeleteArgs) -> i32 {
    if !need(&a.kind, Some(&a.name)) {
        return 1;
    }
    if a.modify_index != 0 && !a.cas {
        error_line("Cannot specify -modify-index without -cas");
        return 1;
    }
    let Some(c) = client(&a.http) else {
        return 1;
    };
    let path = format!(
        "/v1/config/{}/{}",
        encode_path(&a.kind),
        encode_path(&a.name)
    );
    let q: Vec<(&str, String)> = if a.cas {
        vec![("cas", a.modify_index.to_string())]
    } else {
        Vec::new()
    };
    match c.send_ok(Method::Delete, &path, &q, None) {
        Ok(r) if a.cas && r.body.trim_ascii() != b"true" => {
            error_line(&format!("Config entry not deleted: {}/{}", a.kind, a.name));
            1
        }
        Ok(_) => {
            info_line(&format!("Config entry deleted: {}/{}", a.kind, a.name));
            0
        }
        Err(e) => {
            error_line(&format!(
                "Error deleting config entry {}/{}: {e}",
                a.kind, a.name
            ));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_files_become_json() {
        let j = entry_json("Kind = \"service-defaults\"\nName = \"web\"\nProtocol = \"http\"\n")
            .unwrap();
        assert_eq!(kind_and_name(&j), ("service-defaults".into(), "web".into()));
        assert!(j.contains("\"Protocol\":\"http\""), "{j}");
        let j =
            entry_json(r#"{"kind": "proxy-defaults", "config": {"protocol": "http"}}"#).unwrap();
        assert_eq!(
            kind_and_name(&j),
            ("proxy-defaults".into(), "global".into())
        );
    }
}
