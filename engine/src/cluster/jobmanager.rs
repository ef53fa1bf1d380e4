//! The JobManager: a dispatcher accepting jobs, the resource manager's slot
//! bookkeeping, and one job master per job that schedules its subtasks onto
//! slots, follows their states and decides the job's state.
//!
//! It is a single event loop over [`ToJobManager`] messages (plus a tick
//! every 100 ms for timeouts and metrics), so its state needs no locks.

use super::protocol::{
    ExecutionState, JobArtifact, JobId, JobResult, JobStatus, SlotId, TaskDeploymentDescriptor,
    ToJobManager, ToTaskManager,
};
use super::resource_manager::ResourceManager;
use crate::error::FailureCause;
use crate::graph::execution::{subtasks, SubtaskId};
use crate::graph::JobGraph;
use crate::metrics;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The state the JobManager keeps for one job.
struct JobMaster {
    id: JobId,
    graph: Arc<JobGraph>,
    status: JobStatus,
    submitted: Instant,
    running_since: Option<Instant>,
    slots: Vec<SlotId>,
    executions: HashMap<SubtaskId, ExecutionState>,
    failure: Option<FailureCause>,
    result: Sender<JobResult>,
}

impl JobMaster {
    fn transition(&mut self, to: JobStatus) {
        tracing::info!(
            "Job {} ({}) switched from state {} to {}.",
            self.graph.name(),
            self.id,
            self.status,
            to
        );
        self.status = to;
    }
}

pub(crate) struct JobManager {
    rm: ResourceManager,
    jobs: BTreeMap<JobId, JobMaster>,
    inbox: Receiver<ToJobManager>,
}

impl JobManager {
    pub(crate) fn new(inbox: Receiver<ToJobManager>) -> Self {
        JobManager {
            rm: ResourceManager::default(),
            jobs: BTreeMap::new(),
            inbox,
        }
    }

    /// Runs the event loop until `Shutdown` or until every sender is gone.
    pub(crate) fn run(mut self) {
        loop {
            match self.inbox.recv_timeout(Duration::from_millis(100)) {
                Ok(ToJobManager::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.tick();
        }
        for job in self.jobs.values() {
            if !job.status.is_terminal() {
                for (s, state) in &job.executions {
                    if !state.is_terminal() {
                        self.send_to_slot(job, *s, ToTaskManager::Cancel { subtask: *s });
                    }
                }
            }
        }
        for gw in self.rm.gateways() {
            let _ = gw.send(ToTaskManager::Shutdown);
        }
    }

    fn handle(&mut self, msg: ToJobManager) {
        match msg {
            ToJobManager::RegisterTaskManager { id, slots, gateway } => {
                tracing::info!("TaskManager {id} registered with {slots} slots");
                let _ = gateway.send(ToTaskManager::Registered);
                self.rm.register(id, slots, gateway);
                self.schedule_waiting();
            }
            ToJobManager::SubmitJob {
                graph,
                job_id,
                result,
            } => {
                tracing::info!("Submitting job '{}' ({job_id}).", graph.name());
                self.jobs.insert(
                    job_id,
                    JobMaster {
                        id: job_id,
                        graph,
                        status: JobStatus::Created,
                        submitted: Instant::now(),
                        running_since: None,
                        slots: Vec::new(),
                        executions: HashMap::new(),
                        failure: None,
                        result,
                    },
                );
                self.schedule_waiting();
            }
            ToJobManager::TaskStateChanged {
                subtask,
                state,
                failure,
            } => self.task_state(subtask, state, failure),
            ToJobManager::CancelJob { job_id } => self.cancel(job_id),
            ToJobManager::RequestJobStatus { job_id, reply } => {
                let _ = reply.send(self.jobs.get(&job_id).map(|j| j.status));
            }
            ToJobManager::Shutdown => {}
        }
    }

    fn schedule_waiting(&mut self) {
        let waiting: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Created)
            .map(|j| j.id)
            .collect();
        for id in waiting {
            self.try_schedule(id);
        }
    }

    fn try_schedule(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let needed = job.graph.required_slots();
        let Some(slots) = self.rm.allocate(id, needed) else {
            tracing::debug!(
                "job {id} waits for {needed} slots ({} free)",
                self.rm.free_slots()
            );
            return;
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.slots = slots;
        job.running_since = Some(Instant::now());
        job.transition(JobStatus::Running);
        metrics::global().running_jobs.inc();
        let artifact = JobArtifact::InProcess(job.graph.clone());
        let all = subtasks(&job.graph, id, 0);
        for s in &all {
            job.executions.insert(*s, ExecutionState::Deploying);
        }
        let mut lost = None;
        for s in all {
            let slot = job.slots[s.subtask as usize].clone();
            let tdd = TaskDeploymentDescriptor {
                subtask: s,
                slot: slot.clone(),
                artifact: artifact.clone(),
            };
            let sent = self
                .rm
                .gateway(&slot.task_manager)
                .map(|gw| gw.send(ToTaskManager::Deploy(Box::new(tdd))));
            if !matches!(sent, Some(Ok(()))) {
                lost = Some((s, slot.task_manager.to_string()));
                break;
            }
        }
        if let Some((s, tm)) = lost {
            self.task_state(
                s,
                ExecutionState::Failed,
                Some(FailureCause::TaskManagerLost(tm)),
            );
        }
    }

    fn send_to_slot(&self, job: &JobMaster, s: SubtaskId, msg: ToTaskManager) {
        if let Some(gw) = job
            .slots
            .get(s.subtask as usize)
            .and_then(|slot| self.rm.gateway(&slot.task_manager))
        {
            let _ = gw.send(msg);
        }
    }

    fn cancel_running(&self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        for (s, state) in &job.executions {
            if !state.is_terminal() {
                self.send_to_slot(job, *s, ToTaskManager::Cancel { subtask: *s });
            }
        }
    }

    fn task_state(
        &mut self,
        subtask: SubtaskId,
        state: ExecutionState,
        failure: Option<FailureCause>,
    ) {
        let Some(job) = self.jobs.get_mut(&subtask.job) else {
            return;
        };
        if job.status.is_terminal() {
            return;
        }
        job.executions.insert(subtask, state);
        if job.status == JobStatus::Failing
            && job.failure.as_ref().is_some_and(FailureCause::is_secondary)
        {
            if let Some(root) = failure.as_ref().filter(|f| !f.is_secondary()) {
                job.failure = Some(root.clone());
            }
        }
        let mut cancel_others = false;
        if matches!(state, ExecutionState::Failed | ExecutionState::Canceled)
            && job.status == JobStatus::Running
        {
            if state == ExecutionState::Failed {
                if let Some(cause) = &failure {
                    tracing::info!("{cause}");
                }
                job.failure = failure;
                job.transition(JobStatus::Failing);
            } else {
                job.transition(JobStatus::Cancelling);
            }
            cancel_others = true;
        }
        if cancel_others {
            self.cancel_running(subtask.job);
        }
        self.maybe_finish(subtask.job);
    }

    fn maybe_finish(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.executions.values().any(|s| !s.is_terminal()) {
            return;
        }
        let end = match job.status {
            JobStatus::Running => JobStatus::Finished,
            JobStatus::Failing => JobStatus::Failed,
            JobStatus::Cancelling => JobStatus::Canceled,
            _ => return,
        };
        job.transition(end);
        metrics::global().running_jobs.dec();
        self.finalize(id);
    }

    fn finalize(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let _ = job.result.send(JobResult {
            job_id: id,
            status: job.status,
            failure: job.failure.clone(),
            duration: job.submitted.elapsed(),
        });
        for gw in self.rm.gateways() {
            let _ = gw.send(ToTaskManager::ReleaseJob { job_id: id });
        }
        if let Ok(m) = metrics::global()
            .job_uptime
            .get_metric_with_label_values(&[&id.to_string(), job.graph.name()])
        {
            m.set(0);
        }
        self.rm.release(id);
        self.schedule_waiting();
    }

    fn cancel(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        match job.status {
            JobStatus::Created => {
                job.transition(JobStatus::Canceled);
                self.finalize(id);
            }
            JobStatus::Running => {
                job.transition(JobStatus::Cancelling);
                self.cancel_running(id);
                self.maybe_finish(id);
            }
            _ => {}
        }
    }

    fn tick(&mut self) {
        let total = self.rm.total_slots();
        let mut timed_out = Vec::new();
        for job in self.jobs.values() {
            match job.status {
                JobStatus::Created => {
                    let waited = job.submitted.elapsed();
                    if waited >= job.graph.settings.slot_request_timeout {
                        timed_out.push((job.id, job.graph.required_slots(), waited));
                    }
                }
                JobStatus::Running => {
                    if let Some(since) = job.running_since {
                        metrics::global()
                            .job_uptime
                            .with_label_values(&[&job.id.to_string(), job.graph.name()])
                            .set(since.elapsed().as_millis() as i64);
                    }
                }
                _ => {}
            }
        }
        for (id, required, waited) in timed_out {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.failure = Some(FailureCause::NotEnoughSlots {
                    required,
                    available: total,
                    waited_ms: waited.as_millis() as u64,
                });
                job.transition(JobStatus::Failed);
                self.finalize(id);
            }
        }
    }
}
