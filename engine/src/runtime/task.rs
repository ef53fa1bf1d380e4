//! The run loops of subtasks.
//!
//! A *source task* polls its [`Source`] and pushes records into its chain; an
//! *input task* reads the channels from upstream subtasks. Both check for
//! commands (cancel, checkpoint trigger, checkpoint complete or aborted)
//! between batches, flush partial batches when idle or when the buffer
//! timeout passes, and propagate end of input down the chain when all input
//! is consumed. An input task's watermark is combined from its channels by a
//! [`WatermarkCombiner`]: the minimum over the channels that are neither
//! ended nor idle.
//!
//! # Checkpoints
//!
//! A source task, told to trigger checkpoint *n*, snapshots the source's
//! position and its chain, which forwards barrier *n* on every output
//! channel. An input task aligns, as its [`BarrierAligner`] decides: in
//! exactly-once mode a channel that delivered barrier *n* is not read again
//! until every open channel has delivered it (its records wait in the
//! bounded channel, which backpressures that producer); in at-least-once
//! mode channels are not held. When all barriers are in, the chain snapshots
//! and forwards the barrier, and the [`SnapshotUploader`] stores the state
//! and acknowledges asynchronously.

use crate::error::{Error, Result};
use crate::faults::FailPoint;
use crate::metrics::OperatorMetrics;
use crate::runtime::checkpointing::snapshot_uploader::SnapshotUploader;
use crate::runtime::checkpointing::{Aligned, BarrierAligner};
use crate::runtime::collector::{ChainInput, Collector};
use crate::runtime::context::RuntimeContext;
use crate::runtime::element::{StreamElement, Watermark};
use crate::runtime::watermark_combiner::{IdleOutcome, WatermarkCombiner};
use crate::source::{Source, SourceStatus};
use crossbeam_channel::{Receiver, RecvTimeoutError, Select, TryRecvError};
use sluice_checkpoint::state::format::StateSnapshot;
use sluice_checkpoint::{CheckpointBarrier, CheckpointId, CheckpointingMode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Commands the TaskManager sends to a running subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskCommand {
    /// Stop as soon as possible.
    Cancel,
    /// (Sources) snapshot and emit this barrier.
    TriggerCheckpoint(CheckpointBarrier),
    /// This checkpoint is complete everywhere.
    CheckpointComplete(CheckpointId),
    /// This checkpoint was aborted.
    AbortCheckpoint(CheckpointId),
}

/// A subtask's view of its controls.
pub(crate) struct TaskControl {
    /// The duration of the last barrier alignment, ms.
    pub(crate) alignment_time: prometheus::IntGauge,
    /// Time spent in synchronous snapshot parts, µs.
    pub(crate) sync_time: prometheus::IntCounter,
    /// Time spent waiting for input (a source: for data), ms.
    pub(crate) idle_time: prometheus::IntCounter,
    /// The combined input watermark last forwarded, ms.
    pub(crate) input_watermark: prometheus::IntGauge,
    pub(crate) commands: Receiver<TaskCommand>,
    pub(crate) canceled: Arc<AtomicBool>,
    pub(crate) buffer_timeout: Duration,
    pub(crate) checkpoints: SnapshotUploader,
    pub(crate) mode: CheckpointingMode,
    pub(crate) faults: Vec<FailPoint>,
}

impl TaskControl {
    fn is_canceled(&self) -> bool {
        self.canceled.load(Ordering::Relaxed)
    }

    /// The injected record count at which this subtask fails, if any.
    fn fail_at_record(&self) -> Option<u64> {
        self.faults.iter().find_map(|f| match f {
            FailPoint::Record(n) => Some(*n),
            _ => None,
        })
    }

    fn check_checkpoint_fault(&self, id: CheckpointId) -> Result<()> {
        if self.faults.contains(&FailPoint::Checkpoint(id.0)) {
            return Err(Error::InjectedFault { at: FailPoint::Checkpoint(id.0) });
        }
        Ok(())
    }

    fn check_complete_fault(&self, id: CheckpointId) -> Result<()> {
        if self.faults.contains(&FailPoint::Complete(id.0)) {
            return Err(Error::InjectedFault { at: FailPoint::Complete(id.0) });
        }
        Ok(())
    }
}

fn injected_record_failure(n: u64) -> Error {
    Error::InjectedFault { at: FailPoint::Record(n) }
}

/// How a subtask ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskOutcome {
    Finished,
    Canceled,
}

/// A runnable subtask.
pub(crate) trait Invokable: Send {
    /// Runs the subtask to its end; the chain is closed before returning.
    /// The channels stay open until the invokable is dropped, so that the
    /// subtask's own outcome can be reported before its neighbours notice
    /// the closed channels (the first reported failure is the job's cause).
    fn invoke(&mut self, control: &TaskControl) -> Result<TaskOutcome>;
}

/// Counts a source's emitted records.
struct SourceOutput<T> {
    head: Box<dyn ChainInput<T>>,
    count: u64,
    total: u64,
}

impl<T> Collector<T> for SourceOutput<T> {
    #[inline]
    fn collect(&mut self, record: T) -> Result<()> {
        self.count += 1;
        self.head.collect(record)
    }
}

/// The loop of a source subtask.
pub(crate) struct SourceTask<T, S> {
    source: S,
    out: SourceOutput<T>,
    ctx: RuntimeContext,
    metrics: OperatorMetrics,
}

impl<T: Send, S: Source<T>> SourceTask<T, S> {
    pub(crate) fn new(source: S, head: Box<dyn ChainInput<T>>, ctx: RuntimeContext, metrics: OperatorMetrics) -> Self {
        SourceTask { source, out: SourceOutput { head, count: 0, total: 0 }, ctx, metrics }
    }

    fn publish(&mut self) {
        let n = std::mem::take(&mut self.out.count);
        self.out.total += n;
        self.metrics.records_out.inc_by(n);
    }

    fn flush(&mut self) -> Result<()> {
        self.publish();
        self.out.head.flush()
    }

    /// Handles one command; `Ok(false)` means stop (canceled).
    fn command(&mut self, cmd: TaskCommand, control: &TaskControl) -> Result<bool> {
        match cmd {
            TaskCommand::Cancel => return Ok(false),
            TaskCommand::TriggerCheckpoint(barrier) => {
                control.check_checkpoint_fault(barrier.id)?;
                let position = self.source.snapshot_state(barrier.id)?;
                let bytes = postcard::to_stdvec(&position).map_err(|e| {
                    Error::user(format!("cannot encode the position of '{}': {e}", self.ctx.operator_name))
                })?;
                let mut states = vec![(self.ctx.operator_id.clone(), StateSnapshot::Ready(bytes))];
                let started = Instant::now();
                self.out.head.snapshot(&barrier, &mut states)?;
                let sync = started.elapsed();
                control.sync_time.inc_by(sync.as_micros() as u64);
                control.checkpoints.acknowledge(barrier, states, Duration::ZERO, sync);
            }
            TaskCommand::CheckpointComplete(id) => {
                control.check_complete_fault(id)?;
                self.source.notify_checkpoint_complete(id)?;
                self.out.head.checkpoint_complete(id)?;
            }
            TaskCommand::AbortCheckpoint(_) => {}
        }
        Ok(true)
    }

    fn run(&mut self, control: &TaskControl) -> Result<TaskOutcome> {
        self.source.open(&self.ctx)?;
        let fail_at = control.fail_at_record();
        let mut last_flush = Instant::now();
        let mut clock = Clock::new();
        loop {
            if control.is_canceled() {
                return Ok(TaskOutcome::Canceled);
            }
            while let Ok(cmd) = control.commands.try_recv() {
                if !self.command(cmd, control)? {
                    return Ok(TaskOutcome::Canceled);
                }
            }
            if let Some(now) = clock.due_sometimes() {
                self.out.head.tick(now)?;
            }
            let status = self.source.poll_next(&mut self.out)?;
            if let Some(n) = fail_at {
                if self.out.total + self.out.count >= n {
                    return Err(injected_record_failure(n));
                }
            }
            match status {
                SourceStatus::MoreAvailable => {
                    if last_flush.elapsed() >= control.buffer_timeout {
                        self.flush()?;
                        last_flush = Instant::now();
                    }
                }
                SourceStatus::Idle(wait) => {
                    if let Some(now) = clock.due() {
                        self.out.head.tick(now)?;
                    }
                    self.flush()?;
                    last_flush = Instant::now();
                    let waited = Instant::now();
                    let command = control.commands.recv_timeout(wait.min(Duration::from_millis(50)));
                    control.idle_time.inc_by(waited.elapsed().as_millis() as u64);
                    match command {
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return Ok(TaskOutcome::Canceled),
                        Ok(cmd) => {
                            if !self.command(cmd, control)? {
                                return Ok(TaskOutcome::Canceled);
                            }
                        }
                    }
                }
                SourceStatus::Finished => {
                    self.publish();
                    self.out.head.end_of_input()?;
                    return Ok(TaskOutcome::Finished);
                }
            }
        }
    }
}

impl<T: Send, S: Source<T>> Invokable for SourceTask<T, S> {
    fn invoke(&mut self, control: &TaskControl) -> Result<TaskOutcome> {
        let result = self.run(control);
        self.publish();
        let chain = self.out.head.close();
        let source = self.source.close();
        let outcome = result?;
        chain.and(source)?;
        Ok(outcome)
    }
}

/// The loop of a subtask fed by upstream subtasks.
pub(crate) struct InputTask<T> {
    receivers: Vec<Receiver<StreamElement<T>>>,
    head: Box<dyn ChainInput<T>>,
    /// Which channels may be read, and when a checkpoint is aligned. Made
    /// anew by [`InputTask::run`], which knows the checkpointing mode.
    aligner: BarrierAligner,
    watermarks: WatermarkCombiner,
    records: u64,
    /// Idle time not yet published (below a millisecond).
    idle: Duration,
}

impl<T: Send> InputTask<T> {
    pub(crate) fn new(receivers: Vec<Receiver<StreamElement<T>>>, head: Box<dyn ChainInput<T>>) -> Self {
        let n = receivers.len();
        InputTask {
            receivers,
            head,
            aligner: BarrierAligner::new(n, CheckpointingMode::default()),
            watermarks: WatermarkCombiner::new(n),
            records: 0,
            idle: Duration::ZERO,
        }
    }

    fn upstream_gone(i: usize) -> Error {
        Error::ChannelClosed(format!(
            "input channel {} closed without end of stream (its producer failed or was canceled, or the connection to it broke)",
            i + 1
        ))
    }

    /// Handles one command; `Ok(false)` means stop (canceled).
    fn command(&mut self, cmd: TaskCommand, control: &TaskControl) -> Result<bool> {
        match cmd {
            TaskCommand::Cancel => return Ok(false),
            TaskCommand::CheckpointComplete(id) => {
                control.check_complete_fault(id)?;
                self.head.checkpoint_complete(id)?
            }
            TaskCommand::AbortCheckpoint(id) => {
                self.aligner.abort(id);
            }
            TaskCommand::TriggerCheckpoint(_) => {}
        }
        Ok(true)
    }

    fn forward_watermark(&mut self, wm: Watermark, control: &TaskControl) -> Result<()> {
        control.input_watermark.set(wm.0);
        self.head.watermark(wm)
    }

    /// Waits for the next element of any readable channel, or a command;
    /// the wait counts as idle time.
    fn next_blocking(&mut self, control: &TaskControl) -> Result<Option<(usize, StreamElement<T>)>> {
        let started = Instant::now();
        let next = self.wait_for_input(control);
        self.idle += started.elapsed();
        let ms = self.idle.as_millis() as u64;
        if ms > 0 {
            control.idle_time.inc_by(ms);
            self.idle -= Duration::from_millis(ms);
        }
        next
    }

    fn wait_for_input(&mut self, control: &TaskControl) -> Result<Option<(usize, StreamElement<T>)>> {
        let command = {
            let mut select = Select::new();
            let mut indices = Vec::with_capacity(self.receivers.len());
            for (i, rx) in self.receivers.iter().enumerate() {
                if self.aligner.is_readable(i) {
                    indices.push(i);
                    select.recv(rx);
                }
            }
            let command_index = select.recv(&control.commands);
            match select.select_timeout(Duration::from_millis(50)) {
                Err(_) => return Ok(None),
                // A dropped TaskManager reads as a cancel.
                Ok(op) if op.index() == command_index => op.recv(&control.commands).unwrap_or(TaskCommand::Cancel),
                Ok(op) => {
                    let i = indices[op.index()];
                    return match op.recv(&self.receivers[i]) {
                        Ok(el) => Ok(Some((i, el))),
                        Err(_) => Err(Self::upstream_gone(i)),
                    };
                }
            }
        };
        if !self.command(command, control)? {
            control.canceled.store(true, Ordering::Relaxed);
        }
        Ok(None)
    }

    /// Snapshots the chain for an aligned checkpoint and hands the state to
    /// the [`SnapshotUploader`].
    fn snapshot(&mut self, aligned: Aligned, control: &TaskControl) -> Result<()> {
        let barrier = aligned.barrier;
        tracing::debug!("checkpoint {} aligned in {:?}", barrier.id, aligned.duration);
        control.alignment_time.set(aligned.duration.as_millis() as i64);
        control.check_checkpoint_fault(barrier.id)?;
        let mut states = Vec::new();
        let started = Instant::now();
        self.head.snapshot(&barrier, &mut states)?;
        let sync = started.elapsed();
        control.sync_time.inc_by(sync.as_micros() as u64);
        control.checkpoints.acknowledge(barrier, states, aligned.duration, sync);
        Ok(())
    }

    fn run(&mut self, control: &TaskControl) -> Result<TaskOutcome> {
        let n = self.receivers.len();
        self.aligner = BarrierAligner::new(n, control.mode);
        self.watermarks = WatermarkCombiner::new(n);
        let mut next = 0usize;
        let mut last_flush = Instant::now();
        let mut clock = Clock::new();
        let fail_at = control.fail_at_record();
        if n == 0 {
            self.head.end_of_input()?;
            return Ok(TaskOutcome::Finished);
        }
        loop {
            if control.is_canceled() {
                return Ok(TaskOutcome::Canceled);
            }
            while let Ok(cmd) = control.commands.try_recv() {
                if !self.command(cmd, control)? {
                    return Ok(TaskOutcome::Canceled);
                }
            }
            if let Some(now) = clock.due() {
                self.head.tick(now)?;
            }
            let mut got = None;
            for k in 0..n {
                let i = (next + k) % n;
                if !self.aligner.is_readable(i) {
                    continue;
                }
                match self.receivers[i].try_recv() {
                    Ok(el) => {
                        got = Some((i, el));
                        next = i + 1;
                        break;
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => return Err(Self::upstream_gone(i)),
                }
            }
            let (i, element) = match got {
                Some(x) => x,
                None => {
                    self.head.flush()?;
                    last_flush = Instant::now();
                    match self.next_blocking(control)? {
                        Some(x) => x,
                        None => continue,
                    }
                }
            };
            match element {
                StreamElement::Records(batch) => {
                    self.watermarks.mark_active(i);
                    if let Some(limit) = fail_at {
                        if self.records + batch.len() as u64 >= limit {
                            let take = limit.saturating_sub(self.records) as usize;
                            for record in batch.into_iter().take(take) {
                                self.head.collect(record)?;
                            }
                            return Err(injected_record_failure(limit));
                        }
                    }
                    self.records += batch.len() as u64;
                    self.head.collect_batch(batch)?;
                    if last_flush.elapsed() >= control.buffer_timeout {
                        self.head.flush()?;
                        last_flush = Instant::now();
                    }
                }
                StreamElement::Watermark(wm) => {
                    if let Some(wm) = self.watermarks.on_watermark(i, wm) {
                        self.forward_watermark(wm, control)?;
                    }
                }
                StreamElement::Idle => match self.watermarks.on_idle(i) {
                    IdleOutcome::AllIdle => self.head.idle()?,
                    IdleOutcome::Advanced(wm) => self.forward_watermark(wm, control)?,
                    IdleOutcome::Unchanged => {}
                },
                StreamElement::Barrier(barrier) => {
                    if let Some(aligned) = self.aligner.on_barrier(i, barrier, Instant::now()) {
                        self.snapshot(aligned, control)?;
                    }
                }
                StreamElement::EndOfStream => {
                    let aligned = self.aligner.on_end_of_partition(i, Instant::now());
                    let advanced = self.watermarks.on_end_of_partition(i);
                    if self.aligner.all_finished() {
                        self.head.end_of_input()?;
                        return Ok(TaskOutcome::Finished);
                    }
                    if let Some(aligned) = aligned {
                        self.snapshot(aligned, control)?;
                    }
                    if let Some(wm) = advanced {
                        self.forward_watermark(wm, control)?;
                    }
                }
            }
        }
    }
}

/// Paces the processing-time callbacks of a task (every few milliseconds).
struct Clock {
    last: Instant,
    calls: u32,
}

impl Clock {
    const PERIOD: Duration = Duration::from_millis(10);

    fn new() -> Self {
        Clock { last: Instant::now(), calls: 0 }
    }

    /// Like [`Clock::due`], but reads the clock only every 32nd call (for
    /// loops that run per record).
    fn due_sometimes(&mut self) -> Option<i64> {
        self.calls = self.calls.wrapping_add(1);
        if self.calls % 32 != 0 {
            return None;
        }
        self.due()
    }

    /// The current processing time (ms) if a callback is due.
    fn due(&mut self) -> Option<i64> {
        if self.last.elapsed() < Self::PERIOD {
            return None;
        }
        self.last = Instant::now();
        Some(sluice_checkpoint::clock::now_ms())
    }
}

impl<T: Send> Invokable for InputTask<T> {
    fn invoke(&mut self, control: &TaskControl) -> Result<TaskOutcome> {
        let result = self.run(control);
        let closed = self.head.close();
        let outcome = result?;
        closed?;
        Ok(outcome)
    }
}
