//! The messages of a multi-process cluster.
//!
//! Three kinds of connections:
//! - TaskManager process → JobManager process ([`ToJobManagerProcess`] /
//!   [`ToTaskManagerProcess`]): slots, heartbeats, starting and stopping the
//!   job processes that use them;
//! - job driver → JobManager process (same enums): a job's master, running
//!   in the job's binary started by the dispatcher, reports the job and takes
//!   commands (cancel, savepoint, fail);
//! - job task process → its TaskManager process: one
//!   [`ToJobManagerProcess::JobProcessStarted`] on the TaskManager's local
//!   endpoint, which the TaskManager forwards to the JobManager (where the
//!   process's `/metrics` is served);
//! - job task process → job driver ([`ToDriver`] / [`ToTaskProcess`]): the
//!   mini cluster's TaskManager protocol ([`crate::cluster::protocol`]) on
//!   the wire, with the job graph replaced by the placement of the attempt
//!   (the task process built the same graph from the same binary).

use crate::cluster::protocol::{ExecutionState, JobDetails, JobId, JobStatus, Placement, SlotId, TaskManagerId};
use crate::error::FailureCause;
use crate::graph::execution::SubtaskId;
use crate::runtime::restore::RestorePlan;
use serde::{Deserialize, Serialize};
use sluice_checkpoint::metadata::SubtaskStateHandle;
use sluice_checkpoint::{CheckpointBarrier, CheckpointId};

/// What a job process is started with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobProcessSpec {
    /// The job.
    pub job: JobId,
    /// Which process of the job on that TaskManager (a job that gets more
    /// slots there after a failure gets another process).
    pub seq: u32,
    /// The job binary's content hash (cache key on the TaskManager).
    pub artifact_id: String,
    /// The binary's file name.
    pub artifact_name: String,
    /// The binary itself (encoded as one byte string, not element by element).
    #[serde(with = "serde_bytes")]
    pub binary: Vec<u8>,
    /// The job's arguments.
    pub args: Vec<String>,
    /// Environment for the process (mode, addresses, overrides).
    pub env: Vec<(String, String)>,
    /// Slots the process hosts.
    pub slots: u32,
}

/// A job vertex as the web UI and REST API show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VertexSummary {
    /// Its name (`Source: ... -> Map`).
    pub name: String,
    /// Its parallelism.
    pub parallelism: u32,
}

/// Messages to the JobManager process.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToJobManagerProcess {
    /// A TaskManager offers its slots (first message of its connection).
    RegisterTaskManager {
        /// Its id (host:port-like, unique in the cluster).
        id: TaskManagerId,
        /// `taskmanager.numberOfTaskSlots`.
        slots: u32,
        /// Where its `/metrics` is served, if anywhere.
        metrics_address: Option<String>,
    },
    /// The TaskManager is alive.
    Heartbeat,
    /// A job process on this TaskManager ended.
    JobProcessExited {
        /// The job.
        job: JobId,
        /// The process's sequence number.
        seq: u32,
        /// How it ended (exit status, rendered).
        status: String,
    },
    /// A job's driver announces itself (first message of its connection).
    DriverHello {
        /// The job.
        job: JobId,
        /// The job's name.
        name: String,
        /// Slots it needs (its largest parallelism).
        required_slots: u32,
        /// Where its task processes connect.
        driver_address: String,
        /// Its vertices.
        vertices: Vec<VertexSummary>,
        /// Where the driver serves its `/metrics`.
        metrics_address: Option<String>,
    },
    /// A job's task process is up (task process → its TaskManager, which
    /// forwards it to the JobManager).
    JobProcessStarted {
        /// The job.
        job: JobId,
        /// The process's sequence number.
        seq: u32,
        /// Where the process serves its `/metrics`.
        metrics_address: Option<String>,
    },
    /// The job's current details.
    JobStatus(JobDetails),
    /// The job ended.
    JobEnded {
        /// FINISHED, FAILED or CANCELED.
        status: JobStatus,
        /// Why it failed.
        failure: Option<FailureCause>,
        /// Restarts.
        restarts: u32,
    },
    /// The answer to a savepoint request.
    SavepointDone {
        /// The request.
        request: u64,
        /// The savepoint's path, or why it failed.
        result: Result<String, String>,
    },
}

/// Messages from the JobManager process.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToTaskManagerProcess {
    /// Registration accepted.
    Registered,
    /// Registration refused (for example a duplicate id).
    Refused(String),
    /// Start a job process hosting `spec.slots` slots.
    StartJobProcess(Box<JobProcessSpec>),
    /// Stop (kill) every process of a job.
    StopJob {
        /// The job.
        job: JobId,
    },
    /// Driver: cancel the job.
    CancelJob,
    /// Driver: take a savepoint.
    TriggerSavepoint {
        /// Request id for the answer.
        request: u64,
        /// Target directory.
        dir: String,
    },
    /// Driver: the cluster cannot run the job.
    FailJob(FailureCause),
    /// Stop the process.
    Shutdown,
}

/// Messages from a job task process to its driver.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToDriver {
    /// First message: the process acts as a TaskManager with these slots.
    Register {
        /// Its id.
        id: TaskManagerId,
        /// Slots it hosts.
        slots: u32,
        /// Where its data server listens.
        data_address: String,
    },
    /// A subtask changed state.
    TaskStateChanged {
        /// Which.
        subtask: SubtaskId,
        /// Its new state.
        state: ExecutionState,
        /// Why, if it failed.
        failure: Option<FailureCause>,
    },
    /// A snapshot is stored.
    AcknowledgeCheckpoint {
        /// Which subtask.
        subtask: SubtaskId,
        /// Which checkpoint.
        checkpoint: CheckpointId,
        /// Per operator id, the stored state.
        handles: Vec<(String, SubtaskStateHandle)>,
    },
    /// A snapshot failed.
    DeclineCheckpoint {
        /// Which subtask.
        subtask: SubtaskId,
        /// Which checkpoint.
        checkpoint: CheckpointId,
        /// Why.
        reason: String,
    },
}

/// Messages from a job driver to a task process: the mini cluster's
/// [`ToTaskManager`](crate::cluster::protocol::ToTaskManager) on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToTaskProcess {
    /// Registration accepted.
    Registered,
    /// Start a subtask.
    Deploy {
        /// Which.
        subtask: SubtaskId,
        /// Its slot.
        slot: SlotId,
        /// What to restore.
        restore: Option<RestorePlan>,
        /// Where the attempt's slots are.
        placement: Placement,
    },
    /// Cancel a subtask.
    Cancel {
        /// Which.
        subtask: SubtaskId,
    },
    /// Inject a barrier.
    TriggerCheckpoint {
        /// Which source subtask.
        subtask: SubtaskId,
        /// The barrier.
        barrier: CheckpointBarrier,
    },
    /// A checkpoint is complete.
    NotifyCheckpointComplete {
        /// The job.
        job_id: JobId,
        /// The checkpoint.
        checkpoint: CheckpointId,
    },
    /// A checkpoint was aborted.
    AbortCheckpoint {
        /// The job.
        job_id: JobId,
        /// The checkpoint.
        checkpoint: CheckpointId,
    },
    /// The attempt ended: free channels.
    ReleaseJob {
        /// The job.
        job_id: JobId,
    },
    /// Stop the process.
    Shutdown,
}
