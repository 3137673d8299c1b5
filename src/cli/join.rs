//! `muster join [-wan] ADDRESS...`: asks the agent to join other agents.

use clap::Args;

use super::args::go_bool;
use super::http::{encode_path, Client, HttpFlags, Method};
use super::{error_line, info_line};

#[derive(Debug, Clone, Default, Args)]
pub struct JoinArgs {
    /// Join the WAN pool (servers of other datacenters).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub wan: bool,
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(value_name = "ADDRESS")]
    pub addrs: Vec<String>,
}

pub fn run(a: JoinArgs) -> i32 {
    if a.addrs.is_empty() {
        error_line("At least one address to join must be specified.");
        return 1;
    }
    let client = match Client::new(&a.http) {
        Ok(c) => c,
        Err(e) => {
            error_line(&format!("Error connecting to Consul agent: {e}"));
            return 1;
        }
    };
    let q = if a.wan {
        vec![("wan", "1".to_owned())]
    } else {
        Vec::new()
    };
    let mut joined = 0;
    for addr in &a.addrs {
        let path = format!("/v1/agent/join/{}", encode_path(addr));
        match client.send_ok(Method::Put, &path, &q, None) {
            Ok(_) => joined += 1,
            Err(e) => error_line(&format!("Error joining address '{addr}': {e}")),
        }
    }
    if joined == 0 {
        error_line("Failed to join any nodes.");
        return 1;
    }
    info_line(&format!(
        "Successfully joined cluster by contacting {joined} nodes."
    ));
    0
}
