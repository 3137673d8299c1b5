//! Raft log stores behind openraft's [`RaftLogStorage`](openraft::storage::RaftLogStorage).
//!
//! - [`MemLogStore`] (`mem`): in memory, for `-dev` agents and tests.
//! - [`DiskLogStore`] (`disk`): segment files on glommio DMA I/O, for servers with a data
//!   directory. Its on-disk layout and recovery rules are documented in [`format`](mod@format).
//!
//! Both follow openraft's rules: no holes, writes applied in call order, an entry reported
//! flushed only once it is durable in the store's medium.

pub mod disk;
pub mod format;
pub mod mem;

use std::ops::{Bound, RangeBounds};

pub use self::disk::{
    DiskLogOptions, DiskLogReader, DiskLogStats, DiskLogStore, LogStoreError, PurgeCap,
};
pub use self::mem::MemLogStore;

/// Turns any `RangeBounds<u64>` into an inclusive `(first, last)`, or `None` when empty.
pub(crate) fn inclusive_range<RB: RangeBounds<u64>>(range: &RB) -> Option<(u64, u64)> {
    let first = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let last = match range.end_bound() {
        Bound::Included(&e) => e,
        Bound::Excluded(&e) => e.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (first <= last).then_some((first, last))
}

#[cfg(test)]
mod tests;
