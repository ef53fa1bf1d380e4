//! The recent checkpoints of a job with each subtask's part (Flink's
//! checkpoint statistics: counts, history, latest completed / failed /
//! restored, per-subtask details).

use super::CHECKPOINT_HISTORY;
use crate::runtime::SubtaskCheckpointMetrics;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Where a checkpoint is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointRecordStatus {
    /// Triggered, not yet acknowledged by every subtask.
    InProgress,
    /// Complete.
    Completed,
    /// Aborted.
    Failed,
}

/// One subtask's acknowledgement of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointAck {
    /// The vertex.
    pub vertex: u32,
    /// The subtask.
    pub subtask: u32,
    /// When the job master got it, ms since the epoch.
    pub ack_time: i64,
    /// Bytes of state it stored.
    pub state_size: u64,
    /// What its part cost.
    pub metrics: SubtaskCheckpointMetrics,
}

/// One checkpoint or savepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Its id.
    pub id: u64,
    /// A savepoint rather than a checkpoint.
    pub savepoint: bool,
    /// Where it is.
    pub status: CheckpointRecordStatus,
    /// When it was triggered, ms since the epoch.
    pub trigger_time: i64,
    /// When it completed or failed, ms since the epoch.
    pub end_time: Option<i64>,
    /// Subtasks that must acknowledge it.
    pub expected: u32,
    /// Bytes of state stored so far (all of it once complete).
    pub state_size: u64,
    /// Why it failed.
    pub failure: Option<String>,
    /// Where it was written, once complete.
    pub external_path: Option<String>,
    /// The acknowledgements so far.
    pub acks: Vec<CheckpointAck>,
}

impl CheckpointRecord {
    /// From trigger to the last acknowledgement (or to its end), ms.
    pub fn end_to_end_ms(&self) -> u64 {
        let last = self.end_time.or_else(|| self.acks.iter().map(|a| a.ack_time).max()).unwrap_or(self.trigger_time);
        last.saturating_sub(self.trigger_time).max(0) as u64
    }

    /// The longest alignment among its subtasks, ms.
    pub fn alignment_ms(&self) -> u64 {
        self.acks.iter().map(|a| a.metrics.alignment_ms).max().unwrap_or(0)
    }
}

/// The checkpoint a job attempt restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredCheckpoint {
    /// Its id.
    pub id: u64,
    /// A savepoint rather than a checkpoint.
    pub savepoint: bool,
    /// When the restore began, ms since the epoch.
    pub restore_time: i64,
    /// Its directory.
    pub external_path: String,
}

/// The job's checkpointing settings, as the UI shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSettings {
    /// `exactly_once` or `at_least_once`.
    pub mode: String,
    /// Between two triggers, ms.
    pub interval_ms: u64,
    /// After this long a checkpoint is aborted, ms.
    pub timeout_ms: u64,
    /// Least pause between a checkpoint's end and the next trigger, ms.
    pub min_pause_ms: u64,
    /// Checkpoints in flight at once.
    pub max_concurrent: u32,
    /// Consecutive failures the job survives.
    pub tolerable_failures: u32,
    /// Where checkpoints are stored.
    pub storage: String,
    /// Completed checkpoints kept.
    pub retained: u32,
}

impl CheckpointSettings {
    /// The settings of `graph`; `None` when it does not checkpoint.
    pub(crate) fn of(graph: &crate::graph::JobGraph) -> Option<Self> {
        let s = &graph.settings;
        s.checkpointing.as_ref().map(|c| CheckpointSettings {
            mode: match c.mode {
                sluice_checkpoint::CheckpointingMode::ExactlyOnce => "exactly_once".into(),
                sluice_checkpoint::CheckpointingMode::AtLeastOnce => "at_least_once".into(),
            },
            interval_ms: c.interval.as_millis() as u64,
            timeout_ms: c.timeout.as_millis() as u64,
            min_pause_ms: c.min_pause.as_millis() as u64,
            max_concurrent: c.max_concurrent as u32,
            tolerable_failures: c.tolerable_failures,
            storage: s.checkpoint_root.display().to_string(),
            retained: s.retained as u32,
        })
    }
}

/// Counts, the recent history (newest first) and the latest of each kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointHistory {
    /// Checkpoints in progress.
    pub in_progress: u64,
    /// Completed checkpoints (and savepoints).
    pub completed: u64,
    /// Failed checkpoints.
    pub failed: u64,
    /// Restores from a checkpoint or savepoint.
    pub restored: u64,
    /// The last [`CHECKPOINT_HISTORY`] checkpoints, newest first.
    pub history: Vec<CheckpointRecord>,
    /// The latest completed checkpoint.
    pub latest_completed: Option<CheckpointRecord>,
    /// The latest completed savepoint.
    pub latest_savepoint: Option<CheckpointRecord>,
    /// The latest failed checkpoint.
    pub latest_failed: Option<CheckpointRecord>,
    /// The latest restore.
    pub latest_restored: Option<RestoredCheckpoint>,
    /// The settings; `None` when checkpointing is off.
    pub settings: Option<CheckpointSettings>,
}

/// Follows a job's checkpoints as its job master triggers, completes and
/// aborts them.
#[derive(Debug, Default)]
pub(crate) struct CheckpointTracker {
    view: CheckpointHistory,
    recent: VecDeque<CheckpointRecord>,
}

impl CheckpointTracker {
    /// The settings the view shows.
    pub(crate) fn set_settings(&mut self, settings: Option<CheckpointSettings>) {
        self.view.settings = settings;
    }

    /// Checkpoint `id` was triggered at `now` (ms), `expected` subtasks to ack.
    pub(crate) fn triggered(&mut self, id: u64, savepoint: bool, now: i64, expected: u32) {
        self.view.in_progress += 1;
        self.recent.push_front(CheckpointRecord {
            id,
            savepoint,
            status: CheckpointRecordStatus::InProgress,
            trigger_time: now,
            end_time: None,
            expected,
            state_size: 0,
            failure: None,
            external_path: None,
            acks: Vec::new(),
        });
        self.recent.truncate(CHECKPOINT_HISTORY);
    }

    fn in_progress(&mut self, id: u64) -> Option<&mut CheckpointRecord> {
        self.recent.iter_mut().find(|r| r.id == id && r.status == CheckpointRecordStatus::InProgress)
    }

    /// A subtask acknowledged checkpoint `id`.
    pub(crate) fn acknowledged(&mut self, id: u64, ack: CheckpointAck) {
        if let Some(r) = self.in_progress(id) {
            r.state_size += ack.state_size;
            r.acks.push(ack);
        }
    }

    /// Checkpoint `id` completed at `now`, written to `path`.
    pub(crate) fn completed(&mut self, id: u64, now: i64, path: String) {
        let Some(r) = self.in_progress(id) else { return };
        r.status = CheckpointRecordStatus::Completed;
        r.end_time = Some(now);
        r.external_path = Some(path);
        let done = r.clone();
        self.view.in_progress = self.view.in_progress.saturating_sub(1);
        self.view.completed += 1;
        if done.savepoint {
            self.view.latest_savepoint = Some(done);
        } else {
            self.view.latest_completed = Some(done);
        }
    }

    /// Checkpoint `id` was aborted at `now` because of `reason`.
    pub(crate) fn failed(&mut self, id: u64, now: i64, reason: String) {
        let Some(r) = self.in_progress(id) else { return };
        r.status = CheckpointRecordStatus::Failed;
        r.end_time = Some(now);
        r.failure = Some(reason);
        let failed = r.clone();
        self.view.in_progress = self.view.in_progress.saturating_sub(1);
        self.view.failed += 1;
        self.view.latest_failed = Some(failed);
    }

    /// The checkpoints `ids` were aborted at `now` (all those in progress,
    /// when the job fails over).
    pub(crate) fn failed_all(&mut self, ids: &[sluice_checkpoint::CheckpointId], now: i64, reason: &str) {
        for id in ids {
            self.failed(id.0, now, reason.to_string());
        }
    }

    /// An attempt restored `restored`.
    pub(crate) fn restored(&mut self, restored: RestoredCheckpoint) {
        self.view.restored += 1;
        self.view.latest_restored = Some(restored);
    }

    /// The view.
    pub(crate) fn history(&self) -> CheckpointHistory {
        let mut view = self.view.clone();
        view.history = self.recent.iter().cloned().collect();
        view
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ack(subtask: u32, at: i64, size: u64, alignment_ms: u64) -> CheckpointAck {
        CheckpointAck {
            vertex: 0,
            subtask,
            ack_time: at,
            state_size: size,
            metrics: SubtaskCheckpointMetrics { alignment_ms, sync_ms: 1, async_ms: 2 },
        }
    }

    #[test]
    fn a_checkpoint_from_trigger_to_completion() {
        let mut t = CheckpointTracker::default();
        t.triggered(1, false, 1000, 2);
        t.acknowledged(1, ack(0, 1010, 100, 0));
        let h = t.history();
        assert_eq!(
            (h.in_progress, h.history[0].status, h.history[0].end_to_end_ms()),
            (1, CheckpointRecordStatus::InProgress, 10)
        );
        t.acknowledged(1, ack(1, 1030, 50, 7));
        t.completed(1, 1040, "/ckpt/chk-1".into());
        let h = t.history();
        assert_eq!((h.in_progress, h.completed, h.failed), (0, 1, 0));
        let c = h.latest_completed.unwrap();
        assert_eq!((c.state_size, c.end_to_end_ms(), c.alignment_ms(), c.acks.len()), (150, 40, 7, 2));
        assert_eq!(c.external_path.as_deref(), Some("/ckpt/chk-1"));
    }

    #[test]
    fn failures_and_a_bounded_history_newest_first() {
        let mut t = CheckpointTracker::default();
        for id in 1..=(CHECKPOINT_HISTORY as u64 + 3) {
            t.triggered(id, false, id as i64, 1);
            t.completed(id, id as i64 + 1, format!("chk-{id}"));
        }
        t.triggered(99, false, 500, 1);
        t.failed_all(&[sluice_checkpoint::CheckpointId(99)], 600, "the job restarts");
        let h = t.history();
        assert_eq!(h.history.len(), CHECKPOINT_HISTORY);
        assert_eq!(h.history[0].id, 99);
        assert_eq!(h.history[0].status, CheckpointRecordStatus::Failed);
        assert_eq!(h.latest_failed.unwrap().failure.as_deref(), Some("the job restarts"));
        assert_eq!((h.completed, h.failed, h.in_progress), (CHECKPOINT_HISTORY as u64 + 3, 1, 0));
        t.acknowledged(99, ack(0, 700, 1, 0));
        assert!(t.history().history[0].acks.is_empty(), "a late ack of a failed checkpoint is ignored");
    }
}
