//! The mini cluster: a JobManager and TaskManagers as threads of one
//! process, for local runs (`cargo run` of a job) and tests.

use super::fence::CheckpointFence;
use super::gateway::Gateway;
use super::inbox::{JobResult, ToJobManager};
use super::job_graphs::JobGraphs;
use super::jobmanager::JobManager;
use super::protocol::{JobDetails, JobStatus, TaskManagerRegistration};
use super::taskmanager::TaskManager;
use crate::error::{Error, FailureCause, Result};
use crate::graph::JobGraph;
use crate::ids::{JobId, TaskManagerId};
use crate::metrics::MetricsServer;
use crate::runtime::shuffle::Shuffle;
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Size of a mini cluster.
#[derive(Debug, Clone, Copy)]
pub struct MiniClusterConfig {
    /// Number of TaskManagers (`local.number-taskmanager`).
    pub task_managers: u32,
    /// Slots per TaskManager (`taskmanager.numberOfTaskSlots`).
    pub slots_per_task_manager: u32,
}

/// A running mini cluster. Dropping it cancels its jobs and stops it.
pub struct MiniCluster {
    job_manager: Sender<ToJobManager>,
    threads: Vec<JoinHandle<()>>,
}

impl MiniCluster {
    /// Starts a JobManager and `config.task_managers` TaskManagers.
    pub fn start(config: MiniClusterConfig) -> Result<Self> {
        let (jm_tx, jm_rx) = crossbeam_channel::unbounded();
        let shuffle = Arc::new(Shuffle::local());
        let graphs = JobGraphs::default();
        let mut threads = Vec::new();
        let spawn_err = |e: std::io::Error| Error::io("cannot start a mini cluster thread", e);
        let jm_graphs = graphs.clone();
        threads.push(
            std::thread::Builder::new()
                .name("jobmanager".into())
                .spawn(move || JobManager::new(jm_rx, jm_graphs).run())
                .map_err(spawn_err)?,
        );
        for i in 0..config.task_managers {
            let (tm_tx, tm_rx) = crossbeam_channel::unbounded();
            let id = TaskManagerId(format!("localhost:tm-{i}"));
            let registration =
                TaskManagerRegistration { id: id.clone(), slots: config.slots_per_task_manager, data_address: None };
            jm_tx
                .send(ToJobManager::TaskManagerConnected { registration, gateway: Gateway::channel(tm_tx) })
                .map_err(|_| Error::ClusterUnavailable("the JobManager stopped".into()))?;
            let tm = TaskManager::new(id, tm_rx, Gateway::channel(jm_tx.clone()), graphs.clone(), shuffle.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("taskmanager-{i}"))
                    .spawn(move || tm.run())
                    .map_err(spawn_err)?,
            );
        }
        Ok(MiniCluster { job_manager: jm_tx, threads })
    }

    /// The job master of a job's driver process in a cluster: a JobManager
    /// without TaskManagers of its own, whose TaskManagers (the job's task
    /// processes) register over RPC, and whose slot request timeout the
    /// cluster enforces; `fence` with a highly available JobManager.
    pub(crate) fn start_driver_job_master(fence: Option<Box<dyn CheckpointFence>>) -> Result<Self> {
        let (jm_tx, jm_rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("jobmaster".into())
            .spawn(move || {
                JobManager::new(jm_rx, JobGraphs::default()).with_external_slot_timeout().with_fence(fence).run()
            })
            .map_err(|e| Error::io("cannot start the job master thread", e))?;
        Ok(MiniCluster { job_manager: jm_tx, threads: vec![thread] })
    }

    /// Where messages to the JobManager go.
    pub(crate) fn job_manager(&self) -> Sender<ToJobManager> {
        self.job_manager.clone()
    }

    /// Submits a job; returns at once with a client to follow it.
    pub fn submit(&self, graph: JobGraph) -> Result<JobClient> {
        self.submit_as(graph, JobId::generate())
    }

    /// Submits a job under a given id.
    pub(crate) fn submit_as(&self, graph: JobGraph, job_id: JobId) -> Result<JobClient> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let name = graph.name().to_string();
        self.job_manager
            .send(ToJobManager::SubmitJob { graph: Arc::new(graph), job_id, result: tx })
            .map_err(|_| Error::ClusterUnavailable("the JobManager stopped".into()))?;
        Ok(JobClient { job_id, name, job_manager: self.job_manager.clone(), result: rx, cluster: None, metrics: None })
    }

    fn stop(&mut self) {
        let _ = self.job_manager.send(ToJobManager::Shutdown);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for MiniCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a finished job reports.
#[derive(Debug, Clone)]
pub struct JobExecutionResult {
    /// The job's id.
    pub job_id: JobId,
    /// The job's name.
    pub job_name: String,
    /// Time from submission to the end.
    pub net_runtime: Duration,
    /// How often the job restarted (failover) before it finished.
    pub restarts: u32,
}

/// Follows and controls one submitted job (Flink's `JobClient`).
pub struct JobClient {
    job_id: JobId,
    name: String,
    job_manager: Sender<ToJobManager>,
    result: Receiver<JobResult>,
    cluster: Option<MiniCluster>,
    metrics: Option<MetricsServer>,
}

impl JobClient {
    pub(crate) fn with_metrics(mut self, metrics: Option<MetricsServer>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Where this job's metrics are served, if they are.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    pub(crate) fn owning(mut self, cluster: MiniCluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The job's id.
    pub fn job_id(&self) -> JobId {
        self.job_id
    }

    /// The job's current status.
    pub fn status(&self) -> Result<JobStatus> {
        Ok(self.details()?.status)
    }

    /// The job's status, restarts and checkpoint counts.
    pub fn details(&self) -> Result<JobDetails> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.job_manager
            .send(ToJobManager::RequestJobStatus { job_id: self.job_id, reply: tx })
            .map_err(|_| Error::ClusterUnavailable("the JobManager stopped".into()))?;
        rx.recv_timeout(Duration::from_secs(10))
            .ok()
            .flatten()
            .ok_or_else(|| Error::ClusterUnavailable(format!("the JobManager does not know job {}", self.job_id)))
    }

    /// Takes a savepoint of the running job into a new directory under
    /// `dir`; returns its path once it is complete.
    pub fn trigger_savepoint(&self, dir: impl Into<std::path::PathBuf>) -> Result<std::path::PathBuf> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.job_manager
            .send(ToJobManager::TriggerSavepoint { job_id: self.job_id, dir: dir.into(), reply: tx })
            .map_err(|_| Error::ClusterUnavailable("the JobManager stopped".into()))?;
        rx.recv()
            .map_err(|_| Error::ClusterUnavailable("the JobManager stopped".into()))?
            .map_err(|e| Error::user(format!("savepoint failed: {e}")))
    }

    /// Asks the JobManager to cancel the job; `wait` then reports CANCELED.
    pub fn cancel(&self) -> Result<()> {
        self.job_manager
            .send(ToJobManager::CancelJob { job_id: self.job_id })
            .map_err(|_| Error::ClusterUnavailable("the JobManager stopped".into()))
    }

    /// Waits up to `timeout` for the job's end, as the JobManager reports it.
    pub(crate) fn poll_result(&self, timeout: Duration) -> Result<Option<JobResult>> {
        match self.result.recv_timeout(timeout) {
            Ok(r) => Ok(Some(r)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Ok(None),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                Err(Error::ClusterUnavailable("the JobManager stopped before the job ended".into()))
            }
        }
    }

    /// Waits for the job to end: `Ok` when it finished, an error naming the
    /// cause when it failed or was canceled.
    pub fn wait(self) -> Result<JobExecutionResult> {
        let result = self
            .result
            .recv()
            .map_err(|_| Error::ClusterUnavailable("the JobManager stopped before the job ended".into()))?;
        self.into_execution_result(result)
    }

    /// What `wait` returns for `result`.
    pub(crate) fn into_execution_result(self, result: JobResult) -> Result<JobExecutionResult> {
        match result.status {
            JobStatus::Finished => Ok(JobExecutionResult {
                job_id: self.job_id,
                job_name: self.name.clone(),
                net_runtime: result.duration,
                restarts: result.restarts,
            }),
            JobStatus::Canceled => Err(Error::JobCanceled(self.job_id)),
            _ => Err(Error::JobFailed {
                job_id: self.job_id,
                cause: result.failure.unwrap_or(FailureCause::TaskFailed {
                    task: "unknown".into(),
                    subtask: 0,
                    message: format!("job ended in state {}", result.status),
                }),
            }),
        }
    }
}
