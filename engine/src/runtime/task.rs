//! The run loops of subtasks.
//!
//! A *source task* polls its [`Source`] and pushes records into its chain; an
//! *input task* reads the channels from upstream subtasks. Both check for
//! cancellation between batches, flush partial batches when idle or when the
//! buffer timeout passes, and propagate end of input down the chain when all
//! input is consumed. Watermarks are combined as the minimum over the input
//! channels that have not ended.

use crate::error::{Error, Result};
use crate::metrics::OperatorMetrics;
use crate::runtime::collector::{ChainInput, Collector};
use crate::runtime::context::RuntimeContext;
use crate::runtime::element::{StreamElement, Watermark};
use crate::source::{Source, SourceStatus};
use crossbeam_channel::{Receiver, RecvTimeoutError, Select, TryRecvError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Commands the TaskManager sends to a running subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskCommand {
    /// Stop as soon as possible.
    Cancel,
}

/// A subtask's view of its controls.
pub(crate) struct TaskControl {
    pub(crate) commands: Receiver<TaskCommand>,
    pub(crate) canceled: Arc<AtomicBool>,
    pub(crate) buffer_timeout: Duration,
}

impl TaskControl {
    fn is_canceled(&self) -> bool {
        self.canceled.load(Ordering::Relaxed)
    }
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
    pub(crate) fn new(
        source: S,
        head: Box<dyn ChainInput<T>>,
        ctx: RuntimeContext,
        metrics: OperatorMetrics,
    ) -> Self {
        SourceTask {
            source,
            out: SourceOutput { head, count: 0 },
            ctx,
            metrics,
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.metrics
            .records_out
            .inc_by(std::mem::take(&mut self.out.count));
        self.out.head.flush()
    }

    fn run(&mut self, control: &TaskControl) -> Result<TaskOutcome> {
        self.source.open(&self.ctx)?;
        let mut last_flush = Instant::now();
        loop {
            if control.is_canceled() || control.commands.try_recv().is_ok() {
                return Ok(TaskOutcome::Canceled);
            }
            match self.source.poll_next(&mut self.out)? {
                SourceStatus::MoreAvailable => {
                    if last_flush.elapsed() >= control.buffer_timeout {
                        self.flush()?;
                        last_flush = Instant::now();
                    }
                }
                SourceStatus::Idle(wait) => {
                    self.flush()?;
                    last_flush = Instant::now();
                    match control
                        .commands
                        .recv_timeout(wait.min(Duration::from_millis(50)))
                    {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(_) | Err(RecvTimeoutError::Disconnected) => {
                            return Ok(TaskOutcome::Canceled)
                        }
                    }
                }
                SourceStatus::Finished => {
                    self.metrics
                        .records_out
                        .inc_by(std::mem::take(&mut self.out.count));
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
        self.metrics
            .records_out
            .inc_by(std::mem::take(&mut self.out.count));
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
}

impl<T: Send> InputTask<T> {
    pub(crate) fn new(
        receivers: Vec<Receiver<StreamElement<T>>>,
        head: Box<dyn ChainInput<T>>,
    ) -> Self {
        InputTask { receivers, head }
    }

    fn upstream_gone(i: usize) -> Error {
        Error::ChannelClosed(format!(
            "input channel {} closed without end of stream (its producer failed or was canceled)",
            i + 1
        ))
    }

    /// Waits for the next element of any unfinished channel, or a command.
    fn next_blocking(
        &self,
        finished: &[bool],
        control: &TaskControl,
    ) -> Result<Option<(usize, StreamElement<T>)>> {
        let mut select = Select::new();
        let mut indices = Vec::with_capacity(self.receivers.len());
        for (i, rx) in self.receivers.iter().enumerate() {
            if !finished[i] {
                indices.push(i);
                select.recv(rx);
            }
        }
        let command_index = select.recv(&control.commands);
        match select.select_timeout(Duration::from_millis(100)) {
            Err(_) => Ok(None),
            Ok(op) if op.index() == command_index => {
                // A command (cancel) or a dropped TaskManager: either way, stop.
                let _ = op.recv(&control.commands);
                control.canceled.store(true, Ordering::Relaxed);
                Ok(None)
            }
            Ok(op) => {
                let i = indices[op.index()];
                match op.recv(&self.receivers[i]) {
                    Ok(el) => Ok(Some((i, el))),
                    Err(_) => Err(Self::upstream_gone(i)),
                }
            }
        }
    }

    fn run(&mut self, control: &TaskControl) -> Result<TaskOutcome> {
        let n = self.receivers.len();
        let mut finished = vec![false; n];
        let mut remaining = n;
        let mut watermarks = vec![Watermark::MIN; n];
        let mut current = Watermark::MIN;
        let mut next = 0usize;
        let mut last_flush = Instant::now();
        if n == 0 {
            self.head.end_of_input()?;
            return Ok(TaskOutcome::Finished);
        }
        loop {
            if control.is_canceled() {
                return Ok(TaskOutcome::Canceled);
            }
            let mut got = None;
            for k in 0..n {
                let i = (next + k) % n;
                if finished[i] {
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
                    match self.next_blocking(&finished, control)? {
                        Some(x) => x,
                        None => continue,
                    }
                }
            };
            match element {
                StreamElement::Records(batch) => {
                    for record in batch {
                        self.head.collect(record)?;
                    }
                    if last_flush.elapsed() >= control.buffer_timeout {
                        self.head.flush()?;
                        last_flush = Instant::now();
                    }
                }
                StreamElement::Watermark(wm) => {
                    watermarks[i] = watermarks[i].max(wm);
                    let min = combined(&watermarks, &finished);
                    if min > current {
                        current = min;
                        self.head.watermark(min)?;
                    }
                }
                StreamElement::Barrier(barrier) => {
                    return Err(Error::user(format!(
                        "received the barrier of checkpoint {} but barrier alignment is not part of this build",
                        barrier.id
                    )));
                }
                StreamElement::EndOfStream => {
                    finished[i] = true;
                    remaining -= 1;
                    if remaining == 0 {
                        self.head.end_of_input()?;
                        return Ok(TaskOutcome::Finished);
                    }
                    let min = combined(&watermarks, &finished);
                    if min > current {
                        current = min;
                        self.head.watermark(min)?;
                    }
                }
            }
        }
    }
}

fn combined(watermarks: &[Watermark], finished: &[bool]) -> Watermark {
    watermarks
        .iter()
        .zip(finished)
        .filter(|(_, f)| !**f)
        .map(|(w, _)| *w)
        .min()
        .unwrap_or(Watermark::MAX)
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
