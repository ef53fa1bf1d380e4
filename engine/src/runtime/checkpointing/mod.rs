//! Checkpointing inside a task: the pure decisions an input task makes about
//! checkpoint barriers, apart from the run loop that moves the elements.
//!
//! * [`barrier_aligner`]: which input channels may be read while a
//!   checkpoint's barriers come in, and when all of them are in (Flink's
//!   `io/checkpointing` barrier handlers, RisingWave's `barrier_align`).
//!
//! * [`snapshot_uploader`]: once the chain has taken its snapshot, the
//!   asynchronous upload and the report through the
//!   [`CheckpointResponder`](snapshot_uploader::CheckpointResponder) contract (Flink's `CheckpointResponder`).
//!
//! The chain's synchronous snapshot itself stays with the task
//! (`task::InputTask`, `task::SourceTask`).

pub(crate) mod barrier_aligner;
pub mod snapshot_uploader;

pub(crate) use barrier_aligner::{Aligned, BarrierAligner};
