//! The control-plane protocol between a job master and the TaskManagers
//! that host its subtasks.
//!
//! Each message is defined once and is serializable, whatever carries it:
//! in the mini cluster a [`Gateway`](super::gateway::Gateway) is an
//! in-process channel; between a job's driver and its task processes it is
//! a TCP link ([`super::remote`]). The job master and the TaskManager do not
//! know which.
//!
//! ```text
//!   TaskManager ──TaskManagerRegistration──▶ job master   (once, on connect)
//!   TaskManager ◀────────ToTaskManager────── job master   (deploy, cancel, checkpoints)
//!   TaskManager ───────FromTaskManager─────▶ job master   (task states, acks, declines)
//! ```
//!
//! The job itself does not travel in these messages: a TaskManager finds
//! the graph of a job it deploys in its [`JobGraphs`](super::job_graphs::JobGraphs)
//! (the submitted graph in the mini cluster; the graph the job binary built
//! in a task process). What exists only inside one process (reply channels,
//! the job graph handle, gateways) lives in the job master's inbox type,
//! [`ToJobManager`](super::inbox::ToJobManager), never in a wire message.

use super::stats::{JobView, SubtaskSample};
use crate::error::FailureCause;
use crate::ids::{JobId, Placement, SlotId, SubtaskId, TaskManagerId};
use crate::runtime::restore::RestorePlan;
use crate::runtime::SubtaskCheckpointMetrics;
use serde::{Deserialize, Serialize};
use sluice_checkpoint::metadata::SubtaskStateHandle;
use sluice_checkpoint::{CheckpointBarrier, CheckpointId};
use std::fmt;
use std::sync::Arc;

/// The lifecycle of a job: CREATED → RUNNING → FINISHED, or → FAILING →
/// FAILED, or → CANCELLING → CANCELED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    /// Accepted, waiting for slots.
    Created,
    /// Subtasks deployed and running.
    Running,
    /// A subtask failed; the job restarts from its latest checkpoint.
    Restarting,
    /// A subtask failed; the others are being canceled.
    Failing,
    /// Ended by a failure.
    Failed,
    /// Cancellation requested; subtasks are stopping.
    Cancelling,
    /// Ended by cancellation.
    Canceled,
    /// All subtasks finished.
    Finished,
}

impl JobStatus {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Canceled | JobStatus::Finished)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobStatus::Created => "CREATED",
            JobStatus::Running => "RUNNING",
            JobStatus::Restarting => "RESTARTING",
            JobStatus::Failing => "FAILING",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelling => "CANCELLING",
            JobStatus::Canceled => "CANCELED",
            JobStatus::Finished => "FINISHED",
        })
    }
}

/// The lifecycle of one subtask execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionState {
    /// Sent to a TaskManager.
    Deploying,
    /// Its thread runs.
    Running,
    /// Ended after consuming all input.
    Finished,
    /// Ended by cancellation.
    Canceled,
    /// Ended by an error.
    Failed,
}

impl ExecutionState {
    /// Whether the execution has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, ExecutionState::Finished | ExecutionState::Canceled | ExecutionState::Failed)
    }
}

/// Everything a TaskManager needs to start one subtask (Flink's
/// `TaskDeploymentDescriptor`): the same value in the mini cluster and on
/// the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskDeploymentDescriptor {
    /// Which subtask.
    pub subtask: SubtaskId,
    /// The slot it runs in.
    pub slot: SlotId,
    /// The checkpoint or savepoint to restore state from, if any (shared by
    /// every subtask of the attempt in the mini cluster).
    pub restore: Option<Arc<RestorePlan>>,
    /// Where every slot of the job attempt lives, so that channels to
    /// subtasks in other processes go over the network.
    pub placement: Arc<Placement>,
}

/// What the JobManager reports about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDetails {
    /// Current status.
    pub status: JobStatus,
    /// Restarts so far.
    pub restarts: u32,
    /// Completed checkpoints so far.
    pub completed_checkpoints: u64,
    /// Failed checkpoints so far.
    pub failed_checkpoints: u64,
    /// The id of the latest completed checkpoint.
    pub latest_checkpoint: Option<CheckpointId>,
    /// The job's vertices, subtasks, checkpoints and failures in detail.
    pub view: JobView,
}

/// A TaskManager offers its slots to a job master: the first message of
/// every TaskManager connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskManagerRegistration {
    /// The TaskManager.
    pub id: TaskManagerId,
    /// How many slots it has.
    pub slots: u32,
    /// Where its data server listens (cluster mode); `None` in the mini
    /// cluster, where every channel is in-process.
    pub data_address: Option<String>,
}

/// Messages from a TaskManager to the job master, after its registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromTaskManager {
    /// A subtask changed state.
    TaskStateChanged {
        /// Which subtask.
        subtask: SubtaskId,
        /// Its new state.
        state: ExecutionState,
        /// Why, if it failed.
        failure: Option<FailureCause>,
    },
    /// A subtask took its snapshot of a checkpoint and stored it.
    AcknowledgeCheckpoint {
        /// Which subtask.
        subtask: SubtaskId,
        /// Which checkpoint.
        checkpoint: CheckpointId,
        /// Per operator id, the stored state.
        handles: Vec<(String, SubtaskStateHandle)>,
        /// What the subtask's part cost.
        metrics: SubtaskCheckpointMetrics,
    },
    /// A subtask could not take or store its snapshot.
    DeclineCheckpoint {
        /// Which subtask.
        subtask: SubtaskId,
        /// Which checkpoint.
        checkpoint: CheckpointId,
        /// Why.
        reason: String,
    },
    /// The counters of the TaskManager's running subtasks (about once a
    /// second).
    SubtaskMetrics {
        /// One sample per running subtask.
        samples: Vec<SubtaskSample>,
    },
}

/// Messages from the job master to a TaskManager.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToTaskManager {
    /// The job master accepted the registration.
    Registered,
    /// Start a subtask.
    Deploy(Box<TaskDeploymentDescriptor>),
    /// Cancel a subtask.
    Cancel {
        /// Which subtask.
        subtask: SubtaskId,
    },
    /// A source subtask injects the barrier of a checkpoint.
    TriggerCheckpoint {
        /// Which subtask.
        subtask: SubtaskId,
        /// The barrier.
        barrier: CheckpointBarrier,
    },
    /// A checkpoint of a job is complete everywhere.
    NotifyCheckpointComplete {
        /// The job.
        job_id: JobId,
        /// The checkpoint.
        checkpoint: CheckpointId,
    },
    /// A checkpoint of a job was aborted: stop aligning for it.
    AbortCheckpoint {
        /// The job.
        job_id: JobId,
        /// The checkpoint.
        checkpoint: CheckpointId,
    },
    /// The job attempt ended: free its slots and channels.
    ReleaseJob {
        /// The job.
        job_id: JobId,
    },
    /// Stop the TaskManager.
    Shutdown,
}
