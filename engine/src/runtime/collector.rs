//! Collectors: how records are handed downstream.
//!
//! User functions and operators emit records through a [`Collector`]. Inside
//! a chain the collector is the next operator itself (a direct call, no
//! channel); at the end of a chain it is a record writer that batches records
//! towards the downstream subtasks and blocks when they are full
//! (backpressure).

use crate::error::Result;
use crate::runtime::element::Watermark;
use sluice_checkpoint::state::format::StateSnapshot;
use sluice_checkpoint::{CheckpointBarrier, CheckpointId};

/// The snapshots a chain hands over at a barrier: (operator id, snapshot).
pub(crate) type ChainStates = Vec<(String, StateSnapshot)>;

/// Receives records emitted by a function or operator.
pub trait Collector<T> {
    /// Emits one record. An error means the task cannot go on (a downstream
    /// task failed, a sink could not write); return it with `?`.
    fn collect(&mut self, record: T) -> Result<()>;
}

/// A `Vec` collects records, which makes functions easy to test.
impl<T> Collector<T> for Vec<T> {
    fn collect(&mut self, record: T) -> Result<()> {
        self.push(record);
        Ok(())
    }
}

/// The input side of a chain link, as the task runtime drives it: records
/// plus the control events that flow through a chain in order.
pub(crate) trait ChainInput<T>: Collector<T> + Send {
    /// The records of one input batch, in order.
    fn collect_batch(&mut self, records: Vec<T>) -> Result<()> {
        for record in records {
            self.collect(record)?;
        }
        Ok(())
    }
    /// A new combined watermark reached this link.
    fn watermark(&mut self, wm: Watermark) -> Result<()>;
    /// The task is idle or the buffer timeout passed: push partial batches
    /// downstream and publish metrics.
    fn flush(&mut self) -> Result<()>;
    /// All input of the task has been consumed.
    fn end_of_input(&mut self) -> Result<()>;
    /// The barrier of a checkpoint passes: operators add their state to
    /// `states` as (operator id, bytes), writers forward the barrier.
    fn snapshot(&mut self, barrier: &CheckpointBarrier, states: &mut ChainStates) -> Result<()>;
    /// The processing-time clock advanced (see `StreamOperator::on_processing_time`).
    fn tick(&mut self, _now_ms: i64) -> Result<()> {
        Ok(())
    }
    /// The stream became idle (see [`TimeEvent::Idle`](crate::runtime::operator::TimeEvent)).
    fn idle(&mut self) -> Result<()> {
        Ok(())
    }
    /// A checkpoint is complete on every subtask of the job.
    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()>;
    /// The task is shutting down (after end of input, or on cancel).
    fn close(&mut self) -> Result<()>;
}

/// The end of a chain whose last operator emits nothing (a sink).
pub(crate) struct Discard;

impl<T> Collector<T> for Discard {
    fn collect(&mut self, _record: T) -> Result<()> {
        Ok(())
    }
}

impl<T> ChainInput<T> for Discard {
    fn watermark(&mut self, _wm: Watermark) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn end_of_input(&mut self) -> Result<()> {
        Ok(())
    }
    fn snapshot(&mut self, _barrier: &CheckpointBarrier, _states: &mut ChainStates) -> Result<()> {
        Ok(())
    }
    fn checkpoint_complete(&mut self, _id: CheckpointId) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Hands each record to several chain links (an operator whose output feeds
/// more than one consumer).
pub(crate) struct FanOut<T> {
    pub(crate) outputs: Vec<Box<dyn ChainInput<T>>>,
}

impl<T: Clone + Send> Collector<T> for FanOut<T> {
    fn collect(&mut self, record: T) -> Result<()> {
        if let Some((last, rest)) = self.outputs.split_last_mut() {
            for out in rest {
                out.collect(record.clone())?;
            }
            last.collect(record)?;
        }
        Ok(())
    }
}

impl<T: Clone + Send> ChainInput<T> for FanOut<T> {
    fn watermark(&mut self, wm: Watermark) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.watermark(wm))
    }
    fn flush(&mut self) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.flush())
    }
    fn end_of_input(&mut self) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.end_of_input())
    }
    fn snapshot(&mut self, barrier: &CheckpointBarrier, states: &mut ChainStates) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.snapshot(barrier, states))
    }
    fn tick(&mut self, now_ms: i64) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.tick(now_ms))
    }
    fn idle(&mut self) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.idle())
    }
    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.checkpoint_complete(id))
    }
    fn close(&mut self) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.close())
    }
}
