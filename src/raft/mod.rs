//! Consensus: openraft on the raft role's glommio executor.
//!
//! - [`rt`]: openraft's `AsyncRuntime` on glommio (local tasks, glommio timers, `Rc` channels).
//! - [`types`]: the openraft type configuration (`Proposal` in, `CommandResult` out).
//! - [`log_store`]: the in-memory log used by `-dev` ([`MemLogStore`]) and the durable segment log
//!   on glommio DMA files ([`DiskLogStore`]), both behind openraft's `RaftLogStorage`.
//! - [`state_machine`]: applied-index and membership bookkeeping; data goes to an [`Applier`].
//! - [`network`]: peers are unreachable until server RPC exists (single server only).
//!
//! [`RaftServer`] is the handle the HTTP layer uses: writes, read-index checks, leader and
//! membership queries. It and everything it owns live on one executor; share it with `Rc`
//! (it is `Clone`), never across threads. openraft's tasks are spawned on the executor and task
//! queue that call [`RaftServer::start_single`], so pick that queue for the raft role.

pub mod log_store;
pub mod network;
pub mod rt;
pub mod snapshot;
pub mod state_machine;
pub mod types;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use muster_shards::command::{CommandResult, Proposal};
use openraft::errors::{ClientWriteError, ForwardToLeader, LinearizableReadError, RaftError};
use openraft::storage::RaftLogStorage;
use openraft::{Config, RaftMetrics, ReadPolicy, ServerState, SnapshotPolicy};
use openraft_rt::WatchReceiver as _;

pub use self::log_store::{DiskLogOptions, DiskLogStore, LogStoreError, MemLogStore};
pub use self::network::NoPeersNetwork;
pub use self::rt::GlommioRuntime;
pub use self::state_machine::MusterStateMachine;
pub use self::types::{LoggedProposal, MusterNode, TypeConfig};

/// Receives committed entries and owns the replicated state (the shards).
///
/// Contract relied on by [`RaftServer`]:
/// - `apply`'s future resolves only once every entry of the batch is visible to reads; a
///   linearizable read waits for the apply of its read index and nothing more.
/// - `apply` is never called concurrently with itself or with `export`; `export` therefore sees
///   exactly the state after the last applied batch.
/// - Blank and membership entries never reach the applier; their writers get
///   `CommandResult::default()`.
pub trait Applier: 'static {
    /// Apply committed entries in order; returns one result per entry, same order.
    fn apply(&self, batch: Vec<(u64, Proposal)>) -> LocalBoxFuture<'static, Vec<CommandResult>>;
    /// Takes a full image of the replicated state (for snapshots). The future should only
    /// copy what it needs; the returned job serializes it and runs on a blocking thread.
    fn export(&self) -> LocalBoxFuture<'static, ExportJob>;
    /// Replace the replicated state with an image from `export`.
    fn import(&self, image: Vec<u8>) -> LocalBoxFuture<'static, Result<(), String>>;
}

/// Produces an image's bytes off the reactor; see [`Applier::export`].
pub type ExportJob = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// Leader sends heartbeats this often, in ms. Tight for `-dev`: one node, no network.
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// Election timeout range, in ms; a restarted single voter waits about this long to lead again.
pub const DEFAULT_ELECTION_MIN_MS: u64 = 300;
pub const DEFAULT_ELECTION_MAX_MS: u64 = 600;
/// Take a snapshot after this many entries since the last one, so long dev runs stay bounded.
pub const DEFAULT_SNAPSHOT_LOGS: u64 = 10_000;
/// openraft's default for entries kept behind a snapshot.
pub const DEFAULT_TRAILING_LOGS: u64 = 1_000;

/// Raft timing and compaction settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfigKnobs {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// openraft snapshots after this many entries since the last one; 0: only when
    /// [`RaftServer::trigger_snapshot`] asks (durable servers run Consul's interval check).
    pub snapshot_logs: u64,
    /// Entries kept in the log behind a snapshot (Consul's `raft_trailing_logs`).
    pub trailing_logs: u64,
}

impl Default for RaftConfigKnobs {
    fn default() -> Self {
        Self {
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            election_min_ms: DEFAULT_ELECTION_MIN_MS,
            election_max_ms: DEFAULT_ELECTION_MAX_MS,
            snapshot_logs: DEFAULT_SNAPSHOT_LOGS,
            trailing_logs: DEFAULT_TRAILING_LOGS,
        }
    }
}

impl RaftConfigKnobs {
    fn to_openraft(&self) -> Result<Config, RaftStartError> {
        let config = Config {
            cluster_name: "muster".to_string(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            snapshot_policy: if self.snapshot_logs == 0 {
                SnapshotPolicy::Never
            } else {
                SnapshotPolicy::LogsSinceLast(self.snapshot_logs)
            },
            max_in_snapshot_log_to_keep: self.trailing_logs,
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| RaftStartError::Config(e.to_string()))
    }

    /// How long `start_single` waits to become leader: many election rounds, never under 5 s.
    fn leader_wait(&self) -> Duration {
        Duration::from_millis(self.election_max_ms.saturating_mul(20).max(5_000))
    }
}

/// Why the raft server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaftStartError {
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("raft stopped: {0}")]
    Fatal(String),
    #[error("cannot initialize the raft cluster: {0}")]
    Initialize(String),
    #[error("node {node_id} did not become leader within {waited_ms} ms")]
    NoLeadership { node_id: u64, waited_ms: u64 },
}

/// Why a write or a read-index check failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// This server is not the leader; nothing was appended. Safe to forward or retry.
    #[error("not the raft leader (leader: {})", leader_name(.leader))]
    NotLeader { leader: Option<MusterNode> },
    /// Leadership changed after the entry was appended: it may or may not commit. Retrying can
    /// apply the proposal twice.
    #[error("leadership lost while writing; outcome unknown (leader: {})", leader_name(.leader))]
    OutcomeUnknown { leader: Option<MusterNode> },
    /// Leadership could not be confirmed by a quorum (read index).
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// openraft refused the request for another reason.
    #[error("raft rejected the request: {0}")]
    Rejected(String),
    /// Raft has stopped (shutdown or storage failure).
    #[error("raft stopped: {0}")]
    Fatal(String),
}

fn leader_name(leader: &Option<MusterNode>) -> &str {
    leader.as_ref().map_or("unknown", |n| n.name.as_str())
}

/// A snapshot of raft progress, for `/v1/agent/self`, `/v1/operator/raft` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStats {
    pub term: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_snapshot_index: u64,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: &'static str,
}

type MusterRaft<A> = openraft::Raft<TypeConfig, MusterStateMachine<A>>;
type MetricsRx = openraft::type_config::alias::WatchReceiverOf<TypeConfig, RaftMetrics<TypeConfig>>;

struct ServerInner<A: Applier> {
    node_id: u64,
    raft: MusterRaft<A>,
    metrics: MetricsRx,
    /// When a leader other than this node was last seen in the metrics.
    last_contact: Rc<Cell<Instant>>,
}

/// Handle to this server's raft node. Cheap to clone; confined to the raft role executor.
pub struct RaftServer<A: Applier> {
    inner: Rc<ServerInner<A>>,
}

impl<A: Applier> Clone for RaftServer<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

fn index_of(log_id: Option<&types::LogId>) -> u64 {
    log_id.map_or(0, |id| id.index())
}

impl<A: Applier> RaftServer<A> {
    /// Starts raft as the single voter of a new cluster (or resumes one from `log_store`) and
    /// returns once this node is leader. Must run on the raft role executor.
    ///
    /// With a durable log: open it on this same executor first
    /// (`DiskLogStore::open(data_dir, DiskLogOptions::default())`), pass a clone here and keep
    /// one; after [`RaftServer::shutdown`] call `DiskLogStore::close` so the last batch is on disk
    /// and the directory lock is released. The state machine comes with its snapshot store and
    /// the snapshot already loaded into the applier ([`MusterStateMachine::with_store`]); openraft
    /// then re-applies the committed log after that snapshot.
    pub async fn start_single<LS>(
        node_id: u64,
        node: MusterNode,
        sm: MusterStateMachine<A>,
        log_store: LS,
        knobs: RaftConfigKnobs,
    ) -> Result<Self, RaftStartError>
    where
        LS: RaftLogStorage<TypeConfig>,
    {
        let config = Arc::new(knobs.to_openraft()?);
        let t0 = Instant::now();
        let raft = MusterRaft::new(node_id, config, NoPeersNetwork, log_store, sm)
            .await
            .map_err(|e| RaftStartError::Fatal(e.to_string()))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| RaftStartError::Fatal(e.to_string()))?;
        if !initialized {
            match raft.initialize(BTreeMap::from([(node_id, node)])).await {
                Ok(()) => {}
                Err(RaftError::Fatal(e)) => return Err(RaftStartError::Fatal(e.to_string())),
                Err(RaftError::APIError(e)) => {
                    return Err(RaftStartError::Initialize(e.to_string()))
                }
            }
        }

        log::debug!(
            "openraft up in {:?} (initialized: {initialized})",
            t0.elapsed()
        );
        // A lone voter need not sit out an election timeout after a restart.
        if initialized {
            if let Err(e) = raft.trigger().elect(false).await {
                return Err(RaftStartError::Fatal(e.to_string()));
            }
        }
        let wait = knobs.leader_wait();
        raft.wait(Some(wait))
            .metrics(
                |m| m.state == ServerState::Leader && m.current_leader == Some(node_id),
                "single voter becomes leader",
            )
            .await
            .map_err(|_| RaftStartError::NoLeadership {
                node_id,
                waited_ms: wait.as_millis() as u64,
            })?;
        log::debug!("leader after {:?}", t0.elapsed());

        let last_contact = Rc::new(Cell::new(Instant::now()));
        spawn_contact_tracker(node_id, raft.metrics(), last_contact.clone());
        let metrics = raft.metrics();
        Ok(Self {
            inner: Rc::new(ServerInner {
                node_id,
                raft,
                metrics,
                last_contact,
            }),
        })
    }

    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    /// Proposes `p`; returns the log index it was committed at and the applier's result.
    pub async fn write(&self, p: Proposal) -> Result<(u64, CommandResult), WriteError> {
        match self.inner.raft.client_write(LoggedProposal(p)).await {
            Ok(resp) => Ok((resp.log_id.index(), resp.data)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(WriteError::NotLeader {
                    leader: self.forward_target(f),
                })
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => {
                Err(WriteError::OutcomeUnknown {
                    leader: self.forward_target(f),
                })
            }
            Err(RaftError::APIError(e)) => Err(WriteError::Rejected(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    /// Read index: confirms leadership with a quorum and waits until everything committed
    /// before the call is applied. Reads made afterwards are linearizable (`?consistent`).
    pub async fn ensure_linearizable(&self) -> Result<(), WriteError> {
        match self
            .inner
            .raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
        {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                Err(WriteError::NotLeader {
                    leader: self.forward_target(f),
                })
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e))) => {
                Err(WriteError::NoQuorum(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    fn forward_target(&self, f: ForwardToLeader<TypeConfig>) -> Option<MusterNode> {
        f.leader_node.or_else(|| {
            let id = f.leader_id?;
            let m = self.inner.metrics.borrow_watched();
            m.membership_config.get_node(&id).cloned()
        })
    }

    /// The current leader as known to this node.
    pub fn leader(&self) -> Option<(u64, MusterNode)> {
        let m = self.inner.metrics.borrow_watched();
        let id = m.current_leader?;
        let node = m.membership_config.get_node(&id)?.clone();
        Some((id, node))
    }

    pub fn is_leader(&self) -> bool {
        let m = self.inner.metrics.borrow_watched();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.node_id)
    }

    /// Every member of the current membership config: `(id, node, is_voter)`.
    pub fn voters(&self) -> Vec<(u64, MusterNode, bool)> {
        let m = self.inner.metrics.borrow_watched();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| (*id, node.clone(), voters.contains(id)))
            .collect()
    }

    /// Milliseconds since the leader was last heard from; 0 on the leader.
    ///
    /// Followers only learn of the leader through metrics changes until server RPC reports
    /// contacts directly, so on an idle follower this overstates the gap.
    pub fn last_contact_ms(&self) -> u64 {
        if self.is_leader() {
            return 0;
        }
        self.inner.last_contact.get().elapsed().as_millis() as u64
    }

    pub fn stats(&self) -> RaftStats {
        let m = self.inner.metrics.borrow_watched();
        RaftStats {
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: index_of(m.local_committed.as_ref()),
            applied_index: index_of(m.last_applied.as_ref()),
            last_snapshot_index: index_of(m.snapshot.as_ref()),
            state: match m.state {
                ServerState::Leader => "Leader",
                ServerState::Follower => "Follower",
                ServerState::Candidate => "Candidate",
                ServerState::Learner => "Learner",
                ServerState::Shutdown => "Shutdown",
            },
        }
    }

    /// Asks openraft to build a snapshot now (it is written to the store, then the log purged).
    pub async fn trigger_snapshot(&self) -> Result<(), WriteError> {
        self.inner
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| WriteError::Fatal(e.to_string()))
    }

    /// A snapshot file of the state as of the last applied entry (not recorded as current):
    /// for `GET /v1/snapshot`. The image is taken between two applies.
    pub async fn snapshot_now(&self) -> Result<Vec<u8>, WriteError> {
        let builder = self
            .inner
            .raft
            .with_state_machine(|sm: &mut MusterStateMachine<A>| {
                let sm = sm.clone();
                Box::pin(async move { sm.builder().await })
            })
            .await
            .map_err(|e| WriteError::Fatal(e.to_string()))?;
        let mut builder = builder;
        builder
            .encode()
            .await
            .map_err(|e| WriteError::Rejected(e.to_string()))
    }

    /// Stops raft's tasks; later writes fail with [`WriteError::Fatal`].
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            log::warn!("raft shutdown: {e}");
        }
    }
}

/// Keeps `last_contact` fresh while a leader other than `node_id` shows up in the metrics. Ends
/// when raft stops and drops its metrics sender.
fn spawn_contact_tracker(node_id: u64, mut metrics: MetricsRx, last_contact: Rc<Cell<Instant>>) {
    glommio::spawn_local(async move {
        loop {
            {
                let m = metrics.borrow_watched();
                if m.current_leader.is_some_and(|l| l != node_id) {
                    last_contact.set(Instant::now());
                }
            }
            if metrics.changed().await.is_err() {
                break;
            }
        }
    })
    .detach();
}

#[cfg(test)]
mod tests;
