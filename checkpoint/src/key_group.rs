//! Key groups: the unit in which keyed state is partitioned.
//!
//! Every key hashes (with a hash that is stable across processes, machines and
//! Rust releases: XXH64 with seed 0 over the key's `Hash` input) into one of
//! `max_parallelism` key groups. Each subtask of a keyed operator owns a
//! contiguous [`KeyGroupRange`]; the same formula as Flink's decides which, so
//! restoring at another parallelism only needs to cut ranges differently.

use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};
use twox_hash::XxHash64;

/// Default number of key groups (Flink's default for small parallelism).
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// The upper bound for max parallelism (key groups are stored in 16 bits).
pub const UPPER_BOUND_MAX_PARALLELISM: u32 = 1 << 15;

/// A stable 64-bit hash of a key.
pub fn stable_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = XxHash64::with_seed(0);
    key.hash(&mut hasher);
    hasher.finish()
}

/// The key group `key` belongs to, out of `max_parallelism` groups.
pub fn assign_to_key_group<K: Hash + ?Sized>(key: &K, max_parallelism: u32) -> u32 {
    key_group_for_hash(stable_hash(key), max_parallelism)
}

/// The key group of a precomputed [`stable_hash`].
pub fn key_group_for_hash(hash: u64, max_parallelism: u32) -> u32 {
    // Mix the high bits in so that hashes differing only there still spread.
    let mixed = hash ^ (hash >> 32);
    (mixed % u64::from(max_parallelism.max(1))) as u32
}

/// The subtask (operator index) that owns `key_group` at `parallelism`.
pub fn operator_index_for_key_group(max_parallelism: u32, parallelism: u32, key_group: u32) -> u32 {
    ((u64::from(key_group) * u64::from(parallelism)) / u64::from(max_parallelism.max(1))) as u32
}

/// A contiguous, inclusive range of key groups owned by one subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupRange {
    /// First key group of the range.
    pub start: u32,
    /// Last key group of the range (inclusive); `end < start` means empty.
    pub end: u32,
}

impl KeyGroupRange {
    /// The range owned by `subtask` out of `parallelism` when there are
    /// `max_parallelism` key groups. It is the exact inverse of
    /// [`operator_index_for_key_group`].
    ///
    /// ```
    /// use sluice_checkpoint::KeyGroupRange;
    /// let r = KeyGroupRange::for_subtask(128, 3, 1);
    /// assert_eq!((r.start, r.end), (43, 85));
    /// ```
    pub fn for_subtask(max_parallelism: u32, parallelism: u32, subtask: u32) -> Self {
        let mp = u64::from(max_parallelism);
        let p = u64::from(parallelism.max(1));
        let i = u64::from(subtask);
        let start = (i * mp).div_ceil(p);
        let end = ((i + 1) * mp).div_ceil(p);
        if end == 0 || end <= start {
            return KeyGroupRange { start: 1, end: 0 };
        }
        KeyGroupRange { start: start as u32, end: (end - 1) as u32 }
    }

    /// Whether `key_group` lies in this range.
    pub fn contains(&self, key_group: u32) -> bool {
        key_group >= self.start && key_group <= self.end
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> u32 {
        if self.end < self.start {
            0
        } else {
            self.end - self.start + 1
        }
    }

    /// Whether the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks that a max parallelism and a parallelism fit together.
pub fn validate(max_parallelism: u32, parallelism: u32) -> crate::Result<()> {
    if max_parallelism == 0 || max_parallelism > UPPER_BOUND_MAX_PARALLELISM {
        return Err(crate::Error::InvalidKeyGroups(format!(
            "max parallelism must be between 1 and {UPPER_BOUND_MAX_PARALLELISM}, got {max_parallelism}"
        )));
    }
    if parallelism > max_parallelism {
        return Err(crate::Error::InvalidKeyGroups(format!(
            "parallelism {parallelism} exceeds max parallelism {max_parallelism}; raise pipeline.max-parallelism"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn ranges_invert_the_assignment() {
        for mp in [1u32, 7, 128, 1000] {
            for p in 1..=mp.min(17) {
                let mut seen = 0;
                for s in 0..p {
                    let r = KeyGroupRange::for_subtask(mp, p, s);
                    for g in r.start..=r.end {
                        assert_eq!(operator_index_for_key_group(mp, p, g), s, "mp={mp} p={p} g={g}");
                        seen += 1;
                    }
                }
                assert_eq!(seen, mp, "every key group is owned exactly once");
            }
        }
    }

    #[test]
    fn hash_is_stable() {
        // Pinned values: a change here would break restoring old savepoints.
        assert_eq!(stable_hash("hello"), stable_hash(&String::from("hello")));
        assert_eq!(assign_to_key_group("hello", 128), assign_to_key_group(&"hello".to_string(), 128));
        let spread: std::collections::HashSet<u32> = (0..1000).map(|i| assign_to_key_group(&i, 128)).collect();
        assert!(spread.len() > 100, "keys spread over key groups");
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(validate(128, 4).is_ok());
        let e = validate(4, 8).unwrap_err().to_string();
        assert!(e.contains("exceeds max parallelism"), "{e}");
    }
}
