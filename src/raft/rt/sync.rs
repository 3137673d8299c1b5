//! Single-threaded channels and lock behind [`GlommioRuntime`](super::GlommioRuntime).
//!
//! openraft runs on one glommio executor, so these primitives are `Rc`/`Cell` based: no atomics,
//! no cross-thread wakeups. Every waiter is keyed by an id so a future that is polled again
//! replaces its own waker instead of piling up stale ones, and a waiter that gives up after being
//! woken passes the wakeup on, so a free slot or an unlocked mutex is never left unclaimed.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::{poll_fn, Future};
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use openraft_rt::{
    Mpsc, MpscReceiver, MpscSender, MpscWeakSender, Oneshot, OneshotSender, OptionalSend,
    OptionalSync, SendError, TryRecvError, Watch, WatchReceiver, WatchSender,
};

/// Wakers of parked tasks, keyed by a per-waiter id so re-polling replaces rather than appends.
#[derive(Default)]
struct WaitList {
    next_id: u64,
    waiters: BTreeMap<u64, Waker>,
}

impl WaitList {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn park(&mut self, id: u64, waker: &Waker) {
        match self.waiters.get_mut(&id) {
            Some(w) if w.will_wake(waker) => {}
            Some(w) => w.clone_from(waker),
            None => {
                self.waiters.insert(id, waker.clone());
            }
        }
    }

    fn remove(&mut self, id: u64) {
        self.waiters.remove(&id);
    }

    /// Takes the oldest waiter; the caller wakes it after releasing its borrows.
    fn take_one(&mut self) -> Option<Waker> {
        self.waiters.pop_first().map(|(_, w)| w)
    }

    fn take_all(&mut self) -> impl Iterator<Item = Waker> + use<> {
        std::mem::take(&mut self.waiters).into_values()
    }
}

fn wake_all(wakers: impl Iterator<Item = Waker>) {
    for w in wakers {
        w.wake();
    }
}

// ---------------------------------------------------------------------------------------------
// Bounded MPSC
// ---------------------------------------------------------------------------------------------

/// Bounded multi-producer single-consumer channel; `send` parks once `buffer` items are queued.
pub struct LocalMpsc;

struct Chan<T> {
    queue: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receiver_alive: bool,
    receiver_waker: Option<Waker>,
    send_waiters: WaitList,
}

type ChanRef<T> = Rc<RefCell<Chan<T>>>;

pub struct MpscTx<T> {
    chan: ChanRef<T>,
}

pub struct MpscWeakTx<T> {
    chan: ChanRef<T>,
}

pub struct MpscRx<T> {
    chan: ChanRef<T>,
}

impl Mpsc for LocalMpsc {
    type Sender<T: OptionalSend> = MpscTx<T>;
    type Receiver<T: OptionalSend> = MpscRx<T>;
    type WeakSender<T: OptionalSend> = MpscWeakTx<T>;

    fn channel<T: OptionalSend>(buffer: usize) -> (MpscTx<T>, MpscRx<T>) {
        let chan = Rc::new(RefCell::new(Chan {
            queue: VecDeque::new(),
            // A zero-capacity channel would never accept anything; treat it as a rendezvous of one.
            capacity: buffer.max(1),
            senders: 1,
            receiver_alive: true,
            receiver_waker: None,
            send_waiters: WaitList::default(),
        }));
        (MpscTx { chan: chan.clone() }, MpscRx { chan })
    }
}

impl<T> Clone for MpscTx<T> {
    fn clone(&self) -> Self {
        self.chan.borrow_mut().senders += 1;
        Self {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for MpscTx<T> {
    fn drop(&mut self) {
        let waker = {
            let mut c = self.chan.borrow_mut();
            c.senders -= 1;
            if c.senders == 0 {
                c.receiver_waker.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Future returned by [`MpscTx::send`].
pub struct SendFut<T> {
    chan: ChanRef<T>,
    msg: Option<T>,
    waiter: Option<u64>,
}

// Nothing in `SendFut` is structurally pinned.
impl<T> Unpin for SendFut<T> {}

impl<T> Future for SendFut<T> {
    type Output = Result<(), SendError<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut c = this.chan.borrow_mut();
        let Some(msg) = this.msg.take() else {
            panic!("SendFut polled after completion");
        };
        if !c.receiver_alive {
            if let Some(id) = this.waiter.take() {
                c.send_waiters.remove(id);
            }
            return Poll::Ready(Err(SendError(msg)));
        }
        if c.queue.len() < c.capacity {
            if let Some(id) = this.waiter.take() {
                c.send_waiters.remove(id);
            }
            c.queue.push_back(msg);
            let waker = c.receiver_waker.take();
            drop(c);
            if let Some(w) = waker {
                w.wake();
            }
            return Poll::Ready(Ok(()));
        }
        this.msg = Some(msg);
        let id = match this.waiter {
            Some(id) => id,
            None => {
                let id = c.send_waiters.new_id();
                this.waiter = Some(id);
                id
            }
        };
        c.send_waiters.park(id, cx.waker());
        Poll::Pending
    }
}

impl<T> Drop for SendFut<T> {
    fn drop(&mut self) {
        let Some(id) = self.waiter.take() else {
            return;
        };
        let handoff = {
            let mut c = self.chan.borrow_mut();
            c.send_waiters.remove(id);
            // This sender may have been woken for a free slot it will now never use.
            if c.queue.len() < c.capacity {
                c.send_waiters.take_one()
            } else {
                None
            }
        };
        if let Some(w) = handoff {
            w.wake();
        }
    }
}

impl<T: OptionalSend> MpscSender<LocalMpsc, T> for MpscTx<T> {
    fn send(&self, msg: T) -> impl Future<Output = Result<(), SendError<T>>> + OptionalSend {
        SendFut {
            chan: self.chan.clone(),
            msg: Some(msg),
            waiter: None,
        }
    }

    fn downgrade(&self) -> MpscWeakTx<T> {
        MpscWeakTx {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Clone for MpscWeakTx<T> {
    fn clone(&self) -> Self {
        Self {
            chan: self.chan.clone(),
        }
    }
}

impl<T: OptionalSend> MpscWeakSender<LocalMpsc, T> for MpscWeakTx<T> {
    fn upgrade(&self) -> Option<MpscTx<T>> {
        let mut c = self.chan.borrow_mut();
        if c.senders == 0 {
            return None;
        }
        c.senders += 1;
        Some(MpscTx {
            chan: self.chan.clone(),
        })
    }
}

impl<T> MpscRx<T> {
    /// Pops one item and wakes one parked sender for the slot it freed.
    fn pop(&mut self) -> Result<T, TryRecvError> {
        let (item, waker) = {
            let mut c = self.chan.borrow_mut();
            match c.queue.pop_front() {
                Some(item) => (item, c.send_waiters.take_one()),
                None if c.senders == 0 => return Err(TryRecvError::Disconnected),
                None => return Err(TryRecvError::Empty),
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(item)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.pop() {
            Ok(item) => Poll::Ready(Some(item)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => {
                let mut c = self.chan.borrow_mut();
                match &mut c.receiver_waker {
                    Some(w) => w.clone_from(cx.waker()),
                    slot @ None => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl<T: OptionalSend> MpscReceiver<T> for MpscRx<T> {
    fn recv(&mut self) -> impl Future<Output = Option<T>> + OptionalSend {
        poll_fn(move |cx| self.poll_recv(cx))
    }

    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.pop()
    }
}

impl<T> Drop for MpscRx<T> {
    fn drop(&mut self) {
        let (queued, wakers) = {
            let mut c = self.chan.borrow_mut();
            c.receiver_alive = false;
            c.receiver_waker = None;
            (std::mem::take(&mut c.queue), c.send_waiters.take_all())
        };
        // Items are dropped outside the borrow: their destructors may touch this channel.
        drop(queued);
        wake_all(wakers);
    }
}

// ---------------------------------------------------------------------------------------------
// Oneshot
// ---------------------------------------------------------------------------------------------

/// One-shot channel.
pub struct LocalOneshot;

struct OneshotState<T> {
    value: Option<T>,
    sender_alive: bool,
    receiver_alive: bool,
    receiver_waker: Option<Waker>,
}

pub struct OneshotTx<T> {
    state: Rc<RefCell<OneshotState<T>>>,
}

pub struct OneshotRx<T> {
    state: Rc<RefCell<OneshotState<T>>>,
}

/// The sender was dropped without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("oneshot sender dropped without sending")]
pub struct OneshotCanceled;

impl Oneshot for LocalOneshot {
    type Sender<T: OptionalSend> = OneshotTx<T>;
    type Receiver<T: OptionalSend> = OneshotRx<T>;
    type ReceiverError = OneshotCanceled;

    fn channel<T: OptionalSend>() -> (OneshotTx<T>, OneshotRx<T>) {
        let state = Rc::new(RefCell::new(OneshotState {
            value: None,
            sender_alive: true,
            receiver_alive: true,
            receiver_waker: None,
        }));
        (
            OneshotTx {
                state: state.clone(),
            },
            OneshotRx { state },
        )
    }
}

impl<T: OptionalSend> OneshotSender<T> for OneshotTx<T> {
    fn send(self, t: T) -> Result<(), T> {
        let waker = {
            let mut s = self.state.borrow_mut();
            if !s.receiver_alive {
                return Err(t);
            }
            s.value = Some(t);
            s.receiver_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Drop for OneshotTx<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.state.borrow_mut();
            s.sender_alive = false;
            s.receiver_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Unpin for OneshotRx<T> {}

impl<T> Future for OneshotRx<T> {
    type Output = Result<T, OneshotCanceled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.state.borrow_mut();
        if let Some(v) = s.value.take() {
            return Poll::Ready(Ok(v));
        }
        if !s.sender_alive {
            return Poll::Ready(Err(OneshotCanceled));
        }
        match &mut s.receiver_waker {
            Some(w) => w.clone_from(cx.waker()),
            slot @ None => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for OneshotRx<T> {
    fn drop(&mut self) {
        let value = {
            let mut s = self.state.borrow_mut();
            s.receiver_alive = false;
            s.receiver_waker = None;
            s.value.take()
        };
        drop(value);
    }
}

// ---------------------------------------------------------------------------------------------
// Watch
// ---------------------------------------------------------------------------------------------

/// Single-value broadcast: receivers see the latest value and a version to detect changes.
pub struct LocalWatch;

struct WatchShared<T> {
    value: RefCell<T>,
    version: Cell<u64>,
    senders: Cell<usize>,
    receivers: Cell<usize>,
    waiters: RefCell<WaitList>,
}

impl<T> WatchShared<T> {
    fn bump(&self) {
        self.version.set(self.version.get() + 1);
        let wakers = self.waiters.borrow_mut().take_all();
        wake_all(wakers);
    }

    fn new_receiver(self: &Rc<Self>, seen: u64) -> WatchRx<T> {
        self.receivers.set(self.receivers.get() + 1);
        let id = self.waiters.borrow_mut().new_id();
        WatchRx {
            shared: self.clone(),
            id,
            seen,
        }
    }
}

pub struct WatchTx<T> {
    shared: Rc<WatchShared<T>>,
}

pub struct WatchRx<T> {
    shared: Rc<WatchShared<T>>,
    id: u64,
    seen: u64,
}

/// Error from [`WatchTx::send`] when every receiver is gone; gives the value back.
pub use openraft_rt::watch::SendError as WatchSendError;

impl Watch for LocalWatch {
    type Sender<T: OptionalSend + OptionalSync> = WatchTx<T>;
    type Receiver<T: OptionalSend + OptionalSync> = WatchRx<T>;
    type Ref<'a, T: OptionalSend + 'a> = Ref<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (WatchTx<T>, WatchRx<T>) {
        let shared = Rc::new(WatchShared {
            value: RefCell::new(init),
            version: Cell::new(0),
            senders: Cell::new(1),
            receivers: Cell::new(0),
            waiters: RefCell::new(WaitList::default()),
        });
        let rx = shared.new_receiver(0);
        (WatchTx { shared }, rx)
    }
}

impl<T> Clone for WatchTx<T> {
    fn clone(&self) -> Self {
        self.shared.senders.set(self.shared.senders.get() + 1);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for WatchTx<T> {
    fn drop(&mut self) {
        let left = self.shared.senders.get() - 1;
        self.shared.senders.set(left);
        if left == 0 {
            let wakers = self.shared.waiters.borrow_mut().take_all();
            wake_all(wakers);
        }
    }
}

impl<T: OptionalSend + OptionalSync> WatchSender<LocalWatch, T> for WatchTx<T> {
    fn send(&self, value: T) -> Result<(), WatchSendError<T>> {
        if self.shared.receivers.get() == 0 {
            return Err(WatchSendError(value));
        }
        let old = self.shared.value.replace(value);
        self.shared.bump();
        drop(old);
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        let modified = modify(&mut self.shared.value.borrow_mut());
        if modified {
            self.shared.bump();
        }
        modified
    }

    fn borrow_watched(&self) -> Ref<'_, T> {
        self.shared.value.borrow()
    }

    fn subscribe(&self) -> WatchRx<T> {
        self.shared.new_receiver(self.shared.version.get())
    }
}

impl<T> Clone for WatchRx<T> {
    fn clone(&self) -> Self {
        self.shared.new_receiver(self.seen)
    }
}

impl<T> Drop for WatchRx<T> {
    fn drop(&mut self) {
        self.shared.receivers.set(self.shared.receivers.get() - 1);
        self.shared.waiters.borrow_mut().remove(self.id);
    }
}

impl<T> WatchRx<T> {
    fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), openraft_rt::RecvError>> {
        let version = self.shared.version.get();
        if version != self.seen {
            self.seen = version;
            self.shared.waiters.borrow_mut().remove(self.id);
            return Poll::Ready(Ok(()));
        }
        if self.shared.senders.get() == 0 {
            return Poll::Ready(Err(openraft_rt::RecvError(())));
        }
        self.shared.waiters.borrow_mut().park(self.id, cx.waker());
        Poll::Pending
    }
}

impl<T: OptionalSend + OptionalSync> WatchReceiver<LocalWatch, T> for WatchRx<T> {
    async fn changed(&mut self) -> Result<(), openraft_rt::RecvError> {
        poll_fn(|cx| self.poll_changed(cx)).await
    }

    fn borrow_watched(&self) -> Ref<'_, T> {
        self.shared.value.borrow()
    }

    fn borrow_and_update(&mut self) -> Ref<'_, T> {
        self.seen = self.shared.version.get();
        self.shared.value.borrow()
    }
}

// ---------------------------------------------------------------------------------------------
// Mutex
// ---------------------------------------------------------------------------------------------

/// Async mutex whose guard may be held across `.await` on the same executor.
pub struct LocalMutex<T> {
    locked: Cell<bool>,
    value: RefCell<T>,
    waiters: RefCell<WaitList>,
}

pub struct LocalMutexGuard<'a, T> {
    mutex: &'a LocalMutex<T>,
    // `Option` so the borrow can be released before the next waiter is woken.
    value: Option<RefMut<'a, T>>,
}

impl<T> LocalMutex<T> {
    fn poll_lock<'a>(
        &'a self,
        waiter: &mut Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<LocalMutexGuard<'a, T>> {
        if !self.locked.get() {
            self.locked.set(true);
            if let Some(id) = waiter.take() {
                self.waiters.borrow_mut().remove(id);
            }
            return Poll::Ready(LocalMutexGuard {
                mutex: self,
                value: Some(self.value.borrow_mut()),
            });
        }
        let mut waiters = self.waiters.borrow_mut();
        let id = *waiter.get_or_insert_with(|| waiters.new_id());
        waiters.park(id, cx.waker());
        Poll::Pending
    }
}

/// Future returned by [`LocalMutex::lock`]; gives up its place (and any wakeup) when dropped.
pub struct LockFut<'a, T> {
    mutex: &'a LocalMutex<T>,
    waiter: Option<u64>,
}

impl<'a, T> Future for LockFut<'a, T> {
    type Output = LocalMutexGuard<'a, T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.mutex.poll_lock(&mut this.waiter, cx)
    }
}

impl<T> Drop for LockFut<'_, T> {
    fn drop(&mut self) {
        let Some(id) = self.waiter.take() else {
            return;
        };
        let handoff = {
            let mut waiters = self.mutex.waiters.borrow_mut();
            waiters.remove(id);
            if self.mutex.locked.get() {
                None
            } else {
                waiters.take_one()
            }
        };
        if let Some(w) = handoff {
            w.wake();
        }
    }
}

impl<T: OptionalSend + 'static> openraft_rt::Mutex<T> for LocalMutex<T> {
    type Guard<'a> = LocalMutexGuard<'a, T>;

    fn new(value: T) -> Self {
        Self {
            locked: Cell::new(false),
            value: RefCell::new(value),
            waiters: RefCell::new(WaitList::default()),
        }
    }

    fn lock(&self) -> impl Future<Output = LocalMutexGuard<'_, T>> + OptionalSend {
        LockFut {
            mutex: self,
            waiter: None,
        }
    }
}

impl<T> Deref for LocalMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
            .as_deref()
            .expect("guard holds the value until dropped")
    }
}

impl<T> DerefMut for LocalMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
            .as_deref_mut()
            .expect("guard holds the value until dropped")
    }
}

impl<T> Drop for LocalMutexGuard<'_, T> {
    fn drop(&mut self) {
        self.value = None;
        self.mutex.locked.set(false);
        let next = self.mutex.waiters.borrow_mut().take_one();
        if let Some(w) = next {
            w.wake();
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for LocalMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMutex")
            .field("locked", &self.locked.get())
            .finish_non_exhaustive()
    }
}
