//! The one function that decides which shard owns a key.

/// The shard that owns `key`.
pub fn shard_for(key: &[u8], nshards: usize) -> usize {
    debug_assert!(nshards > 0);
    (fnv1a(key) % nshards as u64) as usize
}

/// 64-bit FNV-1a: stable across processes and releases, so a key always lands on the same
/// shard index (and a content hash stays the same for the same bytes).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
