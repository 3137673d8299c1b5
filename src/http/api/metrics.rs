//! `/v1/agent/metrics`: every core's registry gathered over the mesh and merged.
use std::time::SystemTime;

use futures::future::join_all;

use super::Ctx;
use crate::http::error::ApiResult;
use crate::http::response::Response;
use crate::metrics;
use crate::runtime::core::core;

/// Records this core's gauges that are read rather than counted (queue depths, waiters).
fn sample_gauges() {
    let c = core();
    let n = c.placement.executors;
    for to in 0..n {
        if to != c.id {
            metrics::set_gauge(
                "muster.mesh.queue_depth",
                &[("from", c.id.to_string()), ("to", to.to_string())],
                c.mesh.depths().get(c.id, to) as f64,
            );
        }
    }
    if let Some((s, _)) = &c.shard {
        metrics::set_gauge(
            "muster.shard.blocking_waiters",
            &[("shard", s.to_string())],
            c.watchers.borrow().len() as f64,
        );
    }
    let view = c.raft_view.borrow();
    if c.id == c.placement.raft {
        let leader = if view.is_leader { 1.0 } else { 0.0 };
        metrics::set_gauge(metrics::names::RAFT_LEADER, &[], leader);
        metrics::set_gauge(metrics::names::SERVER_IS_LEADER, &[], leader);
    }
}

pub async fn handle(cx: Ctx) -> ApiResult<Response> {
    let c = core();
    let snaps = join_all((0..c.placement.executors).map(|e| {
        c.mesh.call(e, || async {
            sample_gauges();
            metrics::snapshot_local()
        })
    }))
    .await;
    let mut merged = metrics::Snapshot::default();
    for s in snaps {
        merged.merge(s?);
    }
    if cx.req.query.get("format") == Some("prometheus") {
        return Ok(Response::new(200).with_body(
            "text/plain; version=0.0.4; charset=utf-8",
            merged.to_prometheus(),
        ));
    }
    Ok(Response::new(200).with_body(
        crate::http::encode::JSON,
        merged.to_consul_json(SystemTime::now()),
    ))
}
