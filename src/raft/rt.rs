//! openraft's [`AsyncRuntime`] on glommio.
//!
//! Everything openraft spawns lands on the executor that calls [`AsyncRuntime::spawn`] (the raft
//! role executor) as a detached local task; timers are glommio timers; channels, watch, oneshot
//! and the mutex are `tokio::sync`'s (through openraft's own `openraft-rt-tokio` adapters), which
//! need no tokio runtime: they only store and wake the glommio tasks' wakers. Requires openraft's
//! `single-threaded` feature: the spawned futures are not `Send`.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use glommio::{LocalExecutor, LocalExecutorBuilder};
use openraft_rt::{AsyncRuntime, OptionalSend};

use openraft_rt_tokio::{TokioMpsc, TokioMutex, TokioOneshot, TokioWatch};

/// I/O memory for executors made by [`AsyncRuntime::new`] (tests only): small enough to stay
/// under a default `RLIMIT_MEMLOCK`.
const TEST_EXECUTOR_IO_MEMORY: usize = 1 << 20;

/// openraft runtime backed by glommio's thread-local executor.
///
/// As a type parameter it only routes openraft's spawns, timers and channels to glommio; the
/// value is needed only for [`AsyncRuntime::new`]/[`AsyncRuntime::block_on`], which build a
/// private [`LocalExecutor`] (used by tests; production code runs openraft inside an executor
/// it already owns).
pub struct GlommioRuntime {
    executor: LocalExecutor,
}

impl fmt::Debug for GlommioRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlommioRuntime")
            .field("executor_id", &self.executor.id())
            .finish()
    }
}

/// Why a spawned task produced no output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The task was cancelled, or its executor stopped, before it finished.
    #[error("task was cancelled before completion")]
    Cancelled,
}

/// Handle to a detached glommio task; dropping it does not cancel the task.
pub struct JoinHandle<T> {
    inner: glommio::task::JoinHandle<T>,
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner)
            .poll(cx)
            .map(|out| out.ok_or(JoinError::Cancelled))
    }
}

/// A deadline passed to [`AsyncRuntime::timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// Sleep future; a deadline already in the past completes without touching the reactor.
pub struct Sleep {
    timer: Option<Timer>,
}

impl Sleep {
    fn until(deadline: Instant) -> Self {
        let now = Instant::now();
        let timer = (deadline > now).then(|| Timer::new(deadline - now));
        Self { timer }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.timer {
            None => Poll::Ready(()),
            Some(t) => Pin::new(t).poll(cx).map(|_| ()),
        }
    }
}

pin_project_lite::pin_project! {
    /// Future returned by [`AsyncRuntime::timeout`]/[`AsyncRuntime::timeout_at`].
    pub struct Timeout<R, F> {
        #[pin]
        future: F,
        sleep: Sleep,
        _output: PhantomData<fn() -> R>,
    }
}

impl<R, F: Future<Output = R>> Future for Timeout<R, F> {
    type Output = Result<R, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The inner future goes first so a result that is ready at the deadline still counts.
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        Pin::new(this.sleep).poll(cx).map(|()| Err(Elapsed))
    }
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = JoinError;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = Instant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<R, T>;
    type ThreadLocalRng = rand_openraft::rngs::ThreadRng;

    fn spawn<T>(future: T) -> JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        // Detached: openraft drops some handles right away and still expects the task to run.
        JoinHandle {
            inner: glommio::spawn_local(future).detach(),
        }
    }

    fn sleep(duration: Duration) -> Sleep {
        Sleep {
            timer: (!duration.is_zero()).then(|| Timer::new(duration)),
        }
    }

    fn sleep_until(deadline: Instant) -> Sleep {
        Sleep::until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Timeout<R, F> {
        Timeout {
            future,
            sleep: Self::sleep(duration),
            _output: PhantomData,
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Instant,
        future: F,
    ) -> Timeout<R, F> {
        Timeout {
            future,
            sleep: Sleep::until(deadline),
            _output: PhantomData,
        }
    }

    fn is_panic(_join_error: &JoinError) -> bool {
        // A panicking glommio task unwinds through its executor instead of being captured.
        false
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        rand_openraft::rng()
    }

    type Mpsc = TokioMpsc;
    type Watch = TokioWatch;
    type Oneshot = TokioOneshot;
    type Mutex<T: OptionalSend + 'static> = TokioMutex<T>;

    fn new(_threads: usize) -> Self {
        let executor = LocalExecutorBuilder::default()
            .name("raft-rt")
            .io_memory(TEST_EXECUTOR_IO_MEMORY)
            .make()
            .expect("cannot create a glommio LocalExecutor");
        Self { executor }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.executor.run(future)
    }
}

#[cfg(test)]
mod tests {
    use super::GlommioRuntime;

    #[test]
    fn openraft_runtime_suite() {
        openraft_rt::testing::Suite::<GlommioRuntime>::test_all();
    }
}
