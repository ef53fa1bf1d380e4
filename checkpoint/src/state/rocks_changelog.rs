//! The changelog of a RocksDB instance: checkpoints that flush no memtable.
//!
//! A RocksDB checkpoint taken the native way flushes the memtables at every
//! barrier. With a short interval that makes many small SST files and the
//! compactions that merge them, which is most of what checkpointing costs a
//! RocksDB job. Flink's changelog state backend (FLIP-158) avoids it, and so
//! does this module:
//!
//! * every write the instance applies (a write-back batch of the cache) is
//!   also appended to an in-memory log, in the format of
//!   [`change_file`](crate::state::change_file) (one complete section per
//!   batch);
//! * at a barrier the log is cut: the part since the previous barrier is a
//!   *segment*, kept in memory until a confirmed checkpoint has stored it;
//! * a checkpoint is either a *materialization* (the native RocksDB
//!   checkpoint, [`rocks`](crate::state::rocks)), or the last *confirmed*
//!   materialization plus the segments written after its barrier. The
//!   second kind uploads only the segments that no confirmed checkpoint
//!   stored yet, so it costs about what was written in one interval;
//! * a checkpoint materializes when there is no confirmed materialization,
//!   when the log has a gap, when the log since the last materialization
//!   has grown past `materialize_after_bytes`, or when
//!   `materialize_interval` has passed. A savepoint of the log kind copies
//!   the materialization and every segment into its own directory.
//!
//! A restore loads the materialization and replays the segments in order.
//! Logging starts at the first barrier, so a job without checkpoints pays
//! nothing for it.

use crate::barrier::CheckpointKind;
use crate::error::{Error, Result};
use crate::state::change_file::{ChangeWriter, SectionKind};
use crate::state::format::{RocksHandle, StoredFile, UploadTarget};
use crate::state::ChangelogConfig;
use crate::storage::write_atomically;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A part of the log between two barriers.
#[derive(Debug, Clone)]
struct Segment {
    /// The checkpoint whose barrier closed it.
    checkpoint: u64,
    /// Its change file, or `None` if some of its writes were not logged
    /// (the log outgrew its limit).
    bytes: Option<Arc<Vec<u8>>>,
}

/// A stored segment: (checkpoint that closed it, name in `shared/`).
pub(crate) type StoredSegment = (u64, String);

/// A confirmed materialization and the stored segments after it.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    /// The materialized checkpoint.
    checkpoint: u64,
    /// Its files, all in `shared/`.
    files: Vec<(String, StoredFile)>,
    /// Segments after it that confirmed checkpoints stored, oldest first.
    logs: Vec<StoredSegment>,
}

/// How a checkpoint is taken, decided at its barrier.
pub(crate) enum Plan {
    /// The native RocksDB checkpoint.
    Materialize,
    /// The base and the log after it.
    Log(LogPlan),
}

/// What the upload of a log checkpoint needs.
pub(crate) struct LogPlan {
    base: Base,
    /// Segments after the base that no confirmed checkpoint stored.
    segments: Vec<Segment>,
}

/// How a checkpoint that may be confirmed was taken.
#[derive(Debug, Clone)]
pub(crate) enum Taken {
    /// Materialized, with these files (all in `shared/` when the log is on).
    Materialized(Vec<(String, StoredFile)>),
    /// From the base `base` and these segments.
    Logged { base: u64, logs: Vec<StoredSegment> },
}

/// The log of one RocksDB instance.
#[derive(Debug)]
pub(crate) struct RocksChangelog {
    config: ChangelogConfig,
    /// Writes since the last barrier (`None`: not logging, before the first
    /// barrier or after the log outgrew its limit).
    current: Option<ChangeWriter>,
    /// Whether writes since the last barrier went unlogged.
    gap: bool,
    /// Closed segments no confirmed checkpoint stored yet, oldest first.
    unconfirmed: Vec<Segment>,
    /// The latest confirmed materialization.
    base: Option<Base>,
    /// Bytes logged since the barrier of the last planned materialization.
    since_materialize: u64,
    /// When the last materialization was planned.
    materialized_at: Option<Instant>,
    /// Size of the last segment (the next one's buffer is sized after it,
    /// so that it rarely grows by copying).
    last_segment: usize,
}

impl RocksChangelog {
    /// A log with these settings; it starts at the first barrier.
    pub(crate) fn new(config: &ChangelogConfig) -> Self {
        RocksChangelog {
            config: config.clone(),
            current: None,
            gap: false,
            unconfirmed: Vec::new(),
            base: None,
            since_materialize: 0,
            materialized_at: None,
            last_segment: 0,
        }
    }

    /// Whether checkpoints may be taken from the log.
    pub(crate) fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Appends a write batch of state `cf` (if logging).
    pub(crate) fn record(&mut self, cf: &str, entries: &[(Vec<u8>, Option<Vec<u8>>)]) {
        let Some(writer) = &mut self.current else { return };
        writer.section(cf, SectionKind::Complete);
        for (k, v) in entries {
            writer.entry_encoded(0, k, v.as_deref());
        }
        if self.since_materialize + writer.encoded_bytes() as u64 > self.config.materialize_after_bytes {
            // Too much to keep: stop until the next barrier, which then
            // materializes.
            self.current = None;
            self.gap = true;
        }
    }

    /// Cuts the log at the barrier of `checkpoint` and decides how that
    /// checkpoint is taken.
    pub(crate) fn barrier(&mut self, checkpoint: u64) -> Plan {
        if !self.config.enabled {
            return Plan::Materialize;
        }
        let logging = self.current.is_some() || self.gap;
        match (self.current.take(), self.gap) {
            // Nothing written since the last barrier: no segment.
            (Some(writer), false) if writer.entries() == 0 => {}
            (Some(writer), false) => {
                let (bytes, _) = writer.finish();
                self.last_segment = bytes.len();
                self.since_materialize += bytes.len() as u64;
                self.unconfirmed.push(Segment { checkpoint, bytes: Some(Arc::new(bytes)) });
            }
            (_, true) => self.unconfirmed.push(Segment { checkpoint, bytes: None }),
            (None, false) => {}
        }
        self.gap = false;
        self.current =
            Some(ChangeWriter::new(Vec::with_capacity((self.last_segment + self.last_segment / 8).min(64 << 20))));
        let due = self.materialized_at.is_none_or(|t| t.elapsed() >= self.config.materialize_interval)
            || self.since_materialize > self.config.materialize_after_bytes;
        let complete = self.unconfirmed.iter().all(|s| s.bytes.is_some());
        match &self.base {
            Some(base) if logging && complete && !due => {
                Plan::Log(LogPlan { base: base.clone(), segments: self.unconfirmed.clone() })
            }
            _ => {
                self.since_materialize = 0;
                self.materialized_at = Some(Instant::now());
                Plan::Materialize
            }
        }
    }

    /// Checkpoint `checkpoint`, taken as `taken`, is confirmed.
    pub(crate) fn confirm(&mut self, checkpoint: u64, taken: Taken) {
        match taken {
            Taken::Materialized(files) => {
                if self.base.as_ref().is_none_or(|b| b.checkpoint < checkpoint) {
                    self.base = Some(Base { checkpoint, files, logs: Vec::new() });
                }
            }
            Taken::Logged { base, logs } => {
                if let Some(current) = self.base.as_mut().filter(|b| b.checkpoint >= base) {
                    // Segments up to a newer base are in that base already.
                    let newer: Vec<StoredSegment> = logs.into_iter().filter(|(n, _)| *n > current.checkpoint).collect();
                    current.logs = newer;
                }
            }
        }
        self.unconfirmed.retain(|s| s.checkpoint > checkpoint);
    }
}

/// Uploads a log checkpoint; returns the base handle, the logs to replay,
/// the shared files referenced, and (for a checkpoint) the stored segments.
pub(crate) fn upload(
    plan: LogPlan,
    instance: &str,
    checkpoint: u64,
    target: &UploadTarget,
) -> Result<(RocksHandle, Vec<StoredFile>, Vec<String>, Taken)> {
    let LogPlan { base, segments } = plan;
    let fresh = segments.into_iter().filter_map(|s| s.bytes.map(|b| (s.checkpoint, b)));
    if target.kind == CheckpointKind::Savepoint {
        return savepoint(base, fresh, instance, target);
    }
    let mut logs = base.logs.clone();
    for (closed_by, bytes) in fresh {
        let name = format!("{}-{instance}-log{closed_by}-c{checkpoint}", target.file_prefix);
        write_atomically(&target.shared_dir.join(&name), &bytes)?;
        logs.push((closed_by, name));
    }
    let handle = RocksHandle { instance: instance.to_string(), files: base.files };
    let mut shared: Vec<String> =
        handle.shared_files().map(str::to_string).chain(logs.iter().map(|(_, name)| name.clone())).collect();
    shared.sort();
    let stored = logs.iter().map(|(_, name)| StoredFile::Shared(name.clone())).collect();
    Ok((handle, stored, shared, Taken::Logged { base: base.checkpoint, logs }))
}

/// A savepoint of the log kind: the base's files and every segment copied
/// into the savepoint's own directory.
fn savepoint(
    base: Base,
    fresh: impl Iterator<Item = (u64, Arc<Vec<u8>>)>,
    instance: &str,
    target: &UploadTarget,
) -> Result<(RocksHandle, Vec<StoredFile>, Vec<String>, Taken)> {
    let shared_file = |f: &StoredFile| -> Result<PathBuf> {
        match f {
            StoredFile::Shared(name) => Ok(target.shared_dir.join(name)),
            StoredFile::Private(name) => Err(Error::State {
                state: String::new(),
                message: format!("RocksDB materialization file '{name}' is not in the shared directory"),
            }),
        }
    };
    let mut files = Vec::with_capacity(base.files.len());
    for (local, stored) in &base.files {
        let name = format!("{}.rocks.{local}", target.file_prefix);
        let from = present(&shared_file(stored)?)?;
        let stored = crate::state::rocks_files::store_checked(&from, &target.checkpoint_dir, &name)?;
        files.push((local.clone(), StoredFile::Private(stored)));
    }
    let mut logs = Vec::new();
    for (closed_by, name) in &base.logs {
        let own = format!("{}.log{closed_by}", target.file_prefix);
        let from = present(&target.shared_dir.join(name))?;
        crate::state::rocks_files::link_or_copy(&from, &target.checkpoint_dir.join(&own))?;
        logs.push(StoredFile::Private(own));
    }
    for (closed_by, bytes) in fresh {
        let own = format!("{}.log{closed_by}", target.file_prefix);
        write_atomically(&target.checkpoint_dir.join(&own), &bytes)?;
        logs.push(StoredFile::Private(own));
    }
    let handle = RocksHandle { instance: instance.to_string(), files };
    Ok((handle, logs, Vec::new(), Taken::Logged { base: base.checkpoint, logs: Vec::new() }))
}

/// `from`, if it is a file (a file of the materialization a savepoint
/// copies).
fn present(from: &Path) -> Result<PathBuf> {
    if !from.is_file() {
        return Err(Error::MissingState {
            checkpoint: 0,
            path: from.to_path_buf(),
            reason: "a file of the RocksDB materialization is missing; the savepoint cannot be taken".into(),
        });
    }
    Ok(from.to_path_buf())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::time::Duration;

    fn log(config: ChangelogConfig) -> RocksChangelog {
        RocksChangelog::new(&config)
    }

    fn put(l: &mut RocksChangelog, key: u8) {
        l.record("s", &[(vec![0, 0, key], Some(vec![key]))]);
    }

    fn base_files() -> Vec<(String, StoredFile)> {
        vec![("000009.sst".into(), StoredFile::Shared("x-000009.sst".into()))]
    }

    fn segments(plan: &Plan) -> Vec<u64> {
        match plan {
            Plan::Materialize => panic!("materializes"),
            Plan::Log(p) => p.segments.iter().map(|s| s.checkpoint).collect(),
        }
    }

    #[test]
    fn materializes_first_then_logs_segments_until_confirmed() {
        let mut l = log(ChangelogConfig::default());
        put(&mut l, 1);
        assert!(matches!(l.barrier(1), Plan::Materialize), "nothing to build on yet");
        put(&mut l, 2);
        // Checkpoint 1 not confirmed yet: checkpoint 2 materializes too.
        assert!(matches!(l.barrier(2), Plan::Materialize));
        l.confirm(2, Taken::Materialized(base_files()));
        put(&mut l, 3);
        assert_eq!(segments(&l.barrier(3)), vec![3]);
        // 3 aborted: checkpoint 4 carries segments 3 and 4.
        put(&mut l, 4);
        assert_eq!(segments(&l.barrier(4)), vec![3, 4]);
        l.confirm(4, Taken::Logged { base: 2, logs: vec![(3, "a".into()), (4, "b".into())] });
        put(&mut l, 5);
        let Plan::Log(plan) = l.barrier(5) else { panic!("logs") };
        assert_eq!(plan.base.logs.len(), 2);
        assert_eq!(plan.segments.len(), 1);
    }

    #[test]
    fn a_gap_or_the_size_limit_forces_a_materialization() {
        let mut l = log(ChangelogConfig { materialize_after_bytes: 64, ..ChangelogConfig::default() });
        assert!(matches!(l.barrier(1), Plan::Materialize));
        l.confirm(1, Taken::Materialized(base_files()));
        for k in 0..40 {
            put(&mut l, k);
        }
        assert!(l.current.is_none() && l.gap, "logging stops past the limit");
        assert!(matches!(l.barrier(2), Plan::Materialize));
        // Segment 2 has a gap: until a newer materialization is confirmed,
        // every checkpoint materializes.
        put(&mut l, 1);
        assert!(matches!(l.barrier(3), Plan::Materialize));
        l.confirm(3, Taken::Materialized(base_files()));
        put(&mut l, 1);
        assert_eq!(segments(&l.barrier(4)), vec![4]);
    }

    #[test]
    fn the_interval_forces_a_materialization_and_off_means_always() {
        let mut l = log(ChangelogConfig { materialize_interval: Duration::ZERO, ..ChangelogConfig::default() });
        assert!(matches!(l.barrier(1), Plan::Materialize));
        l.confirm(1, Taken::Materialized(base_files()));
        assert!(matches!(l.barrier(2), Plan::Materialize));
        let mut off = log(ChangelogConfig { enabled: false, ..ChangelogConfig::default() });
        assert!(matches!(off.barrier(1), Plan::Materialize));
        off.confirm(1, Taken::Materialized(base_files()));
        put(&mut off, 1);
        assert!(off.current.is_none(), "nothing is logged when the changelog is off");
        assert!(matches!(off.barrier(2), Plan::Materialize));
    }

    #[test]
    fn a_confirmed_newer_base_drops_the_segments_it_holds() {
        let mut l = log(ChangelogConfig::default());
        assert!(matches!(l.barrier(1), Plan::Materialize));
        l.confirm(1, Taken::Materialized(base_files()));
        put(&mut l, 1);
        assert_eq!(segments(&l.barrier(2)), vec![2]);
        l.confirm(5, Taken::Materialized(base_files()));
        // A late confirmation of a log checkpoint on the older base keeps
        // only segments after the newer one.
        l.confirm(6, Taken::Logged { base: 1, logs: vec![(2, "a".into()), (6, "b".into())] });
        assert_eq!(l.base.as_ref().unwrap().logs, vec![(6, "b".to_string())]);
    }
}
