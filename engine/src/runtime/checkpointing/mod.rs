//! Checkpointing inside a task: the pure decisions an input task makes about
//! checkpoint barriers, apart from the run loop that moves the elements.
//!
//! * [`barrier_aligner`]: which input channels may be read while a
//!   checkpoint's barriers come in, and when all of them are in (Flink's
//!   `io/checkpointing` barrier handlers, RisingWave's `barrier_align`).
//!
//! What happens once a barrier is aligned (the chain's snapshot, the upload
//! and the acknowledgement) stays with the task (`task::InputTask` and its
//! `CheckpointResponder`).

pub(crate) mod barrier_aligner;

pub(crate) use barrier_aligner::{Aligned, BarrierAligner};
