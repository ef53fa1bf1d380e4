//! What a running operator, source or sink knows about itself.

use crate::cluster::protocol::JobId;
use sluice_checkpoint::KeyGroupRange;

/// Whether keyed aggregations emit running results or final ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeMode {
    /// Unbounded processing: every update is emitted as it happens.
    Streaming,
    /// Bounded processing: keyed aggregations emit one final result per key
    /// at the end of input.
    Batch,
}

/// Information about the subtask an operator runs in (Flink's `RuntimeContext`).
#[derive(Debug, Clone)]
pub struct RuntimeContext {
    /// The job's id.
    pub job_id: JobId,
    /// The job's name.
    pub job_name: String,
    /// The task (job vertex) name: the chained operators' names joined by ` -> `.
    pub task_name: String,
    /// This operator's name.
    pub operator_name: String,
    /// This operator's stable id (from its `uid`, or derived from the graph).
    pub operator_id: String,
    /// This subtask's index, from 0.
    pub subtask_index: u32,
    /// The operator's parallelism.
    pub parallelism: u32,
    /// The number of key groups.
    pub max_parallelism: u32,
    /// Which execution attempt of the job this is (0 for the first).
    pub attempt: u32,
    /// Streaming or batch.
    pub mode: RuntimeMode,
    /// The checkpoint interval, if the job takes checkpoints (sinks with
    /// transactions check their timeouts against it).
    pub checkpoint_interval: Option<std::time::Duration>,
}

impl RuntimeContext {
    /// The key groups this subtask owns (for keyed operators).
    pub fn key_group_range(&self) -> KeyGroupRange {
        KeyGroupRange::for_subtask(self.max_parallelism, self.parallelism, self.subtask_index)
    }

    /// A context for unit tests of functions and operators.
    pub fn for_test(subtask_index: u32, parallelism: u32) -> Self {
        RuntimeContext {
            job_id: JobId::from_u128(0),
            job_name: "test".into(),
            task_name: "test".into(),
            operator_name: "test".into(),
            operator_id: "test".into(),
            subtask_index,
            parallelism,
            max_parallelism: sluice_checkpoint::DEFAULT_MAX_PARALLELISM,
            attempt: 0,
            mode: RuntimeMode::Streaming,
            checkpoint_interval: None,
        }
    }
}
