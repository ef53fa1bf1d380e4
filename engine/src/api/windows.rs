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
use crate::runtime::window::{AggregateAgg, ApplyAgg, LateDataOutput, ReduceAgg, WindowAgg, WindowOperator};
use serde::{Deserialize, Serialize};
use sluice_checkpoint::state::{AggregateFunction, StateValue, TimeDomain};
use std::sync::Arc;
use std::time::Duration;

/// A window of time `[start, end)` in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeWindow {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

impl TimeWindow {
    /// The largest timestamp in the window (`end - 1`).
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }

    /// Whether two windows overlap or touch (session windows merge then).
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// How records are put into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAssigner {
    /// Fixed, non-overlapping windows of `size`.
    Tumbling {
        /// Window length (ms).
        size: i64,
        /// Shift of the window starts (ms).
        offset: i64,
        /// Event or processing time.
        domain: TimeDomain,
    },
    /// Windows of `size` starting every `slide`.
    Sliding {
        /// Window length (ms).
        size: i64,
        /// Distance between window starts (ms).
        slide: i64,
        /// Shift of the window starts (ms).
        offset: i64,
        /// Event or processing time.
        domain: TimeDomain,
    },
    /// Sessions that end after `gap` without records.
    Session {
        /// Inactivity gap (ms).
        gap: i64,
        /// Event or processing time.
        domain: TimeDomain,
    },
}

fn ms(d: Duration) -> i64 {
    (d.as_millis() as i64).max(1)
}

impl WindowAssigner {
    /// The windows a record at `ts` belongs to.
    pub fn assign(&self, ts: i64) -> Vec<TimeWindow> {
        match *self {
            WindowAssigner::Tumbling { size, offset, .. } => {
                let start = ts - (ts - offset).rem_euclid(size);
                vec![TimeWindow { start, end: start + size }]
            }
            WindowAssigner::Sliding { size, slide, offset, .. } => {
                let last = ts - (ts - offset).rem_euclid(slide);
                let mut out = Vec::with_capacity((size / slide) as usize + 1);
                let mut start = last;
                while start > ts - size {
                    out.push(TimeWindow { start, end: start + size });
                    start -= slide;
                }
                out
            }
            WindowAssigner::Session { gap, .. } => vec![TimeWindow { start: ts, end: ts + gap }],
        }
    }

    /// The clock the windows follow.
    pub fn domain(&self) -> TimeDomain {
        match *self {
            WindowAssigner::Tumbling { domain, .. }
            | WindowAssigner::Sliding { domain, .. }
            | WindowAssigner::Session { domain, .. } => domain,
        }
    }

    /// Whether windows merge (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self, WindowAssigner::Session { .. })
    }

    /// Shifts window starts by `offset` (e.g. time zones for daily windows).
    pub fn with_offset(mut self, by: Duration) -> Self {
        match &mut self {
            WindowAssigner::Tumbling { offset, .. } | WindowAssigner::Sliding { offset, .. } => *offset = ms(by),
            WindowAssigner::Session { .. } => {}
        }
        self
    }
}

/// Tumbling windows on event time.
#[derive(Debug)]
pub struct TumblingEventTimeWindows;
impl TumblingEventTimeWindows {
    /// Windows of `size`.
    pub fn of(size: Duration) -> WindowAssigner {
        WindowAssigner::Tumbling { size: ms(size), offset: 0, domain: TimeDomain::EventTime }
    }
}

/// Tumbling windows on processing time.
#[derive(Debug)]
pub struct TumblingProcessingTimeWindows;
impl TumblingProcessingTimeWindows {
    /// Windows of `size`.
    pub fn of(size: Duration) -> WindowAssigner {
        WindowAssigner::Tumbling { size: ms(size), offset: 0, domain: TimeDomain::ProcessingTime }
    }
}

/// Sliding windows on event time.
#[derive(Debug)]
pub struct SlidingEventTimeWindows;
impl SlidingEventTimeWindows {
    /// Windows of `size` every `slide`.
    pub fn of(size: Duration, slide: Duration) -> WindowAssigner {
        WindowAssigner::Sliding { size: ms(size), slide: ms(slide), offset: 0, domain: TimeDomain::EventTime }
    }
}

/// Sliding windows on processing time.
#[derive(Debug)]
pub struct SlidingProcessingTimeWindows;
impl SlidingProcessingTimeWindows {
    /// Windows of `size` every `slide`.
    pub fn of(size: Duration, slide: Duration) -> WindowAssigner {
        WindowAssigner::Sliding { size: ms(size), slide: ms(slide), offset: 0, domain: TimeDomain::ProcessingTime }
    }
}

/// Session windows on event time.
#[derive(Debug)]
pub struct EventTimeSessionWindows;
impl EventTimeSessionWindows {
    /// Sessions closed after `gap` without records.
    pub fn with_gap(gap: Duration) -> WindowAssigner {
        WindowAssigner::Session { gap: ms(gap), domain: TimeDomain::EventTime }
    }
}

/// Session windows on processing time.
#[derive(Debug)]
pub struct ProcessingTimeSessionWindows;
impl ProcessingTimeSessionWindows {
    /// Sessions closed after `gap` without records.
    pub fn with_gap(gap: Duration) -> WindowAssigner {
        WindowAssigner::Session { gap: ms(gap), domain: TimeDomain::ProcessingTime }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigners_cut_time_like_flink() {
        let t = TumblingEventTimeWindows::of(Duration::from_secs(5));
        assert_eq!(t.assign(7_000), vec![TimeWindow { start: 5_000, end: 10_000 }]);
        assert_eq!(t.assign(-1), vec![TimeWindow { start: -5_000, end: 0 }]);
        let s = SlidingEventTimeWindows::of(Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(
            s.assign(7_000),
            vec![TimeWindow { start: 5_000, end: 15_000 }, TimeWindow { start: 0, end: 10_000 }]
        );
        let g = EventTimeSessionWindows::with_gap(Duration::from_secs(3));
        assert_eq!(g.assign(1_000), vec![TimeWindow { start: 1_000, end: 4_000 }]);
        assert!(TimeWindow { start: 0, end: 4 }.intersects(&TimeWindow { start: 4, end: 8 }));
        assert_eq!(t.with_offset(Duration::from_secs(1)).assign(500), vec![TimeWindow { start: -4_000, end: 1_000 }]);
    }
}
