//! The one slot function of kvfleet: `crc32_ieee(hashkey) % 1024`.
//!
//! `hashkey` follows Redis Cluster's hash-tag rule: the bytes between the first
//! `{` and the next `}` when that part is non-empty, else the whole key. Codis
//! hashes an empty `{}` as the empty string; we deliberately do not, so keys
//! written for Redis Cluster keep their co-location.

/// Number of slots a cluster's keyspace is divided into.
pub const NUM_SLOTS: usize = 1024;

/// The part of `key` that is hashed (the hash tag, or the whole key).
#[inline]
pub fn hash_key(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The slot that owns `key`.
#[inline]
pub fn slot(key: &[u8]) -> u16 {
    (crc32fast::hash(hash_key(key)) % NUM_SLOTS as u32) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Produced by Python's `zlib.crc32(hashkey) % 1024`, an independent CRC-32.
    const VECTORS: &[(&[u8], u16)] = &[
        (b"", 0),
        (b"foo", 289),
        (b"bar", 170),
        (b"hello world", 389),
        (b"user:1000", 995),
        (b"{user1000}.following", 870),
        (b"{user1000}.followers", 870),
        (b"foo{}{bar}", 857),
        (b"foo{{bar}}zap", 313),
        (b"foo{bar}{zap}", 170),
        (b"{}", 835),
        (b"{", 825),
        (b"}", 524),
        (b"a{b", 76),
        (b"a}b{c}d", 879),
        (b"\x00\x01\x02\xff", 36),
        (b"{\xff\xfe}x", 150),
        (b"key:000000012345", 634),
        (b"\xe2\x98\x83", 852),
    ];

    #[test]
    fn slot_matches_independent_crc32_vectors() {
        for (key, want) in VECTORS {
            assert_eq!(slot(key), *want, "key {key:?}");
        }
    }

    #[test]
    fn hash_tags_colocate_and_empty_tag_hashes_whole_key() {
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(hash_key(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_key(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_key(b"foo{bar}{zap}"), b"bar");
    }
}
