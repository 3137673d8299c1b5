//! `muster version` (also `muster -v` / `--version`).
//!
//! The first line stays Consul's (`Consul vX.Y.Z`, the API version Muster implements),
//! because tools parse it to decide which features they may use; Muster's own version
//! follows on its own line.

use clap::Args;

use super::{error_line, info_line};
use crate::config::{CONSUL_COMPAT_VERSION, MUSTER_VERSION};

#[derive(Debug, Clone, Default, Args)]
pub struct VersionArgs {
    /// Output format: "pretty" or "json".
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

/// The text of `muster version`.
pub fn pretty() -> String {
    format!(
        "Consul v{CONSUL_COMPAT_VERSION}\n\
         Revision muster-{MUSTER_VERSION}\n\
         Protocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 when speaking to compatible agents)\n\
         Muster v{MUSTER_VERSION} (Consul API compatible)"
    )
}

/// The JSON of `muster version -format=json`.
pub fn json() -> String {
    format!(
        "{{\n  \"Version\": \"{CONSUL_COMPAT_VERSION}\",\n  \"Revision\": \"muster-{MUSTER_VERSION}\",\n  \
         \"Prerelease\": \"\",\n  \"FIPS\": \"\",\n  \"BuildDate\": \"\",\n  \
         \"RPC\": {{\n    \"Default\": 2,\n    \"Min\": 2,\n    \"Max\": 3\n  }},\n  \
         \"Muster\": \"{MUSTER_VERSION}\"\n}}"
    )
}

pub fn run(a: VersionArgs) -> i32 {
    match a.format.as_str() {
        "pretty" => info_line(&pretty()),
        "json" => info_line(&json()),
        other => {
            error_line(&format!(
                "Invalid format: {other} (expected pretty or json)"
            ));
            return 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_is_consul_compatible() {
        assert_eq!(
            pretty().lines().next().unwrap(),
            format!("Consul v{CONSUL_COMPAT_VERSION}")
        );
        assert!(pretty().contains(&format!("Muster v{MUSTER_VERSION}")));
    }

    #[test]
    fn json_is_valid() {
        let mut b = json().into_bytes();
        let v: simd_json::OwnedValue = simd_json::to_owned_value(&mut b).unwrap();
        use simd_json::prelude::*;
        assert_eq!(
            v.get("Version").and_then(|x| x.as_str()),
            Some(CONSUL_COMPAT_VERSION)
        );
        assert_eq!(
            v.get("Muster").and_then(|x| x.as_str()),
            Some(MUSTER_VERSION)
        );
    }
}
