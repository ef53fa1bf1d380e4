//! The checkpointed state of a CDC subtask, and which subtask owns which
//! chunk.
//!
//! The key space of every captured table is cut into chunks: chunk `k` of
//! a table whose first key column is an integer holds the keys `v` with
//! `floor(v / chunk_size) = k`; any other table is the single chunk 0.
//! Chunk `k` of table `t` belongs to subtask `(hash(t) + k) mod p`, for the
//! snapshot *and* for the binlog: each subtask snapshots its chunks and
//! then follows the binlog for their keys only, so every key has one reader.

use super::offset::{BinlogPosition, RowMark};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One table's snapshot progress on one subtask.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableProgress {
    /// The chunk indices the snapshot covers (`first..=last`, from the key's
    /// MIN and MAX when planned); `None`: the table is one chunk (0).
    /// Keys outside were inserted after the start position and come from
    /// the binlog.
    pub range: Option<(i64, i64)>,
    /// The next chunk index to look at.
    pub next: i64,
    /// The finished chunks this subtask owns and their high watermarks:
    /// a binlog change of such a chunk is emitted only if it is after it.
    pub done: BTreeMap<i64, RowMark>,
}

/// The state of one MySQL CDC subtask, saved in checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdcState {
    /// The subtask it belongs to.
    pub subtask: u32,
    /// The parallelism it was taken at (0: before the first open).
    pub parallelism: u32,
    /// Where binlog reading resumes: a transaction boundary. During the
    /// snapshot, the position taken before it was planned.
    pub resume: Option<BinlogPosition>,
    /// The last binlog change emitted; on resume, changes up to it are
    /// skipped.
    pub emitted: Option<RowMark>,
    /// Whether this subtask's snapshot is complete.
    pub snapshot_done: bool,
    /// Snapshot progress by `database.table`.
    pub tables: BTreeMap<String, TableProgress>,
}

/// FNV-1a of a table id: stable across processes and versions.
fn table_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The subtask that owns chunk `chunk` of table `id` at `parallelism`.
pub(crate) fn owner(id: &str, chunk: i64, parallelism: u32) -> u32 {
    let p = u64::from(parallelism.max(1));
    let k = chunk.rem_euclid(i64::from(parallelism.max(1))) as u64;
    ((table_hash(id) % p + k) % p) as u32
}

/// The chunk of an integer key value.
pub(crate) fn chunk_of(value: i128, chunk_size: u64) -> i64 {
    let k = value.div_euclid(i128::from(chunk_size.max(1)));
    i64::try_from(k).unwrap_or(if k < 0 { i64::MIN } else { i64::MAX })
}

/// The key values of chunk `k`: `lo <= v < hi` (`None`: unbounded).
pub(crate) fn chunk_bounds(k: i64, chunk_size: u64) -> (Option<i128>, Option<i128>) {
    let w = i128::from(chunk_size.max(1));
    let lo = (k != i64::MIN).then(|| i128::from(k) * w);
    let hi = (k != i64::MAX).then(|| (i128::from(k) + 1) * w);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn chunks_spread_over_subtasks_and_cover_each_key_once() {
        for p in 1..5 {
            let mut counts = vec![0; p as usize];
            for k in -20..20 {
                counts[owner("db.t", k, p) as usize] += 1;
            }
            assert!(counts.iter().all(|&c| c == 40 / p as usize || c == 40 / p as usize + 1), "{counts:?}");
        }
        assert_eq!(chunk_of(0, 10), 0);
        assert_eq!(chunk_of(9, 10), 0);
        assert_eq!(chunk_of(10, 10), 1);
        assert_eq!(chunk_of(-1, 10), -1);
        assert_eq!(chunk_bounds(-1, 10), (Some(-10), Some(0)));
        for v in [-11i128, -10, -1, 0, 5, 9, 10, 1_000_003] {
            let (lo, hi) = chunk_bounds(chunk_of(v, 10), 10);
            assert!(lo.unwrap() <= v && v < hi.unwrap(), "{v}");
        }
        assert_eq!(chunk_of(i128::from(u64::MAX), 1), i64::MAX);
        assert_eq!(chunk_bounds(i64::MAX, 1).1, None);
    }
}
