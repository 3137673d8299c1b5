//! The per-executor context: this core's shard, wait lists, mesh handle and task queues.
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use glommio::TaskQueueHandle;
use muster_shards::coord::{Backend, Unavailable};
use muster_shards::shard::Shard;
use muster_shards::visibility::WriteEpoch;

use super::mesh::{CallError, Mesh};
use super::placement::Placement;
use super::watch::{WatchKey, Watchers};
use super::{Control, Settings};

/// What every core knows about raft leadership, pushed by the raft core when it changes
/// (each core keeps its own copy; no shared lock).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftView {
    /// Server RPC address of the leader, empty when unknown.
    pub leader_addr: String,
    pub leader_name: String,
    pub is_leader: bool,
    /// ms since the leader was last heard from (0 on the leader).
    pub last_contact_ms: u64,
    pub term: u64,
}

impl RaftView {
    pub fn known_leader(&self) -> bool {
        !self.leader_addr.is_empty()
    }
}

#[derive(Clone, Copy)]
pub struct Queues {
    pub http: TaskQueueHandle,
    pub dns: TaskQueueHandle,
    pub raft: TaskQueueHandle,
    pub mesh: TaskQueueHandle,
    /// Snapshots, timers, anti-entropy: must not steal time from answers.
    pub background: TaskQueueHandle,
}

pub struct Core {
    pub id: usize,
    pub placement: Arc<Placement>,
    pub settings: Arc<Settings>,
    pub control: Arc<Control>,
    pub mesh: Mesh,
    pub queues: Queues,
    /// The state shard this executor owns, if any.
    pub shard: Option<(usize, RefCell<Shard>)>,
    pub watchers: RefCell<Watchers>,
    /// On the raft executor: held exclusively by the apply loop's fenced steps (writes that
    /// span shards) and shared by fenced reads, so the two never overlap. Never crosses cores.
    pub fence: Rc<tokio::sync::RwLock<()>>,
    pub raft_view: RefCell<RaftView>,
    /// Services and nodes this core's shard changed since the DNS view last took them.
    pub dns_pending: RefCell<(BTreeSet<String>, BTreeSet<String>)>,
    /// The loaded configuration, for reloads (kept current on the HTTP executor).
    pub config: RefCell<Arc<crate::config::Config>>,
}

thread_local! {
    static CORE: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// This executor's core. Panics off an executor thread (a programming error).
pub fn core() -> Rc<Core> {
    CORE.with(|c| c.borrow().clone())
        .expect("core() called outside a Muster executor")
}

pub(crate) fn install(core: Rc<Core>) {
    CORE.with(|c| *c.borrow_mut() = Some(core));
}

impl Core {
    fn with_shard<R>(&self, s: usize, f: impl FnOnce(&mut Shard) -> R) -> R {
        let (mine, cell) = self.shard.as_ref().expect("this executor owns no shard");
        debug_assert_eq!(*mine, s, "shard {s} routed to the wrong executor");
        let mut shard = cell.borrow_mut();
        let r = f(&mut shard);
        let mut touched = shard.take_touched();
        drop(shard);
        if !touched.is_empty() {
            self.watchers.borrow_mut().wake(&touched);
            let mut pending = self.dns_pending.borrow_mut();
            pending.0.append(&mut touched.services);
            pending.1.append(&mut touched.nodes);
        }
        r
    }
}

/// The shards as the coordinator sees them: each call hops to the owning core.
#[derive(Clone, Copy, Default)]
pub struct Shards {
    /// Fail fast with `Busy` instead of waiting when the owner's queue is full (front ends).
    shed: bool,
}

/// The outcome of a query that may wait: the answer, or a wait on what it read.
pub enum Polled<T> {
    Ready(T),
    Wait(Vec<futures::channel::oneshot::Receiver<()>>),
}

impl Shards {
    pub fn shedding() -> Shards {
        Shards { shed: true }
    }

    async fn run<R, F>(self, s: usize, f: F) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: FnOnce(&Core) -> R + Send + 'static,
    {
        let c = core();
        let target = *c.placement.shards.get(s).ok_or(CallError::Unavailable(s))?;
        let job = move || {
            let c = core();
            std::future::ready(f(&c))
        };
        if self.shed {
            c.mesh.try_call(target, job).await
        } else {
            c.mesh.call(target, job).await
        }
    }

    /// Runs `f` on shard `s` with errors that tell a full queue from a dead one.
    pub async fn call<R, F>(self, s: usize, f: F) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        self.run(s, move |c| c.with_shard(s, f)).await
    }

    /// Runs query `q` on shard `s`; if its index is not above `min_index`, registers a wait on
    /// `key` in the same step.
    pub async fn poll<T, Q>(
        self,
        s: usize,
        min_index: u64,
        key: WatchKey,
        q: Q,
    ) -> Result<Polled<(u64, T)>, CallError>
    where
        T: Send + 'static,
        Q: FnOnce(&Shard) -> (u64, T) + Send + 'static,
    {
        self.run(s, move |c| {
            let (idx, t) = c.with_shard(s, |sh| q(sh));
            if min_index == 0 || idx > min_index {
                Polled::Ready((idx, t))
            } else {
                Polled::Wait(vec![c.watchers.borrow_mut().register(key)])
            }
        })
        .await
    }

    /// Registers a wait on `key` at shard `s` unless `still(shard)` says the state already
    /// moved past what the caller saw.
    pub async fn watch<S>(
        self,
        s: usize,
        key: WatchKey,
        moved: S,
    ) -> Result<Option<futures::channel::oneshot::Receiver<()>>, CallError>
    where
        S: FnOnce(&Shard) -> bool + Send + 'static,
    {
        self.run(s, move |c| {
            if c.with_shard(s, |sh| moved(sh)) {
                None
            } else {
                Some(c.watchers.borrow_mut().register(key))
            }
        })
        .await
    }
}

/// Ends a fenced step when dropped, so an abandoned step cannot leave the epoch odd.
struct StepGuard<'a>(&'a WriteEpoch);

impl Drop for StepGuard<'_> {
    fn drop(&mut self) {
        self.0.end_write();
    }
}

impl Backend for Shards {
    fn nshards(&self) -> usize {
        core().placement.nshards()
    }

    fn on_shard<R, F>(&self, s: usize, f: F) -> impl Future<Output = Result<R, Unavailable>>
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        let this = *self;
        async move { this.call(s, f).await.map_err(Unavailable::from) }
    }

    fn read_stamp(&self) -> Option<u64> {
        let c = core();
        if c.control.fault_torn_reads {
            return Some(0);
        }
        c.control.epoch.stamp()
    }

    fn read_still(&self, stamp: u64) -> bool {
        let c = core();
        c.control.fault_torn_reads || c.control.epoch.still(stamp)
    }

    async fn fenced_write<T, Fut>(&self, step: Fut) -> T
    where
        Fut: Future<Output = T>,
    {
        let c = core();
        // The lock is the raft executor's own: the apply loop is the only writer.
        debug_assert_eq!(
            c.id, c.placement.raft,
            "fenced step off the apply loop's core"
        );
        let fence = c.fence.clone();
        let _excl = fence.write().await;
        c.control.epoch.begin_write();
        let _step = StepGuard(&c.control.epoch);
        crate::metrics::incr_counter("muster.visibility.fenced_writes", &[], 1.0);
        step.await
    }

    fn fenced_read<R, F>(&self, f: F) -> impl Future<Output = Result<Vec<R>, Unavailable>>
    where
        R: Send + 'static,
        F: Fn(&mut Shard) -> R + Send + Sync + Clone + 'static,
    {
        let this = *self;
        async move {
            crate::metrics::incr_counter("muster.visibility.fenced_reads", &[], 1.0);
            let c = core();
            let job = move || async move {
                let fence = core().fence.clone();
                let _shared = fence.read().await;
                muster_shards::coord::on_all(&Shards::default(), f).await
            };
            let raft = c.placement.raft;
            let r = if this.shed {
                c.mesh.try_call(raft, job).await
            } else {
                c.mesh.call(raft, job).await
            };
            r.map_err(Unavailable::from)?
        }
    }
}
