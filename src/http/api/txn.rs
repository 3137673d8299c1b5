//! `/v1/txn`: up to 64 KV operations applied all-or-nothing at one raft index.
use base64::Engine;
use muster_shards::command::{Command, CommandResult, KvOp, KvVerb, TxnError};
use serde::Serialize;
use simd_json::prelude::*;

use super::{allow, Ctx};
use crate::http::blocking::with_meta;
use crate::http::body::{self, Obj};
use crate::http::encode::{json_response, KvOut};
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::raftcore;

/// Consul's limit on operations in one transaction.
pub const MAX_TXN_OPS: usize = 64;

#[derive(Serialize)]
struct KvResult {
    #[serde(rename = "KV")]
    kv: KvOut,
}

#[derive(Serialize)]
struct ErrorOut {
    #[serde(rename = "OpIndex")]
    op_index: usize,
    #[serde(rename = "What")]
    what: String,
}

#[derive(Serialize)]
struct TxnOut {
    #[serde(rename = "Results")]
    results: Option<Vec<KvResult>>,
    #[serde(rename = "Errors")]
    errors: Option<Vec<ErrorOut>>,
}

fn parse_ops(body: &[u8]) -> ApiResult<Vec<KvOp>> {
    let v = body::parse(body)?.ok_or_else(|| ApiError::bad("Request decode failed: empty body"))?;
    let arr = v.as_array().ok_or_else(|| {
        ApiError::bad("Request decode failed: the body must be a JSON array of operations")
    })?;
    if arr.len() > MAX_TXN_OPS {
        return Err(ApiError::TooLarge(format!(
            "Transaction contains too many operations ({} > {MAX_TXN_OPS})",
            arr.len()
        )));
    }
    arr.iter()
        .enumerate()
        .map(|(i, op)| {
            let op = Obj::of(op, "operation")?;
            let Some(kv) = op.obj("KV")? else {
                return Err(ApiError::bad(format!(
                    "Request decode failed: operation {i} is not a KV operation (only KV operations are supported)"
                )));
            };
            let verb = kv.str("Verb")?.unwrap_or("");
            let verb = KvVerb::parse(verb)
                .ok_or_else(|| ApiError::bad(format!("Request decode failed: unknown KV verb {verb:?}")))?;
            let mut out = KvOp::new(verb, kv.str("Key")?.unwrap_or_default());
            if let Some(v) = kv.str("Value")? {
                out.value = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|e| ApiError::bad(format!("Request decode failed: operation {i}: bad base64 Value: {e}")))?
                    .into();
            }
            out.flags = kv.u64("Flags")?.unwrap_or(0);
            out.index = kv.u64("Index")?.unwrap_or(0);
            out.session = kv.str("Session")?.unwrap_or_default().to_string();
            Ok(out)
        })
        .collect()
}

pub async fn handle(cx: Ctx) -> ApiResult<Response> {
    allow(&cx, &[Method::Put])?;
    let ops = parse_ops(&cx.req.body)?;
    let max = crate::runtime::core::core().settings.kv_max_value_size;
    if let Some(big) = ops.iter().find(|o| o.value.len() > max) {
        return Err(ApiError::TooLarge(format!(
            "Value for key {:?} is too large ({} > {max} bytes)",
            big.key,
            big.value.len()
        )));
    }
    let (idx, result) = raftcore::propose(Command::Txn(ops)).await?;
    let (status, out) = match result {
        CommandResult::TxnOk(results) => (
            200,
            TxnOut {
                results: Some(
                    results
                        .iter()
                        .flatten()
                        .map(|e| KvResult { kv: KvOut::from(e) })
                        .collect(),
                ),
                errors: None,
            },
        ),
        CommandResult::TxnFailed(errors) => (
            409,
            TxnOut {
                results: None,
                errors: Some(
                    errors
                        .into_iter()
                        .map(|TxnError { op_index, what }| ErrorOut { op_index, what })
                        .collect(),
                ),
            },
        ),
        CommandResult::Error(e) => return Err(ApiError::Internal(e)),
        other => {
            return Err(ApiError::Internal(format!(
                "unexpected apply result {other:?}"
            )))
        }
    };
    Ok(with_meta(json_response(status, &out, cx.opts.pretty), idx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kv_ops_and_limits() {
        let ops = parse_ops(br#"[{"KV":{"Verb":"set","Key":"a","Value":"aGk=","Flags":3}},{"kv":{"verb":"cas","key":"b","index":7}}]"#).unwrap();
        assert_eq!(ops[0].verb, KvVerb::Set);
        assert_eq!(&ops[0].value[..], b"hi");
        assert_eq!(ops[0].flags, 3);
        assert_eq!((ops[1].verb, ops[1].index), (KvVerb::Cas, 7));
        let many = format!(
            "[{}]",
            vec![r#"{"KV":{"Verb":"get","Key":"a"}}"#; 65].join(",")
        );
        assert_eq!(parse_ops(many.as_bytes()).unwrap_err().status(), 413);
        assert_eq!(
            parse_ops(br#"[{"KV":{"Verb":"explode","Key":"a"}}]"#)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(parse_ops(b"{").unwrap_err().status(), 400);
    }
}
