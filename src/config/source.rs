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
            hcl::from_str::<Value>(s).map_err(|e| format!("invalid HCL: {e}"))
        }
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
