//! The JobManager: a dispatcher accepting jobs, the resource manager's slot
//! bookkeeping, and one job master per job that schedules its subtasks onto
//! slots, follows their states, coordinates checkpoints (see
//! [`sluice_checkpoint::coordinator`]) and restarts the job from its latest
//! completed checkpoint under its restart strategy.
//!
//! It is a single event loop over [`ToJobManager`] messages (plus a tick
//! every 20 ms for checkpoint triggers, timeouts, restarts and metrics), so
//! its state needs no locks.

use super::fence::{CheckpointFence, Fenced};
use super::inbox::{JobResult, ToJobManager};
use super::job_graphs::JobGraphs;
use super::protocol::{
    ExecutionState, FromTaskManager, JobDetails, JobStatus, TaskDeploymentDescriptor, ToTaskManager,
};
use super::resource_manager::ResourceManager;
use super::restart::RestartTracker;
use super::stats::{now_ms, CheckpointAck, CheckpointSettings, ExceptionEntry, JobObserver, RestoredCheckpoint};
use crate::error::FailureCause;
use crate::faults;
use crate::graph::execution::subtasks;
use crate::graph::JobGraph;
use crate::ids::{JobId, SlotId, SubtaskId, TaskManagerId};
use crate::metrics;
use crate::runtime::restore::RestorePlan;
use crate::runtime::SubtaskCheckpointMetrics;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use sluice_checkpoint::coordinator::{AbortReason, AckOutcome, CheckpointCoordinator, PendingCheckpoint, TaskKey};
use sluice_checkpoint::metadata::SubtaskStateHandle;
use sluice_checkpoint::pending::{JobDescription, OperatorInfo};
use sluice_checkpoint::{storage, CheckpointBarrier, CheckpointId, CheckpointKind};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

type SavepointReply = Sender<Result<PathBuf, String>>;

/// The state the JobManager keeps for one job.
struct JobMaster {
    id: JobId,
    graph: Arc<JobGraph>,
    status: JobStatus,
    submitted: Instant,
    running_since: Option<Instant>,
    /// Since when the job waits for slots (first start, or a restart after
    /// its slots went away with a TaskManager).
    waiting_for_slots: Option<Instant>,
    slots: Vec<SlotId>,
    attempt: u32,
    executions: HashMap<SubtaskId, ExecutionState>,
    failure: Option<FailureCause>,
    result: Sender<JobResult>,
    coordinator: CheckpointCoordinator,
    /// The state a (re)start restores: the latest completed checkpoint, or
    /// the savepoint the job started from.
    restore: Option<Arc<RestorePlan>>,
    latest_checkpoint: Option<CheckpointId>,
    restarts: RestartTracker,
    restart_at: Option<Instant>,
    savepoints: HashMap<CheckpointId, (PathBuf, SavepointReply)>,
    /// What the web UI shows of the job.
    observer: JobObserver,
}

impl JobMaster {
    fn transition(&mut self, to: JobStatus) {
        tracing::info!("Job {} ({}) switched from state {} to {}.", self.graph.name(), self.id, self.status, to);
        self.status = to;
    }

    fn all_running(&self) -> bool {
        !self.executions.is_empty() && self.executions.values().all(|s| *s == ExecutionState::Running)
    }

    fn all_terminal(&self) -> bool {
        self.executions.values().all(|s| s.is_terminal())
    }

    fn labels(&self) -> [String; 2] {
        [self.id.to_string(), self.graph.name().to_string()]
    }

    /// Records a failure in the exception history; `origin` is the subtask
    /// that reported it, if one did.
    fn record_exception(&mut self, cause: &FailureCause, origin: Option<SubtaskId>) {
        let entry = ExceptionEntry::of(cause, origin, &self.slots, self.attempt);
        self.observer.exceptions.record(entry);
    }
}

/// The subtasks of an attempt as the checkpoint coordinator names them:
/// every one must acknowledge a checkpoint.
fn checkpoint_tasks(executions: &HashMap<SubtaskId, ExecutionState>) -> BTreeSet<TaskKey> {
    executions.keys().map(|s| (s.vertex as u32, s.subtask)).collect()
}

pub(crate) struct JobManager {
    rm: ResourceManager,
    jobs: BTreeMap<JobId, JobMaster>,
    inbox: Receiver<ToJobManager>,
    /// Where this process's TaskManagers find the graphs of the jobs.
    graphs: JobGraphs,
    /// In cluster mode the cluster's resource manager owns
    /// `slot.request.timeout` (it knows every slot) and sends `FailJob`.
    external_slot_timeout: bool,
    /// With JobManager high availability: the leader's fence around
    /// checkpoint ids and completions (see [`super::fence`]).
    fence: Option<Box<dyn CheckpointFence>>,
}

impl JobManager {
    pub(crate) fn new(inbox: Receiver<ToJobManager>, graphs: JobGraphs) -> Self {
        JobManager {
            rm: ResourceManager::default(),
            jobs: BTreeMap::new(),
            inbox,
            graphs,
            external_slot_timeout: false,
            fence: None,
        }
    }

    /// Asks `fence` before every checkpoint and before announcing one
    /// complete (a job master started by a highly available JobManager).
    pub(crate) fn with_fence(mut self, fence: Option<Box<dyn CheckpointFence>>) -> Self {
        self.fence = fence;
        self
    }

    /// Leaves the slot request timeout to the cluster (see the field).
    pub(crate) fn with_external_slot_timeout(mut self) -> Self {
        self.external_slot_timeout = true;
        self
    }

    /// Runs the event loop until `Shutdown` or until every sender is gone.
    pub(crate) fn run(mut self) {
        loop {
            match self.inbox.recv_timeout(Duration::from_millis(20)) {
                Ok(ToJobManager::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.tick();
        }
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            self.cancel_running(id);
        }
        for gw in self.rm.gateways() {
            let _ = gw.send(ToTaskManager::Shutdown);
        }
    }

    fn handle(&mut self, msg: ToJobManager) {
        match msg {
            ToJobManager::TaskManagerConnected { registration, gateway } => {
                tracing::info!("TaskManager {} registered with {} slots", registration.id, registration.slots);
                let _ = gateway.send(ToTaskManager::Registered);
                self.rm.register(registration, gateway);
                self.schedule_waiting();
            }
            ToJobManager::TaskManagerLost { id } => self.task_manager_lost(id),
            ToJobManager::FailJob { job_id, cause } => self.fail_job(job_id, cause),
            ToJobManager::SubmitJob { graph, job_id, result } => self.submit(graph, job_id, result),
            ToJobManager::FromTaskManager(msg) => self.on_task_manager_report(msg),
            ToJobManager::CancelJob { job_id } => self.cancel(job_id),
            ToJobManager::RequestJobStatus { job_id, reply } => {
                let _ = reply.send(self.jobs.get(&job_id).map(|j| JobDetails {
                    status: j.status,
                    restarts: j.restarts.restarts(),
                    completed_checkpoints: j.coordinator.stats.completed,
                    failed_checkpoints: j.coordinator.stats.failed,
                    latest_checkpoint: j.latest_checkpoint,
                    view: j.observer.view(&j.graph, &j.executions, &self.rm.placement(&j.slots)),
                }));
            }
            ToJobManager::TriggerSavepoint { job_id, dir, reply } => self.trigger_savepoint(job_id, dir, reply),
            ToJobManager::Shutdown => {}
        }
    }

    fn on_task_manager_report(&mut self, msg: FromTaskManager) {
        match msg {
            FromTaskManager::TaskStateChanged { subtask, state, failure } => self.task_state(subtask, state, failure),
            FromTaskManager::AcknowledgeCheckpoint { subtask, checkpoint, handles, metrics } => {
                self.acknowledge(subtask, checkpoint, handles, metrics)
            }
            FromTaskManager::SubtaskMetrics { samples } => {
                for s in samples {
                    if let Some(job) = self.jobs.get_mut(&s.subtask.job) {
                        job.observer.rates.sample(job.attempt, s);
                    }
                }
            }
            FromTaskManager::DeclineCheckpoint { subtask, checkpoint, reason } => {
                let task = self.task_name(&subtask);
                self.abort_checkpoint(subtask.job, checkpoint, AbortReason::Declined { task, message: reason });
            }
        }
    }

    fn task_name(&self, s: &SubtaskId) -> String {
        self.jobs
            .get(&s.job)
            .and_then(|j| j.graph.vertices().get(s.vertex).map(|v| format!("{} ({})", v.name, s.subtask + 1)))
            .unwrap_or_default()
    }

    fn submit(&mut self, graph: Arc<JobGraph>, job_id: JobId, result: Sender<JobResult>) {
        tracing::info!("Submitting job '{}' ({job_id}).", graph.name());
        self.graphs.insert(job_id, graph.clone());
        let settings = &graph.settings;
        let restore = settings.restore.clone();
        let first_id = restore.as_ref().map(|r| r.metadata.checkpoint_id.0 + 1).unwrap_or(1);
        let coordinator = CheckpointCoordinator::new(settings.checkpointing.clone().unwrap_or_default(), first_id);
        let restarts = RestartTracker::new(settings.restart.clone());
        let mut observer = JobObserver::default();
        observer.checkpoints.set_settings(CheckpointSettings::of(&graph));
        self.jobs.insert(
            job_id,
            JobMaster {
                id: job_id,
                graph,
                status: JobStatus::Created,
                submitted: Instant::now(),
                running_since: None,
                waiting_for_slots: Some(Instant::now()),
                slots: Vec::new(),
                attempt: 0,
                executions: HashMap::new(),
                failure: None,
                result,
                coordinator,
                restore,
                latest_checkpoint: None,
                restarts,
                restart_at: None,
                savepoints: HashMap::new(),
                observer,
            },
        );
        self.schedule_waiting();
    }

    fn schedule_waiting(&mut self) {
        let waiting: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.waiting_for_slots.is_some() && !j.status.is_terminal() && j.all_terminal())
            .map(|j| j.id)
            .collect();
        for id in waiting {
            self.try_schedule(id);
        }
    }

    fn try_schedule(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else { return };
        let needed = job.graph.required_slots();
        let Some(slots) = self.rm.allocate(id, needed) else {
            tracing::debug!("job {id} waits for {needed} slots ({} free)", self.rm.free_slots());
            return;
        };
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.slots = slots;
        job.waiting_for_slots = None;
        if job.running_since.is_none() {
            job.running_since = Some(Instant::now());
            metrics::global().running_jobs.inc();
        }
        self.deploy(id);
    }

    /// Deploys every subtask of the job's current attempt.
    fn deploy(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.transition(JobStatus::Running);
        job.coordinator.start(Instant::now());
        let all = subtasks(&job.graph, id, job.attempt);
        job.executions = all.iter().map(|s| (*s, ExecutionState::Deploying)).collect();
        job.observer.rates.begin_attempt(job.attempt);
        if let Some(plan) = &job.restore {
            job.observer.checkpoints.restored(RestoredCheckpoint {
                id: plan.metadata.checkpoint_id.0,
                savepoint: plan.metadata.kind == CheckpointKind::Savepoint,
                restore_time: now_ms(),
                external_path: plan.dir.display().to_string(),
            });
            tracing::info!(
                "Job {} restores from {} {} at {}",
                job.graph.name(),
                if plan.metadata.kind == CheckpointKind::Savepoint { "savepoint" } else { "checkpoint" },
                plan.metadata.checkpoint_id,
                plan.dir.display()
            );
        }
        let placement = Arc::new(self.rm.placement(&job.slots));
        let mut lost = None;
        for s in all {
            let slot = job.slots[s.subtask as usize].clone();
            let tdd = TaskDeploymentDescriptor {
                subtask: s,
                slot: slot.clone(),
                restore: job.restore.clone(),
                placement: placement.clone(),
            };
            let sent = self.rm.gateway(&slot.task_manager).map(|gw| gw.send(ToTaskManager::Deploy(Box::new(tdd))));
            if !matches!(sent, Some(Ok(()))) {
                lost = Some((s, slot.task_manager.to_string()));
                break;
            }
        }
        if let Some((s, tm)) = lost {
            self.task_state(s, ExecutionState::Failed, Some(FailureCause::TaskManagerLost(tm)));
        }
    }

    fn send_to_slot(&self, job: &JobMaster, s: SubtaskId, msg: ToTaskManager) {
        if let Some(gw) = job.slots.get(s.subtask as usize).and_then(|slot| self.rm.gateway(&slot.task_manager)) {
            let _ = gw.send(msg);
        }
    }

    fn broadcast(&self, msg: impl Fn() -> ToTaskManager) {
        for gw in self.rm.gateways() {
            let _ = gw.send(msg());
        }
    }

    fn cancel_running(&self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else { return };
        for (s, state) in &job.executions {
            if !state.is_terminal() {
                self.send_to_slot(job, *s, ToTaskManager::Cancel { subtask: *s });
            }
        }
    }

    fn task_state(&mut self, subtask: SubtaskId, state: ExecutionState, failure: Option<FailureCause>) {
        let Some(job) = self.jobs.get_mut(&subtask.job) else { return };
        if job.status.is_terminal() || subtask.attempt != job.attempt {
            return;
        }
        job.executions.insert(subtask, state);
        if job.status == JobStatus::Failing && job.failure.as_ref().is_some_and(FailureCause::is_secondary) {
            if let Some(root) = failure.as_ref().filter(|f| !f.is_secondary()) {
                job.failure = Some(root.clone());
            }
        }
        if state == ExecutionState::Finished && job.coordinator.in_progress() > 0 {
            // A finished subtask cannot take part in a checkpoint any more.
            let ids = job.coordinator.abort_all(Instant::now());
            job.observer.checkpoints.failed_all(&ids, now_ms(), "a subtask finished");
            for c in ids {
                self.broadcast(|| ToTaskManager::AbortCheckpoint { job_id: subtask.job, checkpoint: c });
            }
        }
        let Some(job) = self.jobs.get_mut(&subtask.job) else { return };
        if matches!(state, ExecutionState::Failed | ExecutionState::Canceled) && job.status == JobStatus::Running {
            let cause = failure.unwrap_or(FailureCause::TaskFailed {
                task: String::new(),
                subtask: subtask.subtask,
                message: "canceled unexpectedly".into(),
            });
            self.fail_over(subtask.job, cause, Some(subtask));
        }
        self.maybe_finish(subtask.job);
    }

    /// A failure while running: restart under the strategy, or fail.
    fn fail_over(&mut self, id: JobId, cause: FailureCause, origin: Option<SubtaskId>) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let now = Instant::now();
        job.record_exception(&cause, origin);
        let aborted = job.coordinator.abort_all(now);
        job.observer.checkpoints.failed_all(&aborted, now_ms(), "the job failed over");
        for (_, (_, reply)) in job.savepoints.drain() {
            let _ = reply.send(Err(format!("the job failed while the savepoint was taken: {cause}")));
        }
        match job.restarts.on_failure(now) {
            Some(wait) => {
                tracing::warn!(
                    "Job {} ({id}) failed: {cause}; restart {} in {wait:?} from {}",
                    job.graph.name(),
                    job.restarts.restarts(),
                    match &job.restore {
                        Some(p) => format!("checkpoint {}", p.metadata.checkpoint_id),
                        None => "the beginning (no checkpoint yet)".into(),
                    }
                );
                job.restart_at = Some(now + wait);
                job.failure = Some(cause);
                job.transition(JobStatus::Restarting);
            }
            None => {
                tracing::info!("{cause}");
                job.failure = Some(cause);
                job.transition(JobStatus::Failing);
            }
        }
        self.cancel_running(id);
    }

    fn maybe_finish(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if !job.all_terminal() {
            return;
        }
        let end = match job.status {
            JobStatus::Running => JobStatus::Finished,
            JobStatus::Failing => JobStatus::Failed,
            JobStatus::Cancelling => JobStatus::Canceled,
            _ => return,
        };
        job.transition(end);
        self.finalize(id);
    }

    fn finalize(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if job.running_since.take().is_some() {
            metrics::global().running_jobs.dec();
        }
        for (_, (_, reply)) in job.savepoints.drain() {
            let _ = reply.send(Err(format!("the job ended ({}) before the savepoint completed", job.status)));
        }
        let _ = job.result.send(JobResult {
            job_id: id,
            status: job.status,
            failure: job.failure.clone(),
            duration: job.submitted.elapsed(),
            restarts: job.restarts.restarts(),
        });
        let labels = job.labels();
        self.broadcast(|| ToTaskManager::ReleaseJob { job_id: id });
        if let Ok(m) = metrics::global().job_uptime.get_metric_with_label_values(&[&labels[0], &labels[1]]) {
            m.set(0);
        }
        self.rm.release(id);
        self.graphs.remove(id);
        self.schedule_waiting();
    }

    fn cancel(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        match job.status {
            JobStatus::Created => {
                job.transition(JobStatus::Canceled);
                self.finalize(id);
            }
            JobStatus::Running | JobStatus::Restarting => {
                job.transition(JobStatus::Cancelling);
                self.cancel_running(id);
                self.maybe_finish(id);
            }
            _ => {}
        }
    }

    // ---- checkpoints ----

    fn send_trigger(&self, job: &JobMaster, barrier: CheckpointBarrier) {
        for (s, _) in job.executions.iter().filter(|(s, _)| job.graph.vertices()[s.vertex].is_source) {
            self.send_to_slot(job, *s, ToTaskManager::TriggerCheckpoint { subtask: *s, barrier });
        }
    }

    fn trigger_savepoint(&mut self, id: JobId, dir: PathBuf, reply: SavepointReply) {
        let Some(job) = self.jobs.get_mut(&id) else {
            let _ = reply.send(Err(format!("no job {id}")));
            return;
        };
        if !job.all_running() {
            let _ = reply.send(Err(format!("job {id} is {}, not running with all subtasks", job.status)));
            return;
        }
        let allowed = job.graph.settings.savepoints_dir.as_deref();
        let dir = match dir.to_str().map(|d| sluice_checkpoint::names::savepoint_target(d, allowed)) {
            Some(Ok(dir)) => dir,
            Some(Err(e)) => {
                let _ = reply.send(Err(e.to_string()));
                return;
            }
            None => {
                let _ = reply.send(Err(format!("savepoint path {dir:?} is not valid UTF-8")));
                return;
            }
        };
        if let Some(fence) = self.fence.as_mut() {
            match fence.reserve_id(job.coordinator.next_id()) {
                Ok(n) => job.coordinator.skip_to(n),
                Err(e) => fenced(&e),
            }
        }
        let expected = checkpoint_tasks(&job.executions);
        let barrier = job.coordinator.trigger(Instant::now(), expected, CheckpointKind::Savepoint);
        job.observer.checkpoints.triggered(barrier.id.0, true, now_ms(), job.executions.len() as u32);
        job.savepoints.insert(barrier.id, (dir, reply));
        let Some(job) = self.jobs.get(&id) else { return };
        self.send_trigger(job, barrier);
    }

    fn acknowledge(
        &mut self,
        s: SubtaskId,
        id: CheckpointId,
        handles: Vec<(String, SubtaskStateHandle)>,
        metrics: SubtaskCheckpointMetrics,
    ) {
        let Some(job) = self.jobs.get_mut(&s.job) else { return };
        if s.attempt != job.attempt {
            return;
        }
        job.observer.checkpoints.acknowledged(
            id.0,
            CheckpointAck {
                vertex: s.vertex as u32,
                subtask: s.subtask,
                ack_time: now_ms(),
                state_size: handles.iter().map(|(_, h)| h.size).sum(),
                metrics,
            },
        );
        match job.coordinator.acknowledge(id, (s.vertex as u32, s.subtask), handles) {
            AckOutcome::AllAcknowledged(pending) => self.complete_checkpoint(s.job, pending),
            AckOutcome::Ignored(why) => tracing::warn!("acknowledgement of checkpoint {id} by {s:?} ignored: {why:?}"),
            AckOutcome::Pending | AckOutcome::Unknown => {}
        }
    }

    /// Finalizes a fully acknowledged checkpoint or savepoint (it writes its
    /// own metadata), then announces a checkpoint's completion and prunes
    /// old ones.
    fn complete_checkpoint(&mut self, id: JobId, pending: PendingCheckpoint) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let root = job.graph.settings.checkpoint_root.clone();
        let barrier = pending.barrier();
        let cp = barrier.id;
        let dir = storage::checkpoint_dir(&root, &id.to_string(), cp);
        let (job_id, graph) = (id.to_string(), job.graph.clone());
        let operator = |op: &str| {
            graph.operator(op).map(|(name, parallelism, keyed)| OperatorInfo { name: name.into(), parallelism, keyed })
        };
        let operators = graph.identity().operators;
        let description = JobDescription {
            job_id: &job_id,
            job_name: graph.name(),
            max_parallelism: graph.settings.max_parallelism,
            operator: &operator,
            operators: &operators,
        };
        if barrier.kind == CheckpointKind::Savepoint {
            let Some((target, reply)) = job.savepoints.remove(&cp) else { return };
            let written = pending.finalize_savepoint(&description, &dir, &target);
            let _ = std::fs::remove_dir_all(&dir);
            let answer = match written {
                Ok(done) => {
                    job.coordinator.completed(&done, Instant::now());
                    job.observer.checkpoints.completed(cp.0, now_ms(), done.dir.display().to_string());
                    tracing::info!("savepoint {cp} of job {id} written to {}", done.dir.display());
                    Ok(done.dir)
                }
                Err(e) => {
                    job.observer.checkpoints.failed(cp.0, now_ms(), e.to_string());
                    Err(e.to_string())
                }
            };
            let _ = reply.send(answer);
            return;
        }
        let done = match pending.finalize(&description, &dir) {
            Ok(done) => done,
            Err(e) => {
                self.abort_checkpoint(id, cp, AbortReason::Storage(e.to_string()));
                return;
            }
        };
        if let Some(fence) = self.fence.as_mut() {
            if let Err(e) = fence.record_completed(cp.0, &done.dir) {
                fenced(&e);
            }
        }
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.coordinator.completed(&done, Instant::now());
        job.observer.checkpoints.completed(cp.0, now_ms(), done.dir.display().to_string());
        job.latest_checkpoint = Some(cp);
        job.restore = Some(Arc::new(RestorePlan { metadata: done.metadata, dir: done.dir }));
        tracing::info!(
            "Completed checkpoint {cp} for job {} ({} bytes in {:?}).",
            job.graph.name(),
            job.coordinator.stats.last_size,
            job.coordinator.stats.last_duration
        );
        let faults = &job.graph.settings.faults;
        if faults.abort_after_complete.is_some_and(|n| n == 0 || n == cp.0)
            || faults.abort_after_completions.is_some_and(|k| job.coordinator.stats.completed >= k)
        {
            faults::abort_process(&format!("after checkpoint {cp} completed, before notifying the tasks"));
        }
        let retained = job.graph.settings.retained;
        // Uploads of a checkpoint still in flight are named by no metadata
        // yet: sweep shared files only when none is.
        let sweep_shared = job.coordinator.in_progress() == 0;
        self.broadcast(|| ToTaskManager::NotifyCheckpointComplete { job_id: id, checkpoint: cp });
        if let Err(e) = storage::retain(&root, &id.to_string(), retained, sweep_shared) {
            tracing::warn!("cannot remove old checkpoints: {e}");
        }
    }

    fn abort_checkpoint(&mut self, id: JobId, cp: CheckpointId, reason: AbortReason) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let too_many = job.coordinator.abort(cp, &reason, Instant::now());
        job.observer.checkpoints.failed(cp.0, now_ms(), reason.to_string());
        if let Some((_, reply)) = job.savepoints.remove(&cp) {
            let _ = reply.send(Err(format!("savepoint {cp} failed: {reason}")));
        }
        let dir = storage::checkpoint_dir(&job.graph.settings.checkpoint_root, &id.to_string(), cp);
        let _ = std::fs::remove_dir_all(dir);
        self.broadcast(|| ToTaskManager::AbortCheckpoint { job_id: id, checkpoint: cp });
        if too_many && self.jobs.get(&id).is_some_and(|j| j.status == JobStatus::Running) {
            self.fail_over(id, FailureCause::CheckpointsFailing { checkpoint: cp.0, reason: reason.to_string() }, None);
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let total = self.rm.total_slots();
        let mut timed_out = Vec::new();
        let mut triggers = Vec::new();
        let mut expired = Vec::new();
        let mut restarts = Vec::new();
        for job in self.jobs.values_mut() {
            let labels = job.labels();
            let labels = [labels[0].as_str(), labels[1].as_str()];
            let m = metrics::global();
            m.checkpoints_completed.with_label_values(&labels).set(job.coordinator.stats.completed as i64);
            m.checkpoints_failed.with_label_values(&labels).set(job.coordinator.stats.failed as i64);
            m.checkpoints_in_progress.with_label_values(&labels).set(job.coordinator.in_progress() as i64);
            m.last_checkpoint_duration
                .with_label_values(&labels)
                .set(job.coordinator.stats.last_duration.as_millis() as i64);
            m.last_checkpoint_size.with_label_values(&labels).set(job.coordinator.stats.last_size as i64);
            m.restarts.with_label_values(&labels).set(i64::from(job.restarts.restarts()));
            if !self.external_slot_timeout && matches!(job.status, JobStatus::Created | JobStatus::Restarting) {
                if let Some(waited) = job.waiting_for_slots.map(|t| t.elapsed()) {
                    if waited >= job.graph.settings.slot_request_timeout {
                        timed_out.push((job.id, job.graph.required_slots(), waited));
                    }
                }
            }
            match job.status {
                JobStatus::Running => {
                    if let Some(since) = job.running_since {
                        m.job_uptime.with_label_values(&labels).set(since.elapsed().as_millis() as i64);
                    }
                    for cp in job.coordinator.expired(now) {
                        expired.push((job.id, cp, job.coordinator.config().timeout));
                    }
                    if job.graph.settings.checkpointing.is_some() && job.all_running() && job.coordinator.is_due(now) {
                        if let Some(fence) = self.fence.as_mut() {
                            match fence.reserve_id(job.coordinator.next_id()) {
                                Ok(n) => job.coordinator.skip_to(n),
                                Err(e) => fenced(&e),
                            }
                        }
                        let expected = || checkpoint_tasks(&job.executions);
                        if let Some(b) = job.coordinator.maybe_trigger(now, expected) {
                            job.observer.checkpoints.triggered(b.id.0, false, now_ms(), job.executions.len() as u32);
                            triggers.push((job.id, b));
                        }
                    }
                }
                JobStatus::Restarting if job.all_terminal() && job.restart_at.is_some_and(|t| now >= t) => {
                    restarts.push(job.id);
                }
                _ => {}
            }
        }
        for (id, b) in triggers {
            if let Some(job) = self.jobs.get(&id) {
                tracing::debug!("Triggering checkpoint {} of job {}", b.id, job.graph.name());
                self.send_trigger(job, b);
            }
        }
        for (id, cp, timeout) in expired {
            self.abort_checkpoint(id, cp, AbortReason::Timeout(timeout));
        }
        for id in restarts {
            self.restart(id);
        }
        for (id, required, waited) in timed_out {
            if let Some(job) = self.jobs.get_mut(&id) {
                let cause =
                    FailureCause::NotEnoughSlots { required, available: total, waited_ms: waited.as_millis() as u64 };
                job.record_exception(&cause, None);
                job.failure = Some(cause);
                job.transition(JobStatus::Failed);
                self.finalize(id);
            }
        }
    }

    fn restart(&mut self, id: JobId) {
        // Old attempt's threads are done: free their channels first.
        self.broadcast(|| ToTaskManager::ReleaseJob { job_id: id });
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.attempt += 1;
        job.restart_at = None;
        if self.rm.all_present(&job.slots) {
            self.deploy(id);
            return;
        }
        // A TaskManager went away with some of the job's slots: ask anew.
        tracing::info!("Job {} ({id}) lost slots; it waits for {} slots", job.graph.name(), job.graph.required_slots());
        job.slots.clear();
        job.waiting_for_slots = Some(Instant::now());
        self.rm.release(id);
        self.try_schedule(id);
    }

    fn task_manager_lost(&mut self, tm: TaskManagerId) {
        if !self.rm.unregister(&tm) {
            return;
        }
        tracing::warn!("TaskManager {tm} was lost");
        let mut failed = Vec::new();
        for job in self.jobs.values() {
            for (s, state) in &job.executions {
                let here = job.slots.get(s.subtask as usize).is_some_and(|slot| slot.task_manager == tm);
                if here && !state.is_terminal() {
                    failed.push(*s);
                }
            }
        }
        for s in failed {
            self.task_state(s, ExecutionState::Failed, Some(FailureCause::TaskManagerLost(tm.to_string())));
        }
    }

    fn fail_job(&mut self, id: JobId, cause: FailureCause) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if job.status.is_terminal() {
            return;
        }
        tracing::warn!("Job {} ({id}) fails: {cause}", job.graph.name());
        job.record_exception(&cause, None);
        job.failure = Some(cause);
        if job.all_terminal() {
            job.transition(JobStatus::Failed);
            self.finalize(id);
        } else {
            job.transition(JobStatus::Failing);
            self.cancel_running(id);
            self.maybe_finish(id);
        }
    }
}

/// A fenced job master stops acting at once (see [`super::fence`]): its
/// process exits without notifying any task or reporting the job's end, so
/// the job stays with the JobManager that leads now.
fn fenced(why: &Fenced) -> ! {
    tracing::error!("this job master is fenced ({why}); it stops without completing or committing anything");
    std::process::exit(super::fence::FENCED_EXIT_CODE)
}
