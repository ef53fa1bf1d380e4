//! Checkpoint ids and barriers.
//!
//! A checkpoint barrier is injected by every source subtask when the
//! JobManager's checkpoint coordinator triggers checkpoint *n*. It flows
//! in-band with the records (it never overtakes them); a task with several
//! input channels aligns on it before snapshotting its state. The lifecycle of
//! a checkpoint as seen by a task is: trigger (sources) → barrier → snapshot →
//! acknowledge → complete (or abort).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The id of a checkpoint, increasing by one per triggered checkpoint of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckpointId(pub u64);

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whether a snapshot is a periodic checkpoint or a user-triggered savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointKind {
    /// A periodic checkpoint, owned and cleaned up by the engine.
    Checkpoint,
    /// A savepoint, owned by the user and never deleted automatically.
    Savepoint,
}

/// The consistency guarantee of checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CheckpointingMode {
    /// Barriers are aligned: inputs that delivered barrier *n* are held until
    /// every input has, so state reflects each record exactly once.
    #[default]
    ExactlyOnce,
    /// Barriers are not aligned: after a failure some records may be applied
    /// to state twice.
    AtLeastOnce,
}

/// The barrier of checkpoint `id`, as it travels through the data channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBarrier {
    /// The checkpoint this barrier belongs to.
    pub id: CheckpointId,
    /// When the coordinator triggered it (milliseconds since the Unix epoch).
    pub timestamp_ms: u64,
    /// Checkpoint or savepoint.
    pub kind: CheckpointKind,
}
