//! The control-plane protocol between the JobManager and TaskManagers.
//!
//! Every interaction is one of these messages; no component reaches into
//! another's memory. The job itself travels as a [`JobArtifact`]: in the mini
//! cluster the already-built graph; in a multi-process cluster the job's
//! binary, which rebuilds the same graph in task mode.

use crate::error::FailureCause;
use crate::graph::execution::SubtaskId;
use crate::graph::JobGraph;
use crate::runtime::restore::RestorePlan;
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use sluice_checkpoint::metadata::SubtaskStateHandle;
use sluice_checkpoint::{CheckpointBarrier, CheckpointId};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A job's id: 32 hex digits, like Flink's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(u128);

impl JobId {
    /// A fresh id, unique within this process and very likely across processes.
    pub fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mix = sluice_checkpoint::key_group::stable_hash(&(nanos, n, std::process::id()));
        JobId((u128::from(mix) << 64) | u128::from(sluice_checkpoint::key_group::stable_hash(&(mix, n))))
    }

    /// An id from its numeric value.
    pub const fn from_u128(v: u128) -> Self {
        JobId(v)
    }
}

impl std::str::FromStr for JobId {
    type Err = String;

    /// Parses the 32 hex digits `Display` prints.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() != 32 {
            return Err(format!("'{s}' is not a job id (32 hex digits)"));
        }
        u128::from_str_radix(s, 16).map(JobId).map_err(|_| format!("'{s}' is not a job id (32 hex digits)"))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

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

/// A TaskManager's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskManagerId(pub String);

impl fmt::Display for TaskManagerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One slot of one TaskManager.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlotId {
    /// The TaskManager.
    pub task_manager: TaskManagerId,
    /// The slot's index there.
    pub index: u32,
}

/// What a TaskManager needs to run a job's subtasks.
#[derive(Clone)]
pub enum JobArtifact {
    /// The job graph itself (mini cluster: same process).
    InProcess(Arc<JobGraph>),
}

impl fmt::Debug for JobArtifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobArtifact::InProcess(g) => write!(f, "InProcess({})", g.name()),
        }
    }
}

/// Everything a TaskManager needs to start one subtask.
#[derive(Debug, Clone)]
pub struct TaskDeploymentDescriptor {
    /// Which subtask.
    pub subtask: SubtaskId,
    /// The slot it runs in.
    pub slot: SlotId,
    /// The job.
    pub artifact: JobArtifact,
    /// The checkpoint or savepoint to restore state from, if any.
    pub restore: Option<Arc<RestorePlan>>,
    /// Where every slot of the job attempt lives, so that channels to
    /// subtasks in other processes go over the network.
    pub placement: Arc<Placement>,
}

/// Where one slot of a job attempt lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotLocation {
    /// The TaskManager (in a cluster: the job's process on it).
    pub task_manager: TaskManagerId,
    /// The address its data server listens on; `None` in the mini cluster,
    /// where every channel is in-process.
    pub data_address: Option<String>,
}

/// Where the slots of a job attempt live. With slot sharing, slot *i* hosts
/// subtask *i* of every vertex.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Slot *i*'s location.
    pub slots: Vec<SlotLocation>,
}

impl Placement {
    /// The location of the slot that hosts subtask `index` of any vertex.
    pub fn of_subtask(&self, index: u32) -> Option<&SlotLocation> {
        self.slots.get(index as usize)
    }
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
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// The job.
    pub job_id: JobId,
    /// FINISHED, FAILED or CANCELED.
    pub status: JobStatus,
    /// Why it failed, if it did.
    pub failure: Option<FailureCause>,
    /// Time from submission to the end.
    pub duration: Duration,
    /// How often the job restarted from a checkpoint.
    pub restarts: u32,
}

/// Messages to the JobManager.
#[derive(Debug)]
pub enum ToJobManager {
    /// A TaskManager offers its slots.
    RegisterTaskManager {
        /// The TaskManager.
        id: TaskManagerId,
        /// How many slots it has.
        slots: u32,
        /// Where to send it messages.
        gateway: Sender<ToTaskManager>,
        /// Where its data server listens (cluster mode), if it has one.
        data_address: Option<String>,
    },
    /// A TaskManager went away (its connection broke or its heartbeats
    /// stopped): its slots are gone and the subtasks in them failed.
    TaskManagerLost {
        /// The TaskManager.
        id: TaskManagerId,
    },
    /// Fail a job from outside (the cluster could not give it slots).
    FailJob {
        /// The job.
        job_id: JobId,
        /// Why.
        cause: FailureCause,
    },
    /// A client submits a job; the id comes back on `accepted`, the end on `result`.
    SubmitJob {
        /// The job.
        graph: Arc<JobGraph>,
        /// The id under which it runs.
        job_id: JobId,
        /// Receives the job's end.
        result: Sender<JobResult>,
    },
    /// A subtask changed state.
    TaskStateChanged {
        /// Which subtask.
        subtask: SubtaskId,
        /// Its new state.
        state: ExecutionState,
        /// Why, if it failed.
        failure: Option<FailureCause>,
    },
    /// Cancel a job.
    CancelJob {
        /// The job.
        job_id: JobId,
    },
    /// Ask for a job's status.
    RequestJobStatus {
        /// The job.
        job_id: JobId,
        /// Receives the details, `None` for an unknown job.
        reply: Sender<Option<JobDetails>>,
    },
    /// A subtask took its snapshot of a checkpoint and stored it.
    AcknowledgeCheckpoint {
        /// Which subtask.
        subtask: SubtaskId,
        /// Which checkpoint.
        checkpoint: CheckpointId,
        /// Per operator id, the stored state.
        handles: Vec<(String, SubtaskStateHandle)>,
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
    /// Take a savepoint of a running job into `dir`.
    TriggerSavepoint {
        /// The job.
        job_id: JobId,
        /// The directory to create the savepoint in.
        dir: PathBuf,
        /// Receives the savepoint's path or the reason it failed.
        reply: Sender<Result<PathBuf, String>>,
    },
    /// Stop the JobManager (and tell TaskManagers to stop).
    Shutdown,
}

/// Messages to a TaskManager.
#[derive(Debug)]
pub enum ToTaskManager {
    /// The JobManager accepted the registration.
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
    /// The job ended: free its slots and channels.
    ReleaseJob {
        /// The job.
        job_id: JobId,
    },
    /// Stop the TaskManager.
    Shutdown,
}
