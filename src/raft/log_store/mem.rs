//! In-memory raft log for `-dev` agents and tests.
//!
//! Implements openraft's log contract: entries are contiguous (no holes), every write is done
//! before the call returns, so the "persisted" callback of `append` fires right away. The
//! durable log ([`super::DiskLogStore`]) implements the same [`RaftLogStorage`] trait.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::rc::Rc;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use super::inclusive_range;
use crate::raft::types::{Entry, LogId, TypeConfig, Vote};

#[derive(Default)]
struct LogInner {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

/// In-memory log store; clones share one log (the clone is also the log reader).
#[derive(Clone, Default)]
pub struct MemLogStore {
    inner: Rc<RefCell<LogInner>>,
}

impl MemLogStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries currently held (after purges), for tests and metrics.
    pub fn len(&self) -> usize {
        self.inner.borrow().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.borrow().entries.is_empty()
    }
}

impl RaftLogReader<TypeConfig> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let Some((first, last)) = inclusive_range(&range) else {
            return Ok(Vec::new());
        };
        let inner = self.inner.borrow();
        Ok(inner
            .entries
            .range(first..=last)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.inner.borrow().vote)
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = MemLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let inner = self.inner.borrow();
        let last_purged_log_id = inner.last_purged;
        let last_log_id = inner
            .entries
            .last_key_value()
            .map(|(_, e)| e.log_id())
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> MemLogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.inner.borrow_mut().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.inner.borrow_mut().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.inner.borrow().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut inner = self.inner.borrow_mut();
            for entry in entries {
                let index = entry.index();
                // openraft truncates conflicting suffixes before appending, so a gap means a bug
                // in the caller and would silently corrupt the log.
                if let Some((&last, _)) = inner.entries.last_key_value() {
                    if index != last + 1 {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("append of log index {index} after {last} would leave a hole"),
                        ));
                    }
                }
                inner.entries.insert(index, entry);
            }
        }
        // Memory is this store's durable medium: the entries are "persisted" now.
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let mut inner = self.inner.borrow_mut();
        match last_log_id {
            Some(id) => {
                let _removed = inner.entries.split_off(&(id.index() + 1));
            }
            None => inner.entries.clear(),
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut inner = self.inner.borrow_mut();
        if inner.last_purged.is_some_and(|p| p >= log_id) {
            return Ok(());
        }
        let kept = inner.entries.split_off(&(log_id.index() + 1));
        inner.entries = kept;
        inner.last_purged = Some(log_id);
        Ok(())
    }
}
