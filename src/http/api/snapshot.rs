//! `/v1/snapshot`: `GET` saves the whole replicated state as one snapshot file (the format of
//! [`crate::raft::snapshot`]); `PUT` restores one, replacing the state atomically through raft.
use bytes::Bytes;

use super::{allow, Ctx};
use crate::http::blocking::with_meta;
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::raft::snapshot;
use crate::runtime::raftcore;

pub async fn handle(cx: Ctx) -> ApiResult<Response> {
    allow(&cx, &[Method::Get, Method::Put])?;
    if cx.req.method == Method::Get {
        let (index, file) = raftcore::snapshot_now().await?;
        let r = Response::new(200).with_body("application/octet-stream", file);
        return Ok(with_meta(r, index));
    }
    let body = cx.req.body.clone();
    let image = validate(body).await?;
    raftcore::restore(image).await?;
    Ok(Response::new(200))
}

/// Checks the file (header, checksums, the image archive) before anything is proposed, so a
/// bad file never reaches the log. Returns the image bytes, sharing the request's buffer.
async fn validate(file: Bytes) -> ApiResult<Bytes> {
    let checked = glommio::executor()
        .spawn_blocking(move || -> Result<Bytes, String> {
            let (_, body) = snapshot::decode(&file).map_err(|e| e.to_string())?;
            snapshot::check_body(body)?;
            let start = file.len() - body.len();
            Ok(file.slice(start..))
        })
        .await;
    checked.map_err(|e| ApiError::bad(format!("Invalid snapshot: {e}")))
}
