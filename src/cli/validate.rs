//! `muster validate FILE_OR_DIRECTORY...` (alias `configtest`): loads config the way the
//! agent would and reports every problem.

use std::path::PathBuf;

use clap::Args;

use super::args::go_bool;
use super::{error_line, info_line};
use crate::config::{Config, ConfigFormat};

#[derive(Debug, Clone, Default, Args)]
pub struct ValidateArgs {
    /// Format of the files whatever their extension: json or hcl.
    #[arg(long, value_name = "FORMAT")]
    pub config_format: Option<String>,
    /// Print nothing on success.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub quiet: bool,
    /// `configtest` took its paths as flags; accepted for old init scripts.
    #[arg(
        long = "config-file",
        visible_alias = "config-dir",
        value_name = "PATH",
        hide = true
    )]
    pub config_paths: Vec<PathBuf>,
    #[arg(value_name = "FILE_OR_DIRECTORY")]
    pub paths: Vec<PathBuf>,
}

pub fn run(a: ValidateArgs) -> i32 {
    let mut paths = a.config_paths.clone();
    paths.extend(a.paths.iter().cloned());
    if paths.is_empty() {
        error_line("Must specify at least one config file or directory");
        return 1;
    }
    let format = match a.config_format.as_deref().map(ConfigFormat::parse) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            error_line(&e);
            return 1;
        }
    };
    match Config::validate_paths(&paths, format) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                error_line(w);
            }
            if !a.quiet {
                info_line("Configuration is valid!");
            }
            0
        }
        Err(e) => {
            error_line(&format!("Config validation failed: {e}"));
            1
        }
    }
}
