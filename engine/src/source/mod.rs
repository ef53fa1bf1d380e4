//! Sources: where records enter a job.
//!
//! A [`Source`] is pulled, not pushed: the runtime calls [`Source::poll_next`]
//! in a loop from the source subtask's thread, and between two calls it can
//! handle cancellation and (with checkpointing) inject barriers without any
//! lock. Each parallel subtask gets its own clone of the source given to
//! [`StreamExecutionEnvironment::add_source`](crate::StreamExecutionEnvironment::add_source)
//! and decides from [`RuntimeContext::subtask_index`] and
//! [`RuntimeContext::parallelism`] which part of the input it reads.
//!
//! # Lifecycle
//!
//! 1. `restore_state` with the state of the checkpoint or savepoint the job
//!    restores from (only then), then `open`;
//! 2. `poll_next` until it returns [`SourceStatus::Finished`] (bounded input)
//!    or the job is canceled; `snapshot_state` is called between two polls
//!    when a checkpoint is triggered, `notify_checkpoint_complete` once that
//!    checkpoint is durable everywhere;
//! 3. `close`, always.
//!
//! # Errors
//!
//! An `Err` from any method fails the subtask with that error; the message is
//! what the user sees as the job's failure cause, so name the input and
//! position and say what to do.
//!
//! # Example
//!
//! ```
//! use sluice::{Collector, Result, RuntimeContext, Source, SourceStatus, Boundedness};
//! use sluice_checkpoint::CheckpointId;
//!
//! /// Counts from 0 to `end`, split over the subtasks.
//! #[derive(Clone)]
//! struct Counter { end: u64, next: u64, step: u64 }
//!
//! impl Source<u64> for Counter {
//!     type State = u64;
//!     fn boundedness(&self) -> Boundedness { Boundedness::Bounded }
//!     fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
//!         if self.next == 0 { self.next = u64::from(ctx.subtask_index); }
//!         self.step = u64::from(ctx.parallelism);
//!         Ok(())
//!     }
//!     fn poll_next(&mut self, out: &mut dyn Collector<u64>) -> Result<SourceStatus> {
//!         if self.next >= self.end { return Ok(SourceStatus::Finished); }
//!         out.collect(self.next)?;
//!         self.next += self.step;
//!         Ok(SourceStatus::MoreAvailable)
//!     }
//!     fn snapshot_state(&mut self, _: CheckpointId) -> Result<u64> { Ok(self.next) }
//!     fn restore_state(&mut self, next: u64) -> Result<()> { self.next = next; Ok(()) }
//! }
//! ```

mod collection;
mod socket;
mod text_file;

pub use collection::CollectionSource;
pub use socket::SocketTextSource;
pub use text_file::TextFileSource;

use crate::error::Result;
use crate::runtime::collector::Collector;
use crate::runtime::context::RuntimeContext;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_checkpoint::CheckpointId;
use std::time::Duration;

/// Whether a source ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundedness {
    /// The source finishes after a finite input (a file, a collection).
    Bounded,
    /// The source runs until canceled (a socket, a message queue).
    Unbounded,
}

/// What a call to [`Source::poll_next`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// Records were emitted and more may be available at once.
    MoreAvailable,
    /// Nothing is available now; poll again after at most this long.
    Idle(Duration),
    /// The input is exhausted; the source will not be polled again.
    Finished,
}

/// A source of records of type `T`. See the module docs for the lifecycle.
pub trait Source<T>: Send + 'static {
    /// The read position saved in checkpoints (e.g. an offset); `()` if the
    /// source cannot resume.
    type State: Serialize + DeserializeOwned + Send + 'static;

    /// Whether the input ends by itself.
    fn boundedness(&self) -> Boundedness;

    /// Whether the source can run with parallelism above 1 (default: yes).
    fn is_parallel(&self) -> bool {
        true
    }

    /// Prepares reading for the subtask described by `ctx`.
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()>;

    /// Emits the next records (a few, not the whole input) into `out`.
    fn poll_next(&mut self, out: &mut dyn Collector<T>) -> Result<SourceStatus>;

    /// The current read position, for checkpoint `checkpoint`.
    fn snapshot_state(&mut self, checkpoint: CheckpointId) -> Result<Self::State>;

    /// Resumes from a position saved by `snapshot_state` (before `open`).
    /// With [`union_state`](Source::union_state) it is called once per old
    /// subtask's saved state.
    fn restore_state(&mut self, state: Self::State) -> Result<()>;

    /// Whether a restored subtask gets the saved state of *every* subtask of
    /// the checkpoint (Flink's union list state) instead of only the one with
    /// its own index: `restore_state` is then called once per old subtask,
    /// and the source keeps the part it owns at the new parallelism — which
    /// is how a source restores at another parallelism. Each subtask should
    /// then snapshot only what it owns, so that the union has no duplicates.
    /// Default: no.
    fn union_state(&self) -> bool {
        false
    }

    /// `checkpoint` is complete on every subtask of the job.
    fn notify_checkpoint_complete(&mut self, _checkpoint: CheckpointId) -> Result<()> {
        Ok(())
    }

    /// Releases resources; called once, also after failures.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
