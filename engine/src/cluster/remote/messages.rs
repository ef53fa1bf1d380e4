//! The messages between the processes of a multi-process cluster, one
//! enum per direction of each kind of connection.
//!
//! Five kinds of connections:
//! - TaskManager process ↔ JobManager process: opens with
//!   [`Hello::TaskManager`]; then [`FromTaskManagerProcess`] (heartbeats,
//!   job processes started and ended) one way and [`ToTaskManagerProcess`]
//!   (start and stop job processes, shut down) the other;
//! - TaskManager process → JobManager process, once per job binary it does
//!   not have: [`Hello::FetchArtifact`], answered with [`ArtifactFrame`]s
//!   (binaries move as separate artifacts, never inside control messages);
//! - job driver ↔ JobManager process: opens with [`Hello::Driver`]; then
//!   [`FromDriver`] (the job's status, its end, savepoint answers, fence
//!   requests) and [`ToDriver`] (cancel, savepoint, fail, fence answers);
//! - job task process → its TaskManager process: one [`JobProcessStarted`]
//!   on the TaskManager's local endpoint, which the TaskManager forwards to
//!   the JobManager (where the process's `/metrics` is listed);
//! - job task process ↔ job driver: opens with [`TaskProcessHello`], then
//!   the job master protocol itself ([`crate::cluster::protocol`]), the same
//!   messages the mini cluster sends over channels.
//!
//! Every connection is a [`SecureStream`](crate::transport::SecureStream)
//! (mutual TLS when configured). A job's processes prove they belong to it
//! with its [`JobSecret`], which only the JobManager and the job's own
//! processes know: in the driver's hello, the task process's hello and its
//! report to its TaskManager.

use crate::cluster::fence::Fenced;
use crate::cluster::protocol::TaskManagerRegistration;
use crate::cluster::protocol::{JobDetails, JobStatus};
use crate::error::FailureCause;
use crate::ids::{JobId, TaskManagerId};
use crate::transport::JobSecret;
use serde::{Deserialize, Serialize};

/// What a job process is started with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobProcessSpec {
    /// The job.
    pub job: JobId,
    /// Which process of the job on that TaskManager (a job that gets more
    /// slots there after a failure gets another process).
    pub seq: u32,
    /// The job binary's SHA-256 (hex): the TaskManager fetches the binary
    /// by it ([`Hello::FetchArtifact`]) and checks what it got, and any copy
    /// it cached, against it before running it.
    pub artifact_id: String,
    /// The binary's file name.
    pub artifact_name: String,
    /// The binary's size in bytes (a fetch delivering more is cut off).
    pub artifact_size: u64,
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

/// The first frame of every connection to the JobManager process's RPC
/// port: who is connecting.
#[derive(Debug, Serialize, Deserialize)]
pub enum Hello {
    /// A TaskManager offers its slots.
    TaskManager(TaskManagerHello),
    /// A job's driver announces itself.
    Driver(DriverHello),
    /// A TaskManager fetches a job's binary (answered with
    /// [`ArtifactFrame`]s, then the connection closes).
    FetchArtifact(ArtifactRequest),
}

/// Which binary a TaskManager wants, proving it starts a process of the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactRequest {
    /// The job.
    pub job: JobId,
    /// The job's secret (the JobManager gave it with the start request).
    pub secret: JobSecret,
    /// The binary's SHA-256 (hex).
    pub sha256: String,
}

/// The JobManager's answer to [`Hello::FetchArtifact`]: chunks of at most
/// [`ARTIFACT_CHUNK`] bytes, then `End` (or `Refused`).
#[derive(Debug, Serialize, Deserialize)]
pub enum ArtifactFrame {
    /// The next bytes of the binary.
    Chunk(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The whole binary was sent.
    End,
    /// The request was refused, and why.
    Refused(String),
}

/// The size of an [`ArtifactFrame::Chunk`].
pub const ARTIFACT_CHUNK: usize = 1 << 20;

/// A TaskManager process registering with the JobManager process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskManagerHello {
    /// Its id (host:port-like, unique in the cluster).
    pub id: TaskManagerId,
    /// `taskmanager.numberOfTaskSlots`.
    pub slots: u32,
    /// Where its `/metrics` is served, if anywhere.
    pub metrics_address: Option<String>,
}

/// A job's driver announcing its job to the JobManager process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriverHello {
    /// The job.
    pub job: JobId,
    /// The job's name.
    pub name: String,
    /// Slots it needs (its largest parallelism).
    pub required_slots: u32,
    /// Where its task processes connect.
    pub driver_address: String,
    /// Its vertices.
    pub vertices: Vec<VertexSummary>,
    /// Where the driver serves its `/metrics`.
    pub metrics_address: Option<String>,
    /// The job's secret, proving this is the job's driver.
    pub secret: JobSecret,
}

/// The first frame of a task process's connection to its job's driver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskProcessHello {
    /// The job's secret, proving the process belongs to the job.
    pub secret: JobSecret,
    /// The slots it offers, as a TaskManager of the job master.
    pub registration: TaskManagerRegistration,
}

/// A job's task process is up: sent once by the task process to its
/// TaskManager's local endpoint, and forwarded by the TaskManager.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobProcessStarted {
    /// The job.
    pub job: JobId,
    /// The process's sequence number.
    pub seq: u32,
    /// Where the process serves its `/metrics`.
    pub metrics_address: Option<String>,
    /// The job's secret, proving the process belongs to the job.
    pub secret: JobSecret,
}

/// Messages from a registered TaskManager process to the JobManager process.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromTaskManagerProcess {
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
    /// A job process on this TaskManager reported where its metrics are.
    JobProcessStarted(JobProcessStarted),
    /// The answer to [`ToTaskManagerProcess::Logs`].
    Logs {
        /// The request it answers.
        request: u64,
        /// The logs, or why not.
        answer: Result<LogAnswer, String>,
    },
}

/// What the JobManager asks of a TaskManager's logs (for the web UI).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LogRequest {
    /// The log files.
    List,
    /// The end of one log file, by its listed name.
    Read {
        /// The name as listed.
        name: String,
    },
}

/// A TaskManager's answer about its logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LogAnswer {
    /// The log files, newest first.
    List(Vec<LogFile>),
    /// The end of a log file (at most a bounded size).
    Content(String),
}

/// One log file of a TaskManager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFile {
    /// Its name in the REST API.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, ms since the epoch.
    pub modified: i64,
}

/// Messages from the JobManager process to a TaskManager process.
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
    /// List or read the TaskManager's logs; answered by
    /// [`FromTaskManagerProcess::Logs`].
    Logs {
        /// Names the answer.
        request: u64,
        /// What is asked.
        what: LogRequest,
    },
    /// Stop the process.
    Shutdown,
}

/// Messages from a job's driver to the JobManager process, after its hello.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromDriver {
    /// The job's current details.
    JobStatus(Box<JobDetails>),
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
    /// A fenced job master asks its leader (see
    /// [`crate::cluster::fence`]); answered by [`ToDriver::FenceAnswer`].
    Fence {
        /// Request id for the answer.
        request: u64,
        /// What it asks.
        op: FenceOp,
    },
}

/// What a fenced job master asks its leader (see [`crate::cluster::fence`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FenceOp {
    /// The id of the next checkpoint, at least `at_least`.
    ReserveId {
        /// What the job master would use next.
        at_least: u64,
    },
    /// Record `checkpoint`, in `dir`, as the job's latest completed one.
    Completed {
        /// The checkpoint.
        checkpoint: u64,
        /// Its directory (holding its metadata).
        dir: String,
    },
}

/// Messages from the JobManager process to a job's driver.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToDriver {
    /// Cancel the job.
    CancelJob,
    /// Take a savepoint.
    TriggerSavepoint {
        /// Request id for the answer.
        request: u64,
        /// Target directory.
        dir: String,
    },
    /// The cluster cannot run the job.
    FailJob(FailureCause),
    /// The answer to [`FromDriver::Fence`]: the reserved id (for
    /// [`FenceOp::ReserveId`]) or the recorded checkpoint, or why not.
    FenceAnswer {
        /// The request.
        request: u64,
        /// The id, or the refusal.
        answer: Result<u64, Fenced>,
    },
}
