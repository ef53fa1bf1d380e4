//! The operator contract.
//!
//! A [`StreamOperator`] turns input records of type `I` into output records
//! of type `O`. Building an operator (its constructor, with typed arguments)
//! is separate from running it; the runtime drives it through this
//! lifecycle, always from the one thread of its subtask:
//!
//! 1. `restore_state` (only when the job restores from a snapshot), then `open`;
//! 2. any number of `process_element`, `process_watermark` and `flush` calls;
//!    around a checkpoint: `snapshot_state` when barrier *n* passes, then
//!    `notify_checkpoint_complete(n)` once the whole checkpoint is durable;
//! 3. `finish` once all input has been consumed (bounded input) — the place
//!    to emit final results;
//! 4. `close`, always, also after a failure or cancellation.
//!
//! An `Err` from any call fails the subtask (and, under the default restart
//! strategy, the job) with that error as the reason.

use crate::error::Result;
use crate::runtime::collector::Collector;
use crate::runtime::context::RuntimeContext;
use crate::runtime::element::Watermark;
use sluice_checkpoint::state::format::StateSnapshot;
use sluice_checkpoint::CheckpointId;

/// What an operator's processing-time callback asks the runtime to send on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeEvent {
    /// Forward this watermark downstream.
    Watermark(Watermark),
    /// This stream is idle: downstream tasks leave it out of their
    /// watermark until it sends again.
    Idle,
}

/// A one-input stream operator. See the module docs for its lifecycle.
pub trait StreamOperator<I, O>: Send {
    /// Called once before the first record.
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }

    /// Processes one record, emitting any number of outputs.
    fn process_element(&mut self, record: I, out: &mut dyn Collector<O>) -> Result<()>;

    /// Processes the records of one input batch in order. By default one
    /// [`process_element`](Self::process_element) call each; keyed operators
    /// override it to fetch the batch's state from RocksDB in one read.
    fn process_batch(&mut self, records: Vec<I>, out: &mut dyn Collector<O>) -> Result<()> {
        for record in records {
            self.process_element(record, out)?;
        }
        Ok(())
    }

    /// A new watermark arrived; returns the watermark to forward (by default
    /// the same one).
    fn process_watermark(&mut self, wm: Watermark, _out: &mut dyn Collector<O>) -> Result<Option<Watermark>> {
        Ok(Some(wm))
    }

    /// The task is idle or its buffer timeout passed: push out buffered output.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// All input has been consumed: emit final results.
    fn finish(&mut self, _out: &mut dyn Collector<O>) -> Result<()> {
        Ok(())
    }

    /// The processing-time clock advanced to `now_ms` (called every few
    /// milliseconds, also without input): fire processing-time timers, emit
    /// periodic watermarks. Returns a watermark or idleness to forward.
    fn on_processing_time(&mut self, _now_ms: i64, _out: &mut dyn Collector<O>) -> Result<Option<TimeEvent>> {
        Ok(None)
    }

    /// Snapshots this operator's state for checkpoint `id` (the synchronous
    /// part; a [`StateSnapshot::Upload`] continues on the upload thread);
    /// `None` if it has no state.
    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<Option<StateSnapshot>> {
        Ok(None)
    }

    /// Restores state written by `snapshot_state` (before `open`). A keyed
    /// operator is given the snapshots of *all* subtasks of the previous run
    /// (one call each) and keeps the key groups of `ctx.key_group_range()`;
    /// other operators get the snapshot of the subtask with their index.
    fn restore_state(&mut self, _ctx: &RuntimeContext, _bytes: &[u8]) -> Result<()> {
        Ok(())
    }

    /// Checkpoint `id` is complete on every subtask of the job.
    fn notify_checkpoint_complete(&mut self, _id: CheckpointId) -> Result<()> {
        Ok(())
    }

    /// Releases resources; called once, also after failures.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
