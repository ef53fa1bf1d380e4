//! Sinks: where records leave a job.
//!
//! A [`Sink`] runs as the last operator of a chain, one clone per parallel
//! subtask, always called from that subtask's thread.
//!
//! # Lifecycle
//!
//! 1. `open` once, with the subtask's [`RuntimeContext`];
//! 2. `write` per record; `flush` whenever the task is idle, when the buffer
//!    timeout passes, and before end of input (a sink that buffers must make
//!    its output visible there); `notify_checkpoint_complete` once a
//!    checkpoint is durable everywhere (transactional sinks commit there —
//!    the two-phase-commit contract builds on it);
//! 3. `finish` when all input has been written (bounded jobs);
//! 4. `close`, always, also after a failure.
//!
//! # Errors
//!
//! An `Err` fails the subtask; say what could not be written and where.
//!
//! # Example
//!
//! ```
//! use sluice::{Result, Sink};
//! use std::sync::{Arc, Mutex};
//!
//! /// Collects records into a shared vector (handy in tests).
//! #[derive(Clone, Default)]
//! struct Collect(Arc<Mutex<Vec<String>>>);
//!
//! impl Sink<String> for Collect {
//!     fn write(&mut self, record: String) -> Result<()> {
//!         self.0.lock().map_err(|_| sluice::Error::user("poisoned"))?.push(record);
//!         Ok(())
//!     }
//! }
//! ```

mod file;
mod print;
mod text_file;
pub mod two_phase;

pub use file::{FileSink, PartFile};
pub use print::PrintSink;
pub use text_file::TextFileSink;
pub use two_phase::TwoPhaseCommitSink;

use crate::error::Result;
use crate::runtime::context::RuntimeContext;
use sluice_checkpoint::CheckpointId;

/// A sink for records of type `T`. See the module docs for the lifecycle.
pub trait Sink<T>: Send + 'static {
    /// Prepares writing for the subtask described by `ctx`.
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }

    /// Writes (or buffers) one record.
    fn write(&mut self, record: T) -> Result<()>;

    /// Makes buffered records visible.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// The barrier of `checkpoint` passes: make everything written so far
    /// durable (at-least-once sinks flush here). Default: [`Sink::flush`].
    fn prepare_checkpoint(&mut self, _checkpoint: CheckpointId) -> Result<()> {
        self.flush()
    }

    /// All input has been written.
    fn finish(&mut self) -> Result<()> {
        Ok(())
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
