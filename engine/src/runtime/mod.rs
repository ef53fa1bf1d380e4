//! The task runtime: what runs inside a subtask.
//!
//! A subtask is one parallel instance of a job vertex: an input (a source, or
//! the channels from upstream subtasks) feeding a *chain* of operators that
//! call each other directly, ending in record writers that batch records into
//! bounded channels towards downstream subtasks.
//!
//! * [`element`]: the one message enum that travels on every channel.
//! * [`collector`]: how operators hand records downstream.
//! * [`context`]: what a running operator knows about itself.
//! * [`operator`]: the operator contract and its lifecycle.
//! * [`operators`]: the built-in operators behind `map`, `reduce`, ...
//! * [`functions`], [`side_output`], [`watermarks`]: the process-function
//!   contracts, side outputs and watermark strategies users write against
//!   (re-exported under `api`).
//! * `writer` / `shuffle`: partitioning and the bounded channels.
//! * `net`: the same channels across processes, over TCP.
//! * `task`: the run loops of source tasks and input tasks.
//! * `checkpointing`: an input task's barrier alignment (`BarrierAligner`);
//!   the asynchronous part of a checkpoint (`SnapshotUploader`) and the
//!   [`CheckpointResponder`] contract a subtask reports it through.
//! * `watermark_combiner`: an input task's watermark, combined from its
//!   channels (`WatermarkCombiner`).
//! * `window`: the window operator, and in `window::assigners` the window
//!   vocabulary (`TimeWindow`, the assigners; re-exported as `api::windows`).

pub(crate) mod checkpointing;
pub mod collector;
pub mod context;
pub mod element;
pub(crate) mod erased;
pub mod functions;
pub(crate) mod keyed;
pub(crate) mod net;
pub mod operator;
pub(crate) mod operators;
pub mod partitioning;
pub mod restore;
pub(crate) mod shuffle;
pub mod side_output;
pub(crate) mod task;
#[cfg(test)]
pub(crate) mod test_harness;
pub(crate) mod watermark_combiner;
pub mod watermarks;
pub(crate) mod window;
pub(crate) mod writer;

pub use checkpointing::snapshot_uploader::{CheckpointResponder, SubtaskCheckpointMetrics};
pub use collector::Collector;
pub use context::{RuntimeContext, RuntimeMode, StateDescriptor};
pub use element::{StreamElement, Watermark};
pub use operator::{StreamOperator, TimeEvent};
