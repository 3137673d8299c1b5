//! `muster maint`: node and service maintenance mode (shown, enabled or disabled).

use std::collections::BTreeMap;

use clap::Args;
use serde::Deserialize;

use super::args::go_bool;
use super::http::{encode_path, Client, HttpError, HttpFlags, Method};
use super::{error_line, go_quote, info_line};

/// Check ID the agent uses for node maintenance.
const NODE_MAINT_CHECK: &str = "_node_maintenance";
/// Prefix of the check IDs the agent uses for service maintenance.
const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";

#[derive(Debug, Clone, Args)]
pub struct MaintArgs {
    /// Enable maintenance mode.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub enable: bool,
    /// Disable maintenance mode.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub disable: bool,
    /// Text describing the maintenance reason.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Control maintenance mode for a specific service ID.
    #[arg(long, default_value = "")]
    pub service: String,
    #[command(flatten)]
    pub http: HttpFlags,
    /// Consul ignores extra arguments here; so do we.
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgentCheck {
    #[serde(rename = "CheckID", default)]
    pub check_id: String,
    #[serde(rename = "Notes", default)]
    pub notes: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
}

#[derive(Debug, Default, Deserialize)]
struct SelfConfig {
    #[serde(rename = "NodeName", default)]
    node_name: String,
}

#[derive(Debug, Default, Deserialize)]
struct AgentSelf {
    #[serde(rename = "Config", default)]
    config: SelfConfig,
}

/// The listing printed without -enable/-disable: one block per node or service in
/// maintenance, each followed by an empty line; nothing at all when none is.
pub fn status_listing(node_name: &str, checks: &BTreeMap<String, AgentCheck>) -> String {
    let mut out = String::new();
    // The agent answers a map; walking it by check ID keeps the order stable (the node's
    // block first, since '_n' sorts before '_s').
    for (id, c) in checks {
        let id = if c.check_id.is_empty() {
            id
        } else {
            &c.check_id
        };
        if id == NODE_MAINT_CHECK {
            out.push_str(&format!(
                "Node:\n  Name:   {node_name}\n  Reason: {}\n\n",
                c.notes
            ));
        } else if id.starts_with(SERVICE_MAINT_PREFIX) {
            out.push_str(&format!(
                "Service:\n  ID:     {}\n  Reason: {}\n\n",
                c.service_id, c.notes
            ));
        }
    }
    out
}

pub fn run(a: MaintArgs) -> i32 {
    if a.enable && a.disable {
        error_line("Only one of -enable or -disable may be provided");
        return 1;
    }
    if !a.enable && !a.reason.is_empty() {
        error_line("Reason may only be provided with -enable");
        return 1;
    }
    if !a.enable && !a.disable && !a.service.is_empty() {
        error_line("Service requires either -enable or -disable");
        return 1;
    }
    let client = match Client::new(&a.http) {
        Ok(c) => c,
        Err(e) => {
            error_line(&format!("Error connecting to Consul agent: {e}"));
            return 1;
        }
    };
    // Consul asks the agent its name first whatever the mode, so an unreachable agent
    // fails the same way everywhere.
    let me: Result<AgentSelf, HttpError> = client
        .send_ok(Method::Get, "/v1/agent/self", &[], None)
        .and_then(|r| r.json());
    let node_name = match me {
        Ok(s) => s.config.node_name,
        Err(e) => {
            error_line(&format!("Error querying Consul agent: {e}"));
            return 1;
        }
    };

    if !a.enable && !a.disable {
        let checks: Result<BTreeMap<String, AgentCheck>, HttpError> = client
            .send_ok(Method::Get, "/v1/agent/checks", &[], None)
            .and_then(|r| r.json());
        return match checks {
            Ok(checks) => {
                let listing = status_listing(&node_name, &checks);
                // Each block ends in an empty line, printed line by line as Consul does.
                for line in listing.lines() {
                    info_line(line);
                }
                0
            }
            Err(e) => {
                error_line(&format!("Error getting checks: {e}"));
                1
            }
        };
    }

    let enable = a.enable;
    let mut q = vec![("enable", enable.to_string())];
    if enable {
        q.push(("reason", a.reason.clone()));
    }
    let (path, ok_msg, err_what) = if a.service.is_empty() {
        (
            "/v1/agent/maintenance".to_owned(),
            format!(
                "Node maintenance is now {}",
                if enable { "enabled" } else { "disabled" }
            ),
            if enable {
                "Error enabling node maintenance"
            } else {
                "Error disabling node maintenance"
            },
        )
    } else {
        (
            format!("/v1/agent/service/maintenance/{}", encode_path(&a.service)),
            format!(
                "Service maintenance is now {} for {}",
                if enable { "enabled" } else { "disabled" },
                go_quote(&a.service)
            ),
            if enable {
                "Error enabling service maintenance"
            } else {
                "Error disabling service maintenance"
            },
        )
    };
    match client.send_ok(Method::Put, &path, &q, None) {
        Ok(_) => {
            info_line(&ok_msg);
            0
        }
        Err(e) => {
            error_line(&format!("{err_what}: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_formats_node_and_services() {
        let mut b = br#"{
          "serfHealth": {"CheckID":"serfHealth","Notes":"","ServiceID":""},
          "_service_maintenance:web-1": {"CheckID":"_service_maintenance:web-1","Notes":"deploy","ServiceID":"web-1"},
          "_node_maintenance": {"CheckID":"_node_maintenance","Notes":"Maintenance mode is enabled for this node, but no reason was provided. This is a default message.","ServiceID":""}
        }"#
        .to_vec();
        let checks: BTreeMap<String, AgentCheck> = simd_json::serde::from_slice(&mut b).unwrap();
        assert_eq!(
            status_listing("n1", &checks),
            "Node:\n  Name:   n1\n  Reason: Maintenance mode is enabled for this node, but no reason was provided. This is a default message.\n\n\
             Service:\n  ID:     web-1\n  Reason: deploy\n\n"
        );
    }

    #[test]
    fn nothing_in_maintenance_prints_nothing() {
        let checks = BTreeMap::from([(
            "service:web".to_owned(),
            AgentCheck {
                check_id: "service:web".into(),
                ..AgentCheck::default()
            },
        )]);
        assert_eq!(status_listing("n1", &checks), "");
    }
}
