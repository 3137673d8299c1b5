//! Query options shared by every read (`index`, `wait`, `stale`, `consistent`, `pretty`, `dc`),
//! the blocking-query loop and Consul's query-meta headers.
use std::future::Future;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::{select, select_all, Either};
use rand::Rng;

use super::error::{ApiError, ApiResult};
use super::request::Query;
use super::response::Response;
use crate::runtime::core::{core, Polled};

/// Consul's defaults: a blocking query waits 5 minutes unless told, and never more than 10.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
pub const MAX_WAIT: Duration = Duration::from_secs(10 * 60);
/// Consul adds up to wait/16 of random jitter so that many watchers do not return together.
const JITTER_FRACTION: u32 = 16;

#[derive(Debug, Clone, Default)]
pub struct QueryOpts {
    pub index: u64,
    pub wait: Duration,
    pub stale: bool,
    pub consistent: bool,
    pub pretty: bool,
    pub filter: Option<String>,
}

impl QueryOpts {
    pub fn parse(q: &Query) -> ApiResult<QueryOpts> {
        let mut o = QueryOpts {
            stale: q.has("stale"),
            consistent: q.has("consistent"),
            pretty: q.has("pretty"),
            wait: DEFAULT_WAIT,
            filter: q
                .get("filter")
                .filter(|f| !f.is_empty())
                .map(str::to_string),
            ..QueryOpts::default()
        };
        if o.stale && o.consistent {
            return Err(ApiError::bad(
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ));
        }
        if let Some(i) = q.get("index").filter(|i| !i.is_empty()) {
            o.index = i.parse().map_err(|_| ApiError::bad("Invalid index"))?;
        }
        if let Some(w) = q.get("wait").filter(|w| !w.is_empty()) {
            let d = super::body::duration(w).map_err(|_| ApiError::bad("Invalid wait time"))?;
            if !d.is_zero() {
                o.wait = d.min(MAX_WAIT);
            }
        }
        check_dc(q)?;
        Ok(o)
    }

    fn deadline(&self) -> Instant {
        let jitter_max = self.wait / JITTER_FRACTION;
        let jitter = if jitter_max.is_zero() {
            Duration::ZERO
        } else {
            rand::rng().random_range(Duration::ZERO..jitter_max)
        };
        Instant::now() + self.wait + jitter
    }
}

/// `?dc=` must name this datacenter until WAN federation exists.
pub fn check_dc(q: &Query) -> ApiResult<()> {
    match q.get("dc") {
        Some(dc) if !dc.is_empty() && dc != core().settings.datacenter => {
            Err(ApiError::NoPathToDatacenter)
        }
        _ => Ok(()),
    }
}

/// Runs `attempt(min_index)` until its index passes `opts.index` or the wait runs out, then
/// answers with the last result. `attempt` either answers or hands back wait handles it
/// registered atomically with its read.
pub async fn block<T, F, Fut>(opts: &QueryOpts, mut attempt: F) -> ApiResult<(u64, T)>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ApiResult<Polled<(u64, T)>>>,
{
    if opts.consistent {
        crate::runtime::raftcore::ensure_linearizable().await?;
    }
    let deadline = opts.deadline();
    loop {
        let waits = match attempt(opts.index).await? {
            Polled::Ready((idx, t)) => return Ok((idx.max(1), t)),
            Polled::Wait(w) => w,
        };
        let now = Instant::now();
        if now >= deadline || !wait_any(waits, deadline - now).await {
            return match attempt(0).await? {
                Polled::Ready((idx, t)) => Ok((idx.max(1), t)),
                Polled::Wait(_) => Err(ApiError::Internal("blocking query did not settle".into())),
            };
        }
    }
}

/// Waits for any of `waits` to fire, up to `timeout`. Returns false on timeout.
pub async fn wait_any(waits: Vec<oneshot::Receiver<()>>, timeout: Duration) -> bool {
    if waits.is_empty() {
        return true;
    }
    let timer = glommio::timer::Timer::new(timeout);
    match select(select_all(waits), Box::pin(timer)).await {
        Either::Left(_) => true,
        Either::Right(_) => false,
    }
}

/// Adds `X-Consul-Index`, `X-Consul-KnownLeader` and `X-Consul-LastContact`.
pub fn with_meta(r: Response, index: u64) -> Response {
    let c = core();
    let view = c.raft_view.borrow();
    r.with_header("X-Consul-Index", index.to_string())
        .with_header(
            "X-Consul-KnownLeader",
            if view.known_leader() { "true" } else { "false" },
        )
        .with_header("X-Consul-LastContact", view.last_contact_ms.to_string())
}
