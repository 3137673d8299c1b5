//! `muster kv put|get|delete|export|import`, with Consul's flags, messages and exit codes.

use std::io::{Read, Write};

use base64::Engine as _;
use clap::{Args, Subcommand};
use serde::Deserialize;

use super::args::go_bool;
use super::http::{encode_path, Client, HttpError, HttpFlags, Method, ServerFlags};
use super::table::key_values;
use super::{error_line, info_line};

#[derive(Debug, Clone, Subcommand)]
pub enum KvCommand {
    /// Sets or updates data in the KV store
    Put(PutArgs),
    /// Retrieves or lists data from the KV store
    Get(GetArgs),
    /// Removes data from the KV store
    Delete(DeleteArgs),
    /// Exports a tree from the KV store as JSON
    Export(ExportArgs),
    /// Imports a tree stored as JSON to the KV store
    Import(ImportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// Check-And-Set: write only if the key's ModifyIndex is -modify-index (0 = key must not exist).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub cas: bool,
    /// Unsigned integer stored with the pair, unused by Consul.
    #[arg(long, default_value_t = 0)]
    pub flags: u64,
    /// The data is base64 encoded.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub base64: bool,
    /// ModifyIndex for -cas.
    #[arg(long, default_value_t = 0)]
    pub modify_index: u64,
    /// Session for -acquire and -release.
    #[arg(long, default_value = "")]
    pub session: String,
    /// Obtain a lock on the key with -session.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub acquire: bool,
    /// Release the lock -session holds on the key.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub release: bool,
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub server: ServerFlags,
    /// KEY [DATA]; DATA "-" reads stdin, "@file" reads a file.
    #[arg(value_name = "KEY [DATA]")]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// Print values base64 encoded.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub base64: bool,
    /// Print the pair's metadata too.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub detailed: bool,
    /// List keys under the prefix, not values.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub keys: bool,
    /// Treat the key as a prefix and print every pair under it.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub recurse: bool,
    /// Separator for -keys.
    #[arg(long, default_value = "/")]
    pub separator: String,
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub server: ServerFlags,
    #[arg(value_name = "KEY_OR_PREFIX")]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// Check-And-Set: delete only if the key's ModifyIndex is -modify-index.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub cas: bool,
    /// ModifyIndex for -cas.
    #[arg(long, default_value_t = 0)]
    pub modify_index: u64,
    /// Delete every key under the prefix.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub recurse: bool,
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub server: ServerFlags,
    #[arg(value_name = "KEY_OR_PREFIX")]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub server: ServerFlags,
    #[arg(value_name = "KEY_OR_PREFIX")]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Key prefix for the imported data.
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub server: ServerFlags,
    /// DATA: JSON as made by `kv export`; "-" reads stdin, "@file" reads a file.
    #[arg(value_name = "DATA")]
    pub args: Vec<String>,
}

/// A pair as `/v1/kv` returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct KvPair {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "CreateIndex", default)]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex", default)]
    pub modify_index: u64,
    #[serde(rename = "LockIndex", default)]
    pub lock_index: u64,
    #[serde(rename = "Flags", default)]
    pub flags: u64,
    /// Base64, or null for an empty value.
    #[serde(rename = "Value", default)]
    pub value: Option<String>,
    #[serde(rename = "Session", default)]
    pub session: Option<String>,
    #[serde(rename = "Namespace", default)]
    pub namespace: Option<String>,
    #[serde(rename = "Partition", default)]
    pub partition: Option<String>,
}

impl KvPair {
    pub fn value_bytes(&self) -> Vec<u8> {
        self.value
            .as_deref()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .unwrap_or_default()
    }
}

/// An entry of the `kv export` / `kv import` format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ExportEntry {
    #[serde(alias = "Key", default)]
    pub key: String,
    #[serde(alias = "Flags", default)]
    pub flags: u64,
    #[serde(alias = "Value", default)]
    pub value: String,
    #[serde(alias = "Namespace", default)]
    pub namespace: Option<String>,
    #[serde(alias = "Partition", default)]
    pub partition: Option<String>,
}

pub fn run(cmd: KvCommand) -> i32 {
    match cmd {
        KvCommand::Put(a) => put(a),
        KvCommand::Get(a) => get(a),
        KvCommand::Delete(a) => delete(a),
        KvCommand::Export(a) => export(a),
        KvCommand::Import(a) => import(a),
    }
}

fn connect(http: &HttpFlags) -> Result<Client, i32> {
    Client::new(http).map_err(|e| {
        error_line(&format!("Error connecting to Consul agent: {e}"));
        1
    })
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", encode_path(key))
}

fn strip_slash(key: &str) -> &str {
    key.strip_prefix('/').unwrap_or(key)
}

fn one_key(args: &[String]) -> Result<String, String> {
    match args {
        [] => Ok(String::new()),
        [k] => Ok(strip_slash(k).to_owned()),
        _ => Err(format!(
            "Too many arguments (expected 1, got {})",
            args.len()
        )),
    }
}

/// Consul's data argument rules: "" is empty, "@path" is a file, "-" alone is stdin,
/// anything else (even "-x") is the data itself.
pub fn load_data_source(arg: &str, stdin: &mut dyn Read) -> Result<Vec<u8>, String> {
    if let Some(path) = arg.strip_prefix('@') {
        return std::fs::read(path)
            .map_err(|e| format!("Failed to read file: {}", go_io_error("open", path, &e)));
    }
    if arg == "-" {
        let mut buf = Vec::new();
        stdin
            .read_to_end(&mut buf)
            .map_err(|e| format!("Failed to read stdin: {e}"))?;
        return Ok(buf);
    }
    Ok(arg.as_bytes().to_vec())
}

/// An I/O error worded like Go's `*PathError`.
pub fn go_io_error(op: &str, path: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let what = match e.kind() {
        ErrorKind::NotFound => "no such file or directory".to_owned(),
        ErrorKind::PermissionDenied => "permission denied".to_owned(),
        ErrorKind::IsADirectory => "is a directory".to_owned(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_ascii_lowercase(),
                None => s,
            }
        }
    };
    format!("{op} {path}: {what}")
}

fn put(a: PutArgs) -> i32 {
    let (key, data) = match a.args.as_slice() {
        [] => {
            error_line("Error! Missing KEY argument");
            return 1;
        }
        [k] => (k.clone(), Vec::new()),
        [k, d] => match load_data_source(d, &mut std::io::stdin().lock()) {
            Ok(d) => (k.clone(), d),
            Err(e) => {
                error_line(&format!("Error! {e}"));
                return 1;
            }
        },
        more => {
            error_line(&format!(
                "Error! Too many arguments (expected 1 or 2, got {})",
                more.len()
            ));
            return 1;
        }
    };
    let data = if a.base64 {
        match base64::engine::general_purpose::STANDARD.decode(trim_ascii(&data)) {
            Ok(d) => d,
            Err(e) => {
                error_line(&format!("Error! Cannot base 64 decode data: {e}"));
                return 1;
            }
        }
    } else {
        data
    };
    if (a.acquire || a.release) && a.session.is_empty() {
        error_line("Error! Missing -session (required with -acquire and -release)");
        return 1;
    }
    let client = match connect(&a.http) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if key.starts_with('/') {
        error_line(&format!(
            "Error! Failed writing data: Invalid key. Key must not begin with a '/': {key}"
        ));
        return 1;
    }
    let mut q = a.server.query();
    q.retain(|(k, _)| *k == "dc");
    if a.flags != 0 {
        q.push(("flags", a.flags.to_string()));
    }
    let mode = if a.cas {
        q.push(("cas", a.modify_index.to_string()));
        "cas"
    } else if a.acquire {
        q.push(("acquire", a.session.clone()));
        "acquire"
    } else if a.release {
        q.push(("release", a.session.clone()));
        "release"
    } else {
        "put"
    };
    let result = client
        .send_ok(Method::Put, &kv_path(&key), &q, Some(&data))
        .map(|r| String::from_utf8_lossy(&r.body).trim() == "true");
    match (mode, result) {
        ("cas", Err(e)) => fail(&format!("Error! Did not write to {key}: {e}")),
        ("cas", Ok(false)) if a.modify_index == 0 => fail(&format!(
            "Error! Did not write to {key}: CAS performed with index=0 and key already exists."
        )),
        ("cas", Ok(false)) => fail(&format!("Error! Did not write to {key}: CAS failed")),
        ("acquire", Err(e)) => fail(&format!("Error! Failed writing data: {e}")),
        ("acquire", Ok(false)) => fail("Error! Did not acquire lock"),
        ("acquire", Ok(true)) => ok(&format!("Success! Lock acquired on: {key}")),
        ("release", Err(_)) => fail(&format!("Error! Failed writing data: {key}")),
        ("release", Ok(false)) => fail("Error! Did not release lock"),
        ("release", Ok(true)) => ok(&format!("Success! Lock released on: {key}")),
        (_, Err(e)) => fail(&format!("Error! Failed writing data: {e}")),
        (_, Ok(_)) => ok(&format!("Success! Data written to: {key}")),
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |i| i + 1);
    &b[s..e]
}

fn fail(msg: &str) -> i32 {
    error_line(msg);
    1
}

fn ok(msg: &str) -> i32 {
    info_line(msg);
    0
}

/// GET of a single pair; `None` when the key does not exist.
fn fetch_pair(
    client: &Client,
    key: &str,
    q: &[(&str, String)],
) -> Result<Option<KvPair>, HttpError> {
    let r = client.send(Method::Get, &kv_path(key), q, None)?;
    if r.status == 404 {
        return Ok(None);
    }
    let r = require_ok(r)?;
    let pairs: Vec<KvPair> = r.json()?;
    Ok(pairs.into_iter().next())
}

/// Recursive GET; an absent prefix is an empty list.
fn fetch_list(
    client: &Client,
    prefix: &str,
    q: &[(&str, String)],
) -> Result<Vec<KvPair>, HttpError> {
    let mut q = q.to_vec();
    q.push(("recurse", String::new()));
    let r = client.send(Method::Get, &kv_path(prefix), &q, None)?;
    if r.status == 404 {
        return Ok(Vec::new());
    }
    require_ok(r)?.json()
}

fn fetch_keys(
    client: &Client,
    prefix: &str,
    sep: &str,
    q: &[(&str, String)],
) -> Result<Vec<String>, HttpError> {
    let mut q = q.to_vec();
    q.push(("keys", String::new()));
    if !sep.is_empty() {
        q.push(("separator", sep.to_owned()));
    }
    let r = client.send(Method::Get, &kv_path(prefix), &q, None)?;
    if r.status == 404 {
        return Ok(Vec::new());
    }
    require_ok(r)?.json()
}

fn require_ok(r: super::http::Response) -> Result<super::http::Response, HttpError> {
    if (200..300).contains(&r.status) {
        Ok(r)
    } else {
        Err(HttpError::Status {
            code: r.status,
            body: String::from_utf8_lossy(&r.body).trim().to_owned(),
        })
    }
}

/// `kv get -detailed` block for one pair (no trailing newline).
pub fn format_detailed(pair: &KvPair, base64_value: bool, keys_only: bool) -> Vec<u8> {
    let mut rows: Vec<(&str, String)> = vec![
        ("CreateIndex", pair.create_index.to_string()),
        ("Flags", pair.flags.to_string()),
        ("Key", pair.key.clone()),
        ("LockIndex", pair.lock_index.to_string()),
        ("ModifyIndex", pair.modify_index.to_string()),
        (
            "Session",
            pair.session
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".to_owned()),
        ),
    ];
    if let Some(p) = pair.partition.as_ref().filter(|p| !p.is_empty()) {
        rows.push(("Partition", p.clone()));
    }
    if let Some(n) = pair.namespace.as_ref().filter(|n| !n.is_empty()) {
        rows.push(("Namespace", n.clone()));
    }
    // The value may be binary: render the block with a placeholder, then splice the bytes.
    let has_value = !keys_only;
    if has_value {
        rows.push(("Value", String::new()));
    }
    let mut out = key_values(&rows).into_bytes();
    if has_value {
        let v = pair.value_bytes();
        if base64_value {
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(&v)
                    .as_bytes(),
            );
        } else {
            out.extend_from_slice(&v);
        }
    }
    out
}

/// Lines of `kv get -recurse` (without -detailed): `key:value`.
pub fn format_recurse_line(pair: &KvPair, base64_value: bool) -> Vec<u8> {
    let mut line = pair.key.clone().into_bytes();
    line.push(b':');
    let v = pair.value_bytes();
    if base64_value {
        line.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(&v)
                .as_bytes(),
        );
    } else {
        line.extend_from_slice(&v);
    }
    line
}

fn write_line(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.write_all(b"\n");
}

fn get(a: GetArgs) -> i32 {
    let key = match one_key(&a.args) {
        Ok(k) => k,
        Err(e) => return fail(&e),
    };
    if key.is_empty() && !(a.recurse || a.keys) {
        return fail("Error! Missing KEY argument");
    }
    let client = match connect(&a.http) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let q = a.server.query();
    if a.keys && a.recurse {
        let pairs = match fetch_list(&client, &key, &q) {
            Ok(p) => p,
            Err(e) => return fail(&format!("Error querying Consul agent: {e}")),
        };
        for (i, pair) in pairs.iter().enumerate() {
            if a.detailed {
                write_line(&format_detailed(pair, false, true));
                if i + 1 < pairs.len() {
                    write_line(b"");
                }
            } else {
                write_line(pair.key.as_bytes());
            }
        }
        return 0;
    }
    if a.keys {
        return match fetch_keys(&client, &key, &a.separator, &q) {
            Ok(keys) => {
                for k in keys {
                    write_line(k.as_bytes());
                }
                0
            }
            Err(e) => fail(&format!("Error querying Consul agent: {e}")),
        };
    }
    if a.recurse {
        let pairs = match fetch_list(&client, &key, &q) {
            Ok(p) => p,
            Err(e) => return fail(&format!("Error querying Consul agent: {e}")),
        };
        for (i, pair) in pairs.iter().enumerate() {
            if a.detailed {
                write_line(&format_detailed(pair, a.base64, false));
                if i + 1 < pairs.len() {
                    write_line(b"");
                }
            } else {
                write_line(&format_recurse_line(pair, a.base64));
            }
        }
        return 0;
    }
    match fetch_pair(&client, &key, &q) {
        Err(e) => fail(&format!("Error querying Consul agent: {e}")),
        Ok(None) => fail(&format!("Error! No key exists at: {key}")),
        Ok(Some(pair)) => {
            if a.detailed {
                write_line(&format_detailed(&pair, a.base64, false));
            } else if a.base64 {
                write_line(
                    base64::engine::general_purpose::STANDARD
                        .encode(pair.value_bytes())
                        .as_bytes(),
                );
            } else {
                write_line(&pair.value_bytes());
            }
            0
        }
    }
}

fn delete(a: DeleteArgs) -> i32 {
    let key = match one_key(&a.args) {
        Ok(k) => k,
        Err(e) => return fail(&e),
    };
    if key.is_empty() && !a.recurse {
        return fail("Error! Missing KEY argument");
    }
    if a.cas && a.modify_index == 0 {
        return fail(
            "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.",
        );
    }
    if a.modify_index != 0 && !a.cas {
        return fail("Cannot specify -modify-index without -cas!");
    }
    if a.recurse && a.cas {
        return fail("Cannot specify both -cas and -recurse!");
    }
    let client = match connect(&a.http) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut q = a.server.query();
    q.retain(|(k, _)| *k == "dc");
    if a.recurse {
        q.push(("recurse", String::new()));
        return match client.send_ok(Method::Delete, &kv_path(&key), &q, None) {
            Ok(_) => ok(&format!("Success! Deleted keys with prefix: {key}")),
            Err(e) => fail(&format!("Error! Did not delete prefix {key}: {e}")),
        };
    }
    if a.cas {
        q.push(("cas", a.modify_index.to_string()));
        return match client.send_ok(Method::Delete, &kv_path(&key), &q, None) {
            Ok(r) if String::from_utf8_lossy(&r.body).trim() == "true" => {
                ok(&format!("Success! Deleted key: {key}"))
            }
            Ok(_) => fail(&format!("Error! Did not delete key {key}: CAS failed")),
            Err(e) => fail(&format!("Error! Did not delete key {key}: {e}")),
        };
    }
    match client.send_ok(Method::Delete, &kv_path(&key), &q, None) {
        Ok(_) => ok(&format!("Success! Deleted key: {key}")),
        Err(e) => fail(&format!("Error deleting key {key}: {e}")),
    }
}

/// The `kv export` document: Go's `json.MarshalIndent(entries, "", "\t")`.
pub fn export_json(pairs: &[KvPair]) -> String {
    if pairs.is_empty() {
        return "[]".to_owned();
    }
    let mut s = String::from("[\n");
    for (i, p) in pairs.iter().enumerate() {
        s.push_str("\t{\n");
        s.push_str(&format!("\t\t\"key\": {},\n", go_json_string(&p.key)));
        s.push_str(&format!("\t\t\"flags\": {},\n", p.flags));
        let value = base64::engine::general_purpose::STANDARD.encode(p.value_bytes());
        s.push_str(&format!("\t\t\"value\": {}", go_json_string(&value)));
        if let Some(ns) = p.namespace.as_ref().filter(|n| !n.is_empty()) {
            s.push_str(&format!(",\n\t\t\"namespace\": {}", go_json_string(ns)));
        }
        if let Some(pt) = p.partition.as_ref().filter(|n| !n.is_empty()) {
            s.push_str(&format!(",\n\t\t\"partition\": {}", go_json_string(pt)));
        }
        s.push_str("\n\t}");
        s.push_str(if i + 1 < pairs.len() { ",\n" } else { "\n" });
    }
    s.push(']');
    s
}

/// A JSON string literal escaped as Go's encoding/json does (HTML-safe).
pub fn go_json_string(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                s.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

fn export(a: ExportArgs) -> i32 {
    let key = match one_key(&a.args) {
        Ok(k) => k,
        Err(e) => return fail(&e),
    };
    let client = match connect(&a.http) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match fetch_list(&client, &key, &a.server.query()) {
        Ok(pairs) => {
            info_line(&export_json(&pairs));
            0
        }
        Err(e) => fail(&format!("Error querying Consul agent: {e}")),
    }
}

/// Parses `kv import` data.
pub fn parse_import(data: &[u8]) -> Result<Vec<ExportEntry>, String> {
    let mut buf = data.to_vec();
    simd_json::serde::from_slice::<Vec<ExportEntry>>(&mut buf)
        .map_err(|e| format!("Cannot unmarshal data: {e}"))
}

/// Go's `path.Join` (joins then cleans: no empty, `.` or `..` elements, no trailing slash).
pub fn go_path_join(prefix: &str, key: &str) -> String {
    let joined = match (prefix.is_empty(), key.is_empty()) {
        (true, true) => return String::new(),
        (true, false) => key.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}/{key}"),
    };
    go_path_clean(&joined)
}

fn go_path_clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
}

/// The key an entry is imported under.
pub fn import_key(prefix: &str, entry_key: &str) -> String {
    let mut k = go_path_join(prefix, entry_key);
    if entry_key.ends_with('/') {
        k.push('/');
    }
    k
}

fn import(a: ImportArgs) -> i32 {
    let data = match a.args.as_slice() {
        [] => return fail("Error! Missing DATA argument"),
        [d] if d.is_empty() => return fail("Error! Empty DATA argument"),
        [d] => match load_data_source(d, &mut std::io::stdin().lock()) {
            Ok(d) => d,
            Err(e) => return fail(&format!("Error! {e}")),
        },
        more => {
            return fail(&format!(
                "Error! Too many arguments (expected 1, got {})",
                more.len()
            ))
        }
    };
    let client = match connect(&a.http) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let entries = match parse_import(&data) {
        Ok(e) => e,
        Err(e) => return fail(&e),
    };
    let mut base_q = a.server.query();
    base_q.retain(|(k, _)| *k == "dc");
    for entry in entries {
        let value = match base64::engine::general_purpose::STANDARD.decode(entry.value.as_bytes()) {
            Ok(v) => v,
            Err(e) => {
                return fail(&format!(
                    "Error base 64 decoding value for key {}: {e}",
                    entry.key
                ))
            }
        };
        let key = import_key(&a.prefix, &entry.key);
        let mut q = base_q.clone();
        if entry.flags != 0 {
            q.push(("flags", entry.flags.to_string()));
        }
        if let Err(e) = client.send_ok(Method::Put, &kv_path(&key), &q, Some(&value)) {
            return fail(&format!("Error! Failed writing data for key {key}: {e}"));
        }
        info_line(&format!("Imported: {key}"));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &str, value: Option<&str>) -> KvPair {
        KvPair {
            key: key.to_owned(),
            create_index: 5,
            modify_index: 7,
            value: value.map(|v| base64::engine::general_purpose::STANDARD.encode(v)),
            ..KvPair::default()
        }
    }

    #[test]
    fn decodes_api_pairs() {
        let mut body = br#"[{"LockIndex":0,"Key":"name","Flags":3,"Value":"aHh4","CreateIndex":12,"ModifyIndex":13}]"#.to_vec();
        let pairs: Vec<KvPair> = simd_json::serde::from_slice(&mut body).unwrap();
        assert_eq!(pairs[0].key, "name");
        assert_eq!(pairs[0].flags, 3);
        assert_eq!(pairs[0].value_bytes(), b"hxx");
        let mut body = br#"[{"Key":"empty","Value":null,"Session":"abc"}]"#.to_vec();
        let pairs: Vec<KvPair> = simd_json::serde::from_slice(&mut body).unwrap();
        assert!(pairs[0].value_bytes().is_empty());
        assert_eq!(pairs[0].session.as_deref(), Some("abc"));
    }

    #[test]
    fn detailed_block() {
        let out =
            String::from_utf8(format_detailed(&pair("foo", Some("bar")), false, false)).unwrap();
        assert_eq!(
            out,
            "CreateIndex      5\nFlags            0\nKey              foo\nLockIndex        0\n\
             ModifyIndex      7\nSession          -\nValue            bar"
        );
        let out =
            String::from_utf8(format_detailed(&pair("foo", Some("bar")), true, false)).unwrap();
        assert!(out.ends_with("Value            YmFy"), "{out}");
        let out =
            String::from_utf8(format_detailed(&pair("foo", Some("bar")), false, true)).unwrap();
        assert!(out.ends_with("Session          -"), "{out}");
    }

    #[test]
    fn recurse_lines() {
        assert_eq!(
            format_recurse_line(&pair("a/b", Some("v")), false),
            b"a/b:v"
        );
        assert_eq!(format_recurse_line(&pair("a/b", None), false), b"a/b:");
        assert_eq!(
            format_recurse_line(&pair("a/b", Some("v")), true),
            b"a/b:dg=="
        );
    }

    #[test]
    fn export_format_matches_go() {
        assert_eq!(export_json(&[]), "[]");
        let out = export_json(&[pair("name", Some("hxx")), pair("a<b", None)]);
        assert_eq!(
            out,
            "[\n\t{\n\t\t\"key\": \"name\",\n\t\t\"flags\": 0,\n\t\t\"value\": \"aHh4\"\n\t},\n\
             \t{\n\t\t\"key\": \"a\\u003cb\",\n\t\t\"flags\": 0,\n\t\t\"value\": \"\"\n\t}\n]"
        );
    }

    #[test]
    fn export_import_round_trip() {
        let text = export_json(&[pair("x/y", Some("1")), pair("dir/", None)]);
        let entries = parse_import(text.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].key, "x/y");
        assert_eq!(entries[0].value, "MQ==");
        assert_eq!(import_key("", &entries[1].key), "dir/");
        assert_eq!(import_key("pre", &entries[0].key), "pre/x/y");
        assert!(parse_import(b"{not json").is_err());
    }

    #[test]
    fn path_join_like_go() {
        assert_eq!(go_path_join("", ""), "");
        assert_eq!(go_path_join("", "a//b/"), "a/b");
        assert_eq!(go_path_join("p", "../x"), "x");
        assert_eq!(go_path_join("a/b", "./c"), "a/b/c");
        assert_eq!(go_path_join("", "/abs"), "/abs");
    }

    #[test]
    fn data_sources() {
        let mut stdin: &[u8] = b"from stdin";
        assert_eq!(load_data_source("-", &mut stdin).unwrap(), b"from stdin");
        let mut empty: &[u8] = b"";
        assert_eq!(load_data_source("-x", &mut empty).unwrap(), b"-x");
        assert_eq!(load_data_source("", &mut empty).unwrap(), b"");
        let dir = std::env::temp_dir().join(format!("muster-kv-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("v.txt");
        std::fs::write(&f, b"file data").unwrap();
        assert_eq!(
            load_data_source(&format!("@{}", f.display()), &mut empty).unwrap(),
            b"file data"
        );
        let err = load_data_source("@/nonexistent/x", &mut empty).unwrap_err();
        assert_eq!(
            err,
            "Failed to read file: open /nonexistent/x: no such file or directory"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn go_json_escapes() {
        assert_eq!(
            go_json_string("a\"b\\c\n<&>"),
            "\"a\\\"b\\\\c\\n\\u003c\\u0026\\u003e\""
        );
        assert_eq!(go_json_string("\u{1}"), "\"\\u0001\"");
    }
}
