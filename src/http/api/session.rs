//! `/v1/session/`: create, destroy, renew, info, node, list.
use std::time::Duration;

use muster_shards::command::{Command, CommandResult};
use muster_shards::session::{Behavior, ServiceCheckRef, Session};
use muster_shards::shard::Table;
use simd_json::prelude::*;

use super::{allow, bool_response, session_shard, Ctx};
use crate::http::blocking::{block, with_meta};
use crate::http::body::{self, Obj};
use crate::http::encode::{json_response, SessionOut};
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::core::{core, Shards};
use crate::runtime::raftcore;
use crate::runtime::watch::WatchKey;

/// Consul's bounds: a TTL, when given, is between `session_ttl_min` (10 s) and 24 h.
pub const SESSION_TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// Consul's default lock delay.
pub const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
/// JSON numbers below this are seconds, not nanoseconds (Consul's compatibility rule).
const LOCK_DELAY_SECONDS_BELOW: f64 = 1000.0;
/// The check every node has while its agent is alive; sessions are bound to it by default.
pub const SERF_CHECK_ID: &str = "serfHealth";

pub async fn handle(cx: Ctx, tail: &str) -> ApiResult<Response> {
    let (verb, arg) = tail.split_once('/').unwrap_or((tail, ""));
    match verb {
        "create" => {
            allow(&cx, &[Method::Put])?;
            create(cx).await
        }
        "destroy" => {
            allow(&cx, &[Method::Put])?;
            let id = required(arg)?;
            destroy(cx, id).await
        }
        "renew" => {
            allow(&cx, &[Method::Put])?;
            let id = required(arg)?;
            renew(cx, id).await
        }
        "info" => {
            allow(&cx, &[Method::Get])?;
            let id = required(arg)?.to_string();
            read(cx, move |s| s.get(&id).cloned().into_iter().collect()).await
        }
        "node" => {
            allow(&cx, &[Method::Get])?;
            if arg.is_empty() {
                return Err(ApiError::bad("Missing node name"));
            }
            let node = arg.to_string();
            read(cx, move |s| s.on_node(&node)).await
        }
        "list" => {
            allow(&cx, &[Method::Get])?;
            read(cx, |s| s.list()).await
        }
        _ => Err(ApiError::unknown_path()),
    }
}

fn required(arg: &str) -> ApiResult<&str> {
    if arg.is_empty() {
        Err(ApiError::bad("Missing session"))
    } else {
        Ok(arg)
    }
}

/// Sessions are replicated on every shard: read this core's replica when it has one.
async fn read<F>(cx: Ctx, pick: F) -> ApiResult<Response>
where
    F: Fn(&muster_shards::session::SessionTable) -> Vec<Session> + Send + Clone + 'static,
{
    let s = session_shard();
    let (idx, sessions) = block(&cx.opts, |min| {
        let pick = pick.clone();
        async move {
            Ok(Shards::shedding()
                .poll(s, min, WatchKey::Table(Table::Sessions), move |sh| {
                    (sh.sessions().index(), pick(sh.sessions()))
                })
                .await?)
        }
    })
    .await?;
    let out: Vec<SessionOut> = sessions.iter().map(SessionOut::from).collect();
    Ok(with_meta(json_response(200, &out, cx.opts.pretty), idx))
}

/// Parses a create body over Consul's defaults.
fn parse_create(body: &[u8], node: &str) -> ApiResult<(Session, Option<Duration>)> {
    let mut s = Session {
        node: node.to_string(),
        node_checks: vec![SERF_CHECK_ID.to_string()],
        lock_delay_ns: DEFAULT_LOCK_DELAY.as_nanos() as u64,
        behavior: Behavior::Release,
        ..Session::default()
    };
    let mut ttl = None;
    let Some(v) = body::parse(body)? else {
        return Ok((s, ttl));
    };
    let o = Obj::of(&v, "session")?;
    if let Some(n) = o.str("Name")? {
        s.name = n.to_string();
    }
    if let Some(n) = o.str("Node")? {
        s.node = n.to_string();
    }
    // `Checks` is the pre-1.7 name of `NodeChecks`; either replaces the default.
    if let Some(c) = o.strings("Checks")? {
        s.node_checks = c;
    }
    if let Some(c) = o.strings("NodeChecks")? {
        s.node_checks = c;
    }
    if let Some(v) = o.get("ServiceChecks").filter(|v| !v.is_null()) {
        let arr = v.as_array().ok_or_else(|| {
            ApiError::bad("Request decode failed: ServiceChecks must be an array")
        })?;
        for c in arr {
            let c = Obj::of(c, "ServiceChecks element")?;
            s.service_checks.push(ServiceCheckRef {
                id: c.str("ID")?.unwrap_or_default().to_string(),
                namespace: c.str("Namespace")?.unwrap_or_default().to_string(),
            });
        }
    }
    if let Some(v) = o.get("LockDelay").filter(|v| !v.is_null()) {
        s.lock_delay_ns = if let Some(text) = v.as_str() {
            body::duration(text)
                .map_err(|e| ApiError::bad(format!("Request decode failed: LockDelay: {e}")))?
                .as_nanos() as u64
        } else if let Some(n) = v.cast_f64() {
            if n < 0.0 {
                return Err(ApiError::bad(
                    "Request decode failed: LockDelay must not be negative",
                ));
            }
            if n < LOCK_DELAY_SECONDS_BELOW {
                (n * 1e9) as u64
            } else {
                n as u64
            }
        } else {
            return Err(ApiError::bad(
                "Request decode failed: LockDelay must be a duration",
            ));
        };
    }
    if let Some(b) = o.str("Behavior")? {
        s.behavior = match b {
            "release" | "" => Behavior::Release,
            "delete" => Behavior::Delete,
            other => {
                return Err(ApiError::Internal(format!(
                    "Invalid Behavior setting '{other}'"
                )))
            }
        };
    }
    if let Some(t) = o.str("TTL")? {
        if !t.is_empty() {
            let d = body::duration(t).map_err(|e| {
                ApiError::bad(format!(
                    "Request decode failed: Session TTL '{t}' invalid: {e}"
                ))
            })?;
            let min = core().settings.session_ttl_min;
            if !d.is_zero() && (d < min || d > SESSION_TTL_MAX) {
                return Err(ApiError::Internal(format!(
                    "Invalid Session TTL '{}', must be between [{}={}]",
                    d.as_nanos(),
                    go_duration(min),
                    go_duration(SESSION_TTL_MAX)
                )));
            }
            s.ttl = t.to_string();
            if !d.is_zero() {
                ttl = Some(d);
            }
        }
    }
    Ok((s, ttl))
}

/// Go's `time.Duration.String()` for whole seconds, minutes and hours.
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

async fn create(cx: Ctx) -> ApiResult<Response> {
    let (mut s, ttl) = parse_create(&cx.req.body, &core().settings.node_name)?;
    s.id = uuid::Uuid::new_v4().to_string();
    let (_, result) = raftcore::propose(Command::SessionCreate(s)).await?;
    match result {
        CommandResult::SessionCreated { id } => {
            if let Some(ttl) = ttl {
                raftcore::session_ttl_armed(id.clone(), ttl).await?;
            }
            #[derive(serde::Serialize)]
            struct Created {
                #[serde(rename = "ID")]
                id: String,
            }
            Ok(json_response(200, &Created { id }, cx.opts.pretty))
        }
        CommandResult::Error(e) => Err(ApiError::Internal(e)),
        other => Err(ApiError::Internal(format!(
            "unexpected apply result {other:?}"
        ))),
    }
}

async fn destroy(cx: Ctx, id: &str) -> ApiResult<Response> {
    raftcore::destroy_session(id.to_string()).await?;
    Ok(bool_response(true, cx.opts.pretty))
}

async fn renew(cx: Ctx, id: &str) -> ApiResult<Response> {
    let sid = id.to_string();
    let s = session_shard();
    let found = Shards::shedding()
        .call(s, move |sh| sh.sessions().get(&sid).cloned())
        .await?;
    let Some(sess) = found else {
        return Err(ApiError::NotFound(format!("Session id '{id}' not found")));
    };
    if !sess.ttl.is_empty() {
        if let Ok(ttl) = body::duration(&sess.ttl) {
            raftcore::session_ttl_armed(sess.id.clone(), ttl).await?;
        }
    }
    Ok(json_response(
        200,
        &[SessionOut::from(&sess)],
        cx.opts.pretty,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(SESSION_TTL_MAX), "24h0m0s");
    }
}
