//! `muster reload`: the agent re-reads its configuration files.

use clap::Args;

use super::http::HttpFlags;
use super::leave::agent_put;

#[derive(Debug, Clone, Default, Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub http: HttpFlags,
}

pub fn run(a: ReloadArgs) -> i32 {
    agent_put(
        &a.http,
        "/v1/agent/reload",
        "Configuration reload triggered",
        "Error reloading",
    )
}
