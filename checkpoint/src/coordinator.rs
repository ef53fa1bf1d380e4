//! The checkpoint coordinator's decisions, free of I/O and threads.
//!
//! The JobManager's job master owns one [`CheckpointCoordinator`] per job and
//! drives it: on every tick it asks [`maybe_trigger`](CheckpointCoordinator::maybe_trigger)
//! whether a checkpoint is due (interval, minimum pause, maximum concurrent
//! checkpoints); it passes each subtask's acknowledgement to
//! [`acknowledge`](CheckpointCoordinator::acknowledge), which says when all
//! have arrived; it asks for [`expired`](CheckpointCoordinator::expired)
//! checkpoints and aborts them with an [`AbortReason`]. The coordinator
//! counts consecutive failures and says when they exceed the tolerable
//! number, which fails the job. Each checkpoint in flight is a
//! [`PendingCheckpoint`], which finalizes itself once complete.

use crate::barrier::{CheckpointBarrier, CheckpointId, CheckpointKind, CheckpointingMode};
use crate::metadata::SubtaskStateHandle;
pub use crate::pending::{Acknowledged, CompletedCheckpoint, PendingCheckpoint, TaskKey};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

/// Checkpointing settings of a job (`execution.checkpointing.*`).
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Time between two triggers.
    pub interval: Duration,
    /// Exactly-once (aligned) or at-least-once.
    pub mode: CheckpointingMode,
    /// A checkpoint not complete after this long is aborted.
    pub timeout: Duration,
    /// Least time between the end of one checkpoint and the next trigger.
    pub min_pause: Duration,
    /// Checkpoints in flight at once.
    pub max_concurrent: usize,
    /// Consecutive failed checkpoints the job survives.
    pub tolerable_failures: u32,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: Duration::from_secs(1),
            mode: CheckpointingMode::ExactlyOnce,
            timeout: Duration::from_secs(600),
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            tolerable_failures: 0,
        }
    }
}

/// Why a checkpoint was aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortReason {
    /// Not all subtasks acknowledged within the timeout.
    Timeout(Duration),
    /// A subtask could not take its snapshot.
    Declined {
        /// The subtask's task name.
        task: String,
        /// Why.
        message: String,
    },
    /// Writing the checkpoint's metadata failed.
    Storage(String),
    /// A subtask finished or failed, so the checkpoint cannot complete.
    TaskNotRunning,
    /// The job is restarting, finishing or being canceled.
    JobEnding,
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortReason::Timeout(t) => write!(f, "not complete within the timeout of {t:?}"),
            AbortReason::Declined { task, message } => write!(f, "declined by {task}: {message}"),
            AbortReason::Storage(m) => write!(f, "storage failed: {m}"),
            AbortReason::TaskNotRunning => write!(f, "a subtask is not running"),
            AbortReason::JobEnding => write!(f, "the job is restarting or ending"),
        }
    }
}

/// What an acknowledgement led to.
#[derive(Debug)]
pub enum AckOutcome {
    /// The checkpoint is unknown (aborted or already complete): ignore.
    Unknown,
    /// More acknowledgements are needed.
    Pending,
    /// The acknowledgement came from a subtask the checkpoint does not
    /// expect, or a second time: ignored.
    Ignored(Acknowledged),
    /// Every subtask acknowledged: write the metadata, then notify.
    AllAcknowledged(PendingCheckpoint),
}

/// Counters for metrics.
#[derive(Debug, Clone, Default)]
pub struct CheckpointStats {
    /// Completed checkpoints.
    pub completed: u64,
    /// Failed (aborted) checkpoints.
    pub failed: u64,
    /// Duration of the last completed one.
    pub last_duration: Duration,
    /// State size of the last completed one, in bytes.
    pub last_size: u64,
}

/// The decision logic of checkpoint coordination. See the module docs.
#[derive(Debug)]
pub struct CheckpointCoordinator {
    config: CheckpointConfig,
    next_id: u64,
    pending: BTreeMap<CheckpointId, PendingCheckpoint>,
    last_trigger: Option<Instant>,
    last_end: Option<Instant>,
    consecutive_failures: u32,
    /// Counters for metrics.
    pub stats: CheckpointStats,
}

impl CheckpointCoordinator {
    /// A coordinator whose first checkpoint will have id `first_id`.
    pub fn new(config: CheckpointConfig, first_id: u64) -> Self {
        CheckpointCoordinator {
            config,
            next_id: first_id.max(1),
            pending: BTreeMap::new(),
            last_trigger: None,
            last_end: None,
            consecutive_failures: 0,
            stats: CheckpointStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CheckpointConfig {
        &self.config
    }

    /// Checkpoints in flight.
    pub fn in_progress(&self) -> usize {
        self.pending.len()
    }

    /// Starts counting the interval from `now` (when the job starts running).
    pub fn start(&mut self, now: Instant) {
        self.last_trigger = Some(now);
    }

    /// Whether a periodic checkpoint is due at `now` (the interval, the
    /// minimum pause and the checkpoints in flight allow one).
    pub fn is_due(&self, now: Instant) -> bool {
        self.pending.len() < self.config.max_concurrent.max(1)
            && self.last_trigger.is_none_or(|t| now.duration_since(t) >= self.config.interval)
            && self.last_end.is_none_or(|t| now.duration_since(t) >= self.config.min_pause)
    }

    /// The id the next checkpoint would get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Numbers the next checkpoint `id` if that is higher than the next
    /// id (ids reserved elsewhere, e.g. by a highly available JobManager).
    pub fn skip_to(&mut self, id: u64) {
        self.next_id = self.next_id.max(id);
    }

    /// A periodic checkpoint, if one is due at `now`; `expected` names the
    /// subtasks that must acknowledge it (called only when one is due).
    pub fn maybe_trigger(
        &mut self,
        now: Instant,
        expected: impl FnOnce() -> BTreeSet<TaskKey>,
    ) -> Option<CheckpointBarrier> {
        if !self.is_due(now) {
            return None;
        }
        Some(self.trigger(now, expected(), CheckpointKind::Checkpoint))
    }

    /// Triggers a checkpoint or savepoint now, whatever the interval, which
    /// the subtasks in `expected` must acknowledge.
    pub fn trigger(&mut self, now: Instant, expected: BTreeSet<TaskKey>, kind: CheckpointKind) -> CheckpointBarrier {
        let id = CheckpointId(self.next_id);
        self.next_id += 1;
        self.last_trigger = Some(now);
        let barrier = CheckpointBarrier { id, timestamp_ms: u64::try_from(crate::clock::now_ms()).unwrap_or(0), kind };
        self.pending.insert(id, PendingCheckpoint::new(barrier, now, expected));
        barrier
    }

    /// Records one subtask's acknowledgement of checkpoint `id`.
    pub fn acknowledge(
        &mut self,
        id: CheckpointId,
        task: TaskKey,
        handles: Vec<(String, SubtaskStateHandle)>,
    ) -> AckOutcome {
        let Some(p) = self.pending.get_mut(&id) else {
            return AckOutcome::Unknown;
        };
        match p.acknowledge(task, handles) {
            Acknowledged::Pending => AckOutcome::Pending,
            ignored @ (Acknowledged::NotExpected | Acknowledged::Duplicate | Acknowledged::Invalid) => {
                AckOutcome::Ignored(ignored)
            }
            Acknowledged::Complete => match self.pending.remove(&id) {
                Some(p) => AckOutcome::AllAcknowledged(p),
                None => AckOutcome::Unknown,
            },
        }
    }

    /// Records that `checkpoint` was finalized (its metadata written) at `now`.
    pub fn completed(&mut self, checkpoint: &CompletedCheckpoint, now: Instant) {
        self.last_end = Some(now);
        self.consecutive_failures = 0;
        self.stats.completed += 1;
        self.stats.last_duration = now.duration_since(checkpoint.started);
        self.stats.last_size = checkpoint.size;
    }

    /// Aborts checkpoint `id`; returns `true` when consecutive failures now
    /// exceed the tolerable number (the job must fail). Savepoints do not count.
    pub fn abort(&mut self, id: CheckpointId, reason: &AbortReason, now: Instant) -> bool {
        let Some(p) = self.pending.remove(&id) else {
            return false;
        };
        self.last_end = Some(now);
        self.stats.failed += 1;
        tracing::warn!("checkpoint {id} aborted: {reason}");
        if p.barrier().kind == CheckpointKind::Savepoint || *reason == AbortReason::JobEnding {
            return false;
        }
        self.consecutive_failures += 1;
        self.consecutive_failures > self.config.tolerable_failures
    }

    /// Aborts every pending checkpoint (the job restarts or ends); returns their ids.
    pub fn abort_all(&mut self, now: Instant) -> Vec<CheckpointId> {
        let ids: Vec<CheckpointId> = self.pending.keys().copied().collect();
        for id in &ids {
            self.abort(*id, &AbortReason::JobEnding, now);
        }
        ids
    }

    /// Pending checkpoints older than the timeout.
    pub fn expired(&self, now: Instant) -> Vec<CheckpointId> {
        self.pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.started()) >= self.config.timeout)
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn handle() -> Vec<(String, SubtaskStateHandle)> {
        vec![("op".into(), SubtaskStateHandle { subtask: 0, file: "f".into(), size: 10, shared: vec![] })]
    }

    fn tasks(n: u32) -> BTreeSet<TaskKey> {
        (0..n).map(|v| (v, 0)).collect()
    }

    fn completed(p: PendingCheckpoint) -> CompletedCheckpoint {
        let metadata = crate::metadata::CheckpointMetadata {
            job_id: "j".into(),
            job_name: "j".into(),
            checkpoint_id: p.barrier().id,
            kind: p.barrier().kind,
            timestamp_ms: 0,
            max_parallelism: 128,
            operators: vec![],
            job_operators: vec![],
        };
        CompletedCheckpoint { metadata, dir: Default::default(), started: p.started(), size: p.state_size() }
    }

    #[test]
    fn triggers_on_interval_one_at_a_time_and_completes_on_all_acks() {
        let cfg = CheckpointConfig { interval: Duration::from_millis(100), ..Default::default() };
        let mut c = CheckpointCoordinator::new(cfg, 1);
        let t0 = Instant::now();
        c.start(t0);
        assert!(c.maybe_trigger(t0, || tasks(2)).is_none(), "interval not yet passed");
        let b = c.maybe_trigger(t0 + Duration::from_millis(100), || tasks(2)).unwrap();
        assert_eq!(b.id, CheckpointId(1));
        assert!(c.maybe_trigger(t0 + Duration::from_millis(300), || tasks(2)).is_none(), "one at a time");
        assert!(matches!(c.acknowledge(b.id, (0, 0), handle()), AckOutcome::Pending));
        assert!(matches!(c.acknowledge(b.id, (0, 0), handle()), AckOutcome::Ignored(Acknowledged::Duplicate)));
        assert!(matches!(c.acknowledge(b.id, (9, 0), handle()), AckOutcome::Ignored(Acknowledged::NotExpected)));
        let p = match c.acknowledge(b.id, (1, 0), handle()) {
            AckOutcome::AllAcknowledged(p) => p,
            other => panic!("{other:?}"),
        };
        c.completed(&completed(p), t0 + Duration::from_millis(350));
        assert_eq!(c.stats.completed, 1);
        assert_eq!(c.stats.last_size, 20);
        assert!(matches!(c.acknowledge(b.id, (1, 0), handle()), AckOutcome::Unknown));
        assert_eq!(c.maybe_trigger(t0 + Duration::from_millis(400), || tasks(2)).unwrap().id, CheckpointId(2));
    }

    #[test]
    fn failures_beyond_the_tolerable_count_fail_the_job() {
        let cfg = CheckpointConfig { interval: Duration::ZERO, tolerable_failures: 1, ..Default::default() };
        let mut c = CheckpointCoordinator::new(cfg, 5);
        let t = Instant::now();
        let b = c.maybe_trigger(t, || tasks(1)).unwrap();
        assert_eq!(b.id, CheckpointId(5));
        assert!(!c.abort(b.id, &AbortReason::Timeout(Duration::from_secs(1)), t), "first failure tolerated");
        let b = c.maybe_trigger(t, || tasks(1)).unwrap();
        assert!(c.abort(b.id, &AbortReason::TaskNotRunning, t), "second one is too many");
        let s = c.trigger(t, tasks(1), CheckpointKind::Savepoint);
        assert!(!c.abort(s.id, &AbortReason::TaskNotRunning, t), "savepoints do not count");
    }

    #[test]
    fn timeouts_are_reported() {
        let cfg =
            CheckpointConfig { interval: Duration::ZERO, timeout: Duration::from_millis(50), ..Default::default() };
        let mut c = CheckpointCoordinator::new(cfg, 1);
        let t = Instant::now();
        let b = c.maybe_trigger(t, || tasks(3)).unwrap();
        assert!(c.expired(t + Duration::from_millis(10)).is_empty());
        assert_eq!(c.expired(t + Duration::from_millis(60)), vec![b.id]);
    }
}
