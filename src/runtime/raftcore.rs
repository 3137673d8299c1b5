//! The raft role: the openraft node, the apply loop into the shards, leader-side session TTL
//! timers, and the leadership view pushed to every core. Everything here lives on the raft
//! executor; other cores reach it through the mesh.
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::{join_all, LocalBoxFuture};
use futures::FutureExt;
use muster_shards::catalog::{HealthCheck, Node, Registration, Service};
use muster_shards::command::{Command, CommandResult, NodeRegistration, Proposal};
use muster_shards::coord::{self, Backend};

use super::core::{core, RaftView, Shards};
use crate::http::api::now_ms;
use crate::http::error::{ApiError, ApiResult};
use crate::raft::snapshot::{self, SnapshotStore};
use crate::raft::{
    Applier, DiskLogOptions, DiskLogStore, ExportJob, MemLogStore, MusterNode, MusterStateMachine,
    RaftConfigKnobs, RaftServer, WriteError,
};
use muster_shards::image::Image;

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
            let mut out = Vec::with_capacity(n);
            let mut run: Vec<(u64, Proposal)> = Vec::new();
            // A restore replaces everything: the entries before it are applied first, the
            // ones after it on the restored state.
            for (idx, p) in batch {
                if let Command::Restore(body) = p.cmd {
                    out.extend(apply_run(std::mem::take(&mut run)).await);
                    out.push(apply_restore(idx, body).await);
                } else {
                    run.push((idx, p));
                }
            }
            out.extend(apply_run(run).await);
            crate::metrics::incr_counter("consul.raft.apply", &[], n as f64);
            out
        }
        .boxed_local()
    }

    fn export(&self) -> LocalBoxFuture<'static, ExportJob> {
        async move {
            let parts = coord::on_all(&Shards::default(), |s| Image::of_shard(s))
                .await
                .unwrap_or_default();
            let offset = INDEX_OFFSET.with(Cell::get);
            Box::new(move || {
                let mut image = Image::merge(parts);
                image.index_offset = offset;
                snapshot::image_to_body(&image)
            }) as ExportJob
        }
        .boxed_local()
    }

    fn import(&self, body: Vec<u8>) -> LocalBoxFuture<'static, Result<(), String>> {
        async move {
            let image = glommio::executor()
                .spawn_blocking(move || snapshot::image_from_body(&body))
                .await?;
            install_image(image).await
        }
        .boxed_local()
    }
}

/// Applies consecutive ordinary entries as one batch on the shards.
async fn apply_run(batch: Vec<(u64, Proposal)>) -> Vec<CommandResult> {
    if batch.is_empty() {
        return Vec::new();
    }
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
    let offset = INDEX_OFFSET.with(Cell::get);
    let entries = batch
        .into_iter()
        .map(|(i, p)| (i + offset, p.at_ms, p.cmd))
        .collect();
    let out = match coord::apply_batch(&Shards::default(), entries).await {
        Ok(r) => r,
        Err(e) => {
            // Only at shutdown: the shards are gone, nothing will read the results.
            log::error!("apply failed: {e}");
            vec![CommandResult::Error(e.to_string()); n]
        }
    };
    // Before the writes are acknowledged, so DNS answers reflect them (read-your-writes).
    // While the log is replayed at start nobody waits for an acknowledgement: the names pile
    // up in each shard's pending set and one flush after the replay takes them all.
    if catalog && !REPLAYING.with(Cell::get) {
        if let Err(e) = super::dnsview::flush().await {
            log::warn!("DNS view not refreshed after apply: {e}");
        }
    }
    out
}

/// `PUT /v1/snapshot` committed at `idx`: the image replaces the state, with every table index
/// raised to `idx` so blocking queries wake and no index goes backwards. An image that does not
/// decode leaves the state untouched (the HTTP handler validated it before proposing).
async fn apply_restore(idx: u64, body: bytes::Bytes) -> CommandResult {
    let started = Instant::now();
    let decoded = glommio::executor()
        .spawn_blocking(move || snapshot::image_from_body(&body))
        .await;
    log::debug!(
        "restore image decoded in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let mut image = match decoded {
        Ok(i) => i,
        Err(e) => return CommandResult::Error(format!("snapshot restore refused: {e}")),
    };
    // The restored state may come from a server further ahead than this log: from here on
    // indexes are shifted so that every new one is above everything restored.
    let offset = INDEX_OFFSET
        .with(Cell::get)
        .max(image.max_index().saturating_sub(idx) + 1);
    image.index_offset = offset;
    image.raise_indexes(idx + offset);
    let (keys, nodes) = (image.kv.len(), image.nodes.len());
    match install_image(image).await {
        Ok(()) => {
            log::info!(
                "snapshot restored at index {idx}: {keys} keys, {nodes} nodes in {:.1} ms",
                started.elapsed().as_secs_f64() * 1e3
            );
            CommandResult::Ok
        }
        Err(e) => CommandResult::Error(format!("snapshot restore failed: {e}")),
    }
}

/// Replaces every shard's state with its part of `image`, then wakes every watcher and
/// refreshes the DNS views, since anything may have changed.
pub async fn install_image(image: Image) -> Result<(), String> {
    let t0 = Instant::now();
    INDEX_OFFSET.with(|o| o.set(image.index_offset));
    let n = core().placement.nshards();
    let before = super::dnsview::all_names()
        .await
        .map_err(|e| e.to_string())?;
    let parts = image.into_shards(n);
    let t_split = t0.elapsed();
    let calls = parts
        .into_iter()
        .enumerate()
        .map(|(i, s)| Shards::default().call(i, move |mine| *mine = s));
    // Every shard is replaced: one fenced step, so no read mixes the old state and the new.
    let installed = Shards::default().fenced_write(join_all(calls)).await;
    for r in installed {
        r.map_err(|e| e.to_string())?;
    }
    let t_install = t0.elapsed();
    super::watch::wake_all().await;
    if let Err(e) = super::dnsview::reload(before).await {
        log::warn!("DNS view not refreshed after a snapshot install: {e}");
    }
    log::debug!(
        "image installed: split {:.1} ms, shards {:.1} ms, watchers and DNS view {:.1} ms",
        t_split.as_secs_f64() * 1e3,
        (t_install - t_split).as_secs_f64() * 1e3,
        (t0.elapsed() - t_install).as_secs_f64() * 1e3
    );
    Ok(())
}

struct RaftNode {
    server: RaftServer<MusterApplier>,
    /// Closed after raft stops, so the last batch is on disk and the directory lock released.
    disk_log: Option<DiskLogStore>,
    /// Session id -> when its TTL timer fires (leader only).
    session_deadlines: RefCell<HashMap<String, Instant>>,
}

thread_local! {
    static RAFT: RefCell<Option<Rc<RaftNode>>> = const { RefCell::new(None) };
    /// True while raft starts and re-applies the committed log.
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
    /// Added to raft log indexes to stamp the state ([`Image::index_offset`]).
    static INDEX_OFFSET: Cell<u64> = const { Cell::new(0) };
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
    let started = Instant::now();
    let durable = s.durable_dir().map(|d| d.to_path_buf());
    let knobs = RaftConfigKnobs {
        // Durable servers snapshot on Consul's interval check (below); -dev on openraft's count.
        snapshot_logs: if durable.is_some() {
            0
        } else {
            s.raft_snapshot_threshold.max(1)
        },
        trailing_logs: s.raft_trailing_logs,
        ..RaftConfigKnobs::default()
    };
    REPLAYING.with(|r| r.set(true));
    let started_raft = match &durable {
        Some(dir) => start_durable(dir, me, knobs).await,
        None => RaftServer::start_single(
            DEV_NODE_ID,
            me,
            MusterStateMachine::new(MusterApplier),
            MemLogStore::default(),
            knobs,
        )
        .await
        .map(|s| (s, None))
        .map_err(|e| e.to_string()),
    };
    REPLAYING.with(|r| r.set(false));
    if let Err(e) = super::dnsview::flush().await {
        log::warn!("DNS view not refreshed after the log replay: {e}");
    }
    let (server, disk_log) = match started_raft {
        Ok(s) => s,
        Err(e) => {
            log::error!("raft failed to start: {e}");
            c.control.fail(e);
            return;
        }
    };
    log::info!(
        "raft ready in {:.1} ms (last index {}, applied {})",
        started.elapsed().as_secs_f64() * 1e3,
        server.stats().last_log_index,
        server.stats().applied_index
    );
    if durable.is_some() {
        glommio::spawn_local_into(
            snapshot_interval_check(
                server.clone(),
                s.raft_snapshot_interval,
                s.raft_snapshot_threshold,
            ),
            c.queues.background,
        )
        .expect("background task queue exists")
        .detach();
    }
    RAFT.with(|r| {
        *r.borrow_mut() = Some(Rc::new(RaftNode {
            server,
            disk_log,
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

/// Opens the data dir: the newest valid snapshot goes into the shards, then raft starts on the
/// durable log and re-applies what was committed after that snapshot.
async fn start_durable(
    dir: &std::path::Path,
    me: MusterNode,
    knobs: RaftConfigKnobs,
) -> Result<(RaftServer<MusterApplier>, Option<DiskLogStore>), String> {
    let t0 = Instant::now();
    let store = SnapshotStore::open(dir).await.map_err(|e| e.to_string())?;
    let loaded = store
        .load_newest(|_, body| snapshot::image_from_body(body))
        .await
        .map_err(|e| {
            format!(
                "{e}. Every snapshot in {} is unreadable; restore the data dir from a backup \
                 or `muster snapshot restore` into an empty one",
                store.dir().display()
            )
        })?;
    let t_snap = t0.elapsed();
    let log = DiskLogStore::open(dir, DiskLogOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let snap_index = loaded
        .as_ref()
        .and_then(|l| l.stored.meta.last_log_id)
        .map_or(0, |id| id.index());
    if let Some(purged) = log.purged() {
        if purged.index() > snap_index {
            let _ = log.close().await;
            return Err(format!(
                "the raft log in {} starts after index {} but the newest readable snapshot \
                 covers only up to index {snap_index}: entries in between are lost. Restore \
                 the data dir from a backup",
                dir.display(),
                purged.index()
            ));
        }
    }
    log.set_purge_cap(store.purge_cap());
    let restored = match loaded {
        Some(l) => {
            let t = Instant::now();
            install_image(l.value).await?;
            log::info!(
                "loaded snapshot {} (index {snap_index}, {} bytes) in {:.1} ms, installed in {:.1} ms",
                l.stored.path.display(),
                l.stored.size,
                t_snap.as_secs_f64() * 1e3,
                t.elapsed().as_secs_f64() * 1e3
            );
            Some(l.stored.meta)
        }
        None => None,
    };
    let sm = MusterStateMachine::with_store(MusterApplier, Some(Rc::new(store)), restored);
    match RaftServer::start_single(DEV_NODE_ID, me, sm, log.clone(), knobs).await {
        Ok(server) => Ok((server, Some(log))),
        Err(e) => {
            let _ = log.close().await;
            Err(e.to_string())
        }
    }
}

/// Consul's snapshot rule: every `interval` (jittered), snapshot if at least `threshold`
/// entries were applied since the last snapshot.
async fn snapshot_interval_check(
    server: RaftServer<MusterApplier>,
    interval: Duration,
    threshold: u64,
) {
    let interval = interval.max(Duration::from_millis(10));
    loop {
        let jitter = interval.mul_f64(fastrand::f64() / 8.0);
        glommio::timer::sleep(interval + jitter).await;
        if core().control.shutting_down() {
            return;
        }
        let st = server.stats();
        if st.applied_index.saturating_sub(st.last_snapshot_index) >= threshold.max(1) {
            if let Err(e) = server.trigger_snapshot().await {
                log::warn!("cannot start a snapshot: {e}");
                return;
            }
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
            // Anti-entropy deferred for want of a leader resumes on this event.
            crate::agent::view_changed();
        })
    });
    join_all(calls).await;
}

/// This agent's node as it registers itself in the catalog (the leader's registration and the
/// agent's anti-entropy use the same record).
pub fn self_node() -> Node {
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
    Node {
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
    }
}

async fn register_self() -> ApiResult<()> {
    let s = core().settings.clone();
    let reg = NodeRegistration {
        node: self_node(),
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
    if core().control.fault_panic_on_write && matches!(cmd, Command::Kv(_)) {
        panic!(
            "MUSTER_FAULT=panic-on-write: KV write on raft executor {}",
            core().id
        );
    }
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
    r.map(|(idx, result)| (idx + INDEX_OFFSET.with(Cell::get), result))
        .map_err(|e| match e {
            WriteError::NotLeader { .. } => ApiError::NoLeader,
            other => ApiError::Internal(other.to_string()),
        })
}

/// Commits `cmd` through raft and returns its index and result.
pub async fn propose(cmd: Command) -> ApiResult<(u64, CommandResult)> {
    on_raft(move |_| propose_here(cmd)).await
}

/// A snapshot file of the current state and the raft index it covers (`GET /v1/snapshot`).
pub async fn snapshot_now() -> ApiResult<(u64, Vec<u8>)> {
    on_raft(|n| async move {
        let file = n
            .server
            .snapshot_now()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let (meta, _) = snapshot::decode(&file).map_err(|e| ApiError::Internal(e.to_string()))?;
        let index = meta.last_log_id.map_or(0, |id| id.index());
        Ok((index, file))
    })
    .await
}

/// Replaces the whole state with a validated snapshot image (`PUT /v1/snapshot`), then puts
/// this server back into the catalog (the image holds the other cluster's nodes), as Consul's
/// leader does when it re-establishes leadership after a restore.
pub async fn restore(image: bytes::Bytes) -> ApiResult<()> {
    if let CommandResult::Error(e) = propose(Command::Restore(image)).await?.1 {
        return Err(ApiError::Internal(e));
    }
    on_raft(|_| register_self()).await
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

/// Raft progress, for `/v1/agent/self`.
pub async fn stats() -> ApiResult<crate::raft::RaftStats> {
    on_raft(|n| async move { Ok(n.server.stats()) }).await
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
            // A safety net only: openraft stopping fails the writes it holds, so this is a bug.
            log::error!("raft did not stop within {SHUTDOWN_TIMEOUT:?}");
        }
        if let Some(log) = &n.disk_log {
            if let Err(e) = log.close().await {
                log::error!("closing the raft log: {e}");
            }
        }
    }
    RAFT.with(|r| r.borrow_mut().take());
}
