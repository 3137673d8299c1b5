//! `muster leave`: the agent leaves the cluster gracefully and exits.

use clap::Args;

use super::http::{Client, HttpFlags, Method};
use super::{error_line, info_line};

#[derive(Debug, Clone, Default, Args)]
pub struct LeaveArgs {
    #[command(flatten)]
    pub http: HttpFlags,
}

/// One PUT to the agent, printing `done` or `failed: error` as Consul's commands do.
pub(crate) fn agent_put(http: &HttpFlags, path: &str, done: &str, failed: &str) -> i32 {
    let client = match Client::new(http) {
        Ok(c) => c,
        Err(e) => {
            error_line(&format!("Error connecting to Consul agent: {e}"));
            return 1;
        }
    };
    match client.send_ok(Method::Put, path, &[], None) {
        Ok(_) => {
            info_line(done);
            0
        }
        Err(e) => {
            error_line(&format!("{failed}: {e}"));
            1
        }
    }
}

pub fn run(a: LeaveArgs) -> i32 {
    agent_put(
        &a.http,
        "/v1/agent/leave",
        "Graceful leave complete",
        "Error leaving",
    )
}
