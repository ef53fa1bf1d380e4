//! The job master's inbox: what its event loop receives.
//!
//! This is the in-process, client-side part of the control plane: messages
//! that carry reply channels, the job graph handle or a gateway, which only
//! exist inside one process. Everything a TaskManager says arrives here
//! wrapped, unchanged, from the wire type [`FromTaskManager`]; a transport
//! (an in-process channel or a TCP link) turns a TaskManager's connection
//! into [`ToJobManager::TaskManagerConnected`] and its end into
//! [`ToJobManager::TaskManagerLost`].

use super::gateway::Gateway;
use super::protocol::{FromTaskManager, JobDetails, JobStatus, TaskManagerRegistration, ToTaskManager};
use crate::error::FailureCause;
use crate::graph::JobGraph;
use crate::ids::{JobId, TaskManagerId};
use crossbeam_channel::Sender;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

/// Messages to the job master's event loop.
#[derive(Debug)]
pub enum ToJobManager {
    /// A TaskManager registered; `gateway` reaches it.
    TaskManagerConnected {
        /// What it offers.
        registration: TaskManagerRegistration,
        /// Where to send it messages.
        gateway: Gateway<ToTaskManager>,
    },
    /// A TaskManager went away (its connection broke or its heartbeats
    /// stopped): its slots are gone and the subtasks in them failed.
    TaskManagerLost {
        /// The TaskManager.
        id: TaskManagerId,
    },
    /// A registered TaskManager reports.
    FromTaskManager(FromTaskManager),
    /// Fail a job from outside (the cluster could not give it slots).
    FailJob {
        /// The job.
        job_id: JobId,
        /// Why.
        cause: FailureCause,
    },
    /// A client submits a job; its end arrives on `result`.
    SubmitJob {
        /// The job.
        graph: Arc<JobGraph>,
        /// The id under which it runs.
        job_id: JobId,
        /// Receives the job's end.
        result: Sender<JobResult>,
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
    /// Take a savepoint of a running job into `dir`.
    TriggerSavepoint {
        /// The job.
        job_id: JobId,
        /// The directory to create the savepoint in.
        dir: PathBuf,
        /// Receives the savepoint's path or the reason it failed.
        reply: Sender<Result<PathBuf, String>>,
    },
    /// Stop the job master (and tell TaskManagers to stop).
    Shutdown,
}

impl From<FromTaskManager> for ToJobManager {
    fn from(msg: FromTaskManager) -> Self {
        ToJobManager::FromTaskManager(msg)
    }
}
