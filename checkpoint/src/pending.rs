//! A checkpoint in flight, from its trigger to its completion.
//!
//! Lifecycle (Flink's `PendingCheckpoint`): the coordinator creates one
//! when it triggers checkpoint *n*, naming the subtasks that must
//! acknowledge it. Each acknowledgement is accepted only from an expected
//! subtask, once, and only if its state handles name that subtask and plain
//! file names ([`PendingCheckpoint::acknowledge`]). When all have
//! acknowledged, the job master hands the pending checkpoint the job's
//! description and it finalizes itself: it builds the checkpoint's
//! [`CheckpointMetadata`] and writes `_metadata` (for a savepoint: copies the
//! state files to the savepoint's directory first), durably, and only then
//! is it a [`CompletedCheckpoint`] whose completion may be announced to the
//! tasks. A pending checkpoint that is aborted is simply dropped; its
//! directory is removed by the job master.

use crate::barrier::{CheckpointBarrier, CheckpointKind};
use crate::error::Result;
use crate::metadata::{CheckpointMetadata, OperatorStateMeta, SubtaskStateHandle};
use crate::storage;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Identifies a subtask to the coordinator: (vertex, subtask index).
pub type TaskKey = (u32, u32);

/// What an operator is, for the metadata of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorInfo {
    /// Its display name.
    pub name: String,
    /// Its parallelism.
    pub parallelism: u32,
    /// Whether its state is keyed.
    pub keyed: bool,
}

/// What a pending checkpoint needs to know about its job to finalize.
pub struct JobDescription<'a> {
    /// The job's id.
    pub job_id: &'a str,
    /// The job's name.
    pub job_name: &'a str,
    /// The job's max parallelism (number of key groups).
    pub max_parallelism: u32,
    /// The ids of all the job's operators (its identity, with its name,
    /// see [`JobIdentity`](crate::metadata::JobIdentity)).
    pub operators: &'a [String],
    /// Looks an operator up by its id.
    pub operator: &'a dyn Fn(&str) -> Option<OperatorInfo>,
}

/// What an acknowledgement did to a pending checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledged {
    /// Recorded; more are needed.
    Pending,
    /// Recorded; every expected subtask has now acknowledged.
    Complete,
    /// Not from a subtask this checkpoint expects: ignored.
    NotExpected,
    /// This subtask had acknowledged already: ignored.
    Duplicate,
    /// A handle names another subtask or a file that is not a plain file
    /// name: ignored (the checkpoint then times out).
    Invalid,
}

/// A checkpoint waiting for acknowledgements. See the module docs.
#[derive(Debug)]
pub struct PendingCheckpoint {
    barrier: CheckpointBarrier,
    started: Instant,
    expected: BTreeSet<TaskKey>,
    acks: BTreeMap<TaskKey, Vec<(String, SubtaskStateHandle)>>,
}

impl PendingCheckpoint {
    /// Checkpoint `barrier`, triggered at `started`, which the subtasks in
    /// `expected` must acknowledge.
    pub fn new(barrier: CheckpointBarrier, started: Instant, expected: BTreeSet<TaskKey>) -> Self {
        PendingCheckpoint { barrier, started, expected, acks: BTreeMap::new() }
    }

    /// The barrier that was injected.
    pub fn barrier(&self) -> CheckpointBarrier {
        self.barrier
    }

    /// When it was triggered.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Records `task`'s acknowledgement with its state handles; ignores it
    /// if `task` is not expected, has acknowledged already, or a handle
    /// names another subtask or a file that is not a plain file name.
    pub fn acknowledge(&mut self, task: TaskKey, handles: Vec<(String, SubtaskStateHandle)>) -> Acknowledged {
        if !self.expected.contains(&task) {
            return Acknowledged::NotExpected;
        }
        if self.acks.contains_key(&task) {
            return Acknowledged::Duplicate;
        }
        let plain = |n: &str| crate::names::check_file_name(n, std::path::Path::new("(acknowledgement)")).is_ok();
        if handles.iter().any(|(_, h)| h.subtask != task.1 || !plain(&h.file) || !h.shared.iter().all(|s| plain(s))) {
            return Acknowledged::Invalid;
        }
        self.acks.insert(task, handles);
        if self.is_fully_acknowledged() {
            Acknowledged::Complete
        } else {
            Acknowledged::Pending
        }
    }

    /// Whether every expected subtask has acknowledged.
    pub fn is_fully_acknowledged(&self) -> bool {
        self.acks.len() == self.expected.len()
    }

    /// The bytes of state acknowledged so far.
    pub fn state_size(&self) -> u64 {
        self.acks.values().flatten().map(|(_, h)| h.size).sum()
    }

    /// The metadata of this checkpoint: its acknowledged state, per operator.
    pub fn metadata(&self, job: &JobDescription<'_>) -> CheckpointMetadata {
        let mut operators: BTreeMap<String, OperatorStateMeta> = BTreeMap::new();
        for (operator, handle) in self.acks.values().flatten() {
            let entry = operators.entry(operator.clone()).or_insert_with(|| {
                let info =
                    (job.operator)(operator).unwrap_or(OperatorInfo { name: "?".into(), parallelism: 0, keyed: false });
                OperatorStateMeta {
                    operator_id: operator.clone(),
                    name: info.name,
                    parallelism: info.parallelism,
                    keyed: info.keyed,
                    subtasks: Vec::new(),
                }
            });
            entry.subtasks.push(handle.clone());
        }
        CheckpointMetadata {
            job_id: job.job_id.to_string(),
            job_name: job.job_name.to_string(),
            checkpoint_id: self.barrier.id,
            kind: self.barrier.kind,
            timestamp_ms: self.barrier.timestamp_ms,
            max_parallelism: job.max_parallelism,
            operators: operators.into_values().collect(),
            job_operators: crate::metadata::JobIdentity::new(job.job_name, job.operators.iter().cloned()).operators,
        }
    }

    /// Finalizes a fully acknowledged checkpoint whose state files are in
    /// `dir`: writes `_metadata` there, durably. Only after this returns
    /// may its completion be announced.
    pub fn finalize(self, job: &JobDescription<'_>, dir: &Path) -> Result<CompletedCheckpoint> {
        let metadata = self.metadata(job);
        storage::write_metadata(dir, &metadata)?;
        Ok(self.completed(metadata, dir.to_path_buf()))
    }

    /// Finalizes a fully acknowledged savepoint whose state files were
    /// written to `dir`: copies them into a new directory under `target`
    /// (`savepoint-<job id prefix>-<id>`), writes `_metadata` there, durably,
    /// and returns the savepoint. `dir` is left for the caller to remove.
    pub fn finalize_savepoint(
        self,
        job: &JobDescription<'_>,
        dir: &Path,
        target: &Path,
    ) -> Result<CompletedCheckpoint> {
        let prefix: String = job.job_id.chars().take(6).collect();
        let path = target.join(format!("savepoint-{prefix}-{}", self.barrier.id.0));
        storage::copy_checkpoint_files(dir, &path)?;
        let mut metadata = self.metadata(job);
        metadata.kind = CheckpointKind::Savepoint;
        storage::write_metadata(&path, &metadata)?;
        Ok(self.completed(metadata, path))
    }

    fn completed(self, metadata: CheckpointMetadata, dir: PathBuf) -> CompletedCheckpoint {
        CompletedCheckpoint { size: self.state_size(), started: self.started, metadata, dir }
    }
}

/// A checkpoint or savepoint whose `_metadata` is written.
#[derive(Debug, Clone)]
pub struct CompletedCheckpoint {
    /// Its metadata.
    pub metadata: CheckpointMetadata,
    /// Its directory.
    pub dir: PathBuf,
    /// When it was triggered.
    pub started: Instant,
    /// The bytes of state it holds.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::barrier::CheckpointId;

    fn handle(op: &str, subtask: u32, size: u64) -> Vec<(String, SubtaskStateHandle)> {
        vec![(op.into(), SubtaskStateHandle { subtask, file: format!("{op}-{subtask}"), size, shared: vec![] })]
    }

    fn pending(kind: CheckpointKind) -> PendingCheckpoint {
        let barrier = CheckpointBarrier { id: CheckpointId(7), timestamp_ms: 1234, kind };
        PendingCheckpoint::new(barrier, Instant::now(), [(0, 0), (0, 1), (1, 0)].into_iter().collect())
    }

    fn info(op: &str) -> Option<OperatorInfo> {
        (op == "src").then(|| OperatorInfo { name: "Source".into(), parallelism: 2, keyed: false })
    }

    static OPERATORS: [String; 0] = [];

    fn job() -> JobDescription<'static> {
        JobDescription {
            job_id: "abcdef0123",
            job_name: "J",
            max_parallelism: 128,
            operator: &info,
            operators: &OPERATORS,
        }
    }

    #[test]
    fn acknowledgements_count_only_from_expected_subtasks_and_once() {
        let mut p = pending(CheckpointKind::Checkpoint);
        assert_eq!(p.acknowledge((0, 0), handle("src", 0, 10)), Acknowledged::Pending);
        assert_eq!(p.acknowledge((0, 0), handle("src", 0, 99)), Acknowledged::Duplicate);
        assert_eq!(p.acknowledge((5, 0), handle("src", 0, 99)), Acknowledged::NotExpected);
        assert_eq!(p.acknowledge((0, 2), handle("src", 2, 99)), Acknowledged::NotExpected);
        // An expected subtask whose handle claims another subtask's state,
        // or names a file outside the checkpoint: ignored.
        assert_eq!(p.acknowledge((0, 1), handle("src", 0, 99)), Acknowledged::Invalid);
        let mut escaping = handle("src", 1, 99);
        escaping[0].1.file = "../../x".into();
        assert_eq!(p.acknowledge((0, 1), escaping), Acknowledged::Invalid);
        assert!(!p.is_fully_acknowledged());
        assert_eq!(p.acknowledge((0, 1), handle("src", 1, 20)), Acknowledged::Pending);
        assert_eq!(p.acknowledge((1, 0), vec![]), Acknowledged::Complete);
        assert_eq!(p.state_size(), 30, "the duplicate and the strangers are not counted");
    }

    #[test]
    fn finalize_writes_the_metadata_that_marks_the_checkpoint_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pending(CheckpointKind::Checkpoint);
        p.acknowledge((0, 0), handle("src", 0, 10));
        p.acknowledge((0, 1), handle("src", 1, 20));
        p.acknowledge((1, 0), handle("other", 0, 5));
        let done = p.finalize(&job(), dir.path()).unwrap();
        assert_eq!(done.size, 35);
        let (read, at) = storage::read_metadata(dir.path()).unwrap();
        assert_eq!(at, dir.path());
        assert_eq!(read, done.metadata);
        assert_eq!(read.checkpoint_id, CheckpointId(7));
        let src = read.operators.iter().find(|o| o.operator_id == "src").unwrap();
        assert_eq!((src.name.as_str(), src.parallelism, src.subtasks.len()), ("Source", 2, 2));
        let other = read.operators.iter().find(|o| o.operator_id == "other").unwrap();
        assert_eq!(other.name, "?", "an operator the job does not know is named '?'");
    }

    #[test]
    fn a_savepoint_copies_its_files_and_is_marked_as_a_savepoint() {
        let dir = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        let mut p = pending(CheckpointKind::Savepoint);
        let h = storage::write_state(dir.path(), "src-0", 0, b"state bytes").unwrap();
        p.acknowledge((0, 0), vec![("src".into(), h)]);
        p.acknowledge((0, 1), vec![]);
        p.acknowledge((1, 0), vec![]);
        let done = p.finalize_savepoint(&job(), dir.path(), target.path()).unwrap();
        assert_eq!(done.dir, target.path().join("savepoint-abcdef-7"));
        let (read, at) = storage::read_metadata(&done.dir).unwrap();
        assert_eq!(read.kind, CheckpointKind::Savepoint);
        storage::verify_files(&read, &at).unwrap();
        let handle = &read.operators[0].subtasks[0];
        assert_eq!(storage::read_state(&at, handle, CheckpointId(7)).unwrap(), b"state bytes");
    }
}
