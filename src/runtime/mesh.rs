//! The full mesh of bounded cross-core channels: every executor can run a closure on any other.
//!
//! A message is a boxed closure that builds a future on the target executor (Seastar's
//! `invoke_on`); its result travels back through a oneshot, whose waker glommio delivers across
//! threads. Channels are bounded: a full queue makes senders wait (back-pressure) or, with
//! [`Mesh::try_call`], fail at once so a front end can shed load. A sender waits for a slot on
//! a per-channel semaphore that the receiver refills as it takes jobs out, so a waiter is woken
//! when room frees up. When an executor stops taking jobs, calls to it fail at once, including
//! those already queued or waiting for a slot.
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::channel::oneshot;
use futures::future::{Either, LocalBoxFuture};
use futures::FutureExt;
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use tokio::sync::{Semaphore, TryAcquireError};
use tokio_util::sync::CancellationToken;

use muster_shards::coord::Unavailable;

pub type Job = Box<dyn FnOnce() -> LocalBoxFuture<'static, ()> + Send>;

/// Messages in flight per channel; the bound is what makes back-pressure explicit.
pub const CHANNEL_CAPACITY: usize = 1024;

/// Flow control of one channel, shared by its two ends (on two threads; tokio's semaphore and
/// token work without a tokio runtime and wake glommio tasks through their wakers).
#[derive(Debug)]
struct Link {
    /// Free slots in the queue: a sender takes one before it sends and the receiver gives it
    /// back when it takes the job out; waiters are served in order.
    slots: Semaphore,
    /// Cancelled when the receiving executor stops taking jobs.
    stopped: CancellationToken,
}

impl Link {
    fn new(capacity: usize) -> Arc<Link> {
        Arc::new(Link {
            slots: Semaphore::new(capacity),
            stopped: CancellationToken::new(),
        })
    }

    fn stop(&self) {
        self.slots.close();
        self.stopped.cancel();
    }
}

/// Stops a link when the receive loop ends for any reason (the executor dropped it).
struct StopOnDrop(Arc<Link>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

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
    senders: Vec<Option<(SharedSender<Job>, Arc<Link>)>>,
    receivers: Vec<Option<(SharedReceiver<Job>, Arc<Link>)>>,
    depths: Arc<Depths>,
}

/// Builds the n x n channel matrix (no channel from an executor to itself).
pub fn build(n: usize) -> Vec<MeshEnds> {
    build_with_capacity(n, CHANNEL_CAPACITY)
}

fn build_with_capacity(n: usize, capacity: usize) -> Vec<MeshEnds> {
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
                let (tx, rx) = shared_channel::new_bounded(capacity);
                let link = Link::new(capacity);
                ends[from].senders[to] = Some((tx, link.clone()));
                ends[to].receivers[from] = Some((rx, link));
            }
        }
    }
    ends
}

pub struct Mesh {
    me: usize,
    senders: Vec<Option<(ConnectedSender<Job>, Arc<Link>)>>,
    /// The links into this executor, stopped by [`Mesh::stop_receiving`].
    incoming: Vec<Arc<Link>>,
    depths: Arc<Depths>,
}

impl MeshEnds {
    /// Connects every end (all at once: each connect waits for its peer) and starts one
    /// receiving loop per incoming channel in `tq`.
    pub async fn connect(self, tq: glommio::TaskQueueHandle) -> Mesh {
        let me = self.me;
        let senders = futures::future::join_all(self.senders.into_iter().map(|s| async move {
            let (s, link) = s?;
            Some((s.connect().await, link))
        }));
        let receivers = futures::future::join_all(self.receivers.into_iter().map(|r| async move {
            let (r, link) = r?;
            Some((r.connect().await, link))
        }));
        let (senders, receivers) = futures::join!(senders, receivers);
        let mut incoming = Vec::new();
        for (from, rx) in receivers.into_iter().enumerate() {
            if let Some((rx, link)) = rx {
                incoming.push(link.clone());
                let depths = self.depths.clone();
                glommio::spawn_local_into(receive_loop(rx, link, from, me, depths), tq)
                    .expect("mesh task queue exists")
                    .detach();
            }
        }
        Mesh {
            me,
            senders,
            incoming,
            depths: self.depths,
        }
    }
}

async fn receive_loop(
    rx: ConnectedReceiver<Job>,
    link: Arc<Link>,
    from: usize,
    me: usize,
    depths: Arc<Depths>,
) {
    let _stop = StopOnDrop(link.clone());
    while let Some(job) = rx.recv().await {
        if link.stopped.is_cancelled() {
            // The caller has been told this executor is gone; dropping the job drops its reply.
            continue;
        }
        link.slots.add_permits(1);
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

    /// This executor takes no more jobs: calls to it, queued or waiting for a slot, fail with
    /// `Unavailable` at once instead of waiting for an executor that will never run them.
    pub fn stop_receiving(&self) {
        for link in &self.incoming {
            link.stop();
        }
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
        let (sender, link) = self
            .senders
            .get(target)
            .and_then(Option::as_ref)
            .ok_or(CallError::Unavailable(target))?;
        let slot = match full {
            Full::Wait => link.slots.acquire().await.ok(),
            Full::Shed => match link.slots.try_acquire() {
                Ok(slot) => Some(slot),
                Err(TryAcquireError::Closed) => None,
                Err(TryAcquireError::NoPermits) => {
                    crate::metrics::incr_counter(crate::metrics::names::MESH_QUEUE_FULL, &[], 1.0);
                    return Err(CallError::Busy(target));
                }
            },
        };
        // The receiver gives the slot back when it takes the job out of the queue.
        slot.ok_or(CallError::Unavailable(target))?.forget();
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            async move {
                let r = f().await;
                let _ = tx.send(r);
            }
            .boxed_local()
        });
        self.depths.add(self.me, target);
        // Holding a slot means the queue has room: only this executor sends on this channel.
        if sender.try_send(job).is_err() {
            self.depths.sub(self.me, target);
            link.slots.add_permits(1);
            return Err(CallError::Unavailable(target));
        }
        let stopped = link.stopped.cancelled();
        futures::pin_mut!(stopped);
        match futures::future::select(rx, stopped).await {
            Either::Left((Ok(r), _)) => Ok(r),
            Either::Left((Err(_), _)) | Either::Right(_) => Err(CallError::Unavailable(target)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::mpsc as std_mpsc;

    use futures::channel::oneshot;
    use glommio::LocalExecutorBuilder;

    use super::{build_with_capacity, CallError, Link, Mesh, MeshEnds};

    /// Runs executor 0 (`test`) and executor 1 (which only serves the mesh) on two threads.
    fn run_pair<F, Fut>(capacity: usize, test: F)
    where
        F: FnOnce(Rc<Mesh>, std::sync::Arc<Link>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let mut ends = build_with_capacity(2, capacity).into_iter();
        let (e0, e1): (MeshEnds, MeshEnds) = (ends.next().unwrap(), ends.next().unwrap());
        let into_1 = e1.receivers[0].as_ref().unwrap().1.clone();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let h1 = LocalExecutorBuilder::default()
            .name("mesh-test-1")
            .io_memory(1 << 20)
            .spawn(move || async move {
                let _mesh = e1.connect(glommio::executor().current_task_queue()).await;
                let _ = done_rx.await;
            })
            .unwrap();
        let h0 = LocalExecutorBuilder::default()
            .name("mesh-test-0")
            .io_memory(1 << 20)
            .spawn(move || async move {
                let mesh = Rc::new(e0.connect(glommio::executor().current_task_queue()).await);
                test(mesh, into_1).await;
                let _ = done_tx.send(());
            })
            .unwrap();
        h0.join().unwrap();
        h1.join().unwrap();
    }

    /// Yields until `cond` holds; the other executor makes progress on its own thread.
    async fn until(cond: impl Fn() -> bool) {
        while !cond() {
            futures_lite::future::yield_now().await;
        }
    }

    /// Parks executor 1's thread inside a job (test only) until `release` is sent, so nothing
    /// leaves its queue; returns once the job is running and its slot is back.
    async fn freeze_executor_1(
        mesh: &Rc<Mesh>,
        then: impl FnOnce() + Send + 'static,
    ) -> std_mpsc::Sender<()> {
        let (entered_tx, entered_rx) = oneshot::channel::<()>();
        let (release_tx, release_rx) = std_mpsc::channel::<()>();
        let m = mesh.clone();
        glommio::spawn_local(async move {
            let _ = m
                .call(1, move || {
                    let _ = entered_tx.send(());
                    release_rx.recv().unwrap();
                    then();
                    async {}
                })
                .await;
        })
        .detach();
        entered_rx.await.unwrap();
        release_tx
    }

    #[test]
    fn a_full_queue_wakes_the_waiting_sender_when_a_slot_frees() {
        run_pair(2, |mesh, _| async move {
            let release = freeze_executor_1(&mesh, || {}).await;
            let answered = Rc::new(Cell::new(0));
            for _ in 0..2 {
                let (m, a) = (mesh.clone(), answered.clone());
                glommio::spawn_local(async move {
                    m.try_call(1, || async { 1 }).await.unwrap();
                    a.set(a.get() + 1);
                })
                .detach();
            }
            until(|| mesh.depths().get(0, 1) == 2).await;
            assert_eq!(
                mesh.try_call(1, || async { 0 }).await.unwrap_err(),
                CallError::Busy(1)
            );
            let m = mesh.clone();
            let waiter = glommio::spawn_local(async move { m.call(1, || async { 42 }).await });
            for _ in 0..100 {
                futures_lite::future::yield_now().await;
            }
            assert_eq!(
                mesh.depths().get(0, 1),
                2,
                "the waiter must not have sent yet"
            );
            release.send(()).unwrap();
            assert_eq!(waiter.await.unwrap(), 42);
            until(|| answered.get() == 2).await;
        });
    }

    #[test]
    fn calls_to_a_stopped_executor_fail_at_once() {
        run_pair(4, |mesh, into_1| async move {
            // Executor 1 stops taking jobs while one is queued to it and never runs it.
            let release = freeze_executor_1(&mesh, move || into_1.stop()).await;
            let m = mesh.clone();
            let queued = glommio::spawn_local(async move { m.call(1, || async { 1 }).await });
            until(|| mesh.depths().get(0, 1) == 1).await;
            release.send(()).unwrap();
            assert_eq!(queued.await, Err(CallError::Unavailable(1)));
            assert_eq!(
                mesh.call(1, || async { 1 }).await,
                Err(CallError::Unavailable(1))
            );
            assert_eq!(
                mesh.try_call(1, || async { 1 }).await,
                Err(CallError::Unavailable(1))
            );
        });
    }
}
