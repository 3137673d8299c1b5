//! `/v1/status/leader` and `/v1/status/peers`.
use super::{allow, Ctx};
use crate::http::encode::json_response;
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::core::core;
use crate::runtime::raftcore;

pub async fn handle(cx: Ctx, tail: &str) -> ApiResult<Response> {
    if !matches!(tail, "leader" | "peers") {
        return Err(ApiError::unknown_path());
    }
    allow(&cx, &[Method::Get])?;
    match tail {
        // Clients read a non-empty leader as "ready": answer "" until a leader exists.
        "leader" => {
            let leader = core().raft_view.borrow().leader_addr.clone();
            Ok(json_response(200, &leader, cx.opts.pretty))
        }
        "peers" => {
            let peers: Vec<String> = raftcore::servers()
                .await?
                .into_iter()
                .filter(|s| s.voter)
                .map(|s| s.address)
                .collect();
            Ok(json_response(200, &peers, cx.opts.pretty))
        }
        _ => Err(ApiError::unknown_path()),
    }
}
