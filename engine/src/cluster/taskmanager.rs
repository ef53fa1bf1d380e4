//! The TaskManager: offers its slots to a job master and runs the subtasks
//! deployed into them, one thread per subtask, reporting every state change.
//!
//! It takes [`ToTaskManager`] messages from its inbox and reports
//! [`FromTaskManager`] messages through a [`Gateway`]; whether the job
//! master is a thread of the same process or a driver process across a TCP
//! link is the gateway's business. About once a second it reports the
//! counters of its running subtasks ([`SubtaskSample`]s), from which the job
//! master derives their rates for the web UI.

use super::gateway::Gateway;
use super::job_graphs::JobGraphs;
use super::protocol::{ExecutionState, FromTaskManager, TaskDeploymentDescriptor, ToTaskManager};
use super::stats::SubtaskSample;
use crate::error::FailureCause;
use crate::graph::execution::build_subtask;
use crate::ids::{JobId, SubtaskId, TaskManagerId};
use crate::runtime::checkpointing::snapshot_uploader::{
    CheckpointResponder, SnapshotUploader, SubtaskCheckpointMetrics,
};
use crate::runtime::shuffle::Shuffle;
use crate::runtime::task::{TaskCommand, TaskControl, TaskOutcome};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use prometheus::{IntCounter, IntGauge};
use sluice_checkpoint::metadata::SubtaskStateHandle;
use sluice_checkpoint::CheckpointId;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a TaskManager reports its subtasks' counters.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Handles on the counters of one subtask (the same ones Prometheus reads).
struct SubtaskProbe {
    deployed: Instant,
    records_in: IntCounter,
    records_out: IntCounter,
    back_pressured: IntCounter,
    idle: IntCounter,
    watermark: IntGauge,
}

impl SubtaskProbe {
    fn sample(&self, subtask: SubtaskId) -> SubtaskSample {
        let wm = self.watermark.get();
        SubtaskSample {
            subtask,
            uptime_ms: self.deployed.elapsed().as_millis() as u64,
            records_in: self.records_in.get(),
            records_out: self.records_out.get(),
            back_pressured_ms: self.back_pressured.get(),
            idle_ms: self.idle.get(),
            input_watermark: (wm != i64::MIN).then_some(wm),
        }
    }
}

struct RunningTask {
    canceled: Arc<AtomicBool>,
    commands: Sender<TaskCommand>,
    thread: JoinHandle<()>,
    probe: SubtaskProbe,
}

pub(crate) struct TaskManager {
    id: TaskManagerId,
    inbox: Receiver<ToTaskManager>,
    job_manager: Gateway<FromTaskManager>,
    graphs: JobGraphs,
    shuffle: Arc<Shuffle>,
    tasks: HashMap<SubtaskId, RunningTask>,
}

/// A TaskManager's subtasks report their checkpoints through its gateway.
impl CheckpointResponder for Gateway<FromTaskManager> {
    fn acknowledge(
        &self,
        subtask: SubtaskId,
        checkpoint: CheckpointId,
        handles: Vec<(String, SubtaskStateHandle)>,
        metrics: SubtaskCheckpointMetrics,
    ) {
        let _ = self.send(FromTaskManager::AcknowledgeCheckpoint { subtask, checkpoint, handles, metrics });
    }

    fn decline(&self, subtask: SubtaskId, checkpoint: CheckpointId, reason: String) {
        let _ = self.send(FromTaskManager::DeclineCheckpoint { subtask, checkpoint, reason });
    }
}

impl TaskManager {
    pub(crate) fn new(
        id: TaskManagerId,
        inbox: Receiver<ToTaskManager>,
        job_manager: Gateway<FromTaskManager>,
        graphs: JobGraphs,
        shuffle: Arc<Shuffle>,
    ) -> Self {
        TaskManager { id, inbox, job_manager, graphs, shuffle, tasks: HashMap::new() }
    }

    pub(crate) fn run(mut self) {
        let mut sampled = Instant::now();
        loop {
            if sampled.elapsed() >= SAMPLE_INTERVAL {
                self.report_samples();
                sampled = Instant::now();
            }
            let msg = match self.inbox.recv_timeout(SAMPLE_INTERVAL) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            match msg {
                ToTaskManager::Registered => tracing::debug!("TaskManager {} registered", self.id),
                ToTaskManager::Deploy(tdd) => self.deploy(*tdd),
                ToTaskManager::Cancel { subtask } => {
                    if let Some(t) = self.tasks.get(&subtask) {
                        t.canceled.store(true, Ordering::Relaxed);
                        let _ = t.commands.send(TaskCommand::Cancel);
                    }
                }
                ToTaskManager::ReleaseJob { job_id } => self.release(job_id),
                ToTaskManager::TriggerCheckpoint { subtask, barrier } => {
                    if let Some(t) = self.tasks.get(&subtask) {
                        let _ = t.commands.send(TaskCommand::TriggerCheckpoint(barrier));
                    }
                }
                ToTaskManager::NotifyCheckpointComplete { job_id, checkpoint } => {
                    self.tell_job(job_id, TaskCommand::CheckpointComplete(checkpoint))
                }
                ToTaskManager::AbortCheckpoint { job_id, checkpoint } => {
                    self.tell_job(job_id, TaskCommand::AbortCheckpoint(checkpoint))
                }
                ToTaskManager::Shutdown => break,
            }
        }
        for t in self.tasks.values() {
            t.canceled.store(true, Ordering::Relaxed);
            let _ = t.commands.send(TaskCommand::Cancel);
        }
        for (_, t) in self.tasks.drain() {
            let _ = t.thread.join();
        }
    }

    /// Reports the counters of the subtasks still running.
    fn report_samples(&self) {
        let samples: Vec<SubtaskSample> =
            self.tasks.iter().filter(|(_, t)| !t.thread.is_finished()).map(|(id, t)| t.probe.sample(*id)).collect();
        if !samples.is_empty() {
            let _ = self.job_manager.send(FromTaskManager::SubtaskMetrics { samples });
        }
    }

    fn tell_job(&self, job: JobId, cmd: TaskCommand) {
        for (_, t) in self.tasks.iter().filter(|(s, _)| s.job == job) {
            let _ = t.commands.send(cmd);
        }
    }

    fn release(&mut self, job: JobId) {
        let ids: Vec<SubtaskId> = self.tasks.keys().filter(|s| s.job == job).copied().collect();
        for id in ids {
            if let Some(t) = self.tasks.remove(&id) {
                let _ = t.thread.join();
            }
        }
        self.shuffle.release_job(job);
    }

    fn deploy(&mut self, tdd: TaskDeploymentDescriptor) {
        let restore = tdd.restore;
        let placement = tdd.placement;
        let id = tdd.subtask;
        let Some(graph) = self.graphs.get(id.job).filter(|g| g.vertices().len() > id.vertex) else {
            let _ = self.job_manager.send(FromTaskManager::TaskStateChanged {
                subtask: id,
                state: ExecutionState::Failed,
                failure: Some(FailureCause::TaskFailed {
                    task: format!("vertex {}", id.vertex),
                    subtask: id.subtask,
                    message: format!("TaskManager {} has no graph of job {} with that vertex", self.id, id.job),
                }),
            });
            return;
        };
        self.shuffle.begin_attempt(id.job, id.attempt);
        let vertex = graph.vertices()[id.vertex].clone();
        let thread_name = format!("{} ({}/{})", vertex.name, id.subtask + 1, vertex.parallelism);
        let task_name = vertex.name.clone();
        let canceled = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::unbounded();
        let settings = &graph.settings;
        let (job, subtask) = (id.job.to_string(), id.subtask.to_string());
        let labels = [job.as_str(), graph.name(), vertex.name.as_str(), subtask.as_str()];
        let m = crate::metrics::global();
        let operator = |name: &str| m.operator(&[labels[0], labels[1], labels[2], name, labels[3]]);
        let probe = SubtaskProbe {
            deployed: Instant::now(),
            // A vertex has at least one operator (the job graph is built so).
            records_in: operator(&vertex.operators[0].name).records_in,
            records_out: operator(&vertex.operators[vertex.operators.len() - 1].name).records_out,
            back_pressured: m.back_pressure(&labels),
            idle: m.idle_time(&labels),
            watermark: m.input_watermark(&labels),
        };
        probe.watermark.set(i64::MIN);
        let control = TaskControl {
            idle_time: probe.idle.clone(),
            input_watermark: probe.watermark.clone(),
            commands: rx,
            canceled: canceled.clone(),
            buffer_timeout: settings.buffer_timeout,
            checkpoints: SnapshotUploader {
                subtask: id,
                root: settings.checkpoint_root.clone(),
                responder: Arc::new(self.job_manager.clone()),
                abort_after_snapshot: settings.faults.abort_after_snapshot,
            },
            mode: settings.checkpointing.as_ref().map(|c| c.mode).unwrap_or_default(),
            alignment_time: crate::metrics::global().alignment_time(&labels),
            sync_time: crate::metrics::global().sync_time(&labels),
            faults: settings.faults.for_subtask(&vertex.name, id.subtask, id.attempt),
        };
        let jm = self.job_manager.clone();
        let shuffle = self.shuffle.clone();
        let spawned = std::thread::Builder::new().name(thread_name.clone()).spawn(move || {
            let report = |state, failure| {
                let _ = jm.send(FromTaskManager::TaskStateChanged { subtask: id, state, failure });
            };
            report(ExecutionState::Running, None);
            tracing::debug!("{thread_name} switched to RUNNING");
            // The task (and with it its channel ends) outlives the report below.
            let mut task = None;
            let run = catch_unwind(AssertUnwindSafe(|| {
                let task = task.insert(build_subtask(
                    &graph,
                    id,
                    &shuffle,
                    &placement,
                    restore.as_deref(),
                    &control.canceled,
                )?);
                task.invoke(&control)
            }));
            let canceled = control.canceled.load(Ordering::Relaxed);
            match run {
                Ok(Ok(TaskOutcome::Finished)) => report(ExecutionState::Finished, None),
                Ok(Ok(TaskOutcome::Canceled)) => report(ExecutionState::Canceled, None),
                Ok(Err(_)) if canceled => report(ExecutionState::Canceled, None),
                Ok(Err(e)) => {
                    let cause = FailureCause::task_failed(task_name, id.subtask, &e);
                    report(ExecutionState::Failed, Some(cause));
                }
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic payload".into());
                    report(
                        ExecutionState::Failed,
                        Some(FailureCause::TaskPanicked { task: task_name, subtask: id.subtask, message }),
                    );
                }
            }
            drop(task);
        });
        match spawned {
            Ok(thread) => {
                self.tasks.insert(id, RunningTask { canceled, commands: tx, thread, probe });
            }
            Err(e) => {
                let _ = self.job_manager.send(FromTaskManager::TaskStateChanged {
                    subtask: id,
                    state: ExecutionState::Failed,
                    failure: Some(FailureCause::TaskFailed {
                        task: vertex.name.clone(),
                        subtask: id.subtask,
                        message: format!("cannot start a thread: {e}"),
                    }),
                });
            }
        }
    }
}
