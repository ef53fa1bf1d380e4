//! Side outputs: a second stream out of one operator, named by an
//! [`OutputTag`] (Flink's `OutputTag` and `getSideOutput`).
//!
//! The window operator sends late records there when asked with
//! [`WindowedStream::side_output_late_data`](super::windows::WindowedStream::side_output_late_data):
//! records whose every window was already cleaned up (past the watermark
//! plus the allowed lateness), which would otherwise be dropped and counted
//! in `numLateRecordsDropped`.
//!
//! ```
//! use sluice::{OutputTag, StreamExecutionEnvironment, WatermarkStrategy};
//! use sluice::api::windows::TumblingEventTimeWindows;
//! use std::time::Duration;
//!
//! let env = StreamExecutionEnvironment::new();
//! let late = OutputTag::<(String, i64)>::new("late-readings");
//! let readings = env
//!     .from_collection(vec![("a".to_string(), 1_000i64), ("a".to_string(), 9_000), ("a".to_string(), 2_000)])
//!     .assign_timestamps_and_watermarks(
//!         WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|r: &(String, i64)| r.1),
//!     );
//! let sums = readings
//!     .key_by(|r: &(String, i64)| r.0.clone())
//!     .window(TumblingEventTimeWindows::of(Duration::from_secs(5)))
//!     .side_output_late_data(&late)
//!     .reduce(|a, b| (a.0, a.1 + b.1));
//! let late_readings = sums.get_side_output(&late);
//! # let _ = late_readings;
//! ```
//!
//! Inside, the operator emits one stream of [`Tagged`] records; the main
//! stream and each side output are projections of it, chained to the
//! operator at its parallelism.

use crate::error::Result;
use crate::runtime::collector::Collector;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// Names a side output whose records are of type `T`.
pub struct OutputTag<T> {
    id: String,
    _type: PhantomData<fn() -> T>,
}

impl<T> OutputTag<T> {
    /// A tag with id `id` (unique among the side outputs of one operator).
    pub fn new(id: &str) -> Self {
        OutputTag { id: id.to_string(), _type: PhantomData }
    }

    /// The tag's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        OutputTag::new(&self.id)
    }
}

impl<T> std::fmt::Debug for OutputTag<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputTag({})", self.id)
    }
}

/// A record of an operator with a side output: for the main stream or for
/// the side output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Tagged<O, S> {
    /// A main-stream record.
    Main(O),
    /// A side-output record.
    Side(S),
}

impl<O, S> Tagged<O, S> {
    /// The main-stream record, if this is one.
    pub(crate) fn main(self) -> Option<O> {
        match self {
            Tagged::Main(o) => Some(o),
            Tagged::Side(_) => None,
        }
    }

    /// The side-output record, if this is one.
    pub(crate) fn side(self) -> Option<S> {
        match self {
            Tagged::Main(_) => None,
            Tagged::Side(s) => Some(s),
        }
    }
}

/// Lets an operator written for output `O` emit into a tagged stream: each
/// record becomes [`Tagged::Main`].
pub(crate) struct MainOutput<'a, O, S>(pub(crate) &'a mut dyn Collector<Tagged<O, S>>);

impl<O, S> Collector<O> for MainOutput<'_, O, S> {
    fn collect(&mut self, record: O) -> Result<()> {
        self.0.collect(Tagged::Main(record))
    }
}
