//! `/v1/operator/raft/configuration`.
use serde::Serialize;

use super::{allow, Ctx};
use crate::http::encode::json_response;
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::raftcore;

#[derive(Serialize)]
struct ServerOut {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Node")]
    node: String,
    #[serde(rename = "Address")]
    address: String,
    #[serde(rename = "Leader")]
    leader: bool,
    #[serde(rename = "ProtocolVersion")]
    protocol_version: &'static str,
    #[serde(rename = "Voter")]
    voter: bool,
    #[serde(rename = "LastIndex")]
    last_index: u64,
}

#[derive(Serialize)]
struct ConfigurationOut {
    #[serde(rename = "Servers")]
    servers: Vec<ServerOut>,
    #[serde(rename = "Index")]
    index: u64,
}

pub async fn handle(cx: Ctx, tail: &str) -> ApiResult<Response> {
    match tail {
        "raft/configuration" => {
            allow(&cx, &[Method::Get])?;
            let servers = raftcore::servers().await?;
            let index = servers.iter().map(|s| s.last_index).max().unwrap_or(0);
            let out = ConfigurationOut {
                servers: servers
                    .into_iter()
                    .map(|s| ServerOut {
                        id: s.id,
                        node: s.node,
                        address: s.address,
                        leader: s.leader,
                        protocol_version: "3",
                        voter: s.voter,
                        last_index: s.last_index,
                    })
                    .collect(),
                index,
            };
            Ok(json_response(200, &out, cx.opts.pretty))
        }
        _ => Err(ApiError::NotFound(format!(
            "/v1/operator/{tail}: not found"
        ))),
    }
}
