//! Windows on a keyed stream (Flink's `keyBy` → `window` → `apply`).
//!
//! An assigner puts each record into time windows of its key: tumbling
//! (fixed, non-overlapping), sliding (fixed size, a new one every slide) or
//! session (closed after a gap of inactivity; overlapping sessions merge).
//! Event-time windows fire when the watermark passes their end and need
//! timestamps (`assign_timestamps_and_watermarks`); processing-time windows
//! fire on the wall clock. With allowed lateness, an event-time window keeps
//! its state that much longer and fires again for each late record; records
//! later than that are dropped and counted, or sent to a side output with
//! [`WindowedStream::side_output_late_data`] (see [`super::side_output`]).
//! Window contents live in the
//! operator's keyed state (namespace = the window) and timers, so they are
//! checkpointed, restored and redistributed like any keyed state.
//!
//! ```
//! use sluice::api::windows::TumblingEventTimeWindows;
//! use sluice::api::watermarks::WatermarkStrategy;
//! use sluice::StreamExecutionEnvironment;
//! use std::time::Duration;
//!
//! let env = StreamExecutionEnvironment::new();
//! let clicks = env.from_collection(vec![("a".to_string(), 1_000i64), ("a".to_string(), 4_000), ("b".to_string(), 6_500)]);
//! let per_window = clicks
//!     .assign_timestamps_and_watermarks(
//!         WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(1)).with_timestamp_assigner(|c: &(String, i64)| c.1),
//!     )
//!     .key_by(|c: &(String, i64)| c.0.clone())
//!     .window(TumblingEventTimeWindows::of(Duration::from_secs(5)))
//!     .apply(|user: &String, w, clicks: Vec<(String, i64)>, out| out.collect((user.clone(), w.start, clicks.len())));
//! # let _ = per_window;
//! ```

use super::datastream::{DataStream, KeyedStream};
use super::side_output::OutputTag;
use crate::error::Result;
use crate::record::{Data, Key};
use crate::runtime::collector::Collector;
pub use crate::runtime::window::assigners::{
    EventTimeSessionWindows, ProcessingTimeSessionWindows, SlidingEventTimeWindows, SlidingProcessingTimeWindows,
    TimeWindow, TumblingEventTimeWindows, TumblingProcessingTimeWindows, WindowAssigner,
};
use crate::runtime::window::{AggregateAgg, ApplyAgg, LateDataOutput, ReduceAgg, WindowAgg, WindowOperator};
use sluice_checkpoint::state::{AggregateFunction, StateValue, TimeDomain};
use std::sync::Arc;
use std::time::Duration;

/// A keyed stream cut into windows; finish it with `reduce`, `aggregate`
/// or `apply`.
pub struct WindowedStream<T, K> {
    pub(crate) keyed: KeyedStream<T, K>,
    pub(crate) assigner: WindowAssigner,
    pub(crate) allowed_lateness: Duration,
    pub(crate) late_data: Option<OutputTag<T>>,
}

impl<T: Data, K: Key> WindowedStream<T, K> {
    /// Keeps event-time windows this long after they fired, re-firing for
    /// late records (default 0: later records are dropped).
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness;
        self
    }

    /// Sends late records — those whose every window was already cleaned
    /// up (past the watermark plus the allowed lateness) — to the side
    /// output `tag` instead of dropping them; read them with
    /// [`DataStream::get_side_output`] on the window's result. See
    /// [`super::side_output`].
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_data = Some(tag.clone());
        self
    }

    fn windowed<O: Data, A: WindowAgg<K, T, O>>(&self, name: &str, agg: A) -> DataStream<O> {
        let agg = Arc::new(agg);
        let assigner = self.assigner;
        let lateness = self.allowed_lateness.as_millis() as i64;
        let selector = self.keyed.selector.clone();
        let timestamps = self.keyed.stream.timestamps.clone();
        if assigner.domain() == TimeDomain::EventTime && timestamps.is_none() {
            self.keyed.stream.record_error(
                "event-time windows need timestamps: call assign_timestamps_and_watermarks(..) (or with_timestamps) before key_by",
            );
        }
        let Some(tag) = &self.late_data else {
            return self.keyed.keyed_node(name, move |_| {
                Box::new(WindowOperator::new(assigner, agg.clone(), selector.clone(), timestamps.clone(), lateness))
            });
        };
        let ts = timestamps.clone();
        let tagged = self.keyed.keyed_node(name, move |_| {
            Box::new(LateDataOutput::new(WindowOperator::new(
                assigner,
                agg.clone(),
                selector.clone(),
                ts.clone(),
                lateness,
            )))
        });
        DataStream::<O>::split_side_output(tagged, tag, timestamps)
    }

    /// Combines the records of each window with `f`; emits one per window.
    pub fn reduce<F: Fn(T, T) -> T + Send + Sync + 'static>(&self, f: F) -> DataStream<T> {
        self.windowed("Window(Reduce)", ReduceAgg(f))
    }

    /// Aggregates each window incrementally with an [`AggregateFunction`].
    pub fn aggregate<ACC: StateValue, OUT: Data, A: AggregateFunction<T, ACC, OUT>>(&self, f: A) -> DataStream<OUT> {
        self.windowed("Window(Aggregate)", AggregateAgg::new(f))
    }

    /// Calls `f(key, window, records, out)` with all records of each window
    /// (Flink's `WindowFunction`/`ProcessWindowFunction`).
    pub fn apply<O, F>(&self, f: F) -> DataStream<O>
    where
        O: Data,
        F: Fn(&K, &TimeWindow, Vec<T>, &mut dyn Collector<O>) -> Result<()> + Send + Sync + 'static,
    {
        self.windowed("Window(Apply)", ApplyAgg::new(f))
    }

    /// Same as [`apply`](Self::apply), under Flink's other name.
    pub fn process<O, F>(&self, f: F) -> DataStream<O>
    where
        O: Data,
        F: Fn(&K, &TimeWindow, Vec<T>, &mut dyn Collector<O>) -> Result<()> + Send + Sync + 'static,
    {
        self.apply(f)
    }
}
