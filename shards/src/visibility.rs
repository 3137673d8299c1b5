//! The visibility rule for state spread over shards: a read observes each raft index on all the
//! shards it reads or on none.
//!
//! A write that touches several shards (a transaction over keys on several shards,
//! `DELETE ?recurse`, a session create or destroy, a registration that invalidates sessions) is
//! one *fenced step* of the apply loop: it reaches each shard in its own cross-core call, so a
//! reader that also calls each shard could see some shards after the step and some before it.
//! Two mechanisms keep that from being seen:
//!
//! * **Optimistic reads, validated by an epoch.** [`WriteEpoch`] is a sequence counter that only
//!   the apply loop writes: odd while a fenced step is being applied, bumped again (even) when
//!   every shard has applied it. A multi-shard read takes a stamp (an even value) before its
//!   first call and checks after its last reply that the counter has not moved. If a fenced
//!   step had reached a shard the read saw, that step's odd bump happened before the read's
//!   reply (the bump precedes the call that applied it), so the counter moved; if the step had
//!   finished on every shard before the stamp was taken, the read sees all of it. A moved
//!   counter means the read may be torn and is thrown away. Single-shard writes do not touch
//!   the counter: whatever order a read meets them in, each is seen whole.
//! * **A fenced read when the stamp fails.** Optimism alone could starve under a stream of
//!   fenced steps, so a read whose stamp failed (or that found a step in progress) runs on the
//!   apply loop's core under a shared lock that fenced steps take exclusively
//!   ([`crate::coord::Backend::fenced_read`]): it cannot overlap a step, and it waits at most
//!   for the step in progress.
//!
//! Blocking queries read through the same path, so the index a query returns (and waits on
//! next) is the index of a whole state. Snapshots and DNS view refreshes are taken by the apply
//! loop itself between two entries, where every shard is at the same point.
use std::sync::atomic::{AtomicU64, Ordering};

/// The sequence counter of fenced steps (see the module docs). Shared by every core, written
/// by the apply loop only.
#[derive(Debug, Default)]
pub struct WriteEpoch(AtomicU64);

impl WriteEpoch {
    pub fn new() -> WriteEpoch {
        WriteEpoch::default()
    }

    /// A fenced step starts: readers that stamped before it will fail their check.
    pub fn begin_write(&self) {
        let was = self.0.fetch_add(1, Ordering::AcqRel);
        debug_assert!(was.is_multiple_of(2), "fenced steps do not nest");
    }

    /// The fenced step has been applied on every shard it touches.
    pub fn end_write(&self) {
        let was = self.0.fetch_add(1, Ordering::AcqRel);
        debug_assert!(!was.is_multiple_of(2), "end_write without begin_write");
    }

    /// A stamp for an optimistic read, or `None` while a fenced step is in progress.
    pub fn stamp(&self) -> Option<u64> {
        let v = self.0.load(Ordering::Acquire);
        v.is_multiple_of(2).then_some(v)
    }

    /// Whether no fenced step started or ended since `stamp` was taken.
    pub fn still(&self, stamp: u64) -> bool {
        self.0.load(Ordering::Acquire) == stamp
    }

    /// Fenced steps completed so far (for metrics and tests).
    pub fn steps(&self) -> u64 {
        self.0.load(Ordering::Acquire) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_only_a_quiet_epoch() {
        let e = WriteEpoch::new();
        let s = e.stamp().expect("no step in progress");
        assert!(e.still(s));
        e.begin_write();
        assert_eq!(e.stamp(), None, "no stamp while a step is applied");
        assert!(!e.still(s));
        e.end_write();
        assert!(!e.still(s), "a whole step in between still fails the stamp");
        let s2 = e.stamp().expect("quiet again");
        assert!(e.still(s2));
        assert_eq!(e.steps(), 1);
    }
}
