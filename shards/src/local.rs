//! Shards reached by direct calls, on one thread: for tests, benchmarks and tools. Every call
//! completes before the next starts, so a multi-shard read can never meet a write half-way
//! and the visibility hooks have nothing to do.
use std::cell::RefCell;
use std::future::Future;

use crate::coord::{Backend, Unavailable};
use crate::shard::Shard;

pub struct LocalShards {
    shards: Vec<RefCell<Shard>>,
}

impl LocalShards {
    pub fn new(n: usize) -> LocalShards {
        LocalShards {
            shards: (0..n).map(|i| RefCell::new(Shard::new(i, n))).collect(),
        }
    }

    pub fn shard(&self, i: usize) -> std::cell::Ref<'_, Shard> {
        self.shards[i].borrow()
    }
}

impl Backend for LocalShards {
    fn nshards(&self) -> usize {
        self.shards.len()
    }

    fn on_shard<R, F>(&self, s: usize, f: F) -> impl Future<Output = Result<R, Unavailable>>
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        let r = match self.shards.get(s) {
            Some(cell) => {
                let mut shard = cell.borrow_mut();
                let r = f(&mut shard);
                shard.take_touched();
                Ok(r)
            }
            None => Err(Unavailable::Gone(s)),
        };
        std::future::ready(r)
    }

    fn read_stamp(&self) -> Option<u64> {
        Some(0)
    }

    fn read_still(&self, _stamp: u64) -> bool {
        true
    }

    fn fenced_write<T, Fut>(&self, step: Fut) -> impl Future<Output = T>
    where
        Fut: Future<Output = T>,
    {
        step
    }

    fn fenced_read<R, F>(&self, f: F) -> impl Future<Output = Result<Vec<R>, Unavailable>>
    where
        R: Send + 'static,
        F: Fn(&mut Shard) -> R + Send + Sync + Clone + 'static,
    {
        crate::coord::on_all(self, f)
    }
}
