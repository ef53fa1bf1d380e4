//! The messages that travel on data channels.
//!
//! Every channel between two subtasks carries [`StreamElement`]s in order:
//! records in batches, watermarks, checkpoint barriers and a final end of
//! stream. Because they share one ordered channel, a barrier never overtakes
//! the records sent before it.

use serde::{Deserialize, Serialize};
pub use sluice_checkpoint::CheckpointBarrier;

/// An event-time watermark in milliseconds: no record with a smaller
/// timestamp is expected any more on this channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Watermark(pub i64);

impl Watermark {
    /// The watermark before any has been seen.
    pub const MIN: Watermark = Watermark(i64::MIN);
    /// The watermark at end of input: all event time has passed.
    pub const MAX: Watermark = Watermark(i64::MAX);
}

/// One message on a data channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StreamElement<T> {
    /// A batch of records, in the order they were produced.
    Records(Vec<T>),
    /// An event-time watermark.
    Watermark(Watermark),
    /// A checkpoint barrier.
    Barrier(CheckpointBarrier),
    /// The producer is idle: leave this channel out of the combined
    /// watermark until it sends a record or watermark again.
    Idle,
    /// The producer finished: nothing follows on this channel.
    EndOfStream,
}
