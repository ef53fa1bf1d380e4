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
//! A [`ProcessFunction`](crate::runtime::functions::ProcessFunction) or
//! [`KeyedProcessFunction`](crate::runtime::functions::KeyedProcessFunction)
//! sends records to any number of side outputs, of any types, with
//! `ctx.output(&tag, record)`; `get_side_output(&tag)` on the stream that
//! `process` returned reads one of them. That is how a job sets malformed
//! records aside (a dead-letter stream) instead of failing or dropping them:
//!
//! ```
//! use sluice::{Collector, OutputTag, ProcessContext, ProcessFunction, StreamExecutionEnvironment};
//!
//! #[derive(Clone)]
//! struct ParseNumbers(OutputTag<String>);
//!
//! impl ProcessFunction<String, i64> for ParseNumbers {
//!     fn process_element(&mut self, line: String, ctx: &mut ProcessContext, out: &mut dyn Collector<i64>) -> sluice::Result<()> {
//!         match line.trim().parse() {
//!             Ok(n) => out.collect(n),
//!             Err(_) => ctx.output(&self.0, line),
//!         }
//!     }
//! }
//!
//! let env = StreamExecutionEnvironment::new();
//! let malformed = OutputTag::<String>::new("malformed");
//! let numbers = env.from_collection(vec!["1".to_string(), "two".to_string()]).process(ParseNumbers(malformed.clone()));
//! let bad_lines = numbers.get_side_output(&malformed);
//! # let _ = bad_lines;
//! ```
//!
//! Inside, the operator emits one stream of [`Tagged`] records; the main
//! stream and each side output are projections of it, chained to the
//! operator at its parallelism. A process function's side records travel
//! encoded ([`SideRecord`]), since one function may feed side outputs of
//! several types.

use crate::error::{Error, Result};
use crate::record::Data;
use crate::runtime::collector::Collector;
use crate::runtime::operator::StreamOperator;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;

/// Names a side output whose records are of type `T`.
pub struct OutputTag<T> {
    /// Shared with every side record sent to it (cloned per record).
    id: Arc<str>,
    /// [`type_id`] of `T`, computed once.
    kind: u64,
    _type: PhantomData<fn() -> T>,
}

impl<T> OutputTag<T> {
    /// A tag with id `id` (unique among the side outputs of one operator).
    pub fn new(id: &str) -> Self {
        OutputTag { id: Arc::from(id), kind: type_id::<T>(), _type: PhantomData }
    }

    /// The tag's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        OutputTag { id: Arc::clone(&self.id), kind: self.kind, _type: PhantomData }
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

/// A record that a process function sent to a side output
/// ([`ProcessContext::output`](crate::runtime::functions::ProcessContext::output)):
/// its tag's id and the record, encoded, so that one operator can feed side
/// outputs of different types.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SideRecord {
    tag: Arc<str>,
    /// Identifies the record's type (see [`type_id`]).
    kind: u64,
    bytes: Vec<u8>,
}

/// A hash of the name of type `S` (FNV-1a), so that a side output read as
/// another type than was sent is an error, not garbage.
fn type_id<S>() -> u64 {
    std::any::type_name::<S>()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl SideRecord {
    /// `value` for the side output `tag`.
    pub(crate) fn new<S: Serialize>(tag: &OutputTag<S>, value: &S) -> Result<Self> {
        let bytes = postcard::to_allocvec(value)
            .map_err(|e| Error::user(format!("side output '{}': cannot encode a record: {e}", tag.id())))?;
        Ok(SideRecord { tag: Arc::clone(&tag.id), kind: tag.kind, bytes })
    }
}

/// The side records of one call of a process function, in order.
pub(crate) type SideRecords = Vec<SideRecord>;

/// Emits a call's side records into the operator's tagged output.
pub(crate) fn emit_side<O>(side: SideRecords, out: &mut dyn Collector<Tagged<O, SideRecord>>) -> Result<()> {
    for record in side {
        out.collect(Tagged::Side(record))?;
    }
    Ok(())
}

/// The operator of a process function's side output: passes on the side
/// records of one tag, decoded.
pub(crate) struct DecodeSide<S> {
    tag: Arc<str>,
    /// [`type_id`] of `S`.
    kind: u64,
    _type: PhantomData<fn() -> S>,
}

impl<S> DecodeSide<S> {
    /// The side output `tag`.
    pub(crate) fn new(tag: &OutputTag<S>) -> Self {
        DecodeSide { tag: Arc::clone(&tag.id), kind: tag.kind, _type: PhantomData }
    }
}

impl<O, S: Data> StreamOperator<Tagged<O, SideRecord>, S> for DecodeSide<S> {
    fn process_element(&mut self, record: Tagged<O, SideRecord>, out: &mut dyn Collector<S>) -> Result<()> {
        match record {
            Tagged::Side(r) if r.tag == self.tag => {
                let mismatch = |detail: String| {
                    Error::user(format!(
                        "side output '{}': a record was sent as another type than get_side_output reads \
                         ({}){detail}; use one record type per OutputTag id",
                        self.tag,
                        std::any::type_name::<S>()
                    ))
                };
                if r.kind != self.kind {
                    return Err(mismatch(String::new()));
                }
                let value = postcard::from_bytes(&r.bytes).map_err(|e| mismatch(format!(": {e}")))?;
                out.collect(value)
            }
            _ => Ok(()),
        }
    }
}
