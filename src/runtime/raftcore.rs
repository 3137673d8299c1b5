//! The raft role: the openraft node, the apply loop into the shards, leader-side session TTL
//! timers, and the leadership view pushed to every core. Everything here lives on the raft
//! executor; other cores reach it through the mesh.
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::{join_all, LocalBoxFuture};
use futures::FutureExt;
use muster_shards::catalog::{HealthCheck, Node, Registration, Service};
use muster_shards::command::{Command, CommandResult, NodeRegistration, Proposal};
use muster_shards::coord;
use muster_shards::shard::Shard;

use super::core::{core, RaftView, Shards};
use crate::http::api::now_ms;
use crate::http::error::{ApiError, ApiResult};
use crate::raft::{Applier, MemLogStore, MusterNode, RaftConfigKnobs, RaftServer, WriteError};

/// Consul fires a session's TTL timer at twice the TTL, so a client renewing at the TTL is safe.
const SESSION_TTL_MULTIPLIER: u32 = 2;
/// How often leadership is sampled for the per-core views.
const VIEW_INTERVAL: Duration = Duration::from_millis(20);
/// Raft node id of a single-server (dev) cluster.
const DEV_NODE_ID: u64 = 1;
/// A write not committed by then is reported as failed rather than holding its client forever
/// (Consul's RPC hold timeout is 7 s; a single server commits in microseconds).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Shutdown does not wait longer than this for openraft to stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Applies committed entries on the shards that own them.
pub struct MusterApplier;

impl Applier for MusterApplier {
    fn apply(&self, batch: Vec<(u64, Proposal)>) -> LocalBoxFuture<'static, Vec<CommandResult>> {
        async move {
            let n = batch.len();
            let catalog = batch.iter().any(|(_, p)| {
                matches!(
                    p.cmd,
                    Command::Register(_)
                        | Command::Deregister { .. }
                        | Command::RegisterNode(_)
                        | Command::DeregisterNode { .. }
                )
            });
            let entries = batch
                .into_iter()
                .map(|(i, p)| (i, p.at_ms, p.cmd))
                .collect();
            let out = match coord::apply_batch(&Shards::default(), entries).await {
                Ok(r) => r,
                Err(e) => {
                    // Only at shutdown: the shards are gone, nothing will read the results.
                    log::error!("apply failed: {e}");
                    vec![CommandResult::Error(e.to_string()); n]
                }
            };
            crate::metrics::incr_counter("consul.raft.apply", &[], n as f64);
            // Before the writes are acknowledged, so DNS answers reflect them (read-your-writes).
            if catalog {
                if let Err(e) = super::dnsview::flush().await {
                    log::warn!("DNS view not refreshed after apply: {e}");
                }
            }
            out
        }
        .boxed_local()
    }

    fn export(&self) -> LocalBoxFuture<'static, Vec<u8>> {
        async move {
            let parts = coord::on_all(&Shards::default(), |s| {
                simd_json::to_vec(&*s).unwrap_or_default()
            })
            .await
            .unwrap_or_default();
            simd_json::to_vec(&parts).unwrap_or_default()
        }
        .boxed_local()
    }

    fn import(&self, image: Vec<u8>) -> LocalBoxFuture<'static, Result<(), String>> {
        async move {
            let mut image = image;
            let parts: Vec<Vec<u8>> =
                simd_json::serde::from_slice(&mut image).map_err(|e| format!("bad snapshot image: {e}"))?;
            let n = core().placement.nshards();
            if parts.len() != n {
                return Err(format!(
                    "snapshot holds {} shards but this server runs {n}; re-sharding is not supported yet",
                    parts.len()
                ));
            }
            let mut shards = Vec::with_capacity(n);
            for mut p in parts {
                let mut s: Shard = simd_json::serde::from_slice(&mut p).map_err(|e| format!("bad shard image: {e}"))?;
                s.rebuild();
                shards.push(s);
            }
            let calls = shards.into_iter().enumerate().map(|(i, s)| {
                Shards::default().call(i, move |mine| *mine = s)
            });
            for r in join_all(calls).await {
                r.map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        .boxed_local()
    }
}

struct RaftNode {
    server: RaftServer<MusterApplier>,
    /// Session id -> when its TTL timer fires (leader only).
    session_deadlines: RefCell<HashMap<String, Instant>>,
}

thread_local! {
    static RAFT: RefCell<Option<Rc<RaftNode>>> = const { RefCell::new(None) };
}

fn node() -> Option<Rc<RaftNode>> {
    RAFT.with(|r| r.borrow().clone())
}

/// Starts raft on this (the raft) executor, registers this agent's node, and keeps every
/// core's leadership view current.
pub async fn run() {
    let c = core();
    let s = &c.settings;
    let me = MusterNode {
        name: s.node_name.clone(),
        id: s.node_id.clone(),
        addr: s.server_addr().to_string(),
    };
    let knobs = RaftConfigKnobs {
        snapshot_logs: s.raft_snapshot_threshold,
        ..RaftConfigKnobs::default()
    };
    let server = match RaftServer::start_single(
        DEV_NODE_ID,
        me,
        MusterApplier,
        MemLogStore::default(),
        knobs,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            log::error!("raft failed to start: {e}");
            c.control.request_shutdown();
            return;
        }
    };
    RAFT.with(|r| {
        *r.borrow_mut() = Some(Rc::new(RaftNode {
            server,
            session_deadlines: RefCell::default(),
        }))
    });
    // Clients take a known leader as "ready": the node (and the `consul` service) must be in
    // the catalog before any core reports one.
    if let Err(e) = register_self().await {
        log::error!("cannot register this node in the catalog: {e}");
    }
    publish_view().await;
    let mut last = RaftView::default();
    loop {
        glommio::timer::sleep(VIEW_INTERVAL).await;
        if c.control.shutting_down() {
            return;
        }
        let v = current_view();
        if v != last {
            last = v;
            publish_view().await;
        }
    }
}

fn current_view() -> RaftView {
    let Some(n) = node() else {
        return RaftView::default();
    };
    let leader = n.server.leader();
    RaftView {
        leader_addr: leader
            .as_ref()
            .map(|(_, l)| l.addr.clone())
            .unwrap_or_default(),
        leader_name: leader.map(|(_, l)| l.name).unwrap_or_default(),
        is_leader: n.server.is_leader(),
        last_contact_ms: n.server.last_contact_ms(),
        term: n.server.stats().term,
    }
}

async fn publish_view() {
    let v = current_view();
    let c = core();
    let calls = (0..c.placement.executors).map(|e| {
        let v = v.clone();
        c.mesh.call(e, move || async move {
            *core().raft_view.borrow_mut() = v;
        })
    });
    join_all(calls).await;
}

async fn register_self() -> ApiResult<()> {
    let s = core().settings.clone();
    let addr = s.advertise_addr.to_string();
    let tagged = [
        ("lan", &addr),
        ("lan_ipv4", &addr),
        ("wan", &addr),
        ("wan_ipv4", &addr),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect();
    let reg = NodeRegistration {
        node: Node {
            id: s.node_id.clone(),
            node: s.node_name.clone(),
            address: addr,
            datacenter: s.datacenter.clone(),
            tagged_addresses: tagged,
            meta: [
                ("consul-network-segment".to_string(), String::new()),
                (
                    "consul-version".to_string(),
                    super::CONSUL_COMPAT_VERSION.to_string(),
                ),
            ]
            .into_iter()
            .collect(),
            ..Node::default()
        },
        checks: vec![HealthCheck {
            node: s.node_name.clone(),
            check_id: crate::http::api::SERF_CHECK_ID.to_string(),
            name: "Serf Health Status".into(),
            status: "passing".into(),
            output: "Agent alive and reachable".into(),
            ..HealthCheck::default()
        }],
    };
    propose_here(Command::RegisterNode(reg)).await?;
    if s.server {
        // Servers appear as the `consul` service, so `consul.service.consul` finds them.
        let me = Node {
            node: s.node_name.clone(),
            ..Node::default()
        };
        let reg = Registration {
            node: me,
            skip_node_update: true,
            service: Some(Service {
                id: "consul".into(),
                service: "consul".into(),
                port: s.server_port,
                ..Service::default()
            }),
            checks: Vec::new(),
        };
        propose_here(Command::Register(Box::new(reg))).await?;
    }
    Ok(())
}

/// Runs `f` with the raft node on the raft executor.
async fn on_raft<R, F, Fut>(f: F) -> ApiResult<R>
where
    R: Send + 'static,
    F: FnOnce(Rc<RaftNode>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ApiResult<R>> + 'static,
{
    let c = core();
    c.mesh
        .call(c.placement.raft, move || async move {
            match node() {
                Some(n) => f(n).await,
                None => Err(ApiError::NoLeader),
            }
        })
        .await?
}

async fn propose_here(cmd: Command) -> ApiResult<(u64, CommandResult)> {
    let n = node().ok_or(ApiError::NoLeader)?;
    let started = Instant::now();
    let write = n.server.write(Proposal {
        at_ms: now_ms(),
        cmd,
    });
    let r = match glommio::timer::timeout(WRITE_TIMEOUT, async { Ok(write.await) }).await {
        Ok(r) => r,
        Err(_) => {
            log::error!("raft write not committed within {WRITE_TIMEOUT:?}");
            return Err(ApiError::Internal(
                "timed out waiting for the raft write to commit".into(),
            ));
        }
    };
    crate::metrics::measure_since("consul.raft.commitTime", &[], started);
    r.map_err(|e| match e {
        WriteError::NotLeader { .. } => ApiError::NoLeader,
        other => ApiError::Internal(other.to_string()),
    })
}

/// Commits `cmd` through raft and returns its index and result.
pub async fn propose(cmd: Command) -> ApiResult<(u64, CommandResult)> {
    on_raft(move |_| propose_here(cmd)).await
}

/// Confirms leadership before a `?consistent` read.
pub async fn ensure_linearizable() -> ApiResult<()> {
    on_raft(|n| async move {
        n.server
            .ensure_linearizable()
            .await
            .map_err(|_| ApiError::NoLeader)
    })
    .await
}

/// One raft server as `/v1/operator/raft/configuration` lists it.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub id: String,
    pub node: String,
    pub address: String,
    pub leader: bool,
    pub voter: bool,
    pub last_index: u64,
}

pub async fn servers() -> ApiResult<Vec<ServerInfo>> {
    on_raft(|n| async move {
        let leader = n.server.leader().map(|(id, _)| id);
        let last = n.server.stats().last_log_index;
        Ok(n.server
            .voters()
            .into_iter()
            .map(|(id, node, voter)| ServerInfo {
                id: node.id,
                node: node.name,
                address: node.addr,
                leader: Some(id) == leader,
                voter,
                last_index: last,
            })
            .collect())
    })
    .await
}

/// (Re)arms a session's TTL timer: it fires at twice the TTL unless renewed.
pub async fn session_ttl_armed(id: String, ttl: Duration) -> ApiResult<()> {
    on_raft(move |n| async move {
        let deadline = Instant::now() + ttl * SESSION_TTL_MULTIPLIER;
        let fresh = n
            .session_deadlines
            .borrow_mut()
            .insert(id.clone(), deadline)
            .is_none();
        if fresh {
            glommio::spawn_local_into(session_timer(n.clone(), id), core().queues.background)
                .expect("background task queue exists")
                .detach();
        }
        Ok(())
    })
    .await
}

async fn session_timer(n: Rc<RaftNode>, id: String) {
    loop {
        let deadline = n.session_deadlines.borrow().get(&id).copied();
        let Some(deadline) = deadline else {
            return;
        };
        let now = Instant::now();
        if deadline > now {
            glommio::timer::sleep(deadline - now).await;
            continue;
        }
        n.session_deadlines.borrow_mut().remove(&id);
        log::info!("session {id} TTL expired; invalidating");
        if let Err(e) = propose_here(Command::SessionDestroy { id: id.clone() }).await {
            log::warn!("cannot invalidate expired session {id}: {e}");
        }
        return;
    }
}

/// Destroys a session through raft and drops its TTL timer.
pub async fn destroy_session(id: String) -> ApiResult<()> {
    on_raft(move |n| async move {
        n.session_deadlines.borrow_mut().remove(&id);
        propose_here(Command::SessionDestroy { id })
            .await
            .map(|_| ())
    })
    .await
}

pub async fn shutdown() {
    if let Some(n) = node() {
        let stop = async {
            n.server.shutdown().await;
            Ok(())
        };
        if glommio::timer::timeout(SHUTDOWN_TIMEOUT, stop)
            .await
            .is_err()
        {
            log::warn!("raft did not stop within {SHUTDOWN_TIMEOUT:?}");
        }
    }
    RAFT.with(|r| r.borrow_mut().take());
}
