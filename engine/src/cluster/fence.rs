//! Fencing a job master by the leadership of the JobManager that started
//! it (JobManager high availability).
//!
//! With high availability a job's master (its driver process) may outlive
//! the leadership of the JobManager that started it: the JobManager is
//! partitioned from the coordination service, another one is elected and
//! restarts the job from its latest checkpoint. Two job masters of one job
//! must never both complete a checkpoint: the notification of a completed
//! checkpoint is what makes the Kafka sinks commit. So a fenced job master
//! asks its leader twice per checkpoint, Flink's `CheckpointIDCounter` and
//! `CompletedCheckpointStore` in one:
//!
//! 1. before it triggers checkpoint (or savepoint) *n*, for *n*
//!    ([`CheckpointFence::reserve_id`]): ids come from a counter the leader
//!    keeps in the coordination service, so they never go backwards across
//!    leaders, and two leaders' checkpoints never share a directory;
//! 2. after *n*'s metadata is written and before any task hears that *n*
//!    completed ([`CheckpointFence::record_completed`]): the leader records
//!    *n* as the job's latest completed checkpoint in a write conditioned
//!    on still holding leadership.
//!
//! A refusal ([`Fenced`]) means another job master may already act for the
//! job: the fenced one must stop at once without notifying anything (the
//! driver process exits; see `job_process`). Without high availability the
//! job master has no fence and numbers its checkpoints itself.
//!
//! ```
//! use sluice::cluster::fence::{CheckpointFence, Fenced};
//! use std::path::Path;
//!
//! /// A fence that lets through everything up to checkpoint 3.
//! struct UpTo3;
//! impl CheckpointFence for UpTo3 {
//!     fn reserve_id(&mut self, at_least: u64) -> Result<u64, Fenced> {
//!         if at_least <= 3 { Ok(at_least) } else { Err(Fenced::NotLeader) }
//!     }
//!     fn record_completed(&mut self, _checkpoint: u64, _dir: &Path) -> Result<(), Fenced> {
//!         Ok(())
//!     }
//! }
//! assert_eq!(UpTo3.reserve_id(2), Ok(2));
//! assert_eq!(UpTo3.reserve_id(4), Err(Fenced::NotLeader));
//! ```

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The exit code of a fenced job master's process (`EX_TEMPFAIL`): the
/// JobManager that leads now runs the job.
pub const FENCED_EXIT_CODE: i32 = 75;

/// Why a fenced job master may not go on (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Fenced {
    /// The JobManager that started the job no longer leads the cluster.
    #[error("the JobManager that started this job is no longer the cluster's leader")]
    NotLeader,
    /// The leader could not reach the coordination service in time; it
    /// cannot tell whether it still leads.
    #[error("the high-availability service could not be reached: {0}")]
    Unavailable(String),
    /// The JobManager did not answer (it is gone, or its link is cut).
    #[error("the JobManager did not answer within {0} ms")]
    NoAnswer(u64),
}

/// What a fenced job master asks its leader before it acts on a checkpoint.
/// Calls block the job master briefly (one round trip to the JobManager
/// and one write to the coordination service).
pub trait CheckpointFence: Send {
    /// Reserves the id of the next checkpoint or savepoint: the returned id
    /// is at least `at_least` (what the job master would use next) and
    /// greater than every id reserved before, by any leader.
    fn reserve_id(&mut self, at_least: u64) -> Result<u64, Fenced>;

    /// Records checkpoint `checkpoint`, whose metadata is in `dir`, as the
    /// job's latest completed one. Only after `Ok` may the tasks be
    /// notified.
    fn record_completed(&mut self, checkpoint: u64, dir: &Path) -> Result<(), Fenced>;
}
