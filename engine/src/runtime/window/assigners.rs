//! The window vocabulary: a [`TimeWindow`], the [`WindowAssigner`] that
//! puts a record's timestamp into windows, and the assigners users pick
//! (tumbling, sliding and session windows on event or processing time).
//!
//! The window operator (`super::WindowOperator`) works with these; the
//! `WindowedStream` builder that users call re-exports them under
//! `sluice::api::windows`.

use serde::{Deserialize, Serialize};
use sluice_checkpoint::state::TimeDomain;
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
