//! The checkpointed state of a CDC subtask, and which subtask owns which
//! chunk.
//!
//! The key space of every captured table is cut into chunks: chunk `k` of
//! a table whose first key column is an integer holds the keys `v` with
//! `floor(v / chunk_size) = k`; any other table is the single chunk 0.
//! Chunk `k` of table `t` belongs to subtask `(hash(t) + k) mod p`, for the
//! snapshot *and* for the binlog: each subtask snapshots its chunks and
//! then follows the binlog for their keys only, so every key has one reader.

use super::error::CdcError;
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
    /// What the subtasks of earlier parallelisms emitted (see [`Handover`]).
    #[serde(default)]
    pub handovers: Vec<Handover>,
}

/// After a restore at another parallelism: the last change each old
/// subtask emitted. A change of a key whose chunk the old subtask owned is
/// emitted only if it is after that mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The old parallelism.
    pub parallelism: u32,
    /// The last change each old subtask emitted, by old subtask index.
    pub emitted: Vec<Option<RowMark>>,
}

/// The state of subtask `subtask` of `parallelism` from the saved states
/// of every old subtask: its own at the same parallelism; otherwise, once
/// every old subtask finished its snapshot, a merge: the finished chunks it
/// now owns, the binlog from the earliest resume position, and a
/// [`Handover`] with the old subtasks' last emitted changes.
pub(crate) fn merge(saved: Vec<CdcState>, subtask: u32, parallelism: u32) -> Result<CdcState, CdcError> {
    let old_p = saved.first().map_or(parallelism, |s| s.parallelism);
    if old_p == parallelism {
        return saved.into_iter().find(|s| s.subtask == subtask).ok_or_else(|| CdcError::BadState {
            message: format!("the checkpoint has no state of subtask {} of {parallelism}", subtask + 1),
        });
    }
    let complete = saved.len() == old_p as usize
        && saved.iter().all(|s| s.parallelism == old_p && s.resume.is_some())
        && (0..old_p).all(|i| saved.iter().any(|s| s.subtask == i));
    if !complete {
        return Err(CdcError::BadState {
            message: format!(
                "the checkpoint holds {} state(s) of parallelism {old_p}, not one per subtask: restore at                  parallelism {old_p} or start without the checkpoint",
                saved.len()
            ),
        });
    }
    if !saved.iter().all(|s| s.snapshot_done) {
        return Err(CdcError::BadState {
            message: format!(
                "the checkpoint was taken at parallelism {old_p} during the snapshot; the MySQL CDC source                  cannot change its parallelism (to {parallelism}) before every subtask finished its snapshot:                  restore at parallelism {old_p}, and rescale at a later checkpoint"
            ),
        });
    }
    let mut merged = CdcState { subtask, parallelism, snapshot_done: true, ..CdcState::default() };
    let mut emitted = vec![None; old_p as usize];
    for s in saved {
        if let Some(slot) = emitted.get_mut(s.subtask as usize) {
            *slot = s.emitted.clone();
        }
        merged.resume = match (merged.resume.take(), s.resume) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (id, progress) in s.tables {
            let entry = merged.tables.entry(id.clone()).or_insert_with(|| TableProgress {
                range: progress.range,
                next: i64::MAX,
                done: BTreeMap::new(),
            });
            for (k, high) in progress.done {
                if owner(&id, k, parallelism) == subtask {
                    entry.done.insert(k, high);
                }
            }
        }
        for h in s.handovers {
            if !merged.handovers.contains(&h) {
                merged.handovers.push(h);
            }
        }
    }
    merged.handovers.push(Handover { parallelism: old_p, emitted });
    Ok(merged)
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

    fn mark(pos: u64) -> RowMark {
        BinlogPosition::new("bin.000001", pos).mark()
    }

    #[test]
    fn merges_states_of_another_parallelism_once_the_snapshot_is_done() {
        let state = |subtask: u32, done: bool, resume: u64, emitted: u64| CdcState {
            subtask,
            parallelism: 2,
            resume: Some(BinlogPosition::new("bin.000001", resume)),
            emitted: Some(mark(emitted)),
            snapshot_done: done,
            tables: BTreeMap::from([(
                "db.t".to_string(),
                TableProgress {
                    range: Some((0, 9)),
                    next: 10,
                    done: (0..10).filter(|&k| owner("db.t", k, 2) == subtask).map(|k| (k, mark(k as u64))).collect(),
                },
            )]),
            handovers: Vec::new(),
        };
        // Same parallelism: its own state.
        let same = merge(vec![state(0, false, 100, 90), state(1, false, 200, 190)], 1, 2).unwrap();
        assert_eq!(same, state(1, false, 200, 190));
        // Another parallelism during the snapshot, or with a state missing: refused.
        let e = merge(vec![state(0, false, 100, 90), state(1, true, 200, 190)], 0, 3).unwrap_err();
        assert!(e.to_string().contains("before every subtask finished its snapshot"), "{e}");
        assert!(merge(vec![state(0, true, 100, 90)], 0, 3).is_err());
        // After it: the chunks each new subtask owns, the earliest resume, a handover.
        let merged: Vec<_> =
            (0..3).map(|i| merge(vec![state(0, true, 100, 90), state(1, true, 200, 190)], i, 3).unwrap()).collect();
        let mut all: Vec<i64> = merged.iter().flat_map(|m| m.tables["db.t"].done.keys().copied()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        for (i, m) in merged.iter().enumerate() {
            assert!(m.tables["db.t"].done.keys().all(|&k| owner("db.t", k, 3) == i as u32));
            assert_eq!(m.resume.as_ref().unwrap().pos, 100);
            assert_eq!(m.handovers, [Handover { parallelism: 2, emitted: vec![Some(mark(90)), Some(mark(190))] }]);
            assert!(m.snapshot_done && m.emitted.is_none());
        }
        // The state survives the engine's checkpoint encoding (postcard).
        let bytes = postcard::to_stdvec(&merged[1]).unwrap();
        assert_eq!(postcard::from_bytes::<CdcState>(&bytes).unwrap(), merged[1]);
        // A second rescale keeps the first handover.
        let again: Vec<_> = merged.iter().map(|m| CdcState { emitted: Some(mark(300)), ..m.clone() }).collect();
        let twice = merge(again, 0, 2).unwrap();
        assert_eq!(twice.handovers.len(), 2);
        assert_eq!(twice.handovers[1].emitted, vec![Some(mark(300)); 3]);
    }

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
