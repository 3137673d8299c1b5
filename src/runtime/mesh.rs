//! The full mesh of bounded cross-core channels: every executor can run a closure on any other.
//!
//! A message is a boxed closure that builds a future on the target executor (Seastar's
//! `invoke_on`); its result travels back through a oneshot, whose waker glommio delivers across
//! threads. Channels are bounded: a full queue makes senders wait (back-pressure) or, with
//! [`Mesh::try_call`], fail at once so a front end can shed load.
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

use muster_shards::coord::Unavailable;

pub type Job = Box<dyn FnOnce() -> LocalBoxFuture<'static, ()> + Send>;

/// Messages in flight per channel; the bound is what makes back-pressure explicit.
pub const CHANNEL_CAPACITY: usize = 1024;
/// How long a sender waits before trying a full queue again.
const FULL_RETRY: std::time::Duration = std::time::Duration::from_micros(200);

/// Depth gauges of every channel, `[from * n + to]`; atomics because sender and receiver sit
/// on different cores (metrics only, never state).
#[derive(Debug)]
pub struct Depths {
    n: usize,
    depth: Vec<AtomicUsize>,
}

impl Depths {
    pub fn new(n: usize) -> Arc<Depths> {
        Arc::new(Depths {
            n,
            depth: (0..n * n).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    pub fn get(&self, from: usize, to: usize) -> usize {
        self.depth[from * self.n + to].load(Ordering::Relaxed)
    }

    fn add(&self, from: usize, to: usize) {
        self.depth[from * self.n + to].fetch_add(1, Ordering::Relaxed);
    }

    fn sub(&self, from: usize, to: usize) {
        self.depth[from * self.n + to].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The unconnected ends for one executor, built before the executors start.
pub struct MeshEnds {
    pub me: usize,
    senders: Vec<Option<SharedSender<Job>>>,
    receivers: Vec<Option<SharedReceiver<Job>>>,
    depths: Arc<Depths>,
}

/// Builds the n x n channel matrix (no channel from an executor to itself).
pub fn build(n: usize) -> Vec<MeshEnds> {
    let depths = Depths::new(n);
    let mut ends: Vec<MeshEnds> = (0..n)
        .map(|me| MeshEnds {
            me,
            senders: (0..n).map(|_| None).collect(),
            receivers: (0..n).map(|_| None).collect(),
            depths: depths.clone(),
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(CHANNEL_CAPACITY);
                ends[from].senders[to] = Some(tx);
                ends[to].receivers[from] = Some(rx);
            }
        }
    }
    ends
}

pub struct Mesh {
    me: usize,
    senders: Vec<Option<ConnectedSender<Job>>>,
    depths: Arc<Depths>,
}

impl MeshEnds {
    /// Connects every end (all at once: each connect waits for its peer) and starts one
    /// receiving loop per incoming channel in `tq`.
    pub async fn connect(self, tq: glommio::TaskQueueHandle) -> Mesh {
        let me = self.me;
        let senders = futures::future::join_all(
            self.senders
                .into_iter()
                .map(|s| async move { Some(s?.connect().await) }),
        );
        let receivers = futures::future::join_all(
            self.receivers
                .into_iter()
                .map(|r| async move { Some(r?.connect().await) }),
        );
        let (senders, receivers) = futures::join!(senders, receivers);
        for (from, rx) in receivers.into_iter().enumerate() {
            if let Some(rx) = rx {
                let depths = self.depths.clone();
                glommio::spawn_local_into(receive_loop(rx, from, me, depths), tq)
                    .expect("mesh task queue exists")
                    .detach();
            }
        }
        Mesh {
            me,
            senders,
            depths: self.depths,
        }
    }
}

async fn receive_loop(rx: ConnectedReceiver<Job>, from: usize, me: usize, depths: Arc<Depths>) {
    while let Some(job) = rx.recv().await {
        depths.sub(from, me);
        let mut fut = job();
        // Most jobs are synchronous shard calls: run them inline and spawn only real waits.
        if futures::poll!(fut.as_mut()).is_pending() {
            glommio::spawn_local(fut).detach();
        }
    }
}

/// Either wait for room (`Wait`) or give up when the target's queue is full (`Shed`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Full {
    Wait,
    Shed,
}

/// The queue to the target executor is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("the queue to executor {0} is full")]
    Busy(usize),
    #[error("executor {0} is unavailable")]
    Unavailable(usize),
}

impl From<CallError> for Unavailable {
    fn from(e: CallError) -> Unavailable {
        match e {
            CallError::Busy(x) => Unavailable::Busy(x),
            CallError::Unavailable(x) => Unavailable::Gone(x),
        }
    }
}

impl Mesh {
    pub fn me(&self) -> usize {
        self.me
    }

    pub fn depths(&self) -> &Arc<Depths> {
        &self.depths
    }

    /// Runs `f` on executor `target` and returns its result; waits for room when the queue
    /// is full.
    pub async fn call<R, F, Fut>(&self, target: usize, f: F) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        self.dispatch(target, f, Full::Wait).await
    }

    /// Like [`Mesh::call`], but fails with `Busy` instead of waiting when the queue is full.
    pub async fn try_call<R, F, Fut>(&self, target: usize, f: F) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        self.dispatch(target, f, Full::Shed).await
    }

    async fn dispatch<R, F, Fut>(&self, target: usize, f: F, full: Full) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if target == self.me {
            return Ok(f().await);
        }
        let sender = self
            .senders
            .get(target)
            .and_then(Option::as_ref)
            .ok_or(CallError::Unavailable(target))?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            async move {
                let r = f().await;
                let _ = tx.send(r);
            }
            .boxed_local()
        });
        self.depths.add(self.me, target);
        let mut job = job;
        loop {
            match sender.try_send(job) {
                Ok(()) => break,
                Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(back)))
                    if full == Full::Wait =>
                {
                    // glommio's own `send` panics when two local tasks race for the last
                    // slot, so waiting for room is a retry after a short sleep.
                    job = back;
                    glommio::timer::sleep(FULL_RETRY).await;
                }
                Err(e) => {
                    self.depths.sub(self.me, target);
                    return Err(match e {
                        glommio::GlommioError::WouldBlock(_) => {
                            crate::metrics::incr_counter(
                                crate::metrics::names::MESH_QUEUE_FULL,
                                &[],
                                1.0,
                            );
                            CallError::Busy(target)
                        }
                        _ => CallError::Unavailable(target),
                    });
                }
            }
        }
        rx.await.map_err(|_| CallError::Unavailable(target))
    }
}
