//! The JobManager's state: the TaskManagers and their job processes, the
//! jobs, the uploaded binaries and the driver processes. One thread owns it
//! (the event loop in [`super`]); everything else reaches it through
//! [`super::JobManager`].

use super::{Artifact, JobManagerSettings};
use crossbeam_channel::Sender;
use sluice::cluster::protocol::{JobDetails, JobStatus};
use sluice::cluster::remote::messages::{LogAnswer, LogRequest, ToDriver, ToTaskManagerProcess, VertexSummary};
use sluice::cluster::remote::wire::Link;
use sluice::error::{Error, Result};
use sluice::ids::JobId;
use sluice::metrics;
use sluice::transport::JobSecret;
use sluice_checkpoint::clock::now_ms;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Child;
use std::time::Instant;

/// A TaskManager as the resource manager sees it.
pub(crate) struct TaskManagerEntry {
    pub(super) link: Link,
    /// Connection generation: a stale connection's end must not remove a
    /// TaskManager that registered again.
    pub(super) generation: u64,
    pub(crate) slots: u32,
    pub(crate) last_heartbeat: Instant,
    pub(crate) metrics_address: Option<String>,
    /// Job processes here, by (job, seq).
    pub(crate) processes: BTreeMap<(JobId, u32), JobProcessEntry>,
}

impl TaskManagerEntry {
    /// The address its control connection comes from.
    pub(crate) fn address(&self) -> &str {
        self.link.peer()
    }
}

/// A job process on a TaskManager.
#[derive(Debug, Clone)]
pub(crate) struct JobProcessEntry {
    /// Slots it hosts.
    pub(crate) slots: u32,
    /// Where it serves `/metrics`, once it has reported.
    pub(crate) metrics_address: Option<String>,
}

impl TaskManagerEntry {
    pub(crate) fn used(&self) -> u32 {
        self.processes.values().map(|p| p.slots).sum()
    }
}

/// A job as the dispatcher sees it.
pub(crate) struct JobEntry {
    pub(crate) id: JobId,
    pub(crate) name: String,
    pub(crate) status: JobStatus,
    /// Submission time, ms since the epoch.
    pub(crate) start_time: i64,
    /// End time, ms since the epoch.
    pub(crate) end_time: Option<i64>,
    pub(crate) artifact: Artifact,
    pub(crate) args: Vec<String>,
    pub(crate) conf_lines: String,
    /// Proves a process belongs to this job; only its processes get it.
    pub(super) secret: JobSecret,
    pub(super) driver: Option<Link>,
    pub(super) driver_address: Option<String>,
    /// Where the driver serves `/metrics`.
    pub(crate) driver_metrics: Option<String>,
    pub(crate) required_slots: u32,
    pub(crate) vertices: Vec<VertexSummary>,
    pub(crate) details: Option<JobDetails>,
    pub(crate) failure: Option<String>,
    pub(super) waiting_since: Option<Instant>,
    pub(super) timeout_sent: bool,
    pub(super) next_seq: u32,
    pub(crate) log: PathBuf,
    pub(super) submitted: Instant,
}

/// What a savepoint request is answered with: its location, or why not.
pub type SavepointAnswer = std::result::Result<String, String>;

/// The JobManager's state, owned by its event loop.
pub struct Cluster {
    pub(crate) settings: JobManagerSettings,
    /// When this JobManager started.
    pub(crate) started: Instant,
    pub(super) rpc_address: String,
    /// The REST endpoint's address (it also serves the JobManager's `/metrics`).
    pub(crate) rest_address: Option<String>,
    pub(crate) task_managers: BTreeMap<String, TaskManagerEntry>,
    pub(crate) jobs: BTreeMap<JobId, JobEntry>,
    pub(crate) artifacts: BTreeMap<String, Artifact>,
    pub(super) drivers: HashMap<JobId, Child>,
    pub(super) savepoints: HashMap<u64, Sender<SavepointAnswer>>,
    /// Log requests sent to TaskManagers, by request id.
    pub(super) log_requests: HashMap<u64, Sender<Result<LogAnswer, String>>>,
    pub(super) next_id: u64,
    /// With high availability: leadership, the job store, the fence.
    pub(crate) ha: Option<super::leadership::HaState>,
}

impl Cluster {
    pub(super) fn new(
        settings: JobManagerSettings,
        rpc_address: String,
        ha: Option<super::leadership::HaState>,
    ) -> Self {
        Cluster {
            settings,
            started: Instant::now(),
            rpc_address,
            rest_address: None,
            task_managers: BTreeMap::new(),
            jobs: BTreeMap::new(),
            artifacts: BTreeMap::new(),
            drivers: HashMap::new(),
            savepoints: HashMap::new(),
            log_requests: HashMap::new(),
            next_id: 1,
            ha,
        }
    }

    /// The RPC endpoint's bound address.
    pub fn rpc_address(&self) -> &str {
        &self.rpc_address
    }

    /// Records where the REST endpoint (and the JobManager's `/metrics`) is.
    pub fn set_rest_address(&mut self, addr: String) {
        self.rest_address = Some(addr);
    }

    /// Asks every TaskManager to stop (they stop their job processes
    /// first); used when an application cluster ends.
    pub fn shut_down_task_managers(&mut self) {
        for (id, tm) in &self.task_managers {
            if let Err(e) = tm.link.send(&ToTaskManagerProcess::Shutdown) {
                tracing::warn!("cannot tell TaskManager {id} to shut down: {e}");
            }
        }
    }

    /// Asks a job's driver to cancel the job.
    pub fn cancel(&mut self, id: JobId) -> Result<()> {
        self.check_acting()?;
        let job = self.jobs.get_mut(&id).ok_or_else(|| Error::user(format!("no job {id}")))?;
        if job.status.is_terminal() {
            return Err(Error::user(format!("job {id} has already ended ({})", job.status)));
        }
        match &job.driver {
            Some(link) => link.send(&ToDriver::CancelJob),
            None => {
                // Not started yet: stop its binary.
                self.kill_driver(id);
                self.end_job(id, JobStatus::Canceled, None);
                Ok(())
            }
        }
    }

    /// Sends a savepoint request to the job's driver; the answer arrives on
    /// the returned channel (the event loop must not wait for it).
    pub fn request_savepoint(
        &mut self,
        id: JobId,
        dir: String,
    ) -> Result<crossbeam_channel::Receiver<SavepointAnswer>> {
        self.check_acting()?;
        let job = self.jobs.get(&id).ok_or_else(|| Error::user(format!("no job {id}")))?;
        if job.status != JobStatus::Running {
            return Err(Error::user(format!("job {id} is {}, a savepoint needs a RUNNING job", job.status)));
        }
        let link = job.driver.clone().ok_or_else(|| Error::user(format!("job {id} has no driver yet")))?;
        let request = self.next_id;
        self.next_id += 1;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.savepoints.insert(request, tx);
        link.send(&ToDriver::TriggerSavepoint { request, dir })?;
        Ok(rx)
    }

    /// Asks TaskManager `tm` about its logs; the answer arrives on the
    /// returned channel (see [`ToTaskManagerProcess::Logs`]).
    pub fn request_logs(
        &mut self,
        tm: &str,
        what: LogRequest,
    ) -> Result<crossbeam_channel::Receiver<Result<LogAnswer, String>>> {
        let entry = self.task_managers.get(tm).ok_or_else(|| Error::user(format!("no TaskManager '{tm}'")))?;
        let request = self.next_id;
        self.next_id += 1;
        entry.link.send(&ToTaskManagerProcess::Logs { request, what })?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.log_requests.len() >= 256 {
            // Answers that never came (a TaskManager went away): their
            // askers have given up long ago.
            self.log_requests.clear();
        }
        self.log_requests.insert(request, tx);
        Ok(rx)
    }

    /// Marks a job ended and releases its job processes on the TaskManagers.
    pub(super) fn end_job(&mut self, id: JobId, status: JobStatus, failure: Option<String>) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if job.status.is_terminal() {
            return;
        }
        tracing::info!("job {id} ended: {status}{}", failure.as_deref().map(|f| format!(" ({f})")).unwrap_or_default());
        job.status = status;
        job.end_time = Some(now_ms());
        if job.failure.is_none() {
            job.failure = failure;
        }
        job.driver = None;
        if let Err(e) = self.record_job(id) {
            tracing::error!("cannot record the end of job {id} for high availability: {e}");
        }
        for tm in self.task_managers.values_mut() {
            let before = tm.processes.len();
            tm.processes.retain(|(j, _), _| *j != id);
            if tm.processes.len() != before {
                let _ = tm.link.send(&ToTaskManagerProcess::StopJob { job: id });
            }
        }
    }

    /// The periodic work of the event loop: TaskManagers whose heartbeats
    /// stopped are lost, drivers are checked, slots granted, gauges set.
    pub(super) fn tick(&mut self) {
        let now = Instant::now();
        let timeout = self.settings.heartbeat_timeout;
        let silent: Vec<String> = self
            .task_managers
            .iter()
            .filter(|(_, t)| t.last_heartbeat.elapsed() > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            if let Some(tm) = self.task_managers.remove(&id) {
                eprintln!("TaskManager {id} sent no heartbeat for {timeout:?}: declared lost");
                tm.link.close();
            }
        }
        self.check_drivers();
        self.grant_slots(now);
        let m = metrics::global();
        m.task_managers.set(self.task_managers.len() as i64);
        m.slots_total.set(i64::from(self.total_slots()));
        m.slots_available.set(i64::from(self.free_slots()));
        m.running_jobs.set(self.jobs.values().filter(|j| j.status == JobStatus::Running).count() as i64);
    }
}
