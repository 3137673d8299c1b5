//! The one function that decides which shard owns a key.

/// FNV-1a: stable across processes and releases, so a key always lands on the same shard index.
pub fn shard_for(key: &[u8], nshards: usize) -> usize {
    debug_assert!(nshards > 0);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % nshards as u64) as usize
}
