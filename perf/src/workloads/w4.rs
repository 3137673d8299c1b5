//! W4 placeholder
use super::Common;
use crate::result::RunResult;
use anyhow::Result;
use clap::Args;
use serde::Serialize;
#[derive(Args, Clone, Debug, Serialize)]
pub struct W4Opts {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
}
pub async fn run(_o: &W4Opts) -> Result<RunResult> {
    anyhow::bail!("todo")
}
