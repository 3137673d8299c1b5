//! Reading config files and directories (JSON and HCL).

use std::fs;
use std::path::{Path, PathBuf};

use hcl::Value;

use super::Builder;

/// Format of a config file: from its extension, or forced by `-config-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigFormat {
    Json,
    Hcl,
}

impl ConfigFormat {
    pub fn parse(s: &str) -> Result<ConfigFormat, String> {
        match s {
            "json" => Ok(ConfigFormat::Json),
            "hcl" => Ok(ConfigFormat::Hcl),
            other => Err(format!(
                "-config-format must be \"json\" or \"hcl\", not {other:?}"
            )),
        }
    }

    fn from_path(path: &Path) -> Option<ConfigFormat> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Some(ConfigFormat::Json),
            Some("hcl") => Some(ConfigFormat::Hcl),
            _ => None,
        }
    }
}

/// Parses one document into the common value tree.
pub fn parse(text: &[u8], format: ConfigFormat) -> Result<Value, String> {
    match format {
        ConfigFormat::Json => {
            let mut buf = text.to_vec();
            simd_json::serde::from_slice::<Value>(&mut buf)
                .map_err(|e| format!("invalid JSON: {e}"))
        }
        ConfigFormat::Hcl => {
            let s =
                std::str::from_utf8(text).map_err(|e| format!("invalid HCL: not UTF-8: {e}"))?;
            let mut doc = super::hcl1::parse(s).map_err(|e| format!("invalid HCL: {e}"))?;
            wrap_lists(&mut doc, "");
            Ok(doc)
        }
    }
}

/// Keys that hold lists of objects wherever they appear (dotted, lower case; the elements
/// of a list share their list's path). One HCL block is one object, but under these keys
/// Consul's decoder keeps it a list of one, and so must we: a service definition's `checks`
/// must be a list however many `checks` blocks it has.
const LIST_KEYS: &[&str] = &[
    "checks",
    "services",
    "watches",
    "segments",
    "config_entries.bootstrap",
    "service.checks",
    "services.checks",
    "service.proxy.upstreams",
    "services.proxy.upstreams",
    "service.proxy.expose.paths",
    "services.proxy.expose.paths",
    "service.connect.proxy.upstreams",
    "services.connect.proxy.upstreams",
    "service.connect.proxy.config.upstreams",
    "services.connect.proxy.config.upstreams",
    "service.connect.sidecar_service.checks",
    "services.connect.sidecar_service.checks",
    "service.connect.sidecar_service.proxy.upstreams",
    "services.connect.sidecar_service.proxy.upstreams",
    "service.connect.sidecar_service.proxy.expose.paths",
    "services.connect.sidecar_service.proxy.expose.paths",
];

fn wrap_lists(v: &mut Value, path: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let key = k.to_ascii_lowercase();
                let sub = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                if LIST_KEYS.contains(&sub.as_str()) && matches!(child, Value::Object(_)) {
                    let one = std::mem::replace(child, Value::Null);
                    *child = Value::Array(vec![one]);
                }
                wrap_lists(child, &sub);
            }
        }
        Value::Array(items) => {
            for item in items {
                wrap_lists(item, path);
            }
        }
        _ => {}
    }
}

impl Builder {
    /// Loads a `-config-file` or `-config-dir` path (Consul treats both alike: a directory
    /// contributes its `*.json` and `*.hcl` files in lexical order, not its subdirectories).
    pub(super) fn load_path(&mut self, path: &Path, forced: Option<ConfigFormat>) {
        let shown = path.display().to_string();
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.issue(&shown, None, format!("cannot read: {e}"));
                return;
            }
        };
        if !meta.is_dir() {
            match forced.or_else(|| ConfigFormat::from_path(path)) {
                Some(fmt) => self.load_file(path, fmt),
                None => self.issue(
                    &shown,
                    None,
                    "extension must be .hcl or .json, or config format must be set".to_owned(),
                ),
            }
            return;
        }
        let entries = match fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) => {
                self.issue(&shown, None, format!("cannot read directory: {e}"));
                return;
            }
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.issue(&shown, None, format!("cannot read directory: {e}"));
                    return;
                }
            };
            let p = entry.path();
            // Follow symlinks: a linked file counts, a directory never does.
            if !fs::metadata(&p).map(|m| m.is_file()).unwrap_or(false) {
                continue;
            }
            files.push(p);
        }
        files.sort();
        for file in files {
            match forced.or_else(|| ConfigFormat::from_path(&file)) {
                Some(fmt) => self.load_file(&file, fmt),
                None => self.warn(format!(
                    "skipping file {}, extension must be .hcl or .json, or config format must be set",
                    file.display()
                )),
            }
        }
    }

    fn load_file(&mut self, path: &Path, format: ConfigFormat) {
        let shown = path.display().to_string();
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) => {
                self.issue(&shown, None, format!("cannot read: {e}"));
                return;
            }
        };
        match parse(&text, format) {
            Ok(doc) => {
                self.cfg.sources.push(path.to_path_buf());
                self.apply_document(&shown, &doc);
            }
            Err(e) => self.issue(&shown, None, e),
        }
    }

    /// Applies an inline fragment (`-hcl`), named for errors.
    pub(super) fn load_fragment(&mut self, name: &str, text: &str, format: ConfigFormat) {
        match parse(text.as_bytes(), format) {
            Ok(doc) => self.apply_document(name, &doc),
            Err(e) => self.issue(name, None, e),
        }
    }
}
